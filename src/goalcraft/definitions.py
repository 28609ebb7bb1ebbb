"""The goalcraft code location: one Definitions object built from goalcraft.toml (goalcraft.config)."""

from __future__ import annotations

import dagster as dg

from goalcraft.assets.clips import build_clip_assets
from goalcraft.assets.ingest import build_ingest_assets
from goalcraft.config import GoalcraftConfig, load_config
from goalcraft.pipelines.executors import cpu_executor
from goalcraft.pipelines.jobs import build_jobs
from goalcraft.pipelines.partitions import corpus_partitions
from goalcraft.resources import ClipStageResource, CorpusResource, StorageResource


def build_resources(config: GoalcraftConfig) -> dict[str, dg.ConfigurableResource]:
    return {
        "storage": StorageResource(data_root=config.paths.data_root),
        "corpus": CorpusResource(corpus_root=str(config.paths.corpus_path), manifests=config.paths.manifests,
                                 trials_dir=config.paths.trials_dir),
        "clip_stage": ClipStageResource(clips=config.clips),
    }


def build_definitions(config: GoalcraftConfig) -> dg.Definitions:
    partitions_def = corpus_partitions(config.partitions.count)
    ingest = build_ingest_assets(config.partitions.count)
    clip_assets, clip_checks = build_clip_assets(partitions_def, ingest)
    return dg.Definitions(
        assets=[*ingest, *clip_assets],
        asset_checks=clip_checks,
        jobs=build_jobs(),
        resources=build_resources(config),
        executor=cpu_executor(),
    )


defs = build_definitions(load_config())
