"""Clip-stage throughput against raw decoding of the same windows, measured in one run.

    python bench/clip_stage_throughput.py                       # generated Crafter corpus
    python bench/clip_stage_throughput.py --minestudio ../shared/data/minecraft/videos/minestudio
    python bench/clip_stage_throughput.py --corpus /data/my_corpus --decoder pyav
    python bench/clip_stage_throughput.py --minestudio ../shared/data/minecraft/videos/minestudio \
        --min-window-s 8 --max-window-s 16 --overlap keep    # MineDojo-like overlapping windows

The stage figure is the whole of build_clip_partition (transcripts, windows, decode + resize, JPEG,
tar, parquet index, stats, atomic commit). The baseline opens each video once and decodes and
resizes exactly the frame indices the stage wrote, window by window (one read per window, as the
stage did before it read each video in one pass), nothing else. Target: stage / raw >= 0.8; with
MineDojo-like windows (8-16 s, overlapping) >= 1.2, since the stage decodes a frame once however many
windows share it.
Each is repeated and the best run is kept (least disturbed by other load on the machine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from goalcraft.config import ClipsSettings
from goalcraft.data.clip_stage import ClipStageSettings, build_clip_partition
from goalcraft.data.decode import get_decoder
from goalcraft.data.manifest import read_manifests
from goalcraft.data.shards import iter_shard, shard_indexes
from goalcraft.data.trials import scan_trials
from goalcraft.storage import StoragePaths


def minestudio_corpus(src: Path, root: Path, segment_s: float) -> Path:
    """A corpus of the MineStudio trial videos, narrated by back-to-back 2-second segments."""
    (root / "videos").mkdir(parents=True)
    (root / "transcripts").mkdir()
    lines = []
    for video in sorted(src.glob("*.mp4")):
        vid = video.stem
        shutil.copy(video, root / "videos" / video.name)
        info = get_decoder("pyav").open(video).info
        n = int(info.duration // segment_s)
        segments = [{"text": f"{vid.replace('_', ' ')} part {i}", "start": i * segment_s, "duration": segment_s}
                    for i in range(n)]
        (root / "transcripts" / f"{vid}.json").write_text(json.dumps(segments))
        lines.append(json.dumps({"id": vid, "title": vid, "link": "", "duration": info.duration, "fps": info.fps}))
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return root


def crafter_corpus(root: Path, videos: int) -> Path:
    from goalcraft.crafter.corpus import generate_crafter_corpus

    generate_crafter_corpus(root, seed=0, n_videos=videos, n_trials=0, n_steve1_episodes=0)
    return root


def run_stage(corpus: Path, data: Path, settings: ClipStageSettings):
    videos, _ = read_manifests([corpus / "manifest.jsonl"], corpus)
    trials, _ = scan_trials(corpus / "trials", corpus) if (corpus / "trials").is_dir() else ([], [])
    started = time.perf_counter()
    report = build_clip_partition("p0000", videos, trials, corpus, StoragePaths(data), settings)
    return report, time.perf_counter() - started


def run_raw(corpus: Path, part: Path, decoder_name: str) -> tuple[int, float]:
    """Decode + resize the stage's own frame indices, one handle per video."""
    windows: dict[str, list[list[int]]] = defaultdict(list)
    # The frame indices the stage chose are in each sample's JSON metadata.
    for index in shard_indexes(part):
        for sample in iter_shard(index.with_suffix(".tar")):
            meta = json.loads(sample["json"])
            windows[meta["video_path"]].append(meta["frame_indices"])
    decoder = get_decoder(decoder_name)
    started = time.perf_counter()
    clips = 0
    for video_path in sorted(windows):
        with decoder.open(corpus / video_path) as handle:
            for indices in sorted(windows[video_path]):
                handle.read(indices)
                clips += 1
    return clips, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, help="an existing goalcraft corpus")
    parser.add_argument("--minestudio", type=Path, help="folder of MineStudio .mp4 clips to narrate and use")
    parser.add_argument("--crafter-videos", type=int, default=6)
    parser.add_argument("--decoder", default="auto")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--segment-s", type=float, default=2.0, help="MineStudio narration segment length")
    parser.add_argument("--min-window-s", type=float, default=ClipsSettings().min_window_s)
    parser.add_argument("--max-window-s", type=float, default=ClipsSettings().max_window_s)
    parser.add_argument("--overlap", default=ClipsSettings().overlap, choices=("trim", "merge", "keep"))
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="goalcraft-bench-"))
    try:
        if args.corpus:
            corpus, label = args.corpus, str(args.corpus)
        elif args.minestudio:
            corpus = minestudio_corpus(args.minestudio, work / "corpus", args.segment_s)
            label = f"MineStudio clips (640x360, 30 fps), {args.segment_s:g} s segments"
        else:
            corpus = crafter_corpus(work / "corpus", args.crafter_videos)
            label = f"Crafter demo corpus, {args.crafter_videos} videos (256x160, 10 fps)"
        clip_settings = ClipsSettings(decoder=args.decoder, min_window_s=args.min_window_s,
                                      max_window_s=args.max_window_s, overlap=args.overlap)
        settings = ClipStageSettings.from_config(clip_settings)
        stage_best = raw_best = float("inf")
        clips = 0
        for r in range(args.repeats):
            data = work / f"data{r}"
            report, stage_s = run_stage(corpus, data, settings)
            raw_clips, raw_s = run_raw(corpus, StoragePaths(data).clip_partition_dir("p0000"), args.decoder)
            assert raw_clips == report.clips_written, (raw_clips, report.clips_written)
            clips = report.clips_written
            stage_best, raw_best = min(stage_best, stage_s), min(raw_best, raw_s)
            shutil.rmtree(data)
        stage_rate, raw_rate = clips / stage_best, clips / raw_best
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
        print(f"corpus: {label}; decoder: {report.decoder}; clips: {clips}; best of {args.repeats}")
        print(f"windows: {args.min_window_s:g}-{args.max_window_s:g} s, overlap {args.overlap}")
        print(f"clip stage:  {stage_rate:8.1f} clips/s  ({stage_best:.2f} s)")
        print(f"raw decode:  {raw_rate:8.1f} clips/s  ({raw_best:.2f} s)")
        print(f"ratio stage/raw: {stage_rate / raw_rate:.2f}  (target >= 0.80)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
