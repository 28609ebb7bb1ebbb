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
