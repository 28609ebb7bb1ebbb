"""The scripted Crafter players and the episodes they play.

:class:`ScriptedAgent` is a seeded, scripted-but-random policy (the demo corpus's free play and its
trials); :class:`VariedAgent` plays through a curriculum of errands so that a video unlocks many
different achievements, several times each (study corpora), and pursues the study trial targets.
:func:`make_agent` picks the player; :func:`play_episode` plays one episode in a deterministic env
(:mod:`goalcraft.crafter.deterministic_env`) and logs every achievement unlock with its step.
"""

from __future__ import annotations

import collections
import copy
from dataclasses import dataclass, field
from typing import Any, Callable

import crafter
import numpy as np
from crafter import constants as crafter_constants
from crafter import objects as crafter_objects

from goalcraft.crafter.deterministic_env import make_env
from goalcraft.crafter.tasks import ACHIEVEMENTS, TRIAL_TARGETS

__all__ = ["ACTION_IDS", "PURSUABLE_TARGETS", "Episode", "ScriptedAgent", "VariedAgent", "make_agent", "play_episode"]

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

    def _look(self, env: crafter.Env) -> str | tuple:
        """What every policy step starts with (no random draw): the action when asleep, warming up or
        facing a zombie, else (player, world, rng, inventory, position, material and object ahead,
        nearest zombie, its distance)."""
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
        return player, world, rng, inv, pos, material, obj, zombie, zombie_dist

    def _act(self, env: crafter.Env) -> str:
        look = self._look(env)
        if isinstance(look, str):
            return look
        player, world, rng, inv, pos, material, obj, zombie, zombie_dist = look
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
    # Step t (1-based) took actions[t - 1] on frame t - 1 and got rewards[t - 1] (Crafter's reward).
    actions: list[int] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    agent: str = ""  # the player's class name


def scripted_targets() -> frozenset[str]:
    """The achievements :func:`make_agent` has a player for (the trial targets and the varied agent's
    errands); agent success's scripted ceiling plays only these."""
    return frozenset(TRIAL_TARGETS) | frozenset(VariedAgent.ERRANDS)


def make_agent(rng: np.random.RandomState, target: str | None = None, varied: bool = False) -> ScriptedAgent:
    """The player for an episode: :class:`ScriptedAgent` for free play and for
    :data:`~goalcraft.crafter.tasks.TRIAL_TARGETS`, :class:`VariedAgent` with ``varied`` (free play
    through its errand curriculum) and for every other target it can pursue (ValueError otherwise)."""
    if target is None:
        return VariedAgent(rng) if varied else ScriptedAgent(rng)
    if target in TRIAL_TARGETS and not varied:
        return ScriptedAgent(rng, target)
    return VariedAgent(rng, target)


# Actions that can never unlock an achievement themselves (pacing does not check them).
_INERT_ACTIONS = frozenset(ACTION_IDS[name] for name in ("noop", "move_left", "move_right", "move_up", "move_down"))
# Pacing never holds back the blow that kills an attacker: a player waiting beside a zombie dies.
_SELF_DEFENCE = frozenset({"defeat_zombie", "defeat_skeleton"})


def _unlocks(env: crafter.Env, action: int, counts: dict[str, int]) -> set[str]:
    """The achievements ``action`` would unlock now, found by stepping a copy of the env (the env
    itself, its random state included, is untouched)."""
    _obs, _reward, _done, info = copy.deepcopy(env).step(action)
    return {name for name in ACHIEVEMENTS if info["achievements"][name] > counts[name]}


def _in_danger(env: crafter.Env, low_health: int = 3) -> bool:
    """Whether the player is badly hurt: then pacing holds nothing back."""
    return env._player.health <= low_health


def play_episode(env_seed: int, policy_seed: int, size: tuple[int, int], max_steps: int,
                 target: str | None = None, tail: int = 0, varied: bool = False,
                 agent: Callable[[np.random.RandomState], Any] | None = None, pace: int = 0) -> Episode:
    """Play one episode; frame ``t`` is the observation after step ``t`` (frame 0: reset).

    Without ``target`` it runs ``max_steps`` steps. With a target it stops ``tail`` steps after the
    first unlock of the target (even if that runs past ``max_steps``), or after ``max_steps`` steps
    without one. It stops early if the player dies (``died``). The player is :func:`make_agent`'s,
    or ``agent(rng)`` (anything with ``act(env) -> action id``) when given. Every action and reward
    is recorded (``actions``, ``rewards``).

    ``pace`` > 0 keeps unlocks of different achievements at least that many steps apart, as far as
    the player's own actions decide them: within ``pace`` steps of an unlock, an action that would
    unlock some other achievement (tried on a copy of the env) is replaced by ``noop``, so the
    player waits and tries again. Repeats of the last unlocked achievement (a run of mined stone)
    and the blow that defeats an attacker are not held back, nothing is while the player is badly
    hurt (:func:`_in_danger`), and unlocks no action causes (waking up) cannot be. With a ``target``
    (a trial) only the target's unlock waits: the trial's one goal clip ends on it, and the
    prerequisites on the way need not be apart from each other. Why: a goal clip is the
    16 frames before a success; a scripted player unlocks something every ~1.2 s, so without pacing
    most clips show two different successes and their label is ambiguous (docs/results.md).
    """
    if pace < 0:
        raise ValueError(f"pace must be >= 0, got {pace}")
    env = make_env(env_seed, size)
    rng = np.random.RandomState(policy_seed)
    player = agent(rng) if agent is not None else make_agent(rng, target, varied)
    episode = Episode([env.reset()], [], [float(env._world.daylight)], agent=type(player).__name__)
    counts = dict.fromkeys(ACHIEVEMENTS, 0)
    step = 0
    last_unlock: tuple[int, set[str]] = (-pace - 1, set())  # (step, achievements unlocked then)
    while True:
        last = max_steps if episode.success_frame is None else episode.success_frame + tail
        if step >= last:
            break
        step += 1
        action = player.act(env)
        if pace and step - last_unlock[0] <= pace and action not in _INERT_ACTIONS:
            held = _unlocks(env, action, counts) - last_unlock[1]
            if target is not None:  # a trial's goal clip ends on its target: only that unlock waits
                held &= {target}
            elif held & _SELF_DEFENCE:
                held = set()
            if held and not _in_danger(env):
                action = ACTION_IDS["noop"]
        obs, reward, _done, info = env.step(action)
        episode.actions.append(int(action))
        episode.rewards.append(float(reward))
        episode.frames.append(obs)
        episode.daylight.append(float(env._world.daylight))
        for name in ACHIEVEMENTS:  # fixed order: simultaneous unlocks are logged deterministically
            if info["achievements"][name] > counts[name]:
                episode.events.append((step, name))
                last_unlock = (step, last_unlock[1] if last_unlock[0] == step else set())
                last_unlock[1].add(name)
                if name == target and episode.success_frame is None:
                    episode.success_frame = step
            counts[name] = info["achievements"][name]
        if info["discount"] == 0.0:
            episode.died = True
            break
    return episode


# -- varied free play -------------------------------------------------------------------------------

_WALKABLE = tuple(crafter_constants.walkable)  # grass, sand, path
_FURNACE_STONE = crafter_constants.place["furnace"]["uses"]["stone"]
_MAX = {name: info["max"] for name, info in crafter_constants.items.items()}
_DIRS = tuple(_MOVES.values())


def _shifted_any(mask: np.ndarray, eight: bool = False) -> np.ndarray:
    """Cells with a ``mask`` cell among their 4 (or 8) neighbours."""
    out = np.zeros_like(mask)
    offsets = [(dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1) if (dx or dy) and (eight or not dx or not dy)]
    for dx, dy in offsets:
        out |= _shift(mask, dx, dy)
    return out


def _tunnel_sites(world: Any, depth: int) -> list[tuple[tuple[int, int], tuple[int, int], int]]:
    """Entrances ``E``, directions ``d`` and ``depth``: where a tunnel of ``depth`` tiles dug into
    stone (``E + d`` ... ``E + depth * d``) is closed on every other side by tiles zombies cannot walk
    on (and no lava); :func:`_shelter_sites` is the same for depth 2."""
    stone = _material_mask(world, "stone")
    blocked = ~_material_mask(world, "grass", "sand", "path", "lava")
    entry = _material_mask(world, "grass", "sand")
    sites = []
    for dx, dy in _MOVES.values():
        lx, ly = dy, dx
        ok = entry & _shift(blocked, (depth + 1) * dx, (depth + 1) * dy)
        for k in range(1, depth + 1):
            ok &= (_shift(stone, k * dx, k * dy) & _shift(blocked, k * dx + lx, k * dy + ly)
                   & _shift(blocked, k * dx - lx, k * dy - ly))
        sites += [((int(x), int(y)), (dx, dy), depth) for x, y in np.argwhere(ok)]
    return sites


class VariedAgent(ScriptedAgent):
    """Free play through a rotating, randomised curriculum of errands, or a study trial.

    Made for study corpora, where each achievement needs many unlocks: in a 1000-step episode it
    unlocks 14-18 different achievements, many of them several times (Crafter counts every repeat),
    where :class:`ScriptedAgent` unlocks 8-13, mostly wood, water, stone and saplings (measured
    counts in :mod:`goalcraft.crafter`).

    Free play (``target=None``):

    * **Days.** Needs first: water and a cow (or a ripe plant) when drink or food run low, more so
      in the afternoon, before the night. Then errands: the first tools (wood pickaxe and sword,
      stone sword), closed-in gardens (:meth:`_plant_garden`, food for later days), then, of the
      :attr:`ERRANDS` it can do from where it is, the one unlocked least often so far (a shuffled deck
      breaks ties): chop wood, place a table, craft wood and stone tools, mine stone, coal and iron,
      place stone and a furnace, drink, hunt a cow, pick and plant saplings, eat ripe plants, nap,
      fight zombies. An errand ends when its achievement is unlocked once more, or gives up after
      :attr:`JOB_STEPS`; prerequisites come on the way (wood for a table, a table and a pickaxe before
      stone, stone before a furnace). In the afternoon it gathers wood for the night (:attr:`NIGHT_WOOD`).
    * **Nights** (:meth:`_night`): a tunnel dug 3 (or 2) tiles into stone and sealed with a stone block,
      used as mine and workshop (:meth:`_shelter_busy`): it digs on through stone that opens onto
      nothing walkable, fills gaps with a table, a furnace or stone, crafts at the table, drinks where
      the mine meets water, sleeps when tired, and fights zombies one at a time at the entrance
      (:meth:`_gate`); it digs out in full daylight, once zombies have gone or are few.
    * **Moving**: a cost-weighted planner (:meth:`_go_act`) over grass, sand and the paths it dug
      itself (natural paths are skeleton tunnels), digging through stone when mining, never into
      lava, around skeletons' lines of fire where it can; it fights zombies that come close.

    With ``target`` set (one of :attr:`ERRANDS`) it looks around for a few steps, then pursues that
    achievement (and its prerequisites) until it is unlocked, like :class:`ScriptedAgent` does for
    :data:`~goalcraft.crafter.tasks.TRIAL_TARGETS`; trials have no night shelter.
    All randomness comes from ``rng``; :attr:`why` names the part of the policy that chose the last
    action (for debugging).
    """

    ERRANDS: tuple[str, ...] = (
        "collect_wood", "place_table", "make_wood_pickaxe", "make_wood_sword", "collect_stone",
        "place_stone", "collect_coal", "make_stone_pickaxe", "make_stone_sword", "place_furnace",
        "collect_drink", "eat_cow", "collect_sapling", "place_plant", "eat_plant", "wake_up",
        "defeat_zombie", "collect_iron",
    )
    OPENING: tuple[str, ...] = ("make_wood_pickaxe", "make_wood_sword", "make_stone_sword")
    WORK_GAP = (3, 9)  # steps between two things done in the night's workshop (narrated apart)
    GARDENS = 3  # closed-in plots it plants on the first days (see _plant_garden)
    NIGHT_WOOD = 9  # wood it gathers in the afternoon for the night's table and crafts
    NEED_RADIUS = 22  # how far it looks for water and cows when it needs them
    RADIUS = 14  # how far (in tiles, each way) the planner looks
    JOB_STEPS = 70  # an errand's step budget
    DUSK = 115  # free play heads for the night shelter from this phase (ScriptedAgent: 120)

    def __init__(self, rng: np.random.RandomState, target: str | None = None) -> None:
        if target is not None and target not in self.ERRANDS:
            raise ValueError(f"VariedAgent cannot pursue {target!r}; known: {', '.join(self.ERRANDS)}")
        super().__init__(rng, target)
        self.eps = rng.uniform(0.02, 0.06)
        self.deck: list[str] = []
        self.job: str | None = None
        self.job_base = 0
        self.job_until = 0
        self.retry_at: dict[str, int] = {}
        self.need: str | None = None  # drink / food while refilling
        self.dug: np.ndarray | None = None  # tiles it mined (paths it may walk on)
        self.explore_left = 0
        self.commit: tuple[Any, tuple[int, int], int] | None = None  # (purpose, goal tile, until step)
        self.gardens: list[dict[str, Any]] = []  # plots with a sapling closed in (see _plant_garden)
        self.garden_build: dict[str, Any] | None = None
        self.harvesting: dict[str, Any] | None = None
        self.why = ""

    # -- planning ------------------------------------------------------------------------------------
    def _window(self, world: Any, pos: np.ndarray, radius: int) -> tuple[int, int, int, int]:
        w, h = world.area
        return (max(0, int(pos[0]) - radius), min(w, int(pos[0]) + radius + 1),
                max(0, int(pos[1]) - radius), min(h, int(pos[1]) + radius + 1))

    def _go_act(self, env: crafter.Env, targets: np.ndarray, action: str, *, dig: bool = False,
                eight: bool = False, box: tuple[int, int, int, int] | None = None,
                walk: np.ndarray | None = None, diggable: np.ndarray | None = None,
                stand_on: bool = False) -> str | None:
        """Walk (digging through stone if ``dig``) to a cell next to a ``targets`` cell (4 neighbours,
        or 8 with ``eight``; the cell itself with ``stand_on``), face it and return ``action``.
        ``targets`` covers ``box`` (the planner window); ``walk`` and ``diggable`` override where it
        may walk and dig. None when no target is reachable within the window.

        A shortest path by cost (a step 1, mining a tile and stepping in 3, a tile in a skeleton's
        line of fire 8 more; never lava, never its gardens' walls), found as a distance field over the
        window; it sticks to the goal tile it chose for up to 30 steps, so equally near targets or a
        wandering skeleton do not make it dither."""
        player, world = env._player, env._world
        x0, x1, y0, y1 = box or self._window(world, player.pos, self.RADIUS)
        sx, sy = int(player.pos[0]) - x0, int(player.pos[1]) - y0
        if not targets.any():
            return None
        mat = world._mat_map[x0:x1, y0:y1]
        free = world._obj_map[x0:x1, y0:y1] == 0
        free[sx, sy] = True
        if walk is None:
            # Grass, sand and paths it dug itself: natural paths are caves and skeleton tunnels.
            walk = (np.isin(mat, [world._mat_ids[n] for n in _SAFE]) | (
                (mat == world._mat_ids["path"]) & self._dug(world)[x0:x1, y0:y1])) & free
        cost = np.where(walk, 1.0, np.inf)
        if diggable is not None:
            cost[diggable & free] = 3.0
        elif dig:  # mine, then step in; not next to natural paths (skeleton tunnels and caves)
            cave = np.pad((mat == world._mat_ids["path"]) & ~self._dug(world)[x0:x1, y0:y1], 1)
            near_cave = cave[:-2, 1:-1] | cave[2:, 1:-1] | cave[1:-1, :-2] | cave[1:-1, 2:]
            cost[(mat == world._mat_ids["stone"]) & free & ~near_cave] = 3.0
        danger = self._skeleton_zone(world, (x0, x1, y0, y1))
        cost[danger] += 8.0  # skeletons' lines of fire: around them if there is a way, else quickly through
        fence = self._garden_walls((x0, x1, y0, y1))  # never chopped or mined (but by _harvest)
        cost[fence & ~walk] = np.inf
        targets = targets & ~fence
        standable = np.isfinite(cost)
        standable[sx, sy] = True
        goal = standable & (targets if stand_on else _shifted_any(targets & ~danger, eight))
        key = (action, eight, stand_on)
        if self.commit is not None and self.commit[0] == key and env._step < self.commit[2]:
            cx, cy = self.commit[1][0] - x0, self.commit[1][1] - y0
            if 0 <= cx < goal.shape[0] and 0 <= cy < goal.shape[1] and goal[cx, cy] and not goal[sx, sy]:
                goal = np.zeros_like(goal)  # keep heading for the tile chosen before (no dithering
                goal[cx, cy] = True  # between equally near targets, or around a wandering skeleton)
        if goal[sx, sy]:
            self.commit = None
            if stand_on:
                return action
            if eight:
                return action
            facing = (int(player.facing[0]), int(player.facing[1]))
            options = [d for d in _DIRS if 0 <= sx + d[0] < targets.shape[0] and 0 <= sy + d[1] < targets.shape[1]
                       and targets[sx + d[0], sy + d[1]]]
            if facing in options:
                return action
            return _DIR_TO_MOVE[options[self.rng.randint(len(options))]]
        dist = np.where(goal, 0.0, np.inf)
        for it in range(4 * self.RADIUS):
            via = dist + cost
            best = np.full_like(dist, np.inf)
            best[1:, :] = np.minimum(best[1:, :], via[:-1, :])
            best[:-1, :] = np.minimum(best[:-1, :], via[1:, :])
            best[:, 1:] = np.minimum(best[:, 1:], via[:, :-1])
            best[:, :-1] = np.minimum(best[:, :-1], via[:, 1:])
            new = np.where(standable, np.minimum(dist, best), np.inf)
            if np.array_equal(new, dist) or (np.isfinite(new[sx, sy]) and it >= new[sx, sy]):
                dist = new
                break
            dist = new
        if not np.isfinite(dist[sx, sy]):
            return None
        order = self.rng.permutation(4)
        best_dir, best_val = None, np.inf
        for k in order:
            d = _DIRS[k]
            nx, ny = sx + d[0], sy + d[1]
            if not (0 <= nx < dist.shape[0] and 0 <= ny < dist.shape[1]):
                continue
            val = cost[nx, ny] + dist[nx, ny]
            if val < best_val:
                best_dir, best_val = d, val
        if best_dir is None or not np.isfinite(best_val):
            return None
        # Follow the descent to the goal tile it leads to, and stick to that tile for a while.
        cx, cy = sx + best_dir[0], sy + best_dir[1]
        for _ in range(200):
            if dist[cx, cy] == 0:
                break
            cx, cy = min(((cx + d[0], cy + d[1]) for d in _DIRS if 0 <= cx + d[0] < dist.shape[0]
                          and 0 <= cy + d[1] < dist.shape[1]), key=lambda c: cost[c] + dist[c])
        self.commit = (key, (cx + x0, cy + y0), env._step + 30)
        nx, ny = sx + best_dir[0], sy + best_dir[1]
        if not walk[nx, ny] and cost[nx, ny] > 1.0:  # stone in the way: face it, then mine it
            return "do" if tuple(int(v) for v in player.facing) == best_dir else _DIR_TO_MOVE[best_dir]
        return self._safe_move(world, player.pos, _DIR_TO_MOVE[best_dir])

    def _dug(self, world: Any) -> np.ndarray:
        if self.dug is None:
            self.dug = np.zeros(world.area, bool)
        return self.dug

    @staticmethod
    def _skeleton_zone(world: Any, box: tuple[int, int, int, int], reach: int = 6) -> np.ndarray:
        """Cells of ``box`` a skeleton can shoot (same row or column, up to ``reach`` tiles, nothing
        in between that stops arrows) or reach within a step or two: the planner avoids them, and the
        player steps out of them."""
        x0, x1, y0, y1 = box
        zone = np.zeros((x1 - x0, y1 - y0), bool)
        xs, ys = np.arange(x0, x1)[:, None], np.arange(y0, y1)[None, :]
        for obj in world.objects:
            if not isinstance(obj, crafter_objects.Skeleton):
                continue
            sx, sy = int(obj.pos[0]), int(obj.pos[1])
            zone |= (np.abs(xs - sx) + np.abs(ys - sy)) <= 2
            for dx, dy in _DIRS:
                for k in range(1, reach + 1):
                    cx, cy = sx + k * dx, sy + k * dy
                    if x0 <= cx < x1 and y0 <= cy < y1:
                        zone[cx - x0, cy - y0] = True
                    if world[(cx, cy)][0] not in ("grass", "sand", "path", "water", "lava"):
                        break
        return zone

    def _material_targets(self, env: crafter.Env, name: str) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        box = self._window(env._world, env._player.pos, self.RADIUS)
        x0, x1, y0, y1 = box
        return env._world._mat_map[x0:x1, y0:y1] == env._world._mat_ids[name], box

    def _object_targets(self, env: crafter.Env, cls: type, radius: int | None = None,
                        ripe: bool = False) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        box = self._window(env._world, env._player.pos, radius or self.RADIUS)
        x0, x1, y0, y1 = box
        mask = np.zeros((x1 - x0, y1 - y0), bool)
        for obj in env._world.objects:
            if isinstance(obj, cls) and x0 <= obj.pos[0] < x1 and y0 <= obj.pos[1] < y1 and (
                    not ripe or obj.ripe):
                mask[obj.pos[0] - x0, obj.pos[1] - y0] = True
        return mask, box

    def _go_material(self, env: crafter.Env, name: str, action: str = "do", box: tuple[int, int, int, int] | None = None,
                     **kw: Any) -> str | None:
        box = box or self._window(env._world, env._player.pos, self.RADIUS)
        x0, x1, y0, y1 = box
        mask = env._world._mat_map[x0:x1, y0:y1] == env._world._mat_ids[name]
        return self._go_act(env, mask, action, box=box, **kw)

    def _explore(self, world: Any, player: Any) -> str:
        """Head one way for a good while (a longer stride than :meth:`_wander`), turning when blocked."""
        ahead = player.pos + np.array(self.wander_dir)
        material, obj = world[ahead]
        if self.explore_left <= 0 or obj is not None or material not in _SAFE:
            options = [d for d in _DIRS if world[player.pos + np.array(d)][0] in _SAFE
                       and world[player.pos + np.array(d)][1] is None and d != tuple(-v for v in self.wander_dir)]
            if not options:
                return self._wander(world, player, force=True)
            self.wander_dir = options[self.rng.randint(len(options))]
            self.explore_left = int(self.rng.randint(12, 30))
        self.explore_left -= 1
        return self._safe_move(world, player.pos, _DIR_TO_MOVE[self.wander_dir])

    def _place(self, env: crafter.Env, action: str, where: tuple[str, ...]) -> str:
        player, world = env._player, env._world
        material, obj = world[player.pos + np.array(player.facing)]
        if obj is None and material in where:
            return action
        return self._turn_to_placeable(world, player, tuple(m for m in where if m in _WALKABLE))

    # -- errands -------------------------------------------------------------------------------------
    def _pursue(self, env: crafter.Env, name: str) -> str | None:
        """The next action toward unlocking ``name`` once more (prerequisites first); None when
        nothing toward it can be done from here."""
        player, world = env._player, env._world
        inv = player.inventory
        material, obj = world[player.pos + np.array(player.facing)]
        if name == "collect_wood":
            return self._go_material(env, "tree")
        if name == "collect_drink":
            return self._go_material(env, "water")
        if name == "eat_cow":
            mask, box = self._object_targets(env, crafter_objects.Cow)
            return self._go_act(env, mask, "do", box=box)
        if name == "defeat_zombie":
            mask, box = self._object_targets(env, crafter_objects.Zombie, radius=10)
            return self._go_act(env, mask, "do", box=box)
        if name == "eat_plant":
            action = self._harvest(env)
            if action is not None:
                return action
            mask, box = self._object_targets(env, crafter_objects.Plant, ripe=True)
            return self._go_act(env, mask, "do", box=box)
        if name == "collect_sapling":
            if obj is None and material == "grass":
                return "do"
            return self._turn_to_placeable(world, player, ("grass",))
        if name == "place_plant":
            if not inv["sapling"] and self.garden_build is None:
                return self._pursue(env, "collect_sapling")
            action = self._plant_garden(env)
            if action is not None:
                return action
            return self._place(env, "place_plant", ("grass",))
        if name == "wake_up":
            return "sleep" if inv["energy"] < _MAX["energy"] else None
        if name in ("collect_stone", "collect_coal", "collect_iron"):
            tool = "stone_pickaxe" if name == "collect_iron" else "wood_pickaxe"
            if not inv[tool]:
                return self._pursue(env, f"make_{tool}")
            return self._go_material(env, name[len("collect_"):], dig=True)
        if name == "place_stone":
            if not inv["stone"]:
                return self._pursue(env, "collect_stone")
            return self._place(env, "place_stone", ("grass", "sand", "path", "water"))
        if name == "place_furnace":
            if inv["stone"] < _FURNACE_STONE:
                return self._pursue(env, "collect_stone")
            return self._place(env, "place_furnace", ("grass", "sand", "path"))
        if name == "place_table":
            if inv["wood"] < _TABLE_WOOD:
                return self._pursue(env, "collect_wood")
            return self._place(env, "place_table", ("grass", "sand", "path"))
        if name.startswith("make_"):
            stone = name.startswith("make_stone")
            if stone and not inv["wood_pickaxe"]:
                return self._pursue(env, "make_wood_pickaxe")
            if stone and not inv["stone"]:
                return self._pursue(env, "collect_stone")
            if not inv["wood"]:
                return self._pursue(env, "collect_wood")
            if self._table_near(world, player.pos):
                return name
            action = self._go_material(env, "table", name, eight=True)
            if action is not None:
                return action
            if inv["wood"] < _TABLE_WOOD + 1:
                return self._pursue(env, "collect_wood")
            return self._pursue(env, "place_table")
        raise AssertionError(name)

    # -- gardens -------------------------------------------------------------------------------------
    def _approach(self, env: crafter.Env, cell: tuple[int, int], direction: tuple[int, int]) -> str | None:
        """Stand on ``cell`` facing ``direction`` ("ready" once there). A free tile can only be faced
        by walking toward it, so when the tile ahead is free it arrives from the tile behind."""
        player, world = env._player, env._world
        pos = (int(player.pos[0]), int(player.pos[1]))
        facing = (int(player.facing[0]), int(player.facing[1]))
        material, obj = world[(cell[0] + direction[0], cell[1] + direction[1])]
        ahead_free = obj is None and material in _WALKABLE
        behind = (cell[0] - direction[0], cell[1] - direction[1])
        if pos == cell:
            if facing == direction:
                return "ready"
            if not ahead_free:
                return _DIR_TO_MOVE[direction]  # blocked ahead: this only turns
        if ahead_free and pos == behind:
            return _DIR_TO_MOVE[direction]
        goal_cell = behind if ahead_free else cell
        box = self._window(world, player.pos, self.RADIUS)
        x0, x1, y0, y1 = box
        if not (x0 <= goal_cell[0] < x1 and y0 <= goal_cell[1] < y1):
            return None
        goal = np.zeros((x1 - x0, y1 - y0), bool)
        goal[goal_cell[0] - x0, goal_cell[1] - y0] = True
        return self._go_act(env, goal, "ready", box=box, stand_on=True)

    def _find_nook(self, env: crafter.Env) -> tuple[tuple[int, int], tuple[int, int]] | None:
        """The nearest grass tile P closed on three sides by tiles nothing walks on, with a free
        line of three walkable tiles leading away from its open side: a garden plot ((P, e), e the
        direction from the open side into P)."""
        player, world = env._player, env._world
        x0, x1, y0, y1 = self._window(world, player.pos, self.RADIUS)
        mat = world._mat_map[x0:x1, y0:y1]
        free = world._obj_map[x0:x1, y0:y1] == 0
        grass = (mat == world._mat_ids["grass"]) & free
        walk = np.isin(mat, [world._mat_ids[n] for n in _SAFE]) & free
        walk[int(player.pos[0]) - x0, int(player.pos[1]) - y0] = True
        solid = ~np.isin(mat, [world._mat_ids[n] for n in ("grass", "sand", "path", "lava")])
        best, best_dist = None, np.inf
        for ex, ey in _DIRS:
            lx, ly = ey, ex
            ok = (grass & _shift(solid, ex, ey) & _shift(solid, lx, ly) & _shift(solid, -lx, -ly)
                  & _shift(grass, -ex, -ey) & _shift(walk, -2 * ex, -2 * ey) & _shift(walk, -3 * ex, -3 * ey))
            for px, py in np.argwhere(ok):
                dist = abs(px + x0 - 3 * ex - player.pos[0]) + abs(py + y0 - 3 * ey - player.pos[1])
                if dist < best_dist:
                    best, best_dist = ((int(px) + x0, int(py) + y0), (ex, ey)), dist
        return best

    def _garden_walls(self, box: tuple[int, int, int, int]) -> np.ndarray:
        """The tiles around its gardens' plants, over ``box``."""
        x0, x1, y0, y1 = box
        walls = np.zeros((x1 - x0, y1 - y0), bool)
        for garden in self.gardens + ([self.garden_build] if self.garden_build else []):
            px, py = garden["P"]
            for dx, dy in _DIRS:
                if x0 <= px + dx < x1 and y0 <= py + dy < y1:
                    walls[px + dx - x0, py + dy - y0] = True
        return walls

    def _plant_garden(self, env: crafter.Env) -> str | None:
        """Plant a sapling in a nook (:meth:`_find_nook`) and close its open side with a stone block,
        so no cow or zombie ever stands next to it; it is ripe for eating after 300 steps, again and
        again (see :meth:`_harvest`). None when there is no nook or no stone."""
        world, inv, step = env._world, env._player.inventory, env._step
        build = self.garden_build
        if build is not None and step > build["until"] and not isinstance(world[build["P"]][1], crafter_objects.Plant):
            build = self.garden_build = None  # (once planted, it is closed in whatever the time)
        if build is None:
            if not inv["sapling"]:
                return None
            if not inv["stone"]:  # to close it in
                return self._pursue(env, "collect_stone") if len(self.gardens) < self.GARDENS else None
            nook = self._find_nook(env)
            if nook is None:
                return None
            build = self.garden_build = {"P": nook[0], "e": nook[1], "until": step + 50}
        (px, py), (ex, ey) = build["P"], build["e"]
        q, q1 = (px - ex, py - ey), (px - 2 * ex, py - 2 * ey)
        material, obj = world[(px, py)]
        if obj is None and material == "grass":
            action = self._approach(env, q, (ex, ey))
            return "place_plant" if action == "ready" else action
        if not isinstance(obj, crafter_objects.Plant):
            self.garden_build = None
            return None
        if world[q][0] not in _WALKABLE:
            self.gardens.append(build)
            self.garden_build = None
            return None
        if world[q][1] not in (None, env._player) or not inv["stone"]:
            self.garden_build = None
            return None
        action = self._approach(env, q1, (ex, ey))
        return "place_stone" if action == "ready" else action

    def _harvest(self, env: crafter.Env) -> str | None:
        """Eat a ripe plant in one of its gardens: mine the block, step in, eat, step back out and
        put the block back. None when no garden nearby is ripe."""
        player, world, inv = env._player, env._world, env._player.inventory
        self.gardens = [g for g in self.gardens if isinstance(world[g["P"]][1], crafter_objects.Plant)]
        garden = self.harvesting
        if garden is None or garden not in self.gardens:
            ripe = [g for g in self.gardens if world[g["P"]][1].ripe
                    and abs(g["P"][0] - player.pos[0]) + abs(g["P"][1] - player.pos[1]) <= self.RADIUS]
            if not ripe:
                self.harvesting = None
                return None
            garden = self.harvesting = min(ripe, key=lambda g: abs(g["P"][0] - player.pos[0]) + abs(g["P"][1] - player.pos[1]))
        (px, py), (ex, ey) = garden["P"], garden["e"]
        q, q1 = (px - ex, py - ey), (px - 2 * ex, py - 2 * ey)
        plant = world[(px, py)][1]
        q_material, q_obj = world[q]
        if plant.ripe:
            if q_material == "stone":
                action = self._approach(env, q1, (ex, ey))
                return "do" if action == "ready" else action  # open the garden
            action = self._approach(env, q, (ex, ey))
            return "do" if action == "ready" else action  # eat
        if q_material in _WALKABLE and q_obj is None and inv["stone"]:
            action = self._approach(env, q1, (ex, ey))
            return "place_stone" if action == "ready" else action  # close it again
        self.harvesting = None
        return None

    def _feasible(self, env: crafter.Env, name: str, zombie_dist: int) -> bool:
        player = env._player
        if name == "wake_up":
            inv = player.inventory
            nap = (_MAX["energy"] - inv["energy"]) * 11 + 10
            skeleton = self._nearest_object(env._world, player.pos, crafter_objects.Skeleton, 10)
            return (inv["energy"] < _MAX["energy"] - 1 and zombie_dist > 10 and skeleton is None
                    and _daylight(env._step + nap) > 0.6)
        if name == "defeat_zombie":
            return zombie_dist <= 10 and self._fit_to_fight(player)
        if name == "eat_plant":
            return bool(self._object_targets(env, crafter_objects.Plant, ripe=True)[0].any())
        if name == "collect_iron":
            return bool(self._material_targets(env, "iron")[0].any())
        if name == "collect_coal":
            return bool(self._material_targets(env, "coal")[0].any())
        return True

    def _fit_to_fight(self, player: Any) -> bool:
        """Whether to go for zombies (those that come within 2 tiles are fought anyway)."""
        inv = player.inventory
        return inv["health"] >= (6 if inv["stone_sword"] else 8 if inv["wood_sword"] else 99)

    def _next_job(self, env: crafter.Env, zombie_dist: int) -> str | None:
        achievements, step = env._player.achievements, env._step
        if self.target is not None:
            return self.target
        if self.job is not None:
            if achievements[self.job] > self.job_base:
                self.job = None
            elif step >= self.job_until:
                self.retry_at[self.job] = step + 60
                self.job = None
        if self.job is None:
            opening = [n for n in self.OPENING if not achievements[n] and self.retry_at.get(n, 0) <= step]
            if (not opening and len(self.gardens) < self.GARDENS and step % 300 < 90
                    and self.retry_at.get("place_plant", 0) <= step):
                opening = ["place_plant"]  # gardens: food for the days to come
            if not self.deck:
                self.deck = [self.ERRANDS[k] for k in self.rng.permutation(len(self.ERRANDS))]
            # Tools first (a sword above all); then, of the errands it can do from here, the one
            # unlocked least often so far (the deck's shuffled order breaks ties).
            candidates = opening or [n for n in self.deck if self.retry_at.get(n, 0) <= step
                                     and self._feasible(env, n, zombie_dist)]
            if candidates:
                name = min(candidates, key=lambda n: (achievements[n] if not opening else 0, self.deck.index(n)))
                self.deck.remove(name)
                self.deck.append(name)
                self.job, self.job_base, self.job_until = name, achievements[name], step + self.JOB_STEPS
        return self.job

    # -- the night: a sealed mine ------------------------------------------------------------------------
    def _sealed_area(self, world: Any, box: tuple[int, int, int, int],
                     start: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """(walk, safe) over ``box``: the path tiles connected to ``start`` (the sealed tunnel and
        what it dug from there), and the tiles that can be mined without opening that area to
        anything zombies, skeletons or arrows can cross (no grass, sand, other path, lava or box
        edge next to them)."""
        x0, x1, y0, y1 = box
        mat = world._mat_map[x0:x1, y0:y1]
        path = mat == world._mat_ids["path"]
        inside = np.zeros_like(path)
        todo = [(start[0] - x0, start[1] - y0)]
        inside[todo[0]] = True
        while todo:
            cx, cy = todo.pop()
            for ddx, ddy in _DIRS:
                nx, ny = cx + ddx, cy + ddy
                if 0 <= nx < path.shape[0] and 0 <= ny < path.shape[1] and path[nx, ny] and not inside[nx, ny]:
                    inside[nx, ny] = True
                    todo.append((nx, ny))
        walk = inside & (world._obj_map[x0:x1, y0:y1] == 0)
        open_ = np.isin(mat, [world._mat_ids[n] for n in ("grass", "sand", "lava")]) | (path & ~inside)
        padded = np.pad(open_, 1, constant_values=True)
        # (cells on the box's border count as next to something open: unknown, so not safe)
        near_open = padded[:-2, 1:-1] | padded[2:, 1:-1] | padded[1:-1, :-2] | padded[1:-1, 2:]
        mineable = np.isin(mat, [world._mat_ids[n] for n in ("stone", "coal", "iron", "diamond")])
        safe = mineable & ~near_open
        return walk, safe

    def _site_order(self, world: Any, pos: tuple[int, int],
                    sites: list[tuple[tuple[int, int], tuple[int, int], int]]) -> list[tuple[tuple[int, int], tuple[int, int], int]]:
        """Near sites first, but preferring (within 20 tiles) one with water at the tunnel's side (a
        drink at night), a 3-deep one (room for a table inside) and room to mine around its end."""
        water = _material_mask(world, "water")
        ore = _material_mask(world, "stone", "coal", "iron")
        w, h = world.area

        def key(site: tuple[tuple[int, int], tuple[int, int], int]) -> float:
            (ex, ey), (dx, dy), depth = site
            sides = [(ex + k * dx + sx, ey + k * dy + sy) for k in range(1, depth + 1) for sx, sy in ((dy, dx), (-dy, -dx))]
            sides.append((ex + (depth + 1) * dx, ey + (depth + 1) * dy))
            wet = any(0 <= x < w and 0 <= y < h and water[x, y] for x, y in sides)
            cx, cy = ex + (depth + 2) * dx, ey + (depth + 2) * dy
            room = int(ore[max(0, cx - 2):cx + 3, max(0, cy - 2):cy + 3].sum())
            dist = abs(ex - pos[0]) + abs(ey - pos[1])
            return dist - (8 * wet + 4 * (depth >= 3) + 0.3 * room if dist <= 20 else 0)

        return sorted(sites, key=key)

    def _night(self, env: crafter.Env, phase: int, zombie_dist: int, dusk: int) -> str | None:
        """The night in a tunnel dug into stone (None when not sheltering): from phase ``dusk`` pick a
        site (:meth:`_site_order`), walk there, dig 3 (or 2) tiles in, come back to the first tile and
        seal the entrance with a stone block; with 3 tiles, put a table in the last one. Sealed in,
        see :meth:`_shelter_busy`; in the morning (:meth:`_keep_sealed`) mine the block and step out."""
        player, world = env._player, env._world
        inv = player.inventory
        pos = (int(player.pos[0]), int(player.pos[1]))
        facing = (int(player.facing[0]), int(player.facing[1]))
        night = dusk <= phase < 262
        sh = self.shelter
        if sh is None:
            if not night or phase >= 220 or not inv["wood_pickaxe"] or env._step < self.next_shelter_search:
                return None
            sites = self._site_order(world, pos, _tunnel_sites(world, 3) + _tunnel_sites(world, 2))
            for entrance, d, depth in sites[:6]:
                if entrance == pos or _first_step(world, player.pos, entrance) is not None:
                    sh = self.shelter = {"E": entrance, "d": d, "depth": depth, "stage": "go", "sealed": False}
                    break
            else:
                self.next_shelter_search = env._step + 15
                return None
        (ex, ey), (dx, dy), depth = sh["E"], sh["d"], sh["depth"]
        cells = [(ex + k * dx, ey + k * dy) for k in range(1, depth + 1)]
        fwd, back = _DIR_TO_MOVE[(dx, dy)], _DIR_TO_MOVE[(-dx, -dy)]
        stage = sh["stage"]
        if stage != "sealed" and (not night or phase >= 240 or (pos != sh["E"] and stage != "go" and pos not in cells)):
            self.shelter = None  # too late (or pushed off the plan): fight through the night instead
            return None
        if stage == "go":
            if pos != sh["E"]:
                first = _first_step(world, player.pos, sh["E"])
                if first is None:
                    self.shelter = None
                    self.next_shelter_search = env._step + 5
                    return None
                return self._safe_move(world, player.pos, first)
            stage = sh["stage"] = "dig"
        if stage == "dig":
            if pos != cells[-1]:
                material, obj = world[(pos[0] + dx, pos[1] + dy)]
                if material == "stone" or obj is not None:
                    return "do" if facing == (dx, dy) else fwd  # blocked ahead: the move only turns
                return fwd
            stage = sh["stage"] = "back"
        if stage == "back":
            if pos != cells[0]:
                material, obj = world[(pos[0] - dx, pos[1] - dy)]
                if obj is not None:
                    return "do" if facing == (-dx, -dy) else back
                return back
            stage = sh["stage"] = "seal"
        if stage == "seal":
            material, obj = world[sh["E"]]
            if material != "stone":
                if facing != (-dx, -dy):
                    sh["stage"] = "back"
                    return fwd  # step in again, to come back facing the entrance
                if obj is not None:
                    return "do"
                if not inv["stone"]:
                    self.shelter = None
                    return None
                return "place_stone"
            sh["sealed"] = True
            stage = sh["stage"] = "furnish" if depth >= 3 and inv["wood"] >= _TABLE_WOOD else "sealed"
        if stage == "furnish":
            last = cells[-1]
            if pos == cells[0]:
                return fwd  # to the second tile, facing the third
            if pos == cells[-2] and facing == (dx, dy) and world[last][0] == "path" and world[last][1] is None:
                sh["stage"] = "sealed"
                sh["next_work"] = env._step + int(self.rng.randint(4, 10))
                return "place_table"
            stage = sh["stage"] = "sealed"
        if 100 <= phase < 262:
            return self._shelter_busy(env, sh, phase) or "noop"
        if self._keep_sealed(env, phase, zombie_dist):
            return self._shelter_busy(env, sh, phase) or "noop"
        if pos != cells[0]:
            return back
        material, obj = world[sh["E"]]
        if material == "stone":
            return "do" if facing == (-dx, -dy) else back  # dig out (the move only turns)
        if obj is not None:
            return "do" if facing == (-dx, -dy) else "noop"
        self.shelter = None
        return None

    def _keep_sealed(self, env: crafter.Env, phase: int, zombie_dist: int) -> bool:
        player, sh = env._player, self.shelter
        inv = player.inventory
        if phase >= 262 or phase < 10:
            want_out = False  # zombies keep spawning until full daylight
        elif min(inv["food"], inv["drink"]) == 0:
            want_out = True  # starving: out, zombies or not
        else:
            close = [z for z in env._world.objects if isinstance(z, crafter_objects.Zombie)
                     and np.abs(z.pos - player.pos).sum() <= 8]
            want_out = (not close or (len(close) == 1 and self._fit_to_fight(player))
                        or min(inv["food"], inv["drink"]) <= 2)
        (ex, ey), (dx, dy) = sh["E"], sh["d"]
        pos = (int(player.pos[0]), int(player.pos[1]))
        if want_out and pos not in ((ex + dx, ey + dy), (ex + 2 * dx, ey + 2 * dy)):
            sh["leaving"] = True  # back to the entrance first (see _shelter_busy)
            return True
        return not want_out

    def _gate(self, env: crafter.Env, sh: dict[str, Any]) -> str | None:
        """Fight zombies one at a time through the entrance: with a sword and 7+ health, mine the
        entrance block when a zombie is near it, hit whatever steps in (only one tile touches the
        tunnel), and put the block back once the entrance is clear (or health is down to 5)."""
        player, world = env._player, env._world
        inv = player.inventory
        (ex, ey), (dx, dy) = sh["E"], sh["d"]
        s1 = (ex + dx, ey + dy)
        pos = (int(player.pos[0]), int(player.pos[1]))
        facing = (int(player.facing[0]), int(player.facing[1]))
        material, obj = world[(ex, ey)]
        near = [z for z in world.objects if isinstance(z, crafter_objects.Zombie)
                and abs(int(z.pos[0]) - ex) + abs(int(z.pos[1]) - ey) <= 2]
        if not sh.get("gate") and material in _WALKABLE:
            sh["gate"] = env._step  # the entrance is open (an arrow broke a table there?): guard it, close it
        if sh.get("gate"):
            if material == "stone":
                sh.pop("gate")
                return None
            if isinstance(obj, crafter_objects.Zombie):
                return "do" if pos == s1 and facing == (-dx, -dy) else "noop"
            waited = env._step - sh["gate"]
            if obj is None and (not near or inv["health"] <= 5 or waited > 6) and inv["stone"]:
                sh["next_work"] = env._step + int(self.rng.randint(*self.WORK_GAP))
                sh["gate_closed"] = env._step
                return "place_stone" if pos == s1 and facing == (-dx, -dy) else "noop"
            return "noop"
        armed = inv["stone_sword"] or inv["wood_sword"]
        if (not near or not armed or inv["health"] < 7 or not inv["stone"] or material != "stone"
                or env._step < sh.get("gate_closed", -99) + 25):
            return None
        if pos != s1:
            goal = np.zeros(world.area, bool)
            goal[s1] = True
            box = self._window(world, player.pos, 10)
            x0, x1, y0, y1 = box
            walk, _ = self._sealed_area(world, box, pos)
            return self._go_act(env, goal[x0:x1, y0:y1], "noop", box=box, walk=walk, stand_on=True)
        if facing != (-dx, -dy):
            return _DIR_TO_MOVE[(-dx, -dy)]  # the entrance is stone: this only turns
        sh["gate"] = env._step
        return "do"

    def _shelter_busy(self, env: crafter.Env, sh: dict[str, Any], phase: int) -> str | None:
        """The night in the sealed tunnel as a mine and workshop: dig on through tiles that open onto
        nothing walkable (stone, coal, iron with a stone pickaxe), put a table, a furnace or a stone
        block into a freshly dug gap, craft at the table (iron tools too, with a furnace, coal and
        iron), drink where the mine meets water, fight zombies at the entrance (:meth:`_gate`); one
        thing every :attr:`WORK_GAP` steps, whichever unlocks the achievement it has unlocked least
        often; asleep in the darkest part of the night and when tired. None: nothing to do now."""
        player, world, rng = env._player, env._world, self.rng
        inv = player.inventory
        pos = (int(player.pos[0]), int(player.pos[1]))
        facing = (int(player.facing[0]), int(player.facing[1]))
        ahead = (pos[0] + facing[0], pos[1] + facing[1])
        box = self._window(world, player.pos, 10)
        walk, safe = self._sealed_area(world, box, pos)
        x0, x1, y0, y1 = box
        walk[pos[0] - x0, pos[1] - y0] = True
        if sh.get("leaving"):
            (ex, ey), (dx, dy) = sh["E"], sh["d"]
            if pos == (ex + dx, ey + dy):
                sh.pop("leaving")
                return "noop"
            goal = np.zeros_like(walk)
            if x0 <= ex + dx < x1 and y0 <= ey + dy < y1:
                goal[ex + dx - x0, ey + dy - y0] = True
            return self._go_act(env, goal, "noop", box=box, walk=walk, stand_on=True) or "noop"
        gate = self._gate(env, sh)
        if gate is not None:
            return gate
        nearby, _ = world.nearby(player.pos, 1)
        gap_ahead = sh.get("work") == ahead and world[ahead][0] == "path" and world[ahead][1] is None
        if gap_ahead and sh.get("now"):  # a gap that opens onto the outside: fill it at once
            sh.pop("now")
            for action, ok in (("place_table", "table" not in nearby and inv["wood"] >= _TABLE_WOOD),
                               ("place_furnace", "furnace" not in nearby and inv["stone"] >= _FURNACE_STONE),
                               ("place_stone", inv["stone"] >= 1)):
                if ok:
                    sh.pop("work")
                    sh["next_work"] = env._step + int(rng.randint(*self.WORK_GAP))
                    return action
        if inv["energy"] < _MAX["energy"] and (phase >= 150 or phase < 10):
            # sealed in, it is safe to sleep whenever tired (and a sleeper's hunger and thirst halve)
            return "sleep"
        if env._step < sh.get("next_work", 0):
            return None
        want_table = "table" not in nearby and inv["wood"] >= _TABLE_WOOD + 1
        want_furnace = "table" in nearby and "furnace" not in nearby and inv["stone"] >= _FURNACE_STONE
        if want_table or want_furnace:
            # No safe gap to put it in: open a wall tile next to it and fill it at once, when no zombie
            # is near (stone only, not next to lava or to a natural path, where arrows fly).
            zombies = [z.pos for z in world.objects if isinstance(z, crafter_objects.Zombie)]
            for ddx, ddy in _DIRS:
                x = (pos[0] + ddx, pos[1] + ddy)
                if world[x][0] != "stone" or world[x][1] is not None or x == sh["E"]:
                    continue
                around = [world[(x[0] + ox, x[1] + oy)][0] for ox, oy in _DIRS]
                if "lava" in around or None in around or any(
                        m == "path" and not walk[x[0] + ox - x0, x[1] + oy - y0]
                        if x0 <= x[0] + ox < x1 and y0 <= x[1] + oy < y1 else True
                        for (ox, oy), m in zip(_DIRS, around)):
                    continue
                if any(abs(int(z[0]) - x[0]) + abs(int(z[1]) - x[1]) <= 4 for z in zombies):
                    continue
                if facing != (ddx, ddy):
                    return _DIR_TO_MOVE[(ddx, ddy)]  # stone: the move only turns
                sh["work"], sh["now"] = x, True
                return "do"

        def done(action: str) -> str:
            sh["next_work"] = env._step + int(rng.randint(*self.WORK_GAP))
            sh.pop("work", None)
            return action

        # Everything it could do now, by the achievement it unlocks; the one unlocked least often in
        # this episode goes first (ties at random).
        counts = player.achievements
        options: list[tuple[str, str]] = []  # (achievement, what)
        if gap_ahead:
            if "table" not in nearby and inv["wood"] >= _TABLE_WOOD:
                options.append(("place_table", "place_table"))
            if "furnace" not in nearby and inv["stone"] >= _FURNACE_STONE:
                options.append(("place_furnace", "place_furnace"))
            if inv["stone"] >= 1:
                options.append(("place_stone", "place_stone"))
        else:
            sh.pop("work", None)
        if inv["wood"] >= 1:  # crafts at a table in the mine (walking back to it if need be)
            options += [("make_wood_pickaxe", "make_wood_pickaxe"), ("make_wood_sword", "make_wood_sword")]
            if inv["stone"] >= 1:
                options += [("make_stone_pickaxe", "make_stone_pickaxe"), ("make_stone_sword", "make_stone_sword")]
            if "table" in nearby and "furnace" in nearby and inv["coal"] >= 1 and inv["iron"] >= 1:
                options += [("make_iron_pickaxe", "make_iron_pickaxe"), ("make_iron_sword", "make_iron_sword")]
        if inv["drink"] < _MAX["drink"]:
            options.append(("collect_drink", "drink"))
        options += [("collect_coal", "coal"), ("collect_stone", "stone")]
        if inv["stone_pickaxe"]:
            options.append(("collect_iron", "iron"))
        if inv["iron_pickaxe"]:
            options.append(("collect_diamond", "diamond"))
        options.sort(key=lambda o: counts[o[0]] + rng.uniform(0, 0.9))
        mat = world._mat_map[x0:x1, y0:y1]
        for _, what in options:
            if what == "drink":
                action = self._go_material(env, "water", box=box, walk=walk)
                if action is not None:
                    return done(action) if action == "do" else action
            elif what in ("coal", "stone", "iron", "diamond"):
                action = self._go_act(env, safe & (mat == world._mat_ids[what]), "do", box=box, walk=walk,
                                      diggable=safe)
                if action is not None:
                    if action == "do":
                        sh["work"] = ahead  # a gap to fill next
                        sh["next_work"] = env._step + int(rng.randint(2, 6))
                    return action
            elif what.startswith("make_") and "table" not in nearby:
                action = self._go_act(env, mat == world._mat_ids["table"], what, box=box, walk=walk, eight=True)
                if action is not None:
                    return done(action) if action == what else action
            else:
                return done(what)
        return None

    # -- policy ----------------------------------------------------------------------------------------
    def act(self, env: crafter.Env) -> int:
        action = self._act(env)
        if action == "do":
            player, world = env._player, env._world
            ahead = player.pos + np.array(player.facing)
            if world[ahead][0] in ("stone", "coal", "iron", "diamond"):
                self._dug(world)[int(ahead[0]), int(ahead[1])] = True
        return ACTION_IDS[action]

    def _act(self, env: crafter.Env) -> str:
        self.why = "other"
        look = self._look(env)
        if isinstance(look, str):
            return look
        player, world, rng, inv, pos, material, obj, zombie, zombie_dist = look
        if self.target is None:
            dusk = 100 if inv["energy"] <= 2 else self.DUSK  # exhausted: early to bed
            if self.need is not None and (inv["food"] <= 6 or inv["drink"] <= 7) and inv["health"] >= 5:
                dusk = 150  # a last meal and drink first: the night is long
            action = self._night(env, env._step % 300, zombie_dist, dusk)
            if action is not None:
                self.why = "shelter"
                return action
        if zombie_dist <= 2 or (zombie_dist <= 6 and self._fit_to_fight(player)):
            action = self._pursue(env, "defeat_zombie")
            if action is not None:
                self.why = "fight"
                return action
        box = self._window(world, pos, 2)
        zone = self._skeleton_zone(world, box)
        if zone[int(pos[0]) - box[0], int(pos[1]) - box[2]]:  # in a skeleton's line of fire: step out
            away = [m for m, (dx, dy) in _MOVES.items() if world[pos + np.array((dx, dy))][1] is None
                    and world[pos + np.array((dx, dy))][0] in _SAFE
                    and not zone[int(pos[0]) + dx - box[0], int(pos[1]) + dy - box[2]]]
            if away:
                self.why = "skeleton"
                return away[rng.randint(len(away))]
        if rng.uniform() < self.eps or self.stuck > 6:
            self.why = "random"
            if self.stuck > 6:
                self.stuck = 0
            choice = ("move_left", "move_right", "move_up", "move_down", "do", "noop")[rng.randint(6)]
            return self._safe_move(world, pos, choice) if choice in _MOVES else choice

        if self.garden_build is not None and isinstance(world[self.garden_build["P"]][1], crafter_objects.Plant):
            action = self._plant_garden(env)  # planted: close the garden in before anything else
            if action is not None:
                self.why = "garden"
                return action
        # Needs first: drink and eat when low (refill, then back to the errands), nap when exhausted.
        full = 80 <= env._step % 300 < 262  # before the night: fill up
        if (self.need == "drink" and inv["drink"] >= _MAX["drink"] - (0 if full else 1)
                or self.need == "food" and inv["food"] >= (8 if full else 6)):
            self.need = None
        if self.need is None:
            phase = env._step % 300
            stock_up = self.target is None and 80 <= phase < 262  # before the night in the shelter
            top_up = self.target is None and 95 <= phase < 262  # last call
            if inv["drink"] <= (8 if top_up else 7 if stock_up else 5):
                self.need = "drink"
            elif inv["food"] <= (7 if top_up else 6 if stock_up else 5):
                self.need = "food"
        if self.need is not None:
            self.why = "need"
            far = self._window(world, pos, self.NEED_RADIUS)
            if self.need == "drink":
                action = self._go_material(env, "water", box=far)
            else:
                action = self._harvest(env)
                if action is None:
                    mask, box = self._object_targets(env, crafter_objects.Cow, radius=self.NEED_RADIUS)
                    action = self._go_act(env, mask, "do", box=box)
                if action is None:
                    action = self._pursue(env, "eat_plant")
            if action is not None:
                return action
            if inv["drink"] <= 3 or inv["food"] <= 3 or env._step % 300 >= 80:
                return self._explore(world, player)  # go and look for water / cows
        if inv["energy"] <= 2 and zombie_dist > 8 and _daylight(env._step + 60) > 0.6:
            return "sleep"  # exhausted; near the night it sleeps in the shelter instead (see dusk above)

        if self.target is None and 70 <= env._step % 300 < self.DUSK and inv["wood"] < self.NIGHT_WOOD:
            action = self._pursue(env, "collect_wood")  # wood for the night's table and crafts
            if action is not None:
                self.why = "stock"
                return action
        job = self._next_job(env, zombie_dist)
        action = self._pursue(env, job) if job is not None else None
        if action is None:
            if job is not None and self.target is None:
                self.retry_at[job] = env._step + 40
                self.job = None
            self.why = "wander"
            return self._wander(world, player)
        self.why = "job"
        return action


#: Every achievement an agent can be given as ``target`` (:func:`make_agent`).
PURSUABLE_TARGETS: frozenset[str] = frozenset(TRIAL_TARGETS) | frozenset(VariedAgent.ERRANDS)
