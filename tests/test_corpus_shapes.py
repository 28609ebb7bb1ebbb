"""Corpus shapes a real user has, through real Dagster materializations of every data stage (ingest,
clips, goal clips, goal space, embeddings), with DuckDB reading back what each wrote.

- videos only: MineDojo's YouTube corpus is videos + transcripts and no trials folder;
- trials only: agent recordings and no manifest rows (``[paths] manifests = []``);
- an empty manifest and no trials: every stage runs, writes nothing, and says so.

The demo corpus always has both videos and trials, so these shapes are built from it here.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from goalcraft.config import config_from_dict
from goalcraft.data.manifest import read_manifests
from goalcraft.data.mining import NOTHING_TO_MINE
from goalcraft.data.task_vocabulary import load_tasks_json
from goalcraft.data.trials import scan_trials
from goalcraft.definitions import build_definitions
from goalcraft.models.mineclip import MINECLIP_CONFIGS, MineCLIP, save_mineclip
from goalcraft.sql import connect
from goalcraft.storage import StoragePaths

GOAL_DIM = 512  # the embedding checks hold every goal space to STEVE-1's width
GOAL_SPACE_STEPS = 4  # the training itself is tested elsewhere; here it only has to produce a model


def _corpus(crafter_corpus: Path, root: Path, *, videos: bool, trials: bool, tasks: bool = True) -> Path:
    root.mkdir(parents=True)
    if videos:
        for name in ("videos", "transcripts"):
            shutil.copytree(crafter_corpus / name, root / name)
        shutil.copy(crafter_corpus / "manifest.jsonl", root / "manifest.jsonl")
    else:
        (root / "manifest.jsonl").write_text("")
    if trials:
        shutil.copytree(crafter_corpus / "trials", root / "trials")
    if tasks:
        shutil.copy(crafter_corpus / "tasks.json", root / "tasks.json")
    return root


def _defs(corpus: Path, data: Path, **sections) -> dg.Definitions:
    raw = {"paths": {"data_root": str(data), "corpus_root": str(corpus)}, "partitions": {"count": 1},
           "goal_space": {"steps": GOAL_SPACE_STEPS}}
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return build_definitions(config_from_dict(raw, data))


def _run(defs: dg.Definitions, job: str, partition: str | None = None, *, instance) -> dict[str, dict]:
    """Materialize a job (or one partition of it); the metadata of each materialized asset."""
    result = defs.resolve_job_def(job).execute_in_process(instance=instance, partition_key=partition)
    assert result.success
    mats = [e.event_specific_data.materialization for e in result.get_asset_materialization_events()]
    return {m.asset_key.to_user_string(): {k: v.value for k, v in m.metadata.items()} for m in mats}


def _failure(defs: dg.Definitions, selection: list[str], *, instance) -> str:
    result = _materialize(defs, selection, instance=instance)
    assert not result.success
    failures = [e for e in result.all_events if e.is_step_failure]
    return failures[0].step_failure_data.error.message


def _stages(defs: dg.Definitions, instance) -> dict[str, dict]:
    """Ingest, then the clip and goal stages of the one partition."""
    meta = _run(defs, "ingest_job", instance=instance)
    meta |= _run(defs, "clips_job", "p0000", instance=instance)
    meta |= _run(defs, "goals_job", "p0000", instance=instance)
    return meta


def _materialize(defs: dg.Definitions, selection: list[str], *, instance) -> dg.ExecuteInProcessResult:
    job = defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(instance=instance, asset_selection=[dg.AssetKey(k) for k in selection],
                                  raise_on_error=False)


def _goal_space_from_elsewhere(data: Path) -> None:
    """A tiny MineCLIP with STEVE-1's 512-d goal space, saved where the goal_space_model asset puts its
    model (random weights: the embedding stage is under test, not the goal space)."""
    torch.manual_seed(0)
    config = dataclasses.replace(MINECLIP_CONFIGS["tiny"], embed_dim=GOAL_DIM)
    save_mineclip(MineCLIP(config), StoragePaths(data).goal_space_dir / "best")


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


@pytest.mark.slow
def test_video_only_corpus_runs_every_stage_and_mines_goals_from_narration(crafter_corpus, tmp_path, instance):
    corpus = _corpus(crafter_corpus, tmp_path / "corpus", videos=True, trials=False)
    data = tmp_path / "data"
    defs = _defs(corpus, data, goals={"task_files": ["tasks.json"], "steve1_prompts": False})
    meta = _stages(defs, instance)
    videos, _ = read_manifests([corpus / "manifest.jsonl"], corpus)
    assert meta["corpus_manifest"]["videos"] == len(videos) == 3
    assert meta["agent_trials"]["trials"] == 0
    trials_table = pq.read_table(StoragePaths(data).trials_table)
    assert trials_table.num_rows == 0 and trials_table.schema.field("success").type == "bool"

    con = connect(data)
    assert con.execute("SELECT count(*) FROM trials").fetchone() == (0,)
    sources = con.execute("SELECT source, count(DISTINCT source_id), count(*) FROM clips GROUP BY source").fetchall()
    assert [(s, n) for s, n, _ in sources] == [("video", 3)]
    assert meta["video_clips"]["clips_written"] == sources[0][2] > 0
    assert meta["video_clips"]["trials_seen"] == 0

    # Goal clips come from the transcripts alone, each naming a task of the vocabulary.
    tasks = {t.name for t in load_tasks_json(corpus / "tasks.json")}
    goals = con.execute("SELECT miner, task, source FROM goal_clips").fetchall()
    assert goals and {(m, s) for m, _, s in goals} == {("transcript", "video")}
    assert {t for _, t, _ in goals} <= tasks
    assert meta["goal_clips"]["goals_written"] == len(goals)
    assert meta["goal_clips"]["notes"] == []

    # Goal space, goal embeddings and clip embeddings: one row per clip, keys and order as indexed.
    assert _materialize(defs, ["goal_space_model", "goal_embeddings"], instance=instance).success
    clip_emb = _run(defs, "clip_embeddings_job", "p0000", instance=instance)["clip_embeddings"]
    assert clip_emb["rows"] == meta["video_clips"]["clips_written"]
    con = connect(data)  # the embedding views appear once the tables exist
    assert con.execute("SELECT count(*) FROM goal_clips g JOIN goal_embeddings e USING (key)").fetchone() == (len(goals),)
    assert con.execute("SELECT count(*), bool_and(isfinite(norm)) FROM goal_embeddings").fetchone() == (len(goals), True)
    clip_keys = con.execute("SELECT key FROM clips ORDER BY shard, key").fetchall()
    assert con.execute("SELECT key FROM clip_embeddings ORDER BY shard, key").fetchall() == clip_keys


@pytest.mark.slow
def test_video_only_corpus_without_vocabulary_says_why_it_has_no_goal_clips(crafter_corpus, tmp_path, instance):
    corpus = _corpus(crafter_corpus, tmp_path / "corpus", videos=True, trials=False, tasks=False)
    data = tmp_path / "data"
    defs = _defs(corpus, data, goals={"task_files": [], "steve1_prompts": False})
    meta = _stages(defs, instance)
    assert meta["video_clips"]["clips_written"] > 0
    assert meta["goal_clips"]["goals_written"] == 0
    assert meta["goal_clips"]["notes"] == [NOTHING_TO_MINE]
    assert "no trials and no task vocabulary" in NOTHING_TO_MINE
    (note,) = meta["task_vocabulary"]["notes"]  # which stages run without a vocabulary, and how
    assert meta["task_vocabulary"]["tasks"] == 0 and note.startswith("the task vocabulary is empty: goal_clips")
    con = connect(data)
    assert con.execute("SELECT count(*) FROM goal_clips").fetchone() == (0,)
    # The prior cannot train on nothing, and says so in one line (no traceback of pyarrow).
    message = _failure(defs, ["goal_space_model", "goal_embeddings", "steve1_prior"], instance=instance)
    assert "only 0 goal clips: too few to train the prior" in message


@pytest.mark.slow
def test_trials_only_corpus_tiles_trials_and_mines_each_successful_one(crafter_corpus, tmp_path, instance):
    corpus = _corpus(crafter_corpus, tmp_path / "corpus", videos=False, trials=True)
    (corpus / "manifest.jsonl").unlink()  # no manifest at all: the setting says so
    data = tmp_path / "data"
    defs = _defs(corpus, data, paths={"manifests": []})
    meta = _stages(defs, instance)
    trials, _ = scan_trials(corpus / "trials", corpus)
    successful = {t.id for t in trials if t.success}
    assert meta["corpus_manifest"]["videos"] == 0 and meta["agent_trials"]["trials"] == len(trials) == 3
    manifest = pq.read_table(StoragePaths(data).manifest_table)
    assert manifest.num_rows == 0 and manifest.schema.field("duration").type == "double"

    con = connect(data)
    rows = con.execute("SELECT source, source_id FROM clips").fetchall()
    assert {s for s, _ in rows} == {"trial"} and {i for _, i in rows} == {t.id for t in trials}
    goals = con.execute("SELECT source_id, miner FROM goal_clips ORDER BY source_id").fetchall()
    assert goals == [(i, "trial") for i in sorted(successful)] and successful

    # Three short trials are too few clips to train a goal space on (it says so); embed with one from elsewhere.
    assert "no validation clips" in _failure(defs, ["goal_space_model"], instance=instance)
    _goal_space_from_elsewhere(data)
    assert _materialize(defs, ["goal_embeddings"], instance=instance).success
    con = connect(data)
    assert sorted(con.execute("SELECT source_id FROM goal_embeddings").fetchall()) == [(i,) for i in sorted(successful)]
    assert _run(defs, "clip_embeddings_job", "p0000", instance=instance)["clip_embeddings"]["rows"] == len(rows)


def test_missing_manifest_is_one_clear_line_naming_the_setting(crafter_corpus, tmp_path, instance):
    corpus = _corpus(crafter_corpus, tmp_path / "corpus", videos=False, trials=True)
    (corpus / "manifest.jsonl").unlink()
    defs = _defs(corpus, tmp_path / "data")
    message = _failure(defs, ["corpus_manifest"], instance=instance)
    assert "not found" in message and "manifests = []" in message


@pytest.mark.slow
def test_empty_manifest_runs_every_stage_to_empty_typed_outputs(crafter_corpus, tmp_path, instance):
    corpus = _corpus(crafter_corpus, tmp_path / "corpus", videos=False, trials=False, tasks=False)
    data = tmp_path / "data"
    defs = _defs(corpus, data, goals={"task_files": [], "steve1_prompts": False})
    meta = _stages(defs, instance)
    assert meta["corpus_manifest"]["videos"] == 0 and meta["agent_trials"]["trials"] == 0
    assert meta["video_clips"]["clips_written"] == 0 and meta["video_clips"]["shards"] == 0
    assert meta["goal_clips"]["goals_written"] == 0 and meta["goal_clips"]["notes"] == [NOTHING_TO_MINE]
    con = connect(data)
    assert con.execute("SELECT count(*) FROM clips").fetchone() == (0,)
    assert con.execute("SELECT count(*), count(task) FROM goal_clips").fetchone() == (0, 0)

    message = _failure(defs, ["goal_space_model"], instance=instance)
    assert "no clips to train the goal space on: 1 clip partition(s) materialized, 0 clips" in message

    # With a goal space from elsewhere, both embedding tables are empty with their full typed columns.
    _goal_space_from_elsewhere(data)
    result = _materialize(defs, ["goal_embeddings"], instance=instance)
    assert result.success
    _run(defs, "clip_embeddings_job", "p0000", instance=instance)
    con = connect(data)
    # Zero rows, and the columns and types a full table has (fixed-size lists in the Arrow schema).
    goal_schema = pq.read_schema(StoragePaths(data).goal_embeddings_table)
    assert goal_schema.field("task").type == pa.string()
    assert goal_schema.field("embedding").type == pa.list_(pa.float32(), GOAL_DIM)
    assert goal_schema.field("frame_features").type == pa.list_(pa.list_(pa.float32(), GOAL_DIM), 16)
    clip_schema = pq.read_schema(StoragePaths(data).clip_embeddings_table("p0000"))
    assert clip_schema.field("caption").type == pa.string()
    assert clip_schema.field("embedding").type == pa.list_(pa.float32(), GOAL_DIM)
    assert con.execute("SELECT count(*), count(task), count(embedding) FROM goal_embeddings").fetchone() == (0, 0, 0)
    assert con.execute("SELECT count(*), count(caption) FROM clip_embeddings").fetchone() == (0, 0)
    # The blocking check on an empty table passes (nothing is wrong with no rows) and says it saw none.
    checks = result.get_asset_check_evaluations()
    assert [(c.passed, c.metadata["rows"].value) for c in checks] == [(True, 0)]


@pytest.mark.slow
def test_steve1_evaluation_results_and_recorded_samples_flow_into_goal_clips(aimc_corpus, aimc, tmp_path, instance):
    """A corpus of a user's own STEVE-1 evaluation files (konder/aimc layouts, conftest.aimc_corpus) and
    nothing else: ingest reads the result folders and recorded samples, the clip stage tiles their
    footage (mp4s and PNG frame folders), and every successful trial gives a goal clip ending at
    frame steps - 1, checked by the colour that encodes each frame's index."""
    import numpy as np

    from goalcraft.data.shards import iter_shard, read_clip, shard_indexes

    data = tmp_path / "data"
    (aimc_corpus / aimc.SAMPLES / "harvest_1_dirt" / "trial9").mkdir()  # no trial_info.json: quarantined
    defs = _defs(aimc_corpus, data, paths={"manifests": [], "steve1_results_dirs": ["evaluation"],
                                           "recorded_samples_dirs": [aimc.SAMPLES]},
                 goals={"task_files": [], "steve1_prompts": False})
    meta = _stages(defs, instance)
    trials = meta["agent_trials"]
    assert (trials["trials"], trials["steve1_results"], trials["recorded_samples"], trials["successful"]) == (6, 4, 2, 4)
    assert trials["rejected"] == 1 and trials["rejected: trial_metadata_missing"] == 1
    assert meta["video_clips"]["trials_seen"] == 6 and meta["video_clips"]["clips_written"] > 0

    con = connect(data)
    clip_sources = {r[0] for r in con.execute("SELECT DISTINCT source_id FROM clips").fetchall()}
    assert len(clip_sources) == 6
    expected = {  # source id -> (task, instruction, success frame = steps - 1)
        aimc.RESULT.replace("/", "__") + "__trial1": ("combat_pig", "hunt pig", 23),
        aimc.RESULT.replace("/", "__") + "__trial3": ("combat_pig", "hunt pig", 19),
        aimc.OLD_RESULT.replace("/", "__") + "__trial1": ("harvest_1_log", "砍树获取原木", 17),
        f"{aimc.SAMPLES}__harvest_1_dirt__trial1": ("harvest_1_dirt", "dig dirt", 21),
    }
    rows = con.execute("SELECT source_id, task, instruction, success_frame, miner FROM goal_clips").fetchall()
    assert {r[0]: r[1:4] for r in rows} == expected and {r[4] for r in rows} == {"trial"}
    assert meta["goal_clips"]["goals_written"] == 4

    clips = {}
    for index in shard_indexes(StoragePaths(data).goal_partition_dir("p0000")):
        for sample in iter_shard(index.with_suffix(".tar")):
            frames, caption, clip_meta = read_clip(sample)
            clips[clip_meta["source_id"]] = (frames, caption, clip_meta)
    for source_id, (task, instruction, frame) in expected.items():
        frames, caption, clip_meta = clips[source_id]
        assert caption == instruction and clip_meta["task"] == task
        assert clip_meta["frame_indices"] == list(range(frame - 15, frame + 1)) and clip_meta["fps"] == 20.0
        # the last frame shows frame steps - 1, the first frame steps - 16 (JPEG q90 over H.264 or PNG)
        for pixels, index in ((frames[-1], frame), (frames[0], frame - 15)):
            assert np.abs(pixels.reshape(-1, 3).mean(0) - aimc.colour(index)).max() < 6
