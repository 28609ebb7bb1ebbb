"""The user's success visuals as the evaluation's references (issue 12 §3): goal clips of their STEVE-1
trials held out whole or also trained on ([splits] steve1_trials), and imported success-visual
pickles and recorded samples ([evaluation] success_visuals), each marked with its source."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from goalcraft.config import ClipsSettings, GoalSpaceSettings, GoalsSettings, SplitSettings
from goalcraft.data.clip_stage import ClipStageSettings
from goalcraft.models.mineclip import MINECLIP_CONFIGS, MineCLIP, save_mineclip
from goalcraft.stages import StageError
from goalcraft.stages.clips import clip_partition, goal_partition
from goalcraft.stages.embeddings import embed_goal_clips, user_trial_ids
from goalcraft.stages.evaluation import _held_out, imported_references
from goalcraft.stages.ingest import ingest_manifests, ingest_task_vocabulary, ingest_trials
from goalcraft.storage import StoragePaths


@pytest.fixture(scope="module")
def mixed(crafter_corpus, aimc_corpus_master, tmp_path_factory):
    """The Crafter corpus (videos, goalcraft trials) with the user's aimc result folders and recorded
    samples beside it, through ingest, clips and goal clips, and a random 512-d goal space."""
    import shutil

    corpus = tmp_path_factory.mktemp("mixed") / "corpus"
    shutil.copytree(crafter_corpus, corpus)
    for folder in ("evaluation", "train_samples"):
        shutil.copytree(aimc_corpus_master / folder, corpus / folder)
    paths = StoragePaths(corpus.parent / "data")
    ingest_manifests(paths, corpus, [corpus / "manifest.jsonl"], 1)
    ingest_trials(paths, corpus, corpus / "trials", 1, steve1_results_dirs=["evaluation"],
                  recorded_samples_dirs=["train_samples"])
    ingest_task_vocabulary(paths, corpus, GoalsSettings())
    clip_partition(paths, corpus, "p0000", 1, ClipStageSettings())
    goal_partition(paths, corpus, "p0000", 1, GoalsSettings(), ClipsSettings())
    torch.manual_seed(0)
    save_mineclip(MineCLIP(dataclasses.replace(MINECLIP_CONFIGS["tiny"], embed_dim=512)), paths.goal_space_dir / "best")
    return corpus, paths


@pytest.mark.slow
def test_the_users_trials_are_held_out_whole_or_trained_on_and_still_references(mixed):
    corpus, paths = mixed
    user = user_trial_ids(paths)
    assert len(user) == 6  # 4 result trials (3 combat_pig, 1 harvest_1_log) and 2 recorded samples
    for mode, split, label in (("references", "test", "steve1_trials"),
                               ("references_and_training", "train", "steve1_trials:trained_on")):
        meta = embed_goal_clips(paths, GoalSpaceSettings(), SplitSettings(steve1_trials=mode)).metadata
        table = pq.read_table(paths.goal_embeddings_table).to_pylist()
        theirs = [r for r in table if r["source_id"] in user]
        assert len(theirs) == 4  # their successful trials: combat_pig 1 and 3, harvest_1_log 1, harvest_1_dirt 1
        assert {(r["split"], r["reference"]) for r in theirs} == {(split, label)}
        assert meta["references"][label] == 4
        _, clips, training = _held_out(paths)
        assert sorted(s for s in clips.sources if s == label) == [label] * 4
        assert clips.sources.count("test_split") == sum(r["reference"] == "test_split" for r in table)
        assert {r["key"] for r in theirs} <= set(clips.keys)
        # Trained on or not: the training goals hold them exactly when the mode says so.
        assert (len(training.tasks) == sum(r["split"] in ("train", "val") for r in table))
        assert ("combat_pig" in training.tasks) == (mode == "references_and_training")


def test_imported_pickles_and_recorded_samples_become_references(mixed, tmp_path):
    corpus, paths = mixed
    rng = np.random.default_rng(0)
    grouped = {"combat_pig": {"instruction": "hunt pig", "n_success_trials": 2, "embed_dim": 512,
                              "success_visual_embeds": [rng.normal(size=512).astype(np.float32) for _ in range(2)]},
               "broken": {"instruction": "x", "success_visual_embeds": [np.ones(7, np.float32)]}}
    (corpus / "success_visuals.pkl").write_bytes(pickle.dumps(grouped))
    clips, notes = imported_references(["success_visuals.pkl", "train_samples"], corpus, 512)
    assert clips.tasks == ["combat_pig", "combat_pig", "harvest_1_dirt"]
    assert clips.sources == ["imported:success_visuals.pkl"] * 2 + ["imported:train_samples"]
    assert np.array_equal(clips.embeddings[0], grouped["combat_pig"]["success_visual_embeds"][0])
    assert np.array_equal(clips.embeddings[2], np.linspace(-1, 1, 512, dtype=np.float32))  # trial1's visual_embeds.pkl
    assert len(notes) == 1 and "success_visuals.pkl#broken" in notes[0] and "embedding_invalid" in notes[0]
    with pytest.raises(StageError, match="success_visuals: .*no_such.pkl.* does not exist"):
        imported_references(["no_such.pkl"], corpus, 512)
    evil = corpus / "evil.pkl"
    evil.write_bytes(b"cos\nsystem\n(Vtouch " + str(tmp_path / "pwned").encode() + b"\ntR.")
    with pytest.raises(StageError, match="refus"):
        imported_references(["evil.pkl"], corpus, 512)
    assert not (tmp_path / "pwned").exists()
