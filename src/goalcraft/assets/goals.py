"""Goal stage: mined goal moments (agent trials, narrated transcripts, VLM rating files) cut into
goal clips — 16 consecutive frames ending at the success moment — per corpus partition."""


import dagster as dg

from goalcraft.assets.keys import INGEST, TASK_VOCABULARY
from goalcraft.config import GoalcraftConfig
from goalcraft.data.goal_stage import build_goal_partition
from goalcraft.data.manifest import VideoRecord
from goalcraft.data.mining import mine_ratings, mine_transcripts, mine_trials, mining_notes
from goalcraft.data.partition_keys import partition_of
from goalcraft.data.tables import read_partition_rows
from goalcraft.data.task_vocabulary import Task, read_task_vocabulary
from goalcraft.data.trials import TrialRecord
from goalcraft.pipelines.partitions_definition import corpus_partitions
from goalcraft.resources import ClipStageResource, CorpusResource, GoalsResource, StorageResource


def definitions(config: GoalcraftConfig) -> dg.Definitions:
    return dg.Definitions(assets=build_goal_assets(corpus_partitions(config.partitions.count)))


def build_goal_assets(partitions_def: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    count = len(partitions_def.get_partition_keys())

    @dg.asset(
        group_name="goals",
        kinds={"webdataset", "parquet", "video"},
        partitions_def=partitions_def,
        deps=[*INGEST, TASK_VOCABULARY],
        description=(
            "Goal clips: 16 consecutive frames (160x256) ending at a success moment, mined from successful "
            "agent trials, from transcript segments naming a task (moment at the end of the speech), and "
            "from VLM rating files above a threshold; with provenance (source, miner, task, instruction, "
            "confidence). WebDataset shards + parquet index per partition, like video_clips."
        ),
    )
    def goal_clips(context: dg.AssetExecutionContext, corpus: CorpusResource, storage: StorageResource,
                   goals: GoalsResource, clip_stage: ClipStageResource) -> dg.MaterializeResult:
        paths = storage.paths
        partition = context.partition_key
        settings = goals.goals
        videos = read_partition_rows(paths.manifest_table, partition, count, VideoRecord)
        trials = read_partition_rows(paths.trials_table, partition, count, TrialRecord)
        tasks: list[Task] = list(read_task_vocabulary(paths.task_vocabulary_file).tasks)
        moments, rejects = mine_trials(trials)
        found, bad = mine_transcripts(videos, corpus.root, tasks)
        moments, rejects = moments + found, rejects + bad
        ratings = bool(settings.ratings_dir and (corpus.root / settings.ratings_dir).is_dir())
        notes = mining_notes(trials=len(trials), videos=len(videos), tasks=len(tasks), ratings=ratings)
        for note in notes:
            context.log.warning(f"partition {partition}: {note}")
        if ratings:
            files = sorted((corpus.root / settings.ratings_dir).glob("*.json"))
            rated, bad = mine_ratings(files, corpus.root, settings.rating_threshold, tasks=tasks,
                                      decoder=clip_stage.clips.decoder)
            # Rating files cover the whole corpus; each partition keeps its own videos' moments.
            moments += [m for m in rated if partition_of(m.source_id, count) == partition]
            rejects += [r for r in bad if partition_of(r.source_id or r.input, count) == partition]
        report = build_goal_partition(partition, moments, corpus.root, paths, decoder=clip_stage.clips.decoder,
                                      shard_target_bytes=clip_stage.clips.shard_target_bytes,
                                      jpeg_quality=clip_stage.clips.jpeg_quality, quarantine=rejects)
        return dg.MaterializeResult(metadata={
            "moments": len(moments),
            "goals_written": report.goals_written,
            "by_miner": dg.MetadataValue.json(report.by_miner),
            "tasks_in_vocabulary": len(tasks),
            "notes": dg.MetadataValue.json(notes),
            "quarantined": sum(report.failures.values()),
            "failures_by_reason": dg.MetadataValue.json(report.failures),
            "shards": len(report.shards),
            "path": dg.MetadataValue.path(str(paths.goal_partition_dir(partition))),
        })

    return [goal_clips]
