"""The clip stage and the goal stage of one partition: ingest rows → WebDataset shards."""

from __future__ import annotations

from pathlib import Path

from goalcraft.config import ClipsSettings, GoalsSettings
from goalcraft.data.clip_stage import ClipStageSettings, build_clip_partition
from goalcraft.data.decode import get_decoder
from goalcraft.data.goal_stage import build_goal_partition
from goalcraft.data.ground_truth import GROUND_TRUTH_EVENTS, event_coverage, read_ground_truth
from goalcraft.data.manifest import VideoRecord
from goalcraft.data.mining import mine_ratings, mine_transcripts, mine_trials, mining_notes, rating_files
from goalcraft.data.partition_keys import partition_of
from goalcraft.data.shards import read_index
from goalcraft.data.tables import StalePartitioningError, read_partition_rows
from goalcraft.data.task_vocabulary import read_task_vocabulary
from goalcraft.data.trials import TrialRecord
from goalcraft.stages import StageError, StageResult
from goalcraft.storage import StoragePaths, partition_lock


def _rows(paths: StoragePaths, partition: str, count: int) -> tuple[list[VideoRecord], list[TrialRecord]]:
    try:
        return (read_partition_rows(paths.manifest_table, partition, count, VideoRecord),
                read_partition_rows(paths.trials_table, partition, count, TrialRecord))
    except StalePartitioningError as exc:
        raise StageError(str(exc)) from None


def clip_partition(paths: StoragePaths, corpus_root: Path, partition: str, count: int,
                   settings: ClipStageSettings) -> StageResult:
    """One partition's videos and trials → clip shards (goalcraft.data.clip_stage)."""
    videos, trials = _rows(paths, partition, count)
    with partition_lock(paths.lock_dir("video_clips"), partition, f"video_clips[{partition}]"):
        report = build_clip_partition(partition, videos, trials, corpus_root, paths, settings)
    return StageResult({
        "videos_seen": report.videos_seen,
        "trials_seen": report.trials_seen,
        "clips_written": report.clips_written,
        "shards": len(report.shards),
        "bytes": report.bytes,
        "seconds": report.seconds,
        "clips_per_second": round(report.clips_per_second, 2),
        "segments_filtered": report.segments_filtered,
        "quarantined": sum(report.failures.values()),
        "failures_by_reason": report.failures,
        "decoder": report.decoder,
        "resize": settings.resize,
        "path": paths.clip_partition_dir(partition),
    })


def goal_partition(paths: StoragePaths, corpus_root: Path, partition: str, count: int, goals: GoalsSettings,
                   clips: ClipsSettings) -> StageResult:
    """One partition's success moments (trials, transcripts naming a vocabulary task, rating files) →
    goal-clip shards (goalcraft.data.mining, goalcraft.data.goal_stage)."""
    videos, trials = _rows(paths, partition, count)
    tasks = list(read_task_vocabulary(paths.task_vocabulary_file).tasks)
    moments, rejects = mine_trials(trials)
    found, bad = mine_transcripts(videos, corpus_root, tasks, lag_s=goals.transcript_lag_s,
                                  exclusive_s=goals.exclusive_s)
    moments, rejects = moments + found, rejects + bad
    decoder = get_decoder(clips.decoder, frames_fps=clips.frames_fps, resize=clips.resize_method)
    ratings_dir = corpus_root / goals.ratings_dir if goals.ratings_dir else None
    ratings = bool(ratings_dir and ratings_dir.is_dir())
    notes = mining_notes(trials=len(trials), videos=len(videos), tasks=len(tasks), ratings=ratings)
    if ratings:
        rated, bad = mine_ratings(rating_files(ratings_dir), corpus_root, goals.rating_threshold,
                                  tasks=tasks, decoder=decoder)
        # Rating files cover the whole corpus; each partition keeps its own videos' moments.
        moments += [m for m in rated if partition_of(m.source_id, count) == partition]
        rejects += [r for r in bad if partition_of(r.source_id or r.input, count) == partition]
    with partition_lock(paths.lock_dir("goal_clips"), partition, f"goal_clips[{partition}]"):
        report = build_goal_partition(partition, moments, corpus_root, paths, decoder=decoder,
                                      shard_target_bytes=clips.shard_target_bytes, jpeg_quality=clips.jpeg_quality,
                                      quarantine=rejects)
    # A corpus with ground truth (the Crafter one) also says how many goal clips show their task.
    events = corpus_root / GROUND_TRUTH_EVENTS
    coverage: dict = {}
    if events.is_file():
        try:
            truth = read_ground_truth(events)
        except OSError as exc:  # a measurement, not an input of the goal clips: say so, do not fail
            notes = [*notes, f"ground truth {GROUND_TRUTH_EVENTS} unreadable ({exc.strerror or exc}): no event_coverage"]
        else:
            indexes = sorted(paths.goal_partition_dir(partition).glob(f"{partition}-*.parquet"))
            coverage = event_coverage([r for index in indexes for r in read_index(index).to_pylist()], truth)
            if truth.bad_lines:
                notes = [*notes, f"{truth.bad_lines} line(s) of {GROUND_TRUTH_EVENTS} are not events and were skipped"]
    return StageResult({
        "moments": len(moments),
        "goals_written": report.goals_written,
        **({"event_coverage": coverage} if coverage else {}),
        "by_miner": report.by_miner,
        "tasks_in_vocabulary": len(tasks),
        "notes": notes,
        "quarantined": sum(report.failures.values()),
        "failures_by_reason": report.failures,
        "shards": len(report.shards),
        "resize": clips.resize_method,
        "path": paths.goal_partition_dir(partition),
    }, [f"partition {partition}: {note}" for note in notes])
