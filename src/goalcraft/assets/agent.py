"""The closed loop: the goal-conditioned policy trained by hindsight relabelling on the corpus's
trajectories, and agent success per task, goal source and guidance scale (docs/closed-loop.md).
Bodies: goalcraft.stages.agent; the loops live in goalcraft.training.policy and goalcraft.evaluation."""

import dagster as dg

from goalcraft.assets.keys import (
    GOAL_ALIGNER,
    GOAL_EMBEDDINGS,
    GOAL_SPACE_MODEL,
    INGEST,
    STEVE1_PRIOR,
    TASK_VOCABULARY,
)
from goalcraft.assets.materialize import materialize
from goalcraft.config import GoalcraftConfig
from goalcraft.resources import AgentResource, ClipStageResource, CorpusResource, StorageResource
from goalcraft.stages.agent import evaluate_agent_success, finetune_goal_predictor_rl, train_goal_policy


def definitions(config: GoalcraftConfig) -> dg.Definitions:
    return dg.Definitions(assets=build_agent_assets())


def build_agent_assets() -> list[dg.AssetsDefinition]:
    @dg.asset(
        group_name="agent",
        kinds={"pytorch", "safetensors"},
        deps=[GOAL_SPACE_MODEL, GOAL_EMBEDDINGS, *INGEST],
        description=(
            "A goal-conditioned Crafter policy by STEVE-1's recipe: a conv encoder of the 4 latest 64x40 frames, "
            "the 512-d goal added through a learned linear map, classifier-free guidance (goals zeroed 10% of "
            "the time). Behaviour cloning on every trajectory the corpus recorded with its actions, each step's "
            "goal the goal-space embedding of the 16-frame clip that ends where its hindsight segment ends "
            "(STEVE-1's segments scaled to Crafter's pace). With [policy] dagger_rounds, DAgger: the policy plays "
            "with training goal clips (goal_embeddings) and the scripted player labels its steps. Best and last "
            "checkpoints, the world seeds it trained on (never evaluated on), quarantined trajectories."
        ),
    )
    def goal_policy(context: dg.AssetExecutionContext, storage: StorageResource, corpus: CorpusResource,
                    clip_stage: ClipStageResource, agent: AgentResource) -> dg.MaterializeResult:
        return materialize(context, lambda: train_goal_policy(
            storage.paths, corpus.root, agent.policy, clip_stage.clips, trials_dir=corpus.paths.trials_dir,
            say=context.log.info))

    @dg.asset(
        group_name="agent",
        kinds={"pytorch", "safetensors"},
        deps=[goal_policy, GOAL_ALIGNER, TASK_VOCABULARY, GOAL_EMBEDDINGS],
        description=(
            "REINFORCE fine-tuning of the goal predictor by agent success (the design's option B): its goal is "
            "the mean of a Gaussian over z_goal through a residual head (the identity at the start, the "
            "predictor frozen); goals are sampled in mirrored pairs, each pair played on one world with one "
            "action seed by the frozen policy on worlds of its own (reward = the target unlocked, minus an "
            "optional off-target penalty), and each task's goal takes a natural-gradient step. With [predictor_rl] "
            "explore = \"goals\", the noise lives in the span of the training goal clips' task means "
            "(goal_embeddings). Seeded and resumable; agent_success plays it beside the predictor it started from."
        ),
    )
    def goal_predictor_rl(context: dg.AssetExecutionContext, storage: StorageResource, corpus: CorpusResource,
                          agent: AgentResource) -> dg.MaterializeResult:
        return materialize(context, lambda: finetune_goal_predictor_rl(
            storage.paths, corpus.root, agent.predictor_rl, agent.agent, trials_dir=corpus.paths.trials_dir,
            say=context.log.info))

    @dg.asset(
        group_name="agent",
        kinds={"pytorch", "parquet", "duckdb"},
        deps=[goal_policy, goal_predictor_rl, GOAL_EMBEDDINGS, STEVE1_PRIOR, GOAL_ALIGNER, TASK_VOCABULARY],
        description=(
            "Agent success: for each task of the instruction set that is a Crafter achievement, the policy "
            "plays on world seeds no training trajectory used, given its goal by each source (oracle visual "
            "goal = mean held-out goal clip, MineCLIP text + prior sampled and deterministic, the goal "
            "predictor before and after REINFORCE, the zero goal as the floor) at each guidance scale, and the "
            "scripted agent as the "
            "ceiling. Success = the target unlocked within T steps; steps to success, off-target "
            "achievements, Wilson 95% CIs, paired differences (predictor − prior, REINFORCE head − predictor, "
            "oracle − zero goal, and oracle − predictor: the room a goal model has). One parquet file per run "
            "(`goalcraft sql agent_success`) and an HTML report (`agent_success/report.html`: a success-rate "
            "chart and a rollout animation per source and task)."
        ),
    )
    def agent_success(context: dg.AssetExecutionContext, storage: StorageResource, corpus: CorpusResource,
                      agent: AgentResource) -> dg.MaterializeResult:
        return materialize(context, lambda: evaluate_agent_success(
            storage.paths, corpus.root, agent.agent, trials_dir=corpus.paths.trials_dir, say=context.log.info))

    return [goal_policy, goal_predictor_rl, agent_success]
