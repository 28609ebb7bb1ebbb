"""How well a goal space separates tasks: train one on a materialized corpus, embed its goal clips,
and score the oracle (each task's mean training goal) on the held-out goal clips.

    python bench/goal_space_oracle.py study.toml out/ --steps 600           # the pipeline's data
    python bench/goal_space_oracle.py study.toml out/ --steps 600 --goal-only
    python bench/goal_space_oracle.py study.toml out/ --pixels              # no model: raw pixels

The settings file's data root must hold the ingest, clips and goal clips (``goalcraft run --select
ingest,clips,goals``). Training is the pipeline's (``train_goal_space`` with the ``[goal_space]``
preset, test-split sources left out); the oracle is nearest task mean over the tasks with both
training and held-out clips, reported per clip and task-balanced, raw and centred (training mean
subtracted), with the chance level. ``--pixels`` scores a 32x20 thumbnail of the last frame plus its
difference from the first frame instead: a floor any learned goal space should beat. Where the corpus
has ground truth (``ground_truth/events.jsonl``) the oracle is also scored on the pure clips only (those
that show their task's unlock and no other task's; goalcraft.data.ground_truth), and per miner.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from goalcraft.config import load_config
from goalcraft.data.embeddings import embed_shards, embedding_matrix
from goalcraft.data.ground_truth import GROUND_TRUTH_EVENTS, read_ground_truth
from goalcraft.data.shards import iter_shard, read_clip
from goalcraft.data.splits import with_split_column
from goalcraft.data.task_vocabulary import TaskVocabulary, read_task_vocabulary
from goalcraft.models.mineclip import MINECLIP_CONFIGS, load_mineclip
from goalcraft.stages.embeddings import user_trial_ids
from goalcraft.stages.training import goal_space_data
from goalcraft.storage import StoragePaths
from goalcraft.training.data import caption_to_task, task_caption_map
from goalcraft.training.goal_space import GOAL_SPACE_TRAINING, train_goal_space


def oracle(x: np.ndarray, task: np.ndarray, split: np.ndarray) -> dict[str, dict[str, float]]:
    """Nearest task-mean (training split) classification of the test split, raw and centred."""
    train, test = split == "train", split == "test"
    tasks = sorted(set(task[train]) & set(task[test]))
    out: dict[str, dict[str, float]] = {}
    if not tasks:
        return out
    for name, centre in (("raw", False), ("centred", True)):
        y = x - x[train].mean(0) if centre else x
        y = y / (np.linalg.norm(y, axis=1, keepdims=True) + 1e-12)
        means = np.stack([y[train & (task == k)].mean(0) for k in tasks])
        means /= np.linalg.norm(means, axis=1, keepdims=True) + 1e-12
        mask = test & np.isin(task, tasks)
        pred = np.asarray(tasks)[np.argmax(y[mask] @ means.T, axis=1)]
        truth = task[mask]
        out[name] = {"top1": round(float((pred == truth).mean()), 3),
                     "task_balanced_top1": round(float(np.mean([(pred[truth == k] == k).mean() for k in tasks])), 3),
                     "tasks": len(tasks), "clips": int(mask.sum()), "chance": round(1 / len(tasks), 3)}
    return out


def pixel_features(shards: list[Path]) -> tuple[np.ndarray, list[str]]:
    from PIL import Image

    feats, keys = [], []
    for shard in shards:
        for sample in iter_shard(shard):
            clip, _, _ = read_clip(sample)
            first, last = (np.asarray(Image.fromarray(clip[i]).resize((32, 20), Image.BILINEAR), np.float32).ravel()
                           / 255 for i in (0, -1))
            feats.append(np.concatenate([last, last - first]))
            keys.append(sample["__key__"])
    return np.stack(feats), keys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--eval-every", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=None, help="default: [goal_space] batch_size, else the preset's")
    parser.add_argument("--lr", type=float, default=None, help="default: the preset's")
    parser.add_argument("--model", default=None, help="a MINECLIP_CONFIGS name (default: the preset's)")
    parser.add_argument("--patch", type=int, default=0, help="override the model's patch size")
    parser.add_argument("--goal-only", action="store_true", help="train on goal clips only (also: [goal_space] train_on)")
    parser.add_argument("--pixels", action="store_true", help="score raw pixels instead of a trained model")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="score this goal-space checkpoint (a folder with model.safetensors) instead of training")
    args = parser.parse_args()

    config = load_config(args.config)
    paths = StoragePaths(Path(config.paths.data_root))
    started = time.perf_counter()
    goal_shards = paths.goal_shards()
    features = str(args.checkpoint or args.out / "best")
    if args.pixels:
        features = "pixels"
        x, _ = pixel_features(goal_shards)
        from goalcraft.data.shards import read_index
        import pyarrow as pa

        table = pa.concat_tables([read_index(s.with_suffix(".parquet")) for s in goal_shards])
    elif args.checkpoint:
        table = embed_shards(load_mineclip(args.checkpoint), goal_shards, batch_size=32)
        x = embedding_matrix(table)
    else:
        recipe = GOAL_SPACE_TRAINING[config.goal_space.preset]
        model_config = MINECLIP_CONFIGS[args.model or recipe.model]
        if args.patch:
            model_config = dataclasses.replace(model_config, patch_size=args.patch)
        data = goal_space_data(paths, config.splits,
                               goal_clips_only=args.goal_only or config.goal_space.train_on == "goal_clips")
        shards = data.shards
        mapping = task_caption_map(TaskVocabulary(read_task_vocabulary(paths.task_vocabulary_file).corpus_tasks())
                                   .to_mapping())
        overrides = {k: v for k, v in (("batch_size", args.batch_size or config.goal_space.batch_size),
                                       ("lr", args.lr)) if v is not None}
        kwargs = recipe.training_kwargs(steps=args.steps, eval_every=args.eval_every, **overrides)
        train_goal_space(shards, model_config, args.out, seed=config.goal_space.seed,
                         caption_map=lambda c: caption_to_task(c, mapping), exclude=data.exclude,
                         key_prefix=data.key_prefix, data_key=data.data_key, resume=False, tensorboard=False, **kwargs)
        table = embed_shards(load_mineclip(args.out / "best"), goal_shards, batch_size=32)
        x = embedding_matrix(table)
    table = with_split_column(table, val_fraction=config.splits.val_fraction, test_fraction=config.splits.test_fraction,
                              user_trials=user_trial_ids(paths), user_trials_mode=config.splits.steve1_trials)
    task, split = np.asarray(table.column("task").to_pylist()), np.asarray(table.column("split").to_pylist())
    result = oracle(x, task, split)
    events = config.paths.corpus_path / GROUND_TRUTH_EVENTS
    if events.is_file():
        truth = read_ground_truth(events)
        from goalcraft.data.shards import read_index

        stamps = {k: t for s in goal_shards for k, t in zip(*read_index(s.with_suffix(".parquet"))
                                                              .select(["key", "frame_timestamps"]).to_pydict().values())}
        rows = [{**r, "frame_timestamps": stamps[r["key"]]}
                for r in table.select(["key", "source_id", "task", "miner"]).to_pylist()]
        pure = np.array([truth.shows(r["source_id"], r["task"], r["frame_timestamps"][0], r["frame_timestamps"][-1])
                         and not truth.others(r["source_id"], r["task"], r["frame_timestamps"][0],
                                              r["frame_timestamps"][-1]) for r in rows])
        miner = np.asarray([r["miner"] for r in rows])
        result["purity"] = round(float(pure.mean()), 4)
        result["pure_clips"] = oracle(x, task, np.where(pure, split, "-"))
        for name in sorted(set(miner)):
            result[f"test_{name}_clips"] = oracle(x, task, np.where((miner == name) | (split == "train"), split, "-"))
    print(json.dumps({"features": features, **result,
                      "seconds": round(time.perf_counter() - started, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
