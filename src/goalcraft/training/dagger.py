"""DAgger for the goal-conditioned policy: the policy plays, the scripted player labels (docs/closed-loop.md).

Behaviour cloning only sees the states the scripted players reached; once the cloned policy strays
(it fights a zombie it faces 14% of the time where the players do 94%, bench/zombie_response.py) it
meets states no trajectory shows, and errors compound (Ross et al., 2011). DAgger rolls the current
policy out and asks the expert, at every state the policy reached, what it would have done; the
policy is then trained on the recorded trajectories plus these labelled ones.

* The expert is the corpus's scripted player for the episode's target (:func:`make_agent`), without
  its random share of actions and its warm-up wander (:class:`~goalcraft.evaluation.rollouts.CrafterGoalEnv`
  with ``expert_labels``). It reads the world state; the policy sees its frames only.
* The goal of a DAgger episode is a goal clip of its target from the training split (the kind of
  goal agent success gives the policy: a success clip of the task; never a held-out one), held for
  the whole episode: every step's label serves that goal.
* World seeds: none that agent success plays, none a trajectory used (the caller excludes them).

A labelled episode is a :class:`~goalcraft.training.policy.PolicyEpisode` whose goal rows all hold
its goal, so any relabelling gives it that goal; ``train_policy`` trains on it like any other.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from goalcraft.evaluation.rollouts import CrafterGoalEnv, PolicyAgent, RolloutPool, RolloutRequest, RolloutResult
from goalcraft.formats import CLIP_FRAMES
from goalcraft.storage import atomic_path
from goalcraft.training.policy import PolicyEpisode

__all__ = ["DaggerRound", "dagger_episodes", "dagger_requests", "focus_weights", "read_labelled", "run_dagger_round",
           "write_labelled"]


@dataclass(frozen=True)
class DaggerRound:
    """One round's episodes and what the policy did in them: ``success_rate`` (the target unlocked),
    ``agreement`` (the share of steps where the policy's sampled action was the expert's),
    ``died``, ``dropped`` (episodes shorter than a 16-frame clip, left out), ``steps`` labelled and
    ``success_by_target`` (each target's success rate, over all its episodes: the next round's focus)."""

    episodes: tuple[PolicyEpisode, ...]
    success_rate: float
    agreement: float
    died: float
    dropped: int
    steps: int
    success_by_target: Mapping[str, float]


def dagger_requests(goal_bank: Mapping[str, np.ndarray], world_seeds: Sequence[int], *, max_steps: int,
                    guidance: float, seed: int, weights: Mapping[str, float] | None = None) -> list[RolloutRequest]:
    """One episode per world seed, its target cycling through ``goal_bank``'s tasks (sorted) and its
    goal a random row of that task's ``[n, D]`` training goal embeddings, all drawn from ``seed``.
    With ``weights`` (task → share, :func:`focus_weights`) the episodes are allotted to the tasks in
    proportion to them (largest remainders) in a seeded order, instead of cycling."""
    tasks = sorted(t for t, g in goal_bank.items() if len(g))
    if not tasks:
        raise ValueError("the goal bank has no task with a goal embedding")
    rng = np.random.default_rng([int(seed), 0xDA66E2])
    targets = [tasks[i % len(tasks)] for i in range(len(world_seeds))]
    if weights is not None:
        targets = _allot(tasks, weights, len(world_seeds), np.random.default_rng([int(seed), 0xDA66E2, 1]))
    out = []
    for world, task in zip(world_seeds, targets):
        goals = np.asarray(goal_bank[task], np.float32)
        out.append(RolloutRequest(int(world), task, int(max_steps), goals[int(rng.integers(len(goals)))],
                                  float(guidance), seed=int(rng.integers(2**31 - 1))))
    return out


def _allot(tasks: Sequence[str], weights: Mapping[str, float], n: int, rng: np.random.Generator) -> list[str]:
    w = np.asarray([max(float(weights.get(t, 0.0)), 0.0) for t in tasks])
    if not w.sum() > 0:
        raise ValueError("the DAgger weights give no task of the goal bank a positive share")
    quota = n * w / w.sum()
    counts = np.floor(quota).astype(int)
    # the remainder to the largest fractional parts (ties: the task order)
    for i in np.argsort(-(quota - counts), kind="stable")[: n - int(counts.sum())]:
        counts[i] += 1
    return [tasks[i] for i in rng.permutation(np.repeat(np.arange(len(tasks)), counts))]


def focus_weights(tasks: Sequence[str], success_by_target: Mapping[str, float], focus: float) -> dict[str, float]:
    """Each task's share of a DAgger round: ``1 - focus`` spread evenly, ``focus`` in proportion to the
    task's failure rate in the last round (a task the last round did not play counts as failing);
    evenly when nothing failed. Where the policy already succeeds, its own play adds little; where it
    fails, the labelled states are the ones it is missing (docs/closed-loop.md)."""
    if not 0.0 <= focus <= 1.0:
        raise ValueError(f"focus must lie in [0, 1], got {focus}")
    tasks = list(tasks)
    fail = np.asarray([1.0 - float(success_by_target.get(t, 0.0)) for t in tasks]).clip(0.0, 1.0)
    even = np.full(len(tasks), 1.0 / len(tasks))
    share = even if fail.sum() == 0 else (1.0 - focus) * even + focus * fail / fail.sum()
    return {t: float(x) for t, x in zip(tasks, share)}


def dagger_episodes(results: Sequence[RolloutResult], prefix: str) -> tuple[list[PolicyEpisode], int]:
    """The labelled episodes of recorded, labelled rollouts (``frames`` every step, ``labels``), ids
    ``{prefix}-{world seed}-{target}``; episodes shorter than a 16-frame clip are dropped (counted)."""
    episodes, dropped = [], 0
    for r in results:
        if r.frames is None or r.labels is None or len(r.labels) != len(r.frames) - 1:
            raise ValueError(f"rollout {r.request.world_seed}/{r.request.target} has no per-step frames and labels")
        if len(r.frames) < CLIP_FRAMES:
            dropped += 1
            continue
        goal = np.asarray(r.request.goal, np.float32)
        episodes.append(PolicyEpisode(f"{prefix}-{r.request.world_seed}-{r.request.target}", r.frames,
                                      np.asarray(r.labels, np.int64),
                                      np.broadcast_to(goal, (len(r.frames), goal.shape[0])).copy(),
                                      r.request.world_seed))
    return episodes, dropped


def run_dagger_round(policy, requests: Sequence[RolloutRequest], prefix: str, *, workers: int = 2, slots: int = 16,
                     progress: Callable[[int, int], None] | None = None) -> DaggerRound:
    """Roll ``policy`` out on ``requests`` in Crafter at its frame size, the scripted player labelling
    every step, and return the labelled episodes (:func:`dagger_episodes`) with the round's figures."""
    config = policy.config
    factory = _EnvFactory((config.frame_width, config.frame_height))
    with RolloutPool(factory, slots=min(slots, max(len(requests), 1)), workers=workers) as pool:
        results = pool.run(PolicyAgent(policy, slots), requests, record_frames=lambda _i: True, progress=progress)
    episodes, dropped = dagger_episodes(results, prefix)
    agree = np.concatenate([r.actions == r.labels for r in results]) if results else np.zeros(0, bool)
    by_target: dict[str, list[bool]] = {}
    for r in results:
        by_target.setdefault(r.request.target, []).append(r.success)
    return DaggerRound(tuple(episodes), _mean([r.success for r in results]), _mean(agree),
                       _mean([r.died for r in results]), dropped, sum(len(e.actions) for e in episodes),
                       {t: _mean(v) for t, v in sorted(by_target.items())})


def _mean(values) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


@dataclass(frozen=True)
class _EnvFactory:
    """Builds a labelling Crafter env in a worker process (picklable)."""

    frame_size: tuple[int, int]

    def __call__(self) -> CrafterGoalEnv:
        return CrafterGoalEnv(self.frame_size, expert_labels=True)


def write_labelled(path: Path, episodes: Sequence[PolicyEpisode], key: str, figures: Mapping[str, Any]) -> None:
    """Labelled episodes in one ``.npz`` (frames, actions and goals end to end, with each episode's
    length, id and world seed), stamped with ``key`` (what they were played for) and the round's
    ``figures``; written atomically."""
    lengths = np.asarray([len(e.frames) for e in episodes], np.int64)
    arrays = {
        "key": np.asarray(key), "figures": np.asarray(json.dumps(dict(figures), sort_keys=True)),
        "ids": np.asarray([e.id for e in episodes], dtype=str), "lengths": lengths,
        "env_seeds": np.asarray([-1 if e.env_seed is None else e.env_seed for e in episodes], np.int64),
        "frames": np.concatenate([e.frames for e in episodes]) if episodes else np.zeros((0, 1, 1, 3), np.uint8),
        "actions": np.concatenate([e.actions for e in episodes]) if episodes else np.zeros(0, np.int64),
        "goals": np.stack([e.goals[0] for e in episodes]) if episodes else np.zeros((0, 1), np.float32),
    }
    with atomic_path(Path(path)) as tmp, open(tmp, "wb") as f:  # a file object: numpy adds no suffix
        np.savez_compressed(f, **arrays)


def read_labelled(path: Path, key: str) -> tuple[list[PolicyEpisode], dict[str, Any]] | None:
    """The episodes and figures :func:`write_labelled` wrote to ``path`` for ``key``; None when there is
    no such file or it was written for another key. Read without pickle (an untrusted file); a file
    that does not hold together raises ValueError naming it."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key:
                return None
            lengths, ids, seeds = z["lengths"], z["ids"].tolist(), z["env_seeds"].tolist()
            frames, actions, goals = z["frames"], z["actions"], z["goals"]
            figures = json.loads(str(z["figures"]))
    except (OSError, KeyError, ValueError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a labelled-episodes file ({exc})") from None
    if (len(ids) != len(lengths) or len(seeds) != len(lengths) or len(goals) != len(lengths)
            or frames.shape[0] != int(lengths.sum()) or actions.shape[0] != int((lengths - 1).sum())
            or (lengths < CLIP_FRAMES).any()):
        raise ValueError(f"{path}: the arrays of its episodes do not add up")
    starts, action_starts = np.concatenate([[0], np.cumsum(lengths)]), np.concatenate([[0], np.cumsum(lengths - 1)])
    episodes = [PolicyEpisode(ids[i], frames[starts[i]:starts[i + 1]], actions[action_starts[i]:action_starts[i + 1]],
                              np.broadcast_to(goals[i], (int(n), goals.shape[1])).copy(),
                              None if seeds[i] < 0 else int(seeds[i]))
                for i, n in enumerate(lengths)]
    return episodes, figures
