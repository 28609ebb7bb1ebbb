"""The Crafter demo corpus: real game frames, ground truth that matches the files, determinism."""

from __future__ import annotations

import collections
import json
import os
import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import crafter
import decord
import numpy as np
import pytest

from goalcraft.crafter.corpus import TRIAL_TAIL_FRAMES, generate_crafter_corpus
from goalcraft.crafter.tasks import ACHIEVEMENTS, TASKS, tasks_json_text

SEED = 1
STEPS = 120
FPS = 10
SMALL = {"n_videos": 2, "steps_per_video": STEPS, "n_trials": 2, "n_steve1_episodes": 1}
OTHER = {"n_videos": 1, "steps_per_video": STEPS, "n_trials": 0, "n_steve1_episodes": 0}
TRIAL_MAX_STEPS = 250  # generate_crafter_corpus's default

# Generates a corpus in a fresh interpreter; with "rerun" it keeps a copy of the first run and
# generates again over it. The summary is written next to the corpus.
_SCRIPT = r"""
import json, shutil, sys
from dataclasses import asdict
from pathlib import Path
from goalcraft.crafter.corpus import generate_crafter_corpus

root, seed, kwargs, rerun = Path(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4] == "1"
summary = generate_crafter_corpus(root, seed=seed, **kwargs)
if rerun:
    shutil.copytree(root, root.parent / (root.name + "-first"))
    summary = generate_crafter_corpus(root, seed=seed, **kwargs)
(root.parent / (root.name + "-summary.json")).write_text(json.dumps(asdict(summary), default=str))
"""


def _spawn(root: Path, seed: int, kwargs: dict, hash_seed: int, rerun: bool = False) -> subprocess.Popen:
    env = dict(os.environ, PYTHONHASHSEED=str(hash_seed))
    return subprocess.Popen(
        [sys.executable, "-c", _SCRIPT, str(root), str(seed), json.dumps(kwargs), "1" if rerun else "0"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> dict[str, Path]:
    """Three corpora made concurrently in separate processes: ``a`` and ``b`` with the same seed
    and different PYTHONHASHSEED (``b`` generated twice, its first run kept as ``b-first``), and
    ``c`` with another seed."""
    base = tmp_path_factory.mktemp("corpora")
    procs = [
        _spawn(base / "b", SEED, SMALL, hash_seed=2, rerun=True),
        _spawn(base / "a", SEED, SMALL, hash_seed=1),
        _spawn(base / "c", SEED + 1, OTHER, hash_seed=3),
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    return {name: base / name for name in ("a", "b", "b-first", "c")} | {"base": base}


# -- helpers -------------------------------------------------------------------------------------


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == Fraction(FPS)
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])


def _manifest(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]


def _events(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "ground_truth" / "events.jsonl").read_text().splitlines()]


def _events_by_source(root: Path) -> dict[str, list[dict]]:
    by_source: dict[str, list[dict]] = collections.defaultdict(list)
    for event in _events(root):
        by_source[event["source_id"]].append(event)
    return by_source


_TAG = re.compile(r"<[^>]*>")
_TIME = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d\d\d) --> (\d\d):(\d\d):(\d\d)\.(\d\d\d)")


def _vtt_cues(text: str) -> list[tuple[float, float, list[str]]]:
    """Tiny WebVTT reader for the test: (start, end, lines without tags) per cue."""
    lines = text.split("\n")
    assert lines[0] == "WEBVTT"
    cues = []
    for block in "\n".join(lines[1:]).split("\n\n"):
        block_lines = block.strip("\n").split("\n")
        match = _TIME.match(block_lines[0])
        if not match:
            continue
        g = [int(x) for x in match.groups()]
        start = g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000
        end = g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000
        cues.append((start, end, [_TAG.sub("", line).strip() for line in block_lines[1:]]))
    return cues


# -- determinism -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_same_seed_is_identical_across_processes(corpora) -> None:
    a, b = _files(corpora["a"]), _files(corpora["b"])
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name] == b[name], name
    videos = [name for name in a if name.endswith(".mp4")]
    assert len(videos) == 2 + 2 + 1
    for name in videos:
        np.testing.assert_array_equal(_decode(corpora["a"] / name), _decode(corpora["b"] / name))


@pytest.mark.slow
def test_rerun_over_existing_corpus_is_byte_identical_and_clean(corpora) -> None:
    assert _files(corpora["b-first"]) == _files(corpora["b"])
    leftovers = [p.name for p in corpora["base"].iterdir() if p.name.startswith(".")]
    assert leftovers == []  # no staging or old directories left behind


@pytest.mark.slow
def test_other_seed_gives_other_games(corpora) -> None:
    assert [r["id"] for r in _manifest(corpora["c"])] == [f"crafter-{SEED + 1}-v00"]
    ours = _decode(corpora["a"] / f"videos/crafter-{SEED}-v00.mp4")
    theirs = _decode(corpora["c"] / f"videos/crafter-{SEED + 1}-v00.mp4")
    assert ours.shape == theirs.shape
    assert np.abs(ours.astype(int) - theirs.astype(int)).mean() > 10


# -- content -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_manifest_records(corpora) -> None:
    root = corpora["a"]
    records = _manifest(root)
    assert [r["id"] for r in records] == [f"crafter-{SEED}-v00", f"crafter-{SEED}-v01"]
    for index, record in enumerate(records):
        assert set(record) == {"id", "title", "link", "view_count", "like_count", "duration", "fps", "path",
                               "transcript"}
        assert re.fullmatch(r"crafter-\d+-v\d\d", record["id"]) and "." not in record["id"]
        assert record["path"] == f"videos/{record['id']}.mp4" and (root / record["path"]).is_file()
        assert record["link"].endswith(record["path"])
        suffix = ".json" if index % 2 == 0 else ".vtt"
        assert record["transcript"] == f"transcripts/{record['id']}{suffix}"
        assert (root / record["transcript"]).is_file()
        assert record["fps"] == FPS
        assert record["duration"] == pytest.approx((STEPS + 1) / FPS)
        assert isinstance(record["view_count"], int) and 0 <= record["like_count"] <= record["view_count"]
        assert "Crafter" in record["title"]
    assert sorted(p.name for p in (root / "transcripts").iterdir()) == sorted(
        Path(r["transcript"]).name for r in records)


@pytest.mark.slow
def test_videos_are_real_game_frames(corpora) -> None:
    root = corpora["a"]
    by_source = _events_by_source(root)
    for record in _manifest(root):
        frames = _decode(root / record["path"])
        assert frames.shape == (STEPS + 1, 160, 256, 3)  # 256 wide x 160 tall: 16 x 10 tiles of 16 px
        assert len(decord.VideoReader(str(root / record["path"]))) == STEPS + 1
        events = by_source[record["id"]]
        assert len({e["achievement"] for e in events}) >= 3, "the agent should unlock several achievements"
        frame = frames[events[0]["frame"]]
        assert frame.std() > 25
        world, inventory = frame[:144], frame[144:]  # 9 rows of world tiles above 1 row of inventory
        assert world.mean() > inventory.mean() + 30  # the inventory bar is mostly black
        assert len(np.unique(world.reshape(-1, 3), axis=0)) > 50  # textured tiles, not flat colour


@pytest.mark.slow
def test_event_log(corpora) -> None:
    root = corpora["a"]
    events = _events(root)
    videos = {r["id"] for r in _manifest(root)}
    trials = {p.name for p in (root / "trials").iterdir()}
    for event in events:
        assert set(event) == {"source_id", "source", "achievement", "step", "frame", "time"}
        assert event["achievement"] in ACHIEVEMENTS
        assert event["frame"] == event["step"] >= 1
        assert event["time"] == event["frame"] / FPS
        if event["source"] == "video":
            assert event["source_id"] in videos and event["frame"] <= STEPS
        else:
            assert event["source"] == "trial" and event["source_id"] in trials
    for source_events in _events_by_source(root).values():
        assert [e["step"] for e in source_events] == sorted(e["step"] for e in source_events)
    summary = json.loads((corpora["base"] / "a-summary.json").read_text())
    assert (summary["videos"], summary["trials"], summary["episodes"]) == (2, 2, 1)
    assert summary["events"] == len(events)
    assert summary["unlocks"] == {a: sum(e["achievement"] == a for e in events) for a in ACHIEVEMENTS}


@pytest.mark.slow
def test_json_transcripts_narrate_every_event(corpora) -> None:
    root = corpora["a"]
    by_source = _events_by_source(root)
    checked = 0
    for record in _manifest(root):
        if not record["transcript"].endswith(".json"):
            continue
        segments = json.loads((root / record["transcript"]).read_text())
        for seg in segments:
            assert set(seg) == {"text", "start", "duration"} and isinstance(seg["text"], str)
            assert 0 <= seg["start"] and seg["duration"] > 0
            assert seg["start"] + seg["duration"] <= record["duration"] + 1e-6
        for event in by_source[record["id"]]:
            phrases = TASKS[event["achievement"]]["narration"]
            assert any(
                seg["text"] in phrases
                and seg["start"] - 1e-6 <= event["time"] <= seg["start"] + seg["duration"] + 1e-6
                for seg in segments
            ), event
            checked += 1
        spans = sorted((s["start"], s["start"] + s["duration"]) for s in segments)
        assert any(nxt[0] < cur[1] for cur, nxt in zip(spans, spans[1:])), "some lines overlap"
    assert checked > 0


@pytest.mark.slow
def test_vtt_transcripts_are_rolling_youtube_captions(corpora) -> None:
    root = corpora["a"]
    by_source = _events_by_source(root)
    vtts = [r for r in _manifest(root) if r["transcript"].endswith(".vtt")]
    assert vtts
    for record in vtts:
        cues = _vtt_cues((root / record["transcript"]).read_text())
        assert len(cues) >= 4 and len(cues) % 2 == 0  # each line: a rolling cue, then a 10 ms cue
        assert all(start < end for start, end, _ in cues)
        assert all(prev[1] <= cur[0] + 1e-9 for prev, cur in zip(cues, cues[1:]))
        rolling, settled = cues[0::2], cues[1::2]
        for index, (_, _, lines) in enumerate(rolling):
            assert len(lines) == 2
            assert lines[0] == (rolling[index - 1][2][1] if index else "")  # repeats the previous line
            assert settled[index][2][0] == lines[1]
        new_lines = [(start, lines[1]) for start, _, lines in rolling]  # de-duplicated
        for event in by_source[record["id"]]:
            phrases = TASKS[event["achievement"]]["narration"]
            assert any(
                text in phrases and event["time"] - 4.0 <= start <= event["time"] for start, text in new_lines
            ), event


@pytest.mark.slow
def test_task_vocabulary(corpora) -> None:
    text = (corpora["a"] / "tasks.json").read_text()
    assert text == tasks_json_text()  # the packaged vocabulary, copied as is
    tasks = json.loads(text)
    assert tasks == TASKS
    assert set(tasks) == set(crafter.constants.achievements) and len(tasks) == 22
    narration = [phrase for task in tasks.values() for phrase in task["narration"]]
    assert len(narration) == len(set(narration)), "a narration line must identify its achievement"
    for name, task in tasks.items():
        assert task["instruction"] and len(task["paraphrases"]) >= 2 and len(task["narration"]) >= 3, name
        assert task["instruction"] not in task["paraphrases"]


@pytest.mark.slow
def test_trials_match_the_event_log(corpora) -> None:
    root = corpora["a"]
    by_source = _events_by_source(root)
    trial_dirs = sorted((root / "trials").iterdir())
    assert [d.name for d in trial_dirs] == [f"crafter-{SEED}-s00", f"crafter-{SEED}-t00", f"crafter-{SEED}-t01"]
    successes = 0
    for tdir in trial_dirs:
        steve1 = tdir.name.split("-")[-1].startswith("s")
        video = tdir / ("frames.mp4" if steve1 else "video.mp4")
        expected_files = ({"frames.mp4", "metadata.json", "len.txt", "actions.jsonl", "actions.pkl"} if steve1
                          else {"video.mp4", "metadata.json", "actions.jsonl"})  # actions: test_trajectories.py
        assert {p.name for p in tdir.iterdir()} == expected_files
        meta = json.loads((tdir / "metadata.json").read_text())
        assert set(meta) == {"instruction", "task", "success", "success_time", "success_frame", "fps", "seed"}
        assert meta["instruction"] == TASKS[meta["task"]]["instruction"] and meta["fps"] == FPS
        n_frames = _decode(video).shape[0]
        events = by_source[tdir.name]
        assert all(e["frame"] < n_frames for e in events)
        if meta["success"]:
            successes += 1
            first = next(e["frame"] for e in events if e["achievement"] == meta["task"])
            assert meta["success_frame"] == first
            assert meta["success_time"] == first / FPS
            assert n_frames == first + TRIAL_TAIL_FRAMES + 1
        else:
            assert meta["success_frame"] is None and meta["success_time"] is None
            assert n_frames == TRIAL_MAX_STEPS + 1
        if steve1:
            length = int((tdir / "len.txt").read_text())
            assert length == n_frames == len(decord.VideoReader(str(video)))
    assert successes >= 2
    # The only pickles are STEVE-1's actions.pkl (arrays only: they load with the restricted unpickler).
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*.pkl")) == [f"trials/crafter-{SEED}-s00/actions.pkl"]


# -- in-process checks ---------------------------------------------------------------------------


def test_trial_that_runs_out_of_steps_fails(tmp_path: Path) -> None:
    # Goal-directed agents look around for at least 12 steps first, so 5 steps cannot succeed.
    summary = generate_crafter_corpus(tmp_path / "corpus", seed=4, n_videos=0, n_trials=1, n_steve1_episodes=0,
                                      trial_max_steps=5)
    root = tmp_path / "corpus"
    meta = json.loads((root / "trials/crafter-4-t00/metadata.json").read_text())
    assert meta["success"] is False and meta["success_frame"] is None and meta["success_time"] is None
    assert _decode(root / "trials/crafter-4-t00/video.mp4").shape[0] == 6
    assert (root / "manifest.jsonl").read_text() == ""
    assert summary.trials == 1 and summary.successes == 0 and summary.videos == 0


def test_refuses_to_replace_a_directory_that_is_not_a_corpus(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        generate_crafter_corpus(tmp_path, n_videos=1)
    assert (tmp_path / "notes.txt").read_text() == "keep me"
