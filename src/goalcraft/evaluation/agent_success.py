"""Agent success: the goal models judged by the behaviour they produce (docs/closed-loop.md).

For every task of an instruction set that is an achievement of the environment, every goal source
gives the goal-conditioned policy a goal and the policy plays ``episodes`` episodes on world seeds no
trajectory of training used (the same seeds for every source and guidance scale: paired
comparisons), for each guidance scale λ. Success: the target achievement unlocked within
``max_steps`` steps; also steps to success and off-target achievements (anything else unlocked on
the way). Goal sources (:class:`GoalSource`):

* ``oracle_visual``: the mean goal embedding of the task's held-out goal clips (STEVE-1's visual prompt);
* ``mineclip_prior_sampled`` / ``mineclip_prior_deterministic``: the goal space's text embedding
  through the prior, a fresh draw per episode (as STEVE-1's agent draws once per episode) / ``z = 0``;
* ``goal_predictor``: the goal predictor's ``z_goal`` for the instruction;
* ``goal_predictor_rl``: the same through the residual head REINFORCE fine-tuned (after §5);
* ``unconditional``: the zero goal (the floor; guidance does not change it, so λ = 0 only);
* ``scripted``: the corpus's scripted agent pursuing the target (the ceiling; no goal, no λ).

Rates come with Wilson 95% intervals (:func:`wilson`); paired differences between two sources with a
bootstrap interval over the (task, world seed) pairs (:func:`paired_difference`; a run reports those
of :data:`COMPARISONS`, :func:`paired_differences`).
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from goalcraft.config import AGENT_GOAL_SOURCES
from goalcraft.evaluation.rollouts import RolloutRequest, RolloutResult

__all__ = [
    "AGENT_SUCCESS_SCHEMA",
    "COMPARISONS",
    "GUIDANCE_SWEEP",
    "GoalSource",
    "agent_success_table",
    "animated_episodes",
    "oracle_beats_floor",
    "paired_difference",
    "paired_differences",
    "play_plan",
    "rollout_plan",
    "summarize",
    "wilson",
    "world_seeds",
]

#: λ of classifier-free guidance swept by default (STEVE-1 acts at 6.0 for text goals, 7.0 for visual).
GUIDANCE_SWEEP = (0.0, 1.0, 3.0, 6.0)
ORACLE, PRIOR_SAMPLED, PRIOR_DETERMINISTIC, PREDICTOR, UNCONDITIONAL, SCRIPTED, PREDICTOR_RL = AGENT_GOAL_SOURCES

#: The paired differences a run reports, ``(a, b)``: success of ``a`` − ``b`` on the same (task, world)
#: pairs, at each λ ``a`` plays (the unconditional floor plays at λ 0 only, so it is compared there).
COMPARISONS = (
    (PREDICTOR, PRIOR_SAMPLED),  # the goal model against MineCLIP text + prior, as STEVE-1 samples it
    (PREDICTOR, PRIOR_DETERMINISTIC),
    (PREDICTOR_RL, PREDICTOR),  # what REINFORCE added
    (ORACLE, UNCONDITIONAL),  # does the policy follow goals at all
    # The room a goal model has: what the visual prompt wins beyond the predictor's goal. A small one
    # bounds what any text-side gain (REINFORCE's included) can show with this policy.
    (ORACLE, PREDICTOR),
)

AGENT_SUCCESS_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("timestamp", pa.string()), ("model", pa.string()), ("task", pa.string()),
    ("instruction", pa.string()), ("guidance", pa.float64()), ("world_seed", pa.int64()), ("episode", pa.int32()),
    ("success", pa.bool_()), ("steps", pa.int32()), ("achievements", pa.list_(pa.string())),
    ("off_target", pa.int32()), ("died", pa.bool_()), ("max_steps", pa.int32()), ("policy", pa.string()),
])


@dataclass(frozen=True)
class GoalSource:
    """A way to give the policy its goal. ``goal(task, instruction, episode)`` → ``[D]`` float32;
    ``goal`` None: the source plays without the policy (the scripted ceiling). ``guided``: swept over
    the guidance scales (False: λ = 0 only)."""

    name: str
    goal: Callable[[str, str, int], np.ndarray] | None
    guided: bool = True
    tasks: frozenset[str] | None = None  # the tasks it has goals for (None: every task)


def world_seeds(n: int, seed: int, exclude: set[int] | frozenset[int] = frozenset(), *, stream: int = 0x5EED) -> list[int]:
    """``n`` distinct world seeds in [0, 2³¹ − 1), drawn from ``seed`` (and ``stream``: another stream
    gives other seeds), none of them in ``exclude`` (the seeds of every training trajectory)."""
    rng = np.random.default_rng([int(seed), int(stream)])
    out: list[int] = []
    while len(out) < n:
        s = int(rng.integers(0, 2**31 - 1))
        if s not in exclude and s not in out:
            out.append(s)
    return out


def wilson(successes: int, n: int, z: float = 1.959964) -> tuple[float, float, float]:
    """(rate, low, high): the Wilson score interval (95% by default); (nan, nan, nan) for n = 0."""
    if n <= 0:
        return math.nan, math.nan, math.nan
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return p, max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class _Planned:
    model: str
    task: str
    instruction: str
    guidance: float | None
    episode: int
    request: RolloutRequest


def rollout_plan(tasks: Sequence[tuple[str, str]], sources: Sequence[GoalSource], seeds: Sequence[int], *,
                 guidance: Sequence[float], max_steps: int, sample_seed: int = 0) -> list[_Planned]:
    """Every episode to play: per source, task, guidance scale (one ``None`` for the scripted source,
    λ = 0 for unguided sources) and world seed. Each policy episode samples its actions from a seed of
    its own (``sample_seed``, source, task, λ, episode), so the episodes do not depend on each other."""
    plan = []
    for s_index, source in enumerate(sources):
        scales: list[float | None] = [None] if source.goal is None else (list(guidance) if source.guided else [0.0])
        for t_index, (task, instruction) in enumerate(tasks):
            if source.tasks is not None and task not in source.tasks:
                continue
            for g_index, lam in enumerate(scales):
                for episode, world in enumerate(seeds):
                    goal = None if source.goal is None else np.asarray(source.goal(task, instruction, episode), np.float32)
                    key = np.random.SeedSequence([int(sample_seed), s_index, t_index, g_index, episode])
                    plan.append(_Planned(source.name, task, instruction, lam, episode, RolloutRequest(
                        int(world), task, int(max_steps), goal, float(lam or 0.0), int(key.generate_state(1)[0]))))
    return plan


def animated_episodes(plan: Sequence[_Planned]) -> list[int]:
    """The indices in ``plan`` of the episodes a report animates: per (source, task) its first world
    seed (episode 0) at the largest λ the source plays (unguided sources λ = 0, the scripted none)."""
    chosen: dict[tuple[str, str], int] = {}
    for i, p in enumerate(plan):
        key = (p.model, p.task)
        if p.episode == 0 and (key not in chosen or (p.guidance or 0.0) > (plan[chosen[key]].guidance or 0.0)):
            chosen[key] = i
    return sorted(chosen.values())


def play_plan(policy: Any, plan: Sequence[_Planned], *, slots: int, workers: int, device: str = "cpu",
              progress: Callable[[int, int], None] | None = None) -> tuple[list[RolloutResult], list[Any]]:
    """Play every episode of ``plan`` with the goal-conditioned ``policy`` in Crafter (at the policy's
    frame size): the results in plan order, and the report's animations
    (:func:`animated_episodes`, recorded as they are played: a replay could round differently in
    another batch; only every stride-th observation is kept)."""
    from functools import partial

    from goalcraft.evaluation.agent_report import gif_stride, rollout_animation
    from goalcraft.evaluation.rollouts import CrafterGoalEnv, PolicyAgent, run_rollouts

    animated = animated_episodes(plan)
    stride = gif_stride(max((p.request.max_steps for p in plan), default=1))
    frame_size = (policy.config.frame_width, policy.config.frame_height)
    results = run_rollouts(partial(CrafterGoalEnv, frame_size), PolicyAgent(policy, slots, device=device),
                           [p.request for p in plan], slots=slots, workers=workers,
                           record_frames=set(animated).__contains__, frame_stride=stride, progress=progress)
    animations = [rollout_animation(plan[i].model, plan[i].guidance, plan[i].task, results[i], stride)
                  for i in animated]
    return results, animations


def agent_success_table(plan: Sequence[_Planned], results: Sequence[RolloutResult], *, run_id: str | None = None,
                        policy: str = "") -> pa.Table:
    """One row per episode (:data:`AGENT_SUCCESS_SCHEMA`)."""
    run_id = run_id or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    rows = [{"run_id": run_id, "timestamp": stamp, "model": p.model, "task": p.task, "instruction": p.instruction,
             "guidance": p.guidance, "world_seed": r.request.world_seed, "episode": p.episode, "success": r.success,
             "steps": r.steps, "achievements": list(r.achievements), "off_target": len(r.off_target), "died": r.died,
             "max_steps": r.request.max_steps, "policy": policy}
            for p, r in zip(plan, results, strict=True)]
    return pa.Table.from_pylist(rows, schema=AGENT_SUCCESS_SCHEMA)


def _groups(rows: list[dict[str, Any]], keys: Sequence[str]) -> dict[tuple, list[dict[str, Any]]]:
    out: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(tuple(r[k] for k in keys), []).append(r)
    return out


def summarize(table: pa.Table) -> list[dict[str, Any]]:
    """Success per (model, guidance, task) and pooled over tasks (``task`` = ``"(all)"``): episodes,
    successes, rate with its Wilson 95% interval, mean steps to success, mean off-target achievements."""
    rows = table.to_pylist()
    out = []
    for pooled in (False, True):
        keys = ("model", "guidance") if pooled else ("model", "guidance", "task")
        for key, group in _groups(rows, keys).items():
            k = sum(r["success"] for r in group)
            rate, low, high = wilson(k, len(group))
            wins = [r["steps"] for r in group if r["success"]]
            out.append({"model": key[0], "guidance": key[1], "task": "(all)" if pooled else key[2],
                        "episodes": len(group), "successes": k, "success_rate": rate, "ci_low": low, "ci_high": high,
                        "mean_steps_to_success": float(np.mean(wins)) if wins else None,
                        "mean_off_target": float(np.mean([r["off_target"] for r in group]))})
    return out


def oracle_beats_floor(summary: list[dict]) -> dict:
    """Tasks where the oracle visual goal's success CI lies above the unconditional policy's (best λ)."""
    by = {(r["model"], r["guidance"], r["task"]): r for r in summary if r["task"] != "(all)"}
    floor = {t: r for (m, _g, t), r in by.items() if m == UNCONDITIONAL}
    above = []
    for task, f in floor.items():
        best = max((r for (m, _g, t), r in by.items() if m == ORACLE and t == task),
                   key=lambda r: r["success_rate"], default=None)
        if best is not None and best["ci_low"] > f["ci_high"]:
            above.append(task)
    return {"tasks": sorted(above), "count": len(above), "of": len(floor)}


def paired_difference(table: pa.Table, a: tuple[str, float | None], b: tuple[str, float | None], *,
                      n_boot: int = 2000, seed: int = 0) -> list[dict[str, Any]]:
    """Success of ``a`` minus ``b`` (each a (model, guidance)) on the same (task, world seed) pairs,
    per task and pooled (``"(all)"``), with a 95% bootstrap interval over the pairs."""
    rows = table.to_pylist()

    def outcomes(model: str, guidance: float | None) -> dict[tuple[str, int], bool]:
        return {(r["task"], r["world_seed"]): r["success"] for r in rows
                if r["model"] == model and r["guidance"] == guidance}

    ya, yb = outcomes(*a), outcomes(*b)
    pairs = sorted(set(ya) & set(yb))
    out = []
    rng = np.random.default_rng(seed)
    for task in [None, *sorted({t for t, _ in pairs})]:
        chosen = [p for p in pairs if task is None or p[0] == task]
        if not chosen:
            continue
        d = np.array([float(ya[p]) - float(yb[p]) for p in chosen])
        boots = d[rng.integers(0, len(d), (n_boot, len(d)))].mean(1)
        out.append({"a": f"{a[0]}@{a[1]}", "b": f"{b[0]}@{b[1]}", "task": task or "(all)", "pairs": len(d),
                    "difference": float(d.mean()), "ci_low": float(np.percentile(boots, 2.5)),
                    "ci_high": float(np.percentile(boots, 97.5))})
    return out


def paired_differences(table: pa.Table, comparisons: Sequence[tuple[str, str]] = COMPARISONS, *,
                       n_boot: int = 2000, seed: int = 0) -> list[dict[str, Any]]:
    """:func:`paired_difference` rows of each comparison ``(a, b)`` at each λ ``a`` plays (``b`` at the
    same λ, the unconditional floor at λ 0), for the pairs of sources both in ``table``."""
    played = {(m, g) for m, g in zip(table.column("model").to_pylist(), table.column("guidance").to_pylist())}
    out: list[dict[str, Any]] = []
    for a, b in comparisons:
        for lam in sorted(g for m, g in played if m == a and g is not None):
            b_lam = 0.0 if b == UNCONDITIONAL else lam
            if (b, b_lam) in played:
                out += paired_difference(table, (a, lam), (b, b_lam), n_boot=n_boot, seed=seed)
    return out


# -- a plan as data: planned here, played anywhere ---------------------------------------------------
#
# An agent-success run is fully set by its plan (every episode's world, target, budget, goal, λ and
# action-sampling seed), so the plan can be written out, played on another machine (more env
# processes, a GPU for the policy) and its outcomes read back into the same table. Both files are
# plain JSON and a NumPy array read with allow_pickle=False: they may come from elsewhere.

PLAN_FILE = "plan.json"
PLAN_GOALS_FILE = "plan_goals.npy"
PLAN_FORMAT = "goalcraft.agent_plan/1"
_PLAN_FIELDS = ("model", "task", "instruction", "guidance", "episode", "world_seed", "target", "max_steps",
                "lambda", "seed", "goal")


class PlanError(ValueError):
    """A plan or results file that cannot be read (one line: which file, what is wrong)."""


def save_plan(plan: Sequence[_Planned], folder: str | Path, *, meta: dict[str, Any] | None = None) -> Path:
    """Write ``plan`` to ``folder`` (``plan.json`` + ``plan_goals.npy``: each distinct goal once, rows
    refer to it by index, -1 for none); ``meta`` is kept beside it (e.g. the policy's digest)."""
    from goalcraft.storage import atomic_path, write_json_atomic

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    goals: list[np.ndarray] = []
    index: dict[bytes, int] = {}
    rows = []
    for p in plan:
        r = p.request
        g = -1
        if r.goal is not None:
            goal = np.ascontiguousarray(r.goal, np.float32)
            g = index.setdefault(goal.tobytes(), len(goals))
            if g == len(goals):
                goals.append(goal)
        rows.append([p.model, p.task, p.instruction, p.guidance, p.episode, r.world_seed, r.target, r.max_steps,
                     r.guidance, r.seed, g])
    matrix = np.stack(goals) if goals else np.zeros((0, 0), np.float32)
    with atomic_path(folder / PLAN_GOALS_FILE) as tmp, open(tmp, "wb") as fh:
        np.save(fh, matrix, allow_pickle=False)
    write_json_atomic({"format": PLAN_FORMAT, "fields": list(_PLAN_FIELDS), "rows": rows, "meta": meta or {}},
                      folder / PLAN_FILE)
    return folder


def load_plan(folder: str | Path) -> tuple[list[_Planned], dict[str, Any]]:
    """The plan and its ``meta`` written by :func:`save_plan` (:class:`PlanError` if malformed)."""
    import json

    folder = Path(folder)
    try:
        doc = json.loads((folder / PLAN_FILE).read_text(encoding="utf-8"))
        goals = np.load(folder / PLAN_GOALS_FILE, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise PlanError(f"{folder}: cannot read the plan ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != PLAN_FORMAT or doc.get("fields") != list(_PLAN_FIELDS):
        raise PlanError(f"{folder / PLAN_FILE}: not a {PLAN_FORMAT} plan")
    plan = []
    for i, row in enumerate(doc.get("rows") or []):
        try:
            model, task, instruction, lam, episode, world, target, max_steps, guidance, seed, g = row
            goal = None if int(g) < 0 else np.asarray(goals[int(g)], np.float32)
            plan.append(_Planned(str(model), str(task), str(instruction), None if lam is None else float(lam),
                                 int(episode), RolloutRequest(int(world), str(target), int(max_steps), goal,
                                                              float(guidance), None if seed is None else int(seed))))
        except (TypeError, ValueError, IndexError) as exc:
            raise PlanError(f"{folder / PLAN_FILE}: row {i} is malformed ({exc})") from None
    return plan, dict(doc.get("meta") or {})


def save_results(results: Sequence[RolloutResult], path: str | Path) -> Path:
    """The outcomes of a played plan, one JSON line per episode in plan order (no frames)."""
    import json

    from goalcraft.storage import atomic_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for r in results:
            fh.write(json.dumps({"world_seed": r.request.world_seed, "target": r.request.target,
                                 "success": bool(r.success), "steps": int(r.steps),
                                 "achievements": list(r.achievements), "died": bool(r.died)}) + "\n")
    return path


def load_results(plan: Sequence[_Planned], path: str | Path) -> list[RolloutResult]:
    """:func:`save_results`' file read back against its plan: one line per planned episode, each with
    the plan's world and target (:class:`PlanError` otherwise: results of another plan)."""
    import json

    path = Path(path)
    try:
        lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except OSError as exc:
        raise PlanError(f"{path}: cannot read the results ({exc})") from None
    if len(lines) != len(plan):
        raise PlanError(f"{path}: {len(lines)} results for a plan of {len(plan)} episodes")
    out = []
    for i, (p, line) in enumerate(zip(plan, lines)):
        try:
            r = json.loads(line)
            if int(r["world_seed"]) != p.request.world_seed or r["target"] != p.request.target:
                raise ValueError("world or target differs from the plan's")
            out.append(RolloutResult(p.request, bool(r["success"]), int(r["steps"]),
                                     tuple(str(a) for a in r["achievements"]), bool(r["died"])))
        except (TypeError, ValueError, KeyError) as exc:
            raise PlanError(f"{path}: line {i + 1} is malformed ({exc})") from None
    return out
