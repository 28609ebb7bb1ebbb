"""Video decoding: frames at given indices, resized for MineCLIP, with their presentation times.

Two interchangeable back ends implement :class:`VideoDecoder`:

* :class:`DecordDecoder` (``decord2``, import name ``decord``): fast batch decoding in C++;
  imported lazily because it is missing on some machines.
* :class:`PyAVDecoder` (``av``): always available; seeks to the keyframe before the first wanted
  frame and decodes forward, remembering its position so that a series of sorted requests on one
  handle never decodes the same stretch twice.

Both resize to ``height x width`` (160x256 by default, no crop: MineCLIP frames are resized 640x360
Minecraft views) and return ``uint8`` RGB. The resize is the decoder's ``resize``
(goalcraft.data.resize, ``[clips] resize``): ``ffmpeg-bicubic``, FFmpeg's swscale bicubic scaler in the
decode itself (the default); ``steve1-bilinear`` (OpenCV ``INTER_LINEAR``, as STEVE-1 resizes) or
``pil-lanczos``, applied to the frame decoded at its own size.
Frame ``i`` is the ``i``-th frame in presentation order. Both back ends number frames and time them
from one index of the video stream's packets, built with PyAV at open (demuxing only, no decoding):
timestamps are float64 seconds from the first frame's presentation time (frame 0 is at 0.0),
computed from the integer pts (so frame k of a 30 fps mp4 is at exactly k/30) and identical between
the back ends; the frame count is the number of complete packets, so a truncated file reports the
frames it really has, not what its header announces.

Every problem with the input surfaces as :class:`~goalcraft.data.quarantine.InputError` with one of
the reasons ``video_missing``, ``video_empty``, ``video_unreadable`` or ``insufficient_frames``;
no decord or PyAV exception escapes :meth:`VideoDecoder.open` or :meth:`VideoHandle.read`.
Programming errors (negative or non-integer indices, reading a closed handle) raise
``ValueError``/``TypeError``.

A *directory* given to either back end is read as a folder of PNG frames
(goalcraft.data.frame_folders: ``step_NNNN.png``, at the decoder's ``frames_fps``), with the same
handle interface, so the clip and goal stages take frame folders wherever they take videos.

Handles are not thread-safe; open one handle per video per worker.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any, Iterator, Protocol, Sequence, runtime_checkable

import numpy as np

from goalcraft.data.quarantine import InputError
from goalcraft.data.resize import RESIZE_METHODS, resize_frame
from goalcraft.formats import MINECRAFT_FPS

__all__ = [
    "DEFAULT_HEIGHT",
    "DEFAULT_WIDTH",
    "DECODER_NAMES",
    "DecodedFrames",
    "DecordDecoder",
    "PyAVDecoder",
    "VideoDecoder",
    "VideoHandle",
    "VideoInfo",
    "decord_available",
    "get_decoder",
    "probe",
]

log = logging.getLogger(__name__)

DEFAULT_HEIGHT = 160
DEFAULT_WIDTH = 256
DECODER_NAMES = ("auto", "decord", "pyav")

# FFmpeg demuxers/codecs that happily "decode" arbitrary text or binary files as ANSI-art video.
# A .txt file opens as format "tty" with an "ansi" video stream; none of these is gameplay video.
_TEXT_ART_FORMATS = frozenset({"tty", "bin", "xbin", "adf", "idf"})
_TEXT_ART_CODECS = frozenset({"ansi", "bintext", "xbin", "idf"})


# --------------------------------------------------------------------------------------------
# Public data types and protocols
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoInfo:
    """What a handle knows about its video: the decodable frame count, the frame rate and the
    *source* frame size (before resizing)."""

    num_frames: int
    fps: float
    width: int
    height: int

    @property
    def duration(self) -> float:
        """Seconds covered by ``num_frames`` frames at ``fps``."""
        return self.num_frames / self.fps if self.fps > 0 else 0.0


@dataclass
class DecodedFrames:
    """Frames in the order they were requested."""

    frames: np.ndarray  # uint8 [N, H, W, 3] RGB at the requested size
    timestamps: np.ndarray  # float64 [N] seconds, presentation time of each frame's start

    def __len__(self) -> int:
        return int(self.frames.shape[0])


@runtime_checkable
class VideoHandle(Protocol):
    """An open video. ``read`` may be called many times; sorted requests are cheapest."""

    info: VideoInfo

    def read(self, indices: Sequence[int]) -> DecodedFrames: ...

    def close(self) -> None: ...

    def __enter__(self) -> "VideoHandle": ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


@runtime_checkable
class VideoDecoder(Protocol):
    name: str

    def open(
        self, path: Path, *, height: int = DEFAULT_HEIGHT, width: int = DEFAULT_WIDTH
    ) -> VideoHandle: ...


# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------


def _check_file(path: str | os.PathLike[str]) -> Path:
    """``video_missing`` / ``video_empty`` / ``video_unreadable`` unless a non-empty file."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise InputError("video_missing", f"no such file: {p}") from None
    except OSError as e:
        raise InputError("video_unreadable", f"cannot stat {p}: {e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise InputError("video_unreadable", f"not a regular file: {p}")
    if st.st_size == 0:
        raise InputError("video_empty", f"zero-byte file: {p}")
    return p


def _check_size(height: int, width: int) -> None:
    if int(height) <= 0 or int(width) <= 0:
        raise ValueError(f"output size must be positive, got height={height} width={width}")


def _check_resize(resize: str) -> str:
    if resize not in RESIZE_METHODS:
        raise ValueError(f"unknown resize {resize!r}; choose one of {', '.join(RESIZE_METHODS)}")
    return resize


def _frame_folder(path: str | os.PathLike[str], height: int, width: int, fps: float,
                  resize: str) -> VideoHandle | None:
    """A frame-folder handle when ``path`` is a directory (goalcraft.data.frame_folders), else None."""
    if not Path(path).is_dir():
        return None
    from goalcraft.data.frame_folders import open_frame_folder

    return open_frame_folder(Path(path), height=height, width=width, fps=fps, resize=resize)


def _open_container(path: Path) -> Any:
    import av

    try:
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except Exception as e:  # av.error.*, OSError, UnicodeDecodeError, ...
        raise InputError("video_unreadable", f"cannot open {path}: {e}") from None


def _video_stream(container: Any, path: Path) -> Any:
    """The container's main video stream; ``video_unreadable`` when there is none worth decoding."""
    streams = list(container.streams.video)
    if not streams:
        raise InputError("video_unreadable", f"no video stream in {path}")
    try:
        stream = container.streams.best("video") or streams[0]
    except Exception:
        stream = streams[0]
    fmt = (container.format.name or "").split(",")[0]
    codec = stream.codec_context.name or ""
    if fmt in _TEXT_ART_FORMATS or codec in _TEXT_ART_CODECS:
        raise InputError(
            "video_unreadable", f"not a video: FFmpeg reads {path} as text art ({fmt}/{codec})"
        )
    if not stream.codec_context.width or not stream.codec_context.height:
        raise InputError("video_unreadable", f"video stream of {path} has no frame size")
    return stream


def _stream_fps(stream: Any) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        try:
            if rate is not None and float(rate) > 0:
                return float(rate)
        except (TypeError, ZeroDivisionError, ValueError):
            continue
    return 0.0


def _fps_from_timestamps(ts: np.ndarray) -> float:
    if len(ts) > 1 and ts[-1] > ts[0]:
        return float((len(ts) - 1) / (ts[-1] - ts[0]))
    return 0.0


def _as_indices(indices: Sequence[int] | np.ndarray, num_frames: int, path: Path) -> np.ndarray:
    """Validate requested frame indices; returns them as int64."""
    arr = np.asarray(indices)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.ndim != 1:
        raise ValueError(f"frame indices must be a flat sequence, got shape {arr.shape}")
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"frame indices must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if (arr < 0).any():
        raise ValueError(f"frame indices must be non-negative, got {arr[arr < 0].tolist()}")
    if (arr >= num_frames).any():
        bad = int(arr.max())
        raise InputError(
            "insufficient_frames",
            f"frame {bad} requested but {path} has {num_frames} decodable frames",
        )
    return arr


class _HandleBase:
    info: VideoInfo
    path: Path
    _closed: bool = False

    def __enter__(self) -> Any:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:  # pragma: no cover - overridden
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("read on a closed video handle")

    def _request(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A read's validated indices, their sorted unique values and the map from those back."""
        self._check_open()
        idx = _as_indices(indices, self.info.num_frames, self.path)
        uniq, inverse = np.unique(idx, return_inverse=True)
        return idx, uniq, inverse

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def _empty(height: int, width: int) -> DecodedFrames:
    return DecodedFrames(
        frames=np.zeros((0, height, width, 3), dtype=np.uint8),
        timestamps=np.zeros(0, dtype=np.float64),
    )


# --------------------------------------------------------------------------------------------
# Frame index (PyAV demux, no decoding)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Index:
    """Every frame of the video stream, learnt by demuxing its packets (no decoding).

    Frame ``i`` is the packet with the ``i``-th smallest pts (decord numbers frames the same way).
    ``sequential`` is set when pts are missing or repeated (raw streams, some AVI files): frames are
    then numbered by counting decoded frames from the start of the file.
    """

    num_frames: int
    fps: float
    width: int
    height: int
    timestamps: np.ndarray  # float64 [num_frames], seconds from the first frame
    pts: np.ndarray  # int64 [num_frames] sorted pts (empty when sequential)
    keyframes: np.ndarray  # int64 sorted frame indices of keyframes, always starting with 0
    sequential: bool

    @property
    def info(self) -> VideoInfo:
        return VideoInfo(self.num_frames, self.fps, self.width, self.height)


def _scan(container: Any, stream: Any, path: Path) -> _Index:
    pts_list: list[int | None] = []
    key_list: list[bool] = []
    corrupt: list[bool] = []
    demux = container.demux(stream)
    while True:
        try:
            packet = next(demux)
        except StopIteration:
            break
        except Exception as e:  # damaged tail: what was demuxed so far is what exists
            log.warning("demuxing %s stopped early: %s", path, e)
            break
        if packet.size == 0 or packet.is_discard:
            continue
        pts_list.append(packet.pts)
        key_list.append(bool(packet.is_keyframe))
        corrupt.append(bool(packet.is_corrupt))
    # A truncated file ends in a partial packet, which FFmpeg flags corrupt and which never decodes.
    while corrupt and corrupt[-1]:
        corrupt.pop()
        pts_list.pop()
        key_list.pop()
    if not pts_list:
        raise InputError("video_unreadable", f"no decodable video packets in {path}")

    n = len(pts_list)
    cc = stream.codec_context
    width, height = int(cc.width), int(cc.height)
    fps = _stream_fps(stream)
    tb = Fraction(stream.time_base) if stream.time_base else None
    sequential = tb is None or any(p is None for p in pts_list) or len(set(pts_list)) != n
    if sequential:
        if fps <= 0:
            raise InputError("video_unreadable", f"{path}: no timestamps and no frame rate")
        return _Index(
            num_frames=n,
            fps=fps,
            width=width,
            height=height,
            timestamps=np.arange(n, dtype=np.float64) / fps,
            pts=np.zeros(0, dtype=np.int64),
            keyframes=np.zeros(1, dtype=np.int64),
            sequential=True,
        )
    raw = np.asarray(pts_list, dtype=np.int64)
    order = np.argsort(raw, kind="stable")
    pts = raw[order]
    kf = np.flatnonzero(np.asarray(key_list, dtype=bool)[order]).astype(np.int64)
    if kf.size == 0 or kf[0] != 0:
        kf = np.concatenate([np.zeros(1, dtype=np.int64), kf])
    assert tb is not None
    # integer ticks * num / den: correctly rounded seconds (k*512/15360 == k/30 exactly as floats)
    timestamps = (pts - pts[0]).astype(np.float64) * tb.numerator / tb.denominator
    if fps <= 0:
        fps = _fps_from_timestamps(timestamps)
    if fps <= 0:
        raise InputError("video_unreadable", f"{path}: cannot determine frame rate")
    return _Index(n, fps, width, height, timestamps, pts, kf, False)


def _index_file(path: Path) -> _Index:
    container = _open_container(path)
    try:
        return _scan(container, _video_stream(container, path), path)
    except InputError:
        raise
    except Exception as e:
        raise InputError("video_unreadable", f"cannot index {path}: {e}") from None
    finally:
        container.close()


# --------------------------------------------------------------------------------------------
# PyAV
# --------------------------------------------------------------------------------------------


class _PyAVHandle(_HandleBase):
    """Keyframe-indexed forward decoder.

    A decoded frame's index is looked up from its pts in the :class:`_Index`, so B-frame
    reordering and the leading frames after a seek are handled exactly; a frame whose pts the index
    does not know is never returned. Each wanted frame is reached by decoding forward from the
    current position, or by seeking to the last keyframe at or before it when that skips work (or
    when it lies behind the current position).
    """

    def __init__(
        self, path: Path, height: int, width: int, threads: int, index: _Index | None = None,
        resize: str = "ffmpeg-bicubic",
    ) -> None:
        self.path = path
        self._h = int(height)
        self._w = int(width)
        self._threads = int(threads)
        self._resize = resize
        self._container: Any = None
        self._frames_iter: Iterator[Any] | None = None
        self._pos = -1  # index of the last frame the current iterator produced
        # Frame threading loses the frames in flight when a packet fails to decode; after such a
        # loss the handle retries in "safe" mode (slice threads only), which loses nothing.
        self._safe = False
        self._frames_out = 0  # frames decoded so far: tells "truncated" from "nothing decodes"
        self._open_container()
        try:
            if index is None:
                index = _scan(self._container, self._stream, path)
                self._restart()  # the scan read to the end; decode from the start
            self._index = index
            self.info = index.info
            self._rank = {int(p): i for i, p in enumerate(index.pts.tolist())}
        except BaseException:
            self.close()
            raise

    # ---- positioning -------------------------------------------------------------------------
    def _open_container(self) -> None:
        from av.video.reformatter import VideoReformatter

        self._container = _open_container(self.path)
        try:
            self._stream = _video_stream(self._container, self.path)
            cc = self._stream.codec_context
            cc.thread_type = "SLICE" if self._safe else "AUTO"
            cc.thread_count = self._threads
        except BaseException:
            self._container.close()
            self._container = None
            raise
        self._reformatter = VideoReformatter()
        self._frames_iter = None
        self._pos = -1

    def _restart(self) -> None:
        """Decode from the beginning of the file (reopening works for every format)."""
        if self._container is not None:
            self._container.close()
            self._container = None
        self._open_container()

    def _seek_keyframe(self, slot: int) -> None:
        """Position the decoder so that decoding starts at keyframe number ``slot``."""
        kf = int(self._index.keyframes[slot])
        if kf == 0 or self._index.sequential:
            self._restart()
            return
        try:
            self._container.seek(int(self._index.pts[kf]), stream=self._stream, backward=True)
        except Exception as e:
            log.debug("seek in %s failed (%s); decoding from the start", self.path, e)
            self._restart()
            return
        self._frames_iter = None
        self._pos = kf - 1

    def _decoded(self) -> Iterator[Any]:
        """Decoded frames in presentation order; undecodable packets are skipped."""
        demux = self._container.demux(self._stream)
        while True:
            try:
                packet = next(demux)
            except StopIteration:
                return
            except Exception as e:  # damaged tail: flush what the decoder holds, then stop
                log.warning("demuxing %s failed: %s", self.path, e)
                try:
                    yield from self._stream.codec_context.decode(None)
                except Exception:
                    pass
                return
            if packet.is_corrupt and not self._index.sequential and packet.pts not in self._rank:
                continue  # the partial last packet of a truncated file: not a frame, never decodes
            try:
                frames = packet.decode()
            except Exception as e:
                log.debug("undecodable packet (pts %s) in %s: %s", packet.pts, self.path, e)
                continue
            yield from frames

    def _next(self) -> tuple[int, Any] | None:
        """The next decoded frame the index knows, with its frame index; ``None`` at the end."""
        if self._frames_iter is None:
            self._frames_iter = self._decoded()
        while True:
            try:
                frame = next(self._frames_iter)
            except StopIteration:
                return None
            except Exception as e:  # anything PyAV raises mid-iteration ends the stream
                log.warning("decoding %s stopped: %s", self.path, e)
                return None
            if self._index.sequential:
                i: int | None = self._pos + 1
            else:
                i = None if frame.pts is None else self._rank.get(int(frame.pts))
            if i is None:
                continue  # a frame the index does not announce: never return it
            self._pos = i
            self._frames_out += 1
            return i, frame

    def _frame(self, target: int) -> np.ndarray:
        try:
            return self._frame_once(target)
        except InputError:
            if self._safe:
                raise
        log.info("%s: frame %d lost with frame threading; retrying without", self.path, target)
        self._safe = True
        self._restart()
        return self._frame_once(target)

    def _frame_once(self, target: int) -> np.ndarray:
        keyframes = self._index.keyframes
        slot = int(np.searchsorted(keyframes, target, side="right")) - 1
        # After a seek, "landed" turns true once a frame from the wanted keyframe on shows up before
        # the target: until then an overshoot means the seek landed late, not that a frame is lost.
        landed = True
        if target <= self._pos or int(keyframes[slot]) > self._pos + 1:
            self._seek_keyframe(slot)
            landed = False
        while True:
            got = self._next()
            if got is None:
                if self._frames_out == 0:
                    raise InputError("video_unreadable", f"{self.path}: no frame decodes")
                raise InputError(
                    "insufficient_frames",
                    f"{self.path}: decoding ended before frame {target} "
                    f"of {self.info.num_frames} (truncated or damaged file)",
                )
            i, frame = got
            if i < target:
                landed = landed or i >= int(keyframes[slot])
                continue
            if i == target:
                if self._resize == "ffmpeg-bicubic":  # scaled in the same swscale pass
                    rgb = self._reformatter.reformat(
                        frame, width=self._w, height=self._h, format="rgb24", interpolation="BICUBIC"
                    )
                    return rgb.to_ndarray()
                native = self._reformatter.reformat(frame, format="rgb24").to_ndarray()
                return resize_frame(native, self._h, self._w, self._resize)
            # Overshot: the seek landed late (retry from an earlier keyframe) or the frame is lost.
            if not landed and slot > 0:
                slot -= 1
                self._seek_keyframe(slot)
                continue
            raise InputError("video_unreadable", f"{self.path}: frame {target} does not decode")

    # ---- API -----------------------------------------------------------------------------------
    def read(self, indices: Sequence[int]) -> DecodedFrames:
        idx, uniq, inverse = self._request(indices)
        if idx.size == 0:
            return _empty(self._h, self._w)
        out = np.empty((len(uniq), self._h, self._w, 3), dtype=np.uint8)
        try:
            for j, target in enumerate(uniq.tolist()):
                out[j] = self._frame(target)
        except BaseException as e:
            self._frames_iter = None
            self._pos = self.info.num_frames  # the next read seeks afresh
            if isinstance(e, InputError) or not isinstance(e, Exception):
                raise
            raise InputError("video_unreadable", f"{self.path}: decoding failed: {e}") from None
        return DecodedFrames(frames=out[inverse], timestamps=self._index.timestamps[idx].copy())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._frames_iter = None
        if self._container is not None:
            try:
                self._container.close()
            except Exception:
                pass
            self._container = None


class PyAVDecoder:
    """PyAV (FFmpeg) back end; always available.

    ``threads`` is FFmpeg's decoder thread count (``0``: FFmpeg picks from the CPU count);
    ``frames_fps`` the frame rate of PNG frame folders (they carry none); ``resize`` one of
    goalcraft.data.resize's methods.
    """

    name = "pyav"

    def __init__(self, threads: int = 0, frames_fps: float = MINECRAFT_FPS, resize: str = "ffmpeg-bicubic") -> None:
        self.threads = int(threads)
        self.frames_fps = float(frames_fps)
        self.resize = _check_resize(resize)

    def open(
        self, path: Path, *, height: int = DEFAULT_HEIGHT, width: int = DEFAULT_WIDTH
    ) -> VideoHandle:
        _check_size(height, width)
        if (folder := _frame_folder(path, height, width, self.frames_fps, self.resize)) is not None:
            return folder
        p = _check_file(path)
        try:
            return _PyAVHandle(p, height, width, self.threads, resize=self.resize)
        except InputError:
            raise
        except Exception as e:
            raise InputError("video_unreadable", f"cannot open {p}: {e}") from None

    def __repr__(self) -> str:
        return f"PyAVDecoder(threads={self.threads}, frames_fps={self.frames_fps:g}, resize={self.resize!r})"


# --------------------------------------------------------------------------------------------
# decord
# --------------------------------------------------------------------------------------------


def _ts_tolerance(t: np.ndarray) -> np.ndarray:
    """How far decord's float32 timestamps may stray from exact ones (far below a frame period)."""
    return 1e-5 + 1e-6 * np.abs(t)


class _DecordHandle(_HandleBase):
    """decord ``VideoReader`` for decoding and resizing, numbered by the PyAV :class:`_Index`.

    The index fixes the frame count (decord's count can include a truncated last packet that never
    decodes), the exact float64 timestamps (decord only has float32 ones) and the source size.
    decord's own timestamps are checked against the index at open; if the two number frames
    differently, the stream has no usable pts, or decord cannot open a file PyAV could index, the
    handle decodes with PyAV instead. When
    ``get_batch`` fails, the request is replayed with PyAV, which recovers the frames or raises the
    precise reason.
    """

    def __init__(self, path: Path, index: _Index, height: int, width: int, threads: int,
                 resize: str = "ffmpeg-bicubic"):
        self.path = path
        self._h = int(height)
        self._w = int(width)
        self._threads = int(threads)
        self._resize = resize
        self._index = index
        self._vr: Any = None
        self._pyav: _PyAVHandle | None = None
        n = index.num_frames
        if index.sequential:
            log.info("%s has no usable pts; decoding it with PyAV", path)
        else:
            try:
                self._vr = self._new_reader()
            except InputError as e:  # e.g. a codec decord's own FFmpeg lacks; PyAV indexed it
                try:
                    self._pyav_handle().read([0])  # PyAV must at least decode the first frame
                except InputError as again:
                    self.close()
                    raise InputError("video_unreadable", f"{e.detail}; {again.detail}") from None
                log.warning("%s; decoding with PyAV", e.detail)
        if self._vr is not None:
            n_decord = len(self._vr)
            if n_decord != index.num_frames:
                log.info("%s: decord counts %d frames, the index %d", path, n_decord, n)
            n = min(n, n_decord)
            if not self._numbering_agrees(n):
                log.warning("%s: decord numbers frames differently; decoding with PyAV", path)
                self._vr = None
                n = index.num_frames
        self.info = VideoInfo(n, index.fps, index.width, index.height)

    def _new_reader(self) -> Any:
        import decord

        # decord scales with swscale's bicubic; any other resize reads frames at their own size.
        size = {"width": self._w, "height": self._h} if self._resize == "ffmpeg-bicubic" else {}
        try:
            return decord.VideoReader(str(self.path), num_threads=self._threads, **size)
        except Exception as e:  # RuntimeError / DECORDError / AssertionError
            text = str(e).strip()
            msg = text.splitlines()[0] if text else type(e).__name__
            raise InputError("video_unreadable", f"decord cannot open {self.path}: {msg}") from None

    def _numbering_agrees(self, n: int) -> bool:
        try:
            raw = np.asarray(self._vr.get_frame_timestamp(list(range(n))), dtype=np.float64)
        except Exception as e:
            log.info("%s: no decord timestamps (%s)", self.path, e)
            return False
        start = raw[:, 0] if raw.ndim == 2 else raw
        if start.shape != (n,):
            return False
        exact = self._index.timestamps[:n]
        return bool(np.all(np.abs((start - start[0]) - exact) <= _ts_tolerance(exact)))

    def _pyav_handle(self) -> _PyAVHandle:
        if self._pyav is None:
            self._pyav = _PyAVHandle(self.path, self._h, self._w, self._threads, self._index, self._resize)
        return self._pyav

    def read(self, indices: Sequence[int]) -> DecodedFrames:
        idx, uniq, inverse = self._request(indices)
        if idx.size == 0:
            return _empty(self._h, self._w)
        if self._vr is None:  # decoding with PyAV (see the class docstring)
            return self._pyav_handle().read(idx)
        try:
            batch = self._vr.get_batch(uniq.tolist())
            arr = batch.asnumpy() if hasattr(batch, "asnumpy") else np.asarray(batch)
            if self._resize != "ffmpeg-bicubic" and arr.ndim == 4 and arr.dtype == np.uint8:
                arr = np.stack([resize_frame(f, self._h, self._w, self._resize) for f in arr])
            if arr.shape != (len(uniq), self._h, self._w, 3) or arr.dtype != np.uint8:
                raise RuntimeError(f"decord returned {arr.dtype} {arr.shape}")
        except Exception as e:
            self._vr = None  # its decoder may be wedged; PyAV serves this handle from now on
            text = str(e).strip()
            msg = text.splitlines()[-1] if text else type(e).__name__
            log.info("decord failed on %s (%s); replaying the request with PyAV", self.path, msg)
            got = self._pyav_handle().read(idx)  # raises the precise InputError if it fails too
            log.warning("%s: decord failed on frames PyAV decodes (%s)", self.path, msg)
            return got
        return DecodedFrames(frames=arr[inverse], timestamps=self._index.timestamps[idx].copy())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._vr = None  # decord frees the reader when the object is collected
        if self._pyav is not None:
            self._pyav.close()
            self._pyav = None


class DecordDecoder:
    """decord2 back end (``decord`` is imported on the first ``open``).

    ``num_threads`` is decord's decoder thread count (``0``: decord picks); ``frames_fps`` the frame
    rate of PNG frame folders (read with PIL, not decord); ``resize`` one of goalcraft.data.resize's
    methods.
    """

    name = "decord"

    def __init__(self, num_threads: int = 0, frames_fps: float = MINECRAFT_FPS,
                 resize: str = "ffmpeg-bicubic") -> None:
        self.num_threads = int(num_threads)
        self.frames_fps = float(frames_fps)
        self.resize = _check_resize(resize)

    def open(
        self, path: Path, *, height: int = DEFAULT_HEIGHT, width: int = DEFAULT_WIDTH
    ) -> VideoHandle:
        _check_size(height, width)
        if (folder := _frame_folder(path, height, width, self.frames_fps, self.resize)) is not None:
            return folder
        p = _check_file(path)
        index = _index_file(p)
        try:
            return _DecordHandle(p, index, height, width, self.num_threads, self.resize)
        except (InputError, ImportError):
            raise
        except Exception as e:
            raise InputError("video_unreadable", f"decord cannot read {p}: {e}") from None

    def __repr__(self) -> str:
        return f"DecordDecoder(num_threads={self.num_threads}, frames_fps={self.frames_fps:g}, resize={self.resize!r})"


# --------------------------------------------------------------------------------------------
# Selection
# --------------------------------------------------------------------------------------------


def decord_available() -> bool:
    """True when ``import decord`` works here (it is attempted, not just looked up)."""
    try:
        import decord  # noqa: F401
    except Exception:
        return False
    return True


def get_decoder(name: str = "auto", *, num_threads: int = 0, frames_fps: float = MINECRAFT_FPS,
                resize: str = "ffmpeg-bicubic") -> VideoDecoder:
    """``"auto"``: decord if importable, else PyAV; ``"decord"`` / ``"pyav"``: that one.

    ``num_threads`` is passed to the back end (``0``: the library picks); ``frames_fps`` is the
    frame rate both give PNG frame folders (``[clips] frames_fps``); ``resize`` how frames reach
    ``height x width`` (``[clips] resize``, goalcraft.data.resize).
    """
    key = (name or "").strip().lower()
    if key == "auto":
        key = "decord" if decord_available() else "pyav"
    if key == "decord":
        if not decord_available():
            raise ImportError(
                "decoder 'decord' requested but `import decord` fails (pip install decord2)"
            )
        return DecordDecoder(num_threads=num_threads, frames_fps=frames_fps, resize=resize)
    if key in ("pyav", "av"):
        return PyAVDecoder(threads=num_threads, frames_fps=frames_fps, resize=resize)
    raise ValueError(f"unknown decoder {name!r}; choose one of {', '.join(DECODER_NAMES)}")


def probe(path: str | os.PathLike[str], decoder: VideoDecoder | str | None = None) -> VideoInfo:
    """Frame count, frame rate and source size of a video (raises ``InputError`` like ``open``)."""
    if decoder is None or isinstance(decoder, str):
        dec = get_decoder(decoder or "auto")
    else:
        dec = decoder
    with dec.open(Path(path)) as handle:
        return handle.info
