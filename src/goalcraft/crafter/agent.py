"""The scripted Crafter player and the episodes it plays.

:class:`ScriptedAgent` is a seeded, scripted-but-random policy; :func:`play_episode` plays one
episode in a deterministic env (:mod:`goalcraft.crafter.deterministic_env`) and logs every
achievement unlock with its step.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any

import crafter
import numpy as np
from crafter import constants as crafter_constants
from crafter import objects as crafter_objects

from goalcraft.crafter.deterministic_env import make_env
from goalcraft.crafter.tasks import ACHIEVEMENTS

__all__ = ["ACTION_IDS", "Episode", "ScriptedAgent", "play_episode"]

ACTION_IDS = {name: index for index, name in enumerate(crafter_constants.actions)}

_MOVES = {"move_left": (-1, 0), "move_right": (1, 0), "move_up": (0, -1), "move_down": (0, 1)}
_DIR_TO_MOVE = {v: k for k, v in _MOVES.items()}
_TABLE_WOOD = crafter_constants.place["table"]["uses"]["wood"]
_SAFE = ("grass", "sand")  # where the agent walks on purpose; paths lead into skeleton tunnels


def _daylight(step: int) -> float:
    """Crafter's daylight at ``step`` (``Env._update_time``): night is roughly steps 165-255 of 300."""
    progress = (step / 300) % 1 + 0.3
    return float(1 - np.abs(np.cos(np.pi * progress)) ** 3)


def _shift(mask: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """``out[x, y] = mask[x + dx, y + dy]``, False where that falls outside the map."""
    out = np.zeros_like(mask)
    w, h = mask.shape
    out[max(0, -dx) : w - max(0, dx), max(0, -dy) : h - max(0, dy)] = mask[
        max(0, dx) : w - max(0, -dx), max(0, dy) : h - max(0, -dy)]
    return out


def _material_mask(world: Any, *names: str) -> np.ndarray:
    ids = [world._mat_ids[n] for n in names if n in world._mat_ids]
    return np.isin(world._mat_map, ids)


def _shelter_sites(world: Any) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Entrances ``E`` and directions ``d`` where a 2-tile tunnel dug into stone (``E + d``,
    ``E + 2d``) is closed on every other side by tiles zombies cannot walk on (and no lava)."""
    stone = _material_mask(world, "stone")
    blocked = ~_material_mask(world, "grass", "sand", "path", "lava")
    entry = _material_mask(world, "grass", "sand")
    sites = []
    for dx, dy in _MOVES.values():
        lx, ly = dy, dx
        ok = (stone & _shift(stone, dx, dy) & _shift(blocked, 2 * dx, 2 * dy)
              & _shift(blocked, lx, ly) & _shift(blocked, -lx, -ly)
              & _shift(blocked, dx + lx, dy + ly) & _shift(blocked, dx - lx, dy - ly)
              & _shift(entry, -dx, -dy))
        for x, y in np.argwhere(ok):
            sites.append(((int(x) - dx, int(y) - dy), (dx, dy)))
    return sites


def _first_step(world: Any, start: np.ndarray, goal: tuple[int, int], limit: int = 40) -> str | None:
    """First move of a shortest walk from ``start`` to ``goal`` over free grass and sand (BFS)."""
    passable = _material_mask(world, "grass", "sand") & (world._obj_map == 0)
    start_key = (int(start[0]), int(start[1]))
    if start_key == goal:
        return None
    w, h = passable.shape
    first: dict[tuple[int, int], str | None] = {start_key: None}
    frontier = collections.deque([(start_key, 0)])
    while frontier:
        (x, y), dist = frontier.popleft()
        if dist >= limit:
            continue
        for move, (dx, dy) in _MOVES.items():
            nxt = (x + dx, y + dy)
            if nxt in first or not (0 <= nxt[0] < w and 0 <= nxt[1] < h):
                continue
            if nxt != goal and not passable[nxt]:
                continue
            first[nxt] = first[(x, y)] or move
            if nxt == goal:
                return first[nxt]
            frontier.append((nxt, dist + 1))
    return None


class ScriptedAgent:
    """A scripted-but-random Crafter player.

    It acts on what it is facing (chop trees, drink, hit cows and zombies, pick saplings, plant,
    place a table, craft at the table), walks toward the nearest tree / water / cow it currently
    wants, fights zombies that come close, keeps out of skeletons' range, and otherwise wanders; a
    per-agent fraction of actions is random. Free-playing agents spend the night in a tunnel they
    dig into stone and seal (see :meth:`_shelter_act`): a Crafter night in the open usually kills
    the player. With ``target`` set it looks around for a few steps, then pursues that achievement
    (and its prerequisites). All randomness comes from the ``numpy.random.RandomState`` it is given.
    """

    def __init__(self, rng: np.random.RandomState, target: str | None = None) -> None:
        self.rng = rng
        self.target = target
        self.eps = rng.uniform(0.05, 0.15) if target else rng.uniform(0.08, 0.2)
        self.wood_goal = int(rng.randint(3, 7))
        self.sapling_interest = rng.uniform(0.15, 0.5)
        self.curiosity = rng.uniform(0.0, 0.02)  # chance per step to go for water/cow regardless of need
        self.hunter = rng.uniform() < 0.75  # goes for cows it sees even when not hungry
        self.nap_energy = int(rng.randint(5, 8))  # goal-directed agents nap below this energy
        self.shelter: dict[str, Any] | None = None
        self.next_shelter_search = 0
        self.errand: str | None = None
        self.errand_left = 0
        self.wander_dir = (0, 1)
        self.wander_left = 0
        self.last_pos: tuple[int, int] | None = None
        self.stuck = 0
        # Goal-directed agents first look around for a while, so that trials do not all succeed
        # within the first handful of frames.
        self.warmup = int(rng.randint(12, 40)) if target else 0

    # -- world queries -------------------------------------------------------------------------
    @staticmethod
    def _nearest_material(world: Any, pos: np.ndarray, name: str, radius: int) -> np.ndarray | None:
        mat_id = world._mat_ids.get(name)
        if mat_id is None:
            return None
        x0, y0 = max(0, pos[0] - radius), max(0, pos[1] - radius)
        region = world._mat_map[x0 : pos[0] + radius + 1, y0 : pos[1] + radius + 1]
        coords = np.argwhere(region == mat_id)
        if not len(coords):
            return None
        coords = coords + (x0, y0)
        return coords[np.argmin(np.abs(coords - pos).sum(1))]

    @staticmethod
    def _nearest_object(world: Any, pos: np.ndarray, cls: type, radius: int) -> np.ndarray | None:
        best, best_dist = None, radius + 1
        for obj in world.objects:
            if isinstance(obj, cls):
                dist = int(np.abs(obj.pos - pos).sum())
                if dist < best_dist:
                    best, best_dist = obj.pos, dist
        return best

    @staticmethod
    def _table_near(world: Any, pos: np.ndarray) -> bool:
        nearby, _ = world.nearby(pos, 1)
        return "table" in nearby

    # -- movement ------------------------------------------------------------------------------
    def _safe_move(self, world: Any, pos: np.ndarray, move: str) -> str:
        target = pos + np.array(_MOVES[move])
        return "noop" if world[target][0] == "lava" else move

    def _toward(self, world: Any, player: Any, goal: np.ndarray) -> str:
        offset = goal - player.pos
        steps = []
        if offset[0]:
            steps.append((int(np.sign(offset[0])), 0))
        if offset[1]:
            steps.append((0, int(np.sign(offset[1]))))
        if len(steps) == 2 and (abs(offset[1]) > abs(offset[0])) != (self.rng.uniform() < 0.25):
            steps.reverse()
        for step in steps:
            nxt = player.pos + np.array(step)
            if tuple(nxt) == tuple(goal):
                return _DIR_TO_MOVE[step]  # blocked by the goal itself: this just turns to face it
            material, obj = world[nxt]
            if obj is None and material in _SAFE:
                return _DIR_TO_MOVE[step]
        self.stuck += 1
        return self._wander(world, player, force=True)

    def _wander(self, world: Any, player: Any, force: bool = False) -> str:
        ahead = player.pos + np.array(self.wander_dir)
        material, obj = world[ahead]
        if force or self.wander_left <= 0 or obj is not None or material not in _SAFE:
            self.wander_dir = tuple(_MOVES[list(_MOVES)[self.rng.randint(4)]])
            self.wander_left = int(self.rng.randint(3, 12))
        self.wander_left -= 1
        return self._safe_move(world, player.pos, _DIR_TO_MOVE[self.wander_dir])

    def _turn_to_placeable(self, world: Any, player: Any, where: tuple[str, ...]) -> str:
        options = [m for m, d in _MOVES.items() if world[player.pos + np.array(d)][0] in where
                   and world[player.pos + np.array(d)][1] is None]
        if not options:
            return self._wander(world, player, force=True)
        return options[self.rng.randint(len(options))]

    # -- night shelter -----------------------------------------------------------------------------
    def _shelter_act(self, env: crafter.Env, phase: int, zombie_dist: int) -> str | None:
        """Dig a 2-tile tunnel into stone at dusk, seal the entrance with a stone block, sleep
        there through the night and dig out in the morning. Returns None when not sheltering."""
        player, world = env._player, env._world
        pos = (int(player.pos[0]), int(player.pos[1]))
        facing = tuple(int(v) for v in player.facing)
        night = 120 <= phase < 262
        sh = self.shelter
        if sh is None:
            if (not night or phase >= 200 or not player.inventory["wood_pickaxe"]
                    or env._step < self.next_shelter_search):
                return None
            sites = sorted(_shelter_sites(world), key=lambda s: abs(s[0][0] - pos[0]) + abs(s[0][1] - pos[1]))
            for entrance, d in sites[:6]:
                if entrance == pos or _first_step(world, player.pos, entrance) is not None:
                    sh = self.shelter = {"E": entrance, "d": d, "visited": False, "sealed": False}
                    break
            else:
                self.next_shelter_search = env._step + 15
                return None
        (ex, ey), (dx, dy) = sh["E"], sh["d"]
        s1, s2 = (ex + dx, ey + dy), (ex + 2 * dx, ey + 2 * dy)
        fwd, back = _DIR_TO_MOVE[(dx, dy)], _DIR_TO_MOVE[(-dx, -dy)]

        def hit_or_turn(move: str, direction: tuple[int, int]) -> str:
            return "do" if facing == direction else move  # moving into a blocked tile only turns

        if sh["sealed"]:
            if night:
                if not sh.get("slept") and player.inventory["energy"] < crafter_constants.items["energy"]["max"]:
                    sh["slept"] = True  # sleep once (until rested), then wait for the morning awake
                    return "sleep"
                return ("noop", "noop", "noop", fwd, back)[self.rng.randint(5)]
            if zombie_dist <= 6:
                return "noop"  # zombies linger after dawn; wait for them to go
            if pos == s2:
                return back
            if world[sh["E"]][0] == "stone":
                return hit_or_turn(back, (-dx, -dy))  # dig out
            self.shelter = None
            return None
        if not night or phase >= 240:
            self.shelter = None  # too late to finish; fight through the night instead
            return None
        if pos == s2:
            sh["visited"] = True
            return "do" if world[s1][1] is not None and facing == (-dx, -dy) else back
        if pos == s1:
            if not sh["visited"]:
                if world[s2][0] == "stone" or world[s2][1] is not None:
                    return hit_or_turn(fwd, (dx, dy))
                return fwd
            if world[sh["E"]][0] == "stone":
                sh["sealed"] = True
                return "noop"
            if facing != (-dx, -dy):
                return fwd  # back into the tunnel's end, then step back out facing the entrance
            if world[sh["E"]][1] is not None:
                return "do"
            if player.inventory["stone"] < 1:
                self.shelter = None
                return None
            return "place_stone"
        if pos == sh["E"]:
            if world[s1][0] == "stone" or world[s1][1] is not None:
                return hit_or_turn(fwd, (dx, dy))
            return fwd
        step = _first_step(world, player.pos, sh["E"])
        if step is None:
            self.shelter = None
            self.next_shelter_search = env._step + 5
            return None
        return self._safe_move(world, player.pos, step)

    # -- policy ----------------------------------------------------------------------------------
    def act(self, env: crafter.Env) -> int:
        return ACTION_IDS[self._act(env)]

    def _act(self, env: crafter.Env) -> str:
        player, world, rng = env._player, env._world, self.rng
        inv = player.inventory
        pos = player.pos
        if player.sleeping:
            return "noop"
        pos_key = (int(pos[0]), int(pos[1]))
        self.stuck = self.stuck + 1 if pos_key == self.last_pos else 0
        self.last_pos = pos_key
        material, obj = world[pos + np.array(player.facing)]
        if env._step < self.warmup:
            return self._wander(world, player)

        # Zombies chase as fast as the player walks, so running does not help: fight them.
        zombie = self._nearest_object(world, pos, crafter_objects.Zombie, 12)
        zombie_dist = int(np.abs(zombie - pos).sum()) if zombie is not None else 99
        if isinstance(obj, crafter_objects.Zombie):
            return "do"
        if self.target is None:
            action = self._shelter_act(env, env._step % 300, zombie_dist)
            if action is not None:
                return action
        if zombie_dist <= 2:
            return self._toward(world, player, zombie)
        # Skeletons shoot from up to 5 tiles and back off when approached: keep out of range.
        skeleton = self._nearest_object(world, pos, crafter_objects.Skeleton, 5)
        if skeleton is not None:
            dist = np.abs(skeleton - pos).sum()
            away = [m for m, d in _MOVES.items() if world[pos + np.array(d)][1] is None
                    and world[pos + np.array(d)][0] in _SAFE and np.abs(pos + np.array(d) - skeleton).sum() > dist]
            if away:
                return away[rng.randint(len(away))]

        if rng.uniform() < self.eps or self.stuck > 6:
            if self.stuck > 6:
                self.stuck = 0
            choice = ("move_left", "move_right", "move_up", "move_down", "do", "noop")[rng.randint(6)]
            return self._safe_move(world, pos, choice) if choice in _MOVES else choice

        target = self.target
        achieved = player.achievements
        wants_plant = target == "place_plant" or (target is None and rng.uniform() < 0.5)
        wants_sapling = target in ("collect_sapling", "place_plant") or (
            target is None and inv["sapling"] == 0 and rng.uniform() < self.sapling_interest)
        wants_tools = target in ("make_wood_pickaxe", "make_wood_sword") or target is None

        # Act on what we face.
        if isinstance(obj, crafter_objects.Cow) and (target in (None, "eat_cow")):
            return "do"
        if material == "tree" and inv["wood"] < 9 and (target != "collect_drink" or rng.uniform() < 0.3):
            return "do"
        if material == "water" and (inv["drink"] < 9 or not achieved["collect_drink"]) and (
                target in (None, "collect_drink")):
            return "do"
        if material == "stone" and inv["wood_pickaxe"] and target is None and inv["stone"] < 5:
            return "do"
        if obj is None and material == "grass":
            if inv["sapling"] and wants_plant:
                return "place_plant"
            if wants_sapling and rng.uniform() < 0.7:
                return "do"

        table_near = self._table_near(world, pos)
        if table_near and inv["wood"] >= 1 and wants_tools:
            if not inv["wood_pickaxe"] and target != "make_wood_sword":
                return "make_wood_pickaxe"
            if not inv["wood_sword"] and target != "make_wood_pickaxe":
                return "make_wood_sword"
            if inv["stone"] >= 1 and not inv["stone_pickaxe"]:
                return "make_stone_pickaxe"
        needs_table = target in ("place_table", "make_wood_pickaxe", "make_wood_sword") or (
            target is None and not inv["wood_pickaxe"])
        has_table_around = self._nearest_material(world, pos, "table", 6) is not None
        if needs_table and not has_table_around and inv["wood"] >= _TABLE_WOOD + 2 * (target is None):
            if obj is None and material in ("grass", "sand", "path"):
                return "place_table"
            return self._turn_to_placeable(world, player, ("grass", "sand", "path"))
        if (target is None and inv["stone"] and obj is None and material in ("grass", "sand")
                and rng.uniform() < 0.05):
            return "place_stone"

        # Goal-directed agents nap when tired (free-playing ones sleep in their night shelter). A
        # sleeping player cannot act and takes 7 damage per zombie hit, so naps must end in daylight.
        max_energy = crafter_constants.items["energy"]["max"]
        nap_steps = (max_energy - inv["energy"]) * 11 + 10  # about 11 steps of sleep per energy point
        if inv["energy"] < max_energy and zombie is None and (
                target == "wake_up"
                or (target is not None and inv["energy"] < self.nap_energy
                    and _daylight(env._step + nap_steps) > 0.5)
                or inv["energy"] <= 1):
            return "sleep"

        # Pick where to go.
        goal = None
        if self.errand_left > 0:
            self.errand_left -= 1
        else:
            self.errand = None
        if target is None and self.errand is None and rng.uniform() < self.curiosity:
            self.errand, self.errand_left = ("water", "cow")[rng.randint(2)], int(rng.randint(20, 50))
        stock_up = 80 <= env._step % 300 < 200  # eat and drink up before spending the night in a shelter
        want_water = target == "collect_drink" or (
            target is None and (inv["drink"] <= (7 if stock_up else 5) or self.errand == "water"))
        want_cow = target == "eat_cow" or (
            target is None and (inv["food"] <= (6 if stock_up else 5) or self.errand == "cow"))
        want_wood = (
            target in ("collect_wood",)
            or (needs_table and not has_table_around and inv["wood"] < _TABLE_WOOD + 2)
            or (target in ("make_wood_pickaxe", "make_wood_sword") and inv["wood"] < 1)
            or (target is None and inv["wood"] < self.wood_goal)
        )
        if want_water:
            goal = self._nearest_material(world, pos, "water", 24)
        if goal is None and want_cow:
            goal = self._nearest_object(world, pos, crafter_objects.Cow, 16)
        if goal is None and target is None and self.hunter and inv["food"] < 9:
            goal = self._nearest_object(world, pos, crafter_objects.Cow, 5)
        if goal is None and want_wood:
            goal = self._nearest_material(world, pos, "tree", 16)
        if goal is None and target in ("make_wood_pickaxe", "make_wood_sword") and has_table_around:
            goal = self._nearest_material(world, pos, "table", 6)
            if goal is not None and np.abs(goal - pos).max() <= 1:
                goal = None
        if goal is None and target is None and inv["wood_pickaxe"] and inv["stone"] < 3:
            goal = self._nearest_material(world, pos, "stone", 8)
        if goal is not None:
            return self._toward(world, player, goal)
        return self._wander(world, player)



@dataclass
class Episode:
    frames: list[np.ndarray]
    events: list[tuple[int, str]]  # (step, achievement), in order
    daylight: list[float]
    success_frame: int | None = None
    died: bool = False


def play_episode(env_seed: int, policy_seed: int, size: tuple[int, int], max_steps: int,
                 target: str | None = None, tail: int = 0) -> Episode:
    """Play one episode; frame ``t`` is the observation after step ``t`` (frame 0: reset).

    Without ``target`` it runs ``max_steps`` steps. With a target it stops ``tail`` steps after the
    first unlock of the target (even if that runs past ``max_steps``), or after ``max_steps`` steps
    without one. It stops early if the player dies (``died``).
    """
    env = make_env(env_seed, size)
    agent = ScriptedAgent(np.random.RandomState(policy_seed), target)
    episode = Episode([env.reset()], [], [float(env._world.daylight)])
    counts = dict.fromkeys(ACHIEVEMENTS, 0)
    step = 0
    while True:
        last = max_steps if episode.success_frame is None else episode.success_frame + tail
        if step >= last:
            break
        step += 1
        obs, _reward, _done, info = env.step(agent.act(env))
        episode.frames.append(obs)
        episode.daylight.append(float(env._world.daylight))
        for name in ACHIEVEMENTS:  # fixed order: simultaneous unlocks are logged deterministically
            if info["achievements"][name] > counts[name]:
                episode.events.append((step, name))
                if name == target and episode.success_frame is None:
                    episode.success_frame = step
            counts[name] = info["achievements"][name]
        if info["discount"] == 0.0:
            episode.died = True
            break
    return episode
