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
from goalcraft.stages.agent import evaluate_agent_success, train_goal_policy


def definitions(config: GoalcraftConfig) -> dg.Definitions:
    return dg.Definitions(assets=build_agent_assets())


def build_agent_assets() -> list[dg.AssetsDefinition]:
    @dg.asset(
        group_name="agent",
        kinds={"pytorch", "safetensors"},
        deps=[GOAL_SPACE_MODEL, *INGEST],
        description=(
            "A goal-conditioned Crafter policy by STEVE-1's recipe: a conv encoder of the 4 latest 64x40 frames, "
            "the 512-d goal added through a learned linear map, classifier-free guidance (goals zeroed 10% of "
            "the time). Behaviour cloning on every trajectory the corpus recorded with its actions, each step's "
            "goal the goal-space embedding of the 16-frame clip that ends where its hindsight segment ends "
            "(STEVE-1's segments scaled to Crafter's pace). Best and last checkpoints, the world seeds it "
            "trained on (never evaluated on), quarantined trajectories."
        ),
    )
    def goal_policy(context: dg.AssetExecutionContext, storage: StorageResource, corpus: CorpusResource,
                    clip_stage: ClipStageResource, agent: AgentResource) -> dg.MaterializeResult:
        return materialize(context, lambda: train_goal_policy(
            storage.paths, corpus.root, agent.policy, clip_stage.clips, trials_dir=corpus.paths.trials_dir,
            say=context.log.info))

    @dg.asset(
        group_name="agent",
        kinds={"pytorch", "parquet", "duckdb"},
        deps=[goal_policy, GOAL_EMBEDDINGS, STEVE1_PRIOR, GOAL_ALIGNER, TASK_VOCABULARY],
        description=(
            "Agent success: for each task of the instruction set that is a Crafter achievement, the policy "
            "plays on world seeds no training trajectory used, given its goal by each source (oracle visual "
            "goal = mean held-out goal clip, MineCLIP text + prior sampled and deterministic, the goal "
            "predictor, the zero goal as the floor) at each guidance scale, and the scripted agent as the "
            "ceiling. Success = the target unlocked within T steps; steps to success, off-target "
            "achievements, Wilson 95% CIs, paired predictor − prior differences. One parquet file per run "
            "(`goalcraft sql agent_success`)."
        ),
    )
    def agent_success(context: dg.AssetExecutionContext, storage: StorageResource, corpus: CorpusResource,
                      agent: AgentResource) -> dg.MaterializeResult:
        return materialize(context, lambda: evaluate_agent_success(storage.paths, corpus.root, agent.agent,
                                                                   say=context.log.info))

    return [goal_policy, agent_success]
