"""Training stage: the MineCLIP goal space trained on the clip shards, and STEVE-1's prior trained on
(instruction text embedding, goal-clip embedding) pairs of the train and val splits (the test split's
goal clips stay unseen: this prior is the baseline the evaluation compares the goal predictor with).
The loops live in goalcraft.training."""

import json

import dagster as dg
import numpy as np

from goalcraft.assets.keys import GOAL_EMBEDDINGS, TASK_VOCABULARY, VIDEO_CLIPS
from goalcraft.config import GoalcraftConfig, GoalSpaceSettings
from goalcraft.data.embeddings import NormStats, embed_shards, embedding_matrix
from goalcraft.data.splits import require_splits, split_indices
from goalcraft.data.task_vocabulary import TaskVocabulary, read_task_vocabulary
from goalcraft.models.baseline import encode_instructions
from goalcraft.models.mineclip import load_mineclip
from goalcraft.models.prior import prior_config_for
from goalcraft.resources import CorpusResource, StorageResource, TrainingResource
from goalcraft.storage import write_json_atomic
from goalcraft.training.data import caption_to_task, task_caption_map
from goalcraft.training.goal_space import GOAL_SPACE_TRAINING, GoalSpaceTrainingError, train_goal_space
from goalcraft.training.prior import train_prior



def history_markdown(rows: list[dict], columns: list[str]) -> str:
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    body = "".join("| " + " | ".join(f"{r.get(c, ''):.4g}" if isinstance(r.get(c), float) else str(r.get(c, ""))
                                      for c in columns) + " |\n" for r in rows)
    return head + body


NORM_STATS_FILE = "norm_stats.json"


def goal_space_device(settings: GoalSpaceSettings) -> str:
    """``[goal_space] device``, else the preset's (tiny-cpu: cpu, vitb16-gpu: cuda)."""
    return settings.device or GOAL_SPACE_TRAINING[settings.preset].device


def definitions(config: GoalcraftConfig) -> dg.Definitions:
    return dg.Definitions(assets=build_training_assets())


def build_training_assets() -> list[dg.AssetsDefinition]:
    @dg.asset(
        group_name="training",
        kinds={"pytorch", "safetensors"},
        deps=[VIDEO_CLIPS, TASK_VOCABULARY],
        description=(
            "The MineCLIP goal space (image ViT, temporal attention pooling, text transformer, reward-head "
            "adapters) trained with video–text InfoNCE on every clip shard. Best-validation and last "
            "checkpoints (safetensors + config.json), TensorBoard logs, and the norm range of its goal "
            "embeddings (used by the embedding checks to flag drift)."
        ),
    )
    def goal_space_model(context: dg.AssetExecutionContext, storage: StorageResource,
                         training: TrainingResource) -> dg.MaterializeResult:
        paths = storage.paths
        settings = training.goal_space
        recipe = GOAL_SPACE_TRAINING[settings.preset]
        model_name = recipe.model
        preset = recipe.training_kwargs(steps=settings.steps or recipe.steps, device=goal_space_device(settings))
        shards = paths.clip_shards()
        if not shards:
            done = sorted(p.name for p in paths.clips_dir.glob("p*") if (p / "partition.json").is_file())
            raise dg.Failure(
                f"no clips to train the goal space on: {len(done)} clip partition(s) materialized, 0 clips written"
                " (the quarantine view says why inputs were rejected)" if done else
                "no clip shards: materialize video_clips first")
        # Narration lines and paraphrases captioned as their task's instruction (goalcraft.training.data).
        corpus_tasks = TaskVocabulary(read_task_vocabulary(paths.task_vocabulary_file).corpus_tasks())
        caption_map = task_caption_map(corpus_tasks.to_mapping()) if corpus_tasks.tasks else None
        try:
            result = train_goal_space(
                shards, model_name, paths.goal_space_dir, seed=settings.seed,
                caption_map=(lambda c: caption_to_task(c, caption_map)) if caption_map else None,
                # "auto": a re-materialization after the clips or settings changed starts afresh.
                log=lambda r: context.log.info(json.dumps(r)), resume="auto", **preset,
            )
        except GoalSpaceTrainingError as exc:
            raise dg.Failure(str(exc)) from None
        model = load_mineclip(paths.goal_space_dir / "best")
        table = embed_shards(model, shards, batch_size=settings.embed_batch_size, device=preset["device"])
        stats = NormStats.of(table.column("norm").to_numpy())
        write_json_atomic(stats.__dict__, paths.goal_space_dir / NORM_STATS_FILE)
        history = [h.__dict__ if hasattr(h, "__dict__") else dict(h) for h in result.history]
        best = min(history, key=lambda h: h["val_loss"])
        return dg.MaterializeResult(metadata={
            "preset": settings.preset,
            "clips": table.num_rows,
            "best_step": best["step"],
            "best_val_loss": float(best["val_loss"]),
            "val_top1": float(best["top1"]),
            "val_top5": float(best["top5"]),
            "chance_top1": float(best["chance_top1"]),
            "goal_norm_mean": stats.mean,
            "goal_norm_range": [stats.low, stats.high],
            "history": dg.MetadataValue.md(history_markdown(
                history, ["step", "train_loss", "val_loss", "top1", "top5", "chance_top1"])),
            "checkpoint": dg.MetadataValue.path(str(paths.goal_space_dir / "best")),
            "tensorboard": dg.MetadataValue.path(str(paths.goal_space_dir / "tensorboard")),
        })

    @dg.asset(
        group_name="training",
        kinds={"pytorch", "safetensors"},
        deps=[GOAL_EMBEDDINGS, goal_space_model],
        description=(
            "STEVE-1's prior: an MLP conditional VAE from the goal space's text embedding of an instruction "
            "to a goal embedding, trained on the goal clips (MSE + beta KL, best validation kept). "
            "This is the MineCLIP text → prior baseline the goal predictor must beat."
        ),
    )
    def steve1_prior(context: dg.AssetExecutionContext, storage: StorageResource,
                     training: TrainingResource) -> dg.MaterializeResult:
        import pyarrow.parquet as pq

        paths = storage.paths
        goals = pq.read_table(paths.goal_embeddings_table)
        if goals.num_rows < 4:
            raise dg.Failure(f"only {goals.num_rows} goal clips: too few to train the prior (goal_clips' notes "
                             "say why a partition gave none)")
        splits = split_indices(goals)
        require_splits(splits, ("train",))
        seen = np.sort(np.concatenate([splits["train"], splits["val"]]))
        goals = goals.take(seen)
        goal = embedding_matrix(goals)
        model = load_mineclip(paths.goal_space_dir / "best")
        text = encode_instructions(model, goals.column("instruction").to_pylist()).numpy()
        config = prior_config_for(goal.shape[1])
        s = training.prior
        result = train_prior(text, goal, config, paths.prior_dir, epochs=s.epochs, batch_size=s.batch_size,
                             lr=s.lr, beta=s.beta, seed=s.seed, resume="auto",
                             log=lambda r: context.log.info(json.dumps(r)))
        return dg.MaterializeResult(metadata={
            "pairs": int(goals.num_rows),
            "tasks": len(set(goals.column("task").to_pylist())),
            "best_epoch": result.best_epoch,
            "best_val_loss": float(result.best_val_loss),
            "checkpoint": dg.MetadataValue.path(str(paths.prior_dir / "best")),
        })

    return [goal_space_model, steve1_prior]
