"""Jobs: the ingest stage, and the partitioned clip stage (backfill it from the UI's partitions view)."""

from __future__ import annotations

import dagster as dg

from goalcraft.pipelines.gpu import GpuSettings, executor_for


def build_jobs(gpu: GpuSettings | None = None) -> list[dg.UnresolvedAssetJobDefinition]:
    # The clip job's partitions are inferred from its assets (the corpus partitions).
    ingest_job = dg.define_asset_job(
        "ingest_job", selection=dg.AssetSelection.groups("ingest"),
        description="Validate the corpus manifest and agent-trial folders into the ingest tables.",
    )
    clips_job = dg.define_asset_job(
        "clips_job", selection=dg.AssetSelection.groups("clips"),
        description="Cut one partition of videos and trials into 16-frame clip shards.",
    )
    goals_job = dg.define_asset_job(
        "goals_job", selection=dg.AssetSelection.groups("goals"),
        description="Mine success moments of one partition and cut its goal clips.",
    )
    training_job = dg.define_asset_job(
        "training_job",
        selection=dg.AssetSelection.assets("goal_space_model", "goal_embeddings", "steve1_prior"),
        description="Train the MineCLIP goal space on all clips, embed the goal clips, train the prior.",
    )
    clip_embeddings_job = dg.define_asset_job(
        "clip_embeddings_job", selection=dg.AssetSelection.assets("clip_embeddings"),
        description="Embed one partition's clips with the trained goal space.",
    )
    gpu = gpu or GpuSettings()
    # In-process by default (a laptop, one GPU); the k8s/Ray executor when [gpu] target says so.
    predictor_job = dg.define_asset_job(
        "predictor_job", selection=dg.AssetSelection.groups("predictor"), executor_def=executor_for(gpu),
        tags={"goalcraft/gpu_target": gpu.target},
        description="Train the goal predictor (stage 1) and its aligner (stage 2); compare with the baseline.",
    )
    evaluation_job = dg.define_asset_job(
        "evaluation_job", selection=dg.AssetSelection.groups("evaluation"),
        description="Evaluate the goal models on the instruction sets and write the tables and the HTML report.",
    )
    # What the retraining schedule runs: goal space, goal embeddings, prior, predictor, evaluation.
    retrain_and_evaluate_job = dg.define_asset_job(
        "retrain_and_evaluate_job",
        selection=(dg.AssetSelection.assets("goal_space_model", "goal_embeddings", "steve1_prior")
                   | dg.AssetSelection.groups("predictor", "evaluation")),
        description="Re-train the goal space, prior, predictor and aligner on the current clips, then evaluate.",
    )
    return [ingest_job, clips_job, goals_job, training_job, clip_embeddings_job, predictor_job, evaluation_job,
            retrain_and_evaluate_job]
