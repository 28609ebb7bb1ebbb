"""Goals back to the user's STEVE-1 agent: ``z_goal`` of instructions written the way STEVE-1 stores
visual prompt embeddings.

STEVE-1 loads a visual prompt with ``pickle.load`` (``steve1/run_agent/paper_prompts.py``,
``load_visual_prompt_embeds``: ``data/visual_prompt_embeds/<name>.pkl``) and hands it to
``MineRLConditionalAgent.get_action(obs, goal_embed)``, which does ``th.from_numpy(goal_embed)`` and
feeds it as ``mineclip_embed`` of a batch of one (with classifier-free guidance the policy stacks it
with a zero embedding along the first axis). Its episode embeddings are float32 ``(1, 512)`` arrays
(``EpisodeStorage.load_embeds_attn``), as its text prompts are (``get_prior_embed``). So each goal is
written as a pickled numpy float32 array of shape ``(1, D)``.

The pickle names ``numpy.core.multiarray._reconstruct`` (protocol 2), byte for byte what NumPy 1.x
writes, so the user's Python 3.9 / NumPy 1.x environment loads it; NumPy 2 (and goalcraft's restricted
unpickler) load it too. Beside the pickles: ``goals.npz`` (``z_goal [N, D]`` float32, ``names``,
``instructions``, ``tasks``) and ``index.json`` (the model, its checkpoints, the mode and one entry per
goal). Every file is written atomically (a temporary file renamed into place), ``index.json`` last;
other files in the folder are left alone.
"""

from __future__ import annotations

import io
import json
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from goalcraft.storage import atomic_path

__all__ = ["ExportedGoal", "goal_pickle_bytes", "read_instruction_lines", "safe_name", "write_goals"]

INDEX_FILE = "index.json"
NPZ_FILE = "goals.npz"
_NUMPY2_RECONSTRUCT = b"cnumpy._core.multiarray\n_reconstruct\n"
_NUMPY1_RECONSTRUCT = b"cnumpy.core.multiarray\n_reconstruct\n"


@dataclass(frozen=True)
class ExportedGoal:
    name: str  # the file stem: <name>.pkl
    instruction: str
    task: str | None
    z_goal: np.ndarray  # [D]


def goal_pickle_bytes(z_goal: np.ndarray) -> bytes:
    """A goal as STEVE-1 loads a visual prompt: a pickled float32 array of shape ``(1, D)``, naming
    NumPy 1.x's module path (module docstring)."""
    array = np.ascontiguousarray(np.asarray(z_goal, dtype=np.float32).reshape(1, -1))
    data = pickle.dumps(array, protocol=2)
    if _NUMPY2_RECONSTRUCT in data:
        data = data.replace(_NUMPY2_RECONSTRUCT, _NUMPY1_RECONSTRUCT)
    return data


def safe_name(text: str, taken: set[str]) -> str:
    """A file stem for ``text``: letters, digits, ``_`` and ``-`` (at most 80), made unique in ``taken``."""
    base = re.sub(r"[^A-Za-z0-9_-]+", "_", text.strip()).strip("_")[:80] or "goal"
    name, k = base, 2
    while name.lower() in taken:
        name, k = f"{base}_{k}", k + 1
    taken.add(name.lower())
    return name


def read_instruction_lines(path: Path) -> list[str]:
    """A text file of instructions, one a line (blank lines and ``#`` comments skipped)."""
    lines = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def _write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_goals(goals: Sequence[ExportedGoal], out_dir: Path, meta: dict[str, Any]) -> dict[str, Path]:
    """``<name>.pkl`` per goal, ``goals.npz`` and ``index.json`` (last) into ``out_dir``; returns the paths."""
    out_dir = Path(out_dir)
    written: dict[str, Path] = {}
    for goal in goals:
        written[goal.name] = out_dir / f"{goal.name}.pkl"
        _write_bytes(written[goal.name], goal_pickle_bytes(goal.z_goal))
    dim = int(goals[0].z_goal.shape[-1]) if goals else 0
    buffer = io.BytesIO()
    np.savez(buffer, z_goal=np.stack([g.z_goal for g in goals]).astype(np.float32) if goals else np.zeros((0, dim)),
             names=np.array([g.name for g in goals], dtype=str),
             instructions=np.array([g.instruction for g in goals], dtype=str),
             tasks=np.array([g.task or "" for g in goals], dtype=str))
    _write_bytes(out_dir / NPZ_FILE, buffer.getvalue())
    index = {**meta, "shape": [1, dim], "dtype": "float32", "npz": NPZ_FILE,
             "goals": [{"name": g.name, "file": f"{g.name}.pkl", "instruction": g.instruction, "task": g.task,
                        "norm": float(np.linalg.norm(g.z_goal))} for g in goals]}
    with atomic_path(out_dir / INDEX_FILE) as tmp:
        tmp.write_text(json.dumps(index, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    written[INDEX_FILE] = out_dir / INDEX_FILE
    written[NPZ_FILE] = out_dir / NPZ_FILE
    return written
