"""The asset bodies as plain functions, called without Dagster on the session's Crafter corpus."""

from __future__ import annotations

import dataclasses

import dagster as dg
import pyarrow.parquet as pq
import pytest
import torch

from goalcraft.config import ClipsSettings, GoalSpaceSettings, GoalsSettings, PredictorSettings, SplitSettings
from goalcraft.data.clip_stage import ClipStageSettings
from goalcraft.models.mineclip import MINECLIP_CONFIGS, MineCLIP, save_mineclip
from goalcraft.stages import Markdown, StageError, StageResult, Url
from goalcraft.stages.clips import clip_partition, goal_partition
from goalcraft.stages.embeddings import embed_clip_partition, embed_goal_clips
from goalcraft.stages.evaluation import write_evaluation_report
from goalcraft.stages.ingest import ingest_manifests, ingest_task_vocabulary, ingest_trials
from goalcraft.stages.predictor import predictor_config, stage_spec
from goalcraft.storage import StoragePaths


@pytest.mark.slow
def test_ingest_clip_goal_and_embedding_stages_without_dagster(crafter_corpus, tmp_path):
    from goalcraft.crafter.tasks import TASKS

    paths = StoragePaths(tmp_path / "data")
    manifest = ingest_manifests(paths, crafter_corpus, [crafter_corpus / "manifest.jsonl"], 1).metadata
    assert (manifest["videos"], manifest["rejected"], manifest["table"]) == (3, 0, paths.manifest_table)
    trials = ingest_trials(paths, crafter_corpus, crafter_corpus / "trials", 1).metadata
    assert trials["trials"] == 3 and trials["steve1_layout"] == 1
    vocabulary = ingest_task_vocabulary(paths, crafter_corpus, GoalsSettings())
    assert vocabulary.metadata["tasks"] == len(TASKS) + 11 and vocabulary.warnings == []

    clips = clip_partition(paths, crafter_corpus, "p0000", 1, ClipStageSettings()).metadata
    indexed = sum(pq.read_metadata(p).num_rows for p in paths.clip_partition_dir("p0000").glob("p*-*.parquet"))
    assert clips["clips_written"] == indexed > 0 and clips["videos_seen"] == 3 and clips["trials_seen"] == 3
    goals = goal_partition(paths, crafter_corpus, "p0000", 1, GoalsSettings(), ClipsSettings())
    assert goals.metadata["goals_written"] > 0 and goals.metadata["notes"] == [] and goals.warnings == []

    torch.manual_seed(0)
    save_mineclip(MineCLIP(dataclasses.replace(MINECLIP_CONFIGS["tiny"], embed_dim=512)), paths.goal_space_dir / "best")
    embedded = embed_goal_clips(paths, GoalSpaceSettings(), SplitSettings()).metadata
    assert embedded["rows"] == goals.metadata["goals_written"] == sum(embedded["splits"].values())
    assert embed_clip_partition(paths, GoalSpaceSettings(), "p0000").metadata["rows"] == clips["clips_written"]


def test_stage_errors_are_one_line_reasons(crafter_corpus, tmp_path):
    paths = StoragePaths(tmp_path / "data")
    with pytest.raises(StageError, match=r"manifest .*nope.jsonl' not found .*manifests = \[\]"):
        ingest_manifests(paths, crafter_corpus, [crafter_corpus / "nope.jsonl"], 1)
    ingest_manifests(paths, crafter_corpus, [crafter_corpus / "manifest.jsonl"], 1)
    ingest_trials(paths, crafter_corpus, crafter_corpus / "trials", 1)
    with pytest.raises(StageError, match="split into 1 partitions but the clip partitions number 4"):
        clip_partition(paths, crafter_corpus, "p0000", 4, ClipStageSettings())
    with pytest.raises(StageError, match="task file 'mine.yaml' not found"):
        ingest_task_vocabulary(paths, crafter_corpus, GoalsSettings(task_files=["mine.yaml"]))
    with pytest.raises(StageError, match="preset 'nope' is not one of"):
        predictor_config(PredictorSettings(preset="nope"))
    with pytest.raises(StageError, match="no evaluation run found"):
        write_evaluation_report(paths)


def test_predictor_stage_specs_carry_the_stage_settings(tmp_path):
    paths = StoragePaths(tmp_path)
    settings = PredictorSettings(preset="tiny-minilm", aligner="attention")
    one, two = stage_spec(paths, settings, 1), stage_spec(paths, settings, 2)
    assert one.settings == settings.stage1.model_dump() and two.settings == settings.stage2.model_dump()
    assert (one.out_dir, two.out_dir) == (str(paths.predictor_stage1_dir), str(paths.goal_predictor_dir))
    assert two.stage1_dir == str(paths.predictor_stage1_dir / "best") and two.config == {"aligner": "attention"}
    assert one.tasks_file == two.tasks_file == str(paths.task_vocabulary_file)
    # Replicate 2 is a whole predictor of its own: both stages at seed + 2, its aligner on its own stage 1.
    one, two = stage_spec(paths, settings, 1, replicate=2), stage_spec(paths, settings, 2, replicate=2)
    assert one.out_dir == str(tmp_path / "models" / "predictor_stage1_r2") and one.settings["seed"] == 2
    assert two.out_dir == str(tmp_path / "models" / "goal_predictor_r2") and two.settings["seed"] == 2
    assert two.stage1_dir == str(tmp_path / "models" / "predictor_stage1_r2" / "best")


def test_materialize_converts_figures_and_failures(tmp_path):
    from goalcraft.assets.materialize import materialize

    result = materialize(None, lambda: StageResult({"n": 3, "table": tmp_path / "t.parquet", "md": Markdown("| a |"),
                                                    "by": {"x": 1}, "link": Url("file:///r.html")}))
    meta = result.metadata
    assert meta["n"] == 3 and meta["table"] == dg.MetadataValue.path(str(tmp_path / "t.parquet"))
    assert meta["md"] == dg.MetadataValue.md("| a |") and meta["by"] == dg.MetadataValue.json({"x": 1})
    assert meta["link"] == dg.MetadataValue.url("file:///r.html")

    def fails() -> StageResult:
        raise StageError("no clips to train the goal space on")

    with pytest.raises(dg.Failure, match="no clips to train the goal space on"):
        materialize(None, fails)


def test_prior_trains_on_every_phrasing_of_a_clips_task():
    """The fair comparison: the prior sees each goal clip with its own instruction and each paraphrase of
    its task (what the goal predictor samples from), a clip of a task without paraphrases once."""
    import pyarrow as pa

    from goalcraft.stages.training import prior_training_pairs

    goals = pa.table({"instruction": ["chop a tree", "drink water", "collect wood"],
                      "task": ["collect_wood", "collect_drink", "collect_wood"]})
    texts, rows = prior_training_pairs(goals, {"collect_wood": ["collect wood", "gather some logs"]})
    assert list(zip(texts, rows.tolist())) == [
        ("chop a tree", 0), ("collect wood", 0), ("gather some logs", 0),
        ("drink water", 1),
        ("collect wood", 2), ("gather some logs", 2)]


@pytest.mark.slow
def test_goal_clips_say_how_many_show_their_event_and_a_measured_lag_makes_them_all(tmp_path):
    from goalcraft.crafter.corpus import generate_crafter_corpus

    corpus = tmp_path / "corpus"
    generate_crafter_corpus(corpus, seed=3, n_videos=2, steps_per_video=200, n_trials=2, n_steve1_episodes=0,
                            transcripts="json")
    assert sorted(p.suffix for p in (corpus / "transcripts").iterdir()) == [".json", ".json"]
    paths = StoragePaths(tmp_path / "data")
    ingest_manifests(paths, corpus, [corpus / "manifest.jsonl"], 1)
    ingest_trials(paths, corpus, corpus / "trials", 1)
    ingest_task_vocabulary(paths, corpus, GoalsSettings())
    coverage = {lag: goal_partition(paths, corpus, "p0000", 1, GoalsSettings(transcript_lag_s=lag),
                                    ClipsSettings()).metadata["event_coverage"] for lag in (0.0, 0.6)}
    for c in coverage.values():
        assert c["trial"]["coverage"] == 1.0  # a trial's clip ends on its success frame
        assert c["all"]["clips"] == c["trial"]["clips"] + c["transcript"]["clips"]
    # The generator ends a narrated line 0.8-2.0 s after the unlock; a goal clip spans 1.5 s, so at
    # the speech end it misses the unlock whenever the narrator went on for more than 1.5 s, and 0.6 s
    # earlier (0.2-1.4 s after the unlock) it always holds it.
    assert coverage[0.6]["transcript"]["coverage"] == 1.0
    assert coverage[0.0]["transcript"]["coverage"] < 0.9
    assert coverage[0.0]["transcript"]["clips"] == coverage[0.6]["transcript"]["clips"] > 10
    # A damaged events file: its bad lines are skipped and said, the rest still measures.
    with open(corpus / "ground_truth" / "events.jsonl", "a", encoding="utf-8") as f:
        f.write("not an event\n")
    damaged = goal_partition(paths, corpus, "p0000", 1, GoalsSettings(transcript_lag_s=0.6), ClipsSettings())
    assert damaged.metadata["event_coverage"] == coverage[0.6]
    assert any("1 line(s) of ground_truth/events.jsonl are not events" in w for w in damaged.warnings)
    # exclusive_s: moments with another task's moment within 2 s are left out, each with its reason;
    # every clip that stays shows its own event and no other task's (the free player crowds them).
    exclusive = goal_partition(paths, corpus, "p0000", 1, GoalsSettings(transcript_lag_s=0.6, exclusive_s=2.0),
                               ClipsSettings()).metadata
    dropped = exclusive["failures_by_reason"]["ambiguous_moment"]
    assert dropped > 0 and coverage[0.6]["transcript"]["purity"] < 1.0
    assert exclusive["event_coverage"]["transcript"]["clips"] == coverage[0.6]["transcript"]["clips"] - dropped
    assert exclusive["event_coverage"]["transcript"]["purity"] == 1.0
