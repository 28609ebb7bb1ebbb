"""The goal predictor (goalcraft.models.predictor): shapes, both aligners, padding, goal statistics and
scale calibration, the save/load format (with and without a LoRA adapter on the real MiniLM encoder),
strict loading and the config presets. Models are built small here; MiniLM is the packaged one (offline)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from goalcraft.models.backbones import BackboneSpec, load_text_backbone
from goalcraft.models.checkpoints import CheckpointError
from goalcraft.models.predictor import (
    ADAPTER_DIR,
    PREDICTOR_CONFIGS,
    AttentionPoolAligner,
    GoalPredictor,
    MLPAligner,
    apply_lora,
    build_qformer,
    has_lora,
    load_goal_predictor,
    load_predictor_config,
    save_goal_predictor,
)

TINY = PREDICTOR_CONFIGS["tiny"]  # Q 32, qformer_hidden 64, encoder width 48, frame_dim 24, 16 frames, goal 24
# The tiny structure on MiniLM's 384-d states, with dropout on so eval mode matters.
TINY_MINILM = TINY.replace(name="tiny-minilm", text_dim=384, dropout=0.1)
INSTRUCTIONS = ["chop a tree", "collect dirt"]
SHORT, LONG = "chop a tree", "walk to the river, collect some dirt and then place it next to the crafting table"


@pytest.fixture(scope="module")
def minilm():
    """The packaged MiniLM encoder, shared read-only by this module (never given LoRA: see fresh_minilm)."""
    return load_text_backbone(BackboneSpec())


def tiny_model(seed: int = 0, backbone=None, **changes) -> GoalPredictor:
    torch.manual_seed(seed)
    config = TINY.replace(**changes) if changes else TINY
    return GoalPredictor(config, backbone).eval()


def last_linear(module: nn.Module) -> nn.Linear:
    return [m for m in module.modules() if isinstance(m, nn.Linear)][-1]


# -- 1. shapes and input checks --------------------------------------------------------------------


def test_shapes_of_every_stage_on_the_tiny_config():
    model = tiny_model()
    with torch.no_grad():
        video = model.encode_video(torch.randn(3, 5, 24))
        assert video.shape == (3, 32, 64)
        assert model.video_text_embedding(video).shape == (3, 32)  # text_dim
        # The full frame budget is allowed (max_frames = 16).
        assert model.encode_video(torch.randn(1, 16, 24)).shape == (1, 32, 64)
        states, mask = torch.randn(3, 7, 32), torch.ones(3, 7, dtype=torch.long)
        tokens = model.predict_tokens(states, mask)
        assert tokens.shape == (3, 32, 64)
        assert model.align(tokens).shape == (3, 24)
    # The Q-Former's cross-attention reads qformer_encoder_width (48), not qformer_hidden (64).
    layer = model.qformer.encoder.layer[0]
    assert layer.crossattention.attention.key.in_features == 48


def test_encode_video_rejects_bad_frame_shapes_and_too_many_frames():
    model = tiny_model()
    for bad in (torch.randn(2, 5), torch.randn(2, 5, 23), torch.randn(1, 2, 5, 24)):
        with pytest.raises(ValueError, match=re.escape("frame features must be [B, T, 24], got ")):
            model.encode_video(bad)
    with pytest.raises(ValueError, match="17 frames, the frame position embedding has 16"):
        model.encode_video(torch.randn(1, 17, 24))


def test_minilm_demo_predicts_512_d_goals_from_32_by_768_tokens(minilm):
    config = PREDICTOR_CONFIGS["minilm-demo"]
    torch.manual_seed(0)
    model = GoalPredictor(config, minilm)
    model.train()
    goals = model.predict_goal(INSTRUCTIONS)
    assert goals.shape == (2, 512) and goals.dtype == torch.float32 and goals.device.type == "cpu"
    assert torch.isfinite(goals).all()
    assert model.training  # predict_goal runs in eval mode and puts the mode back
    with torch.no_grad():
        states, mask = model.eval().encode_text(INSTRUCTIONS)
        assert states.shape[0] == 2 and states.shape[2] == 384
        assert model.predict_tokens(states, mask).shape == (2, 32, 768)
    assert model.predict_goal([]).shape == (0, 512)
    with pytest.raises(TypeError, match="not one string"):
        model.predict_goal("one string")


# -- 2. the two aligners ---------------------------------------------------------------------------


def test_both_aligners_give_goal_vectors_and_only_attention_pooling_ignores_token_order():
    torch.manual_seed(1)
    tokens = torch.randn(3, 32, 64)
    perm = torch.randperm(32)
    a = tiny_model(aligner="mlp")
    b = tiny_model(aligner="attention")
    assert isinstance(a.aligner, MLPAligner) and isinstance(b.aligner, AttentionPoolAligner)
    with torch.no_grad():
        out_a, out_a_perm = a.align(tokens), a.align(tokens[:, perm])
        out_b, out_b_perm = b.align(tokens), b.align(tokens[:, perm])
    assert out_a.shape == out_b.shape == (3, 24)
    torch.testing.assert_close(out_b_perm, out_b, rtol=1e-5, atol=1e-5)  # no positions in attention pooling
    assert (out_a_perm - out_a).abs().max() > 1e-3  # flattening keeps the token order
    with pytest.raises(ValueError, match="aligner must be"):
        TINY.replace(aligner="conv")


# -- 3. padding ------------------------------------------------------------------------------------


def test_padding_does_not_change_the_predicted_tokens_of_a_shorter_sentence(minilm):
    torch.manual_seed(2)
    model = GoalPredictor(TINY_MINILM, minilm).eval()
    with torch.no_grad():
        alone_states, alone_mask = model.encode_text([SHORT])
        batch_states, batch_mask = model.encode_text([SHORT, LONG])
        assert alone_mask.shape[1] < batch_mask.shape[1]  # the short sentence really is padded in the batch
        assert int(batch_mask[0].sum()) == alone_mask.shape[1]
        alone = model.predict_tokens(alone_states, alone_mask)[0]
        batched = model.predict_tokens(batch_states, batch_mask)[0]
        torch.testing.assert_close(batched, alone, rtol=1e-4, atol=1e-5)

        # Garbage in the padded positions must be ignored by both the mean pool and the cross-attention.
        noisy = batch_states.clone()
        pad = batch_mask[0] == 0
        noisy[0, pad] = torch.randn(int(pad.sum()), 384) * 100
        torch.testing.assert_close(model.predict_tokens(noisy, batch_mask)[0], batched, rtol=1e-5, atol=1e-5)
    # Batching in predict_goal does not matter either.
    torch.testing.assert_close(model.predict_goal([SHORT, LONG], batch_size=1),
                               model.predict_goal([SHORT, LONG]), rtol=1e-4, atol=1e-5)


# -- 4. goal statistics and the output scale -----------------------------------------------------


@pytest.mark.parametrize("aligner", ["mlp", "attention"])
def test_set_goal_statistics_starts_the_aligner_at_the_goal_mean(aligner):
    model = tiny_model(3, aligner=aligner)
    last = last_linear(model.aligner)
    weight_before = last.weight.detach().clone()
    torch.manual_seed(4)
    mean, std = torch.randn(24) * 3, torch.rand(24) + 0.5
    std[5] = 0.0
    model.set_goal_statistics(mean, std)
    assert torch.equal(last.bias, torch.zeros(24))
    torch.testing.assert_close(last.weight, weight_before * 0.1, rtol=0, atol=0)
    assert model.goal_std[5] == pytest.approx(1e-6)  # a constant dimension is clamped, not divided by zero
    std = std.clamp_min(1e-6)

    tokens = torch.randn(4, 32, 64)
    with torch.no_grad():
        # The general formula: (goal_mean + goal_std * aligner(tokens)) * output_scale.
        model.output_scale.fill_(2.5)
        torch.testing.assert_close(model.align(tokens), (mean + std * model.aligner(tokens)) * 2.5)
        # With the last layer at zero, every prediction is the mean (times the scale).
        last.weight.zero_()
        torch.testing.assert_close(model.align(tokens), (mean * 2.5).expand(4, -1), rtol=1e-6, atol=0)
        model.output_scale.fill_(1.0)
        torch.testing.assert_close(model.align(tokens), mean.expand(4, -1), rtol=1e-6, atol=0)


def test_calibrate_scale_matches_the_median_norm_of_the_targets():
    model = tiny_model(5)
    torch.manual_seed(6)
    tokens = torch.randn(9, 32, 64)
    with torch.no_grad():
        predicted = model.align(tokens)
    # Known answer: targets three times the predictions → scale 3.
    assert model.calibrate_scale(predicted, 3 * predicted) == pytest.approx(3.0, rel=1e-6)
    assert float(model.output_scale) == pytest.approx(3.0, rel=1e-6)
    with torch.no_grad():
        rescaled = model.align(tokens)
    torch.testing.assert_close(rescaled, 3 * predicted, rtol=1e-5, atol=1e-6)
    # The scale composes: predictions made with scale 3, targets half as long → scale 1.5.
    assert model.calibrate_scale(rescaled, 0.5 * rescaled) == pytest.approx(1.5, rel=1e-6)
    # Any targets: the recomputed predictions' median norm equals theirs.
    target = torch.randn(9, 24) * 7 + 2
    with torch.no_grad():
        model.calibrate_scale(model.align(tokens), target)
        after = model.align(tokens)
    assert float(after.norm(dim=-1).median()) == pytest.approx(float(target.norm(dim=-1).median()), rel=1e-5)


# -- 5. save → load --------------------------------------------------------------------------------


def _non_default_buffers(model: GoalPredictor) -> None:
    torch.manual_seed(7)
    model.set_goal_statistics(torch.randn(24), torch.rand(24) + 0.5)
    with torch.no_grad():
        model.output_scale.fill_(1.75)


def test_save_load_round_trip_is_bitwise_and_holds_no_backbone_weights(minilm, tmp_path):
    torch.manual_seed(8)
    model = GoalPredictor(TINY_MINILM, minilm).eval()
    _non_default_buffers(model)
    expected = model.predict_goal(INSTRUCTIONS)
    out = save_goal_predictor(model, tmp_path / "pred")
    assert model.backbone is minilm  # the backbone is put back after the save

    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]  # no LoRA → no adapter/
    saved = load_file(str(out / "model.safetensors"))
    assert not [k for k in saved if k.startswith("backbone.")]
    assert set(saved) == set(GoalPredictor(TINY_MINILM).state_dict())
    assert float(saved["output_scale"]) == 1.75
    assert json.loads((out / "config.json").read_text())["model_type"] == "goalcraft_goal_predictor"
    assert load_predictor_config(out) == TINY_MINILM

    loaded = load_goal_predictor(out)
    assert not loaded.training and loaded.backbone is not None and not has_lora(loaded.backbone)
    assert torch.equal(loaded.predict_goal(INSTRUCTIONS), expected)


def test_save_load_round_trip_with_a_lora_adapter(tmp_path):
    from peft import PeftModel

    backbone = load_text_backbone(BackboneSpec())  # a private copy: LoRA changes it in place
    torch.manual_seed(9)
    model = GoalPredictor(TINY_MINILM, backbone).eval()
    plain = model.predict_goal(INSTRUCTIONS)
    apply_lora(model.backbone)
    assert has_lora(model.backbone)
    model.eval()
    # A fresh adapter is the identity (its B matrices start at zero) ...
    assert torch.equal(model.predict_goal(INSTRUCTIONS), plain)
    lora_b = {n: p for n, p in model.backbone.model.named_parameters() if "lora_B" in n}
    assert len(lora_b) == 12  # query + value in each of MiniLM's 6 layers
    with torch.no_grad():
        for p in lora_b.values():
            p.copy_(torch.randn_like(p) * 0.5)
    # ... and a trained one matters.
    adapted = model.predict_goal(INSTRUCTIONS)
    assert (adapted - plain).abs().max() > 1e-3

    out = save_goal_predictor(model, tmp_path / "pred")
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    assert not [k for k in load_file(str(out / "model.safetensors")) if k.startswith("backbone.")]
    adapter_config = json.loads((out / ADAPTER_DIR / "adapter_config.json").read_text())
    assert adapter_config["peft_type"] == "LORA" and set(adapter_config["target_modules"]) == {"query", "value"}
    adapter = load_file(str(out / ADAPTER_DIR / "adapter_model.safetensors"))
    assert len([k for k in adapter if "lora_B" in k]) == 12

    loaded = load_goal_predictor(out)
    assert isinstance(loaded.backbone.model, PeftModel)  # reloaded by PeftModel.from_pretrained
    reloaded_b = {n: p for n, p in loaded.backbone.model.named_parameters() if "lora_B" in n}
    assert reloaded_b.keys() == lora_b.keys()
    assert all(torch.equal(reloaded_b[n], lora_b[n]) for n in lora_b)
    assert torch.equal(loaded.predict_goal(INSTRUCTIONS), adapted)


def test_loading_with_a_given_backbone_leaves_earlier_models_intact(tmp_path):
    """The backbone passed to load_goal_predictor is the one the adapter goes onto. Loading a second
    model with the same backbone object must neither break the first model nor stack a second adapter on
    the first (it may instead refuse, but must not silently predict something else)."""
    backbone = load_text_backbone(BackboneSpec())
    torch.manual_seed(10)
    model = GoalPredictor(TINY_MINILM, backbone).eval()
    apply_lora(model.backbone)
    with torch.no_grad():
        for n, p in model.backbone.model.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn_like(p) * 0.5)
    adapted = model.eval().predict_goal(INSTRUCTIONS)
    out = save_goal_predictor(model, tmp_path / "pred")

    shared = load_text_backbone(BackboneSpec())
    first = load_goal_predictor(out, backbone=shared)
    assert torch.equal(first.predict_goal(INSTRUCTIONS), adapted)
    with pytest.raises(ValueError, match="already carries one"):
        load_goal_predictor(out, backbone=shared)
    assert torch.equal(first.predict_goal(INSTRUCTIONS), adapted)
    assert torch.equal(load_goal_predictor(out).predict_goal(INSTRUCTIONS), adapted)


# -- 6. head only ----------------------------------------------------------------------------------


def test_load_without_backbone_gives_the_same_tokens_on_given_states(minilm, tmp_path):
    torch.manual_seed(11)
    model = GoalPredictor(TINY_MINILM, minilm).eval()
    out = save_goal_predictor(model, tmp_path / "pred")
    head = load_goal_predictor(out, with_backbone=False)
    assert head.backbone is None and not head.training
    with torch.no_grad():
        states, mask = model.encode_text([SHORT, LONG])
        assert torch.equal(head.predict_tokens(states, mask), model.predict_tokens(states, mask))
        assert torch.equal(head.align(head.predict_tokens(states, mask)),
                           model.align(model.predict_tokens(states, mask)))
    with pytest.raises(RuntimeError, match="no text backbone"):
        head.predict_goal(INSTRUCTIONS)


# -- 7. strict loading -----------------------------------------------------------------------------


@pytest.fixture
def tiny_saved(tmp_path) -> Path:
    return save_goal_predictor(tiny_model(12), tmp_path / "tiny")


def _with_weights(src: Path, dst: Path, edit) -> Path:
    shutil.copytree(src, dst)
    weights = load_file(str(dst / "model.safetensors"))
    edit(weights)
    save_file(weights, str(dst / "model.safetensors"))
    return dst


def test_a_saved_tiny_model_loads_back_head_only(tiny_saved):
    loaded = load_goal_predictor(tiny_saved, with_backbone=False)
    original = tiny_model(12)
    for k, v in original.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


@pytest.mark.parametrize(("edit", "key"), [
    (lambda w: w.pop("goal_head.query_embeddings"), "goal_head.query_embeddings"),
    (lambda w: w.__setitem__("aligner.extra.weight", torch.zeros(3)), "aligner.extra.weight"),
    (lambda w: w.__setitem__("frame_proj.weight", torch.zeros(48, 25)), "frame_proj.weight"),
], ids=["missing", "unexpected", "wrong-shape"])
def test_damaged_weights_raise_checkpoint_error_naming_the_key(tiny_saved, tmp_path, edit, key):
    damaged = _with_weights(tiny_saved, tmp_path / "damaged", edit)
    with pytest.raises(CheckpointError, match=re.escape(key)):
        load_goal_predictor(damaged, with_backbone=False)


def test_unknown_config_field_raises_checkpoint_error(tiny_saved):
    path = tiny_saved / "config.json"
    config = json.loads(path.read_text())
    config["bogus_field"] = 1
    path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="bogus_field"):
        load_goal_predictor(tiny_saved, with_backbone=False)


def test_a_backbone_of_the_wrong_width_is_refused(minilm, tiny_saved):
    with pytest.raises(ValueError, match="expects 32-d text states, the backbone gives 384"):
        GoalPredictor(TINY, minilm)
    with pytest.raises(ValueError, match="expects 32-d text states, the backbone gives 384"):
        load_goal_predictor(tiny_saved, backbone=minilm)


# -- 8. presets --------------------------------------------------------------------------------------


def test_presets_follow_the_video_llama_contract():
    for name in ("minilm-demo", "video-llama-7b"):
        config = PREDICTOR_CONFIGS[name]
        assert (config.num_query_tokens, config.qformer_hidden, config.goal_dim) == (32, 768, 512), name
    assert PREDICTOR_CONFIGS["video-llama-7b"].text_dim == 4096
    assert PREDICTOR_CONFIGS["minilm-demo"].text_dim == 384


def test_video_llama_7b_builds_on_the_meta_device():
    config = PREDICTOR_CONFIGS["video-llama-7b"]
    with torch.device("meta"):
        qformer = build_qformer(config)
        model = GoalPredictor(config)
    assert len(qformer.encoder.layer) == 2
    for layer in qformer.encoder.layer:
        assert layer.has_cross_attention
        assert layer.crossattention.attention.key.in_features == 768
    assert next(qformer.parameters()).is_meta
    assert model.text_proj.in_features == 4096 and model.llama_proj.out_features == 4096
    assert model.query_tokens.shape == (1, 32, 768)
    assert model.aligner.net[1].in_features == 32 * 768


def test_head_heads_must_divide_the_qformer_width():
    with pytest.raises(ValueError, match="head_heads=5"):
        TINY.replace(head_heads=5)
    with pytest.raises(ValueError, match="qformer_heads=5"):
        TINY.replace(qformer_heads=5)
