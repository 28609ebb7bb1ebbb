"""What a player does when a zombie is next to it: the corpus's scripted players against a trained policy.

    python bench/zombie_response.py --corpus <data_root>/demo_corpus --policy <data_root>/models/policy/best

Replays the corpus's trajectories (the videos and every ``--trial-stride``-th trial) with the world state
and counts the recorded actions on steps where the player faces a zombie, or has one beside it without
facing it; then plays ``--worlds`` fresh worlds (seeds 20,000,000 + i, none a training or evaluation
world) with the policy and the zero goal for up to ``--steps`` steps, counting its sampled actions in the
same situations, and how many episodes end in death. docs/results.md ("Why the policy dies") has figures.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

import numpy as np


def _situation(env) -> str | None:
    from crafter import objects as co

    player = env._player
    if isinstance(env._world[player.pos + player.facing][1], co.Zombie):
        return "facing"
    if any(isinstance(o, co.Zombie) and int(np.abs(o.pos - player.pos).sum()) == 1 for o in env._world.objects):
        return "beside"
    return None


def _print(who: str, counts: dict[str, collections.Counter]) -> None:
    from goalcraft.formats import CRAFTER_ACTIONS

    for situation in ("facing", "beside"):
        c = counts[situation]
        total = sum(c.values())
        shares = {CRAFTER_ACTIONS[a]: round(v / total, 2) for a, v in c.most_common(5)} if total else {}
        print(f"{who}: zombie {situation}: {total} steps, actions {shares}")


def data_response(corpus: Path, trial_stride: int) -> None:
    from goalcraft.crafter.deterministic_env import make_env
    from goalcraft.data.trajectories import scan_trajectories

    records, _ = scan_trajectories(corpus)
    chosen = [r for r in records if r.kind != "trial"] + [r for r in records if r.kind == "trial"][::trial_stride]
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    steps = 0
    for record in chosen:
        env = make_env(int(record.env_seed), (64, 40), tile=4)
        env.reset()
        for action in record.actions.tolist():
            situation = _situation(env)
            if situation:
                counts[situation][action] += 1
            env.step(action)
            steps += 1
    print(f"data: {len(chosen)} trajectories, {steps} steps")
    _print("data", counts)


def policy_response(policy_dir: Path, worlds: int, steps: int) -> None:
    import torch

    from goalcraft.evaluation.rollouts import CrafterGoalEnv
    from goalcraft.models.policy import FrameStack, load_policy

    policy = load_policy(policy_dir)
    size = (policy.config.frame_width, policy.config.frame_height)
    envs = [CrafterGoalEnv(size) for _ in range(worlds)]
    stack = FrameStack(policy.config, worlds)
    for i, env in enumerate(envs):
        stack.reset(i, env.reset(20_000_000 + i, "collect_wood"))
    alive = np.ones(worlds, bool)
    rng = np.random.default_rng(0)
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for _ in range(steps):
        idx = np.flatnonzero(alive)
        if not len(idx):
            break
        with torch.no_grad():
            logits = policy(stack.tensor(idx), torch.zeros(len(idx), policy.config.goal_dim)).numpy()
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        for j, i in enumerate(idx):
            action = int(rng.choice(p.shape[1], p=p[j]))
            situation = _situation(envs[i].env)
            if situation:
                counts[situation][action] += 1
            obs, _unlocked, done = envs[i].step(action)
            stack.push(np.asarray(obs)[None], [i])
            alive[i] = not done
    print(f"policy: {worlds} worlds, {int((~alive).sum())} ended in death within {steps} steps")
    _print("policy", counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--policy", type=Path, required=True)
    parser.add_argument("--trial-stride", type=int, default=10)
    parser.add_argument("--worlds", type=int, default=40)
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    data_response(args.corpus, args.trial_stride)
    policy_response(args.policy, args.worlds, args.steps)


if __name__ == "__main__":
    main()
