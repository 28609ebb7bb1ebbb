"""Predictor stage: the Video-LLaMA-style goal predictor (stage 1) and its aligner (stage 2), trained on
the goal clips, then compared with the MineCLIP text → prior baseline on held-out goal clips.

Both assets carry the GPU pool and executor tags of ``[gpu]`` (goalcraft.pipelines.gpu). With
``[predictor] launcher = "torchrun"`` they start DDP workers through Dagster Pipes; otherwise the same
training functions run in the step's process. The loops live in goalcraft.training.predictor.
"""


import sys
from dataclasses import asdict
from typing import Any

import dagster as dg

from goalcraft.assets.keys import GOAL_EMBEDDINGS, TASK_VOCABULARY
from goalcraft.config import GoalcraftConfig, PredictorSettings
from goalcraft.data.splits import split_indices
from goalcraft.models.backbones import BackboneSpec
from goalcraft.models.predictor import PREDICTOR_CONFIGS, PredictorConfig
from goalcraft.pipelines.gpu import GpuSettings, gpu_asset_kwargs
from goalcraft.resources import StorageResource, TrainingResource
from goalcraft.training.launch import SPEC_ENV_VAR, StageSpec, run_stage

from goalcraft.assets.training import history_markdown


def predictor_config(settings: PredictorSettings) -> PredictorConfig:
    """The preset named in ``[predictor]``, with its backbone folder and aligner overridden."""
    if settings.preset not in PREDICTOR_CONFIGS:
        raise dg.Failure(f"[predictor] preset {settings.preset!r} is not one of {sorted(PREDICTOR_CONFIGS)}")
    config = PREDICTOR_CONFIGS[settings.preset]
    backbone = config.backbone
    if settings.backbone:
        backbone = BackboneSpec(path=settings.backbone, kind=backbone.kind, load_in_4bit=backbone.load_in_4bit,
                                max_length=backbone.max_length)
    if not backbone.path:
        raise dg.Failure(f"preset {settings.preset!r} needs a local backbone folder: set [predictor] backbone")
    return config.replace(backbone=backbone, aligner=settings.aligner)


def _run(context: dg.AssetExecutionContext, spec: StageSpec, settings: PredictorSettings,
         gpu: GpuSettings) -> dict[str, Any]:
    """Train in this process, or through torchrun workers under Dagster Pipes."""
    if settings.launcher == "inprocess":
        return run_stage(spec, log=lambda m: context.log.debug(str(m)))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={gpu.nproc_per_node}", "-m", "goalcraft.training.launch"]
    # Every worker reads the spec from the environment; rank 0 reports through Pipes.
    invocation = dg.PipesSubprocessClient().run(command=command, context=context,
                                                env={SPEC_ENV_VAR: spec.to_json()})
    metadata = invocation.get_materialize_result().metadata or {}
    return {k: v.value if isinstance(v, dg.MetadataValue) else v for k, v in metadata.items()}


def _metadata(summary: dict[str, Any], columns: list[str]) -> dict[str, Any]:
    history = summary["history"]
    return {
        "best_epoch": summary["best_epoch"],
        "best_val_loss": float(summary["best_val_loss"]),
        "epochs": len(history),
        "resumed_from_epoch": summary["resumed_from_epoch"],
        "splits": dg.MetadataValue.json(summary["splits"]),
        "loss_curve": dg.MetadataValue.md(history_markdown(history, columns)),
        "checkpoint": dg.MetadataValue.path(summary["best_dir"]),
    }


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
            "train split of the goal clips (val for model selection)."
        ),
        **gpu_kwargs,
    )
    def goal_predictor(context: dg.AssetExecutionContext, storage: StorageResource,
                       training: TrainingResource) -> dg.MaterializeResult:
        paths, s = storage.paths, training.predictor
        spec = StageSpec(stage=1, goal_table=str(paths.goal_embeddings_table), out_dir=str(paths.predictor_stage1_dir),
                         config=asdict(predictor_config(s)), settings=s.stage1.model_dump(),
                         tasks_file=str(paths.task_vocabulary_file))
        summary = _run(context, spec, s, gpu)
        return dg.MaterializeResult(metadata={
            **_metadata(summary, ["epoch", "train_loss", "train_contrastive", "train_mse", "val_loss",
                                  "val_contrastive", "val_mse"]),
            "tensorboard": dg.MetadataValue.path(str(paths.predictor_stage1_dir / "tensorboard")),
        })

    @dg.asset(
        group_name="predictor",
        kinds={"pytorch", "safetensors"},
        deps=[goal_predictor, GOAL_EMBEDDINGS, TASK_VOCABULARY],
        description=(
            "Stage 2: the aligner (A: flatten + MLP, or B: attention pooling) from the frozen predictor's "
            "32 tokens to a 512-d z_goal at the goal space's raw scale (MSE + 0.1 x (1 − cos), best "
            "validation kept, scale calibrated). The whole predictor is saved here (predictor/aligner/best); "
            "goal_model_comparison compares it with the baseline."
        ),
        **gpu_kwargs,
    )
    def goal_aligner(context: dg.AssetExecutionContext, storage: StorageResource,
                     training: TrainingResource) -> dg.MaterializeResult:
        paths, s = storage.paths, training.predictor
        spec = StageSpec(stage=2, goal_table=str(paths.goal_embeddings_table), out_dir=str(paths.goal_predictor_dir),
                         config={"aligner": s.aligner}, settings=s.stage2.model_dump(),
                         tasks_file=str(paths.task_vocabulary_file), stage1_dir=str(paths.predictor_stage1_dir / "best"))
        summary = _run(context, spec, s, gpu)
        return dg.MaterializeResult(metadata={
            **_metadata(summary, ["epoch", "train_loss", "train_cosine", "val_loss", "val_mse", "val_cosine"]),
            "aligner": s.aligner,
            "output_scale": float(summary.get("output_scale", 1.0)),
        })

    @dg.asset_check(asset=goal_aligner, name="scale_matches_goal_space", blocking=True,
                    description="Predicted z_goal norms on the validation clips are within 0.8–1.25x of the "
                                "goal clips' raw MineCLIP-scale norms (the policy expects that scale).")
    def scale_matches_goal_space(storage: StorageResource) -> dg.AssetCheckResult:
        import pyarrow.parquet as pq
        import torch

        from goalcraft.evaluation.comparison import goal_metrics
        from goalcraft.models.predictor import load_goal_predictor
        from goalcraft.training.predictor import PredictorExamples

        table = pq.read_table(storage.paths.goal_embeddings_table)
        examples = PredictorExamples.from_table(table)
        idx = split_indices(table)["val"]
        model = load_goal_predictor(storage.paths.goal_predictor_dir / "best")
        goal = torch.from_numpy(examples.goals[idx])
        metrics = goal_metrics(model.predict_goal([examples.instructions[i] for i in idx]), goal, goal.mean(0))
        ratio = metrics["norm_ratio"]
        return dg.AssetCheckResult(passed=bool(0.8 <= ratio <= 1.25),
                                   metadata={"norm_ratio": ratio, "val_clips": int(len(idx))})

    return [goal_predictor, goal_aligner], [scale_matches_goal_space]
