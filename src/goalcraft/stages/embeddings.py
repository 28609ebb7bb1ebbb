"""Embeddings: every goal clip (with its per-frame features and its split, assigned here once by
source) and every clip of a partition, in the trained goal space."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq

from goalcraft.config import GoalSpaceSettings, SplitSettings
from goalcraft.data.embeddings import check_embeddings, embed_shards
from goalcraft.data.goal_stage import GOAL_INDEX_SCHEMA
from goalcraft.data.shards import INDEX_SCHEMA
from goalcraft.data.splits import SPLITS, with_split_column
from goalcraft.models.mineclip import load_mineclip
from goalcraft.stages import StageResult
from goalcraft.stages.training import goal_space_device, norm_reference
from goalcraft.storage import StoragePaths, partition_lock, write_parquet_atomic

#: STEVE-1's goal space is 512-d; the checks hold every goal space to it.
GOAL_DIM = 512


def _embed(paths: StoragePaths, settings: GoalSpaceSettings, shards: list[Path], say: Callable[[str], None] | None,
           frame_features: bool = False, index_schema: pa.Schema = INDEX_SCHEMA) -> pa.Table:
    model = load_mineclip(paths.goal_space_dir / "best")
    device = goal_space_device(settings)
    total = [0]

    def progress(done: int) -> None:
        if say and done - total[0] >= 256:
            say(f"embedded {done} clips")
            total[0] = done

    return embed_shards(model.to(device), shards, batch_size=settings.embed_batch_size, device=device,
                        progress=progress, frame_features=frame_features, index_schema=index_schema)


#: Trial layouts of the user's own STEVE-1 evaluation files (goalcraft.data.steve1_eval).
USER_TRIAL_LAYOUTS = ("steve1_result", "recorded_sample")


def user_trial_ids(paths: StoragePaths) -> set[str]:
    """Ids of the ingested trials that are the user's STEVE-1 evaluation results and recorded samples."""
    if not paths.trials_table.is_file():
        return set()
    trials = pq.read_table(paths.trials_table, columns=["id", "layout"]).to_pylist()
    return {t["id"] for t in trials if t["layout"] in USER_TRIAL_LAYOUTS}


def embed_goal_clips(paths: StoragePaths, settings: GoalSpaceSettings, splits: SplitSettings,
                     say: Callable[[str], None] | None = None) -> StageResult:
    """Every goal clip → ``embeddings/goal_clips.parquet`` with per-frame features, the split and the
    reference column (the user's STEVE-1 trials placed by ``[splits] steve1_trials``)."""
    # Per-frame features too: the goal predictor's video Q-Former reads them (stage 1 targets).
    table = _embed(paths, settings, paths.goal_shards(), say, frame_features=True, index_schema=GOAL_INDEX_SCHEMA)
    warnings = [] if table.num_rows else ["no goal clips to embed: the goal-embeddings table is empty (see "
                                          "goal_clips' notes)"]
    table = with_split_column(table, val_fraction=splits.val_fraction, test_fraction=splits.test_fraction,
                              user_trials=user_trial_ids(paths), user_trials_mode=splits.steve1_trials)
    write_parquet_atomic(table, paths.goal_embeddings_table)
    split_counts = Counter(table.column("split").to_pylist())
    norms = table.column("norm").to_numpy() if table.num_rows else []
    return StageResult({
        "rows": table.num_rows,
        "by_miner": dict(Counter(table.column("miner").to_pylist())),
        "tasks": len(set(table.column("task").to_pylist())),
        "norm_mean": float(norms.mean()) if len(norms) else 0.0,
        "splits": {name: split_counts.get(name, 0) for name in SPLITS},
        "references": dict(Counter(r for r in table.column("reference").to_pylist() if r is not None)),
        "table": paths.goal_embeddings_table,
    }, warnings)


def embed_clip_partition(paths: StoragePaths, settings: GoalSpaceSettings, partition: str,
                         say: Callable[[str], None] | None = None) -> StageResult:
    """One partition's clips → ``embeddings/clips/<partition>.parquet``."""
    out = paths.clip_embeddings_table(partition)
    with partition_lock(paths.lock_dir("clip_embeddings"), partition, f"clip_embeddings[{partition}]"):
        shards = sorted(paths.clip_partition_dir(partition).glob("p*-*.tar"))
        table = _embed(paths, settings, shards, say)
        write_parquet_atomic(table, out)
    return StageResult({"rows": table.num_rows, "table": out})


def embeddings_sane(table: pa.Table, paths: StoragePaths) -> tuple[bool, dict]:
    """512-d, finite, norms inside the goal space's recorded range (goalcraft.data.embeddings)."""
    return check_embeddings(table, dim=GOAL_DIM, reference=norm_reference(paths))
