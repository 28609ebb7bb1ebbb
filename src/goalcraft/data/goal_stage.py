"""The goal stage: mined success moments → 16-frame goal clips in WebDataset shards.

A goal clip is the 16 **consecutive** frames, at the video's native frame rate, whose last frame is
the success moment (STEVE-1 takes its goal embedding from the 16 frames ending at the goal frame):
frame indices ``[f - 15, ..., f]`` with

* ``f = success_frame`` when the moment gives one (trials, ratings). A frame past the last
  decodable one is quarantined (``insufficient_frames``): the success is not in the footage;
* otherwise ``f = floor(success_time × fps)`` (transcript moments), clamped to the last decodable
  frame when the time lies at most :data:`END_SLACK_S` past it (a caption still on screen as the
  video ends); further past, ``insufficient_frames``.

A moment with ``f < 15`` (fewer than 16 frames up to and including it) is quarantined as
``goal_too_early`` (stage ``goal``). Frame timestamps are ``index / fps``.

Output, under ``<data_root>/goals/<partition>/`` (``StoragePaths.goal_partition_dir``), with the clip stage's
shard writer and layout: ``<partition>-NNNNN.tar`` shards (``<key>.f00.jpg`` … ``f15.jpg``,
``<key>.txt`` = the instruction, ``<key>.json`` = the clip metadata plus ``miner``, ``task``,
``instruction``, ``confidence``, ``success_time``, ``success_frame``, ``detail``), a parquet index per
shard (:data:`GOAL_INDEX_SCHEMA`), ``<shard>_stats.json``, ``quarantine.parquet`` and
``partition.json`` (written last). The partition is built in ``goals/.staging/`` and swapped in
whole, exactly like ``clips/<partition>/``, so a re-run (also after a crash) gives the same shards.
"""

from __future__ import annotations

import math
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import pyarrow as pa

from goalcraft.formats import CLIP_FRAMES
from goalcraft.data.clip_stage import OrderedWorker, clip_meta, open_video
from goalcraft.data.decode import VideoDecoder, VideoInfo, get_decoder
from goalcraft.data.mining import GoalMoment
from goalcraft.data.quarantine import InputError, QuarantineRecord, quarantine_table
from goalcraft.data.shards import ClipSample, ClipShardWriter, sample_key
from goalcraft.data.windows import ClipWindow
from goalcraft.storage import (
    StoragePaths,
    commit_directory,
    new_staging_dir,
    recover_directory,
    write_json_atomic,
    write_parquet_atomic,
)

__all__ = [
    "END_SLACK_S",
    "GOAL_INDEX_SCHEMA",
    "GoalReport",
    "build_goal_partition",
    "frame_at",
    "goal_frame_indices",
    "resolve_goal_frame",
    "write_partition_goals",
]

#: How far past the last decodable frame a time-only moment may lie and still be clamped onto it.
END_SLACK_S = 1.0

# The clip index columns (so clip tools read goal indexes too) plus what the goal is.
GOAL_INDEX_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("shard", pa.string()),
        ("source", pa.string()),
        ("source_id", pa.string()),
        ("video_path", pa.string()),
        ("miner", pa.string()),
        ("task", pa.string()),
        ("instruction", pa.string()),
        ("caption", pa.string()),
        ("confidence", pa.float64()),
        ("success_time", pa.float64()),
        ("success_frame", pa.int64()),
        ("window_start", pa.float64()),
        ("window_end", pa.float64()),
        ("frame_timestamps", pa.list_(pa.float64(), CLIP_FRAMES)),
        ("bytes", pa.int64()),
    ]
)


@dataclass
class GoalReport:
    partition: str
    moments_seen: int = 0
    sources_seen: int = 0
    goals_written: int = 0
    by_miner: dict[str, int] = field(default_factory=dict)  # goals written per miner
    shards: list[str] = field(default_factory=list)
    bytes: int = 0
    seconds: float = 0.0
    failures: dict[str, int] = field(default_factory=dict)
    decoder: str = ""


def frame_at(time_s: float, fps: float) -> int:
    """The frame shown at ``time_s``: the last one that starts at or before it."""
    return math.floor(time_s * fps + 1e-9)


def resolve_goal_frame(moment: GoalMoment, info: VideoInfo) -> int:
    """The goal frame ``f`` of a moment in a decoded video (rules in the module docstring).

    Raises :class:`InputError` (``insufficient_frames``) when the moment lies past the footage.
    """
    last = info.num_frames - 1
    if moment.success_frame is not None:
        if moment.success_frame > last:
            raise InputError("insufficient_frames",
                             f"success frame {moment.success_frame} but the video has {info.num_frames} "
                             f"decodable frames")
        return int(moment.success_frame)
    if moment.success_time is None:
        raise ValueError("a goal moment needs a success_time or a success_frame")
    frame = frame_at(moment.success_time, info.fps)
    if frame > last:
        if moment.success_time > info.duration + END_SLACK_S:
            raise InputError("insufficient_frames",
                             f"success at {moment.success_time:.3f} s but the last decodable frame is at "
                             f"{last / info.fps:.3f} s")
        frame = last
    return frame


def goal_frame_indices(frame: int) -> list[int]:
    """``[frame - 15, ..., frame]``; :class:`InputError` ``goal_too_early`` when ``frame < 15``."""
    if frame < CLIP_FRAMES - 1:
        raise InputError("goal_too_early",
                         f"success frame {frame} leaves {frame + 1} frames up to and including it; a goal "
                         f"clip needs {CLIP_FRAMES}")
    return list(range(frame - CLIP_FRAMES + 1, frame + 1))


def _order(moment: GoalMoment) -> tuple:
    return (
        -1.0 if moment.success_time is None else moment.success_time,
        -1 if moment.success_frame is None else moment.success_frame,
        moment.miner, moment.task or "", moment.instruction, -moment.confidence, moment.detail,
    )


def _grouped(moments: Sequence[GoalMoment]) -> list[tuple[tuple[str, str, str], list[tuple[str, GoalMoment]]]]:
    """Moments by (source, source_id, video_path), in a fixed order, each with its sample key.

    Keys are ``<source_id>-NNNNN`` (made key-safe), numbered per key prefix in that order, so they
    are unique in the partition and do not depend on the order the moments were passed in.
    """
    ordered = sorted(moments, key=lambda m: (m.source_id, m.source, m.video_path, _order(m)))
    counters: Counter[str] = Counter()
    groups: dict[tuple[str, str, str], list[tuple[str, GoalMoment]]] = {}
    for moment in ordered:
        prefix = sample_key(moment.source_id, 0).rsplit("-", 1)[0]
        key = sample_key(moment.source_id, counters[prefix])
        counters[prefix] += 1
        groups.setdefault((moment.source, moment.source_id, moment.video_path), []).append((key, moment))
    return list(groups.items())


def _where(moment: GoalMoment) -> str:
    if moment.success_frame is not None:
        at = f"frame {moment.success_frame}"
    else:
        at = f"{moment.success_time:.3f}s" if moment.success_time is not None else "?"
    return f"{moment.video_path}@{at} ({moment.miner})"


def goal_clips(source: str, source_id: str, video_path: str, items: Sequence[tuple[str, GoalMoment]],
               corpus_root: Path, decoder: VideoDecoder) -> Iterator[ClipSample | QuarantineRecord]:
    """The goal clips of one video's moments; unusable moments become quarantine records."""
    handle = open_video(decoder, corpus_root, video_path, source_id)
    if isinstance(handle, QuarantineRecord):
        for _, moment in items:  # one record per lost moment
            yield QuarantineRecord(_where(moment), handle.stage, handle.reason, handle.detail, source_id)
        return
    with handle:
        info = handle.info
        for key, moment in items:
            try:
                frame = resolve_goal_frame(moment, info)
                indices = goal_frame_indices(frame)
                decoded = handle.read(indices)
            except InputError as exc:
                stage = "goal" if exc.reason == "goal_too_early" else "decode"
                yield QuarantineRecord(_where(moment), stage, exc.reason, exc.detail, source_id)
                continue
            timestamps = [i / info.fps for i in indices]
            window = ClipWindow(round(indices[0] / info.fps, 6), round((frame + 1) / info.fps, 6),
                                moment.instruction, ())
            meta = clip_meta(source, source_id, video_path, window, indices, timestamps, info.fps)
            success_time = moment.success_time if moment.success_time is not None else frame / info.fps
            meta.update({
                "miner": moment.miner,
                "task": moment.task,
                "instruction": moment.instruction,
                "confidence": float(moment.confidence),
                "success_time": round(float(success_time), 6),
                "success_frame": frame,
                "detail": moment.detail,
            })
            yield ClipSample(key, decoded.frames, moment.instruction, meta)


def _in_partition(record: QuarantineRecord, partition: str) -> QuarantineRecord:
    return QuarantineRecord(record.input, record.stage, record.reason, record.detail, record.source_id, partition)


def write_partition_goals(partition: str, moments: Sequence[GoalMoment], corpus_root: Path, out_dir: Path, *,
                          decoder: VideoDecoder, shard_target_bytes: int, jpeg_quality: int,
                          quarantine: Sequence[QuarantineRecord] = (),
                          ) -> tuple[GoalReport, list[QuarantineRecord]]:
    """Write one partition's goal shards into ``out_dir`` (no staging; see :func:`build_goal_partition`).

    ``quarantine``: records the miners already rejected for this partition; they join the
    partition's quarantine records and failure counts (attributed to its first shard's stats).
    """
    report = GoalReport(partition=partition, decoder=decoder.name, moments_seen=len(moments))
    quarantined: list[QuarantineRecord] = [_in_partition(r, partition) for r in quarantine]
    by_miner: Counter[str] = Counter()
    started = time.perf_counter()
    groups = _grouped(moments)
    report.sources_seen = len({(source, source_id) for (source, source_id, _), _ in groups})
    with ClipShardWriter(out_dir, partition, target_bytes=shard_target_bytes, jpeg_quality=jpeg_quality,
                         index_schema=GOAL_INDEX_SCHEMA) as writer:

        def write_goal(sample: ClipSample) -> None:
            report.bytes += writer.write(sample)
            report.goals_written += 1

        for record in quarantined:
            writer.note_failure(record.reason)
        worker = OrderedWorker()  # JPEG encoding and tar writing off the decoding thread, in order
        try:
            seen: set[tuple[str, str]] = set()
            for (source, source_id, video_path), items in groups:
                if (source, source_id) not in seen:
                    seen.add((source, source_id))
                    worker.submit(writer.note_source, "video" if source == "video" else "trial")
                for item in goal_clips(source, source_id, video_path, items, Path(corpus_root), decoder):
                    if isinstance(item, QuarantineRecord):
                        rec = _in_partition(item, partition)
                        quarantined.append(rec)
                        worker.submit(writer.note_failure, rec.reason)
                    else:
                        by_miner[item.meta["miner"]] += 1
                        worker.submit(write_goal, item)
        except BaseException:
            worker.finish(raise_error=False)
            raise
        worker.finish()
        shards = writer.close()
    report.shards = [s.shard for s in shards if s.clips_written]
    report.by_miner = dict(sorted(by_miner.items()))
    report.failures = dict(sorted(Counter(q.reason for q in quarantined).items()))
    report.seconds = round(time.perf_counter() - started, 3)
    return report, quarantined


def build_goal_partition(partition: str, moments: Sequence[GoalMoment], corpus_root: Path,
                         storage: StoragePaths, *, decoder: VideoDecoder | str | None = None,
                         shard_target_bytes: int = 1_000_000_000, jpeg_quality: int = 90,
                         quarantine: Sequence[QuarantineRecord] = ()) -> GoalReport:
    """Build ``goals/<partition>/`` from scratch and swap it in atomically (as ``clips/<partition>/``).

    ``quarantine`` takes the miners' rejects of this partition (transcripts, rating files), so the
    partition's ``quarantine.parquet`` holds every input of it that gave no goal clip.
    """
    if isinstance(decoder, str) or decoder is None:
        decoder = get_decoder(decoder or "auto")
    final = storage.goal_partition_dir(partition)
    staging_root = storage.goal_staging_dir
    recover_directory(final, staging_root)
    staged = new_staging_dir(final, staging_root)
    try:
        report, quarantined = write_partition_goals(partition, moments, Path(corpus_root), staged, decoder=decoder,
                                                    shard_target_bytes=shard_target_bytes,
                                                    jpeg_quality=jpeg_quality, quarantine=quarantine)
        write_parquet_atomic(quarantine_table(quarantined), staged / "quarantine.parquet")
        write_json_atomic(asdict(report), staged / "partition.json")  # last: the partition is complete
        commit_directory(staged, final)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return report
