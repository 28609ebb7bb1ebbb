"""The train / val / test split of goal clips, assigned once, by source.

A source is one video or one trial (``source_id`` of the goal index). All goal clips of a source share
its split, so no held-out clip shares frames or a recording with a training clip. The goal_embeddings
asset assigns the split (:func:`assign_source_splits`) and stores it as the ``split`` column of the
goal-embeddings table; every later step reads that column (:func:`split_indices`), none recomputes it.

Assignment: sources are ordered by a salted hash of their id (stable, independent of the corpus
order); walking that order, a source goes to ``test`` while test holds fewer than ``test_fraction``
of the goal clips, then to ``val`` likewise, else to ``train`` — but never to a split it would push
past 1.5x its target (plus one clip): one narrated video with half the corpus's goal clips stays in
train rather than becoming the whole test set. With three or more sources each split gets at least
one source (taken from the other held-out split when it has several, else the smallest in train).
Adding sources moves only sources near the boundaries.

The user's own STEVE-1 trials (evaluation results and recorded samples, ``[splits] steve1_trials``)
take no part in the hash split: a few dozen trials split 15 % at a time would leave a handful of
references. With ``references`` every one of them is in ``test`` (a held-out success visual); with
``references_and_training`` every one is in ``train`` (the prior and the aligner train on them) and
still serves as a reference. The ``reference`` column says why a goal clip is a success visual of the
evaluation: :data:`TEST_SPLIT`, :data:`STEVE1_TRIALS`, :data:`STEVE1_TRIALS_TRAINED` (NULL: it is not
one); :func:`reference_rows` reads it.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Collection, Literal, Mapping, Sequence

import numpy as np
import pyarrow as pa

SplitName = Literal["train", "val", "test"]
SPLITS: tuple[SplitName, ...] = ("train", "val", "test")

# Changing the salt reshuffles which sources are held out: never change it for a corpus you compare
# runs on.
SPLIT_SALT = "goalcraft/goal-space/split/v1"

#: Sources of the evaluation's success visuals (the ``reference`` column; imported pickles are
#: ``imported:<file>``): the hash split's test sources, the user's STEVE-1 trials held out, and the
#: user's trials that the models also trained on.
TEST_SPLIT = "test_split"
STEVE1_TRIALS = "steve1_trials"
STEVE1_TRIALS_TRAINED = "steve1_trials:trained_on"


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
    total = sum(clips_per_source.values())
    target = {"test": test_fraction * total, "val": val_fraction * total}
    count = {"test": 0, "val": 0}
    out: dict[str, SplitName] = {}
    for source in order:
        n = clips_per_source[source]
        out[source] = "train"
        for split in ("test", "val"):
            # Below the target, and not overshooting it by more than half (one huge source stays in train).
            if count[split] < target[split] and count[split] + n <= 1.5 * target[split] + 1:
                out[source] = split
                count[split] += n
                break
    if order and "train" not in out.values():  # train keeps a source before val and test get theirs
        last = next(s for s in reversed(order) if out[s] == ("val" if count["val"] else "test"))
        count[out[last]] -= clips_per_source[last]
        out[last] = "train"
    # Few or lumpy sources: each split gets at least one source: the other held-out split's last
    # (in hash order) when it has two or more, else the smallest in train, as long as train keeps one.
    for split, other in (("test", "val"), ("val", "test")):
        if count[split]:
            continue
        donors = [s for s in order if out[s] == other]
        train = [s for s in order if out[s] == "train"]
        if len(donors) >= 2:
            moved = donors[-1]
        elif len(train) >= 2:
            moved = min(train, key=lambda s: clips_per_source[s])
        else:
            continue
        if out[moved] != "train":
            count[out[moved]] -= clips_per_source[moved]
        out[moved] = split
        count[split] += clips_per_source[moved]
    return out


def source_splits(goal_clip_sources: Sequence[str], *, val_fraction: float, test_fraction: float,
                  user_trials: Collection[str] = (),
                  user_trials_mode: Literal["references", "references_and_training"] = "references",
                  ) -> dict[str, SplitName]:
    """Source id → split, from the source of every goal clip (one entry per clip): the hash split of
    :func:`assign_source_splits`, with the user's STEVE-1 trials placed by ``user_trials_mode``. The
    goal-embeddings table and the goal space's training data both take their split from here."""
    user = set(user_trials)
    assignment = assign_source_splits(Counter(s for s in goal_clip_sources if s not in user),
                                      val_fraction=val_fraction, test_fraction=test_fraction)
    for source in user & set(goal_clip_sources):
        assignment[source] = "test" if user_trials_mode == "references" else "train"
    return assignment


def with_split_column(table: pa.Table, *, val_fraction: float, test_fraction: float,
                      user_trials: Collection[str] = (),
                      user_trials_mode: Literal["references", "references_and_training"] = "references") -> pa.Table:
    """``table`` (one row per goal clip, with ``source_id``) plus its ``split`` and ``reference``
    columns; sources in ``user_trials`` (the user's STEVE-1 trials) are placed by ``user_trials_mode``
    (module docstring), the others by the hash split."""
    sources = table.column("source_id").to_pylist()
    user = set(user_trials)
    assignment = source_splits(sources, val_fraction=val_fraction, test_fraction=test_fraction,
                               user_trials=user, user_trials_mode=user_trials_mode)
    held_out = user_trials_mode == "references"
    split = [assignment[s] for s in sources]
    user_reference = STEVE1_TRIALS if held_out else STEVE1_TRIALS_TRAINED
    reference = [user_reference if s in user else TEST_SPLIT if k == "test" else None for s, k in zip(sources, split)]
    table = table.drop_columns([c for c in ("split", "reference") if c in table.column_names])
    return table.append_column("split", pa.array(split, pa.string())).append_column(
        "reference", pa.array(reference, pa.string()))


def reference_rows(table: pa.Table) -> tuple[np.ndarray, list[str]]:
    """Row indices of the evaluation's success visuals and the source of each (the ``reference``
    column; a table written before it had one: the test split, as :data:`TEST_SPLIT`)."""
    if "reference" in table.column_names:
        labels = table.column("reference").to_pylist()
        rows = [i for i, label in enumerate(labels) if label is not None]
        return np.asarray(rows, dtype=np.int64), [labels[i] for i in rows]
    rows = split_indices(table)["test"]
    return rows, [TEST_SPLIT] * len(rows)


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
