"""Importing Video-LLaMA's video branch (DAMO-NLP-SG/Video-LLaMA) into :class:`GoalPredictor`.

Video-LLaMA checkpoints are LAVIS-style ``.pth`` files: ``{"model": state_dict, "optimizer": ...,
"config": ..., "scaler": ..., "epoch": ...}``. Its training runner drops every *frozen parameter*
from ``"model"`` but keeps every buffer, so a file holds the trained parts (the video Q-Former,
its query tokens and frame position embedding, ``llama_proj``) plus stray buffers of the frozen
parts (``visual_encoder.*``, ``Qformer.bert.embeddings.position_ids``, the LLaMA's rotary tables)
and, for fuller dumps, the frozen weights themselves. Only plain containers and tensors are in it,
so it loads with ``torch.load(weights_only=True)`` (:func:`load_state_dict_file`); a file that
needs code to unpickle is refused.

The video branch maps onto four parts of :class:`GoalPredictor`:

    Video-LLaMA (LAVIS BertModel Q-Former)                       goalcraft (transformers Blip2QFormerModel)
    video_Qformer.bert.embeddings.LayerNorm.{weight,bias}        qformer.layernorm.{weight,bias}
    video_Qformer.bert.encoder.layer.N.attention.self.Q.P        qformer.encoder.layer.N.attention.attention.Q.P
    video_Qformer.bert.encoder.layer.N.attention.output.M.P      qformer.encoder.layer.N.attention.output.M.P
    video_Qformer.bert.encoder.layer.N.crossattention.self.Q.P   qformer.encoder.layer.N.crossattention.attention.Q.P
    video_Qformer.bert.encoder.layer.N.crossattention.output.M.P qformer.encoder.layer.N.crossattention.output.M.P
    video_Qformer.bert.encoder.layer.N.intermediate_query.dense.P qformer.encoder.layer.N.intermediate_query.dense.P
    video_Qformer.bert.encoder.layer.N.output_query.M.P          qformer.encoder.layer.N.output_query.M.P
    video_query_tokens                                           query_tokens
    video_frame_position_embedding.weight                        frame_position_embedding.weight
    llama_proj.{weight,bias}                                     llama_proj.{weight,bias}
    video_Qformer.bert.embeddings.position_ids                   dropped (a non-learned arange buffer)

(Q = ``query``/``key``/``value``, M = ``dense``/``LayerNorm``, P = ``weight``/``bias``.) Video-LLaMA
deletes the Q-Former's word/position embeddings, its ``cls`` head and each layer's text FFN
(``intermediate``/``output``); any such key, or any other ``video_Qformer.*`` key, is an error,
as is a missing one. ``branch="audio"`` maps the audio branch (``audio_Qformer``,
``audio_query_tokens``, ``audio_position_embedding``, ``audio_llama_proj``) the same way. Keys of every
other module are skipped and listed, by module, in the :class:`ConversionReport`.

What the weights mean here: Video-LLaMA's video Q-Former cross-attends to the *image* Q-Former's 32
output tokens per frame (plus the frame position embedding). goalcraft feeds it one projected
MineCLIP feature per frame (``frame_proj``, which no checkpoint holds), so the imported weights are a
starting point for goalcraft's training, not a drop-in video encoder. ``frame_proj``, ``text_proj``,
the goal head and the aligner keep their initialisation.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from torch import Tensor, nn

from goalcraft.models.checkpoints import CheckpointError, format_key_list, load_state_dict_file, strict_load
from goalcraft.models.predictor import PREDICTOR_CONFIGS, GoalPredictor, PredictorConfig, save_goal_predictor

__all__ = [
    "BRANCHES",
    "ConversionReport",
    "convert_video_llama",
    "convert_video_llama_state_dict",
    "convert_video_llama_state_dict_with_report",
    "goalcraft_to_video_llama_key",
    "load_video_llama_checkpoint",
    "video_llama_config",
    "video_llama_to_goalcraft_key",
]

logger = logging.getLogger(__name__)

# The parts of GoalPredictor a Video-LLaMA branch fills.
BRANCH_PARTS = ("qformer", "query_tokens", "frame_position_embedding", "llama_proj")
# BERT-base convention: 64 dimensions per attention head (768 -> 12 heads). Shapes do not say.
HEAD_DIM_CONVENTION = 64


@dataclass(frozen=True)
class Branch:
    """The top-level names of one Video-LLaMA branch."""

    qformer: str
    query_tokens: str
    position_embedding: str
    llama_proj: str

    @property
    def modules(self) -> tuple[str, ...]:
        return (self.qformer, self.query_tokens, self.position_embedding, self.llama_proj)


BRANCHES: dict[str, Branch] = {
    "video": Branch("video_Qformer", "video_query_tokens", "video_frame_position_embedding", "llama_proj"),
    "audio": Branch("audio_Qformer", "audio_query_tokens", "audio_position_embedding", "audio_llama_proj"),
}

# What the other top-level modules of a Video-LLaMA checkpoint are, for the report.
MODULE_DESCRIPTIONS: dict[str, str] = {
    "visual_encoder": "EVA ViT-g image encoder",
    "ln_vision": "ViT output LayerNorm",
    "Qformer": "image Q-Former (BLIP-2)",
    "query_tokens": "image Q-Former query tokens",
    "llama_model": "LLaMA language model",
    "video_Qformer": "video Q-Former",
    "video_query_tokens": "video Q-Former query tokens",
    "video_frame_position_embedding": "video frame position embedding",
    "llama_proj": "video-to-LLaMA projection",
    "audio_encoder": "ImageBind audio encoder",
    "audio_Qformer": "audio Q-Former",
    "audio_query_tokens": "audio Q-Former query tokens",
    "audio_position_embedding": "audio segment position embedding",
    "audio_llama_proj": "audio-to-LLaMA projection",
}

# LAVIS Q-Former names (after "<branch Q-Former>.bert.") -> Blip2QFormerModel names. The same
# renaming as transformers' BLIP-2 conversion script: embeddings.LayerNorm -> layernorm and
# "<attention>.self" -> "<attention>.attention"; everything else keeps its name.
_P = r"(weight|bias)"
_QFORMER_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), target) for pattern, target in (
        (rf"embeddings\.LayerNorm\.{_P}", r"layernorm.\1"),
        (rf"encoder\.layer\.(\d+)\.(attention|crossattention)\.self\.(query|key|value)\.{_P}",
         r"encoder.layer.\1.\2.attention.\3.\4"),
        (rf"encoder\.layer\.(\d+)\.(attention|crossattention)\.output\.(dense|LayerNorm)\.{_P}",
         r"encoder.layer.\1.\2.output.\3.\4"),
        (rf"encoder\.layer\.(\d+)\.intermediate_query\.dense\.{_P}", r"encoder.layer.\1.intermediate_query.dense.\2"),
        (rf"encoder\.layer\.(\d+)\.output_query\.(dense|LayerNorm)\.{_P}", r"encoder.layer.\1.output_query.\2.\3"),
    )
)
_REVERSE_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), target) for pattern, target in (
        (rf"layernorm\.{_P}", r"embeddings.LayerNorm.\1"),
        (rf"encoder\.layer\.(\d+)\.(attention|crossattention)\.attention\.(query|key|value)\.{_P}",
         r"encoder.layer.\1.\2.self.\3.\4"),
        (rf"encoder\.layer\.(\d+)\.(attention|crossattention)\.output\.(dense|LayerNorm)\.{_P}",
         r"encoder.layer.\1.\2.output.\3.\4"),
        (rf"encoder\.layer\.(\d+)\.intermediate_query\.dense\.{_P}", r"encoder.layer.\1.intermediate_query.dense.\2"),
        (rf"encoder\.layer\.(\d+)\.output_query\.(dense|LayerNorm)\.{_P}", r"encoder.layer.\1.output_query.\2.\3"),
    )
)
# Non-learned buffers Video-LLaMA's checkpoints carry in the branch's Q-Former (LAVIS BertEmbeddings
# registers ``position_ids`` as a persistent buffer, and the runner saves every buffer).
_QFORMER_BUFFERS = ("embeddings.position_ids",)
# The keys each Q-Former layer must have (cross-attention in every layer: cross_attention_freq=1).
_LAYER_KEYS = tuple(
    [f"{att}.self.{qkv}.{p}" for att in ("attention", "crossattention") for qkv in ("query", "key", "value")
     for p in ("weight", "bias")]
    + [f"{att}.output.{m}.{p}" for att in ("attention", "crossattention") for m in ("dense", "LayerNorm")
       for p in ("weight", "bias")]
    + [f"intermediate_query.dense.{p}" for p in ("weight", "bias")]
    + [f"output_query.{m}.{p}" for m in ("dense", "LayerNorm") for p in ("weight", "bias")]
)


def _branch(name: str) -> Branch:
    try:
        return BRANCHES[name]
    except KeyError:
        raise ValueError(f"branch must be one of {sorted(BRANCHES)}, got {name!r}") from None


def _apply(rules: tuple[tuple[re.Pattern[str], str], ...], key: str) -> str | None:
    for pattern, target in rules:
        match = pattern.fullmatch(key)
        if match:
            return match.expand(target)
    return None


def video_llama_to_goalcraft_key(key: str, *, branch: str = "video") -> str | None:
    """The goalcraft key for one Video-LLaMA key of ``branch``, or ``None`` where it has none
    (a key of another module, a dropped buffer, or a branch key that does not map)."""
    b = _branch(branch)
    if key == b.query_tokens:
        return "query_tokens"
    if key == f"{b.position_embedding}.weight":
        return "frame_position_embedding.weight"
    if key in (f"{b.llama_proj}.weight", f"{b.llama_proj}.bias"):
        return "llama_proj." + key.rsplit(".", 1)[1]
    prefix = f"{b.qformer}.bert."
    if key.startswith(prefix):
        mapped = _apply(_QFORMER_RULES, key[len(prefix):])
        return None if mapped is None else "qformer." + mapped
    return None


def goalcraft_to_video_llama_key(key: str, *, branch: str = "video") -> str | None:
    """The inverse of :func:`video_llama_to_goalcraft_key` (``None`` for keys outside the branch parts)."""
    b = _branch(branch)
    if key == "query_tokens":
        return b.query_tokens
    if key == "frame_position_embedding.weight":
        return f"{b.position_embedding}.weight"
    if key in ("llama_proj.weight", "llama_proj.bias"):
        return f"{b.llama_proj}." + key.rsplit(".", 1)[1]
    if key.startswith("qformer."):
        mapped = _apply(_REVERSE_RULES, key[len("qformer."):])
        return None if mapped is None else f"{b.qformer}.bert." + mapped
    return None


# --------------------------------------------------------------------------------------------------
# The report


@dataclass(frozen=True)
class ConversionReport:
    """What a conversion did with every key of the checkpoint.

    ``mapped`` pairs each Video-LLaMA key with its goalcraft key; ``dropped_buffers`` are the branch's
    non-learned buffers; ``skipped`` lists the keys of every other module, by top-level module name.
    After :func:`load_video_llama_checkpoint`, ``config`` is the predictor's config and
    ``not_in_checkpoint`` names the predictor parts the checkpoint does not hold (trained by goalcraft).
    """

    source: str
    branch: str
    mapped: tuple[tuple[str, str], ...]
    dropped_buffers: tuple[str, ...] = ()
    skipped: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    not_in_checkpoint: tuple[str, ...] = ()
    config: PredictorConfig | None = None

    @property
    def skipped_counts(self) -> dict[str, int]:
        return {module: len(keys) for module, keys in self.skipped.items()}

    @property
    def num_skipped(self) -> int:
        return sum(len(keys) for keys in self.skipped.values())

    def summary(self) -> str:
        """Readable lines: what was loaded, dropped, skipped, and left to goalcraft's training."""
        lines = [f"Video-LLaMA {self.branch} branch from {self.source}: {len(self.mapped)} tensors mapped into "
                 f"{', '.join(BRANCH_PARTS)}"]
        if self.dropped_buffers:
            lines.append(f"dropped non-learned buffers ({len(self.dropped_buffers)}): "
                         f"{format_key_list(self.dropped_buffers)}")
        if self.skipped:
            lines.append(f"skipped, not part of the {self.branch} branch ({self.num_skipped} keys):")
            for module, keys in self.skipped.items():
                what = MODULE_DESCRIPTIONS.get(module, "unknown module")
                lines.append(f"  {module} ({what}): {len(keys)} keys")
        if self.not_in_checkpoint:
            lines.append("not in checkpoint, trained by goalcraft: " + ", ".join(self.not_in_checkpoint))
        if self.config is not None:
            c = self.config
            lines.append(f"config {c.name!r}: Q-Former {c.qformer_layers} layers x {c.qformer_hidden} "
                         f"({c.qformer_heads} heads, FFN {c.qformer_intermediate}, encoder width "
                         f"{c.qformer_encoder_width}), {c.num_query_tokens} queries, {c.max_frames} frame "
                         f"positions, text_dim {c.text_dim}")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Converting a state dict


def _module_of(key: str) -> str:
    return key.split(".", 1)[0]


def _required_keys(b: Branch, layers: list[int]) -> list[str]:
    keys = [f"{b.qformer}.bert.embeddings.LayerNorm.weight", f"{b.qformer}.bert.embeddings.LayerNorm.bias"]
    for i in layers:
        keys += [f"{b.qformer}.bert.encoder.layer.{i}.{k}" for k in _LAYER_KEYS]
    keys += [b.query_tokens, f"{b.position_embedding}.weight", f"{b.llama_proj}.weight", f"{b.llama_proj}.bias"]
    return keys


def convert_video_llama_state_dict_with_report(
    state_dict: Mapping[str, Tensor], *, branch: str = "video", source: str = "<state dict>",
) -> tuple[dict[str, Tensor], ConversionReport]:
    """Map ``branch`` of a Video-LLaMA state dict to goalcraft's names; also return the report.

    Every key of the branch must map and every required key must be there (Q-Former layers
    ``0..L-1``, each with self- and cross-attention and the query FFN); otherwise
    :class:`CheckpointError` names the keys. The converted tensors are the source tensors themselves.
    Shapes are checked when loading (:func:`load_video_llama_checkpoint`).
    """
    b = _branch(branch)
    own = set(b.modules)
    converted: dict[str, Tensor] = {}
    mapped: list[tuple[str, str]] = []
    dropped: list[str] = []
    skipped: dict[str, list[str]] = {}
    unmapped: list[str] = []
    not_float: list[str] = []
    for key, value in state_dict.items():
        module = _module_of(key)
        if module not in own:
            skipped.setdefault(module, []).append(key)
            continue
        if key.startswith(f"{b.qformer}.bert.") and key[len(b.qformer) + 6:] in _QFORMER_BUFFERS:
            dropped.append(key)
            continue
        target = video_llama_to_goalcraft_key(key, branch=branch)
        if target is None:
            unmapped.append(key)
            continue
        if not isinstance(value, Tensor) or not value.is_floating_point():
            not_float.append(f"{key} ({getattr(value, 'dtype', type(value).__name__)})")
        converted[target] = value
        mapped.append((key, target))

    if not mapped and not unmapped:
        raise CheckpointError(
            f"{source}: no {branch}-branch keys ({', '.join(m + '*' for m in b.modules)}) in the checkpoint; "
            f"it holds the modules {format_key_list(sorted(skipped))}")
    layers = sorted({int(m.group(1)) for key in converted
                     if (m := re.match(r"qformer\.encoder\.layer\.(\d+)\.", key))})
    if layers:
        layers = list(range(layers[-1] + 1))  # every layer below the highest one found is required
    source_keys = {k for k, _ in mapped}
    missing = [k for k in _required_keys(b, layers) if k not in source_keys]
    problems = []
    if not layers:
        problems.append(f"no Q-Former layers ({b.qformer}.bert.encoder.layer.N.*)")
    if missing:
        problems.append(f"missing keys ({len(missing)}): {format_key_list(missing)}")
    if unmapped:
        problems.append(
            f"{branch}-branch keys with no goalcraft counterpart ({len(unmapped)}): {format_key_list(unmapped)} "
            "(Video-LLaMA deletes the Q-Former's word/position embeddings, cls head and text FFN "
            "'intermediate'/'output'; a checkpoint that still has them is not in Video-LLaMA's layout)")
    if not_float:
        problems.append(f"keys that are not floating-point tensors ({len(not_float)}): {format_key_list(not_float)}")
    if problems:
        raise CheckpointError(f"{source}: cannot convert the Video-LLaMA {branch} branch:\n  " + "\n  ".join(problems))
    report = ConversionReport(
        source=source, branch=branch, mapped=tuple(mapped), dropped_buffers=tuple(dropped),
        skipped={module: tuple(keys) for module, keys in sorted(skipped.items())})
    return converted, report


def convert_video_llama_state_dict(state_dict: Mapping[str, Tensor], *, branch: str = "video") -> dict[str, Tensor]:
    """``branch`` of a Video-LLaMA state dict under goalcraft's names (see the module docstring).

    Keys of other modules are skipped; their count per module is logged at INFO. Use
    :func:`convert_video_llama_state_dict_with_report` to get the full :class:`ConversionReport`.
    """
    converted, report = convert_video_llama_state_dict_with_report(state_dict, branch=branch)
    logger.info("%s", report.summary())
    return converted


# --------------------------------------------------------------------------------------------------
# The config


_CONVERTED_KEYS = ("query_tokens", "frame_position_embedding.weight", "llama_proj.weight", "llama_proj.bias")


def _is_converted(state_dict: Mapping[str, Tensor]) -> bool:
    """Whether every key is already a goalcraft branch-part key (and the three non-Q-Former parts are there)."""
    return (all(k in state_dict for k in _CONVERTED_KEYS)
            and all(k in _CONVERTED_KEYS or k.startswith("qformer.") for k in state_dict))


def _most_common(values: list[int], what: str) -> int:
    if not values:
        raise CheckpointError(f"cannot derive {what}: no tensor in the checkpoint gives it")
    return Counter(values).most_common(1)[0][0]


def _shape(state_dict: Mapping[str, Tensor], key: str, ndim: int) -> tuple[int, ...]:
    shape = tuple(state_dict[key].shape)
    if len(shape) != ndim:
        raise CheckpointError(f"{key}: expected a {ndim}-d tensor, got shape {list(shape)}")
    return shape


def video_llama_config(
    state_dict: Mapping[str, Tensor],
    *,
    name: str = "video-llama",
    text_dim: int | None = None,
    branch: str = "video",
    qformer_heads: int | None = None,
    base: PredictorConfig | None = None,
) -> PredictorConfig:
    """A :class:`PredictorConfig` whose branch parts fit ``state_dict``'s shapes.

    ``state_dict`` is a Video-LLaMA state dict (``branch`` picks the branch) or one already converted
    by :func:`convert_video_llama_state_dict`. Derived: ``qformer_hidden``, ``qformer_layers``,
    ``qformer_intermediate``, ``qformer_encoder_width``, ``num_query_tokens``, ``max_frames`` and
    ``text_dim`` (``llama_proj``'s output width; a ``text_dim`` passed in must equal it). Each size is
    the value most tensors agree on, so one odd tensor is reported by the strict load, by name.

    ``qformer_heads`` cannot be read from shapes; by default it follows BERT-base's convention of 64
    dimensions per head (768 -> 12, Video-LLaMA's Q-Formers). Everything else (``frame_dim``, the goal
    head, the aligner, the backbone) comes from ``base``, by default ``PREDICTOR_CONFIGS["video-llama-7b"]``;
    ``head_heads`` falls back to ``qformer_heads`` where ``base``'s does not divide the hidden size.
    """
    sd = state_dict if _is_converted(state_dict) else convert_video_llama_state_dict_with_report(
        state_dict, branch=branch)[0]
    base = base or PREDICTOR_CONFIGS["video-llama-7b"]
    layer_re = re.compile(r"qformer\.encoder\.layer\.(\d+)\.(.+)")
    per_layer = [(int(m.group(1)), m.group(2), v) for k, v in sd.items() if (m := layer_re.fullmatch(k))]

    q_shape = _shape(sd, "query_tokens", 3)
    pos_shape = _shape(sd, "frame_position_embedding.weight", 2)
    proj_shape = _shape(sd, "llama_proj.weight", 2)
    hidden_votes = [q_shape[2], proj_shape[1]]
    hidden_votes += [v.shape[0] for k, v in sd.items() if k.startswith("qformer.layernorm.") and v.ndim == 1]
    hidden_votes += [v.shape[0] for _, rest, v in per_layer
                     if rest.endswith(("attention.query.weight", "output.dense.weight")) and v.ndim == 2]
    width_votes = [pos_shape[1]] + [v.shape[1] for _, rest, v in per_layer
                                    if rest.startswith("crossattention.attention.") and rest.endswith(
                                        ("key.weight", "value.weight")) and v.ndim == 2]
    ffn_votes = [v.shape[0] for _, rest, v in per_layer if rest == "intermediate_query.dense.weight" and v.ndim == 2]

    hidden = _most_common(hidden_votes, "the Q-Former hidden size")
    derived_text_dim = proj_shape[0]
    if text_dim is not None and text_dim != derived_text_dim:
        raise CheckpointError(f"text_dim={text_dim} was asked for, but llama_proj maps to {derived_text_dim} "
                              f"(weight {list(proj_shape)})")
    if qformer_heads is None:
        if hidden % HEAD_DIM_CONVENTION:
            raise CheckpointError(f"the Q-Former hidden size {hidden} is not a multiple of {HEAD_DIM_CONVENTION}; "
                                  "pass qformer_heads= (the head count cannot be read from the weights)")
        qformer_heads = hidden // HEAD_DIM_CONVENTION
    head_heads = base.head_heads if hidden % base.head_heads == 0 else qformer_heads
    try:
        return base.replace(
            name=name, text_dim=derived_text_dim, num_query_tokens=q_shape[1], qformer_hidden=hidden,
            qformer_layers=len({i for i, _, _ in per_layer}), qformer_heads=qformer_heads,
            qformer_intermediate=_most_common(ffn_votes, "the Q-Former FFN size"),
            qformer_encoder_width=_most_common(width_votes, "the Q-Former encoder width"),
            max_frames=pos_shape[0], head_heads=head_heads)
    except ValueError as exc:
        raise CheckpointError(f"the derived config is invalid: {exc}") from exc


# --------------------------------------------------------------------------------------------------
# Loading


class _BranchParts(nn.Module):
    """A view of exactly the predictor parts a Video-LLaMA branch fills; shares their parameters."""

    def __init__(self, predictor: GoalPredictor) -> None:
        super().__init__()
        self.qformer = predictor.qformer
        self.query_tokens = predictor.query_tokens
        self.frame_position_embedding = predictor.frame_position_embedding
        self.llama_proj = predictor.llama_proj


def _check_parts(parts: nn.Module, converted: Mapping[str, Tensor], branch: str, source: str) -> None:
    """Like :func:`strict_load`'s check, but names each key as Video-LLaMA (and goalcraft) spell it."""

    def both(key: str) -> str:
        return f"{goalcraft_to_video_llama_key(key, branch=branch)} (-> {key})"

    expected = parts.state_dict()
    missing = [both(k) for k in expected if k not in converted]
    unexpected = [both(k) for k in converted if k not in expected]
    mismatched = [f"{both(k)}: checkpoint {list(v.shape)} vs model {list(expected[k].shape)}"
                  for k, v in converted.items() if k in expected and tuple(v.shape) != tuple(expected[k].shape)]
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {format_key_list(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {format_key_list(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches ({len(mismatched)}): {format_key_list(mismatched)}")
    if problems:
        raise CheckpointError(f"checkpoint {source} ({branch} branch) does not match the goal predictor; "
                              "nothing was loaded:\n  " + "\n  ".join(problems))


def _not_in_checkpoint(predictor: GoalPredictor) -> tuple[str, ...]:
    names = [n for n, _ in predictor.named_children() if n not in BRANCH_PARTS and n != "backbone"]
    names += [n for n, _ in predictor.named_parameters(recurse=False) if n not in BRANCH_PARTS]
    names += [n for n, _ in predictor.named_buffers(recurse=False)]
    return tuple(names)


def load_video_llama_checkpoint(
    path: str | os.PathLike[str],
    predictor: GoalPredictor | None = None,
    *,
    branch: str = "video",
    qformer_heads: int | None = None,
) -> tuple[GoalPredictor, ConversionReport]:
    """Load ``branch`` of a Video-LLaMA checkpoint into a goal predictor, strictly.

    ``path`` is a ``.pth`` holding ``{"model": state_dict, ...}`` (read with ``weights_only=True``) or a
    flat ``.safetensors``. Without ``predictor``, a :class:`GoalPredictor` (no backbone) is built from
    :func:`video_llama_config` and returned in eval mode; a given predictor keeps its mode. Exactly
    ``qformer``, ``query_tokens``, ``frame_position_embedding`` and ``llama_proj`` are loaded; any
    missing, extra or mis-shaped key raises :class:`CheckpointError` naming it and nothing is loaded.
    The other parts keep their initialisation and are listed in the report's ``not_in_checkpoint``.
    """
    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        raw = load_state_dict_file(path)
    else:
        raw = load_state_dict_file(path, key="model")
    converted, report = convert_video_llama_state_dict_with_report(raw, branch=branch, source=str(path))
    built = predictor is None
    if predictor is None:
        predictor = GoalPredictor(video_llama_config(converted, branch=branch, qformer_heads=qformer_heads))
    parts = _BranchParts(predictor)
    _check_parts(parts, converted, branch, str(path))
    strict_load(parts, converted, source=str(path))
    report = replace(report, config=predictor.config, not_in_checkpoint=_not_in_checkpoint(predictor))
    logger.info("%s", report.summary())
    return (predictor.eval() if built else predictor), report


def convert_video_llama(
    path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    branch: str = "video",
    qformer_heads: int | None = None,
) -> tuple[Path, ConversionReport]:
    """Convert a Video-LLaMA checkpoint into goalcraft's own format (``config.json`` +
    ``model.safetensors``, via :func:`save_goal_predictor`); read it back with
    ``load_goal_predictor(out_dir, with_backbone=False)``. The parts the checkpoint does not hold are
    saved at their initialisation."""
    predictor, report = load_video_llama_checkpoint(path, branch=branch, qformer_heads=qformer_heads)
    return save_goal_predictor(predictor, out_dir), report
