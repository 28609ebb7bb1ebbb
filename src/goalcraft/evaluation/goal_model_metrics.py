"""The user's STEVE-1 evaluator's metrics under their names, computed their way, plus stronger ones
beside them (task retrieval with chance, centred cosines, oracles) and paired bootstrap differences.

The names and formulas follow the prior evaluator of a public STEVE-1 evaluation framework
(konder/aimc, ``src/evaluation/prior_evaluator.py`` and ``eval_framework.py``); docs/metrics.md
gives every formula and the design figure each reproduces. Per task: a canonical instruction, its
variants and its success visuals (goal embeddings of held-out goal clips). ``z`` is a goal model's
goal for a text.

Every metric is an aggregate of per-task values (a vector over tasks) or per-task-pair values (a
matrix), so a bootstrap can resample tasks (as multiplicities ``w``) and, within each task, its
success visuals, and pair two models on the same resample. Plain numpy, float64.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "DIRECTIONS",
    "PROBE_PAIRS",
    "ModelGoals",
    "Visuals",
    "bootstrap_models",
    "compute_metrics",
    "probe_cosines",
    "visual_pair_cosines",
]

#: The design's text-side probe pairs (its "1.3 %": how little MineCLIP's text side separates them).
PROBE_PAIRS: tuple[tuple[str, str], ...] = (("kill pig", "chop tree"), ("kill pig", "build house"))

#: ↑: higher is better, ↓: lower is better, "·": a property, not a score.
DIRECTIONS: dict[str, str] = {
    "goal_accuracy": "↑", "goal_accuracy_std": "·", "consistency": "↑", "semantic_robustness": "↑",
    "discriminability": "↑", "prior_collapse": "↓", "visual_similarity": "·", "variance": "↑",
    "degraded": "↓", "text_discriminability": "↑", "mineclip_baseline": "·", "prior_gain": "↑",
    "top1": "↑", "top5": "↑", "separation_gap": "↑", "prior_collapse_centred": "↓",
    "discriminability_centred": "↑", "visual_similarity_centred": "·", "goal_cosine_centred": "↑",
}

#: The user's degradation rule: discriminability below this, or variance below the next, is "degraded".
DEGRADED_DISCRIMINABILITY = 0.3
DEGRADED_VARIANCE = 1e-4


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, n, out=np.zeros_like(x), where=n > 0)


def _pair_cos(a: np.ndarray) -> np.ndarray:
    """Mean cosine of the unordered pairs of distinct rows of ``a`` (NaN with fewer than two)."""
    if len(a) < 2:
        return math.nan
    u = _unit(a)
    i, j = np.triu_indices(len(u), 1)
    return float(np.mean(np.einsum("ij,ij->i", u[i], u[j])))


@dataclass(frozen=True)
class Visuals:
    """Success visuals per task (goal embeddings, raw scale), aligned with a task list; a task may
    have none (an empty ``[0, D]`` array)."""

    tasks: tuple[str, ...]
    embeddings: tuple[np.ndarray, ...]

    @classmethod
    def from_rows(cls, tasks: Sequence[str], embeddings: np.ndarray, row_tasks: Sequence[str]) -> Visuals:
        emb = np.asarray(embeddings, dtype=np.float64)
        labels = np.asarray(row_tasks)
        dim = emb.shape[1] if emb.ndim == 2 else 0
        return cls(tuple(tasks), tuple(emb[labels == t] if len(labels) else np.zeros((0, dim)) for t in tasks))

    def counts(self) -> np.ndarray:
        return np.array([len(e) for e in self.embeddings])

    def resample(self, rng: np.random.Generator) -> Visuals:
        """Each task's visuals drawn with replacement (same count)."""
        return Visuals(self.tasks, tuple(e[rng.integers(0, len(e), len(e))] if len(e) else e
                                         for e in self.embeddings))


@dataclass(frozen=True)
class ModelGoals:
    """One goal model's outputs for one instruction set (one training seed).

    ``canonical[t]``: z of task t's canonical instruction (the prior: one sample, as STEVE-1
    samples; ``deterministic`` is the mode's output, the extra column); ``variants[t]``: z of its
    variants ``[V_t, D]`` (canonical excluded); ``samples[t]``: repeated samples of the canonical
    instruction ``[S, D]`` (None: a deterministic model, consistency 1); ``text[t]``: the model's
    text-side embedding of the canonical instruction (in the goal space for MineCLIP; None if the
    model has none in that space).
    """

    tasks: tuple[str, ...]
    canonical: np.ndarray
    variants: tuple[np.ndarray, ...]
    samples: tuple[np.ndarray, ...] | None = None
    text: np.ndarray | None = None
    text_all: tuple[np.ndarray, ...] | None = None  # text embeddings of every phrasing (text_discriminability)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _PerTask:
    """Per-task vectors and per-pair matrices of one model on one visuals draw."""

    goal_acc: np.ndarray
    goal_acc_std: np.ndarray
    consistency: np.ndarray
    robustness: np.ndarray
    baseline: np.ndarray
    goal_cos_centred: np.ndarray
    hits: dict[int, np.ndarray]
    same: np.ndarray  # mean cosine among the task's phrasings (separation gap)
    pair: np.ndarray  # [T, T] cos(z_a, z_b) of the canonical goals
    pair_centred: np.ndarray
    pair_rows: np.ndarray  # [T, T] mean cosine between all phrasings of a and b
    text_pair: np.ndarray | None


@dataclass(frozen=True)
class _ModelOnly:
    """The per-task values that depend on the model's goals only, not on the visuals: computed once
    per model, not once per bootstrap replicate."""

    consistency: np.ndarray
    robustness: np.ndarray
    rows: list[np.ndarray]  # every phrasing's goal per task (canonical first)
    same: np.ndarray
    pair: np.ndarray
    pair_centred: np.ndarray
    pair_rows: np.ndarray
    text_pair: np.ndarray | None


def model_only_values(g: ModelGoals, centre: np.ndarray | None) -> _ModelOnly:
    T = len(g.tasks)
    uz = _unit(g.canonical)
    consistency = (np.ones(T) if g.samples is None
                   else np.array([_pair_cos(s) if len(s) > 1 else 1.0 for s in g.samples]))
    robust = np.array([_pair_cos(v) for v in g.variants])
    rows = [np.vstack([g.canonical[t:t + 1], g.variants[t]]) if len(g.variants[t]) else g.canonical[t:t + 1]
            for t in range(T)]
    urows = [_unit(r) for r in rows]
    same = np.array([_pair_cos(r) for r in rows])
    sums = np.stack([u.sum(0) for u in urows])
    n = np.array([len(u) for u in urows], dtype=np.float64)
    pair_rows = (sums @ sums.T) / np.outer(n, n)
    pair = uz @ uz.T
    pair_c = pair if centre is None else _unit(g.canonical - centre) @ _unit(g.canonical - centre).T
    text_pair = None
    if g.text_all is not None:
        ts = np.stack([_unit(x).sum(0) for x in g.text_all])
        tn = np.array([len(x) for x in g.text_all], dtype=np.float64)
        text_pair = (ts @ ts.T) / np.outer(tn, tn)
    return _ModelOnly(consistency, robust, rows, same, pair, pair_c, pair_rows, text_pair)


def per_task_values(g: ModelGoals, vis: Visuals, centre: np.ndarray | None, ks: Sequence[int],
                    model_only: _ModelOnly | None = None) -> _PerTask:
    T = len(g.tasks)
    mo = model_only if model_only is not None else model_only_values(g, centre)
    uz = _unit(g.canonical)
    acc = np.full(T, math.nan)
    acc_std = np.full(T, math.nan)
    base = np.full(T, math.nan)
    goal_c = np.full(T, math.nan)
    cents = np.zeros_like(g.canonical, dtype=np.float64)
    has = vis.counts() > 0
    for t, v in enumerate(vis.embeddings):
        if not len(v):
            continue
        sims = (_unit(v) @ uz[t] + 1.0) / 2.0  # the user's rescaled cosine, [0, 1]
        acc[t], acc_std[t] = float(sims.mean()), float(sims.std())
        if g.text is not None:
            base[t] = float((_unit(v) @ _unit(g.text[t])).mean())  # raw cosine, as the user's evaluator
        if centre is not None:
            goal_c[t] = float((_unit(v - centre) @ _unit(g.canonical[t] - centre)).mean())
        cents[t] = v.mean(0)
    # Retrieval: every phrasing of a task (canonical + variants) ranks the tasks with visuals by
    # cos(z, centroid); ties go to the task listed first.
    cand = np.flatnonzero(has)
    hits = {k: np.full(T, math.nan) for k in ks}
    if len(cand):
        uc = _unit(cents[cand])
        for t in range(T):
            if not has[t]:
                continue
            scores = _unit(mo.rows[t]) @ uc.T
            order = np.argsort(-scores, axis=1, kind="stable")
            rank = np.argmax(cand[order] == t, axis=1)
            for k in ks:
                hits[k][t] = float(np.mean(rank < k))
    return _PerTask(acc, acc_std, mo.consistency, mo.robustness, base, goal_c, hits, mo.same, mo.pair,
                    mo.pair_centred, mo.pair_rows, mo.text_pair)


def _wmean(values: np.ndarray, w: np.ndarray) -> float:
    keep = ~np.isnan(values) & (w > 0)
    return float(np.sum(values[keep] * w[keep]) / np.sum(w[keep])) if keep.any() else math.nan


def _wpair(matrix: np.ndarray, w: np.ndarray) -> float:
    """Weighted mean over pairs of distinct tasks a != b (copies of one task are not a pair)."""
    ww = np.outer(w, w).astype(np.float64)
    np.fill_diagonal(ww, 0.0)
    keep = ~np.isnan(matrix) & (ww > 0)
    return float(np.sum(matrix[keep] * ww[keep]) / np.sum(ww[keep])) if keep.any() else math.nan


def _wvariance(z: np.ndarray, w: np.ndarray) -> float:
    """Mean over dimensions of the (population) variance over tasks, tasks weighted by ``w``."""
    keep = w > 0
    if keep.sum() < 1:
        return math.nan
    zz, ww = z[keep], w[keep].astype(np.float64)
    mu = (ww[:, None] * zz).sum(0) / ww.sum()
    return float(((ww[:, None] * (zz - mu) ** 2).sum(0) / ww.sum()).mean())


def visual_pair_cosines(vis: Visuals, centre: np.ndarray | None) -> np.ndarray:
    """[T, T]: mean cosine between the success visuals of tasks a and b (NaN where one has none)."""
    T = len(vis.tasks)
    sums, n = [], []
    for v in vis.embeddings:
        x = v if centre is None or not len(v) else v - centre
        sums.append(_unit(x).sum(0) if len(v) else None)
        n.append(len(v))
    m = np.full((T, T), math.nan)
    for a in range(T):
        for b in range(T):
            if sums[a] is not None and sums[b] is not None:
                m[a, b] = float(sums[a] @ sums[b]) / (n[a] * n[b])
    return m


def compute_metrics(g: ModelGoals, vis: Visuals, *, centre: np.ndarray | None = None,
                    ks: Sequence[int] = (1, 5), w: np.ndarray | None = None,
                    visual_pair: tuple[np.ndarray, np.ndarray] | None = None,
                    _per: _PerTask | None = None, _model_only: _ModelOnly | None = None) -> dict[str, float]:
    """Every metric of one model (one seed) on one instruction set; ``w``: task multiplicities (a
    bootstrap draw; default every task once). docs/metrics.md has the formulas."""
    if tuple(g.tasks) != tuple(vis.tasks):
        raise ValueError("the model's tasks and the visuals' tasks must be the same list, in the same order")
    T = len(g.tasks)
    w = np.ones(T) if w is None else np.asarray(w, dtype=np.float64)
    p = _per if _per is not None else per_task_values(g, vis, centre, ks, _model_only)
    vp, vpc = (visual_pair if visual_pair is not None
               else (visual_pair_cosines(vis, None), visual_pair_cosines(vis, centre)))
    collapse = _wpair(p.pair, w)
    variance = _wvariance(g.canonical, w)
    out = {
        "goal_accuracy": _wmean(p.goal_acc, w),
        "goal_accuracy_std": _wmean(p.goal_acc_std, w),
        "consistency": _wmean(p.consistency, w),
        "semantic_robustness": _wmean(p.robustness, w),
        "discriminability": 1.0 - collapse,
        "prior_collapse": collapse,
        "visual_similarity": _wpair(vp, w),
        "variance": variance,
        "degraded": float((1.0 - collapse) < DEGRADED_DISCRIMINABILITY or variance < DEGRADED_VARIANCE),
        "separation_gap": _wmean(p.same, w) - _wpair(p.pair_rows, w),
    }
    if g.text is not None:
        out["mineclip_baseline"] = _wmean(p.baseline, w)
        # As the user's evaluator computes it: the rescaled goal accuracy minus the raw text cosine.
        out["prior_gain"] = _wmean(p.goal_acc - p.baseline, w)
    if p.text_pair is not None:
        out["text_discriminability"] = 1.0 - _wpair(p.text_pair, w)
    for k in ks:
        out[f"top{k}"] = _wmean(p.hits[k], w)
    if centre is not None:
        out["prior_collapse_centred"] = _wpair(p.pair_centred, w)
        out["discriminability_centred"] = 1.0 - out["prior_collapse_centred"]
        out["visual_similarity_centred"] = _wpair(vpc, w)
        out["goal_cosine_centred"] = _wmean(p.goal_cos_centred, w)
    return out


def chance_levels(vis: Visuals, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Chance of each retrieval metric: k / (tasks with visuals), at most 1."""
    n = int((vis.counts() > 0).sum())
    return {f"top{k}": (min(1.0, k / n) if n else math.nan) for k in ks}


def probe_cosines(encode_text: Any, pairs: Sequence[tuple[str, str]] = PROBE_PAIRS) -> dict[str, float]:
    """The design's text probes: cos(text(a), text(b)) per pair and the first two pairs' difference."""
    texts = sorted({t for pair in pairs for t in pair})
    emb = _unit(np.asarray(encode_text(texts), dtype=np.float64))
    at = {t: emb[i] for i, t in enumerate(texts)}
    out = {f"cos({a} | {b})": float(at[a] @ at[b]) for a, b in pairs}
    if len(pairs) >= 2:
        (a1, b1), (a2, b2) = pairs[0], pairs[1]
        out["difference"] = float(at[a1] @ at[b1] - at[a2] @ at[b2])
    return out


@dataclass(frozen=True)
class MetricCI:
    value: float
    ci_low: float
    ci_high: float
    seed_std: float
    n_seeds: int

    @property
    def zero_width(self) -> bool:
        return bool(self.ci_low == self.ci_high) and not math.isnan(self.ci_low)


def _quantiles(values: np.ndarray, level: float) -> tuple[float, float]:
    values = values[~np.isnan(values)]
    if not len(values):
        return math.nan, math.nan
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(values, [a, 1.0 - a])
    return float(lo), float(hi)


def bootstrap_models(models: Mapping[str, Sequence[ModelGoals]], vis: Visuals, *,
                     pairs: Sequence[tuple[str, str]] = (), centre: np.ndarray | None = None,
                     ks: Sequence[int] = (1, 5), n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                     ) -> tuple[dict[str, dict[str, MetricCI]], dict[tuple[str, str], dict[str, MetricCI]]]:
    """Point values and percentile-bootstrap CIs of every metric of every model, and of the paired
    differences ``a − b`` for each ``(a, b)`` in ``pairs``.

    ``models[name]``: one :class:`ModelGoals` per training seed (same tasks). Point value: the mean
    over seeds. Each replicate draws the tasks with replacement (multiplicities), each task's visuals
    with replacement, and one seed per model: so the interval carries task, clip and seed variance,
    and a difference is computed on the same resample for both models. ``seed_std`` is the sample
    std over seeds of the point value (0 for one seed).
    """
    names = list(models)
    for a, b in pairs:
        if a not in models or b not in models:
            raise ValueError(f"paired difference {a} − {b}: both models must be evaluated")
    T = len(vis.tasks)
    base_pair = (visual_pair_cosines(vis, None), visual_pair_cosines(vis, centre))
    point_per_seed = {m: [compute_metrics(g, vis, centre=centre, ks=ks, visual_pair=base_pair) for g in models[m]]
                      for m in names}
    metric_names = list(dict.fromkeys(k for m in names for d in point_per_seed[m] for k in d))

    def mean_over(seed_dicts: list[dict[str, float]], k: str) -> float:
        vals = np.array([d.get(k, math.nan) for d in seed_dicts], dtype=np.float64)
        vals = vals[~np.isnan(vals)]
        return float(vals.mean()) if len(vals) else math.nan

    def std_over(seed_dicts: list[dict[str, float]], k: str) -> float:
        vals = np.array([d.get(k, math.nan) for d in seed_dicts], dtype=np.float64)
        vals = vals[~np.isnan(vals)]
        return float(vals.std(ddof=1)) if len(vals) >= 2 else (0.0 if len(vals) == 1 else math.nan)

    model_only = {id(g): model_only_values(g, centre) for m in names for g in models[m]}
    rng = np.random.default_rng(seed)
    boot = {m: {k: np.full(n_boot, math.nan) for k in metric_names} for m in names}
    diff = {p: {k: np.full(n_boot, math.nan) for k in metric_names} for p in pairs}
    for r in range(int(n_boot)):
        w = np.bincount(rng.integers(0, T, T), minlength=T).astype(np.float64)
        v = vis.resample(rng)
        vpair = (visual_pair_cosines(v, None), visual_pair_cosines(v, centre))
        drawn = {}
        for m in names:
            g = models[m][int(rng.integers(0, len(models[m])))]
            drawn[m] = compute_metrics(g, v, centre=centre, ks=ks, w=w, visual_pair=vpair, _model_only=model_only[id(g)])
            for k, x in drawn[m].items():
                boot[m][k][r] = x
        for a, b in pairs:
            for k in metric_names:
                diff[(a, b)][k][r] = drawn[a].get(k, math.nan) - drawn[b].get(k, math.nan)
    out: dict[str, dict[str, MetricCI]] = {}
    for m in names:
        out[m] = {}
        for k in metric_names:
            lo, hi = _quantiles(boot[m][k], level)
            out[m][k] = MetricCI(mean_over(point_per_seed[m], k), lo, hi, std_over(point_per_seed[m], k),
                                 len(models[m]))
    diffs: dict[tuple[str, str], dict[str, MetricCI]] = {}
    for a, b in pairs:
        diffs[(a, b)] = {}
        for k in metric_names:
            lo, hi = _quantiles(diff[(a, b)][k], level)
            point = mean_over(point_per_seed[a], k) - mean_over(point_per_seed[b], k)
            diffs[(a, b)][k] = MetricCI(point, lo, hi, math.nan, min(len(models[a]), len(models[b])))
    return out, diffs
