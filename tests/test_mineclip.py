"""MineCLIP: shapes, normalisation, adapters and goal space, checkpoint formats (real and ours).

Everything runs on tiny configs on the CPU; the real ViT-B/16 size is only built on the meta device.
The real key names checked here come from the public MineCLIP code (MineDojo/MineCLIP:
mineclip/mineclip/{mineclip,base,clip,head,pooling,transformer}.py and its vendored
x_transformers 0.27.1), whose released attn.pth loads with strict=True into
MineCLIP(arch="vit_base_p16_fz.v2.t2", pool_type="attn.d2.nh8.glusw", mlp_adapter_spec="v0-2.t0",
resolution=(160, 256), image_feature_dim=512, hidden_dim=512).
"""

from __future__ import annotations

import json
import math
import os

import pytest
import torch
import torch.nn.functional as F

from goalcraft.models.checkpoints import CheckpointError
from goalcraft.models.clip_tokenizer import tokenize
from goalcraft.models.mineclip import (
    MC_IMAGE_MEAN,
    MC_IMAGE_STD,
    MINECLIP_CONFIGS,
    MineCLIP,
    MineCLIPConfig,
    load_mineclip,
    load_mineclip_checkpoint,
    normalize_frames,
    reference_state_dict,
    save_mineclip,
)

TINY = MINECLIP_CONFIGS["tiny"]
B, T = 2, 4


def make_model(config: MineCLIPConfig = TINY, seed: int = 0) -> MineCLIP:
    torch.manual_seed(seed)
    model = MineCLIP(config).eval()
    with torch.no_grad():  # move the adapter away from its near-identity start, so it matters
        model.reward_head.video_residual_weight.fill_(0.0)
    return model


@pytest.fixture(scope="module")
def model() -> MineCLIP:
    return make_model()


@pytest.fixture(scope="module")
def frames() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (B, T, 160, 256, 3), generator=g, dtype=torch.uint8)


@pytest.fixture(scope="module")
def tokens() -> torch.Tensor:
    return tokenize(["mine a diamond", "chop a tree", "kill a zombie"])


# ----------------------------------------------------------------------------- shapes and preprocessing


@torch.no_grad()
def test_shapes_for_both_frame_layouts(model, frames, tokens):
    per_frame = model.encode_frames(frames)
    assert per_frame.shape == (B, T, TINY.embed_dim) and model.embed_dim == TINY.embed_dim == 32
    channels_first = frames.permute(0, 1, 4, 2, 3).contiguous()
    assert torch.allclose(model.encode_frames(channels_first), per_frame, atol=1e-6)
    assert model.encode_video(frames).shape == (B, 32)
    assert model.goal_embedding(frames).shape == (B, 32)
    assert model.encode_text(tokens).shape == (3, 32)
    assert model(frames, tokens).shape == (B, 3)


def test_wrong_frame_shapes_are_rejected(model):
    with pytest.raises(ValueError, match="160, 256"):
        model.encode_frames(torch.zeros(1, 2, 128, 128, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="frames must be"):
        model.encode_frames(torch.zeros(2, 160, 256, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="exceed"):
        model.encode_video(torch.zeros(1, 33, 160, 256, 3, dtype=torch.uint8))


def test_normalize_known_values():
    for v in (0, 128, 255):
        frame = torch.full((1, 3, 2, 2), v, dtype=torch.uint8)
        out = normalize_frames(frame)
        assert out.dtype == torch.float32
        for c in range(3):
            expected = (v / 255.0 - MC_IMAGE_MEAN[c]) / MC_IMAGE_STD[c]
            assert torch.allclose(out[0, c], torch.full((2, 2), expected), atol=1e-6)
    assert MC_IMAGE_MEAN == (0.3331, 0.3245, 0.3051) and MC_IMAGE_STD == (0.2439, 0.2493, 0.2873)
    assert math.isclose(normalize_frames(torch.full((3, 1, 1), 255.0))[0, 0, 0].item(), (1 - 0.3331) / 0.2439, rel_tol=1e-6)


@torch.no_grad()
def test_encode_frames_normalises_inside(model):
    # A constant frame v through encode_frames == the vision tower fed the normalised tensor by hand.
    v = torch.tensor([200, 90, 30], dtype=torch.uint8)
    frames = v.view(1, 1, 1, 1, 3).expand(1, 2, 160, 256, 3).contiguous()
    by_hand = torch.stack(
        [torch.full((160, 256), (int(v[c]) / 255.0 - MC_IMAGE_MEAN[c]) / MC_IMAGE_STD[c]) for c in range(3)]
    )
    expected = model.clip_model.vision_model(by_hand.unsqueeze(0))
    got = model.encode_frames(frames)
    assert torch.allclose(got[0, 0], expected[0], atol=1e-5) and torch.allclose(got[0, 1], expected[0], atol=1e-5)
    # float frames in 0..255 are treated like uint8 ones
    assert torch.allclose(model.encode_frames(frames.float()), got, atol=1e-6)


# ----------------------------------------------------------------------------- video, text and adapters


@torch.no_grad()
def test_temporal_pooling_depends_on_frame_order(model, frames):
    video = model.encode_video(frames)
    reversed_video = model.encode_video(frames.flip(1))
    assert not torch.allclose(video, reversed_video, atol=1e-4)  # learned position embedding
    # each clip is encoded on its own: batch order does not leak across clips
    assert torch.allclose(model.encode_video(frames[1:]), video[1:], atol=1e-5)


@torch.no_grad()
def test_goal_space_pre_and_post_adapter(model, frames):
    video = model.encode_video(frames)
    assert torch.equal(model.goal_embedding(frames), video)  # default "pre_adapter"
    adapted = model.adapt_video(video)
    assert not torch.allclose(adapted, video, atol=1e-3)
    # the adapter is sigmoid(w) * x + (1 - sigmoid(w)) * MLP(x)
    keep = torch.sigmoid(model.reward_head.video_residual_weight)
    assert torch.allclose(adapted, keep * video + (1 - keep) * model.reward_head.video_adapter(video), atol=1e-6)

    post = MineCLIP(TINY.replace(goal_space="post_adapter")).eval()
    post.load_state_dict(model.state_dict())
    assert torch.allclose(post.goal_embedding(frames), adapted, atol=1e-6)
    assert torch.allclose(post.encode_video(frames), video, atol=1e-6)
    with pytest.raises(ValueError, match="goal_space"):
        TINY.replace(goal_space="adapted")


@torch.no_grad()
def test_forward_is_scaled_cosine_after_adapters(model, frames, tokens):
    v = F.normalize(model.adapt_video(model.encode_video(frames)), dim=-1)
    t = F.normalize(model.adapt_text(model.encode_text(tokens)), dim=-1)
    expected = model.clip_model.logit_scale.exp() * v @ t.T
    assert torch.allclose(model(frames, tokens), expected, atol=1e-5)
    assert math.isclose(model.clip_model.logit_scale.exp().item(), 1 / 0.07, rel_tol=1e-5)


@torch.no_grad()
def test_text_adapter_when_configured(tokens):
    model = make_model(TINY.replace(text_adapter_layers=2))
    with torch.no_grad():
        model.reward_head.text_residual_weight.fill_(0.0)
    keys = set(model.state_dict())
    assert {"reward_head.text_residual_weight", "reward_head.text_adapter.0.weight", "reward_head.text_adapter.3.weight"} <= keys
    text = model.encode_text(tokens)
    assert not torch.allclose(model.adapt_text(text), text, atol=1e-3)
    # the real layout (v0-2.t0) has no text adapter: adapt_text is the identity
    plain = make_model()
    assert torch.equal(plain.adapt_text(text), text)
    assert not any(k.startswith("reward_head.text") for k in plain.state_dict())


@torch.no_grad()
def test_text_is_pooled_at_end_of_text(model, tokens):
    text = model.encode_text(tokens)
    # anything after <|endoftext|> is ignored (causal attention, pooled at the EOT position)
    noisy = tokens.clone()
    for row in range(noisy.shape[0]):
        eot = int(noisy[row].argmax())
        noisy[row, eot + 1 :] = torch.randint(1, 49000, (noisy.shape[1] - eot - 1,))
    assert torch.allclose(model.encode_text(noisy), text, atol=1e-5)
    assert not torch.allclose(text[0], text[1], atol=1e-4)


# ----------------------------------------------------------------------------- the real checkpoint format


def save_reference(model: MineCLIP, path, *, aliases: bool = True, transform=None) -> None:
    sd = {k: v.clone() for k, v in reference_state_dict(model, aliases=aliases).items()}
    if transform is not None:
        transform(sd)
    torch.save({"state_dict": sd}, path)


@pytest.mark.parametrize("aliases", [True, False])
def test_real_checkpoint_format_round_trips(model, frames, tokens, tmp_path, aliases):
    path = tmp_path / "attn.pth"
    save_reference(model, path, aliases=aliases)
    loaded = load_mineclip_checkpoint(path, config=TINY)
    assert not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded.encode_video(frames), model.encode_video(frames))
        assert torch.equal(loaded(frames, tokens), model(frames, tokens))
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_real_checkpoint_key_set_and_aliases(model):
    sd = reference_state_dict(model)
    canonical = model.state_dict()
    assert all(k.startswith("model.") for k in sd)
    # MineCLIP's module repeats the vision tower as image_encoder and the CLIP model inside the head
    vision = [k for k in canonical if k.startswith("clip_model.vision_model.")]
    clip = [k for k in canonical if k.startswith("clip_model.")]
    assert len(sd) == len(canonical) + len(vision) + len(clip)
    assert torch.equal(sd["model.image_encoder.pos_embed"], sd["model.clip_model.vision_model.pos_embed"])
    assert torch.equal(sd["model.reward_head.clip_model.logit_scale"], sd["model.clip_model.logit_scale"])


@pytest.mark.parametrize(
    "transform, named",
    [
        (lambda sd: sd.pop("model.clip_model.text_model.ln_final.weight"), r"missing keys \(1\): \[model\.clip_model\.text_model\.ln_final\.weight\]"),
        (lambda sd: sd.update({"model.temporal_encoder.extra": torch.ones(1)}), r"unexpected keys \(1\): \[model\.temporal_encoder\.extra\]"),
        (
            lambda sd: sd.update({"model.clip_model.vision_model.pos_embed": torch.zeros(197, 64)}),
            r"model\.clip_model\.vision_model\.pos_embed: checkpoint \[197, 64\] vs model \[161, 64\]",
        ),
        (lambda sd: sd.update({"loss.temperature": torch.ones(())}), r"keys outside 'model\.' \(1\): \[loss\.temperature\]"),
        (lambda sd: sd.pop("model.image_encoder.ln_post.bias"), r"missing alias keys \(1\): \[model\.image_encoder\.ln_post\.bias\]"),
        (
            lambda sd: sd["model.reward_head.clip_model.text_model.projection"].add_(1.0),
            r"differ.*\[model\.reward_head\.clip_model\.text_model\.projection\]",
        ),
    ],
    ids=["missing", "unexpected", "wrong-shape", "outside-prefix", "partial-alias", "alias-differs"],
)
def test_real_checkpoint_mismatch_fails_naming_the_key(model, tmp_path, transform, named):
    path = tmp_path / "attn.pth"
    save_reference(model, path, transform=transform)
    with pytest.raises(CheckpointError, match=named) as info:
        load_mineclip_checkpoint(path, config=TINY)
    assert str(path) in str(info.value)


def test_real_checkpoint_with_code_is_refused(model, tmp_path):
    marker = tmp_path / "code_ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "attn.pth"
    torch.save({"state_dict": reference_state_dict(model), "hparams": Payload()}, path)
    with pytest.raises(CheckpointError, match="needs code to load"):
        load_mineclip_checkpoint(path, config=TINY)
    assert not marker.exists()


def test_real_checkpoint_needs_the_state_dict_entry(model, tmp_path):
    torch.save(reference_state_dict(model), tmp_path / "flat.pth")
    with pytest.raises(CheckpointError, match="no entry 'state_dict'"):
        load_mineclip_checkpoint(tmp_path / "flat.pth", config=TINY)


# ----------------------------------------------------------------------------- the real size


# (key, shape) as the public MineCLIP code creates them for the released attn variant.
REAL_KEYS = {
    "model.clip_model.vision_model.conv1.weight": (768, 3, 16, 16),
    "model.clip_model.vision_model.cls_token": (768,),
    "model.clip_model.vision_model.pos_embed": (161, 768),  # 10 x 16 patches + class token
    "model.clip_model.vision_model.ln_pre.weight": (768,),
    "model.clip_model.vision_model.blocks.0.attn.in_proj_weight": (2304, 768),
    "model.clip_model.vision_model.blocks.11.mlp.c_fc.weight": (3072, 768),
    "model.clip_model.vision_model.ln_post.bias": (768,),
    "model.clip_model.vision_model.projection": (768, 512),
    "model.clip_model.text_model.token_embedding.weight": (49408, 512),
    "model.clip_model.text_model.pos_embed": (77, 512),
    "model.clip_model.text_model.blocks.11.attn.out_proj.weight": (512, 512),
    "model.clip_model.text_model.blocks.0.ln_2.weight": (512,),
    "model.clip_model.text_model.ln_final.weight": (512,),
    "model.clip_model.text_model.projection": (512, 512),
    "model.clip_model.logit_scale": (),
    "model.temporal_encoder.attn.model.pos_emb.emb.weight": (32, 512),
    "model.temporal_encoder.attn.model.attn_layers.layers.0.0.0.weight": (512,),
    "model.temporal_encoder.attn.model.attn_layers.layers.0.1.to_q.weight": (512, 512),
    "model.temporal_encoder.attn.model.attn_layers.layers.2.1.to_out.weight": (512, 512),
    "model.temporal_encoder.attn.model.attn_layers.layers.1.1.net.0.proj.weight": (4096, 512),  # SwiGLU
    "model.temporal_encoder.attn.model.attn_layers.layers.3.1.net.3.weight": (512, 2048),
    "model.temporal_encoder.attn.model.norm.weight": (512,),
    "model.reward_head.video_adapter.0.weight": (512, 512),
    "model.reward_head.video_adapter.3.bias": (512,),
    "model.reward_head.video_residual_weight": (),
    "model.image_encoder.blocks.5.attn.in_proj_bias": (2304,),
    "model.reward_head.clip_model.text_model.token_embedding.weight": (49408, 512),
    "model.reward_head.clip_model.logit_scale": (),
}


def test_vitb16_builds_with_the_real_layout():
    config = MINECLIP_CONFIGS["vitb16"]
    assert config.resolution == (160, 256) and config.grid == (10, 16) and config.goal_space == "pre_adapter"
    with torch.device("meta"):
        big = MineCLIP(config)
    n_params = sum(p.numel() for p in big.parameters())
    assert 150e6 < n_params < 165e6  # ViT-B/16 (~86M) + text (~63M) + temporal (~8M) + adapter
    assert big.embed_dim == 512
    canonical = big.state_dict()
    sd = reference_state_dict(big)
    # 152 vision + 149 text + logit_scale + 27 temporal + 5 head; the file repeats 152 + 302 as aliases
    assert len(canonical) == 334 and len(sd) == 334 + 152 + 302
    for key, shape in REAL_KEYS.items():
        assert key in sd, key
        assert tuple(sd[key].shape) == shape, key
    assert not any(k.startswith(("model.temporal_encoder.mlp_before_pool", "model.reward_head.text_")) for k in sd)
    prefixes = ("clip_model.vision_model.", "clip_model.text_model.", "clip_model.logit_scale",
                "temporal_encoder.attn.model.", "reward_head.video_")
    assert all(k.startswith(prefixes) for k in canonical)


# ----------------------------------------------------------------------------- our format


def test_save_and_load_mineclip_round_trip(model, frames, tokens, tmp_path):
    out = save_mineclip(model, tmp_path / "mineclip")
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "mineclip"
    assert config["resolution"] == [160, 256] and config["embed_dim"] == 32 and config["vision_width"] == 64
    assert config["goal_space"] == "pre_adapter" and config["vocab_size"] == 49408
    loaded = load_mineclip(out)
    assert loaded.config == model.config and not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded.goal_embedding(frames), model.goal_embedding(frames))
        assert torch.equal(loaded(frames, tokens), model(frames, tokens))


def test_saved_goal_space_is_kept(model, frames, tmp_path):
    post = MineCLIP(TINY.replace(goal_space="post_adapter")).eval()
    post.load_state_dict(model.state_dict())
    loaded = load_mineclip(save_mineclip(post, tmp_path / "post"))
    assert loaded.config.goal_space == "post_adapter"
    with torch.no_grad():
        assert torch.equal(loaded.goal_embedding(frames), model.adapt_video(model.encode_video(frames)))


def test_load_mineclip_is_strict(model, tmp_path):
    out = save_mineclip(model, tmp_path / "m")
    config = json.loads((out / "config.json").read_text())
    config["temporal_depth"] = 1
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"unexpected keys.*attn_layers\.layers\.2"):
        load_mineclip(out)
