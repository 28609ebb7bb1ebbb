"""Embedding tables and their checks, with a stand-in encoder whose output is known exactly."""

import numpy as np
import pyarrow as pa
import torch

from goalcraft.data.embeddings import NormStats, check_embeddings, embed_shards, embedding_matrix
from goalcraft.data.shards import ClipSample, ClipShardWriter


class MeanColourEncoder:
    """Embeds a clip as its mean RGB per frame, tiled to 48-d: an answer computable by hand."""

    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        return frames.float().mean(dim=(2, 3))  # [B, 16, 3]

    def goal_embedding_of_frame_features(self, frame_features: torch.Tensor) -> torch.Tensor:
        return frame_features.reshape(len(frame_features), -1)  # [B, 48]


def _shards(tmp_path, n=5):
    with ClipShardWriter(tmp_path, "p0000", target_bytes=40_000) as writer:
        for i in range(n):
            frames = np.full((16, 160, 256, 3), 20 * i + 10, np.uint8)
            meta = {"source": "video", "source_id": f"v{i}", "window_start": 0.0, "window_end": 2.0,
                    "frame_timestamps": [k / 8 for k in range(16)]}
            writer.write(ClipSample(f"v{i}-00000", frames, f"caption {i}", meta))
    return sorted(tmp_path.glob("*.tar"))


def test_embed_shards_joins_index_and_keeps_raw_scale(tmp_path):
    shards = _shards(tmp_path)
    assert len(shards) >= 2
    seen = []
    table = embed_shards(MeanColourEncoder(), shards, batch_size=2, progress=seen.append)
    assert seen == [2, 4, 5]
    assert table.column("key").to_pylist() == [f"v{i}-00000" for i in range(5)]
    assert table.column("caption").to_pylist() == [f"caption {i}" for i in range(5)]
    matrix = embedding_matrix(table)
    assert matrix.shape == (5, 48) and matrix.dtype == np.float32
    # Flat colour survives JPEG almost exactly; the norm is the raw (unnormalised) vector length.
    expected = np.array([20 * i + 10 for i in range(5)], np.float32)
    np.testing.assert_allclose(matrix[:, 0], expected, atol=1.0)
    np.testing.assert_allclose(table.column("norm").to_numpy(), np.linalg.norm(matrix, axis=1), rtol=1e-6)


def test_frame_features_column_holds_each_clips_per_frame_features(tmp_path):
    import duckdb

    from goalcraft.data.embeddings import frame_feature_tensor

    shards = _shards(tmp_path)
    table = embed_shards(MeanColourEncoder(), shards, batch_size=3, frame_features=True)
    feats = frame_feature_tensor(table)
    assert feats.shape == (5, 16, 3)
    np.testing.assert_allclose(feats[:, 5, 1], [20 * i + 10 for i in range(5)], atol=1.0)
    np.testing.assert_array_equal(feats.reshape(5, -1), embedding_matrix(table))  # pooled = flattened here
    con = duckdb.connect()
    con.register("goal_table", table)
    row = con.execute("SELECT frame_features[16][3] AS v FROM goal_table WHERE key = 'v2-00000'").fetchone()
    assert abs(row[0] - 50) <= 1.0
    assert "frame_features" not in embed_shards(MeanColourEncoder(), shards).column_names


def _table(matrix):
    flat = pa.array(matrix.astype(np.float32).reshape(-1))
    return pa.table({"key": [str(i) for i in range(len(matrix))],
                     "embedding": pa.FixedSizeListArray.from_arrays(flat, matrix.shape[1])})


def test_check_flags_dimension_nan_and_norm_drift():
    rng = np.random.default_rng(0)
    ref_matrix = rng.normal(size=(400, 512)) * 3  # 512-d norms concentrate near 3 * sqrt(512)
    reference = NormStats.of(np.linalg.norm(ref_matrix, axis=1))
    ok, meta = check_embeddings(_table(rng.normal(size=(100, 512)) * 3), dim=512, reference=reference)
    assert ok and meta["fraction_outside"] <= 0.05
    assert not check_embeddings(_table(rng.normal(size=(10, 8))), dim=16, reference=None)[0]
    bad = rng.normal(size=(10, 8))
    bad[3, 2] = np.nan
    ok, meta = check_embeddings(_table(bad), dim=8, reference=None)
    assert not ok and meta["non_finite_rows"] == 1
    # Unit-normalised vectors (a common mistake: STEVE-1 wants raw scale) are far outside the range.
    unit = ref_matrix[:50] / np.linalg.norm(ref_matrix[:50], axis=1, keepdims=True)
    ok, meta = check_embeddings(_table(unit), dim=512, reference=reference)
    assert not ok and meta["fraction_outside"] == 1.0
