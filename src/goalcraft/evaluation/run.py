"""One evaluation run: every goal model on every instruction set, against held-out real goal clips,
written as parquet tables that accumulate across runs (docs/metrics.md has the metrics).

Tables (one parquet file per run under ``<data_root>/evaluation/<table>/<run_id>.parquet``; DuckDB
reads each table as a glob, see goalcraft.sql):

``runs``             run id, timestamp, models and their checkpoints, data versions, settings
``summary``          per run, model, instruction set and metric: value and bootstrap 95% CI
``per_task``         per task: phrasings, held-out clips, synonym robustness, cosine to its clips
``per_pair``         per pair of tasks: mean cosine between their z_goal (the confusion matrix)
``per_instruction``  per phrasing: z_goal norm, nearest task by clip centroid and its cosine
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from goalcraft.evaluation.instructions import InstructionSet
from goalcraft.evaluation.metrics import (
    aggregate_over_seeds,
    evaluate_model,
    pairwise_task_cosine,
)
from goalcraft.storage import write_parquet_atomic

TABLES = ("runs", "summary", "per_task", "per_pair", "per_instruction", "examples")


@dataclass
class GoalModelUnderTest:
    """A goal model as the evaluation sees it. ``predict(texts, seed)`` → ``[B, 512]``; ``seed=None``
    is its deterministic mode. ``seeds`` (for stochastic models) are evaluated and aggregated too."""

    name: str
    predict: Callable[[list[str], int | None], np.ndarray]
    encode_text: Callable[[list[str]], np.ndarray] | None = None
    checkpoints: dict[str, str] = field(default_factory=dict)
    seeds: tuple[int, ...] = ()


@dataclass(frozen=True)
class HeldOutClips:
    """Real goal clips no model trained on: their task labels and goal embeddings."""

    keys: list[str]
    tasks: list[str]
    embeddings: np.ndarray


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def _centroids(clips: HeldOutClips) -> tuple[list[str], np.ndarray]:
    names = sorted(set(clips.tasks))
    labels = np.asarray(clips.tasks)
    cents = np.stack([clips.embeddings[labels == t].mean(0) for t in names]) if names else np.zeros((0, 1))
    return names, cents


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def evaluate_runs(models: Sequence[GoalModelUnderTest], sets: Sequence[InstructionSet], clips: HeldOutClips, *,
                  run_id: str, data_versions: dict[str, str], n_boot: int = 1000, seed: int = 0,
                  settings: dict[str, Any] | None = None) -> dict[str, pa.Table]:
    """All five tables of one run (see the module docstring)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    summary, per_task, per_pair, per_instruction = [], [], [], []
    names, cents = _centroids(clips)
    clip_tasks = set(names)
    for iset in sets:
        rows = iset.rows()
        tasks = [t for t, _, _ in rows]
        texts = [p for _, p, _ in rows]
        # Clips count for a task of this set when the set's task name is the clips' task label.
        in_set = np.isin(np.asarray(clips.tasks), [t.name for t in iset.tasks])
        for model in models:
            base = {"run_id": run_id, "model": model.name, "instruction_set": iset.name}
            text_emb = model.encode_text(texts) if model.encode_text is not None else None
            variants: list[tuple[str, int | None]] = [("deterministic", None)] + [(f"seed{s}", s) for s in model.seeds]
            per_seed_rows: list[list[dict]] = []
            for mode, s in variants:
                z = np.asarray(model.predict(texts, s), dtype=np.float64)
                metric_rows = evaluate_model(
                    z, tasks, text_emb=text_emb,
                    clip_emb=clips.embeddings[in_set] if in_set.any() else None,
                    clip_tasks=[t for t, keep in zip(clips.tasks, in_set) if keep] if in_set.any() else None,
                    n_boot=n_boot, seed=seed)
                if mode == "deterministic":
                    summary += [{**base, "mode": mode, **r} for r in metric_rows]
                    per_instruction += _instruction_rows(base, rows, z, names, cents)
                    per_task += _task_rows(base, iset, tasks, z, clips, clip_tasks)
                    task_names, matrix = pairwise_task_cosine(z, tasks)
                    per_pair += [{**base, "task_a": a, "task_b": b, "cosine": float(matrix[i, j])}
                                 for i, a in enumerate(task_names) for j, b in enumerate(task_names) if i != j]
                else:
                    per_seed_rows.append(metric_rows)
            if per_seed_rows:
                summary += [{**base, "mode": "sampled", **r} for r in aggregate_over_seeds(per_seed_rows)]
    runs = [{"run_id": run_id, "timestamp": stamp,
             "models": json.dumps({m.name: m.checkpoints for m in models}, sort_keys=True),
             "instruction_sets": json.dumps([s.name for s in sets]),
             "data_versions": json.dumps(data_versions, sort_keys=True),
             "settings": json.dumps({"n_boot": n_boot, "seed": seed, **(settings or {})}, sort_keys=True),
             "held_out_clips": len(clips.keys)}]
    return {"runs": pa.Table.from_pylist(runs), "summary": _table(summary, stamp),
            "per_task": _table(per_task, stamp), "per_pair": _table(per_pair, stamp),
            "per_instruction": _table(per_instruction, stamp)}


def _table(rows: list[dict], stamp: str) -> pa.Table:
    if not rows:
        return pa.table({"timestamp": pa.array([], pa.string())})
    # Every key of any row (from_pylist would take the columns of the first row only): deterministic
    # and sampled summary rows have different keys.
    columns = list(dict.fromkeys(k for r in rows for k in r))
    return pa.Table.from_pylist([{**{c: r.get(c) for c in columns}, "timestamp": stamp} for r in rows])


def _instruction_rows(base: dict, rows, z: np.ndarray, names: list[str], cents: np.ndarray) -> list[dict]:
    out = []
    sims = _unit(z) @ _unit(cents).T if len(names) else None
    for k, (task, text, para) in enumerate(rows):
        row = {**base, "task": task, "instruction": text, "is_paraphrase": para, "z_norm": float(np.linalg.norm(z[k])),
               "nearest_task": None, "nearest_cosine": None, "own_task_cosine": None}
        if sims is not None:
            best = int(np.argmax(sims[k]))
            row.update(nearest_task=names[best], nearest_cosine=float(sims[k, best]))
            if task in names:
                row["own_task_cosine"] = float(sims[k, names.index(task)])
        out.append(row)
    return out


def _task_rows(base: dict, iset: InstructionSet, tasks: list[str], z: np.ndarray, clips: HeldOutClips,
               clip_tasks: set[str]) -> list[dict]:
    out = []
    labels = np.asarray(tasks)
    clip_labels = np.asarray(clips.tasks)
    unit = _unit(z)
    for task in iset.tasks:
        idx = np.flatnonzero(labels == task.name)
        pair = unit[idx] @ unit[idx].T
        robust = float(pair[np.triu_indices(len(idx), 1)].mean()) if len(idx) > 1 else None
        n_clips = int((clip_labels == task.name).sum())
        own = None
        if n_clips:
            cent = _unit(clips.embeddings[clip_labels == task.name].mean(0))
            own = float((unit[idx] @ cent).mean())
        out.append({**base, "task": task.name, "phrasings": len(idx), "held_out_clips": n_clips,
                    "has_goal_clips": task.name in clip_tasks, "synonym_robustness": robust,
                    "cosine_to_own_clips": own})
    return out


def write_tables(tables: dict[str, pa.Table], evaluation_dir: Path, run_id: str) -> dict[str, Path]:
    """Each table to ``<evaluation_dir>/<table>/<run_id>.parquet`` (atomic); returns the paths."""
    paths = {}
    for name, table in tables.items():
        path = Path(evaluation_dir) / name / f"{run_id}.parquet"
        write_parquet_atomic(table, path)
        paths[name] = path
    return paths


def file_digest(path: Path) -> str:
    """sha256 of a file (or of a folder's files, in name order): the data version a run records."""
    h = hashlib.sha256()
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for p in files:
        if p.is_file():
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def example_rows(models: Sequence[GoalModelUnderTest], sets: Sequence[InstructionSet], clips: HeldOutClips, *,
                 run_id: str, per_set: int = 4, k: int = 4) -> pa.Table:
    """For the first ``per_set`` tasks of each set that have held-out clips: each model's ``k`` nearest
    held-out clips to the z_goal of the task's instruction (for the report's examples)."""
    rows = []
    unit_clips = _unit(clips.embeddings) if len(clips.keys) else None
    for iset in sets:
        chosen = [t for t in iset.tasks if t.name in set(clips.tasks)][:per_set]
        if not chosen or unit_clips is None:
            continue
        texts = [t.phrasings[0] for t in chosen]
        for model in models:
            sims = _unit(np.asarray(model.predict(texts, None), dtype=np.float64)) @ unit_clips.T
            for task, text, row in zip(chosen, texts, sims):
                for rank, j in enumerate(np.argsort(-row, kind="stable")[:k]):
                    rows.append({"run_id": run_id, "model": model.name, "instruction_set": iset.name,
                                 "task": task.name, "instruction": text, "rank": rank, "key": clips.keys[j],
                                 "clip_task": clips.tasks[j], "cosine": float(row[j])})
    return pa.Table.from_pylist(rows) if rows else pa.table({"run_id": pa.array([], pa.string())})


def examples_for_report(table: pa.Table) -> list[dict]:
    """``example_rows`` grouped as render_report wants them."""
    grouped: dict[tuple, dict] = {}
    for r in sorted(table.to_pylist(), key=lambda r: (r["instruction_set"], r["task"], r["model"], r["rank"])):
        g = grouped.setdefault((r["instruction_set"], r["task"], r["model"]),
                               {"model": r["model"], "instruction": r["instruction"], "task": r["task"], "clips": []})
        g["clips"].append({"key": r["key"], "task": r["clip_task"], "cosine": r["cosine"]})
    return list(grouped.values())
