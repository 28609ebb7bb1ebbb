"""The user's real models in the pipeline: MineCLIP's attn.pth as the goal space (no training) and
STEVE-1's steve1_prior.pt as the baseline (no training), tiny checkpoints in the original layouts;
and the prior sampled exactly as STEVE-1 samples it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from goalcraft.config import GoalSpaceSettings, GoalsSettings, PriorSettings, SplitSettings
from goalcraft.data.clip_stage import ClipStageSettings
from goalcraft.models.checkpoints import CheckpointError
from goalcraft.models.clip_tokenizer import tokenize
from goalcraft.models.mineclip import MINECLIP_CONFIGS, load_mineclip, load_mineclip_checkpoint
from goalcraft.models.prior import PriorConfig, load_prior, load_steve1_prior, prior_config_of
from goalcraft.stages import StageError
from goalcraft.stages.clips import clip_partition, goal_partition
from goalcraft.stages.embeddings import embed_goal_clips
from goalcraft.stages.ingest import ingest_manifests, ingest_task_vocabulary, ingest_trials
from goalcraft.stages.training import (
    IMPORTED_FILE,
    imported_checkpoint,
    prior_replicate_dirs,
    train_goal_space_model,
    train_steve1_prior,
)
from goalcraft.storage import StoragePaths


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_prior_sizes_are_read_from_the_file(user_models):
    prior = load_steve1_prior(user_models.prior, config=None)
    assert prior.config == PriorConfig(**user_models.prior_sizes)
    assert prior_config_of(torch.load(user_models.prior, weights_only=True)) == prior.config
    assert prior_config_of({}) == PriorConfig(512, 512, 512)  # the released sizes; strict loading names the rest
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_steve1_prior(user_models.prior)  # the released sizes do not fit this file


@pytest.fixture(scope="module")
def staged(crafter_corpus, tmp_path_factory):
    """The Crafter corpus through ingest, clips and goal clips (STEVE-1's resize, as for the real MineCLIP)."""
    paths = StoragePaths(tmp_path_factory.mktemp("real") / "data")
    ingest_manifests(paths, crafter_corpus, [crafter_corpus / "manifest.jsonl"], 1)
    ingest_trials(paths, crafter_corpus, crafter_corpus / "trials", 1)
    ingest_task_vocabulary(paths, crafter_corpus, GoalsSettings())
    clip_partition(paths, crafter_corpus, "p0000", 1, ClipStageSettings(resize="steve1-bilinear"))
    from goalcraft.config import ClipsSettings

    goal_partition(paths, crafter_corpus, "p0000", 1, GoalsSettings(), ClipsSettings(resize="steve1-bilinear"))
    return paths


def test_the_users_mineclip_is_the_goal_space(staged, user_models):
    paths = staged
    settings = GoalSpaceSettings(mineclip_checkpoint=str(user_models.mineclip), mineclip_config=user_models.config)
    result = train_goal_space_model(paths, settings).metadata
    assert result["sha256"] == _sha256(user_models.mineclip) and result["user_checkpoint"] == str(user_models.mineclip)
    assert "not trained" in result["goal_space"] and result["clips"] > 0
    assert imported_checkpoint(paths.goal_space_dir) == {"checkpoint": str(user_models.mineclip),
                                                         "sha256": result["sha256"], "mineclip_config": "demo"}
    assert not (paths.goal_space_dir / "last").exists() and not (paths.goal_space_dir / "tensorboard").exists()
    # The goal space IS the user's model: same weights, so the same embeddings of the same clips.
    original = load_mineclip_checkpoint(user_models.mineclip, MINECLIP_CONFIGS["demo"])
    served = load_mineclip(paths.goal_space_dir / "best")
    for key, value in original.state_dict().items():
        assert torch.equal(served.state_dict()[key], value)
    table = embed_goal_clips(paths, GoalSpaceSettings(), SplitSettings()).metadata
    goals = pq.read_table(paths.goal_embeddings_table)
    assert table["rows"] == goals.num_rows > 0
    from goalcraft.data.embeddings import embed_shards

    direct = embed_shards(original, paths.goal_shards())
    assert np.allclose(np.stack(goals.column("embedding").to_numpy(zero_copy_only=False)),
                       np.stack(direct.column("embedding").to_numpy(zero_copy_only=False)), atol=1e-5)


def test_the_users_prior_is_the_baseline_one_prior_for_every_replicate(staged, user_models):
    paths = staged
    train_goal_space_model(paths, GoalSpaceSettings(mineclip_checkpoint=str(user_models.mineclip),
                                                    mineclip_config=user_models.config))
    embed_goal_clips(paths, GoalSpaceSettings(), SplitSettings())  # the prior trains on the goal embeddings
    result = train_steve1_prior(paths, PriorSettings(checkpoint=str(user_models.prior)), replicates=3)
    meta = result.metadata
    assert meta["replicates"] == 1 and meta["sha256"] == _sha256(user_models.prior)
    assert meta["sizes"] == user_models.prior_sizes
    assert len(result.warnings) == 1 and "one real prior" in result.warnings[0]
    assert prior_replicate_dirs(paths, 3) == [paths.prior_dir]
    served, original = load_prior(paths.prior_dir / "best"), load_steve1_prior(user_models.prior, config=None)
    for key, value in original.state_dict().items():
        assert torch.equal(served.state_dict()[key], value)
    # The evaluation's baseline records the user's files.
    from goalcraft.stages.evaluation import _provenance

    assert _provenance(paths.prior_dir)["sha256"] == meta["sha256"]
    assert _provenance(paths.goal_space_dir)["user_checkpoint"] == str(user_models.mineclip)
    # Training the prior here again: it is no longer the user's.
    trained = train_steve1_prior(paths, PriorSettings(epochs=1), replicates=2).metadata
    assert trained["replicates"] == 2 and imported_checkpoint(paths.prior_dir) is None
    assert not (paths.prior_dir / IMPORTED_FILE).exists() and len(prior_replicate_dirs(paths, 2)) == 2


def test_bad_user_checkpoints_are_one_line_errors(staged, user_models, tmp_path):
    paths = staged
    with pytest.raises(StageError, match="checkpoint not found"):
        train_goal_space_model(paths, GoalSpaceSettings(mineclip_checkpoint=str(tmp_path / "nope.pth")))
    with pytest.raises(StageError, match="does not match MineCLIP") as info:  # the demo file is not a ViT-B/16
        train_goal_space_model(paths, GoalSpaceSettings(mineclip_checkpoint=str(user_models.mineclip)))
    assert "\n" not in str(info.value)
    wrong = tmp_path / "prior.pt"
    torch.save(load_steve1_prior(user_models.prior, config=None).state_dict() | {"extra": torch.zeros(1)}, wrong)
    with pytest.raises(StageError, match="unexpected keys .*extra"):
        train_steve1_prior(paths, PriorSettings(checkpoint=str(wrong)))
    evil = tmp_path / "evil.pt"

    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Payload()}, evil)
    with pytest.raises(StageError, match="refusing to load"):
        train_steve1_prior(paths, PriorSettings(checkpoint=str(evil)))


def _steve1_get_prior_embed(prior, mineclip, text: str) -> np.ndarray:
    """STEVE-1's sampling, as steve1/utils/embed_utils.get_prior_embed and TranslatorVAE.forward (default
    deterministic=False) compute it: mu = 0, logvar = 0, z = mu + randn_like(std) * std, decode(z, text)."""
    with torch.no_grad():
        text_embed = mineclip.encode_text(tokenize([text])).cpu().numpy()
        text_embeddings = torch.tensor(text_embed).float()
        mu = torch.zeros(text_embeddings.shape[0], prior.config.latent_dim)
        logvar = torch.zeros(text_embeddings.shape[0], prior.config.latent_dim)
        std = torch.exp(0.5 * logvar)
        latent = mu + torch.randn_like(std) * std
        return prior.decode(latent, text_embeddings).numpy()


def test_sampled_mode_draws_as_steve1_draws(user_models):
    """On the CPU in float32, STEVE-1's draws after torch.manual_seed(s) are goalcraft's sampled goals with
    seed s, instruction for instruction (one independent latent each); deterministic is the latent 0."""
    from goalcraft.evaluation.goal_models import baseline_under_test

    mineclip = load_mineclip_checkpoint(user_models.mineclip, MINECLIP_CONFIGS["demo"])
    prior = load_steve1_prior(user_models.prior, config=None)
    model = baseline_under_test(mineclip, prior, {})
    texts = ["chop a tree", "dig dirt", "chop a tree"]
    torch.manual_seed(7)
    steve1 = np.concatenate([_steve1_get_prior_embed(prior, mineclip, t) for t in texts])
    assert np.allclose(model.predict(texts, 7), steve1, atol=1e-6)
    sampled = model.predict(texts, 7)
    assert not np.allclose(sampled[0], sampled[2])  # the same instruction twice: two draws
    with torch.no_grad():
        text = mineclip.encode_text(tokenize(texts))
        assert np.allclose(model.predict(texts, None), prior.decode(torch.zeros(3, 16), text).numpy(), atol=1e-6)
    assert model.stochastic and model.text_in_goal_space


@pytest.mark.slow
def test_the_evaluation_asset_scores_the_users_models_against_their_references(staged, user_models, crafter_corpus,
                                                                                tmp_path):
    """goal_model_evaluation's body with the user's MineCLIP and prior (and a tiny 512-d goal predictor):
    one real prior, imported success visuals beside the test split, the user's summary per set."""
    import pickle

    from goalcraft.config import EvaluationSettings
    from goalcraft.models.backbones import BackboneSpec, load_text_backbone
    from goalcraft.models.predictor import PREDICTOR_CONFIGS, GoalPredictor, save_goal_predictor
    from goalcraft.stages.evaluation import evaluate_goal_models

    paths = staged
    train_goal_space_model(paths, GoalSpaceSettings(mineclip_checkpoint=str(user_models.mineclip),
                                                    mineclip_config=user_models.config))
    embed_goal_clips(paths, GoalSpaceSettings(), SplitSettings())
    train_steve1_prior(paths, PriorSettings(checkpoint=str(user_models.prior)), replicates=2)
    torch.manual_seed(0)
    config = PREDICTOR_CONFIGS["tiny-minilm"].replace(goal_dim=512, frame_dim=512)
    for folder in paths.replicate_dirs(paths.goal_predictor_dir, 2):
        save_goal_predictor(GoalPredictor(config, load_text_backbone(BackboneSpec())).eval(), folder / "best")
    rng = np.random.default_rng(0)
    visuals = tmp_path / "success_visuals.pkl"
    visuals.write_bytes(pickle.dumps({"collect_wood": {"instruction": "collect wood", "success_visual_embeds": [
        rng.normal(size=512).astype(np.float32) for _ in range(2)]}}))
    result = evaluate_goal_models(paths, crafter_corpus, EvaluationSettings(
        instruction_sets=["corpus"], n_boot=10, replicates=2, success_visuals=[str(visuals)]))
    meta = result.metadata
    assert meta["success_visuals_by_source"][f"imported:{visuals}"] == 2
    runs = pq.read_table(meta["tables"]["runs"]).to_pylist()
    models = json.loads(runs[0]["models"])
    # Two aligner replicates, one real prior, recorded with the user's files.
    assert sorted(models) == ["goal_predictor#seed0", "goal_predictor#seed1", "mineclip_prior#seed0"]
    assert models["mineclip_prior#seed0"]["prior_sha256"] == _sha256(user_models.prior)
    assert models["mineclip_prior#seed0"]["goal_space_sha256"] == _sha256(user_models.mineclip)
    per_task = {r["task"]: r for r in pq.read_table(meta["tables"]["per_task"]).to_pylist()
                if r["model"] == "mineclip_prior" and r["mode"] == "sampled"}
    assert f"imported:{visuals}" in per_task["collect_wood"]["visual_sources"]
    summary = json.loads(Path(meta["prior_evaluation_summaries"]["corpus"]).read_text())
    assert summary["goalcraft"]["entry"] == "mineclip_prior" and summary["goalcraft"]["run_id"] == meta["run_id"]
    wood = next(t for t in summary["task_results"] if t["task_id"] == "collect_wood")
    assert wood["n_success_visuals"] == per_task["collect_wood"]["held_out_clips"] >= 2
    assert wood["goal_accuracy"] == pytest.approx(per_task["collect_wood"]["goal_accuracy"])
