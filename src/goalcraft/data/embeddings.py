"""Goal-space embeddings of clip and goal-clip shards, as parquet tables, and their sanity checks.

One row per clip: the shard index columns that identify it, ``embedding`` (512 float32, raw: STEVE-1
expects MineCLIP-scale vectors, not unit vectors) and its L2 ``norm``. DuckDB reads the tables as
they are (``embedding`` is a fixed-size 512 float32 list in the Arrow schema, a ``FLOAT[]`` list in DuckDB).
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol, Sequence

import numpy as np
import pyarrow as pa
import torch

from goalcraft.formats import CLIP_FRAMES
from goalcraft.data.shards import INDEX_SCHEMA, iter_shard, read_clip, read_index


class GoalEncoder(Protocol):
    """What embedding needs of a model: MineCLIP's per-frame features of uint8 [B, 16, H, W, 3] and
    the goal embedding pooled from them."""

    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor: ...

    def goal_embedding_of_frame_features(self, frame_features: torch.Tensor) -> torch.Tensor: ...


def _batches(shards: Sequence[Path], batch_size: int) -> Iterator[tuple[list[str], np.ndarray]]:
    keys: list[str] = []
    frames: list[np.ndarray] = []
    for shard in shards:
        for sample in iter_shard(shard):
            clip, _, _ = read_clip(sample)
            keys.append(sample["__key__"])
            frames.append(clip)
            if len(keys) == batch_size:
                yield keys, np.stack(frames)
                keys, frames = [], []
    if keys:
        yield keys, np.stack(frames)


@torch.inference_mode()
def embed_shards(model: GoalEncoder, shards: Sequence[Path], *, batch_size: int = 32, device: str = "cpu",
                 progress: Callable[[int], None] | None = None, frame_features: bool = False,
                 index_schema: pa.Schema = INDEX_SCHEMA, dim: int | None = None) -> pa.Table:
    """Embed every clip of ``shards`` (in shard order) and join each shard's index columns.

    On CUDA the encoder runs under bf16 autocast; embeddings are stored as float32. With
    ``frame_features`` the table also holds each clip's per-frame features ``[16, D]`` (what the goal
    predictor's video Q-Former reads), computed in the same pass. With no clips at all the table has
    zero rows and the same columns and types as a full one (``index_schema``; ``dim``, else the
    model's ``embed_dim``), so readers and DuckDB views need no special case.
    """
    rows: dict[str, np.ndarray] = {}
    frames_by_key: dict[str, np.ndarray] = {}
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else nullcontext()
    done = 0
    for keys, frames in _batches(shards, batch_size):
        with autocast:
            per_frame = model.encode_frames(torch.from_numpy(frames).to(device))
            emb = model.goal_embedding_of_frame_features(per_frame)
        for key, vec in zip(keys, emb.float().cpu().numpy()):
            rows[key] = vec
        if frame_features:
            for key, feats in zip(keys, per_frame.float().cpu().numpy()):
                frames_by_key[key] = feats
        done += len(keys)
        if progress:
            progress(done)
    index = pa.concat_tables([read_index(s.with_suffix(".parquet")) for s in shards]) if shards else None
    if index is None or index.num_rows == 0:
        dim = dim or int(getattr(model, "embed_dim", 0)) or None
        if dim is None:
            raise ValueError("no clips to embed and no embedding dimension: pass dim")
        return empty_embedding_table(index.schema if index is not None else index_schema, dim,
                                     frames=CLIP_FRAMES if frame_features else None)
    return embedding_table(index, rows, frames_by_key if frame_features else None)


#: Index columns an embedding table leaves out (per-frame detail the embedding replaces).
_DROPPED_INDEX_COLUMNS = ("frame_timestamps", "bytes")


def empty_embedding_table(index_schema: pa.Schema, dim: int, *, frames: int | None = None) -> pa.Table:
    """A zero-row embedding table with the columns and types :func:`embedding_table` writes."""
    fields = [f for f in index_schema if f.name not in _DROPPED_INDEX_COLUMNS]
    fields += [pa.field("embedding", pa.list_(pa.float32(), dim)), pa.field("norm", pa.float32())]
    if frames is not None:
        fields.append(pa.field("frame_features", pa.list_(pa.list_(pa.float32(), dim), frames)))
    return pa.schema(fields).empty_table()


def embedding_table(index: pa.Table | None, embeddings: dict[str, np.ndarray],
                    frame_features: dict[str, np.ndarray] | None = None) -> pa.Table:
    """Index rows (minus per-frame columns) plus ``embedding`` and ``norm`` (and ``frame_features``,
    ``[T][D]`` fixed-size lists, when given), in index order."""
    if index is None or index.num_rows == 0:
        raise ValueError("no clips: a table of zero clips is empty_embedding_table(schema, dim)")
    keys = index.column("key").to_pylist()
    missing = [k for k in keys if k not in embeddings]
    if missing:
        raise ValueError(f"{len(missing)} indexed clips were not embedded, e.g. {missing[:3]}")
    matrix = np.stack([embeddings[k] for k in keys]).astype(np.float32)
    dim = matrix.shape[1]
    table = index.drop_columns([c for c in _DROPPED_INDEX_COLUMNS if c in index.column_names])
    flat = pa.array(matrix.reshape(-1), pa.float32())
    table = table.append_column("embedding", pa.FixedSizeListArray.from_arrays(flat, dim))
    table = table.append_column("norm", pa.array(np.linalg.norm(matrix, axis=1), pa.float32()))
    if frame_features is not None:
        stacked = np.stack([frame_features[k] for k in keys]).astype(np.float32)  # [N, T, D]
        inner = pa.FixedSizeListArray.from_arrays(pa.array(stacked.reshape(-1), pa.float32()), stacked.shape[2])
        table = table.append_column("frame_features", pa.FixedSizeListArray.from_arrays(inner, stacked.shape[1]))
    return table


def frame_feature_tensor(table: pa.Table) -> np.ndarray:
    """``frame_features`` of an embedding table as float32 ``[N, T, D]``."""
    column = table.column("frame_features").combine_chunks()
    t, d = column.type.list_size, column.type.value_type.list_size
    return column.flatten().flatten().to_numpy(zero_copy_only=False).reshape(-1, t, d).astype(np.float32)


def embedding_matrix(table: pa.Table) -> np.ndarray:
    column = table.column("embedding").combine_chunks()
    dim = column.type.list_size if hasattr(column.type, "list_size") else len(column[0])
    return column.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim).astype(np.float32)


@dataclass(frozen=True)
class NormStats:
    """The L2-norm range an encoder produced on reference clips (recorded at training time)."""

    count: int
    mean: float
    std: float
    low: float  # 0.5th percentile
    high: float  # 99.5th percentile

    @classmethod
    def of(cls, norms: np.ndarray) -> NormStats:
        return cls(int(len(norms)), float(norms.mean()), float(norms.std()),
                   float(np.percentile(norms, 0.5)), float(np.percentile(norms, 99.5)))


def check_embeddings(table: pa.Table, *, dim: int, reference: NormStats | None,
                     max_outside: float = 0.05, tolerance: float = 0.25) -> tuple[bool, dict]:
    """Dimension, finiteness, and norm drift against the encoder's reference range.

    Fails when any vector has the wrong dimension or a NaN/inf, or when more than ``max_outside`` of
    the norms fall outside the reference range widened by ``tolerance`` of its width on each side.
    """
    if table.num_rows == 0:
        return True, {"rows": 0}
    matrix = embedding_matrix(table)
    norms = np.linalg.norm(matrix, axis=1)
    finite = np.isfinite(matrix).all(axis=1)
    meta: dict = {"rows": int(table.num_rows), "dim": int(matrix.shape[1]), "non_finite_rows": int((~finite).sum()),
                  "norm_mean": float(norms[finite].mean()) if finite.any() else math.nan}
    ok = matrix.shape[1] == dim and bool(finite.all())
    if reference is not None and finite.any():
        width = max(reference.high - reference.low, 1e-6)
        lo, hi = reference.low - tolerance * width, reference.high + tolerance * width
        outside = float(((norms < lo) | (norms > hi)).mean())
        meta.update({"norm_range_expected": [round(lo, 4), round(hi, 4)], "fraction_outside": round(outside, 4)})
        ok = ok and outside <= max_outside
    return ok, meta


def nearest_goal_clips(queries: np.ndarray, table: pa.Table, k: int = 5) -> list[list[dict]]:
    """For each query embedding ``[B, D]``: the ``k`` goal clips of ``table`` with the highest cosine,
    as ``{"key", "task", "source", "instruction", "cosine"}``, best first."""
    if table.num_rows == 0:
        return [[] for _ in range(len(queries))]
    matrix = embedding_matrix(table)
    q = np.asarray(queries, np.float32)
    if q.ndim != 2 or q.shape[1] != matrix.shape[1]:
        raise ValueError(f"queries must be [B, {matrix.shape[1]}], got {list(q.shape)}")
    unit = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
    cos = (q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)) @ unit.T
    columns = {c: table.column(c).to_pylist() for c in ("key", "task", "source", "instruction") if c in table.column_names}
    out = []
    for row in cos:
        best = np.argsort(-row, kind="stable")[:k]
        out.append([{**{c: values[i] for c, values in columns.items()}, "cosine": float(row[i])} for i in best])
    return out
