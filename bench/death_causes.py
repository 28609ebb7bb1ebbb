"""What ends a policy's episodes: a zombie, hunger, thirst or fatigue, under the oracle goal and the zero goal.

    python bench/death_causes.py --data-root <data_root> --tasks collect_coal,place_stone,collect_stone --worlds 12

Plays ``--worlds`` fresh worlds (seeds 10,000,000 + i; evaluation and DAgger worlds are random 31-bit
seeds) per task with the trained policy (``<data_root>/models/policy/best``), once with the task's
oracle goal (the mean of its held-out goal embeddings, λ ``--guidance``) and once with the zero goal
(λ 0), for up to ``--steps`` steps. At a death it reads the world: a zombie within 3 tiles (Manhattan)
counts as "zombie", else the vitals at 0 ("food", "drink", "energy", joined), else "other" (a
skeleton's arrow, lava). Prints successes, deaths, the mean step of death and the causes per task and
goal. docs/results.md (thirteenth session) has figures.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

import numpy as np


def _cause(env) -> str:
    player, inventory = env._player, env._player.inventory
    near = any(type(o).__name__ == "Zombie" and int(np.abs(np.asarray(o.pos) - np.asarray(player.pos)).sum()) <= 3
               for o in env._world.objects)
    if near:
        return "zombie"
    return "+".join(k for k in ("food", "drink", "energy") if inventory[k] == 0) or "other"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", required=True, type=Path)
    parser.add_argument("--tasks", default="collect_coal,place_stone,collect_stone")
    parser.add_argument("--worlds", type=int, default=12)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--guidance", type=float, default=1.0)
    args = parser.parse_args()

    import torch

    from goalcraft.evaluation.rollouts import CrafterGoalEnv, PolicyAgent
    from goalcraft.models.policy import load_policy
    from goalcraft.stages.agent import oracle_goals
    from goalcraft.storage import StoragePaths

    torch.set_num_threads(1)
    oracle = oracle_goals(StoragePaths(args.data_root))
    policy = load_policy(args.data_root / "models" / "policy" / "best")
    agent, env = PolicyAgent(policy, 1), CrafterGoalEnv((policy.config.frame_width, policy.config.frame_height))
    for task in args.tasks.split(","):
        if task not in oracle:
            raise SystemExit(f"no held-out goal clips for {task}")
        for name, goal, guidance in (("oracle", oracle[task], args.guidance),
                                     ("zero", np.zeros(policy.config.goal_dim, np.float32), 0.0)):
            causes: collections.Counter = collections.Counter()
            died_at, successes = [], 0
            for i in range(args.worlds):
                seed = 10_000_000 + i
                obs = env.reset(seed, task)
                agent.reset(0, goal, guidance, seed)
                for t in range(args.steps):
                    obs, unlocked, over = env.step(agent.act([0], [obs])[0])
                    if task in unlocked:
                        successes += 1
                        break
                    if over:
                        causes[_cause(env.env)] += 1
                        died_at.append(t)
                        break
            print(f"{task:18s} {name:6s} success {successes}/{args.worlds} deaths {len(died_at)} "
                  f"at step {np.mean(died_at) if died_at else float('nan'):.0f} {dict(causes)}", flush=True)


if __name__ == "__main__":
    main()
