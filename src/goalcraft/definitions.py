"""The goalcraft code location: each stage module's ``dg.Definitions`` merged, with the resources,
jobs, automation and executor built from goalcraft.toml (goalcraft.config)."""

from __future__ import annotations

import dagster as dg

from goalcraft.assets import agent, clips, embeddings, evaluation, goals, ingest, predictor, training
from goalcraft.config import GoalcraftConfig, load_config
from goalcraft.pipelines.gpu import location_executor
from goalcraft.pipelines.jobs import build_jobs
from goalcraft.pipelines.progress import LOGGERS
from goalcraft.pipelines.schedules import build_retraining_schedule
from goalcraft.pipelines.sensors import build_new_inputs_sensor
from goalcraft.resources import (
    AgentResource,
    ClipStageResource,
    CorpusResource,
    GoalsResource,
    StorageResource,
    TrainingResource,
    as_config,
)

#: The stages in data-flow order; each module's ``definitions(config)`` holds its assets and checks.
STAGES = (ingest, clips, goals, training, embeddings, predictor, evaluation, agent)


def build_resources(config: GoalcraftConfig) -> dict[str, dg.ConfigurableResource]:
    return {
        "storage": StorageResource(data_root=config.paths.data_root),
        "corpus": CorpusResource(paths=as_config(config.paths)),
        "clip_stage": ClipStageResource(clips=as_config(config.clips)),
        "goals": GoalsResource(goals=as_config(config.goals)),
        "training": TrainingResource(goal_space=as_config(config.goal_space), prior=as_config(config.prior),
                                     predictor=as_config(config.predictor), splits=as_config(config.splits),
                                     evaluation=as_config(config.evaluation)),
        "agent": AgentResource(policy=as_config(config.policy), agent=as_config(config.agent),
                               predictor_rl=as_config(config.predictor_rl)),
    }


def build_definitions(config: GoalcraftConfig) -> dg.Definitions:
    jobs = build_jobs(config.gpu)
    by_name = {job.name: job for job in jobs}
    # Both off by default (docs/automation.md): turn them on in the UI or with `dagster schedule|sensor start`.
    schedules = [build_retraining_schedule(automation=config.automation)]
    sensors = [build_new_inputs_sensor(config.partitions.count, ingest_job=by_name["ingest_job"],
                                       clips_job=by_name["clips_job"], automation=config.automation)]
    return dg.Definitions.merge(
        *(stage.definitions(config) for stage in STAGES),
        dg.Definitions(jobs=jobs, schedules=schedules, sensors=sensors, resources=build_resources(config),
                       executor=location_executor(config.gpu), loggers=LOGGERS),
    )


defs = build_definitions(load_config())
