"""Embedding stage: goal-space embeddings of every goal clip and of every clip, as parquet tables
(512 float32 per row, raw MineCLIP scale), with checks for dimension, NaN/inf and norm drift."""

import json
import warnings
from collections import Counter
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from goalcraft.assets.keys import GOAL_CLIPS, GOAL_SPACE_MODEL, VIDEO_CLIPS
from goalcraft.assets.training import NORM_STATS_FILE, goal_space_device
from goalcraft.config import GoalcraftConfig
from goalcraft.data.embeddings import NormStats, check_embeddings, embed_shards
from goalcraft.data.goal_stage import GOAL_INDEX_SCHEMA
from goalcraft.data.shards import INDEX_SCHEMA
from goalcraft.data.splits import SPLITS, with_split_column
from goalcraft.pipelines.partitions_definition import corpus_partitions
from goalcraft.models.mineclip import load_mineclip
from goalcraft.resources import StorageResource, TrainingResource
from goalcraft.storage import StoragePaths, write_parquet_atomic



def _embed(paths: StoragePaths, training: TrainingResource, shards: list[Path], log,
           frame_features: bool = False, index_schema: pa.Schema = INDEX_SCHEMA) -> pa.Table:
    model = load_mineclip(paths.goal_space_dir / "best")
    device = goal_space_device(training.goal_space)
    total = [0]

    def progress(done: int) -> None:
        if done - total[0] >= 256:
            log(f"embedded {done} clips")
            total[0] = done

    return embed_shards(model.to(device), shards, batch_size=training.goal_space.embed_batch_size,
                        device=device, progress=progress, frame_features=frame_features,
                        index_schema=index_schema)


def _reference(paths: StoragePaths) -> NormStats | None:
    path = paths.goal_space_dir / NORM_STATS_FILE
    return NormStats(**json.loads(path.read_text())) if path.is_file() else None


def _check(table, paths: StoragePaths) -> dg.AssetCheckResult:
    ok, meta = check_embeddings(table, dim=512, reference=_reference(paths))
    return dg.AssetCheckResult(passed=ok, metadata={k: dg.MetadataValue.json(v) if isinstance(v, list) else v
                                                    for k, v in meta.items()})


def definitions(config: GoalcraftConfig) -> dg.Definitions:
    assets, checks = build_embedding_assets(corpus_partitions(config.partitions.count))
    return dg.Definitions(assets=assets, asset_checks=checks)


def build_embedding_assets(partitions_def: dg.PartitionsDefinition,
                           ) -> tuple[list[dg.AssetsDefinition], list[dg.AssetChecksDefinition]]:
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
        paths = storage.paths
        # Per-frame features too: the goal predictor's video Q-Former reads them (stage 1 targets).
        table = _embed(paths, training, paths.goal_shards(), context.log.info, frame_features=True,
                       index_schema=GOAL_INDEX_SCHEMA)
        if table.num_rows == 0:
            context.log.warning("no goal clips to embed: the goal-embeddings table is empty (see goal_clips' notes)")
        s = training.splits
        table = with_split_column(table, val_fraction=s.val_fraction, test_fraction=s.test_fraction)
        write_parquet_atomic(table, paths.goal_embeddings_table)
        split_counts = dict(Counter(table.column("split").to_pylist()))
        norms = table.column("norm").to_numpy() if table.num_rows else []
        return dg.MaterializeResult(metadata={
            "rows": table.num_rows,
            "by_miner": dg.MetadataValue.json(dict(Counter(table.column("miner").to_pylist())) if table.num_rows else {}),
            "tasks": len(set(table.column("task").to_pylist())) if table.num_rows else 0,
            "norm_mean": float(norms.mean()) if len(norms) else 0.0,
            "splits": dg.MetadataValue.json({name: split_counts.get(name, 0) for name in SPLITS}),
            "table": dg.MetadataValue.path(str(paths.goal_embeddings_table)),
        })

    @dg.asset(
        group_name="embeddings",
        kinds={"pytorch", "parquet"},
        partitions_def=partitions_def,
        deps=[VIDEO_CLIPS, GOAL_SPACE_MODEL],
        description="One row per clip of the partition: the clip's index columns and its goal-space embedding.",
    )
    def clip_embeddings(context: dg.AssetExecutionContext, storage: StorageResource,
                        training: TrainingResource) -> dg.MaterializeResult:
        paths = storage.paths
        shards = sorted(paths.clip_partition_dir(context.partition_key).glob("p*-*.tar"))
        table = _embed(paths, training, shards, context.log.info)
        out = paths.clip_embeddings_table(context.partition_key)
        write_parquet_atomic(table, out)
        return dg.MaterializeResult(metadata={"rows": table.num_rows, "table": dg.MetadataValue.path(str(out))})

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
