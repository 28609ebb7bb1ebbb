"""Training: the MineCLIP goal space on every clip shard, and STEVE-1's prior on the goal clips of the
train and val splits (the test split stays unseen: this prior is the evaluation's baseline)."""

from __future__ import annotations

import json
from typing import Any, Callable

import numpy as np
import pyarrow.parquet as pq

from goalcraft.config import GoalSpaceSettings, PriorSettings
from goalcraft.data.embeddings import NormStats, embed_shards, embedding_matrix
from goalcraft.data.splits import SplitError, require_splits, split_indices
from goalcraft.data.task_vocabulary import TaskVocabulary, read_task_vocabulary
from goalcraft.models.baseline import encode_instructions
from goalcraft.models.mineclip import load_mineclip
from goalcraft.models.prior import prior_config_for
from goalcraft.stages import Markdown, StageError, StageResult
from goalcraft.storage import StoragePaths, write_json_atomic
from goalcraft.training.data import caption_to_task, task_caption_map
from goalcraft.training.goal_space import GOAL_SPACE_TRAINING, GoalSpaceTrainingError, train_goal_space
from goalcraft.training.prior import train_prior

#: The norm range the goal space's embeddings had at training time (the embedding checks' reference).
NORM_STATS_FILE = "norm_stats.json"

Log = Callable[[dict[str, Any]], None]


def history_markdown(rows: list[dict], columns: list[str]) -> Markdown:
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    body = "".join("| " + " | ".join(f"{r.get(c, ''):.4g}" if isinstance(r.get(c), float) else str(r.get(c, ""))
                                      for c in columns) + " |\n" for r in rows)
    return Markdown(head + body)


def goal_space_device(settings: GoalSpaceSettings) -> str:
    """``[goal_space] device``, else the preset's (tiny-cpu: cpu, vitb16-gpu: cuda)."""
    return settings.device or GOAL_SPACE_TRAINING[settings.preset].device


def norm_reference(paths: StoragePaths) -> NormStats | None:
    path = paths.goal_space_dir / NORM_STATS_FILE
    return NormStats(**json.loads(path.read_text())) if path.is_file() else None


def train_goal_space_model(paths: StoragePaths, settings: GoalSpaceSettings, log: Log | None = None) -> StageResult:
    """The goal space on every clip shard (captions of vocabulary tasks mapped to their instruction),
    then its norm range on those clips."""
    recipe = GOAL_SPACE_TRAINING[settings.preset]
    kwargs = recipe.training_kwargs(steps=settings.steps or recipe.steps, device=goal_space_device(settings))
    shards = paths.clip_shards()
    if not shards:
        done = sorted(p.name for p in paths.clips_dir.glob("p*") if (p / "partition.json").is_file())
        raise StageError(
            f"no clips to train the goal space on: {len(done)} clip partition(s) materialized, 0 clips written"
            " (the quarantine view says why inputs were rejected)" if done else
            "no clip shards: materialize video_clips first")
    # Narration lines and paraphrases captioned as their task's instruction (goalcraft.training.data).
    corpus_tasks = TaskVocabulary(read_task_vocabulary(paths.task_vocabulary_file).corpus_tasks())
    caption_map = task_caption_map(corpus_tasks.to_mapping()) if corpus_tasks.tasks else None
    try:
        result = train_goal_space(
            shards, recipe.model, paths.goal_space_dir, seed=settings.seed,
            caption_map=(lambda c: caption_to_task(c, caption_map)) if caption_map else None,
            # "auto": a re-materialization after the clips or settings changed starts afresh.
            log=log, resume="auto", **kwargs)
    except GoalSpaceTrainingError as exc:
        raise StageError(str(exc)) from None
    model = load_mineclip(paths.goal_space_dir / "best")
    table = embed_shards(model, shards, batch_size=settings.embed_batch_size, device=kwargs["device"])
    stats = NormStats.of(table.column("norm").to_numpy())
    write_json_atomic(stats.__dict__, paths.goal_space_dir / NORM_STATS_FILE)
    history = [h.__dict__ if hasattr(h, "__dict__") else dict(h) for h in result.history]
    best = min(history, key=lambda h: h["val_loss"])
    return StageResult({
        "preset": settings.preset,
        "clips": table.num_rows,
        "best_step": best["step"],
        "best_val_loss": float(best["val_loss"]),
        "val_top1": float(best["top1"]),
        "val_top5": float(best["top5"]),
        "chance_top1": float(best["chance_top1"]),
        "goal_norm_mean": stats.mean,
        "goal_norm_range": [stats.low, stats.high],
        "history": history_markdown(history, ["step", "train_loss", "val_loss", "top1", "top5", "chance_top1"]),
        "checkpoint": paths.goal_space_dir / "best",
        "tensorboard": paths.goal_space_dir / "tensorboard",
    })


def prior_training_pairs(goals, variants: dict[str, list[str]]) -> tuple[list[str], np.ndarray]:
    """(instruction, goal row) pairs: every goal clip once with its own instruction and once with
    each other phrasing of its task (the paraphrase augmentation the goal predictor trains with, so
    both goal models see the same instruction texts)."""
    texts, rows = [], []
    for i, (instruction, task) in enumerate(zip(goals.column("instruction").to_pylist(), goals.column("task").to_pylist())):
        for text in dict.fromkeys([instruction, *variants.get(task, ())]):
            texts.append(text)
            rows.append(i)
    return texts, np.asarray(rows, dtype=np.int64)


def train_steve1_prior(paths: StoragePaths, settings: PriorSettings, replicates: int = 1,
                       log: Log | None = None) -> StageResult:
    """STEVE-1's prior (goal-space text embedding → goal embedding) on the train and val splits, with
    the task vocabulary's paraphrases; ``replicates`` priors (seeds seed, seed + 1, ...)."""
    from goalcraft.training.launch import load_variants

    goals = pq.read_table(paths.goal_embeddings_table)
    if goals.num_rows < 4:
        raise StageError(f"only {goals.num_rows} goal clips: too few to train the prior (goal_clips' notes "
                         "say why a partition gave none)")
    splits = split_indices(goals)
    try:
        require_splits(splits, ("train",))
    except SplitError as exc:
        raise StageError(str(exc)) from None
    goals = goals.take(np.sort(np.concatenate([splits["train"], splits["val"]])))
    texts, rows = prior_training_pairs(goals, load_variants(paths.task_vocabulary_file))
    goal = embedding_matrix(goals)[rows]
    text = encode_instructions(load_mineclip(paths.goal_space_dir / "best"), texts).numpy()
    results = []
    for k, out_dir in enumerate(paths.replicate_dirs(paths.prior_dir, replicates)):
        results.append(train_prior(text, goal, prior_config_for(goal.shape[1]), out_dir, epochs=settings.epochs,
                                   batch_size=settings.batch_size, lr=settings.lr, beta=settings.beta,
                                   seed=settings.seed + k, resume="auto", log=log))
    return StageResult({
        "clips": int(goals.num_rows),
        "pairs": int(len(rows)),
        "tasks": len(set(goals.column("task").to_pylist())),
        "replicates": replicates,
        "best_epoch": results[0].best_epoch,
        "best_val_loss": float(results[0].best_val_loss),
        "replicate_val_losses": [float(r.best_val_loss) for r in results],
        "checkpoint": paths.prior_dir / "best",
    })
