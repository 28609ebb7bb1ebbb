"""The deterministic Crafter env: ordered world chunks, frame size, and seeds that do not depend on
the process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from goalcraft.crafter.deterministic_env import OrderedSet, make_env


def test_ordered_world_chunks_and_frame_size() -> None:
    items = OrderedSet()
    for x in ("c", "a", "b", "a"):
        items.add(x)
    items.remove("c")
    assert list(items) == ["a", "b"] and len(items) == 2 and "a" in items and "c" not in items

    env = make_env(7)
    obs = env.reset()
    assert obs.shape == (160, 256, 3)
    chunks = env._world._chunks
    assert chunks.default_factory is OrderedSet
    assert chunks and all(isinstance(objs, OrderedSet) for objs in chunks.values())
    with pytest.raises(ValueError):
        make_env(7, size=(250, 160))


def test_crafter_world_seed_hash_is_process_independent() -> None:
    # crafter seeds each episode with hash((seed, episode)): ints only, so PYTHONHASHSEED (which
    # randomizes str/bytes hashes) does not change it.
    code = "print(hash((12345, 1)), hash('crafter'))"
    outs = [
        subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONHASHSEED=str(h)),
                       capture_output=True, text=True, check=True).stdout.split()
        for h in (1, 2)
    ]
    assert outs[0][0] == outs[1][0]
    assert outs[0][1] != outs[1][1]


_WORLD_DIGEST = """
import hashlib, sys
if sys.argv[1] == "python":
    sys.modules["numba"] = None  # opensimplex then keeps its pure-Python noise
from goalcraft.crafter.deterministic_env import COMPILED_NOISE, make_env
h = hashlib.sha256()
for seed in (3, 2024):
    env = make_env(seed)
    obs = env.reset()
    world = env._world
    h.update(world._mat_map.tobytes() + obs.tobytes())
    h.update(repr([(type(o).__name__, tuple(o.pos)) for o in world.objects]).encode())
    for step in range(30):
        obs, *_ = env.step(step % 17)
    h.update(obs.tobytes())
print(COMPILED_NOISE, h.hexdigest())
"""


@pytest.mark.slow
def test_compiled_noise_is_in_use_and_draws_the_same_worlds_as_pure_python() -> None:
    # numba is a dependency for speed only: the worlds (materials, creatures, frames, and the game
    # after 30 steps) must be those of opensimplex's pure-Python noise, bit for bit.
    outs = {mode: subprocess.run([sys.executable, "-c", _WORLD_DIGEST, mode], capture_output=True, text=True,
                                 check=True).stdout.split()
            for mode in ("python", "compiled")}
    assert outs["python"][0] == "False" and outs["compiled"][0] == "True"
    assert outs["python"][1] == outs["compiled"][1]


def _crafter_own_view(env, tile: int) -> None:
    """Swap the env's view back to Crafter's own drawing (with the 16-px night noise at other sizes)."""
    from crafter import engine

    from goalcraft.crafter import deterministic_env as de

    if tile == de.TILE:
        env._local_view.__class__ = engine.LocalView
    else:
        env._local_view.__class__ = type("CraftersOwnScaled", (engine.LocalView,),
                                         {"_noise": de._ScaledNoiseLocalView._noise, "scale": de.TILE // tile})


@pytest.mark.parametrize("size,tile", [((64, 40), 4), pytest.param((256, 160), 16, marks=pytest.mark.slow)])
def test_the_gathered_view_draws_crafters_pixels_through_night_and_sleep(size, tile) -> None:
    """make_env's view draws its tiles in one gather; every frame of a long played episode is the
    one Crafter's own per-tile loop draws, through a night (noise, tint) and sleep, with creatures."""
    import numpy as np

    from goalcraft.crafter.agent import make_agent

    def play(own: bool) -> tuple[np.ndarray, int, float, int]:
        env = make_env(2, size, tile=tile)
        if own:
            _crafter_own_view(env, tile)
        agent = make_agent(np.random.RandomState(2), None, varied=True)
        frames, sleeping, darkest, creatures = [env.reset()], 0, 1.0, 0
        for _ in range(450):
            obs, _reward, done, _info = env.step(agent.act(env))
            frames.append(obs)
            sleeping += bool(env._player.sleeping)
            darkest = min(darkest, float(env._world.daylight))
            creatures = max(creatures, sum(type(o).__name__ in ("Zombie", "Cow") for o in env._world.objects))
            if done:
                break
        return np.stack(frames), sleeping, darkest, creatures

    fast, sleeping, darkest, creatures = play(own=False)
    own, *_ = play(own=True)
    assert sleeping > 10 and darkest < 0.2 and creatures > 0 and len(fast) > 400  # the episode covers them
    assert fast.shape == own.shape and np.array_equal(fast, own)


def test_the_gathered_view_at_the_edge_of_the_world_leaves_outside_tiles_grey() -> None:
    """Near the world's edge part of the view is outside it: those tiles stay Crafter's 127 grey,
    the rest are the same pixels as Crafter's own view."""
    import numpy as np

    for corner in ((0, 0), (63, 63), (0, 40)):
        frames = []
        for own in (False, True):
            env = make_env(4, (64, 40), tile=4)
            if own:
                _crafter_own_view(env, 4)
            env.reset()
            player = env._player
            target = np.array(corner)
            occupant = env._world[target][1]
            if occupant is not None and occupant is not player:
                env._world.remove(occupant)
            env._world.move(player, target)
            frames.append(env.render())
        fast, own = frames
        assert np.array_equal(fast, own)
        # (0, 0): the view's 8 left columns and 4 top rows are outside the world: one flat grey (127,
        # through the light of the hour), unlike the world's tiles.
        if corner == (0, 0):
            outside, inside = fast[:4 * 4, :4 * 8].reshape(-1, 3), fast[4 * 4:4 * 9, 4 * 8:].reshape(-1, 3)
            assert (outside == outside[0]).all() and not (inside == outside[0]).all(axis=1).all()
