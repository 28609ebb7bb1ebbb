"""The goal-clip split: assigned once, by source, stored as a column, read back."""

from collections import Counter

import pyarrow as pa
import pytest

from goalcraft.data.splits import (
    SplitError,
    assign_source_splits,
    require_splits,
    split_indices,
    split_score,
    with_split_column,
)


def _table(clips_per_source: dict[str, int]) -> pa.Table:
    rows = [{"key": f"{s}-{i:05d}", "source_id": s} for s, n in clips_per_source.items() for i in range(n)]
    return pa.Table.from_pylist(rows)


def test_clips_of_one_source_never_cross_splits_and_fractions_are_by_clip():
    counts = {f"video{i:03d}": 1 + i % 7 for i in range(200)}
    table = with_split_column(_table(counts), val_fraction=0.15, test_fraction=0.15)
    by_source: dict[str, set] = {}
    for source, split in zip(table.column("source_id").to_pylist(), table.column("split").to_pylist()):
        by_source.setdefault(source, set()).add(split)
    assert all(len(s) == 1 for s in by_source.values())
    share = Counter(table.column("split").to_pylist())
    total = table.num_rows
    # The walk stops at the first source past each boundary, so a split overshoots by < one source (7 clips).
    assert 0.15 * total <= share["test"] < 0.15 * total + 7
    assert 0.15 * total - 7 < share["val"] < 0.15 * total + 7


def test_assignment_is_stable_and_follows_the_source_hash_order():
    counts = {f"s{i}": 3 for i in range(40)}
    first = assign_source_splits(counts, val_fraction=0.2, test_fraction=0.2)
    assert assign_source_splits(dict(reversed(list(counts.items()))), val_fraction=0.2, test_fraction=0.2) == first
    order = sorted(counts, key=split_score)
    # test, then val, then train along the hash order: 8 sources of 40 each for test and val (equal sizes).
    assert [first[s] for s in order] == ["test"] * 8 + ["val"] * 8 + ["train"] * 24


@pytest.mark.parametrize("n, expected", [(1, {"train": 1}), (2, {"test": 1, "train": 1}),
                                         (3, {"test": 1, "val": 1, "train": 1})])
def test_few_sources_keep_train_then_test_then_val(n, expected):
    out = assign_source_splits({f"s{i}": 10 for i in range(n)}, val_fraction=0.15, test_fraction=0.15)
    assert dict(Counter(out.values())) == expected


def test_split_column_is_read_back_and_missing_splits_are_one_clear_error():
    table = with_split_column(_table({"a": 2, "b": 1, "c": 1}), val_fraction=0.2, test_fraction=0.2)
    splits = split_indices(table)
    assert sorted(i for idx in splits.values() for i in idx.tolist()) == [0, 1, 2, 3]
    assert with_split_column(table, val_fraction=0.2, test_fraction=0.2).column_names.count("split") == 1
    with pytest.raises(SplitError, match="no split column"):
        split_indices(table.drop_columns(["split"]))
    two = split_indices(with_split_column(_table({"a": 1, "b": 1}), val_fraction=0.2, test_fraction=0.2))
    with pytest.raises(SplitError, match=r"no goal clips in the val split \(train 1, val 0, test 1 clips\)"):
        require_splits(two)
    with pytest.raises(SplitError, match="sum below 1"):
        assign_source_splits({"a": 1}, val_fraction=0.6, test_fraction=0.5)


def test_one_huge_source_stays_in_train_and_small_ones_are_held_out():
    counts = {"video_a": 20, "video_b": 15, "trial_1": 1, "trial_2": 1, "episode_1": 1, "episode_2": 1,
              "episode_3": 1}
    out = assign_source_splits(counts, val_fraction=0.15, test_fraction=0.15)
    # Targets are 6 clips each: neither video fits (20, 15 > 1.5 x 6 + 1), so both train.
    assert out["video_a"] == out["video_b"] == "train"
    assert set(out.values()) == {"train", "val", "test"}


def test_the_users_steve1_trials_take_no_part_in_the_hash_split():
    from goalcraft.data.splits import STEVE1_TRIALS, STEVE1_TRIALS_TRAINED, TEST_SPLIT, reference_rows

    counts = {f"video{i:02d}": 3 for i in range(20)} | {f"aimc_trial{i}": 1 for i in range(6)}
    user = {f"aimc_trial{i}" for i in range(6)}
    plain = with_split_column(_table({s: n for s, n in counts.items() if s not in user}),
                              val_fraction=0.15, test_fraction=0.15)
    for mode, split, label in (("references", "test", STEVE1_TRIALS),
                               ("references_and_training", "train", STEVE1_TRIALS_TRAINED)):
        table = with_split_column(_table(counts), val_fraction=0.15, test_fraction=0.15, user_trials=user,
                                  user_trials_mode=mode)
        rows = table.to_pylist()
        assert {(r["split"], r["reference"]) for r in rows if r["source_id"] in user} == {(split, label)}
        # The other sources are split exactly as without the user's trials.
        others = [(r["source_id"], r["split"]) for r in rows if r["source_id"] not in user]
        assert others == list(zip(plain.column("source_id").to_pylist(), plain.column("split").to_pylist()))
        assert all(r["reference"] == (TEST_SPLIT if r["split"] == "test" else None)
                   for r in rows if r["source_id"] not in user)
        idx, sources = reference_rows(table)
        assert [rows[i]["reference"] for i in idx] == sources and sources.count(label) == 6
        assert len(idx) == sum(r["split"] == "test" for r in rows) + (6 if split == "train" else 0)
    # A table written before the reference column: its test split.
    idx, sources = reference_rows(plain.drop_columns(["reference"]))
    assert list(idx) == list(split_indices(plain)["test"]) and set(sources) == {TEST_SPLIT}
