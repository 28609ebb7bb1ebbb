"""Training: the MineCLIP goal space on every clip shard, and STEVE-1's prior on the goal clips of the
train and val splits (the test split stays unseen: this prior is the evaluation's baseline).

With the user's own checkpoints (``[goal_space] mineclip_checkpoint``, ``[prior] checkpoint``) nothing
is trained: the checkpoint is loaded strictly (weights only), written as the model folder's ``best/``
like a trained one (so every later step reads it the same way), and recorded in ``imported.json``
beside it (the file, its sha256): the real MineCLIP is the goal space, STEVE-1's prior the baseline."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow.parquet as pq

from goalcraft.config import GoalSpaceSettings, PriorSettings, SplitSettings
from goalcraft.data.embeddings import NormStats, embed_shards, embedding_matrix
from goalcraft.data.splits import SplitError, require_splits, split_indices
from goalcraft.data.task_vocabulary import TaskVocabulary, read_task_vocabulary
from goalcraft.models.baseline import encode_instructions
from goalcraft.models.checkpoints import CheckpointError, file_sha256, load_config_json
from goalcraft.models.mineclip import MINECLIP_CONFIGS, MineCLIPConfig, load_mineclip, load_mineclip_checkpoint, save_mineclip
from goalcraft.models.prior import load_steve1_prior, prior_config_for, save_prior
from goalcraft.stages import Markdown, StageError, StageResult
from goalcraft.storage import StoragePaths, write_json_atomic
from goalcraft.training.data import caption_to_task, task_caption_map
from goalcraft.training.goal_space import GOAL_SPACE_TRAINING, GoalSpaceTrainingError, train_goal_space
from goalcraft.training.prior import train_prior

#: The norm range the goal space's embeddings had at training time (the embedding checks' reference).
NORM_STATS_FILE = "norm_stats.json"
#: Beside a model folder made from the user's own checkpoint: ``{"checkpoint", "sha256", ...}``.
IMPORTED_FILE = "imported.json"

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


def imported_checkpoint(model_dir: Path) -> dict[str, Any] | None:
    """What :func:`import_checkpoint` recorded for ``model_dir`` (None: the model was trained here)."""
    path = Path(model_dir) / IMPORTED_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def import_checkpoint(model_dir: Path, checkpoint: str, what: str, load: Callable[[Path], Any],
                      save: Callable[[Any, Path], Any], **record: Any) -> tuple[Any, dict[str, Any]]:
    """The user's ``checkpoint`` loaded with ``load`` (strict, weights only) and written as
    ``model_dir/best`` with ``save``; training leftovers in ``model_dir`` are removed and
    ``imported.json`` records the file and its sha256. Returns (model, record)."""
    path = Path(checkpoint)
    if not path.is_file():
        raise StageError(f"{what} checkpoint not found: {path}")
    try:
        model = load(path)
    except CheckpointError as exc:
        raise StageError("; ".join(line.strip() for line in str(exc).splitlines())) from None
    record = {"checkpoint": str(path), "sha256": file_sha256(path), **record}
    save(model, Path(model_dir) / "best")
    for stale in ("last", "tensorboard", "history.json"):
        target = Path(model_dir) / stale
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    write_json_atomic(record, Path(model_dir) / IMPORTED_FILE)
    return model, record


def _trained_here(model_dir: Path) -> None:
    """A model trained here is no longer the user's checkpoint."""
    (Path(model_dir) / IMPORTED_FILE).unlink(missing_ok=True)


def _clip_shards(paths: StoragePaths, what: str) -> list[Path]:
    shards = paths.clip_shards()
    if not shards:
        done = sorted(p.name for p in paths.clips_dir.glob("p*") if (p / "partition.json").is_file())
        raise StageError(
            f"no clips to {what}: {len(done)} clip partition(s) materialized, 0 clips written"
            " (the quarantine view says why inputs were rejected)" if done else
            "no clip shards: materialize video_clips first")
    return shards


def _norm_range(paths: StoragePaths, shards: list[Path], settings: GoalSpaceSettings, device: str):
    """The goal space's embeddings of every clip and their norm range (the embedding checks' reference)."""
    model = load_mineclip(paths.goal_space_dir / "best")
    table = embed_shards(model.to(device), shards, batch_size=settings.embed_batch_size, device=device)
    stats = NormStats.of(table.column("norm").to_numpy())
    write_json_atomic(stats.__dict__, paths.goal_space_dir / NORM_STATS_FILE)
    return table, stats


def use_user_mineclip(paths: StoragePaths, settings: GoalSpaceSettings) -> StageResult:
    """``[goal_space] mineclip_checkpoint`` (MineCLIP's attn.pth layout) as the goal space: no training."""
    shards = _clip_shards(paths, "take the goal space's norm range on")
    config = MINECLIP_CONFIGS[settings.mineclip_config]
    _, record = import_checkpoint(paths.goal_space_dir, settings.mineclip_checkpoint, "[goal_space] mineclip",
                                  lambda p: load_mineclip_checkpoint(p, config), save_mineclip,
                                  mineclip_config=settings.mineclip_config)
    table, stats = _norm_range(paths, shards, settings, goal_space_device(settings))
    return StageResult({
        "goal_space": "the user's MineCLIP checkpoint (not trained)",
        "user_checkpoint": record["checkpoint"],
        "sha256": record["sha256"],
        "mineclip_config": settings.mineclip_config,
        "clips": table.num_rows,
        "goal_norm_mean": stats.mean,
        "goal_norm_range": [stats.low, stats.high],
        "checkpoint": paths.goal_space_dir / "best",
    })


@dataclass(frozen=True)
class GoalSpaceData:
    """What the goal space trains on: every clip shard and goal-clip shard, less the samples of
    test-split sources (the split of :func:`goalcraft.data.splits.source_splits`, the one the
    goal-embeddings table gets), so the held-out goal clips' recordings are never seen in training."""

    shards: list[Path]
    held_out: frozenset[tuple[str, str]]  # (shard path, key) of the samples left out
    key_prefix: dict[str, str]  # goal-clip shards' keys get "goal/" (they may repeat clip keys)
    test_sources: tuple[str, ...]

    def exclude(self, shard: Path, key: str) -> bool:
        return (str(shard), key) in self.held_out

    @property
    def data_key(self) -> str:
        import hashlib

        return hashlib.sha256(json.dumps(self.test_sources).encode()).hexdigest()[:16]


def goal_space_data(paths: StoragePaths, splits: SplitSettings, goal_clips_only: bool = False) -> GoalSpaceData:
    """:class:`GoalSpaceData` from the clip and goal-clip partition indexes (``goal_clips_only``: the
    goal-clip shards alone are trained on)."""
    from goalcraft.data.splits import source_splits
    from goalcraft.stages.embeddings import user_trial_ids

    def index(folder: Path) -> list[dict[str, Any]]:
        rows = []
        for f in sorted(folder.glob("p*/p*-*.parquet")):
            rows += [{**r, "path": str(f.with_suffix(".tar"))}
                     for r in pq.read_table(f, columns=["key", "source_id"]).to_pylist()]
        return rows

    clips, goals = index(paths.clips_dir), index(paths.goals_dir)
    assignment = source_splits([g["source_id"] for g in goals], val_fraction=splits.val_fraction,
                               test_fraction=splits.test_fraction, user_trials=user_trial_ids(paths),
                               user_trials_mode=splits.steve1_trials)
    test = {s for s, k in assignment.items() if k == "test"}
    held_out = frozenset((r["path"], r["key"]) for r in clips + goals if r["source_id"] in test)
    goal_shards = paths.goal_shards()
    clip_shards = [] if goal_clips_only else _clip_shards(paths, "train the goal space on")
    if not goal_shards and goal_clips_only:
        raise StageError("[goal_space] train_on = \"goal_clips\" but there are no goal clips to train on")
    return GoalSpaceData(clip_shards + goal_shards, held_out,
                         {str(s): "goal/" for s in goal_shards}, tuple(sorted(test)))


def train_goal_space_model(paths: StoragePaths, settings: GoalSpaceSettings, splits: SplitSettings | None = None,
                           log: Log | None = None) -> StageResult:
    """The goal space on every clip and goal-clip shard but those of test-split sources (captions of
    vocabulary tasks mapped to their instruction), then its norm range on the clips; with
    ``mineclip_checkpoint``, the user's MineCLIP instead."""
    if settings.mineclip_checkpoint:
        return use_user_mineclip(paths, settings)
    recipe = GOAL_SPACE_TRAINING[settings.preset]
    kwargs = recipe.training_kwargs(steps=settings.steps or recipe.steps, device=goal_space_device(settings),
                                    batch_size=settings.batch_size or recipe.batch_size)
    shards = _clip_shards(paths, "train the goal space on")
    data = goal_space_data(paths, splits or SplitSettings(), goal_clips_only=settings.train_on == "goal_clips")
    _trained_here(paths.goal_space_dir)
    # Narration lines and paraphrases captioned as their task's instruction (goalcraft.training.data).
    corpus_tasks = TaskVocabulary(read_task_vocabulary(paths.task_vocabulary_file).corpus_tasks())
    caption_map = task_caption_map(corpus_tasks.to_mapping()) if corpus_tasks.tasks else None
    try:
        result = train_goal_space(
            data.shards, recipe.model, paths.goal_space_dir, seed=settings.seed,
            caption_map=(lambda c: caption_to_task(c, caption_map)) if caption_map else None,
            exclude=data.exclude, key_prefix=data.key_prefix, data_key=data.data_key,
            # "auto": a re-materialization after the clips or settings changed starts afresh.
            log=log, resume="auto", **kwargs)
    except GoalSpaceTrainingError as exc:
        raise StageError(str(exc)) from None
    table, stats = _norm_range(paths, shards, settings, kwargs["device"])
    history = [h.__dict__ if hasattr(h, "__dict__") else dict(h) for h in result.history]
    best = min(history, key=lambda h: h["val_loss"])
    return StageResult({
        "preset": settings.preset,
        "clips": table.num_rows,
        "held_out_samples": len(data.held_out),
        "test_sources_left_out": len(data.test_sources),
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


def use_user_prior(paths: StoragePaths, settings: PriorSettings, replicates: int = 1) -> StageResult:
    """``[prior] checkpoint`` (STEVE-1's steve1_prior.pt) as the baseline: no training, one prior."""
    assert settings.checkpoint
    prior, record = import_checkpoint(paths.prior_dir, settings.checkpoint, "[prior]",
                                      lambda p: load_steve1_prior(p, config=None), save_prior)
    dim = load_config_json(paths.goal_space_dir / "best", MineCLIPConfig).embed_dim
    if prior.config.input_dim != dim:
        raise StageError(f"[prior] checkpoint {settings.checkpoint} takes {prior.config.input_dim}-d text "
                         f"embeddings, the goal space gives {dim}-d")
    warnings = [f"[evaluation] replicates = {replicates}, but the prior is the user's own checkpoint: there is "
                "one real prior, evaluated once (its sampling is its only spread); the aligner still trains "
                f"{replicates} times"] if replicates > 1 else []
    return StageResult({
        "prior": "the user's STEVE-1 prior checkpoint (not trained)",
        "user_checkpoint": record["checkpoint"],
        "sha256": record["sha256"],
        "sizes": {"input_dim": prior.config.input_dim, "hidden_dim": prior.config.hidden_dim,
                  "latent_dim": prior.config.latent_dim},
        "replicates": 1,
        "checkpoint": paths.prior_dir / "best",
    }, warnings)


def prior_replicate_dirs(paths: StoragePaths, replicates: int) -> list[Path]:
    """The prior's replicate folders: one when it is the user's checkpoint (there is one real prior)."""
    return [paths.prior_dir] if imported_checkpoint(paths.prior_dir) else paths.replicate_dirs(paths.prior_dir,
                                                                                               replicates)


def train_steve1_prior(paths: StoragePaths, settings: PriorSettings, replicates: int = 1,
                       log: Log | None = None) -> StageResult:
    """STEVE-1's prior (goal-space text embedding → goal embedding) on the train and val splits, with
    the task vocabulary's paraphrases; ``replicates`` priors (seeds seed, seed + 1, ...). With
    ``checkpoint``, the user's STEVE-1 prior instead."""
    from goalcraft.training.launch import load_variants

    if settings.checkpoint:
        return use_user_prior(paths, settings, replicates)
    _trained_here(paths.prior_dir)
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
