"""REINFORCE's step on a synthetic stand-in for the study's goals (docs/results.md, seventh session).

17 tasks whose predictor goals are alike (pairwise cosine ~0.8, 512-d: the study's shape), and two
made-up "agents" in place of the policy and Crafter:

- *goal-blind*: success is a coin flip (p 0.2) whatever the goal, redrawn for any change of the goal
  (a policy's play is chaotic in its goal). Every step is noise; a sound estimator leaves the goals
  about where they were.
- *goal-following*: task t succeeds with probability sigmoid(8 (cos(z, d_t) - 0.85)), d_t a hidden
  direction in the span of the task goals (a mix of the task's goal and two others'). The score is
  the success probability of the head's *mean* goal (what agent success plays), exactly, not sampled.

Compared, in the same run, on the same seeds:
- ``adam``: the first version's estimator (independent samples, a moving-average baseline, Adam at
  lr 1e-3 on the REINFORCE loss of the shared residual head), re-implemented here as the baseline;
- ``natural``: goalcraft.training.predictor_rl as shipped (mirrored pairs, natural-gradient step,
  minimum-norm head change), noise in all of goal space (``explore = "full"``);
- ``natural-goals``: the same, noise in the span of the task goals (``explore = "goals"``).

    python bench/rl_step_synthetic.py [--iterations 10] [--episodes 4] [--seeds 3]
"""

from __future__ import annotations

import argparse
import tempfile
import zlib
from pathlib import Path

import numpy as np
import torch

from goalcraft.evaluation.rollouts import RolloutResult
from goalcraft.models.goal_head import ResidualGoalHead, ResidualGoalHeadConfig, load_goal_head
from goalcraft.training.predictor_rl import RLTask, reinforce_goal_head

DIM, TASKS, SIGMA = 512, 17, 0.5


def make_goals(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    common = rng.normal(size=DIM)
    goals = np.stack([2 * common + rng.normal(size=DIM) for _ in range(TASKS)])
    goals /= np.linalg.norm(goals, axis=1, keepdims=True)
    # hidden targets: each task's goal pushed away from the common part, toward two other tasks' goals
    mix = goals - 0.8 * goals.mean(0) + 0.3 * (np.roll(goals, 1, 0) - np.roll(goals, 2, 0))
    return goals.astype(np.float32), mix / np.linalg.norm(mix, axis=1, keepdims=True)


def success_probability(z: np.ndarray, d: np.ndarray) -> np.ndarray:
    cos = (z * d).sum(-1) / (np.linalg.norm(z, axis=-1) * np.linalg.norm(d, axis=-1))
    return 1 / (1 + np.exp(-8 * (cos - 0.85)))


def agent(kind: str, targets: dict[str, np.ndarray]):
    def rollout(requests):
        out = []
        for r in requests:
            if kind == "blind":  # chaotic in the goal (any change of it replays the dice), unbiased
                draw = np.random.default_rng([r.world_seed, r.seed, zlib.crc32(r.goal.tobytes())]).random()
                win = bool(draw < 0.2)
            else:  # seeded by the request's world and action seed, as a policy's play is
                p = float(success_probability(r.goal.astype(np.float64), targets[r.target]))
                win = bool(np.random.default_rng([r.world_seed, r.seed]).random() < p)
            out.append(RolloutResult(r, win, 1, (), False))
        return out
    return rollout


def adam_baseline(goals: np.ndarray, rollout, iterations: int, episodes: int, seed: int) -> np.ndarray:
    """The first version's estimator, for comparison: returns the head's mean goals after training."""
    from goalcraft.evaluation.rollouts import RolloutRequest

    head = ResidualGoalHead(ResidualGoalHeadConfig(goal_dim=DIM))
    opt = torch.optim.Adam(head.parameters(), lr=1e-3)
    z0 = torch.from_numpy(goals)
    std = SIGMA * float(np.sqrt(np.mean(goals.astype(np.float64) ** 2)))
    baselines = np.full(TASKS, np.nan)
    for i in range(iterations):
        rng = np.random.default_rng([seed, i])
        mu = head(z0)
        z = mu.detach().numpy()[:, None, :] + std * rng.standard_normal((TASKS, episodes, DIM)).astype(np.float32)
        worlds = rng.integers(1, 9, size=(TASKS, episodes))
        seeds = rng.integers(0, 2**31 - 1, size=(TASKS, episodes))
        results = rollout([RolloutRequest(int(worlds[t, e]), f"task{t}", 10, z[t, e], 1.0, int(seeds[t, e]))
                           for t in range(TASKS) for e in range(episodes)])
        rewards = np.array([float(r.success) for r in results]).reshape(TASKS, episodes)
        base = np.where(np.isnan(baselines), rewards.mean(1), baselines)
        adv = torch.from_numpy((rewards - base[:, None]).astype(np.float32))
        log_prob = -((torch.from_numpy(z) - mu[:, None, :]) ** 2).sum(-1) / (2 * std**2)
        opt.zero_grad()
        (-(adv * log_prob).mean()).backward()
        opt.step()
        baselines[:] = 0.9 * base + 0.1 * rewards.mean(1)
    with torch.no_grad():
        return head(z0).numpy()


def natural(goals: np.ndarray, rollout, iterations: int, episodes: int, seed: int, basis) -> np.ndarray:
    tasks = [RLTask(f"task{t}", f"do {t}", goals[t]) for t in range(TASKS)]
    with tempfile.TemporaryDirectory() as tmp:
        result = reinforce_goal_head(tasks, rollout, Path(tmp) / "rl", iterations=iterations,
                                     episodes_per_task=episodes, world_seeds=list(range(1, 9)), max_steps=10,
                                     sigma=SIGMA, seed=seed, basis=basis, log=lambda r: None)
        with torch.no_grad():
            return load_goal_head(result.last_dir)(torch.from_numpy(goals)).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--episodes", type=int, default=4)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    rows: dict[tuple[str, str], list[tuple[float, float, float, float]]] = {}
    for s in range(args.seeds):
        goals, hidden = make_goals(s)
        targets = {f"task{t}": hidden[t] for t in range(TASKS)}
        basis = np.linalg.svd(goals.T.astype(np.float64), full_matrices=False)[0]
        scale = float(np.sqrt(np.mean(goals.astype(np.float64) ** 2)))
        for kind in ("blind", "following"):
            rollout = agent(kind, targets)
            runs = {"adam": lambda: adam_baseline(goals, rollout, args.iterations, args.episodes, s),
                    "natural": lambda: natural(goals, rollout, args.iterations, args.episodes, s, None),
                    "natural-goals": lambda: natural(goals, rollout, args.iterations, args.episodes, s, basis)}
            for name, run in runs.items():
                mu = run().astype(np.float64)
                cos = (mu * goals).sum(1) / (np.linalg.norm(mu, axis=1) * np.linalg.norm(goals, axis=1))
                shift = float(np.linalg.norm(mu - goals, axis=1).mean() / scale)
                p0 = float(success_probability(goals.astype(np.float64), hidden).mean())
                p1 = float(success_probability(mu, hidden).mean())
                rows.setdefault((kind, name), []).append((shift, float(cos.mean()), float(cos.min()), p1 - p0))
                print(f"seed {s} {kind:9s} {name:13s} mu_shift {shift:6.2f}  cos(mu, z0) mean {cos.mean():.3f} "
                      f"min {cos.min():.3f}  P(success | mean) {p0:.3f} -> {p1:.3f}", flush=True)
    print(f"\nmeans over {args.seeds} seeds ({args.iterations} iterations x {args.episodes} episodes per task, "
          f"sigma {SIGMA}; one exploration sample alone: cosine {1 / np.sqrt(1 + SIGMA**2):.3f}):")
    print("| agent | estimator | mu_shift | cos(mu, z0) mean | min | P(success of the mean) change |")
    print("|---|---|---|---|---|---|")
    for (kind, name), vals in rows.items():
        m = np.mean(vals, 0)
        print(f"| {kind} | {name} | {m[0]:.2f} | {m[1]:.3f} | {m[2]:.3f} | {m[3]:+.3f} |")


if __name__ == "__main__":
    main()
