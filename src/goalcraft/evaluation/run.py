"""One evaluation run: every goal model on every instruction set, against held-out real goal clips,
written as parquet tables that accumulate across runs (docs/metrics.md has the metrics).

Tables (one parquet file per run under ``<data_root>/evaluation/<table>/<run_id>.parquet``; DuckDB
reads each table as a glob, see goalcraft.sql):

``runs``             run id, timestamp, models and their checkpoints, data versions, settings
``summary``          per run, model, mode (sampled / deterministic / oracle / text_probe), instruction
                     set and metric: direction (↑/↓), value over training seeds, bootstrap 95% CI
                     (tasks, clips and seeds resampled), seed std, zero-width flag, chance, the
                     training-mean oracle's value and the model's fraction of it
``differences``      paired bootstrap differences goal_predictor − mineclip_prior (sampled and
                     deterministic) per metric, with CI, whether it excludes 0 and which model is better
``per_task``         per model and task: the user's per-task figures and retrieval, the sources of the
                     task's success visuals, and the canonical instruction's z_goal
``per_pair``         per model (and mode) and pair of tasks: cosine between their canonical z_goal (the
                     heatmaps); model ``success_visuals`` (mode ``visuals``): mean cosine between the
                     two tasks' held-out goal clips (NULL where one has none)
``per_instruction``  per phrasing: z_goal norm, nearest task by clip centroid and its cosine
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from goalcraft.evaluation.instructions import InstructionSet
from goalcraft.evaluation.goal_model_metrics import (
    DIRECTIONS,
    ModelGoals,
    Visuals,
    bootstrap_models,
    chance_levels,
    per_task_values,
    probe_cosines,
    visual_pair_cosines,
)
from goalcraft.data.splits import TEST_SPLIT
from goalcraft.storage import write_parquet_atomic

TABLES = ("runs", "summary", "differences", "per_task", "per_pair", "per_instruction", "examples")


@dataclass
class GoalModelUnderTest:
    """A goal model as the evaluation sees it. ``predict(texts, seed)`` → ``[B, D]``: ``seed=None``
    is its deterministic mode, an int draws one sample per row (stochastic models). Several entries
    with the same ``name`` are training seeds of one model: their figures are aggregated.
    ``text_in_goal_space``: ``encode_text`` lives in the goal space (MineCLIP's text side), so the
    user's ``mineclip_baseline`` / ``prior_gain`` apply."""

    name: str
    predict: Callable[[list[str], int | None], np.ndarray]
    encode_text: Callable[[list[str]], np.ndarray] | None = None
    checkpoints: dict[str, str] = field(default_factory=dict)
    stochastic: bool = False
    text_in_goal_space: bool = False
    training_seed: int = 0


@dataclass(frozen=True)
class HeldOutClips:
    """The success visuals the goal models are scored against: goal clips' keys, task labels, goal
    embeddings and each one's source (``test_split``: a held-out goal clip no model trained on;
    ``steve1_trials`` / ``steve1_trials:trained_on``: a goal clip of the user's STEVE-1 trials, held out
    or trained on (``[splits] steve1_trials``); ``imported:<file>``: an imported success-visual
    embedding). Sources default to ``test_split``."""

    keys: list[str]
    tasks: list[str]
    embeddings: np.ndarray
    sources: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.sources:
            object.__setattr__(self, "sources", [TEST_SPLIT] * len(self.keys))
        if not len(self.keys) == len(self.tasks) == len(self.sources) == len(self.embeddings):
            raise ValueError("keys, tasks, sources and embeddings must have one entry per clip")

    @classmethod
    def from_success_visuals(cls, visuals: Mapping[str, Any], source: str) -> HeldOutClips:
        """Imported success visuals (``{task: SuccessVisuals(instruction, embeds [n, D])}``, as
        goalcraft.data.steve1_eval reads them), every one marked ``source``."""
        keys, tasks, rows = [], [], []
        for task, entry in visuals.items():
            for i, vector in enumerate(np.asarray(entry.embeds)):
                keys.append(f"{source}#{task}#{i}")
                tasks.append(task)
                rows.append(vector)
        dim = next((len(r) for r in rows), 0)
        return cls(keys, tasks, np.stack(rows) if rows else np.zeros((0, dim)), [source] * len(keys))

    def __add__(self, other: HeldOutClips) -> HeldOutClips:
        if not len(other.keys):
            return self
        if not len(self.keys):
            return other
        return HeldOutClips(self.keys + other.keys, self.tasks + other.tasks,
                            np.concatenate([self.embeddings, other.embeddings]), self.sources + other.sources)

    def task_sources(self, tasks: Sequence[str]) -> list[str | None]:
        """Per task, its visuals' sources (sorted, joined with ``+``); None for a task without visuals."""
        found: dict[str, set[str]] = {}
        for task, source in zip(self.tasks, self.sources):
            found.setdefault(task, set()).add(source)
        return ["+".join(sorted(found[t])) if t in found else None for t in tasks]


@dataclass(frozen=True)
class TrainingGoals:
    """The goal embeddings the models trained on (train + val splits): the centre of the centred
    metrics and the training-mean oracle."""

    tasks: list[str]
    embeddings: np.ndarray

    def centre(self) -> np.ndarray:
        return np.asarray(self.embeddings, dtype=np.float64).mean(0)

    def task_means(self, tasks: Sequence[str]) -> np.ndarray:
        """Each task's mean training goal; for a task with no training goal, the mean of all of them
        (a model trained on these clips knows nothing more about it)."""
        labels = np.asarray(self.tasks)
        emb = np.asarray(self.embeddings, dtype=np.float64)
        return np.stack([emb[labels == t].mean(0) if (labels == t).any() else self.centre() for t in tasks])


#: The oracles (upper bounds): what a perfect text→goal model could output (each task's mean
#: training goal), and, with hindsight, each task's mean held-out goal.
ORACLE_TRAIN = "oracle_train_mean"
ORACLE_HELD_OUT = "oracle_held_out_mean"
#: The headline paired comparison: the goal predictor against MineCLIP text + prior (sampled, as STEVE-1).
PREDICTOR, BASELINE = "goal_predictor", "mineclip_prior"
CONSISTENCY_SAMPLES = 10
#: ``per_pair``'s (model, mode) of the success visuals' cross-task cosine (the held-out goal clips of
#: two tasks; what ``visual_similarity`` averages).
VISUALS = ("success_visuals", "visuals")


def first_seeds(models: Sequence[GoalModelUnderTest]) -> list[GoalModelUnderTest]:
    """One entry per model name: its first training seed (for the per-phrasing tables and examples)."""
    seen: dict[str, GoalModelUnderTest] = {}
    for m in models:
        seen.setdefault(m.name, m)
    return list(seen.values())


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def _centroids(clips: HeldOutClips) -> tuple[list[str], np.ndarray]:
    names = sorted(set(clips.tasks))
    labels = np.asarray(clips.tasks)
    cents = np.stack([clips.embeddings[labels == t].mean(0) for t in names]) if names else np.zeros((0, 1))
    return names, cents


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _split_rows(z: np.ndarray, iset: InstructionSet) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Rows of ``iset.rows()`` order → (canonical [T, D], variants per task)."""
    canonical, variants, k = [], [], 0
    for task in iset.tasks:
        n = len(task.phrasings)
        canonical.append(z[k])
        variants.append(z[k + 1:k + n])
        k += n
    return np.stack(canonical), tuple(variants)


def _model_goals(model: GoalModelUnderTest, iset: InstructionSet, texts: list[str], mode: str,
                 sample_seed: int) -> ModelGoals:
    """One model's goals for a set. ``mode``: "sampled" (one draw per text, as STEVE-1 samples) or
    "deterministic"."""
    seed = sample_seed if mode == "sampled" else None
    z = np.asarray(model.predict(texts, seed), dtype=np.float64)
    canonical, variants = _split_rows(z, iset)
    samples = None
    if mode == "sampled":
        firsts = [t.phrasings[0] for t in iset.tasks]
        draws = np.asarray(model.predict(firsts * CONSISTENCY_SAMPLES, sample_seed + 1), dtype=np.float64)
        draws = draws.reshape(CONSISTENCY_SAMPLES, len(firsts), -1)
        samples = tuple(draws[:, t] for t in range(len(firsts)))
    text = text_all = None
    if model.encode_text is not None:
        emb = np.asarray(model.encode_text(texts), dtype=np.float64)
        first, rest = _split_rows(emb, iset)
        text_all = tuple(np.vstack([first[t:t + 1], rest[t]]) for t in range(len(iset.tasks)))
        text = first if model.text_in_goal_space else None
    return ModelGoals(tuple(t.name for t in iset.tasks), canonical, variants, samples, text, text_all)


def _oracle_goals(iset: InstructionSet, vectors: np.ndarray) -> ModelGoals:
    """An oracle answers every phrasing of a task with the task's vector."""
    tasks = tuple(t.name for t in iset.tasks)
    variants = tuple(np.repeat(vectors[i:i + 1], len(t.phrasings) - 1, axis=0) for i, t in enumerate(iset.tasks))
    return ModelGoals(tasks, vectors, variants)


def evaluate_runs(models: Sequence[GoalModelUnderTest], sets: Sequence[InstructionSet], clips: HeldOutClips, *,
                  run_id: str, data_versions: dict[str, str], training: TrainingGoals | None = None,
                  n_boot: int = 1000, seed: int = 0, settings: dict[str, Any] | None = None) -> dict[str, pa.Table]:
    """The tables of one run (see the module docstring): every model (every training seed; stochastic
    models sampled and deterministic), the oracles when ``training`` is given, on every set."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    summary, per_task, per_pair, per_instruction, differences = [], [], [], [], []
    names, cents = _centroids(clips)
    centre = training.centre() if training is not None else None
    for iset in sets:
        rows = iset.rows()
        texts = [p for _, p, _ in rows]
        task_names = [t.name for t in iset.tasks]
        vis = Visuals.from_rows(task_names, clips.embeddings, clips.tasks)
        goals: dict[str, list[ModelGoals]] = {}
        modes: dict[str, tuple[str, str]] = {}  # key → (model name, mode)
        for model in models:
            for mode in (("sampled", "deterministic") if model.stochastic else ("deterministic",)):
                key = model.name if mode == "sampled" or not model.stochastic else f"{model.name}:deterministic"
                goals.setdefault(key, []).append(_model_goals(model, iset, texts, mode, seed))
                modes[key] = (model.name, mode)
        if training is not None:
            goals[ORACLE_TRAIN] = [_oracle_goals(iset, training.task_means(task_names))]
            modes[ORACLE_TRAIN] = (ORACLE_TRAIN, "oracle")
            held = np.stack([v.mean(0) if len(v) else centre for v in vis.embeddings])
            goals[ORACLE_HELD_OUT] = [_oracle_goals(iset, held)]
            modes[ORACLE_HELD_OUT] = (ORACLE_HELD_OUT, "oracle")
        pairs = [(PREDICTOR, b) for b in (BASELINE, f"{BASELINE}:deterministic") if PREDICTOR in goals and b in goals]
        stats, diffs = bootstrap_models(goals, vis, pairs=pairs, centre=centre, n_boot=n_boot, seed=seed)
        chance = chance_levels(vis)
        oracle = stats.get(ORACLE_TRAIN, {})
        n_tasks = int((vis.counts() > 0).sum())
        for key, metrics in stats.items():
            model_name, mode = modes[key]
            base = {"run_id": run_id, "model": model_name, "instruction_set": iset.name}
            for metric, ci in metrics.items():
                ref = oracle.get(metric)
                # Only for ↑ metrics where the oracle scores above 0 (a ratio to ~0 means nothing).
                fraction = (ci.value / ref.value if ref is not None and ref.value == ref.value and ref.value > 1e-6
                            and DIRECTIONS.get(metric) == "↑" else None)
                summary.append({**base, "mode": mode, "entry": key, "metric": metric, "direction": DIRECTIONS.get(metric, "·"),
                                "value": ci.value, "ci_low": ci.ci_low, "ci_high": ci.ci_high,
                                "seed_std": ci.seed_std, "n_seeds": ci.n_seeds, "zero_width_ci": ci.zero_width,
                                "chance": chance.get(metric), "oracle": ref.value if ref is not None else None,
                                "fraction_of_oracle": fraction, "n_tasks": len(task_names),
                                "n_tasks_with_clips": n_tasks, "n_clips": int(vis.counts().sum())})
        for model in first_seeds(models):
            if model.encode_text is not None:
                for probe, value in probe_cosines(model.encode_text).items():
                    summary.append({"run_id": run_id, "model": model.name, "instruction_set": iset.name,
                                    "mode": "text_probe", "metric": probe, "direction": "·", "value": value})
        for (a, b), metrics in diffs.items():
            for metric, ci in metrics.items():
                direction = DIRECTIONS.get(metric, "·")
                excludes = bool(ci.ci_low > 0 or ci.ci_high < 0)
                better = None
                if excludes and direction in ("↑", "↓"):
                    better = a if (ci.value > 0) == (direction == "↑") else b
                differences.append({"run_id": run_id, "instruction_set": iset.name, "model_a": modes[a][0],
                                    "mode_a": modes[a][1], "model_b": modes[b][0], "mode_b": modes[b][1],
                                    "metric": metric, "direction": direction, "difference": ci.value,
                                    "ci_low": ci.ci_low, "ci_high": ci.ci_high, "excludes_zero": excludes,
                                    "zero_width_ci": ci.zero_width, "better": better, "n_seeds": ci.n_seeds})
        firsts = {key: g[0] for key, g in goals.items()}
        per_task += _task_rows(run_id, iset, firsts, modes, vis, centre, clips.task_sources(task_names))
        matrices = {modes[key]: _unit(g.canonical) @ _unit(g.canonical).T for key, g in firsts.items()}
        matrices[VISUALS] = visual_pair_cosines(vis, None)  # NaN where a task has no held-out clip
        for (model_name, mode), matrix in matrices.items():
            per_pair += [{"run_id": run_id, "model": model_name, "mode": mode, "instruction_set": iset.name,
                          "task_a": a, "task_b": b, "cosine": _finite(matrix[i, j])}
                         for i, a in enumerate(task_names) for j, b in enumerate(task_names) if i != j]
        for model in first_seeds(models):
            z = np.asarray(model.predict(texts, None), dtype=np.float64)
            per_instruction += _instruction_rows({"run_id": run_id, "model": model.name, "instruction_set": iset.name},
                                                 rows, z, names, cents)
    runs = [{"run_id": run_id, "timestamp": stamp,
             "models": json.dumps({f"{m.name}#seed{m.training_seed}": m.checkpoints for m in models}, sort_keys=True),
             "instruction_sets": json.dumps([s.name for s in sets]),
             "data_versions": json.dumps(data_versions, sort_keys=True),
             "settings": json.dumps({"n_boot": n_boot, "seed": seed, **(settings or {})}, sort_keys=True),
             "held_out_clips": len(clips.keys),
             "held_out_sources": json.dumps(dict(sorted(Counter(clips.sources).items())))}]
    return {"runs": pa.Table.from_pylist(runs), "summary": _table(summary, stamp),
            "differences": _table(differences, stamp) if differences else _EMPTY_DIFFERENCES, "per_task": _table(per_task, stamp),
            "per_pair": _table(per_pair, stamp), "per_instruction": _table(per_instruction, stamp)}


_EMPTY_DIFFERENCES = pa.schema([
    ("run_id", pa.string()), ("instruction_set", pa.string()), ("model_a", pa.string()), ("mode_a", pa.string()),
    ("model_b", pa.string()), ("mode_b", pa.string()), ("metric", pa.string()), ("direction", pa.string()),
    ("difference", pa.float64()), ("ci_low", pa.float64()), ("ci_high", pa.float64()),
    ("excludes_zero", pa.bool_()), ("zero_width_ci", pa.bool_()), ("better", pa.string()),
    ("n_seeds", pa.int64()), ("timestamp", pa.string())]).empty_table()


def _table(rows: list[dict], stamp: str) -> pa.Table:
    if not rows:
        return pa.table({"timestamp": pa.array([], pa.string())})
    # Every key of any row (from_pylist would take the columns of the first row only): text-probe and
    # metric rows have different keys.
    columns = list(dict.fromkeys(k for r in rows for k in r))
    return pa.Table.from_pylist([{**{c: r.get(c) for c in columns}, "timestamp": stamp} for r in rows])


def _finite(x: float) -> float | None:
    return None if x != x else float(x)


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


def _task_rows(run_id: str, iset: InstructionSet, goals: dict[str, ModelGoals], modes: dict[str, tuple[str, str]],
               vis: Visuals, centre: np.ndarray | None, sources: Sequence[str | None]) -> list[dict]:
    """Per model (first training seed) and task: the user's per-task figures and retrieval, and where
    the task's success visuals came from."""
    out = []
    for key, g in goals.items():
        model_name, mode = modes[key]
        p = per_task_values(g, vis, centre, (1, 5))
        val = _finite
        for t, task in enumerate(iset.tasks):
            out.append({"run_id": run_id, "model": model_name, "mode": mode, "instruction_set": iset.name,
                        "task": task.name, "instruction": task.phrasings[0], "variants": len(task.phrasings) - 1,
                        "held_out_clips": int(len(vis.embeddings[t])), "visual_sources": sources[t],
                        "goal_accuracy": val(p.goal_acc[t]),
                        "goal_accuracy_std": val(p.goal_acc_std[t]), "consistency": val(p.consistency[t]),
                        "semantic_robustness": val(p.robustness[t]), "mineclip_baseline": val(p.baseline[t]),
                        "top1": val(p.hits[1][t]), "top5": val(p.hits[5][t]),
                        "goal_cosine_centred": val(p.goal_cos_centred[t]),
                        "z_goal": np.asarray(g.canonical[t], dtype=np.float32).tolist()})
    return out


def run_evaluation(models: Sequence[GoalModelUnderTest], sets: Sequence[InstructionSet], clips: HeldOutClips, *,
                   data_versions: dict[str, str], training: TrainingGoals | None = None, n_boot: int = 1000,
                   seed: int = 0, settings: dict[str, Any] | None = None, examples_per_set: int = 4,
                   run_id: str | None = None) -> dict[str, pa.Table]:
    """One evaluation run: :func:`evaluate_runs`' tables plus the report's ``examples``. The Dagster
    evaluation asset and ``goalcraft evaluate-prior`` both call this (and summarise its tables with
    goalcraft.evaluation.steve1_summary)."""
    run_id = run_id or new_run_id()
    tables = evaluate_runs(models, sets, clips, run_id=run_id, training=training, n_boot=n_boot, seed=seed,
                           data_versions=data_versions, settings=settings)
    tables["examples"] = example_rows(models, sets, clips, run_id=run_id, per_set=examples_per_set)
    return tables


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
        for model in first_seeds(models):
            sims = _unit(np.asarray(model.predict(texts, None), dtype=np.float64)) @ unit_clips.T
            for task, text, row in zip(chosen, texts, sims):
                for rank, j in enumerate(np.argsort(-row, kind="stable")[:k]):
                    rows.append({"run_id": run_id, "model": model.name, "instruction_set": iset.name,
                                 "task": task.name, "instruction": text, "rank": rank, "key": clips.keys[j],
                                 "clip_task": clips.tasks[j], "clip_source": clips.sources[j],
                                 "cosine": float(row[j])})
    return pa.Table.from_pylist(rows) if rows else pa.table({"run_id": pa.array([], pa.string())})


def examples_for_report(table: pa.Table) -> list[dict]:
    """``example_rows`` grouped as render_report wants them."""
    grouped: dict[tuple, dict] = {}
    for r in sorted(table.to_pylist(), key=lambda r: (r["instruction_set"], r["task"], r["model"], r["rank"])):
        g = grouped.setdefault((r["instruction_set"], r["task"], r["model"]),
                               {"model": r["model"], "instruction": r["instruction"], "task": r["task"], "clips": []})
        g["clips"].append({"key": r["key"], "task": r["clip_task"], "cosine": r["cosine"],
                           "source": r.get("clip_source") or "test_split"})
    return list(grouped.values())


def headline(tables: dict[str, pa.Table], metric: str = "top1") -> dict[str, dict[str, Any]]:
    """Per instruction set: ``metric`` for the predictor, the prior (sampled) and the training-mean
    oracle, its chance level, and the paired difference predictor − prior with its CI."""
    out: dict[str, dict[str, Any]] = {}
    for r in tables["summary"].to_pylist():
        if r["metric"] == metric and r.get("entry") in (PREDICTOR, BASELINE, ORACLE_TRAIN):
            entry = out.setdefault(r["instruction_set"], {"chance": r.get("chance")})
            entry[r["entry"]] = r["value"]
    for r in tables["differences"].to_pylist():
        if r["metric"] == metric and r["mode_b"] == "sampled" and r["instruction_set"] in out:
            out[r["instruction_set"]]["difference"] = [r["difference"], r["ci_low"], r["ci_high"]]
    return out


def headline_line(figures: dict[str, dict[str, Any]], metric: str = "top1") -> str:
    """:func:`headline` as one progress line."""
    def f(x: Any) -> str:
        return "–" if x is None or x != x else f"{x:.2f}"

    parts = []
    for name, h in figures.items():
        d = h.get("difference")
        diff = f", Δ {f(d[0])} [{f(d[1])}, {f(d[2])}]" if d else ""
        parts.append(f"{name} {metric}: predictor {f(h.get(PREDICTOR))}, prior {f(h.get(BASELINE))}, "
                     f"oracle {f(h.get(ORACLE_TRAIN))}, chance {f(h.get('chance'))}{diff}")
    return "; ".join(parts)
