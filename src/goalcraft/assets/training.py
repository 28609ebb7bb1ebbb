"""Training stage: the MineCLIP goal space trained on the clip shards, and STEVE-1's prior trained on
(instruction text embedding, goal-clip embedding) pairs of the train and val splits (the test split's
goal clips stay unseen: this prior is the baseline the evaluation compares the goal predictor with).
Bodies: goalcraft.stages.training; the loops live in goalcraft.training."""

import dagster as dg

from goalcraft.assets.keys import GOAL_CLIPS, GOAL_EMBEDDINGS, TASK_VOCABULARY, VIDEO_CLIPS
from goalcraft.assets.materialize import materialize
from goalcraft.config import GoalcraftConfig
from goalcraft.resources import StorageResource, TrainingResource
from goalcraft.stages.training import train_goal_space_model, train_steve1_prior
from goalcraft.training.run_folder import record_logger


def definitions(config: GoalcraftConfig) -> dg.Definitions:
    return dg.Definitions(assets=build_training_assets())


def build_training_assets() -> list[dg.AssetsDefinition]:
    @dg.asset(
        group_name="training",
        kinds={"pytorch", "safetensors"},
        deps=[VIDEO_CLIPS, GOAL_CLIPS, TASK_VOCABULARY],
        description=(
            "The MineCLIP goal space (image ViT, temporal attention pooling, text transformer, reward-head "
            "adapters) trained with video–text InfoNCE on every clip and goal-clip shard except the samples of "
            "test-split sources (the by-source split the goal embeddings get). Best-validation and last "
            "checkpoints (safetensors + config.json), TensorBoard logs, and the norm range of its goal "
            "embeddings (used by the embedding checks to flag drift). With [goal_space] mineclip_checkpoint the "
            "user's real MineCLIP (attn.pth) IS the goal space: loaded strictly, nothing trained, recorded with "
            "its sha256 in imported.json."
        ),
    )
    def goal_space_model(context: dg.AssetExecutionContext, storage: StorageResource,
                         training: TrainingResource) -> dg.MaterializeResult:
        return materialize(context, lambda: train_goal_space_model(
            storage.paths, training.goal_space, training.splits, log=record_logger(context.log.info, context.log.debug)))

    @dg.asset(
        group_name="training",
        kinds={"pytorch", "safetensors"},
        deps=[GOAL_EMBEDDINGS, goal_space_model, TASK_VOCABULARY],
        description=(
            "STEVE-1's prior: an MLP conditional VAE from the goal space's text embedding of an instruction "
            "to a goal embedding, trained on the goal clips of the train and val splits with every phrasing "
            "of their task (the paraphrases the goal predictor also trains with), MSE + beta KL, best "
            "validation kept; [evaluation] replicates copies (seeds seed, seed + 1, ...). "
            "This is the MineCLIP text → prior baseline the goal predictor must beat. With [prior] checkpoint "
            "the user's STEVE-1 prior (steve1_prior.pt) IS the baseline: loaded strictly, nothing trained, one "
            "prior whatever the replicates, recorded with its sha256."
        ),
    )
    def steve1_prior(context: dg.AssetExecutionContext, storage: StorageResource,
                     training: TrainingResource) -> dg.MaterializeResult:
        return materialize(context, lambda: train_steve1_prior(
            storage.paths, training.prior, training.evaluation.replicates,
            log=record_logger(context.log.info, context.log.debug)))

    return [goal_space_model, steve1_prior]
