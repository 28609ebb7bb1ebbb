"""Clip shards → training batches for the goal space (MineCLIP video–text contrastive training).

A :class:`ClipBatches` reads the clip shards of the clip stage (WebDataset tars, see
``goalcraft.data.shards``) and yields :class:`ClipBatch` objects: ``frames`` uint8 tensors
``[B, T, 160, 256, 3]`` (the model normalises them), ``captions`` and sample ``keys``.

Design points, each tested in tests/test_training_data.py:

* **Split by key hash.** Whether a clip is validation or training depends only on its sample key
  (SHA-256 of a salt and the key, read as a number in [0, 1), compared with ``val_fraction``), never
  on which shard or partition holds it or in what order. Re-sharding a corpus, adding partitions or
  changing the shard size therefore leaves every clip on its side, and the two sides are disjoint.
* **Step-addressed, seeded order.** Batch ``s`` of the infinite training stream is a pure function
  of ``(seed, s)`` and the set of clips: epoch ``e = s // batches_per_epoch`` is a permutation drawn
  from ``numpy.random.default_rng([seed, e])``. A resumed run asks for the stream from its step and
  gets exactly the batches an uninterrupted run would have seen. Training epochs drop the last
  partial batch (every step has ``batch_size`` clips); evaluation passes keep it.
* **In-memory cache** (``cache=True``) for small corpora (the demo corpus is ~120 clips, ~120 MB at
  8 frames): clips are decoded once. Without it clips are streamed: shards in a per-epoch seeded
  order, samples through a seeded shuffle buffer, and JPEG decoding only for samples that end up in
  a batch that is yielded (skipping to a resume step decodes nothing).
* **Frame subsampling** (``frames=8``): ``T`` evenly spaced frames of the 16 (``[0, 2, …, 14]`` for
  8). MineCLIP's temporal aggregator takes any ``T``; halving ``T`` halves the image-encoder cost,
  which is what makes the tiny configuration trainable on a laptop CPU. The goal embedding STEVE-1
  consumes is still computed on 16 frames; train and embed with the same ``T`` for best fidelity.
* **Caption mapping** (``caption_map``): a function applied to every caption. For the Crafter demo
  corpus :func:`task_caption_map` maps each narration line ("got some wood", "chopping down this
  tree") and paraphrase to its task's instruction ("chop a tree"), so captions form classes, as
  instructions do in real use (see the function for why).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Mapping, Sequence

import numpy as np
import pyarrow.parquet as pq
import torch

from goalcraft.formats import CLIP_FRAMES
from goalcraft.data.shards import FRAME_FIELDS, decode_jpeg, iter_shard
from goalcraft.data.splits import SPLIT_SALT, split_score

__all__ = [
    "ClipBatch",
    "ClipBatches",
    "SPLIT_SALT",
    "caption_to_task",
    "frame_indices_for",
    "normalize_caption",
    "shard_keys",
    "split_of",
    "split_score",
    "task_caption_map",
]

Split = Literal["train", "val", "all"]

# --------------------------------------------------------------------------------------------
# Split and frame selection
# --------------------------------------------------------------------------------------------


def split_of(key: str, val_fraction: float, salt: str = SPLIT_SALT) -> Literal["train", "val"]:
    """``"val"`` for about ``val_fraction`` of all keys, ``"train"`` for the rest, stably.

    A key held out at fraction ``f`` is also held out at any larger fraction (monotone in ``f``).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    return "val" if split_score(key, salt) < val_fraction else "train"


def frame_indices_for(frames: int) -> list[int]:
    """The ``frames`` evenly spaced indices among the clip's 16 (``frames`` must divide into 16
    without repeats: 1..16). 16 → all, 8 → 0, 2, …, 14, 4 → 0, 4, 8, 12."""
    if not 1 <= frames <= CLIP_FRAMES:
        raise ValueError(f"frames must be in 1..{CLIP_FRAMES}, got {frames}")
    return [(i * CLIP_FRAMES) // frames for i in range(frames)]


# --------------------------------------------------------------------------------------------
# Captions → task classes
# --------------------------------------------------------------------------------------------


def normalize_caption(text: str) -> str:
    """Whitespace-normalised, case-folded: how captions are compared when mapped."""
    return " ".join(text.split()).casefold()


def task_caption_map(tasks: Mapping[str, Mapping[str, Any]] | Path | str) -> dict[str, str]:
    """From a task vocabulary (``tasks.json`` of the Crafter corpus, or its dict), a table
    normalised caption → task instruction, covering each task's instruction, paraphrases and
    narration lines.

    Why: the Crafter corpus captions its video clips with *narration* ("got some wood", "chopping
    down this tree"): three lines per task, chosen at random. Treating each line as its own class
    splits one visual event across several captions that are then negatives of each other, and asks
    retrieval to tell "got some wood" from "chopping down this tree" by video alone, which is
    impossible. Mapped to the instruction, clips of the same event share one caption — the form the
    goal space is used in (an instruction retrieves a goal clip) — and the caption-equality rule of
    the loss and of retrieval applies. Real YouTube narration has no such table; there captions
    stay as they are. A line claimed by two tasks is ambiguous and left unmapped.
    """
    if isinstance(tasks, (str, Path)):
        tasks = json.loads(Path(tasks).read_text(encoding="utf-8"))
    table: dict[str, str] = {}
    ambiguous: set[str] = set()
    for name in sorted(tasks):
        task = tasks[name]
        instruction = " ".join(str(task["instruction"]).split())
        lines = [instruction, *task.get("paraphrases", ()), *task.get("narration", ())]
        for line in lines:
            norm = normalize_caption(str(line))
            if norm in table and table[norm] != instruction:
                ambiguous.add(norm)
            table[norm] = instruction
    for norm in ambiguous:
        del table[norm]
    return table


def caption_to_task(caption: str, table: Mapping[str, str]) -> str:
    """The task instruction a caption belongs to, or the caption itself if the table lacks it."""
    return table.get(normalize_caption(caption), caption)


# --------------------------------------------------------------------------------------------
# Reading shards
# --------------------------------------------------------------------------------------------


def shard_keys(shard: Path) -> list[str]:
    """The sample keys of one shard, in order: from its parquet index if there is one (no tar
    read), else by reading the tar (without decoding)."""
    index = Path(shard).with_suffix(".parquet")
    if index.is_file():
        return pq.read_table(index, columns=["key"]).column("key").to_pylist()
    return [sample["__key__"] for sample in iter_shard(Path(shard))]


def _decode(sample: Mapping[str, bytes], indices: Sequence[int]) -> np.ndarray:
    missing = [FRAME_FIELDS[i] for i in indices if FRAME_FIELDS[i] not in sample]
    if missing:
        raise ValueError(f"sample {sample.get('__key__')!r} lacks frames {missing}")
    return np.stack([decode_jpeg(sample[FRAME_FIELDS[i]]) for i in indices])


@dataclass(frozen=True)
class ClipBatch:
    frames: torch.Tensor  # uint8 [B, T, 160, 256, 3]
    captions: list[str]
    keys: list[str]

    def __len__(self) -> int:
        return len(self.keys)


class ClipBatches:
    """Batches of clips from clip shards, one split of them (see the module docstring).

    ``shards``: tar paths (any order; they are sorted by path so the set, not the list order,
    defines the data). ``split``: ``"train"``, ``"val"`` or ``"all"``. Keys must be unique across
    the shards (the clip stage guarantees it within a corpus); a duplicate raises ``ValueError``.
    """

    def __init__(
        self,
        shards: Sequence[Path | str],
        *,
        batch_size: int,
        split: Split = "train",
        val_fraction: float = 0.2,
        seed: int = 0,
        frames: int = CLIP_FRAMES,
        cache: bool = False,
        caption_map: Callable[[str], str] | None = None,
        shuffle_buffer: int = 512,
        jitter: bool = False,
        decode_workers: int = 0,
        exclude: Callable[[Path, str], bool] | None = None,
        key_prefix: Mapping[str, str] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if split not in ("train", "val", "all"):
            raise ValueError(f"split must be 'train', 'val' or 'all', got {split!r}")
        self.shards = sorted(Path(s) for s in shards)
        self.batch_size = batch_size
        self.split = split
        self.val_fraction = val_fraction
        self.seed = seed
        self.frame_indices = frame_indices_for(frames)
        # Temporal jitter (training stream only): shift all of a clip's indices by one offset in
        # 0..max_offset, drawn per clip from (seed, epoch, batch). Evaluation passes use offset 0.
        self.jitter = jitter
        self.max_offset = CLIP_FRAMES - 1 - self.frame_indices[-1] if jitter else 0
        # What the cache holds per clip: every frame a batch may select.
        self._stored = list(range(CLIP_FRAMES)) if self.max_offset else self.frame_indices
        self.cache = cache
        self.caption_map = caption_map
        self.shuffle_buffer = max(1, shuffle_buffer)
        # JPEG decoding releases the GIL: with workers, a batch's clips decode in parallel threads
        # (same result, in order). Needed to feed a GPU: 256 clips x 16 frames is ~1.2 s on one core.
        self.decode_workers = decode_workers
        self._pool: ThreadPoolExecutor | None = None
        # ``exclude(shard, key)``: samples to leave out (e.g. clips of held-out sources); ``key_prefix``
        # (shard path → prefix) keeps the keys of shards from another stage (goal clips) apart.
        self._exclude = exclude
        self._prefix = {str(Path(k)): v for k, v in (key_prefix or {}).items()}
        split_of("", val_fraction)  # validates the fraction

        # Keys of this split, per shard, in shard order; known before any clip is decoded.
        self._shard_keys: list[list[str]] = []
        seen: set[str] = set()
        for shard in self.shards:
            keys = []
            for raw_key in shard_keys(shard):
                if self._exclude is not None and self._exclude(shard, raw_key):
                    continue
                key = self._prefix.get(str(shard), "") + raw_key
                if key in seen:
                    raise ValueError(f"sample key {key!r} occurs twice in the shards ({shard.name})")
                seen.add(key)
                if self._wanted(key):
                    keys.append(key)
            self._shard_keys.append(keys)
        self.keys: list[str] = [k for keys in self._shard_keys for k in keys]
        self._cached: list[tuple[str, np.ndarray, str]] | None = None

    # -- basics ---------------------------------------------------------------------------
    def _wanted(self, key: str) -> bool:
        return self.split == "all" or split_of(key, self.val_fraction) == self.split

    def __len__(self) -> int:
        """Number of clips in this split."""
        return len(self.keys)

    @property
    def frames(self) -> int:
        return len(self.frame_indices)

    @property
    def batches_per_epoch(self) -> int:
        """Full batches per training epoch (the last partial batch is dropped)."""
        return len(self.keys) // self.batch_size

    def _caption(self, raw: bytes | str) -> str:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        return self.caption_map(text) if self.caption_map is not None else text

    def _raw_samples(self, shard_order: Sequence[int]) -> Iterator[dict[str, Any]]:
        for i in shard_order:
            if not self._shard_keys[i]:
                continue
            shard, prefix = self.shards[i], self._prefix.get(str(self.shards[i]), "")
            for sample in iter_shard(shard):
                if self._exclude is not None and self._exclude(shard, sample["__key__"]):
                    continue
                if prefix:
                    sample = {**sample, "__key__": prefix + sample["__key__"]}
                if self._wanted(sample["__key__"]):
                    yield sample

    def _decode_all(self, samples: Sequence[Mapping[str, Any]], indices: Sequence[Sequence[int]]) -> list[np.ndarray]:
        if self.decode_workers > 0 and len(samples) > 1:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.decode_workers, thread_name_prefix="clip-decode")
            return list(self._pool.map(_decode, samples, indices))
        return [_decode(s, i) for s, i in zip(samples, indices)]

    def _clips_stored(self) -> list[tuple[str, np.ndarray, str]]:
        """Every clip of the split as ``(key, stored frames, caption)`` in shard order (decoded once
        and kept when ``cache=True``); with jitter the stored frames are all 16."""
        if self._cached is not None:
            return self._cached
        samples = list(self._raw_samples(range(len(self.shards))))
        frames = self._decode_all(samples, [self._stored] * len(samples))
        out = [(s["__key__"], f, self._caption(s["txt"])) for s, f in zip(samples, frames)]
        if [k for k, _, _ in out] != self.keys:
            raise ValueError("shards changed while being read (keys differ from their index)")
        if self.cache:
            self._cached = out
        return out

    def clips(self) -> list[tuple[str, np.ndarray, str]]:
        """Every clip of the split as ``(key, frames uint8 [T,H,W,3], caption)``, in shard order."""
        return [(k, self._select(f, 0), c) for k, f, c in self._clips_stored()]

    def _select(self, stored: np.ndarray, offset: int) -> np.ndarray:
        if not self.max_offset:
            return stored
        return stored[[i + offset for i in self.frame_indices]]

    def captions(self) -> list[str]:
        """Captions of the split in :attr:`keys` order (after ``caption_map``); decodes no frames."""
        if self._cached is not None:
            return [c for _, _, c in self._cached]
        return [self._caption(s["txt"]) for s in self._raw_samples(range(len(self.shards)))]

    def _offsets(self, epoch: int, batch: int) -> list[int]:
        if not self.max_offset:
            return [0] * self.batch_size
        rng = np.random.default_rng([self.seed, epoch, batch, 1])
        return [int(o) for o in rng.integers(0, self.max_offset + 1, size=self.batch_size)]

    def _batch(self, items: Sequence[tuple[str, np.ndarray, str]]) -> ClipBatch:
        frames = torch.from_numpy(np.stack([f for _, f, _ in items]))
        return ClipBatch(frames=frames, captions=[c for _, _, c in items], keys=[k for k, _, _ in items])

    # -- evaluation: one ordered pass -------------------------------------------------------
    def ordered(self, batch_size: int | None = None) -> Iterator[ClipBatch]:
        """The split once, in shard order, last partial batch kept (for evaluation)."""
        size = batch_size or self.batch_size
        if self.cache:
            clips = self.clips()  # offset 0
            for i in range(0, len(clips), size):
                yield self._batch(clips[i:i + size])
            return
        pending: list[dict[str, Any]] = []
        for sample in self._raw_samples(range(len(self.shards))):
            pending.append(sample)
            if len(pending) == size:
                yield self._decoded_batch(pending, [0] * size)
                pending = []
        if pending:
            yield self._decoded_batch(pending, [0] * len(pending))

    def _decoded_batch(self, samples: Sequence[Mapping[str, Any]], offsets: Sequence[int]) -> ClipBatch:
        frames = self._decode_all(samples, [[i + o for i in self.frame_indices] for o in offsets])
        return self._batch([(s["__key__"], f, self._caption(s["txt"])) for s, f in zip(samples, frames)])

    # -- training: the seeded, step-addressed stream ------------------------------------------
    def _rng(self, epoch: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, epoch])

    def epoch(self, epoch: int, skip: int = 0) -> Iterator[ClipBatch]:
        """The full batches of training epoch ``epoch`` in its seeded order, from batch ``skip`` on."""
        per_epoch = self.batches_per_epoch
        if per_epoch == 0:
            raise ValueError(f"{len(self.keys)} clips in split {self.split!r} make no batch of {self.batch_size}")
        rng = self._rng(epoch)
        if self.cache:
            stored = self._clips_stored()
            order = rng.permutation(len(stored))
            for b in range(skip, per_epoch):
                picked = [stored[i] for i in order[b * self.batch_size:(b + 1) * self.batch_size]]
                offsets = self._offsets(epoch, b)
                yield self._batch([(k, self._select(f, o), c) for (k, f, c), o in zip(picked, offsets)])
            return
        # Streaming: seeded shard order, then a seeded shuffle buffer; raw bytes are shuffled and
        # only the samples of yielded batches are decoded.
        shard_order = rng.permutation(len(self.shards))
        buffer: list[dict[str, Any]] = []
        batch: list[dict[str, Any]] = []
        produced = 0

        def take() -> dict[str, Any]:
            j = int(rng.integers(len(buffer)))
            buffer[j], buffer[-1] = buffer[-1], buffer[j]
            return buffer.pop()

        def emit(sample: dict[str, Any]) -> ClipBatch | None:
            nonlocal produced
            batch.append(sample)
            if len(batch) < self.batch_size:
                return None
            items, produced = list(batch), produced + 1
            batch.clear()
            if produced <= skip:
                return None
            return self._decoded_batch(items, self._offsets(epoch, produced - 1))

        for sample in self._raw_samples(shard_order):
            buffer.append(sample)
            if len(buffer) >= self.shuffle_buffer:
                out = emit(take())
                if out is not None:
                    yield out
        while buffer and produced < per_epoch:
            out = emit(take())
            if out is not None:
                yield out

    def stream(self, start_step: int = 0) -> Iterator[ClipBatch]:
        """Training batches for steps ``start_step, start_step + 1, …`` forever; batch ``s`` is the
        same whatever ``start_step`` the stream was opened at."""
        per_epoch = self.batches_per_epoch
        if per_epoch == 0:
            raise ValueError(f"{len(self.keys)} clips in split {self.split!r} make no batch of {self.batch_size}")
        epoch, skip = divmod(start_step, per_epoch)
        while True:
            yield from self.epoch(epoch, skip)
            epoch, skip = epoch + 1, 0

