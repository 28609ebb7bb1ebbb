"""Embedding stage: goal-space embeddings of every goal clip and of every clip, as parquet tables
(512 float32 per row, raw MineCLIP scale), with checks for dimension, NaN/inf and norm drift.
Bodies: goalcraft.stages.embeddings."""

import warnings

import dagster as dg
import pyarrow.parquet as pq

from goalcraft.assets.keys import GOAL_CLIPS, GOAL_SPACE_MODEL, VIDEO_CLIPS
from goalcraft.assets.materialize import materialize, metadata_value
from goalcraft.config import GoalcraftConfig
from goalcraft.pipelines.gpu import cpu_step_tags, gpu_asset_kwargs
from goalcraft.pipelines.partitions_definition import corpus_partitions
from goalcraft.resources import StorageResource, TrainingResource
from goalcraft.stages.embeddings import embed_clip_partition, embed_goal_clips, embeddings_sane
from goalcraft.stages.training import goal_space_device
from goalcraft.storage import StoragePaths


def _check(table, paths: StoragePaths) -> dg.AssetCheckResult:
    ok, meta = embeddings_sane(table, paths)
    return dg.AssetCheckResult(passed=ok, metadata={k: metadata_value(v) for k, v in meta.items()})


def definitions(config: GoalcraftConfig) -> dg.Definitions:
    # On a GPU goal space a partition's embedding is a GPU step (the [gpu] pool and GPU asks), else a CPU one.
    on_gpu = goal_space_device(config.goal_space).startswith("cuda")
    step = gpu_asset_kwargs(config.gpu) if on_gpu else {"op_tags": cpu_step_tags(config.gpu, "clip_embeddings")}
    assets, checks = build_embedding_assets(corpus_partitions(config.partitions.count), step)
    return dg.Definitions(assets=assets, asset_checks=checks)


def build_embedding_assets(partitions_def: dg.PartitionsDefinition, clip_step: dict | None = None,
                           ) -> tuple[list[dg.AssetsDefinition], list[dg.AssetChecksDefinition]]:
    """``clip_step``: the ``pool``/``op_tags`` of a clip_embeddings step (what it asks its executor for)."""
    clip_step = clip_step or {}
    @dg.asset(
        group_name="embeddings",
        kinds={"pytorch", "parquet"},
        deps=[GOAL_CLIPS, GOAL_SPACE_MODEL],
        description=(
            "One row per goal clip: key, source, miner, task, instruction, confidence, its goal-space "
            "embedding (512 float32, raw MineCLIP scale as STEVE-1 expects), its L2 norm, the 16 "
            "per-frame features the goal embedding is pooled from (the goal predictor's video targets), "
            "and its split (train/val/test), assigned here once by source and read by every later step."
        ),
    )
    def goal_embeddings(context: dg.AssetExecutionContext, storage: StorageResource,
                        training: TrainingResource) -> dg.MaterializeResult:
        return materialize(context, lambda: embed_goal_clips(storage.paths, training.goal_space, training.splits,
                                                             context.log.info))

    @dg.asset(
        group_name="embeddings",
        kinds={"pytorch", "parquet"},
        partitions_def=partitions_def,
        deps=[VIDEO_CLIPS, GOAL_SPACE_MODEL],
        description="One row per clip of the partition: the clip's index columns and its goal-space embedding.",
        **clip_step,
    )
    def clip_embeddings(context: dg.AssetExecutionContext, storage: StorageResource,
                        training: TrainingResource) -> dg.MaterializeResult:
        return materialize(context, lambda: embed_clip_partition(storage.paths, training.goal_space,
                                                                 context.partition_key, context.log.info))

    @dg.asset_check(asset=goal_embeddings, name="embeddings_sane", blocking=True,
                    description="512-d, no NaN/inf, norms inside the goal space's observed range.")
    def goal_embeddings_sane(storage: StorageResource) -> dg.AssetCheckResult:
        return _check(pq.read_table(storage.paths.goal_embeddings_table), storage.paths)

    with warnings.catch_warnings():  # partitioned checks are a Dagster preview feature
        warnings.simplefilter("ignore", dg.PreviewWarning)

        @dg.asset_check(asset=clip_embeddings, name="embeddings_sane", partitions_def=partitions_def,
                        description="512-d, no NaN/inf, norms inside the goal space's observed range.")
        def clip_embeddings_sane(context: dg.AssetCheckExecutionContext,
                                 storage: StorageResource) -> dg.AssetCheckResult:
            table = pq.read_table(storage.paths.clip_embeddings_table(context.partition_key))
            return _check(table, storage.paths)

    return [goal_embeddings, clip_embeddings], [goal_embeddings_sane, clip_embeddings_sane]
