"""The train / val / test split of goal clips, assigned once, by source.

A source is one video or one trial (``source_id`` of the goal index). All goal clips of a source share
its split, so no held-out clip shares frames or a recording with a training clip. The goal_embeddings
asset assigns the split (:func:`assign_source_splits`) and stores it as the ``split`` column of the
goal-embeddings table; every later step reads that column (:func:`split_indices`), none recomputes it.

Assignment: sources are ordered by a salted hash of their id (stable, independent of the corpus
order); walking that order, sources go to ``test`` until they hold ``test_fraction`` of the goal
clips, then to ``val`` until ``val_fraction`` more, the rest to ``train``. With three or more sources
each split gets at least one source. Adding sources moves only the boundary sources.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Literal, Mapping, Sequence

import numpy as np
import pyarrow as pa

SplitName = Literal["train", "val", "test"]
SPLITS: tuple[SplitName, ...] = ("train", "val", "test")

# Changing the salt reshuffles which sources are held out: never change it for a corpus you compare
# runs on.
SPLIT_SALT = "goalcraft/goal-space/split/v1"


class SplitError(ValueError):
    """The goal clips cannot be split as asked (too few sources, or no split column)."""


def split_score(key: str, salt: str = SPLIT_SALT) -> float:
    """A number in [0, 1) that depends only on ``key`` (and the salt): SHA-256, first 8 bytes."""
    digest = hashlib.sha256(f"{salt}\x00{key}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign_source_splits(clips_per_source: Mapping[str, int], *, val_fraction: float,
                         test_fraction: float) -> dict[str, SplitName]:
    """Source id → split (rules in the module docstring)."""
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise SplitError(f"val_fraction {val_fraction} and test_fraction {test_fraction} must be positive "
                         "and sum below 1")
    order = sorted(clips_per_source, key=lambda s: (split_score(s), s))
    total, n = sum(clips_per_source.values()), len(order)
    out: dict[str, SplitName] = {}
    covered = 0
    for rank, source in enumerate(order):
        left = n - rank  # this source included; the last one always trains
        have = Counter(out.values())
        if (have["test"] == 0 and n >= 2) or (covered < test_fraction * total and left > 2):
            out[source] = "test"
        elif (have["val"] == 0 and n >= 3 and left >= 2) or (covered < (test_fraction + val_fraction) * total
                                                              and left >= 2):
            out[source] = "val"
        else:
            out[source] = "train"
        covered += clips_per_source[source]
    return out


def with_split_column(table: pa.Table, *, val_fraction: float, test_fraction: float) -> pa.Table:
    """``table`` (one row per goal clip, with ``source_id``) plus its ``split`` column."""
    sources = table.column("source_id").to_pylist()
    assignment = assign_source_splits(Counter(sources), val_fraction=val_fraction, test_fraction=test_fraction)
    column = pa.array([assignment[s] for s in sources], pa.string())
    if "split" in table.column_names:
        table = table.drop_columns(["split"])
    return table.append_column("split", column)


def split_indices(table: pa.Table) -> dict[SplitName, np.ndarray]:
    """Row indices of each split, read from the table's ``split`` column."""
    if "split" not in table.column_names:
        raise SplitError("the goal-embeddings table has no split column: re-materialize goal_embeddings")
    names = np.asarray(table.column("split").to_pylist(), dtype=object)
    return {name: np.flatnonzero(names == name) for name in SPLITS}


def require_splits(splits: Mapping[str, np.ndarray], needed: Sequence[SplitName] = SPLITS) -> None:
    """A clear error when a split the caller needs holds no goal clip."""
    empty = [name for name in needed if len(splits[name]) == 0]
    if empty:
        sizes = ", ".join(f"{n} {len(splits[n])}" for n in SPLITS)
        raise SplitError(f"no goal clips in the {'/'.join(empty)} split ({sizes} clips): the split is by source "
                         "(video or trial), so it needs at least three sources with goal clips")
