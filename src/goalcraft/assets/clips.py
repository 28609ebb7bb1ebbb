"""Clip stage: one partition of videos and trials → WebDataset shards of 16-frame 160x256 clips.

(No `from __future__ import annotations` here: Dagster reads the context type hints at runtime.)
"""


import warnings

import dagster as dg

from goalcraft.assets.keys import INGEST
from goalcraft.config import GoalcraftConfig
from goalcraft.assets.materialize import materialize
from goalcraft.data.shards import verify_partition
from goalcraft.pipelines.gpu import cpu_step_tags
from goalcraft.pipelines.partitions_definition import corpus_partitions
from goalcraft.resources import ClipStageResource, CorpusResource, StorageResource
from goalcraft.stages.clips import clip_partition


def definitions(config: GoalcraftConfig) -> dg.Definitions:
    assets, checks = build_clip_assets(corpus_partitions(config.partitions.count),
                                       cpu_step_tags(config.gpu, "video_clips"))
    return dg.Definitions(assets=assets, asset_checks=checks)


def build_clip_assets(partitions_def: dg.PartitionsDefinition, op_tags: dict[str, str] | None = None,
                      ) -> tuple[list[dg.AssetsDefinition], list[dg.AssetChecksDefinition]]:
    """``op_tags``: what a step asks its executor for (goalcraft.pipelines.gpu.cpu_step_tags), for the
    asset and its check alike."""
    count = len(partitions_def.get_partition_keys())

    @dg.asset(
        group_name="clips",
        kinds={"webdataset", "parquet", "video"},
        partitions_def=partitions_def,
        deps=INGEST,
        description=(
            "16-frame clips (160x256, JPEG per frame) in WebDataset shards, one folder per partition: "
            "transcript segments become clip windows, agent trials are tiled and captioned with their "
            "instruction. Each shard has a parquet index and a stats record; rejected inputs are in the "
            "partition's quarantine.parquet. Formats: docs/data-formats.md."
        ),
        metadata={"frames_per_clip": 16, "frame_size": "160x256", "partitions": count},
        op_tags=op_tags,
    )
    def video_clips(context: dg.AssetExecutionContext, corpus: CorpusResource, storage: StorageResource,
                    clip_stage: ClipStageResource) -> dg.MaterializeResult:
        return materialize(context, lambda: clip_partition(storage.paths, corpus.root, context.partition_key, count,
                                                           clip_stage.settings(corpus.root)))

    # Partitioned asset checks are a Dagster preview feature (1.13); the check is per partition
    # because a 730K-video corpus cannot be re-verified whole after each partition.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        shards_valid = _shards_valid_check(video_clips, partitions_def, op_tags)
    return [video_clips], [shards_valid]


def _shards_valid_check(video_clips: dg.AssetsDefinition, partitions_def: dg.PartitionsDefinition,
                        op_tags: dict[str, str] | None) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=video_clips,
        partitions_def=partitions_def,
        name="shards_valid",
        blocking=True,
        op_tags=op_tags,
        description="Every shard opens, holds exactly its indexed keys, and every clip decodes to 16 frames of 160x256.",
    )
    def shards_valid(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
        partition_dir = storage.paths.clip_partition_dir(context.partition_key)
        shards, clips, problems = verify_partition(partition_dir)
        return dg.AssetCheckResult(
            passed=not problems,
            metadata={"shards": shards, "clips": clips, "problems": dg.MetadataValue.json(problems[:50])},
        )

    return shards_valid
