"""Evaluation stage: the goal models side by side on the held-out goal clips (goal_model_comparison),
every goal model on every instruction set as parquet tables that accumulate across runs, and the HTML
comparison report. Bodies: goalcraft.stages.evaluation; every model and table read is an upstream asset."""

import dagster as dg

from goalcraft.assets.keys import (
    GOAL_ALIGNER,
    GOAL_CLIPS,
    GOAL_EMBEDDINGS,
    GOAL_SPACE_MODEL,
    STEVE1_PRIOR,
    TASK_VOCABULARY,
)
from goalcraft.assets.materialize import materialize
from goalcraft.config import GoalcraftConfig
from goalcraft.resources import CorpusResource, StorageResource, TrainingResource
from goalcraft.stages.evaluation import compare_goal_models, evaluate_goal_models, write_evaluation_report

#: What a goal model's evaluation reads: the predictor, the baseline (goal-space text → prior), and the
#: goal-embeddings table (its split column says which clips are held out).
MODEL_INPUTS = [GOAL_ALIGNER, STEVE1_PRIOR, GOAL_SPACE_MODEL, GOAL_EMBEDDINGS, TASK_VOCABULARY]


def definitions(config: GoalcraftConfig) -> dg.Definitions:
    return dg.Definitions(assets=build_evaluation_assets())


def build_evaluation_assets() -> list[dg.AssetsDefinition]:
    @dg.asset(
        group_name="evaluation",
        kinds={"pytorch"},
        deps=MODEL_INPUTS,
        description=(
            "The goal predictor and the MineCLIP text → prior baseline on the test split's goal clips (which "
            "neither trained on): mean cosine of z_goal to the clip's true goal embedding, the same centred "
            "on the training goals' mean, and the norm ratio; with each clip's own instruction and with its "
            "task's other phrasings."
        ),
    )
    def goal_model_comparison(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
        return materialize(context, lambda: compare_goal_models(storage.paths))

    @dg.asset(
        group_name="evaluation",
        kinds={"pytorch", "parquet", "duckdb"},
        deps=MODEL_INPUTS,
        description=(
            "Every goal model (the goal predictor; MineCLIP text + prior, deterministic and sampled over seeds) "
            "on every instruction set, against the success visuals (the held-out goal clips, the user's STEVE-1 "
            "trials per [splits] steve1_trials, imported [evaluation] success_visuals, each marked with its "
            "source): text discriminability, goal "
            "similarity across tasks (prior collapse), top-1/top-5 goal accuracy, discriminability, synonym "
            "robustness, with bootstrap 95% CIs. Parquet tables per run (runs, summary, per_task, per_pair, "
            "per_instruction, examples) that accumulate; query them with `goalcraft sql`."
        ),
    )
    def goal_model_evaluation(context: dg.AssetExecutionContext, storage: StorageResource, corpus: CorpusResource,
                              training: TrainingResource) -> dg.MaterializeResult:
        return materialize(context, lambda: evaluate_goal_models(storage.paths, corpus.root, training.evaluation))

    @dg.asset(
        group_name="evaluation",
        kinds={"html"},
        deps=[goal_model_evaluation, GOAL_EMBEDDINGS, GOAL_CLIPS],
        description=("The HTML comparison report of the latest evaluation run: metrics with CIs side by side, "
                     "per-model task-similarity heatmaps, most-confused pairs, and instruction → nearest goal "
                     "clips with their frames."),
    )
    def evaluation_report(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
        return materialize(context, lambda: write_evaluation_report(storage.paths))

    return [goal_model_comparison, goal_model_evaluation, evaluation_report]
