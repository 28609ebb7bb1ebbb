"""Preparing trajectories for the policy (goal_policy's first step): one process vs worker processes.

    python bench/policy_preparation.py --config study.toml --limit 120 --workers 2

Preparing a trajectory decodes its video as the clip stage does, embeds every 16-frame clip with the
goal space and replays its actions at the policy's 64x40. ``[policy] workers`` processes prepare
whole trajectories, in order, a few ahead of the stage (torch on one thread each). The first
``--limit`` trajectories of the corpus (as the corpus lists them) are prepared into two fresh folders,
with 0 workers and with ``--workers``, in the same run; the episodes must be identical. Reports
trajectories/s for both and their ratio.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    from goalcraft.config import load_config
    from goalcraft.data import trajectories
    from goalcraft.stages.agent import _load_episodes
    from goalcraft.storage import StoragePaths

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--limit", type=int, default=120)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    config = load_config(Path(args.config))
    paths = StoragePaths(Path(config.paths.data_root))
    corpus = config.paths.corpus_path
    scan = trajectories.scan_trajectories

    def first(root, trials_dir="trials"):  # the same records, cut to --limit
        records, quarantined = scan(root, trials_dir=trials_dir)
        return records[:args.limit], quarantined

    trajectories.scan_trajectories = first  # _load_episodes imports it at call time
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (0, args.workers):
            mine = StoragePaths(Path(tmp) / f"w{workers}")
            shutil.copytree(paths.goal_space_dir / "best", mine.goal_space_dir / "best")
            started = time.perf_counter()
            episodes, *_ = _load_episodes(mine, corpus, config.paths.trials_dir, config.clips, (64, 40),
                                          config.policy.device, lambda _m: None, workers)
            seconds = time.perf_counter() - started
            results[workers] = (episodes, seconds)
            steps = sum(len(e.actions) for e in episodes)
            print(f"workers {workers}: {len(episodes)} trajectories ({steps} steps) in {seconds:.1f} s = "
                  f"{len(episodes) / seconds:.2f} trajectories/s", flush=True)
    (a, ta), (b, tb) = results[0], results[args.workers]
    same = len(a) == len(b) and all(np.array_equal(x.frames, y.frames) and
                                    np.array_equal(x.goals, y.goals, equal_nan=True) for x, y in zip(a, b))
    print(f"ratio {ta / tb:.2f}x with {args.workers} workers; identical episodes: {same}; "
          f"{os.cpu_count()} cpus, {platform.machine()}, torch threads {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
