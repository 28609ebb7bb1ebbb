"""The goal predictor's two training stages as specs (they may cross a process boundary to torchrun
workers) and the figures each reports; the aligner's scale check."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Callable

import pyarrow.parquet as pq

from goalcraft.config import PredictorSettings
from goalcraft.models.backbones import BackboneSpec
from goalcraft.models.predictor import PREDICTOR_CONFIGS, PredictorConfig
from goalcraft.stages import StageError, StageResult
from goalcraft.stages.training import history_markdown
from goalcraft.storage import StoragePaths
from goalcraft.training.launch import StageSpec

#: The loss-curve columns each stage reports.
CURVES = {1: ["epoch", "train_loss", "train_contrastive", "train_mse", "val_loss", "val_contrastive", "val_mse"],
          2: ["epoch", "train_loss", "train_cosine", "val_loss", "val_mse", "val_cosine"]}


def predictor_config(settings: PredictorSettings) -> PredictorConfig:
    """The preset named in ``[predictor]``, with its backbone folder and aligner overridden."""
    if settings.preset not in PREDICTOR_CONFIGS:
        raise StageError(f"[predictor] preset {settings.preset!r} is not one of {sorted(PREDICTOR_CONFIGS)}")
    config = PREDICTOR_CONFIGS[settings.preset]
    backbone = config.backbone
    if settings.backbone:
        backbone = BackboneSpec(path=settings.backbone, kind=backbone.kind, load_in_4bit=backbone.load_in_4bit,
                                max_length=backbone.max_length)
    if not backbone.path:
        raise StageError(f"preset {settings.preset!r} needs a local backbone folder: set [predictor] backbone")
    return config.replace(backbone=backbone, aligner=settings.aligner)


def stage_spec(paths: StoragePaths, settings: PredictorSettings, stage: int, replicate: int = 0) -> StageSpec:
    """What training stage 1 (text → query tokens) or 2 (the aligner) needs, as plain values.
    ``replicate`` k trains both stages with seed + k into the k-th replicate folders, stage 2 on
    replicate k's stage 1, so the replicates' spread is the whole predictor's seed variance."""
    common = dict(goal_table=str(paths.goal_embeddings_table), tasks_file=str(paths.task_vocabulary_file))
    stage1_dir = paths.replicate_dirs(paths.predictor_stage1_dir, replicate + 1)[replicate]
    if stage == 1:
        stage1 = settings.stage1.model_dump() | {"seed": settings.stage1.seed + replicate}
        return StageSpec(stage=1, out_dir=str(stage1_dir), config=asdict(predictor_config(settings)),
                         settings=stage1, **common)
    out_dir = paths.replicate_dirs(paths.goal_predictor_dir, replicate + 1)[replicate]
    stage2 = settings.stage2.model_dump() | {"seed": settings.stage2.seed + replicate}
    return StageSpec(stage=2, out_dir=str(out_dir), config={"aligner": settings.aligner},
                     settings=stage2, stage1_dir=str(stage1_dir / "best"), **common)


def stage_result(paths: StoragePaths, settings: PredictorSettings, stage: int, summary: dict[str, Any]) -> StageResult:
    """A stage's summary (goalcraft.training.launch.run_stage, in-process or from rank 0) as figures."""
    history = summary["history"]
    metadata: dict[str, Any] = {
        "best_epoch": summary["best_epoch"],
        "best_val_loss": float(summary["best_val_loss"]),
        "epochs": len(history),
        "resumed_from_epoch": summary["resumed_from_epoch"],
        "splits": summary["splits"],
        "loss_curve": history_markdown(history, CURVES[stage]),
        "checkpoint": paths.predictor_stage1_dir / "best" if stage == 1 else paths.goal_predictor_dir / "best",
    }
    if stage == 1:
        metadata["tensorboard"] = paths.predictor_stage1_dir / "tensorboard"
    else:
        metadata.update(aligner=settings.aligner, output_scale=float(summary.get("output_scale", 1.0)))
    return StageResult(metadata)


def train_predictor_stage(paths: StoragePaths, settings: PredictorSettings, stage: int,
                          log: Callable[[Any], None] | None = None, replicate: int = 0) -> StageResult:
    """Train a stage (stage 2: one replicate) in this process (CPU, or one GPU)."""
    from goalcraft.training.launch import run_stage

    return stage_result(paths, settings, stage, run_stage(stage_spec(paths, settings, stage, replicate), log=log))


def aligner_norm_ratio(paths: StoragePaths) -> tuple[float, int]:
    """Median predicted / true z_goal norm on the validation clips, and how many there are."""
    import torch

    from goalcraft.data.splits import split_indices
    from goalcraft.evaluation.comparison import goal_metrics
    from goalcraft.models.predictor import load_goal_predictor
    from goalcraft.training.predictor import PredictorExamples

    table = pq.read_table(paths.goal_embeddings_table)
    examples = PredictorExamples.from_table(table)
    idx = split_indices(table)["val"]
    model = load_goal_predictor(paths.goal_predictor_dir / "best")
    goal = torch.from_numpy(examples.goals[idx])
    metrics = goal_metrics(model.predict_goal([examples.instructions[i] for i in idx]), goal, goal.mean(0))
    return metrics["norm_ratio"], int(len(idx))
