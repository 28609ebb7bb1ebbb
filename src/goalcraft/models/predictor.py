"""The Video-LLaMA-style goal predictor: instruction → text states → 32 visual query tokens → ``z_goal``.

Two paths meet in one Q-Former (a transformers ``Blip2QFormerModel``, 32 queries x 768 at full size):

* **video side** (Video-LLaMA's video branch, used as the training target): per-frame features of a
  goal clip (MineCLIP's, 512-d) → ``frame_proj`` to the Q-Former's encoder width, plus a learned
  ``frame_position_embedding`` → the Q-Former with its learned ``query_tokens`` cross-attending to the
  frames → ``[B, 32, 768]`` visual tokens. ``llama_proj`` maps their mean into the text backbone's width
  for the video–text contrastive loss (Video-LLaMA's own projection into the LLM).
* **text side** (what runs at inference): the backbone's hidden states → :class:`GoalPredictionHead`
  (mean-pool → MLP → 32 x 768 queries, plus learnable query embeddings, refined by a Transformer
  encoder) → the same Q-Former, cross-attending to the text states (``text_proj``) → ``[B, 32, 768]``
  predicted visual tokens.

An aligner (:class:`MLPAligner` = variant A, :class:`AttentionPoolAligner` = variant B) maps the tokens to
the 512-d goal space. Its output is multiplied by a calibrated ``output_scale`` so its norms match the raw
MineCLIP goal embeddings the policy expects (:meth:`GoalPredictor.calibrate_scale`).

The model knows nothing of training; :mod:`goalcraft.training.predictor` trains it. Files
(:func:`save_goal_predictor`): ``config.json``, ``model.safetensors`` (everything but the backbone),
and ``adapter/`` (the backbone's LoRA adapter in peft's format) when LoRA was used. The backbone's own
weights stay in their local folder, named in the config.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from goalcraft.models.backbones import (
    BackboneError,
    BackboneSpec,
    TextBackbone,
    load_multimodal_qformer,
    load_text_backbone,
    mean_pool,
    multimodal_qformer_info,
    resolve_backbone_path,
)
from goalcraft.models.checkpoints import (
    WEIGHTS_FILE,
    CheckpointError,
    load_config_json,
    load_state_dict_file,
    save_model_dir,
    strict_load,
)

AlignerKind = Literal["mlp", "attention"]
ADAPTER_DIR = "adapter"


@dataclass(frozen=True)
class PredictorConfig:
    """One goal-predictor size. ``text_dim`` must equal the backbone's hidden size."""

    model_type = "goalcraft_goal_predictor"  # class attribute, written to config.json

    name: str
    backbone: BackboneSpec = field(default_factory=BackboneSpec)
    text_dim: int = 384
    num_query_tokens: int = 32
    qformer_hidden: int = 768
    qformer_layers: int = 2
    qformer_heads: int = 12
    qformer_intermediate: int = 3072
    qformer_encoder_width: int = 768  # what the Q-Former's cross-attention reads (frames, text)
    # Video-LLaMA's video Q-Former cross-attends in every layer (1); BLIP-2's in every second (2).
    qformer_cross_attention_frequency: int = 1
    frame_dim: int = 512  # per-frame features of the goal clips (MineCLIP's embedding width)
    max_frames: int = 32  # Video-LLaMA's frame position embedding has 32 rows
    head_mlp_hidden: int = 1024
    head_layers: int = 2
    head_heads: int = 8
    goal_dim: int = 512
    aligner: AlignerKind = "mlp"
    aligner_hidden: int = 1024
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if isinstance(self.backbone, dict):  # from config.json
            object.__setattr__(self, "backbone", BackboneSpec(**self.backbone))
        if self.aligner not in ("mlp", "attention"):
            raise ValueError(f"aligner must be 'mlp' (A) or 'attention' (B), got {self.aligner!r}")
        for name, heads in (("qformer_heads", self.qformer_heads), ("head_heads", self.head_heads)):
            if self.qformer_hidden % heads:
                raise ValueError(f"qformer_hidden={self.qformer_hidden} is not divisible by {name}={heads}")

    def replace(self, **changes: Any) -> PredictorConfig:
        return dataclasses.replace(self, **changes)


PREDICTOR_CONFIGS: dict[str, PredictorConfig] = {
    # Video-LLaMA's video Q-Former (2 layers, 12 heads, 32 x 768 queries) on a LLaMA-7B backbone.
    "video-llama-7b": PredictorConfig(
        name="video-llama-7b", backbone=BackboneSpec(path="", kind="causal_lm", max_length=64), text_dim=4096,
        head_mlp_hidden=4096, head_layers=2, aligner_hidden=2048),
    # The embedded default: the packaged MiniLM encoder and a small Q-Former of full width.
    "minilm-demo": PredictorConfig(
        name="minilm-demo", backbone=BackboneSpec(path="minilm", kind="encoder", max_length=32), text_dim=384,
        qformer_layers=2, qformer_intermediate=1536, head_mlp_hidden=768, head_layers=1, aligner_hidden=512),
    # For tests: every width small, the structure unchanged.
    "tiny": PredictorConfig(
        name="tiny", text_dim=32, num_query_tokens=32, qformer_hidden=64, qformer_layers=2, qformer_heads=4,
        qformer_intermediate=128, qformer_encoder_width=48, frame_dim=24, max_frames=16, head_mlp_hidden=64,
        head_layers=1, head_heads=4, goal_dim=24, aligner_hidden=64, dropout=0.0),
}
# The tiny sizes on the real MiniLM backbone, at the tiny MineCLIP's 32-d goal space (pipeline tests).
PREDICTOR_CONFIGS["tiny-minilm"] = PREDICTOR_CONFIGS["tiny"].replace(
    name="tiny-minilm", text_dim=384, frame_dim=32, goal_dim=32)


def build_qformer(config: PredictorConfig) -> nn.Module:
    from transformers import Blip2QFormerConfig, Blip2QFormerModel

    return Blip2QFormerModel(Blip2QFormerConfig(
        hidden_size=config.qformer_hidden, num_hidden_layers=config.qformer_layers,
        num_attention_heads=config.qformer_heads, intermediate_size=config.qformer_intermediate,
        encoder_hidden_size=config.qformer_encoder_width,
        cross_attention_frequency=config.qformer_cross_attention_frequency,
        hidden_dropout_prob=config.dropout, attention_probs_dropout_prob=config.dropout))


class GoalPredictionHead(nn.Module):
    """Text states → 32 query inputs for the Q-Former: mean-pool → MLP → Q x D, plus learnable query
    embeddings, refined by a Transformer encoder."""

    def __init__(self, config: PredictorConfig) -> None:
        super().__init__()
        q, d = config.num_query_tokens, config.qformer_hidden
        self.num_queries, self.width = q, d
        self.mlp = nn.Sequential(nn.LayerNorm(config.text_dim), nn.Linear(config.text_dim, config.head_mlp_hidden),
                                 nn.GELU(), nn.Linear(config.head_mlp_hidden, q * d))
        self.query_embeddings = nn.Parameter(torch.randn(1, q, d) * 0.02)
        layer = nn.TransformerEncoderLayer(d, config.head_heads, dim_feedforward=2 * d, dropout=config.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.refine = nn.TransformerEncoder(layer, config.head_layers, enable_nested_tensor=False)

    def forward(self, pooled_text: Tensor) -> Tensor:
        queries = self.mlp(pooled_text).view(-1, self.num_queries, self.width) + self.query_embeddings
        return self.refine(queries)


class MLPAligner(nn.Module):
    """Variant A: flatten the tokens, LayerNorm → Linear → GELU → Dropout → Linear."""

    def __init__(self, config: PredictorConfig) -> None:
        super().__init__()
        flat = config.num_query_tokens * config.qformer_hidden
        self.net = nn.Sequential(nn.LayerNorm(flat), nn.Linear(flat, config.aligner_hidden), nn.GELU(),
                                 nn.Dropout(config.dropout), nn.Linear(config.aligner_hidden, config.goal_dim))

    def forward(self, tokens: Tensor) -> Tensor:
        return self.net(tokens.flatten(1))


class AttentionPoolAligner(nn.Module):
    """Variant B: one learnable query attends over the tokens, then LayerNorm → MLP projection."""

    def __init__(self, config: PredictorConfig) -> None:
        super().__init__()
        d = config.qformer_hidden
        self.query = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.attention = nn.MultiheadAttention(d, config.head_heads, dropout=config.dropout, batch_first=True)
        self.proj = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, config.aligner_hidden), nn.GELU(),
                                  nn.Dropout(config.dropout), nn.Linear(config.aligner_hidden, config.goal_dim))

    def forward(self, tokens: Tensor) -> Tensor:
        pooled, _ = self.attention(self.query.expand(tokens.shape[0], -1, -1), tokens, tokens, need_weights=False)
        return self.proj(pooled.squeeze(1))


def build_aligner(config: PredictorConfig) -> nn.Module:
    return MLPAligner(config) if config.aligner == "mlp" else AttentionPoolAligner(config)


class GoalPredictor(nn.Module):
    """See the module docstring. ``backbone`` may be ``None`` for work on precomputed text states."""

    def __init__(self, config: PredictorConfig, backbone: TextBackbone | None = None) -> None:
        super().__init__()
        self.config = config
        self.backbone: TextBackbone | None = None
        if backbone is not None:
            self.set_backbone(backbone)
        self.qformer = build_qformer(config)
        self.query_tokens = nn.Parameter(torch.randn(1, config.num_query_tokens, config.qformer_hidden) * 0.02)
        self.frame_position_embedding = nn.Embedding(config.max_frames, config.qformer_encoder_width)
        self.frame_proj = nn.Linear(config.frame_dim, config.qformer_encoder_width)
        self.llama_proj = nn.Linear(config.qformer_hidden, config.text_dim)
        self.text_proj = nn.Linear(config.text_dim, config.qformer_encoder_width)
        self.goal_head = GoalPredictionHead(config)
        self.aligner = build_aligner(config)
        # Calibrated after aligner training so predictions have the goal space's raw norms.
        self.register_buffer("output_scale", torch.ones(()), persistent=True)
        # Goal statistics of the aligner's training data (set_goal_statistics).
        self.register_buffer("goal_mean", torch.zeros(config.goal_dim), persistent=True)
        self.register_buffer("goal_std", torch.ones(config.goal_dim), persistent=True)

    def set_backbone(self, backbone: TextBackbone) -> None:
        if backbone.hidden_size != self.config.text_dim:
            raise ValueError(f"config {self.config.name!r} expects {self.config.text_dim}-d text states, "
                             f"the backbone gives {backbone.hidden_size}")
        self.backbone = backbone

    # -- the video side (training targets) ----------------------------------------------------

    def encode_video(self, frame_features: Tensor) -> Tensor:
        """Frame features ``[B, T, frame_dim]`` → visual tokens ``[B, Q, qformer_hidden]``."""
        if frame_features.ndim != 3 or frame_features.shape[-1] != self.config.frame_dim:
            raise ValueError(f"frame features must be [B, T, {self.config.frame_dim}], got {list(frame_features.shape)}")
        b, t, _ = frame_features.shape
        if t > self.config.max_frames:
            raise ValueError(f"{t} frames, the frame position embedding has {self.config.max_frames}")
        positions = torch.arange(t, device=frame_features.device)
        frames = self.frame_proj(frame_features) + self.frame_position_embedding(positions)
        return self._qformer(self.query_tokens.expand(b, -1, -1), frames, None)

    def video_text_embedding(self, video_tokens: Tensor) -> Tensor:
        """Visual tokens projected into the text backbone's width and mean-pooled: ``[B, text_dim]``."""
        return self.llama_proj(video_tokens).mean(1)

    # -- the text side --------------------------------------------------------------------------

    def encode_text(self, instructions: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Backbone hidden states ``[B, L, text_dim]`` and the attention mask ``[B, L]``."""
        if self.backbone is None:
            raise RuntimeError("this GoalPredictor has no text backbone; pass text states to predict_tokens")
        batch = self.backbone.tokenize(instructions)
        mask = batch["attention_mask"].to(self.query_tokens.device)
        return self.backbone(batch["input_ids"], batch["attention_mask"]).to(self.query_tokens.device), mask

    def predict_tokens(self, text_states: Tensor, attention_mask: Tensor) -> Tensor:
        """Text states ``[B, L, text_dim]`` → predicted visual tokens ``[B, Q, qformer_hidden]``."""
        queries = self.goal_head(mean_pool(text_states, attention_mask))
        return self._qformer(queries, self.text_proj(text_states), attention_mask)

    def align(self, tokens: Tensor) -> Tensor:
        """Visual tokens → ``z_goal`` ``[B, goal_dim]`` at the goal space's raw scale."""
        return (self.goal_mean + self.goal_std * self.aligner(tokens)) * self.output_scale

    def forward(self, instructions: Sequence[str]) -> Tensor:
        states, mask = self.encode_text(instructions)
        return self.align(self.predict_tokens(states, mask))

    @torch.inference_mode()
    def predict_goal(self, instructions: Sequence[str], *, batch_size: int = 64) -> Tensor:
        """``z_goal`` ``[B, goal_dim]`` (float32, CPU) for each instruction, in eval mode."""
        if isinstance(instructions, str):
            raise TypeError("instructions must be a sequence of strings, not one string")
        was_training = self.training
        self.eval()
        try:
            out = [self(list(instructions[i:i + batch_size])).float().cpu()
                   for i in range(0, len(instructions), batch_size)]
        finally:
            self.train(was_training)
        return torch.cat(out) if out else torch.zeros(0, self.config.goal_dim)

    @torch.no_grad()
    def set_goal_statistics(self, mean: Tensor, std: Tensor) -> None:
        """The aligner predicts goals in units of the training goals' per-dimension ``std`` around their
        ``mean``, and starts at the mean (its last layer shrunk to near zero).

        Every goal embedding shares a large common component (cosines between tasks are ~0.9); what
        tells tasks apart is small beside it, so it is what the aligner's output is scaled to.
        """
        self.goal_mean.copy_(mean.to(self.goal_mean))
        self.goal_std.copy_(std.to(self.goal_std).clamp_min(1e-6))
        last = [m for m in self.aligner.modules() if isinstance(m, nn.Linear)][-1]
        last.bias.zero_()
        last.weight.mul_(0.1)

    @torch.no_grad()
    def calibrate_scale(self, predicted: Tensor, target: Tensor) -> float:
        """Rescale so the median norm of ``predicted`` (made with the current scale) matches ``target``'s.

        Returns the new ``output_scale``. MSE training alone leaves predictions shrunk toward the mean
        (a regression to the mean of the targets); the policy reads raw MineCLIP-scale embeddings.
        """
        ratio = target.float().norm(dim=-1).median() / predicted.float().norm(dim=-1).median().clamp_min(1e-8)
        self.output_scale.mul_(ratio.to(self.output_scale))
        return float(self.output_scale)

    def _qformer(self, queries: Tensor, encoder_states: Tensor, encoder_mask: Tensor | None) -> Tensor:
        out = self.qformer(query_embeds=queries, encoder_hidden_states=encoder_states,
                           encoder_attention_mask=encoder_mask, return_dict=True)
        return out.last_hidden_state


# -- files --------------------------------------------------------------------------------------


@contextmanager
def _detached_backbone(model: GoalPredictor) -> Iterator[TextBackbone | None]:
    """The model without its backbone for the duration, so its state dict is exactly what is saved."""
    backbone = model._modules.pop("backbone", None)
    model.backbone = None
    try:
        yield backbone  # type: ignore[misc]
    finally:
        model.backbone = backbone


def save_goal_predictor(model: GoalPredictor, out_dir: str | os.PathLike[str], *,
                        write_extra: Callable[[Path], None] | None = None) -> Path:
    """Write ``config.json``, ``model.safetensors`` and (with LoRA) ``adapter/`` into ``out_dir``, swapped
    in whole so a reader never sees a mix of two saves. ``write_extra(staged_dir)`` adds more files."""
    with _detached_backbone(model) as backbone:

        def write_rest(staged: Path) -> None:
            if backbone is not None and has_lora(backbone):
                backbone.model.save_pretrained(str(staged / ADAPTER_DIR))
            if write_extra is not None:
                write_extra(staged)

        return save_model_dir(model, model.config, out_dir, write_extra=write_rest)


def load_predictor_config(model_dir: str | os.PathLike[str]) -> PredictorConfig:
    return load_config_json(model_dir, PredictorConfig)


def load_goal_predictor(model_dir: str | os.PathLike[str], *, backbone: TextBackbone | None = None,
                        with_backbone: bool = True) -> GoalPredictor:
    """Load a folder written by :func:`save_goal_predictor`, strictly, in eval mode.

    The backbone is read from the folder its config names (or passed in as ``backbone``), its LoRA
    adapter from ``adapter/`` when present. ``with_backbone=False`` loads only the head, Q-Former and
    aligner (for work on precomputed text states).
    """
    model_dir = Path(model_dir)
    config = load_predictor_config(model_dir)
    model = GoalPredictor(config)
    weights = model_dir / WEIGHTS_FILE
    strict_load(model, load_state_dict_file(weights), source=str(weights))
    if backbone is None and with_backbone:
        backbone = load_text_backbone(config.backbone)
    if backbone is not None:
        if backbone.hidden_size != config.text_dim:
            raise ValueError(f"config {config.name!r} expects {config.text_dim}-d text states, "
                             f"the backbone gives {backbone.hidden_size}")
        if (model_dir / ADAPTER_DIR).is_dir():
            if has_lora(backbone):
                # peft would stack this adapter on the one already there, changing every model that
                # shares the backbone: a LoRA checkpoint needs a backbone of its own.
                raise ValueError(f"{model_dir} has a LoRA adapter, and the given backbone already carries "
                                 "one; pass a freshly loaded backbone")
            backbone = attach_lora_adapter(backbone, model_dir / ADAPTER_DIR)
        model.set_backbone(backbone)
    return model.eval()


# -- LoRA -------------------------------------------------------------------------------------------

LORA_TARGETS: dict[str, tuple[str, ...]] = {
    "encoder": ("query", "value"),  # BERT-style attention (MiniLM)
    "causal_lm": ("q_proj", "v_proj"),  # LLaMA-family attention
    "blip2": ("q_proj", "v_proj"),
    "instructblip_video": ("q_proj", "v_proj"),
}


def has_lora(backbone: TextBackbone) -> bool:
    from peft import PeftModel

    return isinstance(backbone.model, PeftModel)


def apply_lora(backbone: TextBackbone, *, r: int = 8, alpha: int = 16, dropout: float = 0.05,
               target_modules: Sequence[str] | None = None) -> TextBackbone:
    """Wrap the backbone's model with fresh LoRA adapters (peft); only they will be trainable."""
    from peft import LoraConfig, get_peft_model

    targets = list(target_modules or LORA_TARGETS[backbone.spec.kind])
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, bias="none")
    with _peft_on_transformers5():
        backbone.model = get_peft_model(backbone.model, config)
    return backbone


@contextmanager
def _peft_on_transformers5() -> Iterator[None]:
    """peft 0.21's PeftModel.__init__ reads ``model.is_gradient_checkpointing``, which transformers 5
    deprecated (FutureWarning on every adapter load, e.g. each ``goalcraft predict``). Nothing for us to
    change; silence exactly that message until peft reads ``is_activation_checkpointing``."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


def attach_lora_adapter(backbone: TextBackbone, adapter_dir: str | os.PathLike[str]) -> TextBackbone:
    """Load a saved LoRA adapter (peft's ``adapter_config.json`` + ``adapter_model.safetensors``)."""
    from peft import PeftModel

    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise CheckpointError(f"{adapter_dir} has no adapter_config.json: not a peft adapter folder")
    with _peft_on_transformers5():
        backbone.model = PeftModel.from_pretrained(backbone.model, str(adapter_dir), is_trainable=False)
    return backbone


# -- seeding from a BLIP-2 / InstructBLIP-Video checkpoint ------------------------------------------
# (reading the folder is goalcraft.models.backbones'; fitting it to a goal predictor is done here)

# Q-Former settings that change the structure or the arithmetic without changing any weight's shape;
# they must agree between a checkpoint and the goalcraft Q-Former it seeds.
_QFORMER_BEHAVIOUR_FIELDS: tuple[str, ...] = ("cross_attention_frequency", "hidden_act", "layer_norm_eps")


def _check_qformer_behaviour(info: dict[str, Any], target: Any, folder: Path) -> None:
    """Refuse a checkpoint whose Q-Former would load but compute something else in goalcraft's."""
    diffs = [f"{f}: checkpoint {info[f]!r} vs goalcraft {getattr(target, f)!r}"
             for f in _QFORMER_BEHAVIOUR_FIELDS if info[f] != getattr(target, f)]
    if diffs:
        raise BackboneError(f"the Q-Former in {folder} is built differently from goalcraft's "
                            f"(goalcraft.models.predictor.build_qformer): {'; '.join(diffs)}")


def predictor_config_from_multimodal(folder: str | os.PathLike[str], kind: str, *, name: str = "multimodal",
                                     base: PredictorConfig | None = None) -> PredictorConfig:
    """A :class:`PredictorConfig` whose Q-Former and text width match the folder's checkpoint.

    Q-Former sizes and ``num_query_tokens`` come from the checkpoint config, ``text_dim`` is the language
    model's hidden size and the backbone is the folder itself; all else (head, aligner, frames) comes
    from ``base`` (default: ``PredictorConfig``'s defaults), keeping its ``max_length``/``load_in_4bit``.
    Only config.json is read. Raises :class:`BackboneError` where goalcraft's Q-Former cannot hold the
    checkpoint's (see ``_QFORMER_BEHAVIOUR_FIELDS``).
    """
    folder = resolve_backbone_path(folder)
    info = multimodal_qformer_info(folder, kind)
    base = base if base is not None else PredictorConfig(name=name)
    try:
        config = base.replace(
            name=name, backbone=BackboneSpec(path=str(folder), kind=kind,  # type: ignore[arg-type]
                                             load_in_4bit=base.backbone.load_in_4bit,
                                             max_length=base.backbone.max_length),
            text_dim=info["text_hidden_size"], num_query_tokens=info["num_query_tokens"],
            qformer_hidden=info["hidden_size"], qformer_layers=info["num_hidden_layers"],
            qformer_heads=info["num_attention_heads"], qformer_intermediate=info["intermediate_size"],
            qformer_encoder_width=info["encoder_hidden_size"],
            qformer_cross_attention_frequency=info["cross_attention_frequency"])
    except ValueError as exc:  # e.g. the head's heads do not divide the checkpoint's width
        raise BackboneError(f"no goal-predictor config fits the Q-Former in {folder}: {exc}") from exc
    with torch.device("meta"):  # only its config is looked at
        target = build_qformer(config).config
    _check_qformer_behaviour(info, target, folder)
    return config


def init_predictor_from_multimodal(predictor: GoalPredictor, folder: str | os.PathLike[str],
                                   kind: str) -> dict[str, Any]:
    """Copy the folder's Q-Former and query tokens into ``predictor.qformer``/``predictor.query_tokens``.

    All or nothing (:func:`~goalcraft.models.checkpoints.strict_load`): any missing, unexpected or
    mis-shaped key raises :class:`~goalcraft.models.checkpoints.CheckpointError` naming it, and the
    predictor is left as it was. Returns the ``info`` of :func:`~goalcraft.models.backbones.load_multimodal_qformer`.
    """
    folder = resolve_backbone_path(folder)
    state, query_tokens, info = load_multimodal_qformer(folder, kind)
    _check_qformer_behaviour(info, predictor.qformer.config, folder)
    # One module holding the predictor's own Q-Former and query tokens, so a single strict_load checks
    # (and names) both before copying either in place.
    target = GoalPredictorQFormer(predictor)
    weights = {"query_tokens": query_tokens, **{f"qformer.{k}": v for k, v in state.items()}}
    strict_load(target, weights, source=f"{folder} ({kind} Q-Former)")
    return info


class GoalPredictorQFormer(nn.Module):
    """A view of a predictor's ``query_tokens`` and ``qformer`` (shared, not copied) for loading both."""

    def __init__(self, predictor: GoalPredictor) -> None:
        super().__init__()
        self.register_parameter("query_tokens", predictor.query_tokens)
        self.qformer = predictor.qformer
