"""REINFORCE fine-tuning of the goal predictor by agent success (the design's option B; docs/closed-loop.md §5).

The frozen goal predictor gives each task's instruction a goal ``z0``; a residual head
(:class:`~goalcraft.models.goal_head.ResidualGoalHead`, the identity at the start) maps it to the mean
``μ = head(z0)`` of a Gaussian over goals, ``N(μ, σ²I)``. Each iteration draws ``episodes_per_task / 2``
noise vectors ``ε`` per task and lets the frozen policy play both ``μ + σε`` and ``μ − σε`` on the
same world with the same action-sampling seed (mirrored sampling on common random numbers: the pair's
difference in reward is the goal's doing, not the world's). Each episode scores ``R = success −
off_target_penalty · (off-target achievements)``; the pair's mean is its baseline, so the
score-function estimate of ``∇_μ E[R]`` is ``mean((R₊ − R₋)/2 · ε) / σ``.

The step is the natural gradient of the Gaussian's mean (Fisher ``I/σ²``): every task's goal moves by
``lr · σ · mean((R₊ − R₋)/2 · ε)``, realised as the minimum-norm change of the head's weights that
moves each task's goal by exactly its own step. Why not Adam on the head, as first built: Adam's
per-weight normalisation turned noisy gradients into full steps of every weight, so one iteration moved
a goal by about its own exploration noise in a direction the noise chose, and the shared weights
carried one task's step into every other task's goal (docs/results.md, seventh session).

``σ`` is ``sigma`` times the root-mean-square coordinate of the tasks' ``z0`` (a relative scale: goal
spaces differ in norm). Seeded and resumable like the other trainers (RunFolder/train_loop, unit
``iteration``): iteration ``i``'s noise, world seeds and action-sampling seeds come from ``(seed, i)``;
``last/`` stores the head and the per-task moving-average rewards (momentum ``baseline_momentum``),
``best/`` the head with the best moving-average reward (``val_loss`` = −its mean): the head the
iteration's rollouts played, before that iteration's step. Agent success plays ``last/``
(goalcraft.stages.agent.RL_HEAD says why).

``focus_after = k``: from iteration ``k`` on, only the tasks whose episodes so far held both a success
and a failure are played, with the iteration's pairs shared among them (the same episodes an
iteration). A task the policy never or always completes gives no pair whose rewards differ, so its
episodes teach the step nothing; the goals of the tasks left out are held where they are (their step
is zero in the least squares).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from goalcraft.evaluation.rollouts import RolloutRequest, RolloutResult
from goalcraft.models.checkpoints import WEIGHTS_FILE, load_state_dict_file, strict_load
from goalcraft.models.goal_head import ResidualGoalHead, ResidualGoalHeadConfig, save_goal_head
from goalcraft.training.run_folder import Progress, RunFolder, Tick, train_loop, weights_writer

__all__ = ["RLTask", "RLTrainResult", "PredictorRLError", "reinforce_goal_head"]

STATE_FILE = "state.pt"


class PredictorRLError(ValueError):
    """The inputs or the resumable state do not fit the requested run."""


@dataclass(frozen=True, eq=False)
class RLTask:
    """A task to reinforce: its target achievement, instruction and the frozen predictor's goal ``[D]``."""

    task: str
    instruction: str
    goal: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class RLTrainResult:
    history: tuple[dict[str, float], ...]
    best_iteration: int
    best_reward: float
    best_dir: Path
    last_dir: Path
    iterations_completed: int
    resumed_from: int
    #: One row a task, over every iteration played (resumes included): ``task``, ``episodes``,
    #: ``successes``, ``pairs``, ``informative_pairs`` (pairs whose two rewards differed: the only
    #: ones a step learns from), ``last_success`` (the last iteration's success rate).
    per_task: tuple[dict[str, Any], ...] = ()


def _fingerprint(tasks: Sequence[RLTask]) -> str:
    h = hashlib.sha256()
    for t in tasks:
        h.update(f"{t.task}\0{t.instruction}\0".encode())
        h.update(np.ascontiguousarray(t.goal, np.float32).tobytes())
    return h.hexdigest()


def reinforce_goal_head(
    tasks: Sequence[RLTask],
    rollout: Callable[[list[RolloutRequest]], list[RolloutResult]],
    out_dir: Path,
    *,
    iterations: int,
    episodes_per_task: int,
    world_seeds: Sequence[int],
    max_steps: int,
    guidance: float = 3.0,
    sigma: float = 0.5,
    lr: float = 1.0,
    seed: int = 0,
    baseline_momentum: float = 0.9,
    off_target_penalty: float = 0.0,
    player: str = "",
    basis: np.ndarray | None = None,
    focus_after: int = 0,
    resume: bool | str = True,
    log: Callable[[dict[str, Any]], None] | None = None,
) -> RLTrainResult:
    """Fine-tune a residual goal head by REINFORCE (module docstring) for ``iterations`` iterations in total.
    ``episodes_per_task``: even (mirrored pairs). ``lr``: the natural-gradient step (a goal moves by
    ``lr · σ`` times the reward-weighted noise). ``player``: what ``rollout`` plays (the frozen policy's
    weights digest): part of the run's fingerprint, so a head tuned against one policy is never resumed
    against another. ``basis``: ``[D, k]`` orthonormal columns; the noise lives in their span (default:
    all of goal space), with the same expected squared norm as full-space noise. ``focus_after``: the
    iteration from which only the tasks with mixed outcomes so far are played (module docstring; 0: never)."""
    if not tasks or len({t.task for t in tasks}) != len(tasks):
        raise PredictorRLError("need at least one task, each once")
    goals = np.stack([np.asarray(t.goal, np.float32) for t in tasks])
    if goals.ndim != 2 or not np.isfinite(goals).all():
        raise PredictorRLError("every task needs a finite goal of the same width")
    if iterations < 1 or episodes_per_task < 1 or not world_seeds or max_steps < 1 or focus_after < 0:
        raise PredictorRLError("iterations, episodes_per_task, world_seeds and max_steps must be positive / non-empty, "
                               "focus_after >= 0")
    if episodes_per_task % 2:
        raise PredictorRLError(f"episodes_per_task must be even (mirrored pairs), got {episodes_per_task}")
    if not (sigma > 0 and lr > 0 and 0 <= baseline_momentum < 1 and off_target_penalty >= 0):
        raise PredictorRLError("need sigma > 0, lr > 0, 0 <= baseline_momentum < 1, off_target_penalty >= 0")
    n_tasks, dim = goals.shape
    pairs = episodes_per_task // 2
    config = ResidualGoalHeadConfig(goal_dim=int(dim))
    scale = float(np.sqrt(np.mean(goals.astype(np.float64) ** 2))) or 1.0
    if basis is not None:
        basis = np.asarray(basis, np.float64)
        if basis.ndim != 2 or basis.shape[0] != dim or not 1 <= basis.shape[1] <= dim \
                or not np.allclose(basis.T @ basis, np.eye(basis.shape[1]), atol=1e-6):
            raise PredictorRLError(f"basis must be [{dim}, k] with orthonormal columns")
    width = dim if basis is None else basis.shape[1]
    std = sigma * scale * math.sqrt(dim / width)  # E|noise|² does not depend on its width
    hyper = {"estimator": "mirrored pairs, natural-gradient step", "episodes_per_task": episodes_per_task,
             "world_seeds": [int(s) for s in world_seeds], "max_steps": max_steps, "guidance": float(guidance),
             "sigma": float(sigma), "lr": float(lr), "seed": int(seed), "baseline_momentum": float(baseline_momentum),
             "off_target_penalty": float(off_target_penalty), "tasks_sha256": _fingerprint(tasks)}
    if player:
        hyper["player_sha256"] = str(player)
    if focus_after:
        hyper["focus_after"] = int(focus_after)
    if basis is not None:
        hyper["basis_sha256"] = hashlib.sha256(np.ascontiguousarray(basis).tobytes()).hexdigest()
    folder = RunFolder(Path(out_dir), {"config": {"goal_dim": config.goal_dim}, **hyper}, resume=resume,
                       state_file=STATE_FILE, tensorboard=False, error=PredictorRLError,
                       end=iterations, unit="iteration")
    head = ResidualGoalHead(config)
    baselines = np.full(n_tasks, np.nan)
    # Per task: episodes, successes, pairs, informative pairs, the last iteration it played: its
    # successes and its episodes.
    counts = np.zeros((n_tasks, 6), np.int64)
    best: dict[str, Any] = {"state": {k: v.clone() for k, v in head.state_dict().items()}}
    state = folder.state
    if state is not None:
        weights = folder.last_dir / WEIGHTS_FILE
        strict_load(head, load_state_dict_file(weights), source=str(weights))
        baselines = np.asarray(state["baselines"], np.float64)
        if "task_counts" in state:  # runs saved before the counts were kept start them here
            counts[:] = np.asarray(state["task_counts"], np.int64)
        best["state"] = {k: v.clone() for k, v in state["best_model"].items()}
        folder.save_best(weights_writer(best["state"], ResidualGoalHead.uninitialized, config, save_goal_head))
    progress = Progress.from_state(state, "iteration")
    resumed_from = progress.position
    z0 = torch.from_numpy(goals)
    played: dict[str, Any] = {}
    # The head's input rows [z0, 1]: a weight change (dW, db) moves goal t by inputs[t] @ [dW^T; db].
    inputs = np.concatenate([goals.astype(np.float64), np.ones((n_tasks, 1))], 1)

    def active_tasks(i: int) -> np.ndarray:
        if focus_after and i >= focus_after:
            mixed = np.flatnonzero((counts[:, 1] > 0) & (counts[:, 1] < counts[:, 0]))
            if len(mixed):
                return mixed
        return np.arange(n_tasks)

    def one_iteration(i: int) -> dict[str, float]:
        rng = np.random.default_rng([int(seed), i])
        played["state"] = {k: v.detach().clone() for k, v in head.state_dict().items()}
        active = active_tasks(i)
        n_active = len(active)
        n_pairs = max(1, n_tasks * pairs // n_active)  # the iteration's pairs, shared among the active tasks
        with torch.no_grad():
            mu = head(z0).double().numpy()[active]  # [A, D]
        eps = rng.standard_normal((n_active, n_pairs, width))
        if basis is not None:
            eps = eps @ basis.T  # [A, P, D], unit variance along each basis direction
        z = (mu[:, None, None, :] + std * np.array([1.0, -1.0])[None, None, :, None] * eps[:, :, None, :])
        z = z.astype(np.float32)  # [A, P, 2, D]
        worlds = rng.choice(np.asarray(world_seeds), size=(n_active, n_pairs))
        sample_seeds = rng.integers(0, 2**31 - 1, size=(n_active, n_pairs))
        requests = [RolloutRequest(int(worlds[a, p]), tasks[t].task, max_steps, z[a, p, s], guidance,
                                   int(sample_seeds[a, p]))
                    for a, t in enumerate(active) for p in range(n_pairs) for s in range(2)]
        results = rollout(requests)
        rewards = np.array([float(r.success) - off_target_penalty * len(r.off_target) for r in results],
                           np.float64).reshape(n_active, n_pairs, 2)
        half_diff = (rewards[..., 0] - rewards[..., 1]) / 2  # [A, P]
        shift = np.zeros((n_tasks, dim))  # [T, D]: each goal's natural-gradient step; none for tasks left out
        shift[active] = lr * std * (half_diff[..., None] * eps).mean(1)
        delta = np.linalg.lstsq(inputs, shift, rcond=None)[0]  # [D + 1, D], the minimum-norm change
        with torch.no_grad():
            head.linear.weight += torch.from_numpy(delta[:dim].T).to(head.linear.weight.dtype)
            head.linear.bias += torch.from_numpy(delta[dim]).to(head.linear.bias.dtype)
        batch_mean = rewards.reshape(n_active, -1).mean(1)
        base = np.where(np.isnan(baselines[active]), batch_mean, baselines[active])
        baselines[active] = baseline_momentum * base + (1 - baseline_momentum) * batch_mean
        successes = np.array([r.success for r in results], float)
        won = successes.reshape(n_active, -1).sum(1).astype(np.int64)
        counts[active, :4] += np.stack([np.full(n_active, 2 * n_pairs), won, np.full(n_active, n_pairs),
                                        (half_diff != 0).sum(1)], 1)
        counts[active, 4:] = np.stack([won, np.full(n_active, 2 * n_pairs)], 1)
        with torch.no_grad():
            mu_shift = float((head(z0) - z0).norm(dim=1).mean() / scale)
        return {"train_loss": -float(rewards.mean()), "success": float(successes.mean()),
                "reward": float(rewards.mean()), "informative_pairs": float((half_diff != 0).mean()),
                "mu_shift": mu_shift, "tasks": float(n_active)}

    def train(start: int, stop: int, tick: Tick) -> dict[str, float]:
        records = []
        for i in range(start, stop):
            records.append(one_iteration(i))
            tick(i + 1 - start, stop - start, records[-1]["train_loss"])
        return {k: float(np.mean([r[k] for r in records])) for k in records[0]}

    def evaluate(_i: int) -> dict[str, float]:
        reward_ema = float(np.mean(baselines))
        return {"val_loss": -reward_ema, "reward_ema": reward_ema}

    def on_best(_record: dict[str, Any]) -> Callable[[Path], None]:
        # the head this iteration's rollouts measured, not the one its step then made
        best["state"] = played["state"]
        return weights_writer(best["state"], ResidualGoalHead.uninitialized, config, save_goal_head)

    try:
        train_loop(folder, progress, end=iterations, name="goal predictor rl", train=train, evaluate=evaluate,
                   fields=("success", "reward", "reward_ema", "informative_pairs", "mu_shift", "tasks"),
                   write_model=lambda d: save_goal_head(head, d), on_best=on_best,
                   trainer_state=lambda: {"baselines": baselines.tolist(), "best_model": best["state"],
                                          "task_counts": counts.tolist()}, log=log)
    finally:
        folder.close()
    return RLTrainResult(tuple(progress.history), progress.best_position, -progress.best_val_loss
                         if math.isfinite(progress.best_val_loss) else math.nan, folder.best_dir, folder.last_dir,
                         len(progress.history), resumed_from,
                         tuple({"task": t.task, "episodes": int(c[0]), "successes": int(c[1]), "pairs": int(c[2]),
                                "informative_pairs": int(c[3]),
                                "last_success": float(c[4] / c[5]) if c[5] else math.nan}
                               for t, c in zip(tasks, counts)))
