"""write_video: frame-exact, fps-exact, atomic, reproducible."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import decord
import numpy as np
import pytest

from goalcraft.data.video_writer import VideoWriteInfo, write_video


def _frames(n: int, height: int = 72, width: int = 128) -> np.ndarray:
    """Smooth frames (compress well, decode close to the input) whose brightness encodes the index."""
    ys, xs = np.mgrid[0:height, 0:width]
    out = np.empty((n, height, width, 3), np.uint8)
    for i in range(n):
        out[i, ..., 0] = (xs * 255 // width).astype(np.uint8)
        out[i, ..., 1] = (ys * 255 // height).astype(np.uint8)
        out[i, ..., 2] = 20 + 200 * i // max(1, n - 1)
    return out


def _decode_pyav(path: Path) -> tuple[np.ndarray, list[Fraction], Fraction]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames, times = [], []
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            times.append(frame.pts * stream.time_base)
        return np.stack(frames), times, stream.average_rate


def test_roundtrip_frame_count_fps_and_content(tmp_path: Path) -> None:
    frames = _frames(23)
    info = write_video(tmp_path / "clip.mp4", frames, 10)
    assert info == VideoWriteInfo(path=tmp_path / "clip.mp4", frames=23, fps=Fraction(10), width=128, height=72)

    decoded, times, rate = _decode_pyav(tmp_path / "clip.mp4")
    assert decoded.shape == (23, 72, 128, 3)
    assert rate == Fraction(10)
    assert times == [Fraction(i, 10) for i in range(23)]
    # Lossy, but close: and the per-frame brightness ramp survives, in order.
    assert np.abs(decoded.astype(int) - frames.astype(int)).mean() < 3
    blue = decoded[..., 2].mean(axis=(1, 2))
    assert np.all(np.diff(blue) > 0)

    reader = decord.VideoReader(str(tmp_path / "clip.mp4"))
    assert len(reader) == 23
    assert reader.get_avg_fps() == pytest.approx(10.0)
    batch = reader.get_batch(list(range(23))).asnumpy()
    assert batch.shape == (23, 72, 128, 3)
    assert np.abs(batch.astype(int) - decoded.astype(int)).mean() < 1


def test_ntsc_rate_is_exact_and_generators_work(tmp_path: Path) -> None:
    info = write_video(tmp_path / "ntsc.mp4", (f for f in _frames(7)), Fraction(30000, 1001))
    assert info.frames == 7 and info.fps == Fraction(30000, 1001)
    _, times, rate = _decode_pyav(tmp_path / "ntsc.mp4")
    assert rate == Fraction(30000, 1001)
    assert times == [Fraction(1001 * i, 30000) for i in range(7)]
    # A float that stands for an NTSC rate maps to the same fraction.
    assert write_video(tmp_path / "ntsc2.mp4", _frames(2), 30000 / 1001).fps == Fraction(30000, 1001)


@pytest.mark.parametrize("n, width", [(5, 320), (12, 192), (12, 64), (25, 96)])
def test_reproducible_bytes(tmp_path: Path, n: int, width: int) -> None:
    # Short smooth clips like these made libx264's default (mbtree) output differ between runs.
    frames = _frames(n, 64, width)
    outputs = set()
    for k in range(6):
        write_video(tmp_path / f"{k}.mp4", frames, 10)
        outputs.add((tmp_path / f"{k}.mp4").read_bytes())
    assert len(outputs) == 1


@pytest.mark.parametrize("shape", [(5, 71, 128, 3), (5, 72, 127, 3)])
def test_odd_dimensions_rejected(tmp_path: Path, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="even"):
        write_video(tmp_path / "odd.mp4", np.zeros(shape, np.uint8), 10)
    assert list(tmp_path.iterdir()) == []


def test_bad_input_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no frames"):
        write_video(tmp_path / "empty.mp4", [], 10)
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "float.mp4", np.zeros((2, 8, 8, 3), np.float32), 10)
    with pytest.raises(ValueError, match="positive"):
        write_video(tmp_path / "zero.mp4", _frames(2), 0)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "clip.mp4"
    write_video(target, _frames(4), 10)
    before = target.read_bytes()

    def broken():
        yield from _frames(3)
        yield np.zeros((32, 32, 3), np.uint8)  # shape changes mid-stream

    with pytest.raises(ValueError, match="differs"):
        write_video(target, broken(), 10)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]  # no temp file left

    write_video(target, _frames(6), 10)  # a successful write replaces it
    assert _decode_pyav(target)[0].shape[0] == 6
