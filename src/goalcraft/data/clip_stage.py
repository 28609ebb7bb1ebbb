"""The clip stage: videos + transcripts, and agent trials → 16-frame clips in WebDataset shards.

For one partition of sources it decodes each clip window, writes the shards with their indexes and
stats, and records every rejected input in the partition's quarantine table. The partition is built
in a staging folder and swapped into place whole (see goalcraft.storage), so re-running a partition,
also after a crash, yields the same samples with none duplicated and none lost.
"""

from __future__ import annotations

import functools
import queue
import shutil
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from goalcraft.config import ClipsSettings
from goalcraft.formats import CLIP_FRAMES, CLIP_HEIGHT, CLIP_WIDTH
from goalcraft.data.decode import DecodedFrames, VideoDecoder, VideoHandle, get_decoder
from goalcraft.data.manifest import VideoRecord
from goalcraft.data.quarantine import InputError, QuarantineRecord, quarantine_table
from goalcraft.data.shards import ClipSample, ClipShardWriter, sample_key
from goalcraft.data.transcripts import read_transcript
from goalcraft.data.trials import TrialRecord
from goalcraft.data.windows import ClipWindow, WindowRules, frame_indices, tile_windows, windows_from_segments
from goalcraft.storage import (
    StoragePaths,
    commit_directory,
    new_staging_dir,
    recover_directory,
    write_json_atomic,
    write_parquet_atomic,
)



def _clips_default(name: str):
    """A ``[clips]`` default, so the stage's own types restate none."""
    return ClipsSettings.model_fields[name].default


@dataclass(frozen=True)
class ClipStageSettings:
    rules: WindowRules = field(default_factory=WindowRules)
    trial_window_s: float = _clips_default("trial_window_s")
    shard_target_bytes: int = _clips_default("shard_target_bytes")
    jpeg_quality: int = _clips_default("jpeg_quality")
    decoder: str = _clips_default("decoder")
    frames_fps: float = _clips_default("frames_fps")
    resize: str = "ffmpeg-bicubic"

    @classmethod
    def from_config(cls, clips: ClipsSettings, keywords: Sequence[str] = ()) -> ClipStageSettings:
        rules = WindowRules(
            min_window_s=clips.min_window_s,
            max_window_s=clips.max_window_s,
            overlap=clips.overlap,
            keywords=tuple(keywords),
            drop_bracketed=clips.drop_bracketed,
            min_frames=CLIP_FRAMES,
        )
        return cls(rules=rules, trial_window_s=clips.trial_window_s, shard_target_bytes=clips.shard_target_bytes,
                   jpeg_quality=clips.jpeg_quality, decoder=clips.decoder, frames_fps=clips.frames_fps,
                   resize=clips.resize_method)


@dataclass
class PartitionReport:
    partition: str
    videos_seen: int = 0
    trials_seen: int = 0
    clips_written: int = 0
    shards: list[str] = field(default_factory=list)
    bytes: int = 0
    seconds: float = 0.0
    segments_filtered: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    decoder: str = ""

    @property
    def clips_per_second(self) -> float:
        return self.clips_written / self.seconds if self.seconds > 0 else 0.0


def clip_meta(source: str, source_id: str, video_path: str, window: ClipWindow, indices: Sequence[int],
               timestamps: Sequence[float], fps: float) -> dict:
    return {
        "source": source,
        "source_id": source_id,
        "video_path": video_path,
        "window_start": round(window.start, 6),
        "window_end": round(window.end, 6),
        "frame_indices": [int(i) for i in indices],
        "frame_timestamps": [round(float(t), 6) for t in timestamps],
        "fps": fps,
        "height": CLIP_HEIGHT,
        "width": CLIP_WIDTH,
    }


#: Frames decoded in one forward pass over a video (~126 MB at 160x256): the windows of a video are
#: read in groups whose union of frame indices stays under this, so overlapping windows never seek
#: back and a frame shared by two windows is decoded once.
PASS_FRAMES = 1024


def _planned_windows(info, windows: Sequence[ClipWindow]) -> list[tuple[int, ClipWindow, np.ndarray | ValueError]]:
    out: list[tuple[int, ClipWindow, np.ndarray | ValueError]] = []
    for i, window in enumerate(windows):
        try:
            out.append((i, window, np.asarray(frame_indices(window, info.fps, info.num_frames, n=CLIP_FRAMES))))
        except ValueError as exc:
            out.append((i, window, exc))
    return out


def _passes(planned, limit: int) -> Iterator[list]:
    """Consecutive windows grouped so each group's union of frame indices holds at most ``limit``
    frames (a single larger window is a group of its own); ``limit`` 0: one window a group."""
    group: list = []
    union: set[int] = set()
    for item in planned:
        indices = item[2]
        extra = set() if isinstance(indices, ValueError) else set(indices.tolist())
        if group and (limit == 0 or len(union | extra) > limit):
            yield group
            group, union = [], set()
        group.append(item)
        union |= extra
    if group:
        yield group


def _read_pass(handle: VideoHandle, group) -> dict[int, Any]:
    """Each window of ``group``: its frames and timestamps (read in one pass over the sorted union of
    their indices), or the InputError its own read raises. If the pass fails, every window is read on
    its own, so a bad frame only costs the windows that need it (the same records as per-window reads)."""
    wanted = [(i, idx) for i, _, idx in group if not isinstance(idx, ValueError)]
    if not wanted:
        return {}
    union = np.unique(np.concatenate([idx for _, idx in wanted]))
    try:
        decoded = handle.read(union)
    except InputError:
        out: dict[int, Any] = {}
        for i, idx in wanted:
            try:
                out[i] = handle.read(idx)
            except InputError as exc:
                out[i] = exc
        return out
    return {i: DecodedFrames(decoded.frames[np.searchsorted(union, idx)],
                             decoded.timestamps[np.searchsorted(union, idx)]) for i, idx in wanted}


def _window_clips(handle: VideoHandle, windows: Sequence[ClipWindow], *, source: str, source_id: str,
                  video_path: str, extra_meta: dict, segment_indices: bool = False, pass_frames: int = PASS_FRAMES,
                  ) -> Iterator[ClipSample | QuarantineRecord]:
    info = handle.info
    for group in _passes(_planned_windows(info, windows), pass_frames):
        read = _read_pass(handle, group)
        for i, window, indices in group:
            where = f"{video_path}@{window.start:.3f}-{window.end:.3f}"
            if isinstance(indices, ValueError):
                yield QuarantineRecord(where, "window", "window_too_short", str(indices), source_id)
                continue
            decoded = read[i]
            if isinstance(decoded, InputError):
                yield QuarantineRecord(where, "decode", decoded.reason, decoded.detail, source_id)
                continue
            meta = clip_meta(source, source_id, video_path, window, indices, decoded.timestamps, info.fps)
            meta.update(extra_meta)
            if segment_indices:  # which transcript segments the caption came from
                meta["segment_indices"] = list(window.segment_indices)
            yield ClipSample(sample_key(source_id, i), decoded.frames, window.caption, meta)


def open_video(decoder: VideoDecoder, corpus_root: Path, video_path: str,
                source_id: str) -> VideoHandle | QuarantineRecord:
    try:
        return decoder.open(corpus_root / video_path, height=CLIP_HEIGHT, width=CLIP_WIDTH)
    except InputError as exc:
        return QuarantineRecord(video_path, "decode", exc.reason, exc.detail, source_id)


class OrderedWorker:
    """Runs submitted calls one at a time, in order, on a background thread.

    The queue is bounded so decoding never runs more than a few clips ahead of writing. The first
    error stops further calls and is re-raised by the next :meth:`submit` or by :meth:`finish`.
    """

    def __init__(self, depth: int = 8) -> None:
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue(depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="clip-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (call := self._queue.get()) is not None:
            if self._error is None:
                try:
                    call()
                except BaseException as exc:  # handed to the submitting thread
                    self._error = exc

    def submit(self, fn: Callable[..., None], *args: object) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(functools.partial(fn, *args))

    def finish(self, raise_error: bool = True) -> None:
        self._queue.put(None)
        self._thread.join()
        if raise_error and self._error is not None:
            raise self._error


# Window rejections that, in a truncated video, mean "no frames there" rather than a bad transcript.
UNREACHABLE = ("segment_past_video_end", "window_too_short")


def video_clips(record: VideoRecord, corpus_root: Path, decoder: VideoDecoder,
                rules: WindowRules, counters: Counter[str]) -> Iterator[ClipSample | QuarantineRecord]:
    """Clips of one narrated video: one per transcript window. Bad input becomes quarantine records."""
    if record.transcript_path is None:
        yield QuarantineRecord(record.video_path, "transcript", "transcript_missing",
                               "no transcript file for this video", record.id)
        return
    try:
        segments = read_transcript(corpus_root / record.transcript_path)
    except InputError as exc:
        yield QuarantineRecord(record.transcript_path, "transcript", exc.reason, exc.detail, record.id)
        return
    handle = open_video(decoder, corpus_root, record.video_path, record.id)
    if isinstance(handle, QuarantineRecord):
        yield handle
        return
    with handle:
        # The decoded stream, not the manifest's claim, says how long the video is.
        info = handle.info
        result = windows_from_segments(segments, info.duration, info.fps, rules)
        counters["segments_filtered"] += result.filtered
        # A video that decodes to much less than its manifest duration is truncated: the segments it
        # cannot reach lack frames, their transcript is not at fault.
        truncated = info.duration < record.duration - max(1.0, 0.02 * record.duration)
        for index, reason, detail in result.rejected:
            where = f"{record.transcript_path}#segment{index}"
            segment = segments[index]
            if truncated and reason in UNREACHABLE and segment.start < record.duration and segment.end > info.duration:
                detail = (f"segment {segment.start:.2f}-{segment.end:.2f}s lies past the last decodable frame "
                          f"({info.duration:.2f}s) of a video the manifest says lasts {record.duration:.2f}s")
                yield QuarantineRecord(where, "decode", "insufficient_frames", detail, record.id)
            else:
                yield QuarantineRecord(where, "window", reason, detail, record.id)
        yield from _window_clips(handle, result.windows, source="video", source_id=record.id,
                                 video_path=record.video_path, extra_meta={"title": record.title},
                                 segment_indices=True)


def trial_clips(record: TrialRecord, corpus_root: Path, decoder: VideoDecoder,
                window_s: float) -> Iterator[ClipSample | QuarantineRecord]:
    """Clips of one agent trial: the video tiled into fixed windows, captioned with the instruction."""
    handle = open_video(decoder, corpus_root, record.video_path, record.id)
    if isinstance(handle, QuarantineRecord):
        yield handle
        return
    with handle:
        info = handle.info
        # A successful trial is cut up to its success moment: later footage no longer shows the
        # instruction being carried out. A trial shorter than one window gives one clip of it all.
        end = min(info.duration, record.success_time) if record.success and record.success_time else info.duration
        windows = tile_windows(info.duration, info.fps, window_s, record.instruction, end_at=end)
        if not windows and end * info.fps >= CLIP_FRAMES:
            windows = [ClipWindow(0.0, round(end, 6), record.instruction, ())]
        if not windows:
            yield QuarantineRecord(record.video_path, "window", "window_too_short",
                                   f"trial footage of {end:.2f}s holds fewer than {CLIP_FRAMES} frames", record.id)
        extra = {"task": record.task, "success": record.success, "success_time": record.success_time,
                 "layout": record.layout}
        yield from _window_clips(handle, windows, source="trial", source_id=record.id,
                                 video_path=record.video_path, extra_meta=extra)


def write_partition_clips(partition: str, videos: Sequence[VideoRecord], trials: Sequence[TrialRecord],
                          corpus_root: Path, out_dir: Path, settings: ClipStageSettings,
                          decoder: VideoDecoder | None = None) -> tuple[PartitionReport, list[QuarantineRecord]]:
    """Write one partition's shards into ``out_dir`` (no staging; see :func:`build_clip_partition`)."""
    decoder = decoder or get_decoder(settings.decoder, frames_fps=settings.frames_fps, resize=settings.resize)
    report = PartitionReport(partition=partition, decoder=decoder.name)
    quarantined: list[QuarantineRecord] = []
    counters: Counter[str] = Counter()
    started = time.perf_counter()
    with ClipShardWriter(out_dir, partition, target_bytes=settings.shard_target_bytes,
                         jpeg_quality=settings.jpeg_quality) as writer:
        sources: list[tuple[str, Iterator[ClipSample | QuarantineRecord]]] = []
        for video in sorted(videos, key=lambda v: v.id):
            sources.append(("video", video_clips(video, corpus_root, decoder, settings.rules, counters)))
        for trial in sorted(trials, key=lambda t: t.id):
            sources.append(("trial", trial_clips(trial, corpus_root, decoder, settings.trial_window_s)))

        def write_clip(sample: ClipSample) -> None:
            report.bytes += writer.write(sample)
            report.clips_written += 1

        # Decoding (in C, GIL released) runs here while JPEG encoding and tar writing run on one
        # background thread, in submission order, so shards stay deterministic.
        worker = OrderedWorker()
        try:
            for kind, items in sources:
                worker.submit(writer.note_source, kind)
                for item in items:
                    if isinstance(item, QuarantineRecord):
                        rec = QuarantineRecord(item.input, item.stage, item.reason, item.detail, item.source_id,
                                               partition)
                        quarantined.append(rec)
                        worker.submit(writer.note_failure, rec.reason)
                    else:
                        worker.submit(write_clip, item)
        except BaseException:
            worker.finish(raise_error=False)
            raise
        worker.finish()
        shards = writer.close()
    report.videos_seen = len(videos)
    report.trials_seen = len(trials)
    report.shards = [s.shard for s in shards if s.clips_written]
    report.failures = dict(sorted(Counter(q.reason for q in quarantined).items()))
    report.segments_filtered = counters["segments_filtered"]
    report.seconds = round(time.perf_counter() - started, 3)
    return report, quarantined


def build_clip_partition(partition: str, videos: Sequence[VideoRecord], trials: Sequence[TrialRecord],
                         corpus_root: Path, storage: StoragePaths, settings: ClipStageSettings,
                         decoder: VideoDecoder | None = None) -> PartitionReport:
    """Build ``clips/<partition>/`` from scratch and swap it in atomically."""
    final = storage.clip_partition_dir(partition)
    recover_directory(final, storage.staging_dir)
    staged = new_staging_dir(final, storage.staging_dir)
    try:
        report, quarantined = write_partition_clips(partition, videos, trials, corpus_root, staged,
                                                    settings, decoder)
        write_parquet_atomic(quarantine_table(quarantined), staged / "quarantine.parquet")
        # Written last: a partition folder with partition.json is complete.
        write_json_atomic(asdict(report), staged / "partition.json")
        commit_directory(staged, final)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return report
