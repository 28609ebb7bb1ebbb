"""MineCLIP: the video-language model whose 512-d video embedding is STEVE-1's goal space.

The architecture is MineCLIP's released ``attn`` variant (``arch="vit_base_p16_fz.v2.t2"``,
``pool_type="attn.d2.nh8.glusw"``, ``mlp_adapter_spec="v0-2.t0"``, ``resolution=(160, 256)``):

* image encoder: CLIP ViT-B/16 (width 768, 12 layers, 12 heads) with a 10x16 patch grid plus a
  class token (161 positions), class token -> ``ln_post`` -> projection to 512;
* temporal encoder: a 2-layer, 8-head pre-norm transformer encoder over up to 32 frame features
  with a learned absolute position embedding (scaled by ``dim ** -0.5``), SwiGLU feed-forward
  (``glusw``), a final LayerNorm, and mean pooling over time;
* text encoder: CLIP's causal text transformer (12 layers, width 512, 8 heads, 77 tokens, vocab
  49,408), pooled at the end-of-text token (the highest id) and projected to 512;
* reward head (MineCLIP's ``CLIPScoreHead``): residual-weighted MLP adapters,
  ``sigmoid(w) * x + (1 - sigmoid(w)) * MLP(x)``; the release has a 2-layer video adapter and no
  text adapter (``v0-2.t0``), and a CLIP logit scale.

Module and parameter names follow the public MineCLIP code, so a checkpoint's ``state_dict`` maps
onto this module by stripping ``model.``. MineCLIP's module also registers the vision tower a second
time as ``image_encoder`` and the whole CLIP model again inside ``reward_head.clip_model``; its
state dicts therefore repeat those tensors under the alias names ``image_encoder.*`` and
``reward_head.clip_model.*``. Here each tensor has one name: :func:`load_mineclip_checkpoint`
accepts the aliases only as exact copies of their canonical keys, and :func:`reference_state_dict`
writes them back out.

This module knows nothing of Dagster or of any trainer.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from goalcraft.models.checkpoints import (
    WEIGHTS_FILE,
    CheckpointError,
    format_key_list,
    load_config_json,
    load_state_dict_file,
    save_model_dir,
    strict_load,
)

__all__ = [
    "CHECKPOINT_PREFIX",
    "MC_IMAGE_MEAN",
    "MC_IMAGE_STD",
    "MINECLIP_CONFIGS",
    "MineCLIP",
    "MineCLIPConfig",
    "load_mineclip",
    "load_mineclip_checkpoint",
    "normalize_frames",
    "reference_state_dict",
    "save_mineclip",
]

# Per-channel RGB statistics of Minecraft frames (MineCLIP's, from 2.8M frames of 21K clips).
MC_IMAGE_MEAN = (0.3331, 0.3245, 0.3051)
MC_IMAGE_STD = (0.2439, 0.2493, 0.2873)

# The released checkpoint keeps MineCLIP's state dict under ckpt["state_dict"], every key under this.
CHECKPOINT_PREFIX = "model."
# Alias prefix in MineCLIP's own state dict -> the canonical prefix here.
_ALIASES = {
    "image_encoder.": "clip_model.vision_model.",
    "reward_head.clip_model.": "clip_model.",
}

GoalSpace = Literal["pre_adapter", "post_adapter"]


@dataclass(frozen=True)
class MineCLIPConfig:
    """Sizes of one MineCLIP. ``MINECLIP_CONFIGS`` has the real one and a tiny one."""

    model_type: ClassVar[str] = "mineclip"

    resolution: tuple[int, int] = (160, 256)  # (height, width) of input frames
    patch_size: int = 16
    vision_width: int = 768
    vision_layers: int = 12
    vision_heads: int = 12
    embed_dim: int = 512  # image, text, video and goal embedding size
    text_width: int = 512
    text_layers: int = 12
    text_heads: int = 8
    context_length: int = 77
    vocab_size: int = 49408
    temporal_depth: int = 2
    temporal_heads: int = 8
    temporal_dim_head: int = 64
    temporal_ff_mult: int = 4
    max_frames: int = 32
    video_adapter_layers: int = 2
    text_adapter_layers: int = 0
    # What goal_embedding returns: the temporal encoder's output (STEVE-1's goal space), or that
    # passed through the reward head's video adapter.
    goal_space: GoalSpace = "pre_adapter"

    def __post_init__(self) -> None:
        if self.goal_space not in ("pre_adapter", "post_adapter"):
            raise ValueError(f"goal_space must be 'pre_adapter' or 'post_adapter', got {self.goal_space!r}")
        if len(self.resolution) != 2 or any(int(r) <= 0 or int(r) % self.patch_size for r in self.resolution):
            raise ValueError(
                f"resolution {self.resolution} must be two positive multiples of patch_size {self.patch_size}"
            )
        object.__setattr__(self, "resolution", (int(self.resolution[0]), int(self.resolution[1])))
        towers = ((self.vision_width, self.vision_heads, "vision"), (self.text_width, self.text_heads, "text"))
        for width, heads, what in towers:
            if heads <= 0 or width % heads:
                raise ValueError(f"{what}_width {width} is not divisible by {what}_heads {heads}")
        positive = ("patch_size", "vision_layers", "embed_dim", "text_layers", "context_length", "vocab_size",
                    "temporal_depth", "temporal_heads", "temporal_dim_head", "temporal_ff_mult", "max_frames")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.video_adapter_layers < 0 or self.text_adapter_layers < 0:
            raise ValueError("adapter layer counts must be >= 0")

    @property
    def grid(self) -> tuple[int, int]:
        return self.resolution[0] // self.patch_size, self.resolution[1] // self.patch_size

    def replace(self, **changes) -> MineCLIPConfig:
        return dataclasses.replace(self, **changes)


MINECLIP_CONFIGS: dict[str, MineCLIPConfig] = {
    "vitb16": MineCLIPConfig(),
    "tiny": MineCLIPConfig(
        vision_width=64,
        vision_layers=2,
        vision_heads=2,
        embed_dim=32,
        text_width=64,
        text_layers=2,
        text_heads=2,
        temporal_heads=2,
        temporal_dim_head=16,
    ),
    # The embedded demo's goal space: the tiny trunk with 32-px patches (40 tokens a frame, half the
    # training cost on a laptop CPU), but STEVE-1's 512-d goal embedding, so its tables, prior and
    # goal predictor have the real model's shapes.
    "demo": MineCLIPConfig(
        patch_size=32,
        vision_width=64,
        vision_layers=2,
        vision_heads=2,
        embed_dim=512,
        text_width=64,
        text_layers=2,
        text_heads=2,
        temporal_heads=2,
        temporal_dim_head=16,
    ),
}


def normalize_frames(frames: Tensor) -> Tensor:
    """``[..., 3, H, W]`` pixel values in 0..255 (any dtype) -> float32, /255, then MineCLIP's mean/std."""
    if frames.shape[-3] != 3:
        raise ValueError(f"expected channels first [..., 3, H, W], got shape {tuple(frames.shape)}")
    # One contiguous float copy, then in place: the same operations in the same order as
    # ((x / 255) - mean) / std, bitwise, at a third of the memory traffic (it was a quarter of a
    # tiny goal space's training step).
    x = frames.to(torch.float32, memory_format=torch.contiguous_format)
    if x.data_ptr() == frames.data_ptr():  # already float32 and contiguous: never scale the caller's tensor
        x = x.clone()
    x.div_(255.0)
    mean = torch.tensor(MC_IMAGE_MEAN, dtype=x.dtype, device=x.device).view(3, 1, 1)
    std = torch.tensor(MC_IMAGE_STD, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return x.sub_(mean).div_(std)


# --------------------------------------------------------------------------------------------------
# CLIP towers


class QuickGELU(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    """CLIP's pre-norm transformer block (keys ``attn.in_proj_weight``, ``ln_1``, ``mlp.c_fc``, ...)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(
                [("c_fc", nn.Linear(width, 4 * width)), ("gelu", QuickGELU()), ("c_proj", nn.Linear(4 * width, width))]
            )
        )
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=attn_mask)[0]
        return x + self.mlp(self.ln_2(x))


class VisionTransformer(nn.Module):
    def __init__(self, config: MineCLIPConfig):
        super().__init__()
        width = config.vision_width
        scale = width**-0.5
        gh, gw = config.grid
        self.conv1 = nn.Conv2d(3, width, kernel_size=config.patch_size, stride=config.patch_size, bias=False)
        self.cls_token = nn.Parameter(scale * torch.randn(width))
        self.pos_embed = nn.Parameter(scale * torch.randn(gh * gw + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.blocks = nn.Sequential(
            *[ResidualAttentionBlock(width, config.vision_heads) for _ in range(config.vision_layers)]
        )
        self.ln_post = nn.LayerNorm(width)
        self.projection = nn.Parameter(scale * torch.randn(width, config.embed_dim))

    def forward(self, images: Tensor) -> Tensor:
        """``[N, 3, H, W]`` normalised images -> ``[N, embed_dim]``."""
        x = self.conv1(images).flatten(2).transpose(1, 2)  # [N, patches, width], row-major patches
        if x.shape[1] + 1 != self.pos_embed.shape[0]:
            raise ValueError(
                f"image gives {x.shape[1]} patches, the position embedding has {self.pos_embed.shape[0] - 1}"
            )
        cls = self.cls_token.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.pos_embed.to(x.dtype)
        x = self.blocks(self.ln_pre(x))
        return self.ln_post(x[:, 0]) @ self.projection


class TextTransformer(nn.Module):
    def __init__(self, config: MineCLIPConfig):
        super().__init__()
        width = config.text_width
        self.context_length = config.context_length
        self.token_embedding = nn.Embedding(config.vocab_size, width)
        self.pos_embed = nn.Parameter(torch.empty(config.context_length, width))
        self.blocks = nn.Sequential(
            *[ResidualAttentionBlock(width, config.text_heads) for _ in range(config.text_layers)]
        )
        self.ln_final = nn.LayerNorm(width)
        self.projection = nn.Parameter(torch.empty(width, config.embed_dim))
        # CLIP's initialisation
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.pos_embed, std=0.01)
        proj_std = width**-0.5 * (2 * config.text_layers) ** -0.5
        for block in self.blocks:
            nn.init.normal_(block.attn.in_proj_weight, std=width**-0.5)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=(2 * width) ** -0.5)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
        nn.init.normal_(self.projection, std=width**-0.5)

    def forward(self, tokens: Tensor) -> Tensor:
        """``[B, L]`` token ids (L <= context_length) -> ``[B, embed_dim]``, pooled at the highest id (EOT)."""
        if tokens.ndim != 2 or tokens.shape[1] > self.context_length:
            raise ValueError(f"tokens must be [B, L] with L <= {self.context_length}, got {tuple(tokens.shape)}")
        length = tokens.shape[1]
        x = self.token_embedding(tokens) + self.pos_embed[:length]
        causal = torch.full((length, length), float("-inf"), device=x.device, dtype=x.dtype).triu_(1)
        for block in self.blocks:
            x = block(x, attn_mask=causal)
        x = self.ln_final(x)
        eot = tokens.argmax(dim=-1)
        return x[torch.arange(x.shape[0], device=x.device), eot] @ self.projection


class CLIPModel(nn.Module):
    def __init__(self, config: MineCLIPConfig):
        super().__init__()
        self.vision_model = VisionTransformer(config)
        self.text_model = TextTransformer(config)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))


# --------------------------------------------------------------------------------------------------
# Temporal encoder. Names follow MineCLIP's TemporalPooling -> TemporalTransformer ->
# x-transformers ContinuousTransformerWrapper(Encoder): one pre-norm residual branch per layer,
# stored as ``layers.<i>`` = [norms, block] with the pre-branch LayerNorm at ``layers.<i>.0.0``.


class TemporalAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int):
        super().__init__()
        self.heads = heads
        inner = heads * dim_head
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        q, k, v = (proj(x).view(b, n, self.heads, -1).transpose(1, 2) for proj in (self.to_q, self.to_k, self.to_v))
        out = F.scaled_dot_product_attention(q, k, v)  # scale dim_head ** -0.5, no mask: an encoder
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class GatedProjection(nn.Module):
    """``x W + b`` split in two halves ``a, g``: returns ``a * silu(g)`` (SwiGLU)."""

    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.proj = nn.Linear(dim, 2 * inner)

    def forward(self, x: Tensor) -> Tensor:
        a, gate = self.proj(x).chunk(2, dim=-1)
        return a * F.silu(gate)


class TemporalFeedForward(nn.Module):
    def __init__(self, dim: int, mult: int):
        super().__init__()
        inner = dim * mult
        # indices 1 and 2 are x-transformers' (absent) post-activation norm and dropout
        self.net = nn.Sequential(GatedProjection(dim, inner), nn.Identity(), nn.Identity(), nn.Linear(inner, dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class PreNormResidual(nn.ModuleList):
    """``x + fn(LayerNorm(x))``, laid out as ``[ModuleList([norm]), fn]``."""

    def __init__(self, dim: int, fn: nn.Module):
        super().__init__([nn.ModuleList([nn.LayerNorm(dim)]), fn])

    def forward(self, x: Tensor) -> Tensor:
        norms, fn = self[0], self[1]
        return x + fn(norms[0](x))


class TemporalLayers(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, dim_head: int, ff_mult: int):
        super().__init__()
        layers = []
        for _ in range(depth):
            layers.append(PreNormResidual(dim, TemporalAttention(dim, heads, dim_head)))
            layers.append(PreNormResidual(dim, TemporalFeedForward(dim, ff_mult)))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class AbsolutePositionEmbedding(nn.Module):
    def __init__(self, dim: int, max_len: int):
        super().__init__()
        self.scale = dim**-0.5
        self.emb = nn.Embedding(max_len, dim)

    def forward(self, length: int, device: torch.device) -> Tensor:
        return self.emb(torch.arange(length, device=device)) * self.scale


class TemporalTransformerCore(nn.Module):
    def __init__(self, config: MineCLIPConfig):
        super().__init__()
        dim = config.embed_dim
        self.max_frames = config.max_frames
        self.pos_emb = AbsolutePositionEmbedding(dim, config.max_frames)
        self.attn_layers = TemporalLayers(
            dim, config.temporal_depth, config.temporal_heads, config.temporal_dim_head, config.temporal_ff_mult
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] > self.max_frames:
            raise ValueError(f"{x.shape[1]} frames exceed the temporal encoder's {self.max_frames} positions")
        x = x + self.pos_emb(x.shape[1], x.device).to(x.dtype)
        return self.norm(self.attn_layers(x))


class TemporalTransformer(nn.Module):
    def __init__(self, config: MineCLIPConfig):
        super().__init__()
        self.model = TemporalTransformerCore(config)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x).mean(dim=1)


class TemporalPooling(nn.Module):
    """``[B, T, D]`` frame features -> ``[B, D]`` video feature."""

    def __init__(self, config: MineCLIPConfig):
        super().__init__()
        self.attn = TemporalTransformer(config)

    def forward(self, x: Tensor) -> Tensor:
        return self.attn(x)


# --------------------------------------------------------------------------------------------------
# Reward head


def _adapter_mlp(dim: int, num_layers: int) -> nn.Sequential:
    # [Linear, (no norm), ReLU] * (num_layers - 1) + [Linear]: Linear layers at indices 0, 3, 6, ...
    mods: list[nn.Module] = []
    for _ in range(num_layers - 1):
        mods += [nn.Linear(dim, dim), nn.Identity(), nn.ReLU()]
    mods.append(nn.Linear(dim, dim))
    gain = nn.init.calculate_gain("relu")
    for mod in mods:
        if isinstance(mod, nn.Linear):
            nn.init.orthogonal_(mod.weight, gain=gain)
            nn.init.zeros_(mod.bias)
    return nn.Sequential(*mods)


class CLIPScoreHead(nn.Module):
    """Residual-weighted adapters ``sigmoid(w) x + (1 - sigmoid(w)) MLP(x)``; 0 layers = identity."""

    def __init__(self, config: MineCLIPConfig):
        super().__init__()
        dim = config.embed_dim
        if config.video_adapter_layers:
            self.video_adapter = _adapter_mlp(dim, config.video_adapter_layers)
            self.video_residual_weight = nn.Parameter(torch.tensor(4.0))
        else:
            self.video_adapter, self.video_residual_weight = nn.Identity(), None
        if config.text_adapter_layers:
            self.text_adapter = _adapter_mlp(dim, config.text_adapter_layers)
            self.text_residual_weight = nn.Parameter(torch.tensor(4.0))
        else:
            self.text_adapter, self.text_residual_weight = nn.Identity(), None

    @staticmethod
    def _adapt(x: Tensor, adapter: nn.Module, weight: Tensor | None) -> Tensor:
        if weight is None:
            return adapter(x)
        keep = torch.sigmoid(weight)
        return keep * x + (1.0 - keep) * adapter(x)

    def adapt_video(self, x: Tensor) -> Tensor:
        return self._adapt(x, self.video_adapter, self.video_residual_weight)

    def adapt_text(self, x: Tensor) -> Tensor:
        return self._adapt(x, self.text_adapter, self.text_residual_weight)


# --------------------------------------------------------------------------------------------------
# MineCLIP


class MineCLIP(nn.Module):
    def __init__(self, config: MineCLIPConfig):
        super().__init__()
        self.config = config
        self.clip_model = CLIPModel(config)
        self.temporal_encoder = TemporalPooling(config)
        self.reward_head = CLIPScoreHead(config)

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    @property
    def image_encoder(self) -> VisionTransformer:
        return self.clip_model.vision_model

    @property
    def logit_scale(self) -> nn.Parameter:
        return self.clip_model.logit_scale

    def _device_dtype(self) -> tuple[torch.device, torch.dtype]:
        p = self.clip_model.vision_model.projection
        return p.device, p.dtype

    def encode_frames(self, frames: Tensor) -> Tensor:
        """Per-frame features ``[B, T, D]`` of ``[B, T, H, W, 3]`` or ``[B, T, 3, H, W]`` pixels in 0..255.

        Frames are moved to the model's device and normalised here (/255, MineCLIP mean/std).
        """
        h, w = self.config.resolution
        if frames.ndim != 5:
            raise ValueError(f"frames must be [B, T, H, W, 3] or [B, T, 3, H, W], got shape {tuple(frames.shape)}")
        if tuple(frames.shape[-3:]) == (h, w, 3):
            frames = frames.permute(0, 1, 4, 2, 3)
        elif tuple(frames.shape[-3:]) != (3, h, w):
            raise ValueError(
                f"frames must be [B, T, {h}, {w}, 3] or [B, T, 3, {h}, {w}] for resolution {self.config.resolution}, "
                f"got shape {tuple(frames.shape)}"
            )
        b, t = frames.shape[:2]
        device, dtype = self._device_dtype()
        images = normalize_frames(frames.to(device)).to(dtype).reshape(b * t, 3, h, w)
        return self.clip_model.vision_model(images).view(b, t, -1)

    def encode_video(self, frames: Tensor) -> Tensor:
        """``[B, D]`` video embedding: frame features pooled over time, no adapter, not normalised.

        This is STEVE-1's goal space.
        """
        return self.temporal_encoder(self.encode_frames(frames))

    def goal_embedding(self, frames: Tensor) -> Tensor:
        """The goal embedding of ``config.goal_space``: ``encode_video``, or its video-adapted form."""
        return self.goal_embedding_of_frame_features(self.encode_frames(frames))

    def goal_embedding_of_frame_features(self, frame_features: Tensor) -> Tensor:
        """:meth:`goal_embedding` from :meth:`encode_frames`' output ``[B, T, D]`` (when both are wanted)."""
        video = self.temporal_encoder(frame_features)
        return self.adapt_video(video) if self.config.goal_space == "post_adapter" else video

    def encode_text(self, tokens: Tensor) -> Tensor:
        """``[B, D]`` text embedding of CLIP token ids ``[B, 77]`` (see ``clip_tokenizer.tokenize``)."""
        device, _ = self._device_dtype()
        return self.clip_model.text_model(tokens.to(device=device, dtype=torch.long))

    def adapt_video(self, video_features: Tensor) -> Tensor:
        return self.reward_head.adapt_video(video_features)

    def adapt_text(self, text_features: Tensor) -> Tensor:
        return self.reward_head.adapt_text(text_features)

    def similarity(self, video_features: Tensor, text_features: Tensor) -> Tensor:
        """``logit_scale.exp() * cosine`` of adapted video ``[Bv, D]`` and text ``[Bt, D]`` features -> ``[Bv, Bt]``."""
        v = F.normalize(self.adapt_video(video_features), dim=-1)
        t = F.normalize(self.adapt_text(text_features), dim=-1)
        return self.clip_model.logit_scale.exp() * v @ t.t()

    def forward(self, frames: Tensor, tokens: Tensor) -> Tensor:
        """Logits ``[B_video, B_text]``: scaled cosine similarity after the reward-head adapters."""
        return self.similarity(self.encode_video(frames), self.encode_text(tokens))

    @torch.no_grad()
    def clamp_logit_scale(self, max_scale: float = 100.0) -> None:
        """CLIP's training trick: keep ``logit_scale.exp()`` within [1/max_scale, max_scale]."""
        self.clip_model.logit_scale.clamp_(-math.log(max_scale), math.log(max_scale))


# --------------------------------------------------------------------------------------------------
# MineCLIP's own checkpoint format (attn.pth)


def reference_state_dict(
    model: MineCLIP, *, prefix: str = CHECKPOINT_PREFIX, aliases: bool = True
) -> dict[str, Tensor]:
    """``model``'s weights in MineCLIP's checkpoint layout: keys under ``prefix``, with the alias
    copies (``image_encoder.*``, ``reward_head.clip_model.*``) that MineCLIP's module carries."""
    canonical = model.state_dict()
    out = {prefix + k: v for k, v in canonical.items()}
    if aliases:
        for alias, target in _ALIASES.items():
            for k, v in canonical.items():
                if k.startswith(target):
                    out[prefix + alias + k[len(target):]] = v
    return out


def _canonical_state_dict(state_dict: Mapping[str, Tensor], model: MineCLIP, source: str) -> dict[str, Tensor]:
    """Strip ``model.`` and fold MineCLIP's alias keys into their canonical keys.

    Every key must carry the ``model.`` prefix. An alias group (``image_encoder.*`` or
    ``reward_head.clip_model.*``) is optional, but when present it must be complete and each alias
    must equal its canonical tensor, so every key of the file is accounted for exactly once. The
    canonical keys themselves are checked by :func:`strict_load`.
    """
    problems: list[str] = []
    outside = [k for k in state_dict if not k.startswith(CHECKPOINT_PREFIX)]
    if outside:
        problems.append(f"keys outside {CHECKPOINT_PREFIX!r} ({len(outside)}): {format_key_list(outside)}")
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    canonical: dict[str, Tensor] = {}
    alias_groups: dict[str, dict[str, Tensor]] = {alias: {} for alias in _ALIASES}
    for key, value in state_dict.items():
        if not key.startswith(CHECKPOINT_PREFIX):
            continue
        key = key[len(CHECKPOINT_PREFIX):]
        alias = next((a for a in _ALIASES if key.startswith(a)), None)
        if alias is None:
            canonical[key] = value
        else:
            alias_groups[alias][_ALIASES[alias] + key[len(alias):]] = value

    for alias, group in alias_groups.items():
        if not group:
            continue
        target = _ALIASES[alias]

        def real(k: str, alias: str = alias, target: str = target) -> str:
            return CHECKPOINT_PREFIX + alias + k[len(target):]

        wanted = {k for k in expected if k.startswith(target)}
        absent = sorted(wanted - set(group))
        stray = sorted(set(group) - wanted)
        differ = []
        for k in sorted(set(group) & wanted):
            base, value = canonical.get(k), group[k]
            if base is None or tuple(base.shape) != expected[k]:
                continue  # strict_load reports the canonical key as missing or misshapen
            if value.shape != base.shape or not torch.equal(value, base.to(value.dtype)):
                differ.append(real(k))
        if absent:
            problems.append(f"missing alias keys ({len(absent)}): {format_key_list(map(real, absent))}")
        if stray:
            problems.append(f"unexpected alias keys ({len(stray)}): {format_key_list(map(real, stray))}")
        if differ:
            problems.append(
                f"alias keys that differ from their {CHECKPOINT_PREFIX}{target}* originals ({len(differ)}): "
                f"{format_key_list(differ)}"
            )
    if problems:
        raise CheckpointError(
            f"checkpoint {source} does not match MineCLIP; nothing was loaded:\n  " + "\n  ".join(problems)
        )
    return canonical


def load_mineclip_checkpoint(
    path: str | os.PathLike[str],
    config: MineCLIPConfig = MINECLIP_CONFIGS["vitb16"],
) -> MineCLIP:
    """Build MineCLIP from a checkpoint in MineCLIP's format, strictly, in eval mode on the CPU.

    A ``.pth``/``.pt``/``.ckpt`` file must hold ``{"state_dict": {"model.<key>": tensor, ...}}`` (the
    released ``attn.pth``) and is read with ``weights_only=True``; a ``.safetensors`` file holds the
    ``model.<key>`` tensors directly. Every key must be used and every parameter filled.
    """
    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        raw = load_state_dict_file(path)
    else:
        raw = load_state_dict_file(path, key="state_dict")
    model = MineCLIP(config)
    strict_load(model, _canonical_state_dict(raw, model, str(path)), source=str(path), key_prefix=CHECKPOINT_PREFIX)
    return model.eval()


# --------------------------------------------------------------------------------------------------
# Our format: model.safetensors + config.json


def save_mineclip(model: MineCLIP, out_dir: str | os.PathLike[str]) -> Path:
    """Write ``model`` to ``out_dir`` (``model.safetensors`` + ``config.json``), atomically."""
    return save_model_dir(model, model.config, out_dir, model_type=MineCLIPConfig.model_type)


def load_mineclip(model_dir: str | os.PathLike[str]) -> MineCLIP:
    """Read a model written by :func:`save_mineclip`, strictly, in eval mode on the CPU."""
    model_dir = Path(model_dir)
    config = load_config_json(model_dir, MineCLIPConfig)
    model = MineCLIP(config)
    strict_load(model, load_state_dict_file(model_dir / WEIGHTS_FILE), source=str(model_dir / WEIGHTS_FILE))
    return model.eval()
