"""Ingest: the manifests, the trial folders and the task vocabulary, validated into tables."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from goalcraft.config import GoalsSettings
from goalcraft.data.manifest import ManifestError, read_manifest_table
from goalcraft.data.partition_keys import partition_of
from goalcraft.data.quarantine import QuarantineRecord, quarantine_table
from goalcraft.data.tables import PARTITION_COUNT_KEY, records_table
from goalcraft.data.task_vocabulary import load_task_vocabulary, write_task_vocabulary
from goalcraft.data.steve1_eval import trial_sources
from goalcraft.data.trials import TrialRecord, drop_duplicate_ids, scan_trials
from goalcraft.stages import StageError, StageResult
from goalcraft.storage import StoragePaths, write_parquet_atomic

#: A corpus need not have the default tasks.json; a task file the user names must exist.
DEFAULT_TASK_FILES = GoalsSettings.model_fields["task_files"].default


def _with_partitions(table: pa.Table, ids: list[str], count: int) -> pa.Table:
    table = table.append_column("partition", pa.array([partition_of(i, count) for i in ids], pa.string()))
    # Recorded so the clip stage can refuse a table split for another partition count.
    return table.replace_schema_metadata({PARTITION_COUNT_KEY: str(count).encode()})


def _failures(rejected: list[QuarantineRecord]) -> dict[str, int]:
    return {f"rejected: {reason}": n for reason, n in sorted(Counter(r.reason for r in rejected).items())}


def ingest_manifests(paths: StoragePaths, corpus_root: Path, manifests: Sequence[Path],
                     partition_count: int) -> StageResult:
    """The manifests → ``ingest/manifest.parquet`` (with partitions) and its quarantine table."""
    try:
        records, rejected = read_manifest_table(manifests, corpus_root)
    except ManifestError as exc:  # a configuration error: one line, not a traceback
        raise StageError(str(exc)) from None
    table = _with_partitions(records, records.column("id").to_pylist(), partition_count)
    write_parquet_atomic(table, paths.manifest_table)
    write_parquet_atomic(quarantine_table(rejected), paths.manifest_quarantine_table)
    return StageResult({
        "videos": table.num_rows,
        "with_transcript": table.num_rows - table.column("transcript_path").null_count,
        "rejected": len(rejected),
        "partitions_used": pc.count_distinct(table.column("partition")).as_py(),
        "hours": round((pc.sum(table.column("duration")).as_py() or 0.0) / 3600, 3),
        "table": paths.manifest_table,
        **_failures(rejected),
    })


def ingest_trials(paths: StoragePaths, corpus_root: Path, trials_dir: Path, partition_count: int, *,
                  steve1_results_dirs: Sequence[str] = (), recorded_samples_dirs: Sequence[str] = ()) -> StageResult:
    """The trial folders, STEVE-1 evaluation results and recorded samples → ``ingest/trials.parquet``
    (with partitions) and its quarantine table."""
    warnings = []
    if trials_dir.is_dir():
        trials, rejected = scan_trials(trials_dir, corpus_root)
    else:
        trials, rejected = [], []
        warnings.append(f"no trials folder at {trials_dir}; no trials ingested")
    try:  # a folder the user named must exist
        found, bad = trial_sources(corpus_root, steve1_results_dirs, recorded_samples_dirs)
    except ValueError as exc:
        raise StageError(f"{exc} (see [paths] steve1_results_dirs, recorded_samples_dirs)") from None
    trials, duplicates = drop_duplicate_ids(trials + found)
    rejected += bad + duplicates
    table = _with_partitions(records_table(trials, TrialRecord), [t.id for t in trials], partition_count)
    write_parquet_atomic(table, paths.trials_table)
    write_parquet_atomic(quarantine_table(rejected), paths.trials_quarantine_table)
    return StageResult({
        "trials": len(trials),
        "successful": sum(t.success for t in trials),
        "steve1_layout": sum(t.layout == "steve1" for t in trials),
        "steve1_results": sum(t.layout == "steve1_result" for t in trials),
        "recorded_samples": sum(t.layout == "recorded_sample" for t in trials),
        "rejected": len(rejected),
        "table": paths.trials_table,
        **_failures(rejected),
    }, warnings)


def ingest_task_vocabulary(paths: StoragePaths, corpus_root: Path, settings: GoalsSettings) -> StageResult:
    """``[goals] task_files`` (+ STEVE-1's prompts) → ``ingest/task_vocabulary.json``, loaded once."""
    try:
        vocabulary = load_task_vocabulary(corpus_root, settings.task_files, steve1_prompts=settings.steve1_prompts,
                                          task_files_set=settings.task_files != DEFAULT_TASK_FILES)
    except ValueError as exc:  # a task file the user named is missing or malformed
        raise StageError(str(exc)) from None
    write_task_vocabulary(vocabulary, paths.task_vocabulary_file)
    return StageResult({
        "tasks": len(vocabulary.tasks),
        "by_source": dict(Counter(t.source for t in vocabulary.tasks)),
        "notes": list(vocabulary.notes),
        "path": paths.task_vocabulary_file,
    }, list(vocabulary.notes))
