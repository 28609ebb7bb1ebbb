"""Predictor stage: the Video-LLaMA-style goal predictor (stage 1) and its aligner (stage 2), trained on
the goal clips, then compared with the MineCLIP text → prior baseline on held-out goal clips.

Both assets carry the GPU pool and executor tags of ``[gpu]`` (goalcraft.pipelines.gpu). With
``[predictor] launcher = "torchrun"`` they start DDP workers through Dagster Pipes; otherwise the same
training functions run in the step's process. The loops live in goalcraft.training.predictor.
"""


import sys
from dataclasses import asdict, fields
from typing import Any

import dagster as dg

from goalcraft.config import PredictorSettings
from goalcraft.models.backbones import BackboneSpec
from goalcraft.models.predictor import PREDICTOR_CONFIGS, PredictorConfig
from goalcraft.pipelines.gpu import GpuExecution, gpu_asset_kwargs
from goalcraft.resources import CorpusResource, StorageResource, TrainingResource
from goalcraft.training.launch import SPEC_ENV_VAR, StageSpec, run_stage
from goalcraft.training.predictor import Stage1Settings, Stage2Settings

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


def _stage_settings(cls: type, settings: PredictorSettings, prefix: str) -> dict[str, Any]:
    """``[predictor] stage1_epochs`` etc. → the fields of Stage1Settings/Stage2Settings."""
    values = settings.model_dump()
    out: dict[str, Any] = {}
    for f in fields(cls):
        if f"{prefix}{f.name}" in values:
            out[f.name] = values[f"{prefix}{f.name}"]
        elif f.name in values:
            out[f.name] = values[f.name]
    if "lora_r" in {f.name for f in fields(cls)}:
        out.update(lora_r=settings.lora_r, lora_alpha=settings.lora_alpha)
    return asdict(cls(**out))


def _run(context: dg.AssetExecutionContext, spec: StageSpec, settings: PredictorSettings) -> dict[str, Any]:
    """Train in this process, or through torchrun workers under Dagster Pipes."""
    if settings.launcher == "inprocess":
        return run_stage(spec, log=lambda m: context.log.debug(str(m)))
    if settings.launcher != "torchrun":
        raise dg.Failure(f"[predictor] launcher must be 'inprocess' or 'torchrun', got {settings.launcher!r}")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={settings.nproc_per_node}", "-m", "goalcraft.training.launch"]
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


def build_predictor_assets(goal_embeddings_key: dg.AssetKey, gpu: GpuExecution) -> tuple[list, list]:
    gpu_kwargs = gpu_asset_kwargs(gpu)

    @dg.asset(
        group_name="predictor",
        kinds={"pytorch", "safetensors"},
        deps=[goal_embeddings_key],
        description=(
            "Stage 1 of the goal predictor: instruction → text backbone (LoRA) → goal-prediction head → "
            "Q-Former → 32 visual query tokens, trained with video–text contrastive loss + 0.5 x MSE to the "
            "goal clips' own visual tokens (the video Q-Former over their per-frame features)."
        ),
        **gpu_kwargs,
    )
    def goal_predictor(context: dg.AssetExecutionContext, storage: StorageResource, corpus: CorpusResource,
                       training: TrainingResource) -> dg.MaterializeResult:
        paths, s = storage.paths, training.predictor
        spec = StageSpec(stage=1, goal_table=str(paths.goal_embeddings_table), out_dir=str(paths.predictor_dir),
                         config=asdict(predictor_config(s)), settings=_stage_settings(Stage1Settings, s, "stage1_"),
                         val_fraction=s.val_fraction, test_fraction=s.test_fraction,
                         tasks_file=str(corpus.root / "tasks.json"))
        summary = _run(context, spec, s)
        return dg.MaterializeResult(metadata={
            **_metadata(summary, ["epoch", "train_loss", "train_contrastive", "train_mse", "val_loss",
                                  "val_contrastive", "val_mse"]),
            "tensorboard": dg.MetadataValue.path(str(paths.predictor_dir / "tensorboard")),
        })

    @dg.asset(
        group_name="predictor",
        kinds={"pytorch", "safetensors"},
        deps=[goal_predictor, dg.AssetKey("goal_space_model")],
        description=(
            "Stage 2: the aligner (A: flatten + MLP, or B: attention pooling) from the frozen predictor's "
            "32 tokens to a 512-d z_goal at the goal space's raw scale (MSE + 0.1 x (1 − cos), best "
            "validation kept, scale calibrated). Compared on held-out goal clips with the MineCLIP text → "
            "prior baseline refitted on the same training clips."
        ),
        **gpu_kwargs,
    )
    def goal_aligner(context: dg.AssetExecutionContext, storage: StorageResource, corpus: CorpusResource,
                     training: TrainingResource) -> dg.MaterializeResult:
        import pyarrow.parquet as pq

        from goalcraft.models.baseline import MineCLIPPriorBaseline
        from goalcraft.models.mineclip import load_mineclip
        from goalcraft.models.predictor import load_goal_predictor
        from goalcraft.training.launch import load_variants
        from goalcraft.training.predictor import (
            PredictorExamples,
            assign_splits,
            evaluate_against_baseline,
            fit_baseline_prior,
        )

        paths, s = storage.paths, training.predictor
        tasks_file = str(corpus.root / "tasks.json")
        spec = StageSpec(stage=2, goal_table=str(paths.goal_embeddings_table), out_dir=str(paths.aligner_dir),
                         config={"aligner": s.aligner}, settings=_stage_settings(Stage2Settings, s, "stage2_"),
                         val_fraction=s.val_fraction, test_fraction=s.test_fraction, tasks_file=tasks_file,
                         stage1_dir=str(paths.predictor_dir / "best"))
        summary = _run(context, spec, s)

        examples = PredictorExamples.from_table(pq.read_table(paths.goal_embeddings_table))
        splits = assign_splits(examples.keys, val_fraction=s.val_fraction, test_fraction=s.test_fraction)
        mineclip = load_mineclip(paths.goal_space_dir / "best")
        p = training.prior
        prior = fit_baseline_prior(examples, splits, mineclip, paths.heldout_prior_dir, epochs=p.epochs,
                                   batch_size=p.batch_size, lr=p.lr, beta=p.beta, seed=p.seed)
        predictor = load_goal_predictor(paths.aligner_dir / "best")
        baseline = MineCLIPPriorBaseline(mineclip, prior)
        comparison = evaluate_against_baseline(examples, splits, predictor.predict_goal, baseline.predict_goal,
                                               load_variants(tasks_file))
        rows = [{"model": name, **values} for name, values in comparison.items() if name != "n"]
        return dg.MaterializeResult(metadata={
            **_metadata(summary, ["epoch", "train_loss", "train_cosine", "val_loss", "val_mse", "val_cosine"]),
            "aligner": s.aligner,
            "output_scale": float(summary.get("output_scale", 1.0)),
            "test_cosine": comparison["predictor"]["cosine"],
            "baseline_test_cosine": comparison["baseline"]["cosine"],
            "test_norm_ratio": comparison["predictor"]["norm_ratio"],
            "comparison": dg.MetadataValue.md(history_markdown(rows, ["model", "cosine", "centered_cosine",
                                                                       "norm_ratio"])),
            "test_clips": int(comparison["n"]["clips"]),
        })

    @dg.asset_check(asset=goal_aligner, name="scale_matches_goal_space", blocking=True,
                    description="Predicted z_goal norms on the validation clips are within 0.8–1.25x of the "
                                "goal clips' raw MineCLIP-scale norms (the policy expects that scale).")
    def scale_matches_goal_space(storage: StorageResource, training: TrainingResource) -> dg.AssetCheckResult:
        import pyarrow.parquet as pq

        from goalcraft.models.predictor import load_goal_predictor
        from goalcraft.training.predictor import PredictorExamples, assign_splits, goal_metrics

        import torch

        s = training.predictor
        examples = PredictorExamples.from_table(pq.read_table(storage.paths.goal_embeddings_table))
        splits = assign_splits(examples.keys, val_fraction=s.val_fraction, test_fraction=s.test_fraction)
        idx = splits["val"]
        model = load_goal_predictor(storage.paths.aligner_dir / "best")
        goal = torch.from_numpy(examples.goals[idx])
        metrics = goal_metrics(model.predict_goal([examples.instructions[i] for i in idx]), goal, goal.mean(0))
        ratio = metrics["norm_ratio"]
        return dg.AssetCheckResult(passed=bool(0.8 <= ratio <= 1.25),
                                   metadata={"norm_ratio": ratio, "val_clips": int(len(idx))})

    return [goal_predictor, goal_aligner], [scale_matches_goal_space]
