"""Clip shards → training batches: split, seeded order, shapes, captions, on real Crafter clip shards."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from goalcraft.data.clip_stage import ClipStageSettings, build_clip_partition
from goalcraft.data.manifest import read_manifests
from goalcraft.data.shards import ClipSample, ClipShardWriter, iter_shard, read_clip
from goalcraft.data.trials import scan_trials
from goalcraft.data.windows import WindowRules
from goalcraft.storage import StoragePaths
from goalcraft.training.data import (
    ClipBatches,
    caption_to_task,
    frame_indices_for,
    split_of,
    split_score,
    task_caption_map,
)

SETTINGS = ClipStageSettings(rules=WindowRules(), trial_window_s=3.2, shard_target_bytes=2_000_000)


@pytest.fixture(scope="module")
def shards(crafter_corpus, tmp_path_factory) -> list[Path]:
    storage = StoragePaths(tmp_path_factory.mktemp("clips"))
    videos, _ = read_manifests([crafter_corpus / "manifest.jsonl"], crafter_corpus)
    trials, _ = scan_trials(crafter_corpus / "trials", crafter_corpus)
    build_clip_partition("p0000", videos, trials, crafter_corpus, storage, SETTINGS)
    tars = sorted(storage.clip_partition_dir("p0000").glob("*.tar"))
    assert len(tars) >= 2
    return tars


@pytest.fixture(scope="module")
def clips(shards) -> dict[str, tuple[np.ndarray, str, dict]]:
    return {s["__key__"]: read_clip(s) for tar in shards for s in iter_shard(tar)}


# --- split ------------------------------------------------------------------------------------


def test_split_is_disjoint_complete_and_independent_of_shard_layout(shards, clips, tmp_path):
    train = ClipBatches(shards, batch_size=4, split="train", val_fraction=0.25)
    val = ClipBatches(shards, batch_size=4, split="val", val_fraction=0.25)
    assert set(train.keys).isdisjoint(val.keys)
    assert sorted(train.keys + val.keys) == sorted(clips)
    assert len(val) > 0 and len(train) > len(val)
    assert all(split_of(k, 0.25) == "val" for k in val.keys)

    # The same clips re-sharded: other shard sizes, reversed order, no parquet index (keys come
    # from the tar). Every clip stays on its side.
    out = tmp_path / "resharded"
    with ClipShardWriter(out, "other", target_bytes=700_000) as writer:
        for key in reversed(sorted(clips)):
            frames, caption, meta = clips[key]
            writer.write(ClipSample(key, frames, caption, meta))
    for index in out.glob("*.parquet"):
        index.unlink()
    resharded = sorted(out.glob("*.tar"))
    assert len(resharded) != len(shards)
    val2 = ClipBatches(resharded, batch_size=4, split="val", val_fraction=0.25)
    assert sorted(val2.keys) == sorted(val.keys)

    # Only the set of shards matters, not the order they are passed in.
    assert ClipBatches(list(reversed(shards)), batch_size=4, split="val", val_fraction=0.25).keys == val.keys


def test_split_fraction_and_monotonicity():
    keys = [f"video-{i:04d}-{j:05d}" for i in range(50) for j in range(40)]
    held = [k for k in keys if split_of(k, 0.2) == "val"]
    assert abs(len(held) / len(keys) - 0.2) < 0.03  # 2000 keys: sd of the fraction is 0.009
    # A clip held out at 0.2 is held out at 0.3 too; none at 0.
    assert set(held) <= {k for k in keys if split_of(k, 0.3) == "val"}
    assert all(split_of(k, 0.0) == "train" for k in keys)
    # Stable across processes and versions: a fixed key has a fixed score.
    assert split_score("crafter-3-v00-00000") == split_score("crafter-3-v00-00000")
    assert 0.0 <= split_score("x") < 1.0
    with pytest.raises(ValueError):
        split_of("x", 1.0)


def test_duplicate_keys_across_shards_are_refused(shards, tmp_path):
    copy = tmp_path / "copy.tar"
    shutil.copy(shards[0], copy)
    with pytest.raises(ValueError, match="occurs twice"):
        ClipBatches([shards[0], copy], batch_size=2, split="all")


# --- order ------------------------------------------------------------------------------------


def _keys(stream, n):
    return [next(stream).keys for _ in range(n)]


@pytest.mark.parametrize("cache", [False, True])
def test_training_order_is_seeded_step_addressed_and_covers_each_epoch(shards, cache):
    def make(seed):
        return ClipBatches(shards, batch_size=4, split="train", seed=seed, frames=2, cache=cache,
                           shuffle_buffer=8)

    data = make(7)
    per_epoch = data.batches_per_epoch
    assert per_epoch == len(data) // 4 >= 3
    first = _keys(data.stream(), 2 * per_epoch + 2)
    # Same seed, new object: same batches. Other seed: another order.
    assert _keys(make(7).stream(), len(first)) == first
    assert _keys(make(8).stream(), len(first)) != first
    # Each epoch: full batches of distinct clips of the split (the remainder dropped), a new order.
    for e in range(2):
        epoch = [k for batch in first[e * per_epoch:(e + 1) * per_epoch] for k in batch]
        assert len(epoch) == len(set(epoch)) == per_epoch * 4
        assert set(epoch) <= set(data.keys)
    assert first[:per_epoch] != first[per_epoch:2 * per_epoch]
    # Opening the stream at step s gives batch s, s+1, ... of the full stream (what resume needs).
    for start in (1, per_epoch - 1, per_epoch, per_epoch + 2):
        assert _keys(data.stream(start), 3) == first[start:start + 3]


def test_ordered_pass_keeps_every_clip_once(shards):
    val = ClipBatches(shards, batch_size=3, split="val", frames=1)
    batches = list(val.ordered())
    assert [k for b in batches for k in b.keys] == val.keys
    assert [len(b) for b in batches[:-1]] == [3] * (len(batches) - 1) and 1 <= len(batches[-1]) <= 3


# --- content ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cache", [False, True])
def test_batches_hold_the_shard_frames_and_captions(shards, clips, cache):
    data = ClipBatches(shards, batch_size=5, split="all", frames=8, cache=cache)
    assert frame_indices_for(8) == [0, 2, 4, 6, 8, 10, 12, 14]
    stream = data.stream()
    seen = 0
    for _ in range(data.batches_per_epoch):
        batch = next(stream)
        assert batch.frames.dtype == torch.uint8
        assert tuple(batch.frames.shape) == (5, 8, 160, 256, 3)
        assert len(batch.captions) == len(batch.keys) == 5
        for i, key in enumerate(batch.keys):
            frames, caption, _ = clips[key]
            assert batch.captions[i] == caption
            np.testing.assert_array_equal(batch.frames[i].numpy(), frames[::2])
            seen += 1
    assert seen == (len(clips) // 5) * 5
    full = next(ClipBatches(shards, batch_size=2, split="all").ordered())
    assert tuple(full.frames.shape) == (2, 16, 160, 256, 3)
    np.testing.assert_array_equal(full.frames[0].numpy(), clips[full.keys[0]][0])


def test_caption_to_task_maps_narration_to_instructions(crafter_corpus, shards, clips):
    table = task_caption_map(crafter_corpus / "tasks.json")
    assert caption_to_task("got some wood", table) == "chop a tree"
    assert caption_to_task("  Chopping down   THIS tree ", table) == "chop a tree"
    assert caption_to_task("mmm, steak", table) == "eat a cow"
    assert caption_to_task("punch a tree to get wood", table) == "chop a tree"  # a paraphrase
    assert caption_to_task("place a crafting table", table) == "place a crafting table"
    assert caption_to_task("okay where are we", table) == "okay where are we"  # filler: unmapped
    # A line two tasks claim is ambiguous and stays as it is.
    ambiguous = {"a": {"instruction": "do a", "narration": ["same line"]},
                 "b": {"instruction": "do b", "narration": ["same line", "only b"]}}
    amb = task_caption_map(ambiguous)
    assert caption_to_task("same line", amb) == "same line" and caption_to_task("only b", amb) == "do b"

    # On the corpus: every Crafter clip caption (narration or trial instruction) maps to the
    # instruction of a task, so captions become a handful of classes.
    tasks = json.loads((crafter_corpus / "tasks.json").read_text())
    instructions = {t["instruction"] for t in tasks.values()}
    mapped = ClipBatches(shards, batch_size=4, split="all", frames=1,
                         caption_map=lambda c: caption_to_task(c, table))
    captions = mapped.captions()
    assert set(captions) <= instructions
    assert len(set(captions)) < len({c for _, c, _ in clips.values()})
    assert Counter(captions).most_common(1)[0][1] >= 3
    batch = next(mapped.ordered())
    assert batch.captions == [caption_to_task(clips[k][1], table) for k in batch.keys]


@pytest.mark.parametrize("cache", [False, True])
def test_jitter_shifts_frames_by_a_seeded_offset_and_never_in_evaluation(shards, clips, cache):
    data = ClipBatches(shards, batch_size=4, split="train", frames=4, jitter=True, cache=cache, seed=3)
    assert data.max_offset == 3  # indices 0, 4, 8, 12 may move up to 15
    offsets = []
    for batch in [next(data.stream(s)) for s in range(4)]:
        for i, key in enumerate(batch.keys):
            full = clips[key][0]
            matches = [o for o in range(4) if np.array_equal(batch.frames[i].numpy(), full[[o, 4 + o, 8 + o, 12 + o]])]
            assert matches, key
            offsets.append(matches[0])
    assert len(set(offsets)) > 1  # jittered
    again = ClipBatches(shards, batch_size=4, split="train", frames=4, jitter=True, cache=not cache, seed=3)
    # Same seed, same offsets, whether clips are cached or streamed.
    assert [o for o in data._offsets(0, 1)] == again._offsets(0, 1)
    # Evaluation passes are never jittered.
    batch = next(data.ordered())
    for i, key in enumerate(batch.keys):
        np.testing.assert_array_equal(batch.frames[i].numpy(), clips[key][0][::4])
    assert ClipBatches(shards, batch_size=4, frames=16, jitter=True).max_offset == 0


def test_parallel_decoding_gives_the_same_batches(shards):
    def batches(workers):
        data = ClipBatches(shards, batch_size=4, split="train", frames=2, jitter=True, decode_workers=workers)
        stream = data.stream(2)
        return [next(stream) for _ in range(3)] + list(data.ordered())

    for a, b in zip(batches(0), batches(3)):
        assert a.keys == b.keys and a.captions == b.captions and torch.equal(a.frames, b.frames)
