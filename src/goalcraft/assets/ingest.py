"""Ingest stage: the corpus manifest and the agent-trial folders, validated into parquet tables.

Every row the clip stage will see is here, with its partition; every row that could not be used is
in the ingest quarantine table with the reason.
"""


from collections import Counter

import dagster as dg
import pyarrow as pa

from goalcraft.config import GoalcraftConfig
from goalcraft.data.manifest import ManifestError, VideoRecord, read_manifests
from goalcraft.data.partition_keys import partition_of
from goalcraft.data.quarantine import QuarantineRecord, quarantine_table
from goalcraft.data.tables import PARTITION_COUNT_KEY, records_table
from goalcraft.data.trials import TrialRecord, scan_trials
from goalcraft.config import GoalsSettings
from goalcraft.data.task_vocabulary import load_task_vocabulary, write_task_vocabulary
from goalcraft.resources import CorpusResource, GoalsResource, StorageResource
from goalcraft.storage import write_parquet_atomic



def _with_partitions(table: pa.Table, ids: list[str], count: int) -> pa.Table:
    table = table.append_column("partition", pa.array([partition_of(i, count) for i in ids], pa.string()))
    # Recorded so the clip stage can refuse a table split for another partition count.
    return table.replace_schema_metadata({PARTITION_COUNT_KEY: str(count).encode()})


def _failure_metadata(rejected: list[QuarantineRecord]) -> dict[str, int]:
    return {f"rejected: {reason}": n for reason, n in sorted(Counter(r.reason for r in rejected).items())}


#: A corpus need not have the default tasks.json; a task file the user names must exist.
DEFAULT_TASK_FILES = GoalsSettings.model_fields["task_files"].default


def definitions(config: GoalcraftConfig) -> dg.Definitions:
    return dg.Definitions(assets=build_ingest_assets(config.partitions.count))


def build_ingest_assets(partition_count: int) -> list[dg.AssetsDefinition]:
    @dg.asset(
        group_name="ingest",
        kinds={"json", "parquet"},
        description=(
            "The video corpus manifest (MineDojo YouTube-database records: id, title, link, view_count, "
            "like_count, duration, fps, plus local video/transcript paths), validated, with each video's "
            "partition. Rejected rows go to ingest/manifest_quarantine.parquet."
        ),
    )
    def corpus_manifest(context: dg.AssetExecutionContext, corpus: CorpusResource,
                        storage: StorageResource) -> dg.MaterializeResult:
        paths = storage.paths
        try:
            records, rejected = read_manifests(corpus.manifest_paths, corpus.root)
        except ManifestError as exc:  # a configuration error: one line, not a traceback
            raise dg.Failure(str(exc)) from None
        table = _with_partitions(records_table(records, VideoRecord), [r.id for r in records], partition_count)
        write_parquet_atomic(table, paths.manifest_table)
        write_parquet_atomic(quarantine_table(rejected), paths.manifest_quarantine_table)
        with_transcript = sum(r.transcript_path is not None for r in records)
        context.log.info(f"{len(records)} videos accepted, {len(rejected)} rejected")
        return dg.MaterializeResult(
            metadata={
                "videos": len(records),
                "with_transcript": with_transcript,
                "rejected": len(rejected),
                "partitions_used": len(set(table.column("partition").to_pylist())),
                "hours": round(sum(r.duration for r in records) / 3600, 3),
                "table": dg.MetadataValue.path(str(paths.manifest_table)),
                **_failure_metadata(rejected),
            }
        )

    @dg.asset(
        group_name="ingest",
        kinds={"json", "parquet"},
        description=(
            "Agent trial recordings (goalcraft layout: video + metadata.json; STEVE-1 EpisodeStorage "
            "layout: frames.mp4 + metadata.json + len.txt), validated, with success moments and "
            "partitions. Rejected folders go to ingest/trials_quarantine.parquet."
        ),
    )
    def agent_trials(context: dg.AssetExecutionContext, corpus: CorpusResource,
                     storage: StorageResource) -> dg.MaterializeResult:
        paths = storage.paths
        if corpus.trials_path.is_dir():
            trials, rejected = scan_trials(corpus.trials_path, corpus.root)
        else:
            trials, rejected = [], []
            context.log.info(f"no trials folder at {corpus.trials_path}; no trials ingested")
        table = _with_partitions(records_table(trials, TrialRecord), [t.id for t in trials], partition_count)
        write_parquet_atomic(table, paths.trials_table)
        write_parquet_atomic(quarantine_table(rejected), paths.trials_quarantine_table)
        return dg.MaterializeResult(
            metadata={
                "trials": len(trials),
                "successful": sum(t.success for t in trials),
                "steve1_layout": sum(t.layout == "steve1" for t in trials),
                "rejected": len(rejected),
                "table": dg.MetadataValue.path(str(paths.trials_table)),
                **_failure_metadata(rejected),
            }
        )

    @dg.asset(
        group_name="ingest",
        kinds={"json"},
        description=(
            "The task vocabulary every stage reads, loaded once from [goals] task_files (tasks.json, MineDojo "
            "task YAML, MineStudio task folders) plus STEVE-1's 11 prompts: each task's instruction, "
            "paraphrases, narration lines and source. Without task files the stages that need none still "
            "run; the notes say what is skipped."
        ),
    )
    def task_vocabulary(context: dg.AssetExecutionContext, corpus: CorpusResource, goals: GoalsResource,
                        storage: StorageResource) -> dg.MaterializeResult:
        settings = goals.goals
        try:
            vocabulary = load_task_vocabulary(corpus.root, settings.task_files, steve1_prompts=settings.steve1_prompts,
                                              task_files_set=settings.task_files != DEFAULT_TASK_FILES)
        except ValueError as exc:  # a task file the user named is missing or malformed
            raise dg.Failure(str(exc)) from None
        write_task_vocabulary(vocabulary, storage.paths.task_vocabulary_file)
        for note in vocabulary.notes:
            context.log.warning(note)
        return dg.MaterializeResult(metadata={
            "tasks": len(vocabulary.tasks),
            "by_source": dg.MetadataValue.json(dict(Counter(t.source for t in vocabulary.tasks))),
            "notes": dg.MetadataValue.json(list(vocabulary.notes)),
            "path": dg.MetadataValue.path(str(storage.paths.task_vocabulary_file)),
        })

    return [corpus_manifest, agent_trials, task_vocabulary]
