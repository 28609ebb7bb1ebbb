"""Unlocks and goal clips per achievement in a generated Crafter corpus, and the corpus size a study needs.

    python bench/crafter_study_counts.py                                   # 8 varied videos of 1000 steps
    python bench/crafter_study_counts.py --videos 16 --seed 1 --agent free --workers 2
    python bench/crafter_study_counts.py --corpus /tmp/a --corpus /tmp/b   # count existing corpora only
    python bench/crafter_study_counts.py --transcripts json --lag 0.6 --pace 24 --exclusive-s 1.6

Generates the videos with generate_crafter_corpus (no trials), then counts per achievement the unlock
events (ground_truth/events.jsonl) and the goal moments goalcraft's transcript miner finds in the
videos: one per narrated unlock, repeats within one narrated line merged, i.e. the videos' goal clips.
Last, a bootstrap over the videos: how many videos give each of the N commonest achievements at least
20 goal clips in a test set of a quarter of the videos (P over 2000 draws). ``--pace`` paces the players
(``video_pace_steps``), ``--lag``/``--exclusive-s`` are the miner's ``[goals]`` settings; the goal clips'
coverage and purity against the ground truth (goalcraft.data.ground_truth) are printed too.
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from goalcraft.crafter.corpus import generate_crafter_corpus
from goalcraft.crafter.tasks import ACHIEVEMENTS
from goalcraft.data.ground_truth import GROUND_TRUTH_EVENTS, event_coverage, read_ground_truth
from goalcraft.data.manifest import read_manifest
from goalcraft.data.mining import mine_transcripts
from goalcraft.data.goal_stage import frame_at, goal_frame_indices
from goalcraft.data.quarantine import InputError
from goalcraft.data.task_vocabulary import load_tasks_json


def per_video_counts(root: Path, lag_s: float = 0.0, exclusive_s: float = 0.0,
                     ) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """(events, goal clips): videos x achievements, and the goal clips' event coverage."""
    videos, _ = read_manifest(root / "manifest.jsonl", root)
    moments, _ = mine_transcripts(videos, root, load_tasks_json(root / "tasks.json"), lag_s=lag_s,
                                  exclusive_s=exclusive_s)
    clips: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    rows = []
    fps = {v.id: v.fps for v in videos}
    for moment in moments:
        try:
            frames = goal_frame_indices(frame_at(moment.success_time, fps[moment.source_id]))  # as the goal stage
        except InputError:  # too early for a 16-frame clip: the goal stage quarantines it
            continue
        clips[moment.source_id][moment.task] += 1
        rows.append({"source_id": moment.source_id, "task": moment.task, "miner": moment.miner,
                     "frame_timestamps": [f / fps[moment.source_id] for f in frames]})
    coverage = event_coverage(rows, read_ground_truth(root / GROUND_TRUTH_EVENTS)).get("all", {})
    events: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for line in (root / "ground_truth" / "events.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event["source"] == "video":
            events[event["source_id"]][event["achievement"]] += 1
    ids = [v.id for v in videos]
    return (np.array([[events[i][a] for a in ACHIEVEMENTS] for i in ids]),
            np.array([[clips[i][a] for a in ACHIEVEMENTS] for i in ids]), coverage)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, action="append", help="count these corpora instead of generating one")
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--agent", choices=("varied", "free"), default="varied")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--transcripts", choices=("mixed", "json"), default="mixed")
    parser.add_argument("--pace", type=int, default=0, help="the players' video_pace_steps")
    parser.add_argument("--lag", type=float, default=0.0, help="[goals] transcript_lag_s")
    parser.add_argument("--exclusive-s", type=float, default=0.0, help="[goals] exclusive_s")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        roots = args.corpus
        if not roots:
            roots = [Path(tmp) / "corpus"]
            started = time.perf_counter()
            generate_crafter_corpus(roots[0], seed=args.seed, n_videos=args.videos, steps_per_video=args.steps,
                                    n_trials=0, n_steve1_episodes=0, video_agent=args.agent, workers=args.workers,
                                    transcripts=args.transcripts, video_pace_steps=args.pace, progress=print)
            seconds = time.perf_counter() - started
            print(f"\n{args.videos} videos of {args.steps} steps ({args.agent}, pace {args.pace}, {args.workers} worker(s)): "
                  f"{seconds:.0f} s, {seconds / args.videos:.1f} s of wall time per video")
        counts = [per_video_counts(root, args.lag, args.exclusive_s) for root in roots]
    events = np.concatenate([e for e, _, _ in counts])
    clips = np.concatenate([c for _, c, _ in counts])
    clip_total = sum(c.get("clips", 0) for _, _, c in counts)
    print(f"goal clips (lag {args.lag} s, exclusive_s {args.exclusive_s} s): {clip_total}; showing their event "
          f"{sum(c.get('with_event', 0) for _, _, c in counts) / max(clip_total, 1):.3f}, their event and no other "
          f"task's (purity) {sum(c.get('exclusive', 0) for _, _, c in counts) / max(clip_total, 1):.3f}")
    n = len(clips)
    distinct = sorted(int(k) for k in (events > 0).sum(1))
    print(f"{n} videos; different achievements per video: {distinct}")
    print(f"{'achievement':20s} {'events/video':>13s} {'goal clips/video':>17s} {'(sd)':>6s}")
    order = np.argsort(-clips.mean(0))
    for k in order:
        if events[:, k].any():
            print(f"{ACHIEVEMENTS[k]:20s} {events[:, k].mean():13.1f} {clips[:, k].mean():17.2f} {clips[:, k].std():6.2f}")
    rng = np.random.default_rng(0)
    for top in (12, 14, 15):
        keep = order[:top]
        line = []
        for size in (40, 48, 56, 64, 72, 80, 96):
            hits = 0
            for _ in range(2000):
                sample = clips[rng.integers(0, n, size)]
                test = sample[rng.permutation(size)[: round(0.25 * size)]]
                hits += bool((test[:, keep].sum(0) >= 20).all())
            line.append(f"{size}: {hits / 2000:.2f}")
        print(f"P(each of the {top} commonest has >= 20 goal clips in a 25% test split) by videos: " + ", ".join(line))


if __name__ == "__main__":
    main()
