from __future__ import annotations

import json
from pathlib import Path

import pytest

from goalcraft.data.quarantine import InputError
from goalcraft.data.transcripts import Segment, parse_json_transcript, parse_vtt, read_transcript

FIXTURES = Path(__file__).parent / "fixtures"


def reason_of(func, data: bytes) -> InputError:
    with pytest.raises(InputError) as info:
        func(data)
    return info.value


def as_tuples(segments: list[Segment]) -> list[tuple[str, float, float]]:
    return [(s.text, round(s.start, 6), round(s.end, 6)) for s in segments]


# ------------------------------------------------------------------------------------------------
# JSON


def test_json_segments_are_normalised_and_sorted_stably() -> None:
    data = json.dumps(
        [
            {"text": "then  craft\na table", "start": 4.5, "duration": 2.0, "extra": 1},
            {"text": "chop the tree", "start": 1.0, "duration": 4.0},
            {"text": "[Music]", "start": 4.5, "duration": 1},
            {"text": "   ", "start": 8, "duration": 1},  # blank: dropped
            {"text": "done", "start": 9, "duration": 0},
        ]
    ).encode()
    segments = parse_json_transcript(data)
    assert segments == [
        Segment("chop the tree", 1.0, 4.0),
        Segment("then craft a table", 4.5, 2.0),  # equal starts keep file order
        Segment("[Music]", 4.5, 1.0),
        Segment("done", 9.0, 0.0),
    ]
    assert segments[0].end == 5.0
    assert all(isinstance(s.start, float) and isinstance(s.duration, float) for s in segments)


def test_json_bom_is_accepted() -> None:
    data = b"\xef\xbb\xbf" + json.dumps([{"text": "hi", "start": 0, "duration": 1}]).encode()
    assert parse_json_transcript(data) == [Segment("hi", 0.0, 1.0)]


@pytest.mark.parametrize(
    "data, reason, detail",
    [
        (b'[{"text": "caf\xe9", "start": 0, "duration": 1}]', "transcript_not_utf8", "byte offset 14"),
        (b'[{"text": "hi", "start": 0, "dura', "transcript_malformed", "invalid JSON"),
        (b"", "transcript_malformed", "invalid JSON"),
        (b'{"text": "hi", "start": 0, "duration": 1}', "transcript_malformed", "list"),
        (b"[]", "transcript_empty", "no segments"),
        (b'[{"text": " \\n ", "start": 0, "duration": 1}]', "transcript_empty", "blank"),
        (b'[{"text": "a", "start": 0, "duration": 1}, {"text": "b", "start": -1, "duration": 1}]',
         "transcript_malformed", "segment 1: 'start' must not be negative"),
        (b'[{"text": "a", "start": NaN, "duration": 1}]', "transcript_malformed", "segment 0: 'start' must be finite"),
        (b'[{"text": "a", "start": 0, "duration": Infinity}]', "transcript_malformed", "'duration' must be finite"),
        (b'[{"text": "a", "start": 0, "duration": -0.5}]', "transcript_malformed", "'duration' must not be negative"),
        (b'[{"text": "a", "start": 0}]', "transcript_malformed", "segment 0: missing 'duration'"),
        (b'[{"start": 0, "duration": 1}]', "transcript_malformed", "missing 'text'"),
        (b'[{"text": 5, "start": 0, "duration": 1}]', "transcript_malformed", "'text' must be a string"),
        (b'[{"text": "a", "start": "0.5", "duration": 1}]', "transcript_malformed", "'start' must be a number"),
        (b'[{"text": "a", "start": true, "duration": 1}]', "transcript_malformed", "'start' must be a number"),
        (b'["a"]', "transcript_malformed", "segment 0: expected an object"),
    ],
)
def test_bad_json_transcripts(data: bytes, reason: str, detail: str) -> None:
    error = reason_of(parse_json_transcript, data)
    assert error.reason == reason
    assert detail in error.detail


# ------------------------------------------------------------------------------------------------
# WebVTT: YouTube auto-captions


def test_youtube_autocaption_fixture_is_deduplicated() -> None:
    segments = read_transcript(FIXTURES / "youtube_autocaption.vtt")
    assert as_tuples(segments) == [
        ("hey guys welcome back to the channel", 0.0, 5.19),
        ("today we're going to build a house", 2.36, 7.95),
        ("[Music]", 5.2, 10.47),
        ("first let's chop some trees", 7.96, 13.0),
        ("so grab the axe & go", 10.48, 13.0),
    ]


def test_fixture_looks_like_real_youtube_output() -> None:
    raw = (FIXTURES / "youtube_autocaption.vtt").read_text(encoding="utf-8")
    assert raw.startswith("WEBVTT\nKind: captions\nLanguage: en\n\n")
    assert "\n \n" in raw  # the single-space lines YouTube writes inside cues
    assert "align:start position:0%" in raw and "<00:00:00.560><c> guys</c>" in raw
    assert "00:00:02.350 --> 00:00:02.360" in raw  # a 10 ms transition cue


def test_rolling_line_that_disappears_comes_back_as_a_new_segment() -> None:
    vtt = (
        "WEBVTT\n\n"
        "00:00.000 --> 00:01.000\nyes\n\n"
        "00:01.000 --> 00:02.000\nyes\nyes\n\n"  # said twice: the second line is new
        "00:02.000 --> 00:03.000\n\n"  # an empty cue: nothing shown
        "00:03.000 --> 00:04.000\nyes\n"
    )
    assert as_tuples(parse_vtt(vtt.encode())) == [
        ("yes", 0.0, 2.0),
        ("yes", 1.0, 2.0),
        ("yes", 3.0, 4.0),
    ]


def test_continuation_ignores_gaps_between_cues() -> None:
    vtt = (
        "WEBVTT\n\n"
        "00:00.000 --> 00:02.000\nplace the block\n\n"
        "00:05.000 --> 00:07.000\nplace the block\nnow jump\n"
    )
    assert as_tuples(parse_vtt(vtt.encode())) == [("place the block", 0.0, 7.0), ("now jump", 5.0, 7.0)]


# ------------------------------------------------------------------------------------------------
# WebVTT: general syntax


def test_general_vtt_features() -> None:
    vtt = (
        "\ufeffWEBVTT - some title\r\n"
        "Kind: captions\r\n"
        "\r\n"
        "STYLE\r\n"
        "::cue { color: yellow }\r\n"
        "\r\n"
        "NOTE this is\r\n"
        "a comment\r\n"
        "\r\n"
        "intro\r\n"
        "00:01.000 --> 00:03.500 line:0 align:middle\r\n"
        "<v Steve>Welcome to <i>Minecraft</i>!\r\n"
        "Tom &amp; Jerry&nbsp;&lt;3\r\n"
        "\r\n"
        "1:02:03.250 --> 1:02:04.000\r\n"
        "<c.colorE5E5E5>hours</c> work\r\n"
        "\r\n"
        "NOTE\r\n"
        "trailing note\r\n"
    )
    segments = parse_vtt(vtt.encode("utf-8"))
    # the two lines of one cue are one caption; hours may be a single digit
    assert as_tuples(segments) == [
        ("Welcome to Minecraft! Tom & Jerry <3", 1.0, 3.5),
        ("hours work", 3723.25, 3724.0),
    ]


def test_arrow_line_inside_a_cue_starts_the_next_cue() -> None:
    vtt = "WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nfirst\n00:00:02.000 --> 00:00:03.000\nsecond\n \n"
    assert as_tuples(parse_vtt(vtt.encode())) == [("first", 1.0, 2.0), ("second", 2.0, 3.0)]


def test_cues_out_of_order_are_sorted() -> None:
    vtt = "WEBVTT\n\n00:05.000 --> 00:06.000\nlate\n\n00:01.000 --> 00:02.000\nearly\n"
    assert as_tuples(parse_vtt(vtt.encode())) == [("early", 1.0, 2.0), ("late", 5.0, 6.0)]


@pytest.mark.parametrize(
    "data, reason, detail",
    [
        (b"WEBVTT\n\n00:01.000 --> 00:02.000\ncaf\xe9\n", "transcript_not_utf8", "byte offset"),
        (b"", "transcript_malformed", "WEBVTT"),
        (b"00:01.000 --> 00:02.000\nhello\n", "transcript_malformed", "line 1: missing the 'WEBVTT'"),
        (b"WEBVTTX\n", "transcript_malformed", "WEBVTT"),
        (b"WEBVTT\n\n00:01.000 --> 00:02\nhello\n", "transcript_malformed", "line 3: invalid cue timing"),
        (b"WEBVTT\n\n00:01,000 --> 00:02,000\nhello\n", "transcript_malformed", "line 3"),
        (b"WEBVTT\n\n00:61.000 --> 01:02.000\nhello\n", "transcript_malformed", "line 3"),
        (b"WEBVTT\n\n" + b"1" * 5000 + b":00:01.000 --> 00:02.000\nhi\n", "transcript_malformed", "line 3"),
        (b"WEBVTT\n\nid\n00:03.000 --> 00:02.000\nhello\n", "transcript_malformed", "line 4: cue ends before it starts"),
        (b"WEBVTT\n\nhello there\nno timing\n", "transcript_malformed", "line 3: expected a cue timing line"),
        (b"WEBVTT\nKind: captions\nLanguage: en\n\n", "transcript_empty", "no segments"),
        (b"WEBVTT\n\n00:01.000 --> 00:02.000\n \n<c> </c>\n", "transcript_empty", "no segments"),
    ],
)
def test_bad_vtt(data: bytes, reason: str, detail: str) -> None:
    error = reason_of(parse_vtt, data)
    assert error.reason == reason
    assert detail in error.detail


# ------------------------------------------------------------------------------------------------
# read_transcript


def test_read_transcript_dispatches_on_suffix(tmp_path: Path) -> None:
    (tmp_path / "a.JSON").write_text('[{"text": "x", "start": 1, "duration": 2}]', encoding="utf-8")
    (tmp_path / "b.vtt").write_text("WEBVTT\n\n00:01.000 --> 00:03.000\nx\n", encoding="utf-8")
    assert read_transcript(tmp_path / "a.JSON") == [Segment("x", 1.0, 2.0)]
    assert read_transcript(tmp_path / "b.vtt") == [Segment("x", 1.0, 2.0)]


def test_read_transcript_errors(tmp_path: Path) -> None:
    (tmp_path / "c.srt").write_text("1\n00:00:01,000 --> 00:00:02,000\nx\n", encoding="utf-8")
    (tmp_path / "dir.json").mkdir()
    for name, reason in [("missing.json", "transcript_missing"), ("dir.json", "transcript_missing"),
                         ("c.srt", "transcript_unsupported_format")]:
        with pytest.raises(InputError) as info:
            read_transcript(tmp_path / name)
        assert info.value.reason == reason


@pytest.mark.parametrize(
    "data",
    [
        b'[{"text": "a", "start": 1' + b"0" * 5000 + b', "duration": 1}]',  # int too long to parse
        b"[" * 100_000 + b"]" * 100_000,  # nesting deeper than the parser's recursion limit
    ],
)
def test_pathological_json_is_malformed_not_a_crash(data: bytes) -> None:
    assert reason_of(parse_json_transcript, data).reason == "transcript_malformed"


def test_huge_integer_time_is_not_finite() -> None:
    data = b'[{"text": "a", "start": 1' + b"0" * 400 + b', "duration": 1}]'
    error = reason_of(parse_json_transcript, data)
    assert (error.reason, "must be finite" in error.detail) == ("transcript_malformed", True)
