import copy
import json
import tarfile

import numpy as np
import pytest

from goalcraft.data.shards import (
    FRAME_FIELDS,
    ClipSample,
    ClipShardWriter,
    iter_shard,
    read_clip,
    read_index,
    sample_key,
    verify_partition,
)


def _clip(seed: int, key: str) -> ClipSample:
    # Smooth gradients with a per-clip offset: JPEG keeps them within a few levels.
    y, x = np.mgrid[0:160, 0:256]
    frames = np.stack([
        np.stack([(x + 8 * i + seed * 20) % 256, (y + seed * 30) % 256, np.full_like(x, 40 * seed % 256)], -1)
        for i in range(16)
    ]).astype(np.uint8)
    meta = {"source": "video", "source_id": f"vid{seed}", "window_start": 1.0 * seed, "window_end": 1.0 * seed + 2,
            "frame_timestamps": [seed + i / 8 for i in range(16)]}
    return ClipSample(key, frames, f"caption {seed}", meta)


def test_sample_key_has_no_dots_or_slashes():
    assert sample_key("my.video/01", 3) == "my_video_01-00003"


def test_clip_sample_rejects_wrong_shape():
    with pytest.raises(ValueError, match="expected uint8"):
        ClipSample("k", np.zeros((15, 160, 256, 3), np.uint8), "c", {})


def test_writer_rolls_shards_and_indexes_them(tmp_path):
    clips = [_clip(i, f"vid{i}-00000") for i in range(5)]
    with ClipShardWriter(tmp_path, "p0003", target_bytes=1, jpeg_quality=90) as writer:  # one clip a shard
        writer.note_source("video")
        for clip in clips:
            writer.write(clip)
        writer.note_failure("video_unreadable")
    assert sorted(p.name for p in tmp_path.glob("*.tar")) == [f"p0003-{i:05d}.tar" for i in range(5)]
    assert not list(tmp_path.glob(".*"))  # no temporary files left

    # Round trip: frames within JPEG error, caption and metadata exact, index agrees with the tar.
    for i, clip in enumerate(clips):
        shard = tmp_path / f"p0003-{i:05d}.tar"
        (sample,) = list(iter_shard(shard))
        assert sample["__key__"] == clip.key
        assert set(sample) == {"__key__", *FRAME_FIELDS, "txt", "json"}
        frames, caption, meta = read_clip(sample)
        assert frames.shape == (16, 160, 256, 3)
        assert np.abs(frames.astype(int) - clip.frames.astype(int)).mean() < 3
        assert caption == clip.caption and meta == clip.meta
        index = read_index(shard.with_suffix(".parquet")).to_pylist()
        assert [r["key"] for r in index] == [clip.key]
        assert index[0]["frame_timestamps"] == clip.meta["frame_timestamps"]
        assert index[0]["bytes"] == sum(len(v) for k, v in sample.items() if k != "__key__")
    stats = [json.loads((tmp_path / f"p0003-{i:05d}_stats.json").read_text()) for i in range(5)]
    assert [s["clips_written"] for s in stats] == [1] * 5
    assert stats[0]["videos_seen"] == 1 and sum(s["videos_seen"] for s in stats) == 1
    assert stats[-1]["failures"] == {"video_unreadable": 1}
    assert verify_partition(tmp_path) == (5, 5, [])


def test_same_samples_give_identical_bytes(tmp_path):
    for run in ("a", "b"):
        with ClipShardWriter(tmp_path / run, "p0000", target_bytes=10**9) as writer:
            for i in range(3):
                writer.write(_clip(i, f"vid{i}-00000"))
    assert (tmp_path / "a" / "p0000-00000.tar").read_bytes() == (tmp_path / "b" / "p0000-00000.tar").read_bytes()


def test_abort_leaves_no_partial_shard(tmp_path):
    with pytest.raises(RuntimeError):
        with ClipShardWriter(tmp_path, "p0000", target_bytes=10**9) as writer:
            writer.write(_clip(0, "vid0-00000"))
            raise RuntimeError("killed mid-shard")
    assert list(tmp_path.iterdir()) == []


def test_verify_partition_finds_tampering(tmp_path):
    with ClipShardWriter(tmp_path, "p0000", target_bytes=10**9) as writer:
        for i in range(2):
            writer.write(_clip(i, f"vid{i}-00000"))
    shard = tmp_path / "p0000-00000.tar"
    # Rewrite the tar without the second clip's frame 7 and with an unindexed extra sample.
    rebuilt = tmp_path / "rebuilt.tar"
    with tarfile.open(shard) as src, tarfile.open(rebuilt, "w") as dst:
        for member in src.getmembers():
            if member.name == "vid1-00000.f07.jpg":
                continue
            dst.addfile(member, src.extractfile(member))
        extra = copy.copy(src.getmember("vid0-00000.txt"))
        extra.name = "ghost-00000.txt"
        dst.addfile(extra, src.extractfile("vid0-00000.txt"))
    rebuilt.replace(shard)
    shards, clips, problems = verify_partition(tmp_path)
    assert (shards, clips) == (1, 2)
    text = "\n".join(problems)
    assert "vid1-00000" in text and "f07.jpg" in text
    assert "ghost-00000" in text
    # A tar with no index is reported too.
    (tmp_path / "p0000-00001.tar").write_bytes(b"")
    assert any("without an index" in p for p in verify_partition(tmp_path)[2])


def test_writer_extends_index_with_metadata_columns(tmp_path):
    import pyarrow as pa

    from goalcraft.data.shards import INDEX_SCHEMA

    schema = INDEX_SCHEMA.append(pa.field("task", pa.string())).append(pa.field("success_frame", pa.int64()))
    clips = [_clip(i, f"vid{i}-00000") for i in range(2)]
    for i, clip in enumerate(clips):
        clip.meta.update(task=f"task{i}", success_frame=40 + i)
    with ClipShardWriter(tmp_path, "p0001", target_bytes=10**9, index_schema=schema) as writer:
        for clip in clips:
            writer.write(clip)
    table = read_index(tmp_path / "p0001-00000.parquet")
    assert table.schema.equals(schema)
    assert table.column("task").to_pylist() == ["task0", "task1"]
    assert table.column("success_frame").to_pylist() == [40, 41]
    assert table.column("caption").to_pylist() == ["caption 0", "caption 1"]


def test_writer_refuses_index_schema_without_clip_columns(tmp_path):
    import pyarrow as pa

    with pytest.raises(ValueError, match="window_start"):
        ClipShardWriter(tmp_path, "p0001", target_bytes=1, index_schema=pa.schema([("key", pa.string())]))
