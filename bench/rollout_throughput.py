"""Rollout throughput: Crafter env steps/s with the policy in the loop vs raw env steps/s, same run.

    python bench/rollout_throughput.py                          # 2 env processes, 16 slots
    python bench/rollout_throughput.py --workers 0 --slots 8    # everything in this process

Three figures over the same episodes (world seeds, step budget; a target that never unlocks, so every
episode runs its full budget unless the player dies):

* raw, one env: one CrafterGoalEnv (64x40 frames) stepped with random actions in this process;
* raw, vectorised: the rollout runner (goalcraft.evaluation.rollouts.run_rollouts) with the same
  slots and env processes as the policy run, and an agent that returns random actions at once;
* policy: the runner with the goal-conditioned policy (the crafter config, random weights: speed does
  not depend on them) acting on every slot in one batched, guided (λ > 0: two heads) forward pass.

World generation (~0.13 s a world with compiled noise, ~1.3 s without: bench/worldgen.py) is done
before the clocks start: every process builds its worlds in a warm-up pass and the timed passes
restore them from its cache. The policy-in-the-loop ratio is reported against both raw figures. Then
policy training samples/s (behaviour cloning on synthetic 64x40 episodes with 512-d goals, one epoch,
goalcraft.training.policy.train_policy).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from goalcraft.evaluation.rollouts import CrafterGoalEnv, PolicyAgent, RolloutRequest, run_rollouts
from goalcraft.models.policy import POLICY_CONFIGS, GoalConditionedPolicy

NEVER = "collect_diamond"  # the runner stops an episode at its target: pick one a random agent never gets


class RandomAgent:
    """Random actions, no model: the runner's own cost."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def reset(self, slot, goal, guidance, seed) -> None:
        pass

    def act(self, slots, observations):
        return self.rng.integers(0, 17, len(slots)).tolist()


def _runner_rate(agent, requests, slots: int, workers: int, frame_size) -> tuple[float, int]:
    """Steps/s of the rollout runner over ``requests``, its env processes' worlds generated first."""
    timings: dict[str, float] = {}
    run_rollouts(partial(CrafterGoalEnv, frame_size), agent, requests, slots=slots, workers=workers, warm=True,
                 timings=timings)
    return timings["steps"] / timings["run_s"], int(timings["steps"])


def _raw_single(requests, frame_size) -> float:
    env = CrafterGoalEnv(frame_size)
    rng = np.random.default_rng(0)
    for r in requests:
        env.reset(r.world_seed, r.target)  # warm the cache
    steps, started = 0, time.perf_counter()
    for r in requests:
        env.reset(r.world_seed, r.target)
        for _ in range(r.max_steps):
            steps += 1
            if env.step(int(rng.integers(17)))[2]:
                break
    return steps / (time.perf_counter() - started)


def _training_rate(batch: int, samples: int) -> float:
    from goalcraft.training.policy import PolicyEpisode, train_policy

    config = POLICY_CONFIGS["crafter"]
    rng = np.random.default_rng(0)
    episodes = []
    per = 201
    for i in range(max(2, samples // (per - 1) + 1)):
        goals = rng.normal(size=(per, config.goal_dim)).astype(np.float32)
        episodes.append(PolicyEpisode(f"e{i}", rng.integers(0, 256, (per, config.frame_height, config.frame_width, 3),
                                                            dtype=np.uint8),
                                      rng.integers(0, 17, per - 1), goals))
    with tempfile.TemporaryDirectory() as tmp:
        result = train_policy(episodes, config, Path(tmp) / "run", epochs=1, batch_size=batch, val_fraction=0.1,
                              log=lambda r: None)
    return float(result.history[-1]["train_samples_per_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--slots", type=int, default=16)
    parser.add_argument("--episodes", type=int, default=32)
    parser.add_argument("--worlds", type=int, default=8, help="distinct world seeds the episodes cycle through")
    parser.add_argument("--steps", type=int, default=200, help="step budget of each episode")
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads here (default: 1 with workers)")
    parser.add_argument("--train-batch", type=int, default=256)
    parser.add_argument("--train-samples", type=int, default=8192)
    args = parser.parse_args()

    torch.set_num_threads(args.threads or (1 if args.workers > 0 else os.cpu_count() or 1))
    config = POLICY_CONFIGS["crafter"]
    frame_size = (config.frame_width, config.frame_height)
    goal = np.random.default_rng(1).normal(size=config.goal_dim).astype(np.float32)
    requests = [RolloutRequest(1000 + i % args.worlds, NEVER, args.steps, goal, args.guidance, seed=i)
                for i in range(args.episodes)]
    torch.manual_seed(0)
    policy = GoalConditionedPolicy(config).eval()

    raw_single = _raw_single(requests[:max(1, args.episodes // 4)], frame_size)
    raw_vec, raw_steps = _runner_rate(RandomAgent(), requests, args.slots, args.workers, frame_size)
    pol, pol_steps = _runner_rate(PolicyAgent(policy, args.slots), requests, args.slots, args.workers, frame_size)
    train = _training_rate(args.train_batch, args.train_samples)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, threads here "
          f"{torch.get_num_threads()}, load average (1 min) at the end {load:.2f}")
    print(f"setup: {args.episodes} episodes x {args.steps} steps on {args.worlds} worlds, {args.slots} slots, "
          f"{args.workers} env processes, 64x40 frames, policy {sum(p.numel() for p in policy.parameters()) / 1e6:.2f}M "
          f"parameters, guidance {args.guidance:g}")
    print(f"raw env, one env in this process:   {raw_single:8.1f} steps/s")
    print(f"raw env, vectorised runner:          {raw_vec:8.1f} steps/s ({raw_steps} steps)")
    print(f"policy in the loop, same runner:     {pol:8.1f} steps/s ({pol_steps} steps)")
    print(f"ratio policy / raw vectorised:       {pol / raw_vec:8.2f}")
    print(f"ratio policy / raw one env:          {pol / raw_single:8.2f}")
    print(f"policy training (batch {args.train_batch}):      {train:8.1f} samples/s")


if __name__ == "__main__":
    main()
