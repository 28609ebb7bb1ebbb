"""The 730K-video corpus at the scale of MineDojo, measured on a synthetic manifest (docs/scale.md).

    python bench/scale_730k.py                                # everything, 730,000 records, 256 partitions
    python bench/scale_730k.py --records 100000 --phases ingest,sensor
    python bench/scale_730k.py --keep /tmp/scale730k          # keep (and reuse) the generated corpus

Phases (each timed in a fresh process, so its peak RSS is its own; ``--phases`` picks some):

generate   a MineDojo-like JSONL manifest (id, title, link, view_count, like_count, duration, fps),
           ``videos/<id>.mp4`` for every record (hard links to a few small files: the directory
           has 730K entries, as a downloaded corpus does) and JSON transcripts for the videos of
           ``--transcript-partitions`` partitions. Not a measurement.
parse      the baseline, in the same run: read the manifest and ``json.loads`` every line, nothing else.
ingest     the ``corpus_manifest`` asset's body (``goalcraft.stages.ingest.ingest_manifests``):
           parse + validate every record, find every video and transcript file, assign partitions,
           write ``ingest/manifest.parquet``. Targets: < 60 s, < 2 GB peak RSS.
partitions ``partition_of`` over every id (what ingest and the sensor both do per record).
sensor     three evaluations of the real ``new_inputs_sensor`` (goalcraft's Definitions, an
           ephemeral instance): the first (no cursor: reads the whole manifest), one with nothing new,
           one after 1,000 records were appended.
windows    transcripts → clip windows for every video of one sampled partition (the clip stage's work
           before decoding), giving clips per video for the plan.
duckdb     256 partitions of clip-shard parquet indexes with realistic row counts (``--clips-per-video``
           clips for each video of the partition, ``--shard-clips`` clips a shard), then the ``clips``
           view of goalcraft.sql: clips by partition; one video's clips (``WHERE partition =
           partition_of(id)``, and without it). Target: each < 1 s.

The last line printed is a JSON object with every figure, the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
WORDS = ("minecraft", "survival", "let's", "play", "episode", "building", "a", "house", "redstone", "tutorial",
         "how", "to", "find", "diamonds", "speedrun", "hardcore", "mod", "showcase", "farm", "castle", "nether",
         "the", "end", "dragon", "village", "part", "1.12", "pvp", "skyblock", "world", "tour", "seed")
SPEECH = ("so now we are going to chop this tree", "let me craft a wooden pickaxe", "I need more cobblestone",
          "there is a creeper behind me", "we found some iron ore down here", "let's go mine some diamonds",
          "I'm going to build a little shelter", "put the furnace right there", "[Music]",
          "and now smelt the iron", "okay guys welcome back to the channel", "we should plant some wheat")
PHASES = ("parse", "ingest", "partitions", "sensor", "windows", "duckdb")


# --------------------------------------------------------------------------------------------------
# The synthetic corpus


def _ids(n: int, seed: int) -> list[str]:
    import numpy as np

    rng = np.random.default_rng(seed)
    letters = np.frombuffer(ALPHABET.encode(), dtype="S1")
    codes = letters[rng.integers(0, 64, size=(n, 11))]
    ids = [row.tobytes().decode() for row in codes]
    assert len(set(ids)) == n, "id collision: use another seed"
    return ids


def manifest_lines(ids: list[str], seed: int) -> list[str]:
    """MineDojo YouTube-database records: ~24 min average duration (300K hours over 730K videos)."""
    import numpy as np

    rng = np.random.default_rng(seed + 1)
    durations = np.clip(rng.lognormal(mean=np.log(900), sigma=0.9, size=len(ids)), 30, 6 * 3600).round(1)
    fps = rng.choice([24.0, 25.0, 30.0, 60.0], p=[0.1, 0.1, 0.6, 0.2], size=len(ids))
    views = rng.lognormal(8, 2.5, size=len(ids)).astype(np.int64)
    likes = (views * rng.uniform(0.005, 0.05, size=len(ids))).astype(np.int64)
    title_words = rng.integers(0, len(WORDS), size=(len(ids), 6))
    lines = []
    for i, video_id in enumerate(ids):
        title = " ".join(WORDS[w] for w in title_words[i])
        lines.append(f'{{"id": "{video_id}", "title": "{title}", "link": "https://www.youtube.com/watch?v={video_id}", '
                     f'"view_count": {views[i]}, "like_count": {likes[i]}, "duration": {durations[i]}, '
                     f'"fps": {fps[i]}}}')
    return lines


def transcript(duration: float, rng) -> list[dict]:
    """YouTube-style segments: 2-6 s of speech each, with gaps, over the whole video."""
    segments, t = [], float(rng.uniform(0, 5))
    while t < duration - 1:
        length = float(rng.uniform(2, 6))
        segments.append({"text": SPEECH[int(rng.integers(len(SPEECH)))], "start": round(t, 2),
                         "duration": round(length, 2)})
        t += length + float(rng.exponential(3))
    return segments


def generate(root: Path, records: int, count: int, transcript_partitions: int, seed: int) -> dict:
    import numpy as np

    from goalcraft.data.partition_keys import partition_keys, partition_of

    started = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    ids = _ids(records, seed)
    lines = manifest_lines(ids, seed)
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    videos = root / "videos"
    videos.mkdir()
    for i, video_id in enumerate(ids):
        if i % 60_000 == 0:  # ext4 allows 65,000 links to one file
            template = root / f".video-template-{i // 60_000}.mp4"
            template.write_bytes(b"\x00" * 64)
        os.link(template, videos / f"{video_id}.mp4")
    sampled = set(partition_keys(count)[:transcript_partitions])
    transcripts = root / "transcripts"
    transcripts.mkdir()
    rng = np.random.default_rng(seed + 2)
    written = 0
    for video_id, line in zip(ids, lines):
        if partition_of(video_id, count) in sampled:
            duration = json.loads(line)["duration"]
            (transcripts / f"{video_id}.json").write_text(json.dumps(transcript(duration, rng)))
            written += 1
    (root / "ids.txt").write_text("\n".join(ids) + "\n")
    return {"records": records, "transcripts": written, "transcript_partitions": sorted(sampled),
            "manifest_mb": round((root / "manifest.jsonl").stat().st_size / 1e6, 1),
            "seconds": round(time.perf_counter() - started, 1)}


# --------------------------------------------------------------------------------------------------
# Phases (each in its own process)


def _peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM (ru_maxrss would include the parent's peak from before exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def phase_ingest(corpus: Path, work: Path, count: int) -> dict:
    from goalcraft.stages.ingest import ingest_manifests
    from goalcraft.storage import StoragePaths

    import pyarrow.parquet as pq

    paths = StoragePaths(work / "data")
    before = _peak_rss_mb()
    started = time.perf_counter()
    result = ingest_manifests(paths, corpus, [corpus / "manifest.jsonl"], count)
    seconds = time.perf_counter() - started
    table = pq.read_table(paths.manifest_table, columns=["partition"])
    return {"seconds": round(seconds, 2), "peak_rss_mb": _peak_rss_mb(), "rss_before_mb": before,
            "videos": result.metadata["videos"], "with_transcript": result.metadata["with_transcript"],
            "rejected": result.metadata["rejected"], "partitions_used": result.metadata["partitions_used"],
            "table_mb": round(paths.manifest_table.stat().st_size / 1e6, 1), "rows": table.num_rows}


def phase_parse(corpus: Path, work: Path, count: int) -> dict:
    """The floor any ingest has to pay, measured in the same run: read the manifest and ``json.loads``
    every line, keeping nothing."""
    import json as json_module

    started = time.perf_counter()
    records = 0
    with open(corpus / "manifest.jsonl", "rb") as f:
        for line in f:
            json_module.loads(line)
            records += 1
    return {"seconds": round(time.perf_counter() - started, 2), "records": records, "peak_rss_mb": _peak_rss_mb()}


def phase_partitions(corpus: Path, work: Path, count: int) -> dict:
    from goalcraft.data.partition_keys import partition_of

    ids = (corpus / "ids.txt").read_text().split()
    started = time.perf_counter()
    parts = [partition_of(i, count) for i in ids]
    seconds = time.perf_counter() - started
    sizes = {}
    for p in parts:
        sizes[p] = sizes.get(p, 0) + 1
    return {"seconds": round(seconds, 3), "ids": len(ids), "partitions": len(sizes),
            "videos_per_partition_min": min(sizes.values()), "videos_per_partition_max": max(sizes.values())}


def phase_sensor(corpus: Path, work: Path, count: int) -> dict:
    import dagster as dg

    from goalcraft.config import config_from_dict
    from goalcraft.definitions import build_definitions, build_resources

    copy = work / "sensor-corpus"
    copy.mkdir(exist_ok=True)
    shutil.copyfile(corpus / "manifest.jsonl", copy / "manifest.jsonl")  # appended to below
    config = config_from_dict({"paths": {"data_root": str(work / "sensor-data"), "corpus_root": str(copy)},
                               "partitions": {"count": count}}, work)
    defs = build_definitions(config)
    sensor = defs.get_sensor_def("new_inputs_sensor")
    out: dict = {}
    with dg.DagsterInstance.ephemeral() as instance:
        cursor = None

        def tick(name: str) -> None:
            nonlocal cursor
            context = dg.build_sensor_context(instance=instance, definitions=defs, cursor=cursor,
                                              resources=build_resources(config))
            started = time.perf_counter()
            data = sensor.evaluate_tick(context)
            out[f"{name}_s"] = round(time.perf_counter() - started, 3)
            out[f"{name}_run_requests"] = len(data.run_requests or [])
            cursor = data.cursor

        tick("first_tick")
        out["cursor_kb"] = round(len(cursor or "") / 1024, 1)
        tick("no_change_tick")
        extra = manifest_lines(_ids(1000, 99), 99)
        with open(copy / "manifest.jsonl", "a") as f:
            f.write("\n".join(extra) + "\n")
        tick("append_1000_tick")
    out["peak_rss_mb"] = _peak_rss_mb()
    return out


def phase_windows(corpus: Path, work: Path, count: int) -> dict:
    import pyarrow.parquet as pq

    from goalcraft.config import ClipsSettings
    from goalcraft.data.partition_keys import partition_key
    from goalcraft.data.transcripts import read_transcript
    from goalcraft.data.windows import WindowRules, windows_from_segments

    table = pq.read_table(work / "data" / "ingest" / "manifest.parquet",
                          columns=["id", "duration", "fps", "transcript_path", "partition"])
    part = partition_key(0, count)
    rows = [r for r in table.to_pylist() if r["partition"] == part and r["transcript_path"]]
    clips = ClipsSettings()
    rules = WindowRules(min_window_s=clips.min_window_s, max_window_s=clips.max_window_s, overlap=clips.overlap)
    started = time.perf_counter()
    windows = 0
    for r in rows:
        segments = read_transcript(corpus / r["transcript_path"])
        windows += len(windows_from_segments(segments, r["duration"], r["fps"], rules).windows)
    seconds = time.perf_counter() - started
    hours = sum(r["duration"] for r in rows) / 3600
    return {"partition": part, "videos": len(rows), "windows": windows, "seconds": round(seconds, 2),
            "windows_per_video": round(windows / max(1, len(rows)), 1), "video_hours": round(hours, 1),
            "windows_per_hour": round(windows / max(hours, 1e-9), 1)}


def _synthesize_indexes(clips_dir: Path, ids: list[str], count: int, clips_per_video: int, shard_clips: int) -> dict:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from goalcraft.data.partition_keys import partition_of
    from goalcraft.data.shards import INDEX_SCHEMA

    by_partition: dict[str, list[str]] = {}
    for video_id in ids:
        by_partition.setdefault(partition_of(video_id, count), []).append(video_id)
    rng = np.random.default_rng(7)
    files = rows = 0
    for partition, videos in sorted(by_partition.items()):
        folder = clips_dir / partition
        folder.mkdir(parents=True, exist_ok=True)
        n = len(videos) * clips_per_video
        source_ids = np.repeat(np.array(videos, dtype=object), clips_per_video)  # the stage writes video by video
        window = np.tile(np.arange(clips_per_video), len(videos))
        starts = window * 9.0 + rng.uniform(0, 1, n)
        keys = [f"{s}-{w:05d}" for s, w in zip(source_ids, window)]
        captions = np.array(SPEECH, dtype=object)[rng.integers(0, len(SPEECH), n)]
        stamps = starts[:, None] + np.linspace(0, 8, 16)[None, :]
        for shard_no, lo in enumerate(range(0, n, shard_clips)):
            hi = min(n, lo + shard_clips)
            shard = f"{partition}-{shard_no:05d}"
            table = pa.table({
                "key": pa.array(keys[lo:hi], pa.string()),
                "shard": pa.array([shard] * (hi - lo), pa.string()),
                "source": pa.array(["video"] * (hi - lo), pa.string()),
                "source_id": pa.array(source_ids[lo:hi], pa.string()),
                "caption": pa.array(captions[lo:hi], pa.string()),
                "window_start": pa.array(starts[lo:hi]),
                "window_end": pa.array(starts[lo:hi] + 8.0),
                "frame_timestamps": pa.FixedSizeListArray.from_arrays(pa.array(stamps[lo:hi].ravel()), 16),
                "bytes": pa.array(rng.integers(180_000, 300_000, hi - lo)),
            }, schema=INDEX_SCHEMA)
            pq.write_table(table, folder / f"{shard}.parquet")  # as ClipShardWriter writes it
            files += 1
            rows += hi - lo
    return {"index_files": files, "rows": rows}


def phase_duckdb(corpus: Path, work: Path, count: int, clips_per_video: int, shard_clips: int) -> dict:
    from goalcraft.sql import connect

    ids = (corpus / "ids.txt").read_text().split()
    # Beside the corpus, so that --keep reuses them too.
    data = corpus.parent / f"indexes-{count}p-{clips_per_video}cpv-{shard_clips}cps"
    done = data / "clips" / ".complete"
    if done.is_file():
        made = json.loads(done.read_text())
    else:
        shutil.rmtree(data, ignore_errors=True)
        started = time.perf_counter()
        made = _synthesize_indexes(data / "clips", ids, count, clips_per_video, shard_clips)
        made["synthesis_s"] = round(time.perf_counter() - started, 1)
        done.write_text(json.dumps(made))
    made["index_mb"] = round(sum(p.stat().st_size for p in (data / "clips").rglob("*.parquet")) / 1e6, 1)
    # The ingest table beside them: it gives `partition_of(id)` its partition count.
    (data / "ingest").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(work / "data" / "ingest" / "manifest.parquet", data / "ingest" / "manifest.parquet")
    video = ids[len(ids) // 2]
    one_video = f"SELECT key, caption, window_start, window_end FROM clips WHERE source_id = '{video}'"
    queries = {
        "count_by_partition": "SELECT partition, count(*) AS clips FROM clips GROUP BY ALL ORDER BY partition",
        "one_video": f"{one_video} AND partition = partition_of('{video}') ORDER BY window_start",
        # The same without naming the partition: every index file is opened.
        "one_video_all_files": f"{one_video} ORDER BY window_start",
    }
    for name, sql in queries.items():
        times = []
        for _ in range(3):  # a fresh connection each time: the view is re-planned, files re-opened
            t0 = time.perf_counter()
            result = connect(data).sql(sql).fetchall()
            times.append(time.perf_counter() - t0)
        made[f"{name}_s"] = [round(t, 3) for t in times]
        made[f"{name}_rows"] = len(result)
    made["peak_rss_mb"] = _peak_rss_mb()
    return made


# --------------------------------------------------------------------------------------------------
# Driver


def _run_phase(name: str, args: argparse.Namespace, corpus: Path, work: Path) -> dict:
    cmd = [sys.executable, __file__, "--phase-worker", name, "--corpus", str(corpus), "--work", str(work),
           "--partitions", str(args.partitions), "--clips-per-video", str(args.clips_per_video),
           "--shard-clips", str(args.shard_clips)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"phase {name} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _worker(args: argparse.Namespace) -> None:
    corpus, work, count = Path(args.corpus), Path(args.work), args.partitions
    functions = {"parse": lambda: phase_parse(corpus, work, count),
                 "ingest": lambda: phase_ingest(corpus, work, count),
                 "partitions": lambda: phase_partitions(corpus, work, count),
                 "sensor": lambda: phase_sensor(corpus, work, count),
                 "windows": lambda: phase_windows(corpus, work, count),
                 "duckdb": lambda: phase_duckdb(corpus, work, count, args.clips_per_video, args.shard_clips)}
    print(json.dumps(functions[args.phase_worker]()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=730_000)
    parser.add_argument("--partitions", type=int, default=256)
    parser.add_argument("--transcript-partitions", type=int, default=2)
    parser.add_argument("--clips-per-video", type=int, default=30,
                        help="clips a video gives, for the synthetic indexes (the plan's assumption)")
    parser.add_argument("--shard-clips", type=int, default=4000, help="clips a shard holds (1 GB / ~240 KB)")
    parser.add_argument("--phases", default=",".join(PHASES))
    parser.add_argument("--keep", default=None, help="folder to generate into and keep (reused if it exists)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--phase-worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--corpus", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--work", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phase_worker:
        _worker(args)
        return 0

    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="goalcraft-scale-"))
    corpus, work = base / "corpus", base / "work"
    figures: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
                     "load_before": os.getloadavg()}
    try:
        if not (corpus / "ids.txt").is_file():
            figures["generate"] = generate(corpus, args.records, args.partitions, args.transcript_partitions, args.seed)
            print(f"generate: {figures['generate']}", flush=True)
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        phases = [p for p in args.phases.split(",") if p]
        if {"windows", "duckdb"} & set(phases) and "ingest" not in phases:
            phases.insert(0, "ingest")  # windows and duckdb read the ingest table
        for name in phases:
            figures[name] = _run_phase(name, args, corpus, work)
            print(f"{name}: {figures[name]}", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    figures["load_after"] = os.getloadavg()
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
