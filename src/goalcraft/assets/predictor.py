"""Predictor stage: the Video-LLaMA-style goal predictor (stage 1) and its aligner (stage 2), trained on
the goal clips' train split (bodies: goalcraft.stages.predictor; the comparison with the baseline is
the evaluation stage's goal_model_comparison).

Both assets carry the GPU pool and executor tags of ``[gpu]`` (goalcraft.pipelines.gpu). With
``[predictor] launcher = "torchrun"`` they start DDP workers through Dagster Pipes; otherwise the same
training functions run in the step's process. The loops live in goalcraft.training.predictor.
"""

import sys
from typing import Any

import dagster as dg

from goalcraft.assets.keys import GOAL_EMBEDDINGS, TASK_VOCABULARY
from goalcraft.assets.materialize import materialize
from goalcraft.config import GoalcraftConfig, PredictorSettings
from goalcraft.pipelines.gpu import GpuSettings, gpu_asset_kwargs
from goalcraft.resources import StorageResource, TrainingResource
from goalcraft.stages import StageResult
from goalcraft.stages.predictor import aligner_norm_ratio, stage_result, stage_spec, train_predictor_stage
from goalcraft.storage import StoragePaths
from goalcraft.training.launch import SPEC_ENV_VAR
from goalcraft.training.run_folder import record_logger


def _train(context: dg.AssetExecutionContext, paths: StoragePaths, settings: PredictorSettings, stage: int,
           gpu: GpuSettings, replicates: int = 1) -> StageResult:
    """The stage once per replicate (the first one's figures are reported)."""
    results = [_train_one(context, paths, settings, stage, gpu, k) for k in range(replicates)]
    results[0].metadata["replicates"] = replicates
    return results[0]


def _train_one(context: dg.AssetExecutionContext, paths: StoragePaths, settings: PredictorSettings, stage: int,
               gpu: GpuSettings, replicate: int) -> StageResult:
    """Train in this process, or through torchrun workers under Dagster Pipes (rank 0 reports)."""
    if settings.launcher == "inprocess":
        return train_predictor_stage(paths, settings, stage, log=record_logger(context.log.info, context.log.debug),
                                     replicate=replicate)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={gpu.nproc_per_node}", "-m", "goalcraft.training.launch"]
    # Every worker reads the spec from the environment.
    invocation = dg.PipesSubprocessClient().run(command=command, context=context,
                                                env={SPEC_ENV_VAR: stage_spec(paths, settings, stage, replicate).to_json()})
    metadata = invocation.get_materialize_result().metadata or {}
    summary: dict[str, Any] = {k: v.value if isinstance(v, dg.MetadataValue) else v for k, v in metadata.items()}
    return stage_result(paths, settings, stage, summary)


def definitions(config: GoalcraftConfig) -> dg.Definitions:
    assets, checks = build_predictor_assets(config.gpu)
    return dg.Definitions(assets=assets, asset_checks=checks)


def build_predictor_assets(gpu: GpuSettings) -> tuple[list[dg.AssetsDefinition], list[dg.AssetChecksDefinition]]:
    gpu_kwargs = gpu_asset_kwargs(gpu)

    @dg.asset(
        group_name="predictor",
        kinds={"pytorch", "safetensors"},
        deps=[GOAL_EMBEDDINGS, TASK_VOCABULARY],
        description=(
            "Stage 1 of the goal predictor: instruction → text backbone (LoRA) → goal-prediction head → "
            "Q-Former → 32 visual query tokens, trained with video–text contrastive loss + 0.5 x MSE to the "
            "goal clips' own visual tokens (the video Q-Former over their per-frame features), on the "
            "train split of the goal clips (val for model selection). [evaluation] replicates trains it once per "
            "seed (seed, seed + 1, ...)."
        ),
        **gpu_kwargs,
    )
    def goal_predictor(context: dg.AssetExecutionContext, storage: StorageResource,
                       training: TrainingResource) -> dg.MaterializeResult:
        return materialize(context, lambda: _train(context, storage.paths, training.predictor, 1, gpu,
                                                   training.evaluation.replicates))

    @dg.asset(
        group_name="predictor",
        kinds={"pytorch", "safetensors"},
        deps=[goal_predictor, GOAL_EMBEDDINGS, TASK_VOCABULARY],
        description=(
            "Stage 2: the aligner (A: flatten + MLP, or B: attention pooling) from the frozen predictor's "
            "32 tokens to a 512-d z_goal at the goal space's raw scale (MSE + 0.1 x (1 − cos), best "
            "validation kept, scale calibrated). The whole predictor is saved here (predictor/aligner/best); "
            "[evaluation] replicates trains an aligner per seed, each on its own stage 1. "
            "goal_model_comparison compares it with the baseline."
        ),
        **gpu_kwargs,
    )
    def goal_aligner(context: dg.AssetExecutionContext, storage: StorageResource,
                     training: TrainingResource) -> dg.MaterializeResult:
        return materialize(context, lambda: _train(context, storage.paths, training.predictor, 2, gpu,
                                                   training.evaluation.replicates))

    @dg.asset_check(asset=goal_aligner, name="scale_matches_goal_space", blocking=True,
                    description="Predicted z_goal norms on the validation clips are within 0.8–1.25x of the "
                                "goal clips' raw MineCLIP-scale norms (the policy expects that scale).")
    def scale_matches_goal_space(storage: StorageResource) -> dg.AssetCheckResult:
        ratio, n = aligner_norm_ratio(storage.paths)
        return dg.AssetCheckResult(passed=bool(0.8 <= ratio <= 1.25), metadata={"norm_ratio": ratio, "val_clips": n})

    return [goal_predictor, goal_aligner], [scale_matches_goal_space]
