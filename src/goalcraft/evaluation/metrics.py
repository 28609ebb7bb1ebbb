"""Per-phrasing goal-model metrics (every phrasing a row): cross- and same-task cosines, the
``separation_gap`` (same − cross), ``task_retrieval`` of held-out goal clips, each with a bootstrap
CI over tasks; the pairwise task views the report uses. The evaluation's headline metrics, under the
user's STEVE-1 evaluator's names, are in :mod:`goalcraft.evaluation.goal_model_metrics`.

Plain numpy, float64 throughout. Inputs are embedding arrays ``[N, D]`` (raw scale; every metric
works on cosines, i.e. on L2-normalised rows, and a zero row has cosine 0 with everything) plus one
task label per row (ints or strings). docs/metrics.md gives every formula and its averaging.

Averaging convention (``weighting="task"``, the default everywhere): every task, or every pair of
tasks, weighs the same, however many phrasings it has. Same-task cosine is the mean over tasks of
that task's mean over its pairs of distinct rows; cross-task cosine is the mean over unordered pairs
of distinct tasks of the mean cosine between their rows; top-k accuracy is the mean over tasks of the
fraction of that task's rows that hit. ``weighting="row"`` instead weighs every row pair (or row)
the same. A row is never paired with itself.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

Weighting = Literal["task", "row"]
Labels = Sequence[int] | Sequence[str] | np.ndarray
Statistic = Callable[[np.ndarray, np.ndarray], float]

__all__ = [
    "aggregate_over_seeds",
    "bootstrap_ci",
    "evaluate_model",
    "goal_similarity",
    "mean_cross_task_cosine",
    "mean_same_task_cosine",
    "metric_with_ci",
    "most_confused_pairs",
    "pairwise_task_cosine",
    "separation_gap",
    "synonym_robustness",
    "task_retrieval",
    "text_discriminability",
]


# --------------------------------------------------------------------------- validation helpers

def _embeddings(x: ArrayLike, name: str = "emb") -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [rows, dim], got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must have at least one row and one column, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _labels(tasks: Labels, n: int | None = None, name: str = "tasks", emb_name: str = "emb") -> np.ndarray:
    arr = np.asarray(tasks)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of task labels, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} labels but {emb_name} has {n} rows; "
                         "give exactly one task label per row")
    if n is None and arr.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    return arr


def _unique(labels: np.ndarray, name: str = "tasks") -> tuple[np.ndarray, np.ndarray]:
    try:
        names, inverse = np.unique(labels, return_inverse=True)
    except TypeError as err:  # e.g. a mix of ints and strings in an object array
        raise ValueError(f"{name} must be all integers or all strings: {err}") from None
    return names, inverse.reshape(-1)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def _check_weighting(weighting: str) -> None:
    if weighting not in ("task", "row"):
        raise ValueError(f"weighting must be 'task' or 'row', got {weighting!r}")


# --------------------------------------------------------------------------- task blocks

@dataclass(frozen=True)
class _Blocks:
    """Cosine sums between the rows of every pair of tasks.

    ``sums[a, b]`` (a != b): sum of cos(x_i, x_j) over i in a, j in b; ``sums[a, a]``: sum over
    ordered pairs of distinct rows i != j of a. ``pairs`` holds the matching pair counts
    (n_a * n_b, and n_a * (n_a - 1) on the diagonal). ``groups[a]``: the group code of task a;
    pairs of distinct tasks of one group are not cross-task pairs (see ``bootstrap_ci``).
    """

    names: np.ndarray
    counts: np.ndarray
    sums: np.ndarray
    pairs: np.ndarray
    groups: np.ndarray


def _blocks(emb: ArrayLike, tasks: Labels, groups: Labels | None = None, name: str = "emb") -> _Blocks:
    x = _embeddings(emb, name)
    labels = _labels(tasks, x.shape[0], emb_name=name)
    names, inv = _unique(labels)
    n_tasks = len(names)
    u = _unit_rows(x)
    # Sum of unit rows per task: the sum of cosines between two tasks' rows is the dot of their sums.
    task_sum = np.zeros((n_tasks, x.shape[1]))
    np.add.at(task_sum, inv, u)
    counts = np.bincount(inv, minlength=n_tasks)
    self_dots = np.bincount(inv, weights=np.einsum("ij,ij->i", u, u), minlength=n_tasks)
    sums = task_sum @ task_sum.T
    diag = np.arange(n_tasks)
    sums[diag, diag] -= self_dots  # drop each row paired with itself
    pairs = np.outer(counts, counts).astype(np.float64)
    pairs[diag, diag] = counts * (counts - 1.0)
    if groups is None:
        task_groups = diag.copy()
    else:
        g = _labels(groups, x.shape[0], name="groups", emb_name=name)
        _, g_inv = _unique(g, "groups")
        low = np.full(n_tasks, np.iinfo(np.int64).max)
        high = np.full(n_tasks, -1)
        np.minimum.at(low, inv, g_inv)
        np.maximum.at(high, inv, g_inv)
        if not np.array_equal(low, high):
            raise ValueError("groups must be constant within each task")
        task_groups = low
    return _Blocks(names, counts, sums, pairs, task_groups)


def _same_from_blocks(b: _Blocks, weighting: Weighting) -> float:
    has_pairs = b.counts >= 2
    if not has_pairs.any():
        return math.nan
    s = np.diag(b.sums)[has_pairs]
    p = np.diag(b.pairs)[has_pairs]
    return float(np.mean(s / p)) if weighting == "task" else float(s.sum() / p.sum())


def _cross_mask(b: _Blocks) -> np.ndarray:
    n = len(b.names)
    return np.triu(np.ones((n, n), dtype=bool), 1) & (b.groups[:, None] != b.groups[None, :])


def _cross_from_blocks(b: _Blocks, weighting: Weighting) -> float:
    mask = _cross_mask(b)
    if not mask.any():
        return math.nan
    s, p = b.sums[mask], b.pairs[mask]
    return float(np.mean(s / p)) if weighting == "task" else float(s.sum() / p.sum())


# --------------------------------------------------------------------------- metrics

def mean_cross_task_cosine(emb: ArrayLike, tasks: Labels, *, weighting: Weighting = "task",
                           groups: Labels | None = None) -> float:
    """Mean cosine between rows of different tasks.

    ``weighting="task"``: mean over unordered pairs of distinct tasks {a, b} of the mean cosine over
    all n_a * n_b row pairs between them. ``"row"``: mean over all row pairs i < j with different
    tasks. NaN with fewer than two tasks. ``groups`` (constant within a task): task pairs of the same
    group are skipped (``bootstrap_ci`` uses it for copies of one resampled task).
    """
    _check_weighting(weighting)
    return _cross_from_blocks(_blocks(emb, tasks, groups), weighting)


def mean_same_task_cosine(emb: ArrayLike, tasks: Labels, *, weighting: Weighting = "task",
                          groups: Labels | None = None) -> float:
    """Mean cosine between distinct rows of the same task.

    ``weighting="task"``: mean over tasks with at least two rows of that task's mean over its
    n_a (n_a - 1) / 2 pairs i < j. ``"row"``: mean over all same-task pairs i < j. NaN when no task
    has two rows. ``groups`` is accepted for a uniform signature (same-task pairs are within a task).
    """
    _check_weighting(weighting)
    return _same_from_blocks(_blocks(emb, tasks, groups), weighting)


def text_discriminability(text_emb: ArrayLike, tasks: Labels, *, weighting: Weighting = "task",
                          groups: Labels | None = None) -> dict[str, float]:
    """The text encoder's side: ``discriminability`` = 1 − mean cross-task cosine,
    ``paraphrase_cosine`` = mean same-task cosine, ``gap`` = same − cross."""
    _check_weighting(weighting)
    b = _blocks(text_emb, tasks, groups, name="text_emb")
    cross, same = _cross_from_blocks(b, weighting), _same_from_blocks(b, weighting)
    return {"discriminability": 1.0 - cross, "paraphrase_cosine": same, "gap": same - cross}


def goal_similarity(z: ArrayLike, tasks: Labels, *, weighting: Weighting = "task",
                    groups: Labels | None = None) -> float:
    """Mean cross-task cosine of z_goal (lower = tasks further apart). On a CVAE prior's outputs
    this is the "prior collapse" number."""
    _check_weighting(weighting)
    return _cross_from_blocks(_blocks(z, tasks, groups, name="z"), weighting)


def separation_gap(z: ArrayLike, tasks: Labels, *, weighting: Weighting = "task",
                     groups: Labels | None = None) -> float:
    """Mean same-task cosine − mean cross-task cosine of z_goal (higher = better separated)."""
    _check_weighting(weighting)
    b = _blocks(z, tasks, groups, name="z")
    return _same_from_blocks(b, weighting) - _cross_from_blocks(b, weighting)


def synonym_robustness(z: ArrayLike, tasks: Labels, *, weighting: Weighting = "task",
                       groups: Labels | None = None) -> float:
    """Mean cosine between the z_goal of paraphrases of one task (= ``mean_same_task_cosine``;
    task-weighted by default: per-task mean over pairs i < j, then the mean over tasks)."""
    _check_weighting(weighting)
    return _same_from_blocks(_blocks(z, tasks, groups, name="z"), weighting)


def _task_mean(values: np.ndarray, labels: np.ndarray, weighting: Weighting = "task") -> float:
    """Mean over tasks of the per-task mean of ``values`` (``"row"``: plain mean)."""
    if len(values) == 0:
        return math.nan
    if weighting == "row":
        return float(np.mean(values))
    _, inv = _unique(labels)
    counts = np.bincount(inv)
    return float(np.mean(np.bincount(inv, weights=values) / counts))


@dataclass(frozen=True)
class _Retrieval:
    candidates: np.ndarray  # task names that have clips, in sorted order (the tie-break order)
    scored: np.ndarray  # bool [N]: the row's task has clips
    ranks: np.ndarray  # int [n_scored]: 0-based rank of the row's own task among the candidates


def _retrieval(z: ArrayLike, z_tasks: Labels, clip_emb: ArrayLike, clip_tasks: Labels) -> _Retrieval:
    x = _embeddings(z, "z")
    labels = _labels(z_tasks, x.shape[0], name="z_tasks", emb_name="z")
    clips = _embeddings(clip_emb, "clip_emb")
    clip_labels = _labels(clip_tasks, clips.shape[0], name="clip_tasks", emb_name="clip_emb")
    if clips.shape[1] != x.shape[1]:
        raise ValueError(f"z has dimension {x.shape[1]} but clip_emb has dimension {clips.shape[1]}")
    names, inv = _unique(clip_labels, "clip_tasks")
    centroids = np.zeros((len(names), clips.shape[1]))
    np.add.at(centroids, inv, clips)
    centroids /= np.bincount(inv)[:, None]  # raw-scale mean of each task's clip embeddings
    scored = np.isin(labels, names)
    own = np.searchsorted(names, labels[scored])
    scores = _unit_rows(x[scored]) @ _unit_rows(centroids).T
    order = np.argsort(-scores, axis=1, kind="stable")  # ties: the earlier task (sorted order) first
    ranks = np.argmax(order == own[:, None], axis=1) if len(own) else np.zeros(0, dtype=np.int64)
    return _Retrieval(names, scored, ranks)


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    out = tuple(int(k) for k in ks)
    if not out or any(k < 1 for k in out) or any(int(k) != k for k in ks):
        raise ValueError(f"ks must be positive integers, got {tuple(ks)!r}")
    return out


def task_retrieval(z: ArrayLike, z_tasks: Labels, clip_emb: ArrayLike, clip_tasks: Labels,
                  ks: Sequence[int] = (1, 5), *, weighting: Weighting = "task") -> dict[str, float]:
    """Task-level retrieval against held-out goal clips.

    Each z row scores every task that has clips by cos(z, centroid), the centroid being the plain
    mean of that task's clip embeddings; ties go to the task that sorts first. A row hits at k when
    its own task is among the k best. ``top{k}``: mean over tasks of the fraction of their rows that
    hit (``weighting="row"``: fraction of rows). Rows whose task has no clips are left out and
    counted in ``rows_without_clips``. ``chance@{k}`` = min(1, k / tasks with clips). Also
    ``n_rows_scored`` and ``n_tasks_with_clips``.
    """
    _check_weighting(weighting)
    ks = _check_ks(ks)
    r = _retrieval(z, z_tasks, clip_emb, clip_tasks)
    labels = np.asarray(z_tasks)[r.scored]
    out: dict[str, float] = {}
    for k in ks:
        out[f"top{k}"] = _task_mean((r.ranks < k).astype(np.float64), labels, weighting)
    for k in ks:
        out[f"chance@{k}"] = min(1.0, k / len(r.candidates))
    out["rows_without_clips"] = int((~r.scored).sum())
    out["n_rows_scored"] = int(r.scored.sum())
    out["n_tasks_with_clips"] = len(r.candidates)
    return out


# --------------------------------------------------------------------------- bootstrap

def bootstrap_ci(statistic: Statistic, tasks: Labels, *, n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float, float]:
    """(point estimate, low, high): percentile bootstrap over tasks.

    The point estimate is ``statistic(arange(N), tasks)``. Each of ``n_boot`` resamples draws T tasks
    (T = number of distinct tasks) with replacement from ``numpy.random.default_rng(seed)`` and keeps
    all rows of every drawn task; draw number t gets the new integer label t, so a task drawn twice
    appears as two tasks (same-task pairs never straddle the copies). ``statistic(index, new_labels)``
    gets the row indices into the original arrays (concatenated in draw order) and the new labels.
    Resamples where the statistic is NaN are dropped; the interval is the (1 − level)/2 and
    (1 + level)/2 quantiles (numpy's linear interpolation) of the rest, NaN if none is left.
    """
    labels = _labels(tasks)
    if int(n_boot) != n_boot or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be strictly between 0 and 1, got {level!r}")
    _, inv = _unique(labels)
    n_tasks = int(inv.max()) + 1
    order = np.argsort(inv, kind="stable")
    counts = np.bincount(inv, minlength=n_tasks)
    rows_of = np.split(order, np.cumsum(counts)[:-1])
    point = float(statistic(np.arange(len(labels)), labels))
    rng = np.random.default_rng(seed)
    values = np.empty(int(n_boot))
    for b in range(int(n_boot)):
        draw = rng.integers(0, n_tasks, size=n_tasks)
        index = np.concatenate([rows_of[t] for t in draw])
        new_labels = np.repeat(np.arange(n_tasks), counts[draw])
        values[b] = statistic(index, new_labels)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return point, math.nan, math.nan
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return point, float(low), float(high)


def _accepts_groups(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "groups" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def metric_with_ci(fn: Callable[..., float], emb: ArrayLike, tasks: Labels, *, n_boot: int = 1000,
                   seed: int = 0, level: float = 0.95, **kw: Any) -> tuple[float, float, float]:
    """``bootstrap_ci`` of a metric ``fn(emb, tasks, **kw) -> float``.

    When ``fn`` takes a ``groups`` keyword (every metric here does), each resample passes the rows'
    original task as their group, so two copies of one drawn task are not counted as a pair of
    different tasks (their rows are the same phrasings; comparing them is not a cross-task pair).
    """
    x = _embeddings(emb)
    labels = _labels(tasks, x.shape[0])
    _, codes = _unique(labels)
    pass_groups = _accepts_groups(fn)

    def statistic(index: np.ndarray, new_labels: np.ndarray) -> float:
        extra = {"groups": codes[index]} if pass_groups else {}
        return float(fn(x[index], new_labels, **extra, **kw))

    return bootstrap_ci(statistic, labels, n_boot=n_boot, seed=seed, level=level)


# --------------------------------------------------------------------------- task-pair views

def pairwise_task_cosine(z: ArrayLike, tasks: Labels) -> tuple[list[Any], np.ndarray]:
    """(task names in sorted order, matrix [T, T]): entry (a, b), a != b, is the mean cosine over the
    n_a * n_b row pairs between tasks a and b (symmetric); the diagonal is the mean over the pairs of
    distinct rows of the task, or 1.0 for a task with a single row."""
    b = _blocks(z, tasks, name="z")
    with np.errstate(invalid="ignore", divide="ignore"):
        matrix = b.sums / b.pairs
    single = np.flatnonzero(b.counts < 2)
    matrix[single, single] = 1.0
    matrix = (matrix + matrix.T) / 2.0  # exact symmetry despite floating-point rounding
    return b.names.tolist(), matrix


def most_confused_pairs(task_names: Sequence[Any], matrix: ArrayLike, n: int = 10) -> list[tuple[Any, Any, float]]:
    """The ``n`` off-diagonal task pairs (a, b), a before b in ``task_names``, with the highest
    cosine, in decreasing order (ties: earlier a, then earlier b). NaN entries are skipped."""
    m = np.asarray(matrix, dtype=np.float64)
    names = list(task_names)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] != len(names):
        raise ValueError(f"matrix must be square with one row per task name: {len(names)} names, shape {m.shape}")
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    i, j = np.triu_indices(len(names), 1)
    values = m[i, j]
    keep = ~np.isnan(values)
    i, j, values = i[keep], j[keep], values[keep]
    order = np.argsort(-values, kind="stable")[:n]  # triu order is (a, b) order: a stable tie-break
    return [(names[i[k]], names[j[k]], float(values[k])) for k in order]


# --------------------------------------------------------------------------- reports

def _row(metric: str, value_ci: tuple[float, float, float], n_tasks: int, n_rows: int) -> dict[str, Any]:
    value, low, high = value_ci
    return {"metric": metric, "value": float(value), "ci_low": float(low), "ci_high": float(high),
            "n_tasks": int(n_tasks), "n_rows": int(n_rows)}


def _text_part(key: str) -> Callable[..., float]:
    def fn(emb: ArrayLike, tasks: Labels, *, groups: Labels | None = None) -> float:
        return text_discriminability(emb, tasks, groups=groups)[key]

    return fn


def evaluate_model(z: ArrayLike, tasks: Labels, *, text_emb: ArrayLike | None = None,
                   clip_emb: ArrayLike | None = None, clip_tasks: Labels | None = None,
                   ks: Sequence[int] = (1, 5), n_boot: int = 1000, seed: int = 0,
                   level: float = 0.95) -> list[dict[str, Any]]:
    """Every metric of one model on one instruction set, with bootstrap CIs over tasks.

    Rows ``{"metric", "value", "ci_low", "ci_high", "n_tasks", "n_rows"}`` for ``goal_similarity``,
    ``separation_gap``, ``synonym_robustness``; with ``text_emb`` (one row per z row) also
    ``text_discriminability``, ``text_paraphrase_cosine``, ``text_gap``; with clips ``top{k}`` per k
    (bootstrap over the tasks of the z rows whose task has clips). ``n_tasks``/``n_rows``: the tasks
    and rows the value is computed from. Every bootstrap uses the same ``seed``, so metrics on the
    same rows are computed on the same task resamples.
    """
    x = _embeddings(z, "z")
    labels = _labels(tasks, x.shape[0], emb_name="z")
    names, inv = _unique(labels)
    counts = np.bincount(inv)
    n_tasks, n_rows = len(names), x.shape[0]
    multi = counts >= 2
    boot = {"n_boot": n_boot, "seed": seed, "level": level}
    rows = [
        _row("goal_similarity", metric_with_ci(goal_similarity, x, labels, **boot), n_tasks, n_rows),
        _row("separation_gap", metric_with_ci(separation_gap, x, labels, **boot), n_tasks, n_rows),
        _row("synonym_robustness", metric_with_ci(synonym_robustness, x, labels, **boot),
             int(multi.sum()), int(counts[multi].sum())),
    ]
    if text_emb is not None:
        t = _embeddings(text_emb, "text_emb")
        if t.shape[0] != n_rows:
            raise ValueError(f"text_emb has {t.shape[0]} rows but z has {n_rows}; give one text embedding per z row")
        rows += [_row("text_discriminability", metric_with_ci(_text_part("discriminability"), t, labels, **boot),
                      n_tasks, n_rows),
                 _row("text_paraphrase_cosine", metric_with_ci(_text_part("paraphrase_cosine"), t, labels, **boot),
                      int(multi.sum()), int(counts[multi].sum())),
                 _row("text_gap", metric_with_ci(_text_part("gap"), t, labels, **boot), n_tasks, n_rows)]
    if (clip_emb is None) != (clip_tasks is None):
        raise ValueError("give clip_emb and clip_tasks together (or neither)")
    if clip_emb is not None and clip_tasks is not None:
        ks = _check_ks(ks)
        r = _retrieval(x, labels, clip_emb, clip_tasks)
        scored_labels = labels[r.scored]
        n_scored_tasks = len(np.unique(scored_labels))
        for k in ks:
            hits = (r.ranks < k).astype(np.float64)
            if len(hits) == 0:
                rows.append(_row(f"top{k}", (math.nan, math.nan, math.nan), 0, 0))
                continue

            def statistic(index: np.ndarray, new_labels: np.ndarray, hits: np.ndarray = hits) -> float:
                return _task_mean(hits[index], new_labels)

            rows.append(_row(f"top{k}", bootstrap_ci(statistic, scored_labels, **boot), n_scored_tasks, len(hits)))
    return rows


def aggregate_over_seeds(rows_per_seed: Sequence[Sequence[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per metric (in first-seen order), over the seeds that report a non-NaN value: ``value`` = mean,
    ``seed_std`` = sample standard deviation (ddof = 1; 0.0 for one seed, NaN for none), ``n_seeds``;
    ``ci_low``/``ci_high`` = mean of the per-seed bootstrap bounds; ``n_tasks``/``n_rows`` from the
    first seed that has the metric."""
    by_metric: dict[str, list[dict[str, Any]]] = {}
    for seed_rows in rows_per_seed:
        for r in seed_rows:
            by_metric.setdefault(r["metric"], []).append(r)
    out = []
    for metric, rs in by_metric.items():
        values = np.array([float(r["value"]) for r in rs])
        values = values[~np.isnan(values)]
        n = len(values)
        mean = float(values.mean()) if n else math.nan
        std = float(values.std(ddof=1)) if n >= 2 else (0.0 if n == 1 else math.nan)

        def bound(key: str) -> float:
            b = np.array([float(r.get(key, math.nan)) for r in rs])
            b = b[~np.isnan(b)]
            return float(b.mean()) if len(b) else math.nan

        out.append({"metric": metric, "value": mean, "seed_std": std, "n_seeds": n,
                    "ci_low": bound("ci_low"), "ci_high": bound("ci_high"),
                    "n_tasks": rs[0].get("n_tasks"), "n_rows": rs[0].get("n_rows")})
    return out
