"""Checkpoint files: safe reading, strict loading, and our own model-directory format.

Every model in :mod:`goalcraft.models` goes through these helpers, so the rules are the same for all:

* :func:`load_state_dict_file` reads ``.safetensors`` with safetensors and ``.pt``/``.pth``/``.ckpt``
  with ``torch.load(..., weights_only=True)``. A pickle that needs code to load (any global outside
  torch's tensor allow-list) is refused with :class:`CheckpointError`; nothing in it runs.
* :func:`strict_load` loads all or nothing: any missing key, unexpected key or shape mismatch is
  reported by name and the module is left untouched.
* :func:`save_model_dir` writes ``model.safetensors`` and ``config.json`` (the config dataclass's
  fields plus ``"model_type"``) into a folder that appears whole or not at all;
  :func:`load_config_json` reads the config back into its dataclass.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import shutil
import tempfile
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Callable, TypeVar

import torch
from torch import nn

from goalcraft.storage import commit_directory

__all__ = [
    "CONFIG_FILE",
    "WEIGHTS_FILE",
    "CheckpointError",
    "file_sha256",
    "format_key_list",
    "load_config_json",
    "load_model_dir",
    "load_state_dict_file",
    "save_model_dir",
    "strict_load",
]

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"

_TORCH_SUFFIXES = {".pt", ".pth", ".ckpt", ".bin"}
_SAFETENSORS_SUFFIXES = {".safetensors"}
# How many names each list in an error message shows before "... and N more".
_MAX_LISTED = 20

C = TypeVar("C")


class CheckpointError(RuntimeError):
    """A checkpoint file could not be read safely, or does not match the model it is loaded into."""


# --------------------------------------------------------------------------------------------------
# Reading


def load_state_dict_file(path: str | os.PathLike[str], *, key: str | None = None) -> dict[str, torch.Tensor]:
    """Read a flat ``{name: tensor}`` state dict from ``path`` onto the CPU.

    ``key`` picks an entry of a torch checkpoint that wraps its state dict (for example
    ``key="state_dict"`` for Lightning-style files); it is not allowed for safetensors files,
    which are always flat.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    suffix = path.suffix.lower()
    if suffix in _SAFETENSORS_SUFFIXES:
        if key is not None:
            raise CheckpointError(f"{path}: safetensors files are flat; key={key!r} does not apply")
        obj: Any = _read_safetensors(path)
    elif suffix in _TORCH_SUFFIXES:
        obj = _read_torch(path)
        if key is not None:
            if not isinstance(obj, Mapping) or key not in obj:
                top = sorted(map(str, obj.keys())) if isinstance(obj, Mapping) else type(obj).__name__
                raise CheckpointError(f"{path}: no entry {key!r} in the checkpoint (it holds: {format_key_list(top)})")
            obj = obj[key]
    else:
        raise CheckpointError(
            f"{path}: unknown checkpoint suffix {path.suffix!r}; expected one of "
            f"{sorted(_SAFETENSORS_SUFFIXES | _TORCH_SUFFIXES)}"
        )
    return _as_flat_state_dict(obj, path, key)


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own SafetensorError, or OSError
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc


def _read_torch(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = _last_line(str(exc), containing="GLOBAL") or _last_line(str(exc), containing="global")
        if reason:
            raise CheckpointError(
                f"refusing to load {path}: the pickle needs code to load ({reason.strip()}). Only "
                "tensors and plain containers are accepted (torch.load with weights_only=True); "
                "nothing from the file was executed. Convert it to .safetensors where the file is trusted."
            ) from exc
        raise CheckpointError(f"{path}: not a readable weights-only torch checkpoint ({_last_line(str(exc))})") from exc
    except Exception as exc:  # truncated zip, not a torch file at all, ...
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({type(exc).__name__}: {exc})") from exc


def _last_line(message: str, containing: str = "") -> str:
    lines = [line for line in message.splitlines() if line.strip() and containing in line]
    return lines[-1] if lines else ""


def _as_flat_state_dict(obj: Any, path: Path, key: str | None) -> dict[str, torch.Tensor]:
    where = f"{path}" + (f"[{key!r}]" if key is not None else "")
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{where}: expected a mapping of names to tensors, got {type(obj).__name__}")
    not_tensors = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if not_tensors:
        hint = " (pass key=... to pick the state dict inside)" if key is None else ""
        raise CheckpointError(f"{where}: entries that are not tensors: {format_key_list(not_tensors)}{hint}")
    return dict(obj)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 (hex) of a file, read in 1 MiB blocks: how a user's checkpoint is recorded."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------------
# Strict loading


def strict_load(
    module: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    source: str,
    key_prefix: str = "",
) -> None:
    """Load ``state_dict`` into ``module`` only if its keys and shapes match exactly.

    Raises :class:`CheckpointError` naming every missing key, unexpected key and shape mismatch
    (each list truncated to a readable length) before anything is copied, so a failed load never
    leaves the module half-loaded. ``source`` names the file in the message; ``key_prefix`` is
    prepended to key names in the message where the file's keys carry a prefix the caller stripped.
    """
    expected = module.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = []
    not_tensors = []
    for k, value in state_dict.items():
        if k not in expected:
            continue
        if not isinstance(value, torch.Tensor):
            not_tensors.append(k)
        elif tuple(value.shape) != tuple(expected[k].shape):
            mismatched.append(f"{key_prefix}{k}: checkpoint {list(value.shape)} vs model {list(expected[k].shape)}")
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {format_key_list(key_prefix + k for k in missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {format_key_list(key_prefix + k for k in unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches ({len(mismatched)}): {format_key_list(mismatched)}")
    if not_tensors:
        names = format_key_list(key_prefix + k for k in not_tensors)
        problems.append(f"values that are not tensors ({len(not_tensors)}): {names}")
    if problems:
        raise CheckpointError(
            f"checkpoint {source} does not match {type(module).__name__}; nothing was loaded:\n  "
            + "\n  ".join(problems)
        )
    module.load_state_dict(dict(state_dict), strict=True)


def format_key_list(names: Iterable[str], limit: int = _MAX_LISTED) -> str:
    """``[a, b, ... and N more]``: a list of names for an error message, cut after ``limit``."""
    names = list(names)
    shown = ", ".join(str(n) for n in names[:limit])
    if len(names) > limit:
        shown += f", ... and {len(names) - limit} more"
    return "[" + shown + "]"


# --------------------------------------------------------------------------------------------------
# Our own format: model.safetensors + config.json


def save_model_dir(
    module: nn.Module,
    config: Any,
    out_dir: str | os.PathLike[str],
    *,
    model_type: str | None = None,
    write_extra: Callable[[Path], None] | None = None,
) -> Path:
    """Write ``module``'s weights and ``config`` (a dataclass) to ``out_dir`` atomically.

    The folder is staged beside ``out_dir`` and swapped into place whole, so a reader sees the old
    folder or the new one, never a mix. ``model_type`` defaults to the config class's
    ``model_type`` attribute, else the module's class name. ``write_extra(staged_dir)`` adds more
    files (an adapter folder, say) before the swap.
    """
    from safetensors.torch import save_file

    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"config must be a dataclass instance, got {type(config).__name__}")
    out_dir = Path(out_dir)
    model_type = model_type or getattr(config, "model_type", None) or type(module).__name__
    fields = _jsonable(dataclasses.asdict(config))
    if "model_type" in fields:
        raise ValueError("a config field may not be called 'model_type': that name is reserved in config.json")
    payload = {"model_type": model_type, **fields}

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        save_file(_tensors_for_saving(module), str(staged / WEIGHTS_FILE), metadata={"model_type": model_type})
        (staged / CONFIG_FILE).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        for name in (WEIGHTS_FILE, CONFIG_FILE):
            _fsync(staged / name)
        if write_extra is not None:
            write_extra(staged)
        commit_directory(staged, out_dir)
    finally:
        if staged.exists():
            shutil.rmtree(staged, ignore_errors=True)
    return out_dir


def _tensors_for_saving(module: nn.Module) -> dict[str, torch.Tensor]:
    # safetensors refuses tensors that share memory (tied weights); such a duplicate is written as
    # its own copy, so every state-dict key is in the file and strict_load finds it there.
    tensors: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int]] = set()
    for name, value in module.state_dict().items():
        value = value.detach().to("cpu").contiguous()
        storage = value.untyped_storage()
        ident = (storage.data_ptr(), storage.nbytes())
        if value.numel() and ident in seen:
            value = value.clone()
        elif value.numel():
            seen.add(ident)
        tensors[name] = value
    return tensors


def _fsync(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"config value {value!r} of type {type(value).__name__} cannot be written to JSON")


def load_config_json(model_dir: str | os.PathLike[str], cls: type[C]) -> C:
    """Read ``config.json`` from ``model_dir`` into the dataclass ``cls``.

    The ``"model_type"`` entry must match ``cls.model_type`` where the class defines one; unknown or
    missing fields raise :class:`CheckpointError`. JSON lists become tuples for tuple-typed fields.
    """
    path = Path(model_dir) / CONFIG_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CheckpointError(f"no {CONFIG_FILE} in {model_dir}") from exc
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    model_type = data.pop("model_type", None)
    wanted = getattr(cls, "model_type", None)
    if wanted is not None and model_type != wanted:
        raise CheckpointError(f"{path}: model_type is {model_type!r}, expected {wanted!r}")

    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise CheckpointError(f"{path}: unknown config fields for {cls.__name__}: {format_key_list(unknown)}")
    hints = typing.get_type_hints(cls)
    kwargs = {name: _from_json(value, hints.get(name)) for name, value in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: invalid {cls.__name__}: {exc}") from exc


def _from_json(value: Any, hint: Any) -> Any:
    if isinstance(value, list) and hint is not None and typing.get_origin(hint) is tuple:
        return tuple(value)
    return value


M = TypeVar("M", bound=nn.Module)


def load_model_dir(model_dir: str | os.PathLike[str], config_cls: type[C], build: Callable[[C], M]) -> M:
    """A model folder written by :func:`save_model_dir`: ``config.json`` read into ``config_cls``,
    ``build(config)`` (an uninitialized module is enough), the weights loaded strictly; in eval mode."""
    model_dir = Path(model_dir)
    model = build(load_config_json(model_dir, config_cls))
    weights = model_dir / WEIGHTS_FILE
    strict_load(model, load_state_dict_file(weights), source=str(weights))
    return model.eval()
