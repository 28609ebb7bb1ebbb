"""Exploratory Crafter players: trajectories off the scripted agents' routes, for policy training.

A policy trained only on :class:`~goalcraft.crafter.agent.ScriptedAgent` and
:class:`~goalcraft.crafter.agent.VariedAgent` play sees their routes and little else; when it strays
it is where it never was. STEVE-1 met the same problem by mixing agents and random camera spins in
its generated episodes (``gen_mixed_agents.py``: ``switch_agent_prob``, ``perform_spin_prob``). The
players here do that for Crafter, each seeded by the ``numpy.random.RandomState`` it is given:

* :class:`RandomWalkAgent`: a biased random walk. It keeps a direction for a few steps, turns at
  obstacles, interacts (``do``) with most things it faces, and takes a uniformly random action now and
  then (so placing and crafting happen when their requirements happen to be met); it never walks into
  lava.
* :class:`MixedAgent`: the varied agent's errand curriculum with random-walk stretches (it switches
  with a small probability each step) and a per-episode share of uniformly random actions.

Both are plain players (``act(env) -> action id``) for :func:`~goalcraft.crafter.agent.play_episode`'s
``agent`` argument; :data:`EXPLORE_AGENTS` names them.
"""

from __future__ import annotations

from typing import Any, Callable

import crafter
import numpy as np
from crafter import objects as crafter_objects

from goalcraft.crafter.agent import ACTION_IDS, VariedAgent

__all__ = ["EXPLORE_AGENTS", "MixedAgent", "RandomWalkAgent"]

_MOVES = ("move_left", "move_right", "move_up", "move_down")
_DELTA = {"move_left": (-1, 0), "move_right": (1, 0), "move_up": (0, -1), "move_down": (0, 1)}
_WALKABLE = ("grass", "sand", "path")
# What a "do" acts on: materials it collects or drinks, creatures it hits, plants it eats.
_INTERESTING = ("tree", "stone", "coal", "iron", "diamond", "water", "grass")
_N_ACTIONS = len(ACTION_IDS)


def _lava_safe(env: crafter.Env, action: int) -> int:
    """``action``, or noop where it is a move into lava or sleep while not tired (asleep in the open,
    the player is the zombies' for the night)."""
    name = crafter.constants.actions[action]
    if name == "sleep" and env._player.inventory["energy"] > 3:
        return ACTION_IDS["noop"]
    if name in _DELTA:
        ahead = env._player.pos + np.array(_DELTA[name])
        if env._world[ahead][0] == "lava":
            return ACTION_IDS["noop"]
    return action


class RandomWalkAgent:
    """A biased random walk (see the module docstring); per-episode rates drawn from ``rng``."""

    def __init__(self, rng: np.random.RandomState) -> None:
        self.rng = rng
        self.p_do = rng.uniform(0.5, 0.9)  # interact with what it faces
        self.p_random = rng.uniform(0.05, 0.15)  # any of the 17 actions
        self.mean_run = rng.uniform(3.0, 10.0)  # steps it keeps a direction
        self.direction = _MOVES[rng.randint(4)]
        self.run_left = 0

    def act(self, env: crafter.Env) -> int:
        rng, player, world = self.rng, env._player, env._world
        if player.sleeping:
            return ACTION_IDS["noop"]
        if rng.uniform() < self.p_random:
            return _lava_safe(env, int(rng.randint(_N_ACTIONS)))
        material, obj = world[player.pos + np.array(player.facing)]
        facing_something = obj is not None and not isinstance(obj, crafter_objects.Arrow)
        if (facing_something or material in _INTERESTING) and rng.uniform() < self.p_do:
            return ACTION_IDS["do"]
        ahead = player.pos + np.array(_DELTA[self.direction])
        blocked = world[ahead][1] is not None or world[ahead][0] not in _WALKABLE
        if self.run_left <= 0 or blocked:
            self.direction = _MOVES[rng.randint(4)]
            self.run_left = int(rng.geometric(1.0 / self.mean_run))
        self.run_left -= 1
        return _lava_safe(env, ACTION_IDS[self.direction])


class MixedAgent:
    """The varied agent with random-walk stretches and random actions (see the module docstring)."""

    def __init__(self, rng: np.random.RandomState) -> None:
        self.rng = rng
        self.scripted = VariedAgent(rng)
        self.walker = RandomWalkAgent(rng)
        self.eps = rng.uniform(0.05, 0.25)  # share of uniformly random actions
        self.switch = rng.uniform(1 / 80, 1 / 30)  # chance per step to switch player
        self.walking = False

    def act(self, env: crafter.Env) -> int:
        if self.rng.uniform() < self.switch:
            self.walking = not self.walking
        # The scripted player acts every step (its plans and bookkeeping follow the world), even when
        # its action is not the one taken.
        action = self.scripted.act(env)
        if self.walking:
            action = self.walker.act(env)
        if self.rng.uniform() < self.eps:
            action = _lava_safe(env, int(self.rng.randint(_N_ACTIONS)))
        return int(action)


#: The exploratory players by name (``generate_crafter_corpus(explore_agents=...)``).
EXPLORE_AGENTS: dict[str, Callable[[np.random.RandomState], Any]] = {
    "random_walk": RandomWalkAgent,
    "mixed": MixedAgent,
}
