"""Frame resizes (goalcraft.data.resize): OpenCV INTER_LINEAR re-done in numpy against hand-computed
values and against cv2 itself (when importable), and the decoders' ``resize`` on real Minecraft video
and PNG frame folders."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from goalcraft.config import ClipsSettings, config_from_dict
from goalcraft.data.decode import decord_available, get_decoder
from goalcraft.data.resize import RESIZE_METHODS, resize_bilinear_cv2, resize_frame

PILLAR = Path(__file__).parent / "fixtures" / "minestudio" / "build_pillar_0.mp4"
needs_decord = pytest.mark.skipif(not decord_available(), reason="decord (decord2) not importable")


def test_downscale_by_hand():
    # 3x3 → 2x2: source coordinates 0.25 and 1.75 (half-pixel centres), weights 1536/512 of 2048.
    # Row 0 at x=0.25: 0·1536 + 30·512 = 15360; row 1: 90·1536 + 120·512 = 199680;
    # ((15360 >> 4)·1536 >> 16) + ((199680 >> 4)·512 >> 16) = 22 + 97; (119 + 2) >> 2 = 30.
    image = np.array([[0, 30, 60], [90, 120, 150], [180, 210, 240]], np.uint8)
    assert resize_bilinear_cv2(image, 2, 2).tolist() == [[30, 75], [165, 210]]
    # Channels are independent: the same image in each channel of an RGB frame.
    rgb = np.stack([image, image // 2, 255 - image], axis=-1)
    out = resize_bilinear_cv2(rgb, 2, 2)
    assert out[..., 0].tolist() == [[30, 75], [165, 210]] and out[..., 2].tolist() == [[225, 180], [90, 45]]


def test_rounding_and_edges_by_hand():
    # Halving two pixels: weights 1024/1024; (0, 5): 5·1024 = 5120 → (320·2048 >> 16) = 10 → (10 + 2) >> 2 = 3
    # (OpenCV rounds 2.5 up here, not to even).
    assert resize_bilinear_cv2(np.array([[0, 5]], np.uint8), 1, 1).tolist() == [[3]]
    assert resize_bilinear_cv2(np.array([[0, 1]], np.uint8), 1, 1).tolist() == [[1]]
    # Upscaling 2 → 4 columns: source x = -0.25, 0.25, 0.75, 1.25; outside the image the edge pixel is
    # taken whole.
    assert resize_bilinear_cv2(np.array([[0, 100]], np.uint8), 1, 4).tolist() == [[0, 25, 75, 100]]
    # Same size: a copy.
    image = np.arange(12, dtype=np.uint8).reshape(3, 4)
    out = resize_bilinear_cv2(image, 3, 4)
    assert np.array_equal(out, image) and out is not image


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="uint8"):
        resize_bilinear_cv2(np.zeros((4, 4), np.float32), 2, 2)
    with pytest.raises(ValueError, match="positive"):
        resize_bilinear_cv2(np.zeros((4, 4), np.uint8), 0, 2)
    with pytest.raises(ValueError, match="unknown resize"):
        resize_frame(np.zeros((4, 4, 3), np.uint8), 2, 2, "nearest")


SIZES = [(360, 640, 160, 256), (720, 1280, 160, 256), (320, 512, 160, 256), (100, 100, 160, 256),
         (37, 53, 160, 256), (360, 640, 128, 128), (360, 640, 160, 251), (50, 50, 31, 7)]


@pytest.mark.parametrize("size", SIZES, ids=lambda s: "x".join(map(str, s)))
def test_bit_exact_against_opencv(size):
    cv2 = pytest.importorskip("cv2")
    H, W, h, w = size
    image = np.random.default_rng(H * W + w).integers(0, 256, (H, W, 3), dtype=np.uint8)
    expected = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(resize_bilinear_cv2(image, h, w), expected)


def test_bit_exact_against_opencv_on_real_minecraft_frames():
    cv2 = pytest.importorskip("cv2")
    with av.open(str(PILLAR)) as container:
        frames = [f.to_ndarray(format="rgb24") for _, f in zip(range(3), container.decode(video=0))]
    for frame in frames:  # 640x360 like MineRL's pov
        assert np.array_equal(resize_bilinear_cv2(frame, 160, 256),
                              cv2.resize(frame, (256, 160), interpolation=cv2.INTER_LINEAR))


def test_pil_lanczos_is_pils():
    frame = np.random.default_rng(0).integers(0, 256, (36, 64, 3), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(frame).resize((32, 18), Image.Resampling.LANCZOS))
    assert np.array_equal(resize_frame(frame, 18, 32, "pil-lanczos"), expected)


def _native_frames(indices):
    with av.open(str(PILLAR)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return [frames[i] for i in indices]


@pytest.mark.parametrize("name", [pytest.param("decord", marks=needs_decord), "pyav"])
def test_decoders_resize_the_frame_decoded_at_its_own_size(name):
    indices = [0, 45, 7]
    native = _native_frames(indices)
    with get_decoder(name, resize="steve1-bilinear").open(PILLAR) as handle:
        got = handle.read(indices).frames
    assert got.shape == (3, 160, 256, 3)
    for frame, source in zip(got, native):
        expected = resize_bilinear_cv2(source, 160, 256)
        # PyAV: the same rgb24 conversion, so the same bytes; decord converts YUV → RGB itself.
        assert (np.array_equal(frame, expected) if name == "pyav"
                else np.abs(frame.astype(int) - expected).mean() < 1.0)
    with get_decoder(name).open(PILLAR) as handle:
        bicubic = handle.read(indices).frames
    assert 0.3 < np.abs(bicubic.astype(int) - got.astype(int)).mean() < 5  # the two resizes differ a little


def test_frame_folders_use_the_decoders_resize(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    frames = _native_frames([0, 1])
    for k, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"step_{k:04d}.png")
    for method in RESIZE_METHODS:
        got = get_decoder("pyav", resize=method).open(folder).read([1, 0]).frames
        assert np.array_equal(got[0], resize_frame(frames[1], 160, 256, method))


def test_unknown_resize_is_refused():
    with pytest.raises(ValueError, match="unknown resize"):
        get_decoder("pyav", resize="area")


def test_auto_resize_follows_the_goal_space(tmp_path):
    assert config_from_dict({}, tmp_path).clips.resize == "ffmpeg-bicubic"
    real = {"goal_space": {"mineclip_checkpoint": "weights/attn.pth"}}
    assert config_from_dict(real, tmp_path).clips.resize == "steve1-bilinear"
    kept = config_from_dict({**real, "clips": {"resize": "ffmpeg-bicubic"}}, tmp_path)
    assert kept.clips.resize == "ffmpeg-bicubic"
    assert ClipsSettings().resize_method == "ffmpeg-bicubic"  # "auto" outside a whole settings file
