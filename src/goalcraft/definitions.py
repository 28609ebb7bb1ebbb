"""The goalcraft code location: one Definitions object built from goalcraft.toml (goalcraft.config)."""

from __future__ import annotations

import dagster as dg

from goalcraft.assets.clips import build_clip_assets
from goalcraft.assets.embeddings import build_embedding_assets
from goalcraft.assets.evaluation import build_evaluation_assets
from goalcraft.assets.ingest import build_ingest_assets
from goalcraft.assets.predictor import build_predictor_assets
from goalcraft.assets.success import build_success_assets
from goalcraft.assets.training import build_training_assets
from goalcraft.config import GoalcraftConfig, load_config
from goalcraft.pipelines.executors import cpu_executor
from goalcraft.pipelines.jobs import build_jobs
from goalcraft.pipelines.schedules import build_retraining_schedule
from goalcraft.pipelines.sensors import build_new_inputs_sensor
from goalcraft.pipelines.partitions_definition import corpus_partitions
from goalcraft.resources import (
    ClipStageResource,
    CorpusResource,
    MiningResource,
    StorageResource,
    TrainingResource,
)


def build_resources(config: GoalcraftConfig) -> dict[str, dg.ConfigurableResource]:
    return {
        "storage": StorageResource(data_root=config.paths.data_root),
        "corpus": CorpusResource(corpus_root=str(config.paths.corpus_path), manifests=config.paths.manifests,
                                 trials_dir=config.paths.trials_dir),
        "clip_stage": ClipStageResource(clips=config.clips),
        "mining": MiningResource(success=config.success),
        "training": TrainingResource(goal_space=config.goal_space, prior=config.prior, predictor=config.predictor,
                                     evaluation=config.evaluation),
    }


def build_definitions(config: GoalcraftConfig) -> dg.Definitions:
    partitions_def = corpus_partitions(config.partitions.count)
    ingest = build_ingest_assets(config.partitions.count)
    clip_assets, clip_checks = build_clip_assets(partitions_def, ingest)
    (goal_clips,) = build_success_assets(partitions_def, ingest)
    goal_space_model, steve1_prior = build_training_assets(clip_assets[0], dg.AssetKey("goal_embeddings"))
    embedding_assets, embedding_checks = build_embedding_assets(partitions_def, clip_assets[0], goal_clips,
                                                                goal_space_model.key)
    predictor_assets, predictor_checks = build_predictor_assets(dg.AssetKey("goal_embeddings"), config.gpu)
    evaluation_assets = build_evaluation_assets(predictor_assets[1])
    jobs = build_jobs(config.gpu)
    by_name = {job.name: job for job in jobs}
    # Both off by default (docs/automation.md): turn them on in the UI or with `dagster schedule|sensor start`.
    schedules = [build_retraining_schedule(automation=config.automation)]
    sensors = [build_new_inputs_sensor(
        config.paths.corpus_path, config.paths.manifests, config.paths.trials_dir, config.partitions.count,
        ingest_job=by_name["ingest_job"], clips_job=by_name["clips_job"], automation=config.automation)]
    return dg.Definitions(
        assets=[*ingest, *clip_assets, goal_clips, goal_space_model, steve1_prior, *embedding_assets,
                *predictor_assets, *evaluation_assets],
        asset_checks=[*clip_checks, *embedding_checks, *predictor_checks],
        jobs=jobs,
        schedules=schedules,
        sensors=sensors,
        resources=build_resources(config),
        executor=cpu_executor(),
    )


defs = build_definitions(load_config())
