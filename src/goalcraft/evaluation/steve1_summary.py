"""An evaluation run as the user's STEVE-1 prior evaluator writes it: ``prior_evaluation_summary.json``.

The fields and per-task results follow konder/aimc's ``src/evaluation/prior_evaluator.py``
(``PriorEvaluationSummary.to_dict`` and ``PriorAnalysisResult.to_dict``); every value is read from
the tables of one evaluation run (goalcraft.evaluation.run.evaluate_runs), so the numbers are
goalcraft's metrics (goalcraft.evaluation.goal_model_metrics, docs/metrics.md) under the user's
names, computed once for the Dagster evaluation and ``goalcraft evaluate-prior`` alike::

    task_results: [{task_id, instruction, goal_accuracy, goal_accuracy_std, consistency,
                    semantic_robustness, n_success_visuals, n_samples, n_variants, prior_embed_dim,
                    visual_embed_dim}]
    discriminability, avg_goal_accuracy, avg_consistency, avg_semantic_robustness,
    is_degraded, degradation_warning, visualization_data

Where goalcraft differs from that evaluator (docs/steve1.md): a value that is undefined is ``null``
(the evaluator writes 0.0 for a task without success visuals and averages it in; goalcraft leaves
such a task out of ``avg_goal_accuracy``); ``consistency`` is 1 for a deterministic entry;
``visualization_data`` holds the similarity matrix, the variance per dimension, the rankings and the
scatter data, with ``tsne`` and ``pca`` null (no scikit-learn here); ``degradation_warning`` is in
English. The main entry is the prior sampled as STEVE-1 samples (``mineclip_prior``); the
``goalcraft`` section adds every other entry of the run (its deterministic mode, the goal predictor,
oracles) in the same per-task form, each metric with its bootstrap CI, and the paired differences.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from goalcraft.evaluation.goal_model_metrics import DEGRADED_DISCRIMINABILITY, DEGRADED_VARIANCE
from goalcraft.evaluation.run import BASELINE, CONSISTENCY_SAMPLES, PREDICTOR
from goalcraft.storage import write_json_atomic

__all__ = ["SUMMARY_FILE", "prior_evaluation_summary", "write_prior_summaries"]

SUMMARY_FILE = "prior_evaluation_summary.json"
_RANKED = 5  # the evaluator's top-k / bottom-k tasks


def _num(x: Any) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def degradation_warning(discriminability: float | None, variance: float | None) -> tuple[bool, str]:
    """The evaluator's rule and messages: low discriminability, very low variance, or both."""
    low_d = discriminability is not None and discriminability < DEGRADED_DISCRIMINABILITY
    low_v = variance is not None and variance < DEGRADED_VARIANCE
    if low_d and low_v:
        return True, "warning: the prior may have degraded (every task's output is similar and the variance is very low)"
    if low_d:
        return True, "warning: low discriminability (different tasks' outputs are too similar)"
    if low_v:
        return True, "warning: very low variance (the output may have degraded to a constant)"
    return False, "not degraded"


def _entry_summary(task_rows: list[dict], metrics: dict[str, dict], pairs: list[dict]) -> dict[str, Any]:
    """One entry (model and mode) in the evaluator's form."""
    sampled = bool(task_rows) and task_rows[0]["mode"] == "sampled"
    results = []
    for r in task_rows:
        dim = len(r["z_goal"]) if r.get("z_goal") is not None else None
        results.append({
            "task_id": r["task"], "instruction": r["instruction"],
            "goal_accuracy": _num(r["goal_accuracy"]), "goal_accuracy_std": _num(r["goal_accuracy_std"]),
            "consistency": _num(r["consistency"]), "semantic_robustness": _num(r["semantic_robustness"]),
            "n_success_visuals": int(r["held_out_clips"]),
            "n_samples": CONSISTENCY_SAMPLES if sampled else 1, "n_variants": int(r["variants"]),
            "prior_embed_dim": dim, "visual_embed_dim": dim,
            "visual_sources": r.get("visual_sources"),
        })
    value = {name: _num(m.get("value")) for name, m in metrics.items()}
    degraded, warning = degradation_warning(value.get("discriminability"), value.get("variance"))
    return {
        "task_results": results,
        "discriminability": value.get("discriminability"),
        "avg_goal_accuracy": value.get("goal_accuracy"),
        "avg_consistency": value.get("consistency"),
        "avg_semantic_robustness": value.get("semantic_robustness"),
        "is_degraded": degraded,
        "degradation_warning": warning,
        "visualization_data": _visualization(task_rows, results, pairs),
    }


def _visualization(task_rows: list[dict], results: list[dict], pairs: list[dict]) -> dict[str, Any]:
    labels = [r["task"] for r in task_rows]
    cosine = {(p["task_a"], p["task_b"]): p["cosine"] for p in pairs}
    matrix = [[1.0 if a == b else _num(cosine.get((a, b))) for b in labels] for a in labels]
    z = np.asarray([r["z_goal"] for r in task_rows if r.get("z_goal") is not None], dtype=np.float64)
    per_dim = z.var(axis=0) if len(z) else np.zeros(0)
    ranked = sorted((r for r in results if r["goal_accuracy"] is not None), key=lambda r: -r["goal_accuracy"])
    brief = [{k: r[k] for k in ("task_id", "instruction", "goal_accuracy", "consistency")} for r in ranked]
    return {
        "tsne": None,
        "pca": None,
        "similarity_matrix": {"matrix": matrix, "labels": labels},
        "variance": {"variance_per_dim": per_dim.tolist(), "mean_variance": _num(float(per_dim.mean())) if len(z) else None,
                     "std_variance": _num(float(per_dim.std())) if len(z) else None},
        "rankings": {"top_tasks": brief[:_RANKED], "bottom_tasks": brief[-_RANKED:]},
        "scatter": {"task_ids": [r["task_id"] for r in results],
                    "goal_accuracies": [r["goal_accuracy"] for r in results],
                    "consistencies": [r["consistency"] for r in results]},
    }


def _rows(table: pa.Table | None, **match: Any) -> list[dict]:
    if table is None or table.num_rows == 0:
        return []
    return [r for r in table.to_pylist() if all(r.get(k) == v for k, v in match.items())]


def prior_evaluation_summary(tables: dict[str, pa.Table], instruction_set: str, entry: str | None = None,
                             ) -> dict[str, Any]:
    """The summary of ``instruction_set`` in one run's ``tables``: the evaluator's fields for ``entry``
    (default: the prior sampled as STEVE-1 samples, else the goal predictor, else the first entry),
    and a ``goalcraft`` section with every entry, the metrics with CIs and the paired differences."""
    summary = [r for r in _rows(tables.get("summary"), instruction_set=instruction_set) if r.get("entry")]
    per_task = _rows(tables.get("per_task"), instruction_set=instruction_set)
    pairs = _rows(tables.get("per_pair"), instruction_set=instruction_set)
    entries: dict[str, tuple[str, str]] = {}
    for r in summary:
        entries.setdefault(r["entry"], (r["model"], r["mode"]))
    if not entries:
        raise ValueError(f"no evaluation of instruction set {instruction_set!r} in these tables")
    main = entry or next((e for e in (BASELINE, PREDICTOR) if e in entries), next(iter(entries)))
    if main not in entries:
        raise ValueError(f"no entry {main!r} in the evaluation of {instruction_set!r}; entries: {', '.join(entries)}")

    def one(key: str) -> dict[str, Any]:
        model, mode = entries[key]
        metrics = {r["metric"]: r for r in summary if r["entry"] == key}
        return _entry_summary([r for r in per_task if r["model"] == model and r["mode"] == mode], metrics,
                              [p for p in pairs if p["model"] == model and p["mode"] == mode])

    def cis(key: str) -> dict[str, dict]:
        return {r["metric"]: {k: (_num(r.get(k)) if k not in ("direction",) else r.get(k))
                              for k in ("value", "ci_low", "ci_high", "seed_std", "chance", "direction")}
                for r in summary if r["entry"] == key}

    runs = _rows(tables.get("runs"))
    out = one(main)
    out["goalcraft"] = {
        "run_id": runs[0]["run_id"] if runs else None,
        "instruction_set": instruction_set,
        "entry": main,
        "model": entries[main][0],
        "mode": entries[main][1],
        "metrics": cis(main),
        "entries": {key: {**one(key), "model": entries[key][0], "mode": entries[key][1], "metrics": cis(key)}
                    for key in entries if key != main},
        "differences": [{k: (_num(v) if isinstance(v, float) else v) for k, v in r.items() if k != "run_id"}
                        for r in _rows(tables.get("differences"), instruction_set=instruction_set)],
        "models": json.loads(runs[0]["models"]) if runs else {},
        "success_visuals_by_source": json.loads(runs[0].get("held_out_sources") or "{}") if runs else {},
    }
    return out


def set_folder_name(instruction_set: str) -> str:
    """A folder name for an instruction set (``aimc:eval_tasks`` → ``aimc_eval_tasks``)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", instruction_set) or "_"


def write_prior_summaries(tables: dict[str, pa.Table], out_dir: Path) -> dict[str, Path]:
    """``<out_dir>/<instruction set>/prior_evaluation_summary.json`` for every set of the run (atomic)."""
    sets = list(dict.fromkeys(r["instruction_set"] for r in _rows(tables.get("summary")) if r.get("entry")))
    written = {}
    for name in sets:
        path = Path(out_dir) / set_folder_name(name) / SUMMARY_FILE
        write_json_atomic(prior_evaluation_summary(tables, name), path)
        written[name] = path
    return written
