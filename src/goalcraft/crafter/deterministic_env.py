"""A Crafter env whose world is a pure function of its seed, in any process.

Crafter keeps each world chunk's objects in a ``set`` and walks those sets when it spawns and
despawns creatures, so its worlds would depend on object hashes (memory addresses). :func:`make_env`
swaps in :class:`OrderedSet` on one env instance; the crafter package itself is not patched.
"""

from __future__ import annotations

import collections
from typing import Any, Iterator

import crafter
import numpy as np
from crafter import engine as crafter_engine
from opensimplex import internals as _opensimplex

__all__ = ["COMPILED_NOISE", "DEFAULT_SIZE", "TILE", "OrderedSet", "make_env"]

#: Whether Crafter's world generator runs on compiled noise: opensimplex jit-compiles its noise
#: functions with numba when numba is importable (a goalcraft dependency). A world then takes ~0.13 s
#: instead of ~1.3 s, a study trial 0.8 s instead of 2.0 s (bench/worldgen.py, docs/benchmarks.md); the worlds are the
#: same bit for bit either way (tests/test_crafter_env.py), so this changes speed only.
COMPILED_NOISE: bool = hasattr(_opensimplex._noise3, "py_func")  # a numba dispatcher keeps the Python function

# Frame size. Crafter renders ``size // view`` pixels per tile and ``size`` is (width, height): the
# canvas is built as (x, y) and transposed to (height, width) at the end of ``Env.render``. Crafter's
# textures are 16x16, so a view of (W / 16, H / 16) tiles gives undistorted, pixel-exact tiles. The
# default 256x160 is MineCLIP's native input size (160 x 256), so clips need no resize; the view is
# 16 x 10 tiles: 16 x 9 of world around the player plus one row of inventory.
TILE = 16
DEFAULT_SIZE = (256, 160)


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


class _FastLocalView(crafter_engine.LocalView):
    """``crafter.engine.LocalView`` drawing its material tiles in one gather instead of a Python loop
    over the view's tiles (three quarters of an env step's time at 64x40: bench/rollout_throughput.py).
    The pixels are Crafter's bit for bit (tests/test_crafter_env.py): the same textures
    (``Textures.get``), outside-the-world tiles left at 127, objects alpha-blended one by one with
    Crafter's ``_draw_alpha`` in the order ``World.objects`` lists them (index order, found through
    the object map of the view's window instead of walking every object of the world), then
    Crafter's own ``_light`` and ``_sleep``."""

    def __call__(self, player: Any, unit: Any) -> np.ndarray:
        unit = np.array(unit)
        ux, uy = int(unit[0]), int(unit[1])
        (gx, gy), (ox, oy) = self._grid.tolist(), self._offset.tolist()
        world = self._world
        x0, y0 = int(player.pos[0]) - ox, int(player.pos[1]) - oy
        # The view's window clipped to the world: [ax0, ax1) x [ay0, ay1) in world cells.
        ax0, ay0 = max(x0, 0), max(y0, 0)
        ax1, ay1 = min(x0 + gx, world.area[0]), min(y0 + gy, world.area[1])
        canvas = np.full((gx * ux, gy * uy, 3), 127, np.uint8)
        if ax0 < ax1 and ay0 < ay1:
            ids = world._mat_map[ax0:ax1, ay0:ay1]
            present = np.unique(ids).tolist()
            atlas = np.zeros((max(present) + 1, ux, uy, 3), np.uint8)
            for i in present:
                texture = self._textures.get(world._mat_names[i], unit)
                atlas[i] = texture[..., :3]
            tiles = atlas[ids]  # [w, h, ux, uy, 3]
            w, h = ids.shape
            px, py = (ax0 - x0) * ux, (ay0 - y0) * uy
            canvas[px:px + w * ux, py:py + h * uy] = tiles.transpose(0, 2, 1, 3, 4).reshape(w * ux, h * uy, 3)
            indices = world._obj_map[ax0:ax1, ay0:ay1]
            for index in np.sort(indices[indices > 0]).tolist():
                obj = world._objects[index]
                pos = obj.pos - (x0, y0)
                crafter_engine._draw_alpha(canvas, pos * unit, self._textures.get(obj.texture, unit))
        self._center = np.array(player.pos)
        self._unit = unit
        canvas = self._light(canvas, world.daylight)
        if player.sleeping:
            canvas = self._sleep(canvas)
        return canvas


class _ScaledNoiseLocalView(_FastLocalView):
    """``crafter.engine.LocalView`` that draws its night noise at :data:`TILE` pixels a tile, whatever
    it renders at. Crafter draws that noise from the *world's* random state, one number per canvas
    pixel, so a render of another size would advance the world's RNG differently and change the game
    from the first night on. This view draws the 16-px canvas's numbers (the same stream the corpus's
    256x160 renders draw) and uses every ``scale``-th one."""

    scale = 1

    def _noise(self, canvas, amount, stddev):
        s = self.scale
        height, width = canvas.shape[:2]
        noise = self._world.random.uniform(32, 127, (height * s, width * s))[::s, ::s][..., None]
        mask = amount * self._vignette(canvas.shape, stddev)[..., None]
        return (1 - mask) * canvas + mask * noise


def make_env(seed: int, size: tuple[int, int] = DEFAULT_SIZE, *, tile: int = TILE) -> crafter.Env:
    """A Crafter env with a deterministic world, rendering ``size`` = (width, height) frames.

    Width and height must be multiples of ``tile``, the pixels per tile (default :data:`TILE`:
    undistorted 16-pixel tiles, even sizes; a divisor of 16); the view is ``size / tile`` tiles.
    ``make_env(s, (64, 40), tile=4)`` plays the same game as ``make_env(s)`` (16 x 10 tiles), rendered
    at 4 pixels a tile (the policy's frames): the world's dynamics depend on the view, and the one
    thing in a render that advances the world's random state (the night noise) is drawn as at 16 px
    (:class:`_ScaledNoiseLocalView`), so a recorded episode replays exactly at any tile size.
    The env's world is switched to :class:`_OrderedWorld` (this instance only; crafter itself is not
    touched). Crafter seeds each episode's world with ``hash((seed, episode))``, a hash of ints,
    which Python does not randomize per process (PYTHONHASHSEED only affects str/bytes); its other
    sets (``World.nearby``, the unlocked-achievement set) are only used for membership tests.
    """
    width, height = size
    if tile < 1 or TILE % tile or width % tile or height % tile or width < tile * 9 or height < tile * 5:
        raise ValueError(f"size must be (width, height) multiples of {tile} and at least {9 * tile}x{5 * tile}, "
                         f"got {size}")
    env = crafter.Env(area=(64, 64), view=(width // tile, height // tile), size=(width, height), seed=int(seed))
    env._world.__class__ = _OrderedWorld  # same state, only reset() differs; applied before reset
    env._local_view.__class__ = _FastLocalView if tile == TILE else _ScaledNoiseLocalView
    if tile != TILE:
        env._local_view.scale = TILE // tile
    return env
