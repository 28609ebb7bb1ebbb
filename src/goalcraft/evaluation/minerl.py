"""The MineRL seam: STEVE-1's agent in MineRL through the same rollout protocol as the Crafter policy.

Needs the ``minerl`` extra (``pip install -e ".[minerl]"``: MineRL 0.4.4, which needs Java 8, and
STEVE-1's code and weights; neither can be installed on the machines goalcraft is developed on, so
this module is import-guarded and tested only against a fake MineRL environment). With it,
:func:`goalcraft.evaluation.rollouts.run_rollouts` runs STEVE-1 the way its scripts do:

* the environment is STEVE-1's ``HumanSurvival(**ENV_KWARGS).make()``, seeded with ``env.seed(seed)``
  after the first ``reset()`` (``steve1/utils/mineclip_agent_env_utils.py``, ``make_env``);
* the agent is ``MineRLConditionalAgent`` loaded from the VPT model file and STEVE-1's weights
  (``make_agent``), reset per episode with ``agent.reset(cond_scale=λ)``, and each step calls
  ``agent.get_action(obs, goal[None])`` (``steve1/run_agent/run_agent.py``): it samples
  (``stochastic=True``) from ``(1 + λ)·cond − λ·uncond``. STEVE-1's own scales: 6.0 for text goals
  (MineCLIP text + prior), 7.0 for visual goals (:data:`STEVE1_GUIDANCE`);
* MineRL has no achievements, so "unlocked" is read from the inventory: an achievement of
  :data:`INVENTORY_ACHIEVEMENTS` unlocks when one of its items' counts rises (``collect_wood``: any
  log; extend it for your tasks).

The agent keeps one STEVE-1 agent (its recurrent state) per slot; STEVE-1 samples from torch's
global RNG, so :class:`Steve1Agent` seeds it per episode (reproducible with one slot).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["INVENTORY_ACHIEVEMENTS", "STEVE1_GUIDANCE", "MineRLGoalEnv", "Steve1Agent", "require_minerl"]

#: STEVE-1's guidance scales (``run_agent.py``: ``--text_cond_scale 6.0 --visual_cond_scale 7.0``).
STEVE1_GUIDANCE = {"text": 6.0, "visual": 7.0}

#: Achievement → the MineRL inventory items whose count rising unlocks it.
INVENTORY_ACHIEVEMENTS: dict[str, tuple[str, ...]] = {
    "collect_wood": ("oak_log", "birch_log", "spruce_log", "jungle_log", "acacia_log", "dark_oak_log"),
    "collect_dirt": ("dirt",),
    "collect_stone": ("cobblestone",),
    "collect_sapling": ("oak_sapling", "birch_sapling", "spruce_sapling"),
    "place_table": (),  # needs block events, not inventory: never unlocks here
    "make_wood_pickaxe": ("wooden_pickaxe",),
    "make_stone_pickaxe": ("stone_pickaxe",),
    "collect_seeds": ("wheat_seeds",),
}


def require_minerl() -> None:
    """ImportError with the install hint unless MineRL and STEVE-1's code are importable."""
    try:
        import minerl  # noqa: F401
        import steve1  # noqa: F401
    except ImportError as exc:
        raise ImportError('the MineRL adapter needs the minerl extra (pip install -e ".[minerl]") and STEVE-1\'s '
                          f"code on the path: {exc}") from exc


def _steve1_env() -> Any:
    from minerl.herobraine.env_specs.human_survival_specs import HumanSurvival
    from steve1.VPT.agent import ENV_KWARGS

    return HumanSurvival(**ENV_KWARGS).make()


class MineRLGoalEnv:
    """A MineRL env as a :class:`~goalcraft.evaluation.rollouts.GoalEnv`. ``make`` builds the gym env
    (default: STEVE-1's ``HumanSurvival``; tests pass a fake); ``achievements`` maps achievement names
    to inventory items (:data:`INVENTORY_ACHIEVEMENTS`)."""

    def __init__(self, make: Callable[[], Any] | None = None,
                 achievements: Mapping[str, Sequence[str]] = INVENTORY_ACHIEVEMENTS) -> None:
        if make is None:
            require_minerl()
            make = _steve1_env
        self._make = make
        self.env: Any = None
        self.achievements = {k: tuple(v) for k, v in achievements.items()}
        self._counts: dict[str, float] = {}

    def _inventory(self, obs: Mapping[str, Any]) -> dict[str, float]:
        inventory = obs.get("inventory", {}) if isinstance(obs, Mapping) else {}
        return {k: float(np.asarray(v).sum()) for k, v in inventory.items()}

    def reset(self, seed: int, target: str) -> Any:
        if self.env is None:
            self.env = self._make()
            self.env.reset()  # STEVE-1 resets once before seeding
        self.env.seed(int(seed))
        obs = self.env.reset()
        self._counts = self._inventory(obs)
        return obs

    def step(self, action: Any) -> tuple[Any, list[str], bool]:
        obs, _reward, done, _info = self.env.step(action)
        counts = self._inventory(obs)
        rose = {k for k, v in counts.items() if v > self._counts.get(k, 0.0)}
        self._counts = counts
        return obs, [a for a, items in self.achievements.items() if rose & set(items)], bool(done)


class Steve1Agent:
    """STEVE-1's ``MineRLConditionalAgent`` as a :class:`~goalcraft.evaluation.rollouts.GoalAgent`:
    ``make_agent()`` builds one (default: STEVE-1's ``make_agent(in_model, in_weights, cond_scale)``)
    per slot."""

    def __init__(self, slots: int, make_agent: Callable[[], Any] | None = None, *, in_model: str | None = None,
                 in_weights: str | None = None) -> None:
        if make_agent is None:
            require_minerl()
            from steve1.utils.mineclip_agent_env_utils import make_agent as steve1_make_agent

            def make_agent() -> Any:
                return steve1_make_agent(in_model, in_weights, cond_scale=STEVE1_GUIDANCE["text"])

        self.agents = [make_agent() for _ in range(slots)]
        self.goals: list[np.ndarray | None] = [None] * slots

    def reset(self, slot: int, goal: np.ndarray | None, guidance: float, seed: int) -> None:
        import torch

        if goal is None:
            raise ValueError("STEVE-1 needs a goal embedding for every episode")
        torch.manual_seed(int(seed))
        self.agents[slot].reset(cond_scale=float(guidance))
        self.goals[slot] = np.asarray(goal, np.float32)[None]

    def act(self, slots: Sequence[int], observations: Sequence[Any]) -> list[Any]:
        return [self.agents[s].get_action(obs, self.goals[s]) for s, obs in zip(slots, observations)]
