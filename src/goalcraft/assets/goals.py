"""Goal stage: mined goal moments (agent trials, narrated transcripts, VLM rating files) cut into
goal clips — 16 consecutive frames ending at the success moment — per corpus partition (body:
goalcraft.stages.clips.goal_partition)."""

import dagster as dg

from goalcraft.assets.keys import INGEST, TASK_VOCABULARY
from goalcraft.assets.materialize import materialize
from goalcraft.config import GoalcraftConfig
from goalcraft.pipelines.gpu import cpu_step_tags
from goalcraft.pipelines.partitions_definition import corpus_partitions
from goalcraft.resources import ClipStageResource, CorpusResource, GoalsResource, StorageResource
from goalcraft.stages.clips import goal_partition


def definitions(config: GoalcraftConfig) -> dg.Definitions:
    return dg.Definitions(assets=build_goal_assets(corpus_partitions(config.partitions.count),
                                                   cpu_step_tags(config.gpu, "goal_clips")))


def build_goal_assets(partitions_def: dg.PartitionsDefinition,
                      op_tags: dict[str, str] | None = None) -> list[dg.AssetsDefinition]:
    count = len(partitions_def.get_partition_keys())

    @dg.asset(
        group_name="goals",
        kinds={"webdataset", "parquet", "video"},
        partitions_def=partitions_def,
        deps=[*INGEST, TASK_VOCABULARY],
        description=(
            "Goal clips: 16 consecutive frames (160x256) ending at a success moment, mined from successful "
            "agent trials, from transcript segments naming a task (moment at the end of the speech, less "
            "[goals] transcript_lag_s), and from VLM rating files above a threshold; with provenance (source, "
            "miner, task, instruction, confidence). WebDataset shards + parquet index per partition, like "
            "video_clips. Where the corpus has ground truth (ground_truth/events.jsonl), event_coverage says "
            "how many goal clips show an unlock of their task."
        ),
        op_tags=op_tags,
    )
    def goal_clips(context: dg.AssetExecutionContext, corpus: CorpusResource, storage: StorageResource,
                   goals: GoalsResource, clip_stage: ClipStageResource) -> dg.MaterializeResult:
        return materialize(context, lambda: goal_partition(storage.paths, corpus.root, context.partition_key, count,
                                                           goals.goals, clip_stage.clips))

    return [goal_clips]
