"""Success mining on the Crafter corpus, whose ground truth (every achievement unlock) is known, and
on MineStudio's VLM rating files."""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from pathlib import Path

import pytest

from goalcraft.data.manifest import VideoRecord, read_manifests
from goalcraft.data.mining import GoalMoment, exclusive_moments, mine_ratings, mine_transcripts, mine_trials, speech_end_times
from goalcraft.data.task_vocabulary import Task, load_tasks_json
from goalcraft.data.transcripts import Segment
from goalcraft.data.trials import TrialRecord, scan_trials

FIXTURES = Path(__file__).parent / "fixtures"
RATING = FIXTURES / "minestudio" / "combat_spider.json"

# How far a transcript candidate may lie from the unlock it reports, derived from the generator
# (goalcraft.crafter.narration.transcript_segments, webvtt). Each unlock at t not already covered by a line
# about the same achievement still being spoken is narrated by a line [s, e] with
# s = floor_ms(t - U(1, 2)) >= t - 2.001 and e = min(duration, ceil_ms(t + U(0.8, 2))) <= t + 2.001.
#
# JSON (candidate = segment end e): e >= t (the video holds the unlock, so also when e = duration),
# and an unlock covered by a still-open line lies before that line's end, less than 2.001 s before.
JSON_WINDOW = (0.0, 2.001)
# WebVTT (rolling captions; candidate = the next line's start, where the line stopped being spoken):
# * lower: the candidate is at or after the line's start, >= t - 2.001 for the unlock it narrates;
#   an unlock covered by that line comes up to 2.001 s after the narrated one: >= t - 4.002.
# * upper: the generator fills a gap after the latest line end E with a filler starting 0.1-1.2 s
#   into it, or, when that first filler (1.5-3 s, ending at most 0.6 s into the next line) does not
#   fit, leaves it silent, so the next line starts before E + 1.2 + 3.0 - 0.6 = E + 3.6. E comes from
#   a line starting no later than this one: its unlock is at most 1.001 s after t, its end at most
#   t + 3.002. So the candidate is <= t + 6.602, plus the VTT writer's 0.05 s start shift.
VTT_WINDOW = (-4.002, 6.65)


def _events(corpus: Path) -> list[dict]:
    return [json.loads(line) for line in (corpus / "ground_truth" / "events.jsonl").read_text().splitlines()]


def _matches(moment: GoalMoment, event: dict, window: tuple[float, float]) -> bool:
    lo, hi = window
    return (moment.source_id == event["source_id"] and moment.task == event["achievement"]
            and lo <= moment.success_time - event["time"] <= hi)


# --------------------------------------------------------------------------------------------------
# Trials


def test_every_successful_trial_is_mined_at_its_first_unlock_of_the_target(crafter_corpus):
    trials, rejected = scan_trials(crafter_corpus / "trials", crafter_corpus)
    assert rejected == [] and {t.layout for t in trials} == {"goalcraft", "steve1"}
    moments, quarantined = mine_trials(trials)
    assert quarantined == []
    events = _events(crafter_corpus)
    successful = [t for t in trials if t.success]
    assert len(moments) == len(successful) > 0
    for moment in moments:
        trial = next(t for t in trials if t.id == moment.source_id)
        first = next(e for e in events if e["source_id"] == trial.id and e["achievement"] == trial.task)
        assert moment.success_frame == first["frame"]
        assert moment.success_time == pytest.approx(first["time"])
        assert (moment.source, moment.miner, moment.confidence) == ("trial", "trial", 1.0)
        assert (moment.task, moment.instruction, moment.video_path) == (trial.task, trial.instruction, trial.video_path)
    assert {m.video_path.rsplit("/", 1)[1] for m in moments} == {"video.mp4", "frames.mp4"}


def test_failed_trials_give_no_moment_and_time_only_trials_keep_their_time():
    def trial(id_, success, time_, frame, fps=None):
        return TrialRecord(id_, "goalcraft", f"trials/{id_}/video.mp4", "chop a tree", "collect_wood", success,
                           time_, frame, fps, None)

    moments, quarantined = mine_trials([trial("b", True, 2.5, None), trial("a", False, None, None),
                                        trial("c", True, None, 30), trial("d", True, None, None)])
    assert [(m.source_id, m.success_time, m.success_frame) for m in moments] == [("b", 2.5, None), ("c", None, 30)]
    assert [(q.source_id, q.reason) for q in quarantined] == [("d", "trial_invalid_success")]


# --------------------------------------------------------------------------------------------------
# Transcripts


@pytest.fixture(scope="module")
def transcript_mining(crafter_corpus):
    videos, rejected = read_manifests([crafter_corpus / "manifest.jsonl"], crafter_corpus)
    assert rejected == []
    tasks = load_tasks_json(crafter_corpus / "tasks.json", source="crafter")
    moments, quarantined = mine_transcripts(videos, crafter_corpus, tasks)
    assert quarantined == []
    return videos, moments


def test_narrated_unlocks_are_recovered_with_the_right_task_and_time(crafter_corpus, transcript_mining):
    videos, moments = transcript_mining
    events = [e for e in _events(crafter_corpus) if e["source"] == "video"]
    fmt = {v.id: v.transcript_path.rsplit(".", 1)[1] for v in videos}
    assert set(fmt.values()) == {"json", "vtt"}
    window = {"json": JSON_WINDOW, "vtt": VTT_WINDOW}
    hits: dict[str, list[bool]] = defaultdict(list)
    for event in events:
        w = window[fmt[event["source_id"]]]
        hits[fmt[event["source_id"]]].append(any(_matches(m, event, w) for m in moments))
    correct: dict[str, list[bool]] = defaultdict(list)
    for moment in moments:
        w = window[fmt[moment.source_id]]
        correct[fmt[moment.source_id]].append(any(_matches(moment, e, w) for e in events))
    # within the generator's +-2 s narration window (tight for VTT, whose line ends are lost)
    tight = sum(any(_matches(m, e, (-2.001, 2.001)) for m in moments) for e in events if fmt[e["source_id"]] == "vtt")
    for f in ("json", "vtt"):
        print(f"{f}: recall {sum(hits[f])}/{len(hits[f])}, precision {sum(correct[f])}/{len(correct[f])}")
    print(f"vtt within +-2 s: {tight}/{len(hits['vtt'])}")
    assert all(hits["json"]) and all(hits["vtt"]), "recall must be 1 within the derived windows"
    assert all(correct["json"]) and all(correct["vtt"]), "precision must be 1 within the derived windows"
    assert len(hits["json"]) > 20 and len(hits["vtt"]) > 10


def test_transcript_moments_carry_task_instruction_and_confidence(crafter_corpus, transcript_mining):
    videos, moments = transcript_mining
    tasks = {t.name: t for t in load_tasks_json(crafter_corpus / "tasks.json")}
    by_id = {v.id: v for v in videos}
    for m in moments:
        assert (m.source, m.miner, m.success_frame) == ("video", "transcript", None)
        assert m.instruction == tasks[m.task].instruction
        assert m.video_path == by_id[m.source_id].video_path
        assert m.confidence == 1.0  # generated narration lines are exactly a phrasing
        # (a VTT line's last cue is followed by a 10 ms transition cue, which may run past the end)
        assert 0 <= m.success_time <= by_id[m.source_id].duration + 0.01
        assert "#segment" in m.detail


def _video(tmp_path: Path, id_: str, transcript: str | None, content: object = None) -> VideoRecord:
    if transcript is not None and content is not None:
        path = tmp_path / transcript
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return VideoRecord(id_, "", "", None, None, 30.0, 10.0, f"videos/{id_}.mp4", transcript)


TASKS = [Task("wood", "chop a tree", ("got some wood", "chop a tree"), "test"),
         Task("table", "place a crafting table", ("crafting table placed",), "test")]


def test_candidate_time_confidence_and_timing_rules(tmp_path):
    segments = [
        {"text": "hey everyone", "start": 0.0, "duration": 2.0},
        {"text": "well I think we got some wood over there", "start": 1.5, "duration": 4.0},
        {"text": "Crafting table placed!", "start": 3.0, "duration": 2.0},
    ]
    json_video = _video(tmp_path, "j", "transcripts/j.json", segments)
    cues = ("WEBVTT\n\n00:00:01.500 --> 00:00:03.000\ngot some wood\n\n"
            "00:00:03.000 --> 00:00:05.000\ngot some wood\ncrafting table placed\n")
    vtt_video = _video(tmp_path, "v", "transcripts/v.vtt", cues)
    auto, q = mine_transcripts([vtt_video, json_video], tmp_path, TASKS)
    assert q == []
    assert [(m.source_id, m.task, m.success_time, m.confidence) for m in auto] == [
        ("j", "wood", 5.5, pytest.approx(3 / 9)),  # JSON: the segment's end
        ("j", "table", 5.0, 1.0),
        ("v", "wood", 3.0, 1.0),  # VTT: the rolling line is shown until 5.0 but spoken until 3.0
        ("v", "table", 5.0, 1.0),
    ]
    spoken, _ = mine_transcripts([json_video], tmp_path, TASKS, timing="spoken")
    assert [m.success_time for m in spoken] == [3.0, 5.0]
    end, _ = mine_transcripts([vtt_video], tmp_path, TASKS, timing="end")
    assert [m.success_time for m in end] == [5.0, 5.0]
    confident, _ = mine_transcripts([json_video], tmp_path, TASKS, min_confidence=0.5)
    assert [m.task for m in confident] == ["table"]
    with pytest.raises(ValueError):
        mine_transcripts([json_video], tmp_path, TASKS, timing="middle")  # type: ignore[arg-type]


def test_a_lag_places_the_moment_that_long_before_the_speech_end_but_not_before_its_start(tmp_path):
    segments = [{"text": "got some wood", "start": 1.0, "duration": 2.0},
                {"text": "crafting table placed", "start": 6.0, "duration": 0.4}]
    video = _video(tmp_path, "j", "transcripts/j.json", segments)
    plain, _ = mine_transcripts([video], tmp_path, TASKS)
    lagged, _ = mine_transcripts([video], tmp_path, TASKS, lag_s=0.6)
    assert [m.success_time for m in plain] == [3.0, 6.4]
    assert [m.success_time for m in lagged] == [2.4, 6.0]  # the second is held at its segment's start
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="lag_s"):
            mine_transcripts([video], tmp_path, TASKS, lag_s=bad)


def test_exclusive_s_drops_moments_with_another_task_nearby_and_says_why(tmp_path):
    # Moments (segment ends): wood 2.0, wood 2.5 (same task: no conflict), table 3.4, wood 9.0.
    segments = [{"text": "got some wood", "start": 1.0, "duration": 1.0},
                {"text": "got some wood", "start": 2.0, "duration": 0.5},
                {"text": "crafting table placed", "start": 3.0, "duration": 0.4},
                {"text": "got some wood", "start": 8.0, "duration": 1.0}]
    video = _video(tmp_path, "j", "transcripts/j.json", segments)
    all_, q = mine_transcripts([video], tmp_path, TASKS)
    assert [(m.task, m.success_time) for m in all_] == [("wood", 2.0), ("wood", 2.5), ("table", 3.4), ("wood", 9.0)]
    assert q == []
    kept, dropped = mine_transcripts([video], tmp_path, TASKS, exclusive_s=1.0)
    # wood 2.5 is 0.9 s from the table, the table 0.9 s from wood 2.5; wood 2.0 is 1.4 s away.
    assert [(m.task, m.success_time) for m in kept] == [("wood", 2.0), ("wood", 9.0)]
    assert [(r.reason, r.stage, r.source_id, r.input) for r in dropped] == [
        ("ambiguous_moment", "transcript", "j", "transcripts/j.json#segment1")] + [
        ("ambiguous_moment", "transcript", "j", "transcripts/j.json#segment2")]
    assert "table at 3.40s" in dropped[0].detail and "wood at 2.50s" in dropped[1].detail
    wide, _ = mine_transcripts([video], tmp_path, TASKS, exclusive_s=1.5)
    assert [(m.task, m.success_time) for m in wide] == [("wood", 9.0)]
    assert exclusive_moments(all_, 0.0) == (all_, [])
    with pytest.raises(ValueError, match="exclusive_s"):
        mine_transcripts([video], tmp_path, TASKS, exclusive_s=-1)


def test_speech_end_times():
    segs = [Segment("a", 0.0, 3.0), Segment("b", 2.0, 1.0), Segment("c", 2.0, 5.0), Segment("d", 8.0, 1.0)]
    assert speech_end_times(segs, spoken=False) == [3.0, 3.0, 7.0, 9.0]
    assert speech_end_times(segs, spoken=True) == [2.0, 2.0, 7.0, 9.0]


def test_videos_without_a_usable_transcript_are_quarantined(tmp_path):
    videos = [
        _video(tmp_path, "none", None),
        _video(tmp_path, "gone", "transcripts/gone.json"),
        _video(tmp_path, "bad", "transcripts/bad.json", "[{\"text\": \"got some wood\"}]"),
        _video(tmp_path, "ok", "transcripts/ok.json", [{"text": "got some wood", "start": 1, "duration": 1}]),
    ]
    moments, quarantined = mine_transcripts(videos, tmp_path, TASKS)
    assert [m.source_id for m in moments] == ["ok"]
    assert sorted((q.source_id, q.stage, q.reason) for q in quarantined) == [
        ("bad", "transcript", "transcript_malformed"),
        ("gone", "transcript", "transcript_missing"),
        ("none", "transcript", "transcript_missing"),
    ]


# --------------------------------------------------------------------------------------------------
# MineStudio VLM ratings


@pytest.fixture
def rating_corpus(tmp_path) -> Path:
    """A corpus folder holding combat_spider_7.mp4 where MineStudio keeps it (eval_video/<task>/)."""
    root = tmp_path / "corpus"
    folder = root / "eval_video" / "combat_spider"
    folder.mkdir(parents=True)
    shutil.copy(FIXTURES / "minestudio" / "combat_spider_7.mp4", folder)
    return root


def _rating(video: str, score: object, task: str = "combat_spider") -> dict:
    return {"Task Progress": score, "Action Control": 5,
            "video_path": f"/home/user/code/Mark2/jarvis/auto_eval/eval_video/{task}/{video}", "task_name": task}


def test_a_top_rated_minestudio_video_gives_one_moment_at_its_last_frame(rating_corpus):
    moments, quarantined = mine_ratings([RATING], rating_corpus, threshold=8.0, videos_dir="eval_video")
    assert quarantined == []
    (moment,) = moments
    assert moment.success_frame == 599  # 600 frames at 30 fps: the rating judges the whole recording
    assert moment.success_time == pytest.approx(599 / 30)
    assert (moment.source, moment.source_id, moment.miner) == ("trial", "combat_spider_7", "rating")
    assert moment.video_path == "eval_video/combat_spider/combat_spider_7.mp4"
    assert (moment.task, moment.instruction, moment.confidence) == ("combat_spider", "combat spider", 1.0)
    assert "Task Progress 10 >= 8" in moment.detail
    # The MineStudio task config gives the instruction; looking under the whole corpus finds it too.
    task = Task("combat_spider", "Combat spiders using weapons and armor to protect yourself.", (), "minestudio:hard")
    (moment,) = mine_ratings([RATING], rating_corpus, tasks=[task])[0]
    assert moment.instruction == task.instruction
    assert len(mine_ratings([RATING], rating_corpus, threshold=10.0)[0]) == 1  # score >= threshold


def test_a_rated_video_missing_from_the_corpus_is_quarantined(rating_corpus, tmp_path):
    # combat_spider.json rates combat_spider_7 only; a second rating names combat_spider_8, which the
    # corpus (like tests/fixtures/minestudio/) does not hold.
    ratings = json.loads(RATING.read_text())
    ratings += [_rating("combat_spider_8.mp4", 9), "Task Progress:\n- ...\nScore: 9", _rating("combat_spider_9.mp4", 3)]
    path = rating_corpus / "vlm_rating_res" / "combat_spider.json"
    path.parent.mkdir()
    path.write_text(json.dumps(ratings), encoding="utf-8")
    moments, quarantined = mine_ratings([path], rating_corpus, videos_dir="eval_video")
    assert [m.source_id for m in moments] == ["combat_spider_7"]
    (record,) = quarantined  # combat_spider_9 is rated 3 < 8: not used, so not looked for
    assert (record.input, record.stage, record.reason, record.source_id) == (
        "vlm_rating_res/combat_spider.json#2", "rating", "rating_video_missing", "combat_spider_8")
    assert "combat_spider_8.mp4" in record.detail and "no file" in record.detail and "eval_video" in record.detail
    # two files of that name: the rated path's folders tell them apart ...
    other = rating_corpus / "eval_video" / "copy"
    other.mkdir()
    shutil.copy(FIXTURES / "minestudio" / "combat_spider_7.mp4", other)
    moments, quarantined = mine_ratings([path], rating_corpus, videos_dir="eval_video")
    assert [(m.video_path, m.source_id) for m in moments] == [
        ("eval_video/combat_spider/combat_spider_7.mp4", "combat_spider__combat_spider_7")]
    # ... and where they do not, the rating is ambiguous
    same = rating_corpus / "eval_video" / "copy" / "eval_video" / "combat_spider"
    same.mkdir(parents=True)
    shutil.copy(FIXTURES / "minestudio" / "combat_spider_7.mp4", same)
    moments, quarantined = mine_ratings([path], rating_corpus, videos_dir="eval_video")
    assert moments == [] and [q.reason for q in quarantined] == ["rating_video_ambiguous", "rating_video_missing"]
    assert "2 files" in quarantined[0].detail


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe[]", b'{"video_path": "x.mp4"}', b"3"])
def test_a_malformed_rating_file_is_quarantined(rating_corpus, content):
    path = rating_corpus / "bad.json"
    path.write_bytes(content)
    moments, quarantined = mine_ratings([path, RATING], rating_corpus)
    assert [m.source_id for m in moments] == ["combat_spider_7"]  # the good file still counts
    (record,) = quarantined
    assert (record.input, record.stage, record.reason) == ("bad.json", "rating", "rating_malformed")


def test_malformed_rating_elements_are_quarantined_one_by_one(rating_corpus):
    path = rating_corpus / "ratings.json"
    elements = [
        _rating("combat_spider_7.mp4", 10),
        _rating("combat_spider_7.mp4", "ten"),  # text that is not a number
        _rating("combat_spider_7.mp4", True),
        _rating("combat_spider_7.mp4", 11),
        {"Task Progress": 9, "task_name": "combat_spider"},  # no video_path
        {"Task Progress": 9, "video_path": "/x/combat_spider_7.mp4"},  # no task_name
        42,
        "a rater note",
    ]
    path.write_text(json.dumps(elements), encoding="utf-8")
    moments, quarantined = mine_ratings([path], rating_corpus)
    assert len(moments) == 1
    assert [(q.input, q.reason) for q in quarantined] == [(f"ratings.json#{i}", "rating_malformed") for i in range(1, 7)]
    with pytest.raises(ValueError):
        mine_ratings([path], rating_corpus, threshold=12)


def test_an_unreadable_rated_video_is_quarantined(rating_corpus):
    broken = rating_corpus / "eval_video" / "combat_spider" / "combat_spider_5.mp4"
    broken.write_bytes(b"")
    path = rating_corpus / "r.json"
    path.write_text(json.dumps([_rating("combat_spider_5.mp4", 9)]), encoding="utf-8")
    moments, quarantined = mine_ratings([path], rating_corpus)
    assert moments == []
    assert [(q.stage, q.reason, q.input) for q in quarantined] == [
        ("decode", "video_empty", "eval_video/combat_spider/combat_spider_5.mp4")]


@pytest.fixture
def mcu_corpus(tmp_path) -> Path:
    """MCU's layout: one video folder per task, every episode named episode_<n>.mp4, and one rating
    file per episode (vlm_rating_res/<agent>_res/<task> episode_<n>.json)."""
    root = tmp_path / "corpus"
    for task, video in (("collect dirt", "combat_spider_7.mp4"), ("collect wood", "build_pillar_0.mp4")):
        folder = root / "mcu" / "steve" / task
        folder.mkdir(parents=True)
        shutil.copy(FIXTURES / "minestudio" / video, folder / "episode_2.mp4")
    (root / "vlm_rating_res" / "steve_res").mkdir(parents=True)
    return root


def _mcu_rating(root: Path, task: str, progress: object, **extra) -> Path:
    rating = {"Task Progress": progress, "Action Control": "9", "Error Recognition and Correction": "4",
              "Creative Attempts": "5", "Task Completion Efficiency": "8", "Material Selection and Usage": "10",
              "video_path": f"/nfs-shared-2//steve/{task}/episode_2.mp4", "task_name": task.replace(" ", "_")} | extra
    path = root / "vlm_rating_res" / "steve_res" / f"{task} episode_2.json"
    path.write_text(json.dumps(rating, indent=4), encoding="utf-8")
    return path


def test_mcu_rating_files_hold_one_episode_with_scores_as_text(mcu_corpus):
    from goalcraft.data.mining import rating_files

    dirt = _mcu_rating(mcu_corpus, "collect dirt", "8")
    wood = _mcu_rating(mcu_corpus, "collect wood", "3")
    (mcu_corpus / "vlm_rating_res" / ".old").mkdir()
    (mcu_corpus / "vlm_rating_res" / ".old" / "x.json").write_text("{")
    assert rating_files(mcu_corpus / "vlm_rating_res") == [dirt, wood]  # any depth, hidden entries left out
    moments, quarantined = mine_ratings([dirt, wood], mcu_corpus, videos_dir="mcu")
    assert quarantined == []  # wood is rated 3 < 8: not a success, not an error
    (moment,) = moments
    # every episode is episode_2.mp4: the task folder of the rated path picks the right one
    assert (moment.video_path, moment.task, moment.instruction, moment.confidence, moment.miner) == (
        "mcu/steve/collect dirt/episode_2.mp4", "collect_dirt", "collect dirt", 0.8, "rating")
    assert moment.source_id.startswith("collect_dirt__episode_2-") and moment.success_frame == 599
    assert "rated Task Progress 8 >= 8" in moment.detail
    bad = _mcu_rating(mcu_corpus, "collect dirt", "8/10")
    moments, quarantined = mine_ratings([bad], mcu_corpus, videos_dir="mcu")
    assert moments == [] and [(q.input, q.reason) for q in quarantined] == [
        ("vlm_rating_res/steve_res/collect dirt episode_2.json", "rating_malformed")]
    assert "'8/10'" in quarantined[0].detail
    # the task may be under "task" (an MCU fork) instead of "task_name"
    data = {k: v for k, v in json.loads(dirt.read_text()).items() if k != "task_name"}
    bad.write_text(json.dumps(data | {"task": "collect dirt", "Task Progress": "9.5"}))
    (moment,) = mine_ratings([bad], mcu_corpus, videos_dir="mcu")[0]
    assert (moment.task, moment.confidence) == ("collect dirt", 0.95)


def _comparison(root: Path, task: str, verdict: object, video_1: str, video_2: str) -> Path:
    """MineStudio's video_comparison.py output: ``[{criteria..., video_1_path, video_2_path}, answer]``
    in ``vlm_rating_res/<task>.json``."""
    judged = {"Task Progress": verdict, "Action Control": verdict,
              "video_1_path": f"/home/user/eval_video/{video_1}", "video_2_path": f"/home/user/eval_video/{video_2}"}
    path = root / "vlm_rating_res" / f"{task}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps([judged, f"- Task Progress: {verdict}\n- Action Control: {verdict}"]), encoding="utf-8")
    return path


def test_minestudio_comparisons_give_the_judged_better_video(rating_corpus):
    shutil.copy(FIXTURES / "minestudio" / "build_pillar_0.mp4", rating_corpus / "eval_video")
    first = _comparison(rating_corpus, "combat_spider", "A", "combat_spider/combat_spider_7.mp4", "build_pillar_0.mp4")
    second = _comparison(rating_corpus, "build_pillar", "Video 2", "combat_spider/combat_spider_7.mp4",
                         "build_pillar_0.mp4")
    tie = _comparison(rating_corpus, "build_a_house", "tie", "combat_spider/combat_spider_7.mp4", "build_pillar_0.mp4")
    moments, quarantined = mine_ratings([first, second, tie], rating_corpus, videos_dir="eval_video")
    assert quarantined == []
    assert [(m.video_path, m.task, m.miner, m.confidence, m.success_frame) for m in moments] == [
        ("eval_video/combat_spider/combat_spider_7.mp4", "combat_spider", "comparison", 0.5, 599),
        ("eval_video/build_pillar_0.mp4", "build_pillar", "comparison", 0.5, 599)]
    assert "judged the better video of a pair (Task Progress: 'A')" in moments[0].detail
    for verdict in ("maybe", 7, None):
        path = _comparison(rating_corpus, "combat_spider", verdict, "a.mp4", "b.mp4")
        (record,) = mine_ratings([path], rating_corpus)[1]
        assert (record.input, record.reason) == ("vlm_rating_res/combat_spider.json#0", "rating_malformed")
        assert "must name video A or B" in record.detail


def test_mining_notes_say_why_a_partition_can_give_no_goal_clips():
    from goalcraft.data.mining import NOTHING_TO_MINE, mining_notes

    assert mining_notes(trials=0, videos=5, tasks=0, ratings=False) == [NOTHING_TO_MINE]
    assert mining_notes(trials=0, videos=0, tasks=0, ratings=False) == [NOTHING_TO_MINE]
    assert mining_notes(trials=2, videos=3, tasks=0, ratings=False) == [
        "no task vocabulary: the transcripts of 3 video(s) are not mined for goal clips"]
    assert mining_notes(trials=0, videos=0, tasks=4, ratings=False) == ["no trials and no videos in this partition"]
    assert mining_notes(trials=0, videos=5, tasks=4, ratings=False) == []
    assert mining_notes(trials=0, videos=5, tasks=0, ratings=True) == []  # rating files can name their own tasks
