"""Importing Video-LLaMA's video branch into the goal predictor.

The reference checkpoints are written here in Video-LLaMA's own layout (LAVIS ``BertModel`` Q-Former
names, ``{"model": state_dict, "optimizer": ..., "config": ..., "scaler": ..., "epoch": ...}``), at
tiny size, and the loaded predictor is checked against a hand-written LAVIS-style Q-Former forward.
"""

from __future__ import annotations

import math
import os

import pytest
import torch
import torch.nn.functional as F

from goalcraft.models.checkpoints import CheckpointError
from goalcraft.models.predictor import PREDICTOR_CONFIGS, GoalPredictor, build_qformer, load_goal_predictor
from goalcraft.models.video_llama import (
    convert_video_llama,
    convert_video_llama_state_dict,
    convert_video_llama_state_dict_with_report,
    goalcraft_to_video_llama_key,
    load_video_llama_checkpoint,
    video_llama_config,
    video_llama_to_goalcraft_key,
)

H, LAYERS, FFN, ENC, QUERIES, FRAMES, TEXT = 64, 2, 128, 48, 32, 16, 32
TINY = PREDICTOR_CONFIGS["tiny"]  # the same sizes, 4 heads


def _t(gen, *shape, scale=0.1, base=0.0):
    if gen is None:  # shapes only
        return torch.empty(*shape, device="meta")
    return base + scale * torch.randn(*shape, generator=gen)


def lavis_branch(gen, *, qformer="video_Qformer", queries="video_query_tokens",
                 positions="video_frame_position_embedding", proj="llama_proj",
                 hidden=H, layers=LAYERS, ffn=FFN, enc=ENC, n_queries=QUERIES, frames=FRAMES, text=TEXT):
    """One branch in Video-LLaMA's key layout, written out by hand from its Qformer.py / video_llama.py."""
    sd = {}
    q = f"{qformer}.bert."
    sd[q + "embeddings.LayerNorm.weight"] = _t(gen, hidden, base=1.0)
    sd[q + "embeddings.LayerNorm.bias"] = _t(gen, hidden)
    sd[q + "embeddings.position_ids"] = torch.arange(512).expand(1, -1)  # LAVIS's persistent buffer
    for i in range(layers):
        p = f"{q}encoder.layer.{i}."
        for att, kv_in in (("attention", hidden), ("crossattention", enc)):
            sd[p + f"{att}.self.query.weight"] = _t(gen, hidden, hidden)
            sd[p + f"{att}.self.query.bias"] = _t(gen, hidden)
            sd[p + f"{att}.self.key.weight"] = _t(gen, hidden, kv_in)
            sd[p + f"{att}.self.key.bias"] = _t(gen, hidden)
            sd[p + f"{att}.self.value.weight"] = _t(gen, hidden, kv_in)
            sd[p + f"{att}.self.value.bias"] = _t(gen, hidden)
            sd[p + f"{att}.output.dense.weight"] = _t(gen, hidden, hidden)
            sd[p + f"{att}.output.dense.bias"] = _t(gen, hidden)
            sd[p + f"{att}.output.LayerNorm.weight"] = _t(gen, hidden, base=1.0)
            sd[p + f"{att}.output.LayerNorm.bias"] = _t(gen, hidden)
        sd[p + "intermediate_query.dense.weight"] = _t(gen, ffn, hidden)
        sd[p + "intermediate_query.dense.bias"] = _t(gen, ffn)
        sd[p + "output_query.dense.weight"] = _t(gen, hidden, ffn)
        sd[p + "output_query.dense.bias"] = _t(gen, hidden)
        sd[p + "output_query.LayerNorm.weight"] = _t(gen, hidden, base=1.0)
        sd[p + "output_query.LayerNorm.bias"] = _t(gen, hidden)
    sd[queries] = _t(gen, 1, n_queries, hidden, scale=0.5)
    sd[f"{positions}.weight"] = _t(gen, frames, enc, scale=0.5)
    sd[f"{proj}.weight"] = _t(gen, text, hidden)
    sd[f"{proj}.bias"] = _t(gen, text)
    return sd


NOISE_MODULES = {"visual_encoder": 3, "ln_vision": 2, "Qformer": 3, "query_tokens": 1, "audio_Qformer": 2,
                 "audio_query_tokens": 1, "audio_position_embedding": 1, "audio_llama_proj": 2, "llama_model": 1}


def reference_state_dict(seed=0):
    """The video branch plus keys of the other modules a Video-LLaMA checkpoint may hold."""
    gen = torch.Generator().manual_seed(seed)
    sd = lavis_branch(gen)
    sd.update({
        "visual_encoder.cls_token": _t(gen, 1, 1, 40),
        "visual_encoder.blocks.0.attn.qkv.weight": _t(gen, 120, 40),
        "visual_encoder.blocks.0.attn.relative_position_index": torch.zeros(5, 5, dtype=torch.long),
        "ln_vision.weight": _t(gen, 40), "ln_vision.bias": _t(gen, 40),
        "Qformer.bert.embeddings.LayerNorm.weight": _t(gen, H),
        "Qformer.bert.embeddings.position_ids": torch.arange(512).expand(1, -1),
        "Qformer.bert.encoder.layer.0.crossattention.self.key.weight": _t(gen, H, 40),
        "query_tokens": _t(gen, 1, QUERIES, H),
        "audio_Qformer.bert.embeddings.position_ids": torch.arange(512).expand(1, -1),
        "audio_Qformer.bert.encoder.layer.0.attention.self.query.weight": _t(gen, H, H),
        "audio_query_tokens": _t(gen, 1, 8, H),
        "audio_position_embedding.weight": _t(gen, 8, 56),
        "audio_llama_proj.weight": _t(gen, TEXT, H), "audio_llama_proj.bias": _t(gen, TEXT),
        "llama_model.model.layers.0.self_attn.rotary_emb.inv_freq": torch.rand(8),
    })
    return sd


def save_checkpoint(path, sd):
    """As Video-LLaMA's runner saves it (optimizer/config/scaler are plain containers and tensors)."""
    optimizer = {"state": {0: {"step": torch.tensor(10.0), "exp_avg": torch.zeros(3)}},
                 "param_groups": [{"lr": 1e-4, "weight_decay": 0.05, "params": [0]}]}
    config = {"model": {"arch": "video_llama", "max_frame_pos": FRAMES, "num_query_token": QUERIES},
              "run": {"seed": 42, "amp": True}}
    torch.save({"model": sd, "optimizer": optimizer, "config": config, "scaler": {"scale": 65536.0},
                "epoch": 3}, path)
    return path


def lavis_qformer(sd, prefix, queries, encoder_states, heads, eps=1e-12):
    """Video-LLaMA's query-only Q-Former forward, by hand, on the LAVIS key names (post-LN BERT layers:
    self-attention, cross-attention to the frames, then the query FFN with exact GELU)."""

    def lin(x, name):
        return F.linear(x, sd[name + ".weight"], sd[name + ".bias"])

    def norm(x, name):
        return F.layer_norm(x, (x.shape[-1],), sd[name + ".weight"], sd[name + ".bias"], eps)

    def attention(x, context, name):
        b, n, d = x.shape
        hd = d // heads

        def split(y):
            return y.view(b, -1, heads, hd).transpose(1, 2)

        q, k, v = (split(lin(src, f"{name}.self.{w}"))
                   for src, w in ((x, "query"), (context, "key"), (context, "value")))
        mixed = (torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), dim=-1) @ v).transpose(1, 2).reshape(b, n, d)
        return norm(lin(mixed, f"{name}.output.dense") + x, f"{name}.output.LayerNorm")

    h = norm(queries, prefix + "embeddings.LayerNorm")
    n_layers = len({k.split(".")[4] for k in sd if k.startswith(prefix + "encoder.layer.")})
    for i in range(n_layers):
        p = f"{prefix}encoder.layer.{i}."
        h = attention(h, h, p + "attention")
        h = attention(h, encoder_states, p + "crossattention")
        ffn = lin(F.gelu(lin(h, p + "intermediate_query.dense")), p + "output_query.dense")
        h = norm(ffn + h, p + "output_query.LayerNorm")
    return h


def expected_video_tokens(sd, predictor, frame_features, heads):
    """goalcraft's video side with the checkpoint's own tensors: frame_proj (not in the checkpoint) plus
    the frame position embedding, then the LAVIS Q-Former with the checkpoint's query tokens."""
    t = frame_features.shape[1]
    frames = predictor.frame_proj(frame_features) + sd["video_frame_position_embedding.weight"][:t]
    queries = sd["video_query_tokens"].expand(frame_features.shape[0], -1, -1)
    return lavis_qformer(sd, "video_Qformer.bert.", queries, frames, heads)


BRANCH_PART_PREFIXES = ("qformer.", "query_tokens", "frame_position_embedding.", "llama_proj.")


# ----------------------------------------------------------------------------- the key mapping


def test_mapping_covers_blip2_qformer_keys_exactly():
    qformer = build_qformer(TINY)
    hf_keys = {"qformer." + k for k in qformer.state_dict()}
    sd = reference_state_dict()
    lavis_keys = [k for k in sd if k.startswith("video_Qformer.") and not k.endswith("position_ids")]
    mapped = {video_llama_to_goalcraft_key(k) for k in lavis_keys}
    assert mapped == hf_keys and len(lavis_keys) == len(hf_keys) == 2 + LAYERS * 26
    for k in hf_keys:  # the inverse names every HF key in LAVIS's spelling, and round-trips
        assert video_llama_to_goalcraft_key(goalcraft_to_video_llama_key(k)) == k
    table = {
        "video_Qformer.bert.embeddings.LayerNorm.weight": "qformer.layernorm.weight",
        "video_Qformer.bert.encoder.layer.1.attention.self.key.bias":
            "qformer.encoder.layer.1.attention.attention.key.bias",
        "video_Qformer.bert.encoder.layer.0.attention.output.LayerNorm.weight":
            "qformer.encoder.layer.0.attention.output.LayerNorm.weight",
        "video_Qformer.bert.encoder.layer.0.crossattention.self.value.weight":
            "qformer.encoder.layer.0.crossattention.attention.value.weight",
        "video_Qformer.bert.encoder.layer.1.crossattention.output.dense.bias":
            "qformer.encoder.layer.1.crossattention.output.dense.bias",
        "video_Qformer.bert.encoder.layer.0.intermediate_query.dense.weight":
            "qformer.encoder.layer.0.intermediate_query.dense.weight",
        "video_Qformer.bert.encoder.layer.1.output_query.LayerNorm.bias":
            "qformer.encoder.layer.1.output_query.LayerNorm.bias",
        "video_query_tokens": "query_tokens",
        "video_frame_position_embedding.weight": "frame_position_embedding.weight",
        "llama_proj.weight": "llama_proj.weight",
        "llama_proj.bias": "llama_proj.bias",
    }
    for lavis, ours in table.items():
        assert video_llama_to_goalcraft_key(lavis) == ours
        assert goalcraft_to_video_llama_key(ours) == lavis
    for other in ("query_tokens", "Qformer.bert.embeddings.LayerNorm.weight", "audio_llama_proj.weight",
                  "video_Qformer.bert.encoder.layer.0.intermediate.dense.weight", "video_Qformer.cls.predictions.bias"):
        assert video_llama_to_goalcraft_key(other) is None
    assert video_llama_to_goalcraft_key("audio_llama_proj.weight", branch="audio") == "llama_proj.weight"


def test_convert_maps_the_branch_and_reports_the_rest():
    sd = reference_state_dict()
    converted, report = convert_video_llama_state_dict_with_report(sd)
    assert set(converted) == {video_llama_to_goalcraft_key(k) for k, _ in report.mapped}
    assert len(converted) == 2 + LAYERS * 26 + 4
    for lavis, ours in report.mapped:
        assert converted[ours] is sd[lavis]  # the source tensors themselves
    assert report.dropped_buffers == ("video_Qformer.bert.embeddings.position_ids",)
    assert report.skipped_counts == dict(sorted(NOISE_MODULES.items()))
    assert report.num_skipped == sum(NOISE_MODULES.values())
    assert len(report.mapped) + len(report.dropped_buffers) + report.num_skipped == len(sd)
    assert "Qformer.bert.embeddings.position_ids" in report.skipped["Qformer"]
    assert "visual_encoder (EVA ViT-g image encoder): 3 keys" in report.summary()
    assert convert_video_llama_state_dict(sd).keys() == converted.keys()


# ----------------------------------------------------------------------------- loading


def test_load_checkpoint_builds_a_predictor_that_computes_video_llamas_qformer(tmp_path):
    sd = reference_state_dict()
    path = save_checkpoint(tmp_path / "finetune-tiny.pth", sd)
    predictor, report = load_video_llama_checkpoint(path)

    assert not predictor.training and predictor.backbone is None
    c = predictor.config
    assert (c.qformer_hidden, c.qformer_layers, c.qformer_heads, c.qformer_intermediate, c.qformer_encoder_width,
            c.num_query_tokens, c.max_frames, c.text_dim) == (H, LAYERS, H // 64, FFN, ENC, QUERIES, FRAMES, TEXT)
    assert report.config == c and report.source == str(path)
    ours = predictor.state_dict()
    for lavis, key in report.mapped:
        assert torch.equal(ours[key], sd[lavis]), key
    assert report.not_in_checkpoint == ("frame_proj", "text_proj", "goal_head", "aligner", "output_scale",
                                        "goal_mean", "goal_std")
    assert report.skipped_counts == dict(sorted(NOISE_MODULES.items()))
    assert "not in checkpoint, trained by goalcraft: frame_proj, text_proj, goal_head, aligner" in report.summary()

    torch.manual_seed(1)
    frame_features = torch.randn(2, 5, c.frame_dim)
    with torch.no_grad():
        tokens = predictor.encode_video(frame_features)
        expected = expected_video_tokens(sd, predictor, frame_features, heads=c.qformer_heads)
        torch.testing.assert_close(tokens, expected, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(predictor.video_text_embedding(tokens),
                                   F.linear(expected, sd["llama_proj.weight"], sd["llama_proj.bias"]).mean(1))


def test_load_into_a_given_predictor_fills_only_the_branch_parts(tmp_path):
    sd = reference_state_dict()
    path = save_checkpoint(tmp_path / "ckpt.pth", sd)
    torch.manual_seed(0)
    predictor = GoalPredictor(TINY).train()
    before = {k: v.clone() for k, v in predictor.state_dict().items()}
    out, report = load_video_llama_checkpoint(path, predictor)
    assert out is predictor and predictor.training and report.config is TINY
    after = predictor.state_dict()
    for k, v in after.items():
        if k.startswith(BRANCH_PART_PREFIXES):
            assert torch.equal(v, sd[goalcraft_to_video_llama_key(k)]), k
        else:
            assert torch.equal(v, before[k]), k  # goal head, aligner, frame_proj, text_proj untouched

    # The same forward with TINY's 4 heads, checked against the hand-written LAVIS Q-Former and
    # against a transformers Blip2QFormerModel loaded independently (the HF BLIP-2 script's renaming).
    reference = build_qformer(TINY).eval()
    renamed = {k[len("video_Qformer.bert."):].replace("embeddings.LayerNorm", "layernorm")
               .replace("attention.self", "attention.attention"): v
               for k, v in sd.items() if k.startswith("video_Qformer.") and not k.endswith("position_ids")}
    reference.load_state_dict(renamed, strict=True)
    frame_features = torch.randn(3, FRAMES, TINY.frame_dim)
    frames = predictor.frame_proj(frame_features) + sd["video_frame_position_embedding.weight"]
    queries = sd["video_query_tokens"].expand(3, -1, -1)
    with torch.no_grad():
        tokens = predictor.eval().encode_video(frame_features)
        by_hand = lavis_qformer(sd, "video_Qformer.bert.", queries, frames, heads=TINY.qformer_heads)
        by_hf = reference(query_embeds=queries, encoder_hidden_states=frames).last_hidden_state
    torch.testing.assert_close(tokens, by_hand, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(tokens, by_hf, rtol=1e-5, atol=1e-6)


def _broken(change):
    sd = reference_state_dict()
    if change == "missing":
        del sd["video_Qformer.bert.encoder.layer.1.output_query.LayerNorm.bias"]
        return sd, "video_Qformer.bert.encoder.layer.1.output_query.LayerNorm.bias"
    if change == "missing_tokens":
        del sd["video_query_tokens"]
        return sd, "video_query_tokens"
    if change == "unexpected_text_ffn":
        sd["video_Qformer.bert.encoder.layer.0.intermediate.dense.weight"] = torch.zeros(FFN, H)
        return sd, "video_Qformer.bert.encoder.layer.0.intermediate.dense.weight"
    if change == "unexpected_cls":
        sd["video_Qformer.cls.predictions.bias"] = torch.zeros(10)
        return sd, "video_Qformer.cls.predictions.bias"
    if change == "shape_cross_key":
        sd["video_Qformer.bert.encoder.layer.1.crossattention.self.key.weight"] = torch.zeros(H, ENC + 8)
        return sd, ("video_Qformer.bert.encoder.layer.1.crossattention.self.key.weight "
                    "(-> qformer.encoder.layer.1.crossattention.attention.key.weight): "
                    "checkpoint [64, 56] vs model [64, 48]")
    if change == "shape_proj_bias":
        sd["llama_proj.bias"] = torch.zeros(TEXT + 1)
        return sd, "llama_proj.bias (-> llama_proj.bias): checkpoint [33] vs model [32]"
    raise AssertionError(change)


@pytest.mark.parametrize("change", ["missing", "missing_tokens", "unexpected_text_ffn", "unexpected_cls",
                                    "shape_cross_key", "shape_proj_bias"])
def test_bad_checkpoints_name_the_key_and_load_nothing(tmp_path, change):
    sd, named = _broken(change)
    path = save_checkpoint(tmp_path / "bad.pth", sd)
    for predictor in (None, GoalPredictor(TINY)):
        before = None if predictor is None else {k: v.clone() for k, v in predictor.state_dict().items()}
        with pytest.raises(CheckpointError) as info:
            load_video_llama_checkpoint(path, predictor)
        assert named in str(info.value)
        if predictor is not None:
            assert all(torch.equal(v, before[k]) for k, v in predictor.state_dict().items())


def test_a_checkpoint_without_the_branch_says_what_it_holds(tmp_path):
    sd = {k: v for k, v in reference_state_dict().items()
          if not k.startswith(("video_Qformer.", "video_query_tokens", "video_frame_position", "llama_proj."))}
    path = save_checkpoint(tmp_path / "audio_only.pth", sd)
    with pytest.raises(CheckpointError, match=r"no video-branch keys .*audio_Qformer"):
        load_video_llama_checkpoint(path)


class MakesMarker:
    """Unpickling this would run a shell command that creates a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_needs_code_is_refused(tmp_path):
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pth"
    torch.save({"model": reference_state_dict(), "config": MakesMarker(marker), "epoch": 3}, path)
    with pytest.raises(CheckpointError, match="needs code to load"):
        load_video_llama_checkpoint(path)
    assert not marker.exists()


# ----------------------------------------------------------------------------- the config


def test_config_follows_the_tensor_shapes():
    sd = reference_state_dict()
    derived = video_llama_config(sd, name="tiny-video-llama", qformer_heads=4)
    assert derived == PREDICTOR_CONFIGS["video-llama-7b"].replace(
        name="tiny-video-llama", text_dim=TEXT, num_query_tokens=QUERIES, qformer_hidden=H, qformer_layers=LAYERS,
        qformer_heads=4, qformer_intermediate=FFN, qformer_encoder_width=ENC, max_frames=FRAMES)
    from_converted = video_llama_config(convert_video_llama_state_dict(sd), qformer_heads=4)
    assert from_converted == derived.replace(name="video-llama")
    assert video_llama_config(sd, text_dim=TEXT).text_dim == TEXT
    with pytest.raises(CheckpointError, match="text_dim=4096 .* llama_proj maps to 32"):
        video_llama_config(sd, text_dim=4096)
    odd = lavis_branch(torch.Generator().manual_seed(0), hidden=48, ffn=96)
    with pytest.raises(CheckpointError, match="not a multiple of 64; pass qformer_heads="):
        video_llama_config(odd)
    assert video_llama_config(odd, qformer_heads=4).qformer_heads == 4

    # Video-LLaMA's real sizes (shapes only, on the meta device): the project's "video-llama-7b" preset.
    full = lavis_branch(None, hidden=768, ffn=3072, enc=768, frames=32, text=4096)
    assert video_llama_config(full, name="video-llama-7b") == PREDICTOR_CONFIGS["video-llama-7b"]


def test_audio_branch_maps_onto_the_same_parts(tmp_path):
    gen = torch.Generator().manual_seed(5)
    sd = lavis_branch(gen, qformer="audio_Qformer", queries="audio_query_tokens", positions="audio_position_embedding",
                      proj="audio_llama_proj", n_queries=8, enc=56, frames=8)
    sd.update(lavis_branch(gen))
    predictor, report = load_video_llama_checkpoint(save_checkpoint(tmp_path / "av.pth", sd), branch="audio")
    assert (predictor.config.num_query_tokens, predictor.config.qformer_encoder_width, predictor.config.max_frames) \
        == (8, 56, 8)
    assert torch.equal(predictor.query_tokens, sd["audio_query_tokens"])
    assert torch.equal(predictor.llama_proj.weight, sd["audio_llama_proj.weight"])
    assert set(report.skipped) == {"video_Qformer", "video_query_tokens", "video_frame_position_embedding",
                                   "llama_proj"}


# ----------------------------------------------------------------------------- goalcraft's own format


def test_convert_writes_goalcraft_format_that_reloads_identically(tmp_path):
    sd = reference_state_dict()
    path = save_checkpoint(tmp_path / "ckpt.pth", sd)
    torch.manual_seed(7)
    out_dir, report = convert_video_llama(path, tmp_path / "converted")
    torch.manual_seed(7)  # the same initialisation for the parts the checkpoint does not hold
    original, _ = load_video_llama_checkpoint(path)
    assert sorted(p.name for p in out_dir.iterdir()) == ["config.json", "model.safetensors"]
    reloaded = load_goal_predictor(out_dir, with_backbone=False)
    assert reloaded.config == report.config == original.config
    theirs, ours = reloaded.state_dict(), original.state_dict()
    assert theirs.keys() == ours.keys()
    for k in ours:
        assert torch.equal(theirs[k], ours[k]), k
        if k.startswith(BRANCH_PART_PREFIXES):
            assert torch.equal(theirs[k], sd[goalcraft_to_video_llama_key(k)]), k
