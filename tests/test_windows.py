from __future__ import annotations

import math
import random

import pytest

from goalcraft.data.transcripts import Segment
from goalcraft.data.windows import (
    ClipWindow,
    WindowResult,
    WindowRules,
    frame_indices,
    tile_windows,
    windows_from_segments,
)

FPS = 20.0  # 16 frames = 0.8 s


def seg(text: str, start: float, end: float) -> Segment:
    return Segment(text, start, end - start)


def spans(result: WindowResult) -> list[tuple[float, float, str, tuple[int, ...]]]:
    return [(w.start, w.end, w.caption, w.segment_indices) for w in result.windows]


def run(segments: list[Segment], duration: float = 100.0, fps: float = FPS, **rules: object) -> WindowResult:
    return windows_from_segments(segments, duration, fps, WindowRules(**rules))  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------
# Length rules


def test_segment_within_limits_is_unchanged() -> None:
    assert spans(run([seg("build a  house", 1, 4)])) == [(1.0, 4.0, "build a house", (0,))]


def test_short_segment_is_widened_around_its_centre() -> None:
    assert spans(run([seg("jump", 10, 10.5)])) == [(9.25, 11.25, "jump", (0,))]


def test_widening_is_shifted_to_stay_inside_the_video() -> None:
    result = run([seg("start", 0.2, 0.6), seg("end", 19.5, 19.9)], duration=20.0)
    assert spans(result) == [(0.0, 2.0, "start", (0,)), (18.0, 20.0, "end", (1,))]


def test_video_shorter_than_min_window() -> None:
    assert spans(run([seg("tiny", 0.5, 1.0)], duration=1.5)) == [(0.0, 1.5, "tiny", (0,))]


def test_long_segment_keeps_its_centred_max_window() -> None:
    assert spans(run([seg("long talk", 10, 30)])) == [(16.0, 24.0, "long talk", (0,))]


def test_zero_length_segment_is_widened() -> None:
    assert spans(run([seg("now", 50, 50)])) == [(49.0, 51.0, "now", (0,))]


# ------------------------------------------------------------------------------------------------
# Overlap rules


def test_trim_ends_a_segment_at_the_next_start() -> None:
    result = run([seg("a", 0, 5), seg("b", 3, 6), seg("c", 6, 9)], overlap="trim")
    assert spans(result) == [(0.0, 3.0, "a", (0,)), (3.0, 6.0, "b", (1,)), (6.0, 9.0, "c", (2,))]


def test_trim_with_equal_starts_makes_the_first_zero_length_then_widens_it() -> None:
    result = run([seg("a", 5, 6), seg("b", 5, 8)], overlap="trim")
    assert spans(result) == [(4.0, 6.0, "a", (0,)), (5.0, 8.0, "b", (1,))]


def test_merge_joins_overlapping_runs_but_not_touching_ones() -> None:
    result = run([seg("a", 0, 5), seg("b", 3, 6), seg("c", 6, 9), seg("d", 8, 8.5)], overlap="merge")
    assert spans(result) == [(0.0, 6.0, "a b", (0, 1)), (6.0, 9.0, "c d", (2, 3))]


def test_merge_chain_longer_than_max_is_centre_cropped() -> None:
    result = run([seg("one", 0, 6), seg("two", 5, 11), seg("three", 10, 14)], overlap="merge")
    assert spans(result) == [(3.0, 11.0, "one two three", (0, 1, 2))]


def test_keep_leaves_overlaps() -> None:
    result = run([seg("a", 0, 5), seg("b", 3, 6)], overlap="keep")
    assert spans(result) == [(0.0, 5.0, "a", (0,)), (3.0, 6.0, "b", (1,))]


def test_rolling_autocaptions_trim_to_spoken_lines() -> None:
    # the segments parse_vtt produces for tests/fixtures/youtube_autocaption.vtt
    segments = [
        seg("hey guys welcome back to the channel", 0.0, 5.19),
        seg("today we're going to build a house", 2.36, 7.95),
        seg("[Music]", 5.2, 10.47),
        seg("first let's chop some trees", 7.96, 13.0),
        seg("so grab the axe & go", 10.48, 13.0),
    ]
    result = run(segments, duration=13.0)
    assert spans(result) == [
        (0.0, 2.36, "hey guys welcome back to the channel", (0,)),
        (2.36, 7.95, "today we're going to build a house", (1,)),  # [Music] is filtered first
        (7.96, 10.48, "first let's chop some trees", (3,)),
        (10.48, 13.0, "so grab the axe & go", (4,)),
    ]
    assert result.filtered == 1 and result.rejected == []


def test_indices_refer_to_input_order() -> None:
    result = run([seg("late", 20, 23), seg("early", 1, 4)])
    assert spans(result) == [(1.0, 4.0, "early", (1,)), (20.0, 23.0, "late", (0,))]


# ------------------------------------------------------------------------------------------------
# Filters


def test_blank_and_bracketed_segments_are_filtered_not_rejected() -> None:
    segments = [
        seg("[Music]", 0, 3),
        seg(" [Applause]  [Laughter] ", 3, 6),
        seg("[Music] let's go", 6, 9),
        seg("  \n ", 9, 12),
    ]
    result = run(segments)
    assert spans(result) == [(6.0, 9.0, "[Music] let's go", (2,))]
    assert (result.filtered, result.rejected) == (3, [])

    kept = run(segments, drop_bracketed=False)
    assert [w.caption for w in kept.windows] == ["[Music]", "[Applause] [Laughter]", "[Music] let's go"]
    assert kept.filtered == 1


def test_filtered_segments_do_not_trim_their_neighbours() -> None:
    result = run([seg("go left", 0, 5), seg("[Music]", 2, 4), seg("go right", 6, 8)])
    assert spans(result) == [(0.0, 5.0, "go left", (0,)), (6.0, 8.0, "go right", (2,))]


def test_keyword_filter_matches_whole_words_and_phrases_case_insensitively() -> None:
    segments = [
        seg("I see a Tree.", 0, 3),
        seg("trees everywhere", 3, 6),
        seg("walk down the street", 6, 9),
        seg("open the Crafting   Table now", 9, 12),
        seg("crafting is fun", 12, 15),
        seg("tree-house time", 15, 18),
    ]
    result = run(segments, keywords=("tree", "crafting table"))
    assert [w.segment_indices for w in result.windows] == [(0,), (3,), (5,)]
    assert result.windows[1].caption == "open the Crafting Table now"
    assert result.filtered == 3


def test_empty_keywords_keep_everything() -> None:
    assert len(run([seg("anything", 0, 3)], keywords=()).windows) == 1


# ------------------------------------------------------------------------------------------------
# The video's end and the frame count


def test_segment_starting_at_or_after_the_end_is_rejected() -> None:
    result = run([seg("at end", 10, 12), seg("after", 12, 14), seg("ok", 1, 4)], duration=10.0)
    assert spans(result) == [(1.0, 4.0, "ok", (2,))]
    assert [(i, r) for i, r, _ in result.rejected] == [
        (0, "segment_past_video_end"),
        (1, "segment_past_video_end"),
    ]


def test_segment_running_past_the_end_is_clipped_not_widened() -> None:
    result = run([seg("enough", 9.0, 12)], duration=10.0)
    assert spans(result) == [(9.0, 10.0, "enough", (0,))]  # 20 frames: kept, not widened to 2 s


def test_clipped_segment_with_too_few_frames_is_rejected() -> None:
    result = run([seg("too late", 9.5, 12)], duration=10.0)  # 0.5 s * 20 fps = 10 frames
    assert result.windows == []
    ((index, reason, detail),) = result.rejected
    assert (index, reason) == (0, "window_too_short")
    assert "10.00 frames" in detail and "clipped" in detail


def test_exactly_min_frames_is_enough() -> None:
    result = run([seg("edge", 9.2, 11)], duration=10.0)  # 0.8 s * 20 fps = 16 frames
    assert spans(result) == [(9.2, 10.0, "edge", (0,))]


def test_min_frames_applies_to_every_window() -> None:
    # at 5 fps a 2 s window holds 10 frames
    result = run([seg("slow", 0, 2)], fps=5.0)
    assert result.windows == [] and result.rejected[0][1] == "window_too_short"
    widened = run([seg("slow", 0, 2)], fps=5.0, min_window_s=4.0)
    assert spans(widened) == [(0.0, 4.0, "slow", (0,))]
    assert spans(run([seg("slow", 0, 2)], fps=5.0, min_frames=8)) == [(0.0, 2.0, "slow", (0,))]


def test_merged_window_rejected_reports_every_member() -> None:
    result = run([seg("a", 9.7, 10.5), seg("b", 9.8, 11)], duration=10.0, overlap="merge")
    assert result.windows == []
    assert [(i, r) for i, r, _ in result.rejected] == [(0, "window_too_short"), (1, "window_too_short")]


def test_invalid_segments_are_rejected() -> None:
    result = run([Segment("nan", math.nan, 1.0), Segment("neg", 1.0, -1.0), seg("ok", 1, 4)])
    assert spans(result) == [(1.0, 4.0, "ok", (2,))]
    assert [(i, r) for i, r, _ in result.rejected] == [(0, "segment_invalid"), (1, "segment_invalid")]


def test_zero_length_video_rejects_every_segment() -> None:
    result = run([seg("a", 0, 1), seg("[Music]", 0, 1)], duration=0.0)
    assert result.windows == [] and result.filtered == 1
    assert result.rejected[0][:2] == (0, "segment_past_video_end")


def test_no_segments() -> None:
    assert run([]) == WindowResult([], [], 0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_window_s": 0},
        {"min_window_s": 3, "max_window_s": 2},
        {"overlap": "union"},
        {"keywords": "tree"},
        {"keywords": ("tree", " ")},
        {"min_frames": 0},
    ],
)
def test_bad_rules_raise(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        WindowRules(**kwargs)


@pytest.mark.parametrize("duration, fps", [(-1, 20), (10, 0), (math.inf, 20), (math.nan, 20), (10, math.nan)])
def test_bad_video_parameters_raise(duration: float, fps: float) -> None:
    with pytest.raises(ValueError):
        windows_from_segments([seg("a", 0, 1)], duration, fps, WindowRules())


def test_every_window_gives_distinct_frames() -> None:
    rng = random.Random(1234)
    for trial in range(200):
        fps = rng.choice([5.0, 12.5, 20.0, 23.976, 29.97, 30.0, 60.0])
        duration = rng.uniform(0.5, 60.0)
        segments = []
        for _ in range(rng.randint(0, 12)):
            start = rng.uniform(0, duration * 1.1)
            segments.append(Segment(f"line {trial}", start, rng.uniform(0, 12)))
        overlap = rng.choice(["trim", "merge", "keep"])
        result = windows_from_segments(segments, duration, fps, WindowRules(overlap=overlap))
        num_frames = math.ceil(duration * fps)  # a frame starting before the end is in the video
        for window in result.windows:
            assert 0 <= window.start < window.end <= duration
            indices = frame_indices(window, fps, num_frames)
            assert len(indices) == 16 and indices == sorted(set(indices))
        accounted = {i for w in result.windows for i in w.segment_indices} | {i for i, _, _ in result.rejected}
        assert len(accounted) + result.filtered == len(segments)


# ------------------------------------------------------------------------------------------------
# tile_windows


def test_tiles_cover_the_video_and_drop_the_partial_tail() -> None:
    assert [(w.start, w.end) for w in tile_windows(10.0, 20, 2.0, "chop a tree")] == [
        (0.0, 2.0), (2.0, 4.0), (4.0, 6.0), (6.0, 8.0), (8.0, 10.0)
    ]
    tiles = tile_windows(9.9, 20, 2.0, "  chop a\ntree ")
    assert [(w.start, w.end) for w in tiles] == [(0.0, 2.0), (2.0, 4.0), (4.0, 6.0), (6.0, 8.0)]
    assert {w.caption for w in tiles} == {"chop a tree"} and {w.segment_indices for w in tiles} == {()}


def test_tiles_stop_at_end_at() -> None:
    assert [(w.start, w.end) for w in tile_windows(10.0, 20, 2.0, "x", end_at=5.0)] == [(0.0, 2.0), (2.0, 4.0)]
    assert len(tile_windows(10.0, 20, 2.0, "x", end_at=6.0)) == 3
    assert len(tile_windows(10.0, 20, 2.0, "x", end_at=60.0)) == 5
    assert tile_windows(10.0, 20, 2.0, "x", end_at=0.0) == []


def test_tiles_are_exact_despite_float_steps() -> None:
    tiles = tile_windows(1.0, 200, 0.1, "x")
    assert len(tiles) == 10
    assert tiles[2] == ClipWindow(0.2, 0.3, "x", ()) and tiles[-1].end == 1.0


def test_short_video_gives_no_tile() -> None:
    assert tile_windows(1.0, 20, 2.0, "x") == []


def test_tile_window_too_short_for_16_frames_raises() -> None:
    with pytest.raises(ValueError, match="fewer than min_frames"):
        tile_windows(10.0, 20, 0.5, "x")
    assert len(tile_windows(10.0, 20, 0.5, "x", min_frames=10)) == 20
    with pytest.raises(ValueError):
        tile_windows(-1.0, 20, 2.0, "x")


# ------------------------------------------------------------------------------------------------
# frame_indices


def test_frame_indices_for_a_known_window() -> None:
    window = ClipWindow(1.0, 2.0, "x", (0,))
    assert frame_indices(window, 20.0, 1000) == [20, 21, 23, 24, 25, 26, 28, 29, 30, 31, 33, 34, 35, 36, 38, 39]


def test_frame_indices_exactly_16_frames() -> None:
    assert frame_indices(ClipWindow(0.0, 0.8, "x"), 20.0, 100) == list(range(16))
    assert frame_indices(ClipWindow(3.0, 3.8, "x"), 20.0, 76) == list(range(60, 76))


def test_frame_indices_other_n() -> None:
    assert frame_indices(ClipWindow(0.0, 2.0, "x"), 10.0, 100, n=4) == [2, 7, 12, 17]


def test_frame_indices_too_short_window_raises() -> None:
    with pytest.raises(ValueError, match="fewer than n=16"):
        frame_indices(ClipWindow(0.0, 0.7, "x"), 20.0, 100)


def test_frame_indices_clamped_to_the_last_frame() -> None:
    # the video really holds fewer frames than duration * fps promised: clamping collides -> error
    with pytest.raises(ValueError, match="distinct"):
        frame_indices(ClipWindow(0.0, 1.0, "x"), 20.0, 10)
    # clamping that keeps them distinct is fine
    assert frame_indices(ClipWindow(0.0, 0.8, "x"), 20.0, 16)[-1] == 15


@pytest.mark.parametrize(
    "window, fps, num_frames, n",
    [
        (ClipWindow(2.0, 1.0, "x"), 20.0, 100, 16),
        (ClipWindow(0.0, 1.0, "x"), 0.0, 100, 16),
        (ClipWindow(0.0, 1.0, "x"), 20.0, 0, 16),
        (ClipWindow(0.0, 1.0, "x"), 20.0, 100, 0),
        (ClipWindow(-1.0, 1.0, "x"), 20.0, 100, 16),
    ],
)
def test_frame_indices_bad_arguments(window: ClipWindow, fps: float, num_frames: int, n: int) -> None:
    with pytest.raises(ValueError):
        frame_indices(window, fps, num_frames, n)
