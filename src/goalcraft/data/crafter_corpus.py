"""Generate goalcraft's embedded demo corpus by playing the Crafter game.

The real inputs of goalcraft are Minecraft gameplay videos with YouTube transcripts and recorded
agent trials. None of those can ship with the package, so the demo pipeline and the end-to-end tests
run on a corpus made here instead: seeded scripted agents play Crafter (a 2-D Minecraft-like game),
the rendered frames become "gameplay videos", and every achievement the agents unlock is logged as a
ground-truth event. Transcripts are written from that event log the way a narrating player would
speak (around the moment something happens, mixed with filler talk, some lines overlapping), half as
JSON segments and half as YouTube auto-caption WebVTT. Agent trials are written in both layouts the
pipeline reads (goalcraft's ``video.mp4`` and STEVE-1's ``frames.mp4`` + ``len.txt``). Because the
ground truth is known exactly, the pipeline's clip windows, labels and success checks can be tested
against it.

Layout under ``root`` (see :func:`generate_crafter_corpus`)::

    manifest.jsonl                      one record per video (MineDojo YouTube-database fields)
    videos/<id>.mp4
    transcripts/<id>.json | <id>.vtt    [{"text", "start", "duration"}] or rolling WebVTT captions
    trials/<trial_id>/video.mp4 + metadata.json
    trials/<episode_id>/frames.mp4 + metadata.json + len.txt
    ground_truth/events.jsonl           every achievement unlock: source_id, source, achievement,
                                        step, frame, time
    tasks.json                          the Crafter task vocabulary (instruction, paraphrases,
                                        narration) for all 22 achievements

Everything is a pure function of the arguments: the same ``seed`` gives byte-identical files in any
process (see :class:`OrderedSet` for the one thing in Crafter that would otherwise vary).
"""

from __future__ import annotations

import collections
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import crafter
import numpy as np
from crafter import constants as crafter_constants
from crafter import engine as crafter_engine
from crafter import objects as crafter_objects

from goalcraft.data.video_writer import write_video
from goalcraft.storage import commit_directory, new_staging_dir, recover_directory

__all__ = [
    "ACHIEVEMENTS",
    "TASKS",
    "DEFAULT_SIZE",
    "TILE",
    "TRIAL_TAIL_FRAMES",
    "TRIAL_TARGETS",
    "CorpusSummary",
    "OrderedSet",
    "generate_crafter_corpus",
    "make_env",
]

ACHIEVEMENTS: tuple[str, ...] = tuple(crafter_constants.achievements)
_ACTION_IDS = {name: index for index, name in enumerate(crafter_constants.actions)}

# Frame size. Crafter renders ``size // view`` pixels per tile and ``size`` is (width, height): the
# canvas is built as (x, y) and transposed to (height, width) at the end of ``Env.render``. Crafter's
# textures are 16x16, so a view of (W / 16, H / 16) tiles gives undistorted, pixel-exact tiles. The
# default 256x160 is MineCLIP's native input size (160 x 256), so clips need no resize; the view is
# 16 x 10 tiles: 16 x 9 of world around the player plus one row of inventory.
TILE = 16
DEFAULT_SIZE = (256, 160)

# A trial's video goes on for this many frames after the success frame, then stops.
TRIAL_TAIL_FRAMES = 10

# Achievements the scripted agent reaches reliably within a trial's step cap; trial targets cycle
# through them. The others are still in tasks.json and can show up in the free-play videos.
TRIAL_TARGETS: tuple[str, ...] = (
    "collect_wood",
    "place_table",
    "collect_drink",
    "eat_cow",
    "collect_sapling",
    "make_wood_pickaxe",
    "place_plant",
    "wake_up",
    "make_wood_sword",
)


def _task(instruction: str, paraphrases: list[str], narration: list[str]) -> dict[str, Any]:
    return {"instruction": instruction, "paraphrases": paraphrases, "narration": narration}


TASKS: dict[str, dict[str, Any]] = {
    "collect_coal": _task(
        "mine coal",
        ["collect some coal", "dig coal out of the rock"],
        ["nice, there's coal in this rock", "got a piece of coal", "mining this coal real quick"],
    ),
    "collect_diamond": _task(
        "mine a diamond",
        ["collect a diamond", "dig up a diamond"],
        ["no way, a diamond!", "we just mined a diamond", "finally got a diamond"],
    ),
    "collect_drink": _task(
        "drink water",
        ["get a drink from the lake", "drink some water from the pond"],
        ["let's grab a drink from this water", "I'm thirsty, drinking some water", "water, perfect, let me drink"],
    ),
    "collect_iron": _task(
        "mine iron",
        ["collect iron ore", "dig out some iron"],
        ["we found iron, mining it now", "got some iron ore", "iron, that's what we needed"],
    ),
    "collect_sapling": _task(
        "collect a sapling",
        ["pick up a sapling from the grass", "gather a sapling"],
        ["oh we got a sapling from the grass", "found a little sapling here", "picked up a sapling"],
    ),
    "collect_stone": _task(
        "mine stone",
        ["collect some stone", "break the rock to get stone"],
        ["mining some stone now", "got stone with the pickaxe", "let's break this stone"],
    ),
    "collect_wood": _task(
        "chop a tree",
        ["collect wood", "punch a tree to get wood", "gather some logs"],
        ["let's punch this tree for some wood", "got some wood", "chopping down this tree"],
    ),
    "defeat_skeleton": _task(
        "defeat a skeleton",
        ["kill a skeleton", "fight the skeleton in the cave"],
        ["took down that skeleton", "skeleton defeated", "got him, the skeleton is gone"],
    ),
    "defeat_zombie": _task(
        "defeat a zombie",
        ["kill a zombie", "fight off the zombie"],
        ["killed the zombie", "that zombie is down", "take that, zombie"],
    ),
    "eat_cow": _task(
        "eat a cow",
        ["hunt a cow for food", "kill a cow and eat it"],
        ["there's a cow, let's get some food", "got the cow, food is full now", "mmm, steak"],
    ),
    "eat_plant": _task(
        "eat a plant",
        ["eat a ripe plant", "harvest the plant and eat it"],
        ["the plant is ripe, eating it", "eating the plant we grew", "our crop is ready, yum"],
    ),
    "make_iron_pickaxe": _task(
        "craft an iron pickaxe",
        ["make an iron pickaxe", "build an iron pickaxe at the table and furnace"],
        ["crafting an iron pickaxe", "iron pickaxe done", "now we have an iron pickaxe"],
    ),
    "make_iron_sword": _task(
        "craft an iron sword",
        ["make an iron sword", "forge an iron sword"],
        ["crafting an iron sword", "iron sword ready", "look at this iron sword"],
    ),
    "make_stone_pickaxe": _task(
        "craft a stone pickaxe",
        ["make a stone pickaxe", "build a pickaxe out of stone"],
        ["making a stone pickaxe", "stone pickaxe crafted", "upgraded to a stone pickaxe"],
    ),
    "make_stone_sword": _task(
        "craft a stone sword",
        ["make a stone sword", "build a sword out of stone"],
        ["making a stone sword", "stone sword crafted", "upgraded to a stone sword"],
    ),
    "make_wood_pickaxe": _task(
        "craft a wooden pickaxe",
        ["make a wood pickaxe", "build a pickaxe at the crafting table"],
        ["let's make a wooden pickaxe", "wooden pickaxe crafted", "now we've got a pickaxe"],
    ),
    "make_wood_sword": _task(
        "craft a wooden sword",
        ["make a wood sword", "build a sword at the crafting table"],
        ["let's make a wooden sword", "wooden sword crafted", "now we've got a sword"],
    ),
    "place_furnace": _task(
        "place a furnace",
        ["build a furnace", "put down a furnace next to the table"],
        ["placing the furnace here", "furnace is down", "there's our furnace"],
    ),
    "place_plant": _task(
        "plant a sapling",
        ["place a sapling on the grass", "plant a tree"],
        ["let's plant this sapling right here", "planting the sapling", "there, the sapling is planted"],
    ),
    "place_stone": _task(
        "place a stone block",
        ["put down a stone block", "build with stone"],
        ["placing a stone block here", "putting some stone down", "let's block this off with stone"],
    ),
    "place_table": _task(
        "place a crafting table",
        ["build a crafting table", "put down a workbench"],
        ["let's put down a crafting table", "crafting table placed", "there's our workbench"],
    ),
    "wake_up": _task(
        "go to sleep and wake up",
        ["sleep until you are rested", "take a nap and wake up"],
        ["good morning, we slept it off", "and we're awake again", "rise and shine"],
    ),
}
assert set(TASKS) == set(ACHIEVEMENTS), "tasks.json must cover every Crafter achievement"

_FILLER_DAY = (
    "alright let's look around",
    "okay where are we",
    "let's head over this way",
    "not much going on over here",
    "let's keep moving",
    "hmm what's over there",
    "this looks like a nice spot",
    "we need to find some resources",
    "let's explore a little more",
    "so many trees around here",
    "I'll just walk around for a bit",
    "let me check the inventory real quick",
)
_FILLER_NIGHT = (
    "it's getting dark",
    "careful, zombies come out at night",
    "it's really dark now",
    "I can barely see anything",
)
_FILLER_START = ("hey everyone, welcome back to crafter", "hi guys, new world today", "okay let's get started")


# --------------------------------------------------------------------------------------------
# Deterministic Crafter
# --------------------------------------------------------------------------------------------


class OrderedSet:
    """A set that iterates in insertion order (dict-backed).

    Crafter keeps each world chunk's objects in a ``set``; ``Env.step`` walks those sets when it
    spawns and despawns creatures and draws random numbers per object, so with a plain ``set`` the
    order (hence the world) depends on object hashes, which are memory addresses and differ between
    processes. Only the methods ``crafter.engine.World`` uses are provided.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Any = ()) -> None:
        self._items: dict[Any, None] = dict.fromkeys(items)

    def add(self, item: Any) -> None:
        self._items[item] = None

    def remove(self, item: Any) -> None:
        del self._items[item]

    def discard(self, item: Any) -> None:
        self._items.pop(item, None)

    def copy(self) -> "OrderedSet":
        return OrderedSet(self._items)

    def __contains__(self, item: object) -> bool:
        return item in self._items

    def __iter__(self) -> Iterator[Any]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"OrderedSet({list(self._items)!r})"


class _OrderedWorld(crafter_engine.World):
    """``crafter.engine.World`` whose chunks hold :class:`OrderedSet` instead of ``set``."""

    def reset(self, seed: int | None = None) -> None:
        super().reset(seed)
        self._chunks = collections.defaultdict(OrderedSet)


def make_env(seed: int, size: tuple[int, int] = DEFAULT_SIZE) -> crafter.Env:
    """A Crafter env with a deterministic world, rendering ``size`` = (width, height) frames.

    Width and height must be multiples of :data:`TILE` (undistorted 16-pixel tiles, even sizes).
    The env's world is switched to :class:`_OrderedWorld` (this instance only; crafter itself is not
    touched). Crafter seeds each episode's world with ``hash((seed, episode))``, a hash of ints,
    which Python does not randomize per process (PYTHONHASHSEED only affects str/bytes); its other
    sets (``World.nearby``, the unlocked-achievement set) are only used for membership tests.
    """
    width, height = size
    if width % TILE or height % TILE or width < TILE * 9 or height < TILE * 5:
        raise ValueError(f"size must be (width, height) multiples of {TILE} and at least 144x80, got {size}")
    env = crafter.Env(area=(64, 64), view=(width // TILE, height // TILE), size=(width, height), seed=int(seed))
    env._world.__class__ = _OrderedWorld  # same state, only reset() differs; applied before reset
    return env


# --------------------------------------------------------------------------------------------
# Scripted agent
# --------------------------------------------------------------------------------------------

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


class _Agent:
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
        return _ACTION_IDS[self._act(env)]

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


# --------------------------------------------------------------------------------------------
# Episodes
# --------------------------------------------------------------------------------------------


@dataclass
class _Episode:
    frames: list[np.ndarray]
    events: list[tuple[int, str]]  # (step, achievement), in order
    daylight: list[float]
    success_frame: int | None = None
    died: bool = False


def _play(env_seed: int, policy_seed: int, size: tuple[int, int], max_steps: int,
          target: str | None = None, tail: int = TRIAL_TAIL_FRAMES) -> _Episode:
    """Play one episode; frame ``t`` is the observation after step ``t`` (frame 0: reset).

    Without ``target`` it runs ``max_steps`` steps. With a target it stops ``tail`` steps after the
    first unlock of the target (even if that runs past ``max_steps``), or after ``max_steps`` steps
    without one. It stops early if the player dies (``died``).
    """
    env = make_env(env_seed, size)
    agent = _Agent(np.random.RandomState(policy_seed), target)
    episode = _Episode([env.reset()], [], [float(env._world.daylight)])
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


def _play_until_alive(seed: int, kind: int, index: int, size: tuple[int, int], max_steps: int,
                      target: str | None = None, attempts: int = 8) -> tuple[_Episode, int]:
    """Play; if the player dies before the episode is complete, replay in another world."""
    for attempt in range(attempts):
        env_seed, policy_seed = (int(x) for x in _seq(seed, kind, index, attempt).generate_state(2) % (2**31 - 1))
        episode = _play(env_seed, policy_seed, size, max_steps, target)
        if not episode.died:
            break
    return episode, env_seed


# --------------------------------------------------------------------------------------------
# Transcripts
# --------------------------------------------------------------------------------------------


def _floor3(x: float) -> float:
    return float(np.floor(x * 1000.0) / 1000.0)


def _ceil3(x: float) -> float:
    return float(np.ceil(x * 1000.0) / 1000.0)


def _transcript(events: list[tuple[int, str]], daylight: list[float], fps: int, duration: float,
                rng: np.random.RandomState) -> list[dict[str, Any]]:
    """Narrated segments for a video: one around each unlock (merged while one line covers repeats
    of the same achievement), filler talk in the gaps; some lines overlap."""
    spans: list[tuple[float, float, str]] = []
    open_until: dict[str, float] = {}
    for step, name in events:
        t = step / fps
        if open_until.get(name, -1.0) >= t:
            continue  # still talking about the last one
        start = max(0.0, _floor3(t - rng.uniform(1.0, 2.0)))
        end = min(duration, _ceil3(t + rng.uniform(0.8, 2.0)))
        phrases = TASKS[name]["narration"]
        spans.append((start, end, phrases[rng.randint(len(phrases))]))
        open_until[name] = end
    spans.sort()

    fillers: list[tuple[float, float, str]] = []
    covered = 0.0
    for next_start, next_end in [(s, e) for s, e, _ in spans] + [(duration, duration)]:
        while True:  # talk through the gap before the next narrated line
            start = covered + rng.uniform(0.1, 1.2)
            end = start + rng.uniform(1.5, 3.0)
            if end > min(duration, next_start + 0.6):  # may run a little into the next line
                break
            frame = min(len(daylight) - 1, int(start * fps))
            if not fillers and start < 4.0:
                pool = _FILLER_START
            else:
                pool = _FILLER_NIGHT if daylight[frame] < 0.35 else _FILLER_DAY
            fillers.append((_floor3(start), _ceil3(end), pool[rng.randint(len(pool))]))
            covered = end - rng.uniform(0.0, 0.4)
        covered = max(covered, next_end)
    segments = sorted(spans + fillers)
    return [
        {"text": text, "start": start, "duration": round(end - start, 3)}
        for start, end, text in segments
    ]


def _vtt_time(t: float) -> str:
    ms = int(round(t * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def _vtt(segments: list[dict[str, Any]]) -> str:
    """YouTube auto-caption style WebVTT: each cue shows the previous line, then the new line with
    per-word timing tags; a 10 ms cue then shows the finished line alone (as YouTube does)."""
    lines = ["WEBVTT", "Kind: captions", "Language: en", ""]
    starts: list[float] = []
    for seg in segments:
        start = seg["start"] if not starts else max(seg["start"], starts[-1] + 0.05)
        starts.append(round(start, 3))
    previous = ""
    for i, seg in enumerate(segments):
        start = starts[i]
        end = round(seg["start"] + seg["duration"], 3)
        if i + 1 < len(segments):
            end = min(end, starts[i + 1] - 0.01)
        end = round(max(end, start + 0.02), 3)
        words = seg["text"].split()
        step = (end - start) / max(1, len(words))
        timed = words[0] + "".join(
            f"<{_vtt_time(start + k * step)}><c> {w}</c>" for k, w in enumerate(words[1:], start=1))
        lines += [f"{_vtt_time(start)} --> {_vtt_time(end)} align:start position:0%", previous or " ", timed, ""]
        lines += [f"{_vtt_time(end)} --> {_vtt_time(end + 0.01)} align:start position:0%", seg["text"], " ", ""]
        previous = seg["text"]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CorpusSummary:
    """What :func:`generate_crafter_corpus` wrote."""

    root: Path
    seed: int
    videos: int
    trials: int
    episodes: int
    events: int
    successes: int  # trials + STEVE-1 episodes that reached their target
    unlocks: dict[str, int]  # achievement -> number of unlock events, whole corpus
    video_ids: tuple[str, ...] = ()
    trial_ids: tuple[str, ...] = ()
    episode_ids: tuple[str, ...] = ()
    manifest_path: Path = field(default=Path())
    events_path: Path = field(default=Path())
    tasks_path: Path = field(default=Path())


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _seq(seed: int, *key: int) -> np.random.SeedSequence:
    """Independent, stable random streams: one per (kind, index, ...) under the corpus seed."""
    return np.random.SeedSequence(entropy=seed, spawn_key=key)


_TITLES = (
    "Crafter let's play #{n}: {highlights}",
    "Crafter survival ep. {n} - {highlights}",
    "My Crafter world, part {n}: {highlights}",
    "Crafter #{n} | {highlights} (no commentary... just kidding)",
)


def _title(index: int, episode: _Episode, rng: np.random.RandomState) -> str:
    """A YouTube-ish title naming the video's rarest unlocks, in the order they happened."""
    counts = collections.Counter(name for _, name in episode.events)
    if not counts:
        highlights = "just exploring"
    else:
        rarest = sorted(counts, key=lambda n: (counts[n], ACHIEVEMENTS.index(n)))[:3]
        names = [TASKS[n]["instruction"] for n in dict.fromkeys(n for _, n in episode.events) if n in rarest]
        highlights = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return _TITLES[rng.randint(len(_TITLES))].format(n=index + 1, highlights=highlights)


def generate_crafter_corpus(
    root: Path,
    *,
    seed: int = 0,
    n_videos: int = 6,
    steps_per_video: int = 300,
    n_trials: int = 4,
    n_steve1_episodes: int = 2,
    fps: int = 10,
    size: tuple[int, int] = DEFAULT_SIZE,
    trial_max_steps: int = 250,
    progress: Callable[[str], None] | None = None,
) -> CorpusSummary:
    """Play Crafter and write the demo corpus under ``root`` (layout in the module docstring).

    ``size`` is (width, height) of every video, multiples of 16 (default 256x160). Videos have
    ``steps_per_video + 1`` frames; frame ``t`` shows the game after step ``t`` and an unlock at step
    ``t`` has ``time = t / fps``. Trials and STEVE-1 episodes stop :data:`TRIAL_TAIL_FRAMES` frames
    after their target's first unlock, or after ``trial_max_steps`` steps (then unsuccessful).

    The corpus is built in a temporary directory next to ``root`` and swapped in, so readers never
    see a partial corpus; an existing non-corpus directory at ``root`` is refused, not replaced.
    The output is a pure function of the arguments (byte-identical across runs and processes).
    """
    root = Path(os.path.abspath(root))
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    seed = int(seed)
    if steps_per_video < 1 or trial_max_steps < 1 or fps <= 0:
        raise ValueError("steps_per_video, trial_max_steps and fps must be positive")
    if root.exists() and any(root.iterdir()) and not (root / "manifest.jsonl").exists():
        raise FileExistsError(f"{root} exists and is not a goalcraft corpus; refusing to replace it")
    say = progress or (lambda _msg: None)

    staging_root = root.parent / f".{root.name}.staging"
    recover_directory(root, staging_root)
    staging = new_staging_dir(root, staging_root)
    try:
        summary = _generate(staging, root, seed, n_videos, steps_per_video, n_trials, n_steve1_episodes,
                            fps, tuple(size), trial_max_steps, say)
        commit_directory(staging, root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if staging_root.is_dir() and not any(staging_root.iterdir()):
            staging_root.rmdir()
    say(f"corpus written to {root}: {summary.videos} videos, {summary.trials} trials, "
        f"{summary.episodes} episodes, {summary.events} events")
    return summary


def _generate(out: Path, root: Path, seed: int, n_videos: int, steps_per_video: int, n_trials: int,
              n_episodes: int, fps: int, size: tuple[int, int], trial_max_steps: int,
              say: Callable[[str], None]) -> CorpusSummary:
    for sub in ("videos", "transcripts", "trials", "ground_truth"):
        (out / sub).mkdir(parents=True)
    events: list[dict[str, Any]] = []
    manifest: list[dict[str, Any]] = []

    def log(source_id: str, source: str, episode: _Episode) -> None:
        for step, name in episode.events:
            events.append({"source_id": source_id, "source": source, "achievement": name,
                           "step": step, "frame": step, "time": step / fps})

    video_ids = []
    for i in range(n_videos):
        vid = f"crafter-{seed}-v{i:02d}"
        episode, _env_seed = _play_until_alive(seed, 1, i, size, steps_per_video)
        info = write_video(out / "videos" / f"{vid}.mp4", episode.frames, fps)
        duration = round(info.frames / fps, 3)
        meta_rng = np.random.RandomState(_seq(seed, 2, i).generate_state(1)[0])
        segments = _transcript(episode.events, episode.daylight, fps, duration, meta_rng)
        if i % 2 == 0:
            transcript = f"transcripts/{vid}.json"
            _write_json(out / transcript, segments)
        else:
            transcript = f"transcripts/{vid}.vtt"
            (out / transcript).write_text(_vtt(segments), encoding="utf-8")
        views = int(10 ** meta_rng.uniform(2.5, 5.5))
        manifest.append({
            "id": vid,
            "title": _title(i, episode, meta_rng),
            "link": f"file://videos/{vid}.mp4",
            "view_count": views,
            "like_count": int(views * meta_rng.uniform(0.01, 0.06)),
            "duration": duration,
            "fps": fps,
            "path": f"videos/{vid}.mp4",
            "transcript": transcript,
        })
        log(vid, "video", episode)
        video_ids.append(vid)
        say(f"video {vid}: {info.frames} frames, {len(episode.events)} unlocks")

    order = np.random.RandomState(_seq(seed, 3, 0).generate_state(1)[0]).permutation(len(TRIAL_TARGETS))
    trial_ids, episode_ids, successes = [], [], 0
    for j in range(n_trials + n_episodes):
        steve1 = j >= n_trials
        tid = f"crafter-{seed}-s{j - n_trials:02d}" if steve1 else f"crafter-{seed}-t{j:02d}"
        target = TRIAL_TARGETS[order[j % len(TRIAL_TARGETS)]]
        episode, env_seed = _play_until_alive(seed, 4, j, size, trial_max_steps, target)
        tdir = out / "trials" / tid
        tdir.mkdir()
        info = write_video(tdir / ("frames.mp4" if steve1 else "video.mp4"), episode.frames, fps)
        success = episode.success_frame is not None
        successes += success
        meta = {
            "instruction": TASKS[target]["instruction"],
            "task": target,
            "success": success,
            "success_time": episode.success_frame / fps if success else None,
            "success_frame": episode.success_frame,
            "fps": fps,
            "seed": env_seed,
        }
        _write_json(tdir / "metadata.json", meta)
        if steve1:
            (tdir / "len.txt").write_text(str(info.frames), encoding="utf-8")
            episode_ids.append(tid)
        else:
            trial_ids.append(tid)
        log(tid, "trial", episode)
        say(f"{'episode' if steve1 else 'trial'} {tid}: {target} "
            f"{'succeeded at frame ' + str(episode.success_frame) if success else 'failed'}")

    _write_jsonl(out / "manifest.jsonl", manifest)
    _write_jsonl(out / "ground_truth" / "events.jsonl", events)
    _write_json(out / "tasks.json", TASKS)
    unlocks = dict.fromkeys(ACHIEVEMENTS, 0)
    for event in events:
        unlocks[event["achievement"]] += 1
    return CorpusSummary(
        root=root, seed=seed, videos=len(video_ids), trials=len(trial_ids), episodes=len(episode_ids),
        events=len(events), successes=successes, unlocks=unlocks, video_ids=tuple(video_ids),
        trial_ids=tuple(trial_ids), episode_ids=tuple(episode_ids),
        manifest_path=root / "manifest.jsonl", events_path=root / "ground_truth" / "events.jsonl",
        tasks_path=root / "tasks.json",
    )
