"""Crafter's world generation with opensimplex's pure-Python noise vs its numba-compiled noise
(goalcraft.crafter.deterministic_env.COMPILED_NOISE), measured in the same run, and what that does to
a study trial (play with pacing + encode its video, goalcraft.crafter.corpus).

    python bench/worldgen.py                # 12 worlds, 12 study trials, each way
    python bench/worldgen.py --worlds 30 --trials 0

Each mode runs in a subprocess of its own (numba blocked in the pure-Python one); the compiled one
first generates a world untimed, so numba's compile (or its cache load) is left out and reported
apart. The worlds' digests are compared: the two modes must draw the same worlds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile

_CHILD = r"""
import hashlib, json, sys, time
mode, worlds, trials, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
if mode == "python":
    sys.modules["numba"] = None
from goalcraft.crafter.deterministic_env import COMPILED_NOISE, make_env
from goalcraft.crafter import corpus
from goalcraft.crafter.tasks import STUDY_TRIAL_TARGETS, TRIAL_TARGETS
first = time.perf_counter()
make_env(10**6).reset()  # compile or load numba's cache; untimed for the rate
first = time.perf_counter() - first
h, t = hashlib.sha256(), time.perf_counter()
for seed in range(worlds):
    env = make_env(seed)
    env.reset()
    h.update(env._world._mat_map.tobytes())
world_s = (time.perf_counter() - t) / max(worlds, 1)
targets = list(TRIAL_TARGETS) + list(STUDY_TRIAL_TARGETS)
takes = [corpus._Take(0, 4, i, (256, 160), 300, targets[i % len(targets)], False, f"{out}/{mode}{i}.mp4", 10, None, 24)
         for i in range(trials)]
t = time.perf_counter()
frames = sum(corpus._play_and_write(take).frames for take in takes)
trial_s = (time.perf_counter() - t) / max(trials, 1)
print(json.dumps(dict(mode=mode, compiled=COMPILED_NOISE, first_world_s=first, world_s=world_s, trial_s=trial_s,
                      frames=frames, digest=h.hexdigest())))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", type=int, default=12)
    parser.add_argument("--trials", type=int, default=12)
    args = parser.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory() as out:
        for mode in ("python", "compiled"):
            print(f"{mode}: {args.worlds} worlds, {args.trials} trials ...", flush=True)
            done = subprocess.run([sys.executable, "-c", _CHILD, mode, str(args.worlds), str(args.trials), out],
                                  capture_output=True, text=True, check=True)
            rows[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    py, nb = rows["python"], rows["compiled"]
    if not nb["compiled"]:
        sys.exit("numba is not importable here: nothing to compare (pip install goalcraft's dependencies)")
    if py["digest"] != nb["digest"] or py["frames"] != nb["frames"]:
        sys.exit("the two modes drew different worlds: compiled noise must not change them")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print("| noise | first world (s) | s / world | s / study trial (play + encode) |")
    print("|---|---|---|---|")
    for row in (py, nb):
        trial_s = f"{row['trial_s']:.3f}" if args.trials else "–"
        print(f"| {row['mode']} | {row['first_world_s']:.2f} | {row['world_s']:.3f} | {trial_s} |")
    ratio = py["world_s"] / nb["world_s"]
    trial = f", trial {py['trial_s'] / nb['trial_s']:.2f}x" if args.trials else ""
    print(f"speed-up: world {ratio:.1f}x{trial}; same worlds (digest {nb['digest'][:12]}), "
          f"{nb['frames']} trial frames either way")


if __name__ == "__main__":
    main()
