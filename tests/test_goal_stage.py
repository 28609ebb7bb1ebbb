"""The goal stage: 16 consecutive frames ending at each mined success moment, in WebDataset shards."""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from goalcraft.formats import CLIP_FRAMES, CLIP_HEIGHT, CLIP_WIDTH
from goalcraft.data.decode import get_decoder
from goalcraft.data.goal_stage import (
    GOAL_INDEX_SCHEMA,
    build_goal_partition,
    goal_frame_indices,
)
from goalcraft.data.manifest import read_manifests
from goalcraft.data.mining import GoalMoment, mine_ratings, mine_transcripts, mine_trials
from goalcraft.data.quarantine import InputError, QuarantineRecord
from goalcraft.data.shards import iter_shard, read_clip, shard_indexes, verify_partition
from goalcraft.data.task_vocabulary import load_tasks_json
from goalcraft.data.trials import scan_trials
from goalcraft.storage import StoragePaths

FIXTURES = Path(__file__).parent / "fixtures"
JPEG_MEAN_ERROR = 6.0  # grey levels; q90 JPEG of Crafter/Minecraft frames is ~3 (docs/data-formats.md)


def _goals(partition_dir: Path) -> dict[str, tuple[np.ndarray, str, dict]]:
    out = {}
    for index in shard_indexes(partition_dir):
        for sample in iter_shard(index.with_suffix(".tar")):
            assert sample["__key__"] not in out
            out[sample["__key__"]] = read_clip(sample)
    return out


def _extra_moments(trial_video: str, video: str) -> list[GoalMoment]:
    def at(source, source_id, path, frame=None, time=None, detail=""):
        return GoalMoment(source, source_id, path, "test", "collect_wood", "chop a tree", 0.5, time, frame, detail)

    return [
        at("trial", "edge", trial_video, frame=15, detail="first frame with 16 frames up to it"),
        at("trial", "early", trial_video, frame=14, detail="one frame too early"),
        at("trial", "past", trial_video, frame=10_000, detail="past the footage"),
        at("video", "clamp", video, time=15.1, detail="caption up to the video's end"),
        at("video", "beyond", video, time=40.0, detail="far past the decodable end"),
        at("video", "missing", "videos/none.mp4", time=5.0),
    ]


@pytest.fixture(scope="module")
def goal_run(crafter_corpus, tmp_path_factory):
    videos, _ = read_manifests([crafter_corpus / "manifest.jsonl"], crafter_corpus)
    trials, _ = scan_trials(crafter_corpus / "trials", crafter_corpus)
    trial_moments, _ = mine_trials(trials)
    video_moments, _ = mine_transcripts(videos, crafter_corpus, load_tasks_json(crafter_corpus / "tasks.json"))
    extra = _extra_moments(trials[0].video_path, videos[0].video_path)
    moments = trial_moments + video_moments + extra
    storage = StoragePaths(tmp_path_factory.mktemp("goals"))
    report = build_goal_partition("p0000", moments, crafter_corpus, storage, shard_target_bytes=3_000_000)
    return storage, moments, report, trials


def test_goal_clips_are_the_16_frames_ending_at_the_success_frame(crafter_corpus, goal_run):
    storage, moments, report, _ = goal_run
    goals = _goals(storage.goal_partition_dir("p0000"))
    assert len(goals) == report.goals_written > 40
    decoder = get_decoder("pyav")  # decode directly, with the other back end
    errors, distinct = [], 0
    for key, (frames, caption, meta) in goals.items():
        f = meta["success_frame"]
        assert meta["frame_indices"] == list(range(f - 15, f + 1))
        assert meta["frame_timestamps"] == pytest.approx([i / meta["fps"] for i in meta["frame_indices"]])
        assert (meta["window_start"], meta["window_end"]) == pytest.approx(((f - 15) / meta["fps"], (f + 1) / meta["fps"]))
        assert frames.shape == (CLIP_FRAMES, CLIP_HEIGHT, CLIP_WIDTH, 3)
        assert caption == meta["instruction"]
        with decoder.open(crafter_corpus / meta["video_path"]) as handle:
            direct = handle.read(meta["frame_indices"]).frames
            if meta["source"] == "video" and meta["miner"] == "transcript":
                last = handle.info.num_frames - 1
                assert f == min(last, int(np.floor(meta["success_time"] * handle.info.fps + 1e-9)))
        last_error = np.abs(frames[-1].astype(np.int16) - direct[-1].astype(np.int16)).mean()
        errors.append(last_error)
        assert last_error < JPEG_MEAN_ERROR, key
        if np.abs(direct[-1].astype(np.int16) - direct[-2].astype(np.int16)).mean() > 2 * JPEG_MEAN_ERROR:
            distinct += 1  # the frame before looks different: the goal frame is not it
            assert np.abs(frames[-1].astype(np.int16) - direct[-2].astype(np.int16)).mean() > JPEG_MEAN_ERROR
        assert np.abs(frames.astype(np.int16) - direct.astype(np.int16)).mean() < JPEG_MEAN_ERROR, key
    print(f"goal frame vs direct decode: mean abs error {np.mean(errors):.2f}, worst {np.max(errors):.2f}; "
          f"{distinct} goals whose previous frame differs visibly")
    assert distinct > len(goals) // 4


def test_trial_goals_end_at_the_first_unlock_of_the_target(crafter_corpus, goal_run):
    storage, _, _, trials = goal_run
    events = [json.loads(line) for line in (crafter_corpus / "ground_truth" / "events.jsonl").read_text().splitlines()]
    goals = {meta["source_id"]: meta for _, _, meta in _goals(storage.goal_partition_dir("p0000")).values()
             if meta["miner"] == "trial"}
    successful = [t for t in trials if t.success]
    assert set(goals) == {t.id for t in successful}
    for trial in successful:
        first = next(e for e in events if e["source_id"] == trial.id and e["achievement"] == trial.task)
        meta = goals[trial.id]
        assert meta["success_frame"] == first["frame"] == meta["frame_indices"][-1]
        assert (meta["task"], meta["instruction"], meta["confidence"]) == (trial.task, trial.instruction, 1.0)
        assert meta["success_time"] == pytest.approx(first["time"])


def test_unusable_moments_are_quarantined_with_the_reason(goal_run):
    storage, moments, report, _ = goal_run
    final = storage.goal_partition_dir("p0000")
    rows = pq.read_table(final / "quarantine.parquet").to_pylist()
    assert report.goals_written + len(rows) == report.moments_seen == len(moments)
    by_id = {}
    for row in rows:
        by_id.setdefault(row["source_id"], []).append(row)
    assert [(r["stage"], r["reason"]) for r in by_id["early"]] == [("goal", "goal_too_early")]
    assert "14 leaves 15 frames" in by_id["early"][0]["detail"]
    assert [r["reason"] for r in by_id["past"]] == ["insufficient_frames"]
    assert [r["reason"] for r in by_id["beyond"]] == ["insufficient_frames"]
    assert [(r["stage"], r["reason"]) for r in by_id["missing"]] == [("decode", "video_missing")]
    assert {r["partition"] for r in rows} == {"p0000"}
    # Narration in the first 1.5 s of a video is too early for a 16-frame goal clip at 10 fps.
    early_transcripts = [r for r in rows if r["reason"] == "goal_too_early" and r["source_id"] != "early"]
    assert early_transcripts and all("(transcript)" in r["input"] for r in early_transcripts)
    goals = {meta["source_id"]: meta for _, _, meta in _goals(final).values()}
    assert goals["edge"]["frame_indices"] == list(range(16))
    assert goals["clamp"]["success_frame"] == 150  # 151 frames: 15.1 s lies on the end, clamped to the last
    assert goals["clamp"]["success_time"] == 15.1
    assert report.failures == {"goal_too_early": 1 + len(early_transcripts), "insufficient_frames": 2,
                               "video_missing": 1}


def test_partition_outputs_agree(goal_run):
    storage, _, report, _ = goal_run
    final = storage.goal_partition_dir("p0000")
    shards, clips, problems = verify_partition(final)
    assert problems == [] and clips == report.goals_written and shards == len(report.shards) > 1
    assert json.loads((final / "partition.json").read_text()) == dataclasses.asdict(report)
    assert sum(report.by_miner.values()) == report.goals_written
    assert set(report.by_miner) == {"trial", "transcript", "test"}
    goals = _goals(final)
    keys = []
    for index_path in shard_indexes(final):
        table = pq.read_table(index_path)
        assert table.schema.equals(GOAL_INDEX_SCHEMA)
        for row in table.to_pylist():
            keys.append(row["key"])
            _, caption, meta = goals[row["key"]]
            for column in ("source", "source_id", "video_path", "miner", "task", "instruction", "confidence",
                           "success_time", "success_frame", "frame_timestamps"):
                assert row[column] == meta[column], column
            assert row["caption"] == caption and row["shard"] == index_path.stem
        stats = json.loads(index_path.with_name(f"{index_path.stem}_stats.json").read_text())
        assert stats["clips_written"] == table.num_rows
    assert keys == sorted(goals, key=keys.index) and len(set(keys)) == len(keys)
    assert all(name in GOAL_INDEX_SCHEMA.names for name in (
        "key", "shard", "source", "source_id", "miner", "task", "instruction", "confidence", "success_time",
        "frame_timestamps"))
    assert not any(storage.goal_staging_dir.iterdir())


def test_rerun_is_byte_identical_whatever_the_moment_order(crafter_corpus, goal_run, tmp_path):
    storage, moments, report, _ = goal_run
    shuffled = list(moments)
    random.Random(1).shuffle(shuffled)
    other = StoragePaths(tmp_path / "data")
    debris = other.goal_staging_dir / "p0000-deadbeef0000"  # a killed run's staging folder
    debris.mkdir(parents=True)
    (debris / "p0000-00000.tar").write_bytes(b"partial")
    (other.goal_partition_dir("p0000")).mkdir(parents=True)
    (other.goal_partition_dir("p0000") / "stale.tar").write_bytes(b"old")  # a previous build: replaced
    again = build_goal_partition("p0000", shuffled, crafter_corpus, other, decoder="pyav", shard_target_bytes=3_000_000)
    assert again.goals_written == report.goals_written and again.shards == report.shards
    assert not debris.exists()
    first, second = storage.goal_partition_dir("p0000"), other.goal_partition_dir("p0000")
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in second.iterdir())
    for name in names:
        if name.endswith(".tar") or (name.endswith(".parquet")):
            assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_goal_frame_indices():
    assert goal_frame_indices(15) == list(range(16))
    assert goal_frame_indices(100)[-1] == 100 and len(goal_frame_indices(100)) == 16
    with pytest.raises(InputError) as exc:
        goal_frame_indices(14)
    assert exc.value.reason == "goal_too_early"


def test_a_top_rated_minestudio_video_gives_a_goal_clip_ending_on_its_last_frame(tmp_path):
    root = tmp_path / "corpus"
    (root / "eval_video").mkdir(parents=True)
    shutil.copy(FIXTURES / "minestudio" / "combat_spider_7.mp4", root / "eval_video")
    moments, quarantined = mine_ratings([FIXTURES / "minestudio" / "combat_spider.json"], root)
    assert quarantined == [] and [m.success_frame for m in moments] == [599]
    storage = StoragePaths(tmp_path / "data")
    report = build_goal_partition("p0001", moments, root, storage)
    assert report.goals_written == 1 and report.failures == {}
    ((frames, caption, meta),) = _goals(storage.goal_partition_dir("p0001")).values()
    assert meta["frame_indices"] == list(range(584, 600)) and meta["fps"] == 30.0
    assert (caption, meta["task"], meta["confidence"], meta["miner"]) == ("combat spider", "combat_spider", 1.0, "rating")
    with get_decoder("pyav").open(root / "eval_video" / "combat_spider_7.mp4") as handle:
        direct = handle.read([599]).frames[0]
    assert np.abs(frames[-1].astype(np.int16) - direct.astype(np.int16)).mean() < JPEG_MEAN_ERROR


def test_miner_rejects_join_the_partition_quarantine(crafter_corpus, tmp_path):
    trials, _ = scan_trials(crafter_corpus / "trials", crafter_corpus)
    moments, _ = mine_trials(trials)
    rejects = [QuarantineRecord("vlm_rating_res/x.json#2", "rating", "rating_video_missing", "x_8.mp4: no file", "x_8")]
    storage = StoragePaths(tmp_path / "data")
    report = build_goal_partition("p0002", moments[:1], crafter_corpus, storage, quarantine=rejects)
    assert report.goals_written == 1 and report.failures == {"rating_video_missing": 1}
    final = storage.goal_partition_dir("p0002")
    rows = pq.read_table(final / "quarantine.parquet").to_pylist()
    assert rows == [{"partition": "p0002", "input": "vlm_rating_res/x.json#2", "source_id": "x_8", "stage": "rating",
                     "reason": "rating_video_missing", "detail": "x_8.mp4: no file"}]
    (index,) = shard_indexes(final)
    stats = json.loads(index.with_name(f"{index.stem}_stats.json").read_text())
    assert stats["failures"] == {"rating_video_missing": 1} and stats["trials_seen"] == 1
