"""PNG frame folders (``step_NNNN.png``) as a video source behind the decoder seam: real PNG files
written with PIL, read through both decoders like a video."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from goalcraft.data.decode import VideoDecoder, decord_available, get_decoder, probe
from goalcraft.data.frame_folders import frame_files
from goalcraft.data.quarantine import InputError

needs_decord = pytest.mark.skipif(not decord_available(), reason="decord (decord2) not importable")


@pytest.fixture(params=[pytest.param("decord", marks=needs_decord), "pyav"])
def decoder(request) -> VideoDecoder:
    return get_decoder(request.param)


def frame(k: int, height: int = 360, width: int = 640) -> np.ndarray:
    """Frame ``k``: left half a colour that encodes k, right half blue."""
    img = np.zeros((height, width, 3), np.uint8)
    img[:, : width // 2] = (10 * k, 200 - 5 * k, 7)
    img[:, width // 2 :] = (0, 0, 255)
    return img


def write_frames(folder: Path, n: int, *, digits: int = 4, mode: str = "RGB") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        Image.fromarray(frame(k)).convert(mode).save(folder / f"step_{k:0{digits}d}.png")
    return folder


def test_a_frame_folder_reads_like_a_video(decoder, tmp_path):
    folder = write_frames(tmp_path / "frames", 12)
    with decoder.open(folder, height=160, width=256) as handle:
        assert (handle.info.num_frames, handle.info.fps, handle.info.width, handle.info.height) == (12, 20.0, 640, 360)
        assert handle.info.duration == pytest.approx(0.6)
        got = handle.read([11, 0, 11, 5])
    assert got.frames.shape == (4, 160, 256, 3) and got.frames.dtype == np.uint8
    assert got.timestamps.tolist() == [11 / 20, 0.0, 11 / 20, 5 / 20]
    # a known pixel after the resize: the middle of each half keeps its flat colour
    for row, k in zip(got.frames, [11, 0, 11, 5]):
        assert row[80, 64].tolist() == [10 * k, 200 - 5 * k, 7]
        assert row[80, 192].tolist() == [0, 0, 255]
    assert np.array_equal(got.frames[0], got.frames[2])


def test_frame_rate_comes_from_the_setting_and_numbers_sort_numerically(tmp_path):
    folder = write_frames(tmp_path / "frames", 12, digits=1)  # step_0 ... step_11: "step_10" < "step_2" as text
    handle = get_decoder("pyav", frames_fps=10).open(folder, height=36, width=64)
    assert handle.info.fps == 10.0 and [p.name for p in frame_files(folder)][9:] == ["step_9.png", "step_10.png",
                                                                                     "step_11.png"]
    got = handle.read([10, 2])
    assert [int(f[18, 16, 0]) for f in got.frames] == [100, 20] and got.timestamps.tolist() == [1.0, 0.2]
    assert probe(folder, "pyav").num_frames == 12


def test_grey_and_rgba_frames_come_out_rgb(tmp_path):
    for mode in ("RGBA", "L"):
        folder = write_frames(tmp_path / mode, 2, mode=mode)
        got = get_decoder("pyav").open(folder).read([1])
        assert got.frames.shape == (1, 160, 256, 3)
    assert got.frames[0, 80, 64].tolist() == [int(Image.fromarray(frame(1)).convert("L").getpixel((100, 100)))] * 3


def _reason(decoder: VideoDecoder, folder: Path, indices=(0,)) -> InputError:
    with pytest.raises(InputError) as info:
        with decoder.open(folder) as handle:
            handle.read(list(indices))
    return info.value


def test_a_missing_frame_is_named(decoder, tmp_path):
    folder = write_frames(tmp_path / "frames", 6)
    (folder / "step_0003.png").unlink()
    error = _reason(decoder, folder)
    assert error.reason == "frame_missing" and "step_0003.png is missing" in error.detail
    (folder / "step_0000.png").unlink()  # numbering must start at 0
    assert "step_0000.png is missing" in _reason(decoder, folder).detail


def test_corrupt_or_truncated_pngs_are_unreadable_frames(decoder, tmp_path):
    folder = write_frames(tmp_path / "frames", 6)
    data = (folder / "step_0004.png").read_bytes()
    (folder / "step_0004.png").write_bytes(data[: len(data) // 2])  # truncated
    (folder / "step_0002.png").write_bytes(b"not a png at all")
    with decoder.open(folder) as handle:  # frame 0 is fine: the folder opens
        assert handle.read([0, 1]).frames.shape[0] == 2
        for index, name in ((2, "step_0002.png"), (4, "step_0004.png")):
            with pytest.raises(InputError) as info:
                handle.read([index])
            assert info.value.reason == "frame_unreadable" and name in info.value.detail
    Image.fromarray(frame(5)).save(folder / "step_0005.png", format="JPEG")  # a JPEG under a .png name
    error = _reason(decoder, folder, [5])
    assert error.reason == "frame_unreadable" and "JPEG" in error.detail
    (folder / "step_0000.png").write_bytes(b"")  # frame 0 is read at open
    assert _reason(decoder, folder).reason == "frame_unreadable"


@pytest.mark.parametrize("damage, says", [
    (lambda f: (f / "notes.txt").write_text("x"), "'notes.txt', which is not a step_NNNN.png frame"),
    (lambda f: (f / "step_1.png").write_bytes((f / "step_0001.png").read_bytes()), "are both frame 1"),
    (lambda f: (f / "step_0009.png").mkdir(), "'step_0009.png', which is not"),
    (lambda f: [p.unlink() for p in f.glob("*.png")], "holds no step_NNNN.png frame"),
])
def test_a_folder_that_is_not_a_frame_sequence_is_unreadable(decoder, tmp_path, damage, says):
    folder = write_frames(tmp_path / "frames", 3)
    damage(folder)
    (folder / ".DS_Store").write_text("hidden entries are ignored")
    error = _reason(decoder, folder)
    assert error.reason == "video_unreadable" and says in error.detail


def test_frames_past_the_last_are_insufficient(decoder, tmp_path):
    folder = write_frames(tmp_path / "frames", 3)
    assert _reason(decoder, folder, [1, 3]).reason == "insufficient_frames"
    with pytest.raises(ValueError):
        get_decoder("pyav", frames_fps=0).open(folder)
