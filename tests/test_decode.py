"""goalcraft.data.decode on real MineStudio clips, synthetic numbered videos and broken inputs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from goalcraft.data.decode import (
    DecodedFrames,
    DecordDecoder,
    PyAVDecoder,
    VideoDecoder,
    VideoInfo,
    decord_available,
    get_decoder,
    probe,
)
from goalcraft.data.quarantine import InputError

FIXTURES = Path(__file__).parent / "fixtures" / "minestudio"
PILLAR = FIXTURES / "build_pillar_0.mp4"
SPIDER = FIXTURES / "combat_spider_7.mp4"

# Measured on the fixtures: decord and PyAV frames differ by 0.15 grey levels on average (at most
# 0.24 for any frame, both use swscale bicubic); frames one index apart differ by ~10.
MAX_BACKEND_MEAN_ABS_DIFF = 1.0

needs_decord = pytest.mark.skipif(not decord_available(), reason="decord (decord2) not importable")
DECODER_NAMES = [pytest.param("decord", marks=needs_decord), "pyav"]


@pytest.fixture(params=DECODER_NAMES)
def decoder(request: pytest.FixtureRequest) -> VideoDecoder:
    return get_decoder(request.param)


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def reason_of(excinfo: pytest.ExceptionInfo[InputError]) -> str:
    return excinfo.value.reason


# ------------------------------------------------------------------------------------------------
# Synthetic numbered videos (Crafter-like: 256x160 at 10 fps, no crafter needed)
# ------------------------------------------------------------------------------------------------

N_SYNTH = 40
BITS = 6  # frame number k is drawn as 6 vertical 32-px stripes, stripe j white iff bit j of k


def numbered_frame(k: int) -> np.ndarray:
    img = np.zeros((160, 256, 3), np.uint8)
    for j in range(BITS):
        if (k >> j) & 1:
            img[:, j * 32 : (j + 1) * 32] = 255
    img[:, BITS * 32 :, 0] = (k * 6) % 256  # and a red ramp on the right
    return img


def frame_number(img: np.ndarray) -> int:
    """Read back the number drawn by ``numbered_frame`` from a frame of any size."""
    w = img.shape[1]
    k = 0
    for j in range(BITS):
        x0, x1 = int((j + 0.25) * w / 8), int((j + 0.75) * w / 8)
        if img[:, x0:x1, 1].mean() > 128:
            k |= 1 << j
    return k


def write_numbered(path: Path, options: dict[str, str]) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 256, 160, "yuv420p"
        stream.options = options
        for k in range(N_SYNTH):
            frame = av.VideoFrame.from_ndarray(numbered_frame(k), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module", params=["mp4", "mkv"])
def numbered_video(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    # short GOPs with B-frames, so reads exercise keyframe seeks and frame reordering
    out = tmp_path_factory.mktemp("synth") / f"numbered.{request.param}"
    return write_numbered(out, {"g": "8", "bf": "2", "crf": "18", "preset": "veryfast"})


def test_synthetic_frame_k_is_frame_k(decoder: VideoDecoder, numbered_video: Path) -> None:
    with decoder.open(numbered_video) as h:
        assert h.info == VideoInfo(num_frames=N_SYNTH, fps=10.0, width=256, height=160)
        got = h.read(range(N_SYNTH))
        assert got.frames.shape == (N_SYNTH, 160, 256, 3)
        assert [frame_number(f) for f in got.frames] == list(range(N_SYNTH))
        for k in (0, 13, 39):
            assert mean_abs_diff(got.frames[k], numbered_frame(k)) < 3
        np.testing.assert_allclose(got.timestamps, np.arange(N_SYNTH) / 10, atol=1e-6)


def test_synthetic_many_reads_on_one_handle(decoder: VideoDecoder, numbered_video: Path) -> None:
    requests = [[0, 1, 2], [5, 9], [9, 17, 33], [34, 39], [3, 4], [20, 20, 8], [], [38]]
    with decoder.open(numbered_video) as h:
        for req in requests:
            got = h.read(req)
            assert got.frames.shape == (len(req), 160, 256, 3)
            assert [frame_number(f) for f in got.frames] == req
            np.testing.assert_allclose(got.timestamps, np.asarray(req) / 10, atol=1e-6)


def test_synthetic_other_output_size(decoder: VideoDecoder, numbered_video: Path) -> None:
    with decoder.open(numbered_video, height=80, width=96) as h:
        got = h.read([7, 30])
    assert got.frames.shape == (2, 80, 96, 3) and got.frames.dtype == np.uint8
    assert [frame_number(f) for f in got.frames] == [7, 30]


# ------------------------------------------------------------------------------------------------
# The MineStudio clips: h264, 640x360, 30 fps, 600 frames
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("clip", [PILLAR, SPIDER], ids=["pillar", "spider"])
def test_minestudio_info_and_read(decoder: VideoDecoder, clip: Path) -> None:
    with decoder.open(clip) as h:
        assert h.info == VideoInfo(num_frames=600, fps=30.0, width=640, height=360)
        assert h.info.duration == pytest.approx(20.0)
        got = h.read([0, 37, 599])
    assert isinstance(got, DecodedFrames)
    assert got.frames.shape == (3, 160, 256, 3) and got.frames.dtype == np.uint8
    assert got.timestamps.dtype == np.float64
    np.testing.assert_allclose(got.timestamps, np.array([0, 37, 599]) / 30, atol=1e-3)
    a, b, c = got.frames
    assert min(mean_abs_diff(a, b), mean_abs_diff(b, c), mean_abs_diff(a, c)) > 3
    assert 20 < got.frames.mean() < 235  # real picture content, not a blank frame


@needs_decord
@pytest.mark.parametrize("clip", [PILLAR, SPIDER], ids=["pillar", "spider"])
def test_decord_and_pyav_agree(clip: Path) -> None:
    idx = [0, 1, 37, 52, 53, 200, 451, 598, 599]
    with DecordDecoder().open(clip) as hd, PyAVDecoder().open(clip) as hp:
        assert hd.info == hp.info
        d, p = hd.read(idx), hp.read(idx)
    assert np.array_equal(d.timestamps, p.timestamps)
    for i, fd, fp in zip(idx, d.frames, p.frames):
        assert mean_abs_diff(fd, fp) < MAX_BACKEND_MEAN_ABS_DIFF, f"frame {i}"
    # the bound separates neighbours: frame 0 against frame 1 is far apart
    assert mean_abs_diff(d.frames[0], p.frames[1]) > 5 * MAX_BACKEND_MEAN_ABS_DIFF


def test_chunked_reads_match_one_read(decoder: VideoDecoder) -> None:
    """Forward reads, keyframe skips and backward seeks give exactly the frames of one big read."""
    chunks = [[3, 40], [41, 60], [150, 151], [599], [100, 120], [121, 300, 301], [0]]
    flat = sorted({i for c in chunks for i in c})
    with decoder.open(PILLAR) as h:
        ref = dict(zip(flat, h.read(flat).frames))
    with decoder.open(PILLAR) as h:
        for chunk in chunks:
            got = h.read(chunk)
            for i, frame in zip(chunk, got.frames):
                assert mean_abs_diff(frame, ref[i]) < MAX_BACKEND_MEAN_ABS_DIFF, f"frame {i}"
                if decoder.name == "pyav":
                    assert np.array_equal(frame, ref[i]), f"frame {i}"


def test_read_keeps_request_order_and_duplicates(decoder: VideoDecoder) -> None:
    with decoder.open(PILLAR) as h:
        got = h.read([90, 10, 90])
        ref = h.read([10, 90])
    assert np.array_equal(got.frames[0], got.frames[2])
    assert np.array_equal(got.frames[1], ref.frames[0])
    np.testing.assert_allclose(got.timestamps, [3.0, 1 / 3, 3.0], atol=1e-9)


def test_probe(decoder: VideoDecoder) -> None:
    assert probe(SPIDER, decoder) == VideoInfo(600, 30.0, 640, 360)
    assert probe(str(SPIDER), "pyav") == VideoInfo(600, 30.0, 640, 360)


def test_bad_index_arguments(decoder: VideoDecoder) -> None:
    with decoder.open(PILLAR) as h:
        empty = h.read([])
        assert empty.frames.shape == (0, 160, 256, 3) and empty.timestamps.shape == (0,)
        with pytest.raises(InputError) as e:
            h.read([10, 600])
        assert reason_of(e) == "insufficient_frames"
        with pytest.raises(ValueError):
            h.read([-1])
        with pytest.raises(TypeError):
            h.read([1.5])
        assert h.read([5]).frames.shape == (1, 160, 256, 3)  # still usable
    with pytest.raises(ValueError):
        h.read([0])  # closed


# ------------------------------------------------------------------------------------------------
# Bad inputs: each with its reason code
# ------------------------------------------------------------------------------------------------


def open_reason(decoder: VideoDecoder, path: Path) -> str:
    with pytest.raises(InputError) as e:
        decoder.open(path)
    return reason_of(e)


def test_missing_file(decoder: VideoDecoder, tmp_path: Path) -> None:
    assert open_reason(decoder, tmp_path / "nope.mp4") == "video_missing"


def test_zero_byte_file(decoder: VideoDecoder, tmp_path: Path) -> None:
    (tmp_path / "empty.mp4").write_bytes(b"")
    assert open_reason(decoder, tmp_path / "empty.mp4") == "video_empty"


def test_random_bytes(decoder: VideoDecoder, tmp_path: Path) -> None:
    path = tmp_path / "random.mp4"
    path.write_bytes(np.random.default_rng(0).bytes(64_000))
    assert open_reason(decoder, path) == "video_unreadable"


@pytest.mark.parametrize("name", ["notes.txt", "notes.mp4"])
def test_text_file(decoder: VideoDecoder, tmp_path: Path, name: str) -> None:
    # FFmpeg opens a .txt file as an ANSI-art "video"; it must still be rejected
    path = tmp_path / name
    path.write_text("build a pillar of dirt, then jump on it\n" * 200)
    assert open_reason(decoder, path) == "video_unreadable"


def test_directory(decoder: VideoDecoder, tmp_path: Path) -> None:
    assert open_reason(decoder, tmp_path) == "video_unreadable"


def test_audio_only_file(decoder: VideoDecoder, tmp_path: Path) -> None:
    path = tmp_path / "audio.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 16000), np.float32), format="fltp", layout="mono"
        )
        frame.sample_rate = 16000
        for packet in list(stream.encode(frame)) + list(stream.encode()):
            container.mux(packet)
    assert open_reason(decoder, path) == "video_unreadable"


def test_truncated_fixture_is_unreadable(decoder: VideoDecoder, tmp_path: Path) -> None:
    # The MineStudio files keep their index (moov) at the end: 30% of the file has no index at all.
    data = PILLAR.read_bytes()
    path = tmp_path / "truncated.mp4"
    path.write_bytes(data[: int(len(data) * 0.3)])
    assert open_reason(decoder, path) == "video_unreadable"


@pytest.fixture(scope="module")
def truncated_faststart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pillar clip remuxed with its index first, then cut to 30%: the header still announces
    600 frames, only the first ~145 are in the file (the last of them partial)."""
    folder = tmp_path_factory.mktemp("trunc")
    full = folder / "faststart.mp4"
    faststart = {"movflags": "faststart"}
    with av.open(str(PILLAR)) as src, av.open(str(full), "w", options=faststart) as dst:
        s_in = src.streams.video[0]
        s_out = dst.add_stream_from_template(s_in)
        for packet in src.demux(s_in):
            if packet.dts is None:
                continue
            packet.stream = s_out
            dst.mux(packet)
    with av.open(str(full)) as c:
        assert c.streams.video[0].frames == 600
    data = full.read_bytes()
    cut = folder / "faststart_30pct.mp4"
    cut.write_bytes(data[: int(len(data) * 0.3)])
    return cut


def test_truncated_faststart_reports_insufficient_frames(
    decoder: VideoDecoder, truncated_faststart: Path
) -> None:
    with decoder.open(truncated_faststart) as h:
        n = h.info.num_frames
        assert 100 < n < 200  # only what the file holds, not the 600 its header announces
        for late in ([n], [n - 1, 599], [300]):
            with pytest.raises(InputError) as e:
                h.read(late)
            assert reason_of(e) == "insufficient_frames"
        got = h.read([0, n - 2, n - 1])  # up to the truncation point everything decodes
    with PyAVDecoder().open(PILLAR) as intact:
        ref = intact.read([0, n - 2, n - 1])
    np.testing.assert_allclose(got.timestamps, ref.timestamps)
    for a, b in zip(got.frames, ref.frames):  # the real frames, not repeats or garbage
        assert mean_abs_diff(a, b) < MAX_BACKEND_MEAN_ABS_DIFF
    assert mean_abs_diff(got.frames[1], got.frames[2]) > 0.5


def corrupted_copy(folder: Path, name: str, start: float, stop: float) -> Path:
    """The pillar clip with bytes [start, stop) of the file (fractions) overwritten with noise."""
    data = bytearray(PILLAR.read_bytes())
    a, b = int(len(data) * start), int(len(data) * stop)
    data[a:b] = np.random.default_rng(1).bytes(b - a)
    out = folder / name
    out.write_bytes(bytes(data))
    return out


def test_damage_mid_file(decoder: VideoDecoder, tmp_path: Path) -> None:
    """Noise over 45-55% of the file: the frames it hits raise, never come back as repeats; the
    handle keeps serving the intact frames before and after."""
    path = corrupted_copy(tmp_path, "damaged.mp4", 0.45, 0.55)
    with PyAVDecoder().open(PILLAR) as intact:
        ref = intact.read([0, 100, 200, 400, 599]).frames
    with decoder.open(path) as h:
        assert h.info.num_frames == 600  # the index (moov) is intact
        before = h.read([0, 100, 200]).frames
        with pytest.raises(InputError) as e:
            h.read([220, 240, 260])
        assert reason_of(e) == "video_unreadable"
        after = h.read([400, 599]).frames
    for a, b in zip(np.concatenate([before, after]), ref):
        assert mean_abs_diff(a, b) < MAX_BACKEND_MEAN_ABS_DIFF


def test_no_frame_decodes(decoder: VideoDecoder, tmp_path: Path) -> None:
    """A valid index over noise: unreadable, at open (decord) or at the first read (PyAV)."""
    path = corrupted_copy(tmp_path, "noise.mp4", 48 / PILLAR.stat().st_size, 0.99)
    with pytest.raises(InputError) as e:
        with decoder.open(path) as h:
            h.read([0])
    assert reason_of(e) == "video_unreadable"


@needs_decord
def test_decord_handle_falls_back_to_pyav(monkeypatch: pytest.MonkeyPatch) -> None:
    from goalcraft.data import decode

    with PyAVDecoder().open(PILLAR) as hp:
        ref = hp.read([0, 37, 599])

    def refuse(self: object) -> None:
        raise InputError("video_unreadable", "simulated: decord cannot open this codec")

    with monkeypatch.context() as m:  # decord cannot open what PyAV indexed
        m.setattr(decode._DecordHandle, "_new_reader", refuse)
        with DecordDecoder().open(PILLAR) as h:
            got = h.read([0, 37, 599])
    assert np.array_equal(got.frames, ref.frames)
    with monkeypatch.context() as m:  # decord numbers frames differently from the index
        m.setattr(decode._DecordHandle, "_numbering_agrees", lambda self, n: False)
        with DecordDecoder().open(PILLAR) as h:
            assert h.info.num_frames == 600
            got = h.read([0, 37, 599])
    assert np.array_equal(got.frames, ref.frames)
    np.testing.assert_array_equal(got.timestamps, ref.timestamps)


# ------------------------------------------------------------------------------------------------
# Choosing a decoder
# ------------------------------------------------------------------------------------------------


@needs_decord
def test_auto_picks_decord() -> None:
    assert isinstance(get_decoder(), DecordDecoder)
    assert get_decoder("auto").name == "decord"


def test_auto_falls_back_to_pyav(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "decord", None)  # makes `import decord` fail
    assert not decord_available()
    assert get_decoder("auto").name == "pyav"
    with pytest.raises(ImportError):
        get_decoder("decord")


def test_explicit_and_unknown_names() -> None:
    assert get_decoder("pyav").name == "pyav"
    assert isinstance(get_decoder("pyav"), PyAVDecoder)
    with pytest.raises(ValueError, match="auto.*decord.*pyav"):
        get_decoder("opencv")


def test_decord_is_imported_lazily() -> None:
    code = (
        "import sys, goalcraft.data.decode as d; d.get_decoder('pyav');"
        " print('decord' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
