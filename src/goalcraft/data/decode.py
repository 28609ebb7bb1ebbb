"""Video decoding: frames at given indices, resized for MineCLIP, with their presentation times.

Two interchangeable back ends implement :class:`VideoDecoder`:

* :class:`DecordDecoder` (``decord2``, import name ``decord``): fast batch decoding in C++;
  imported lazily because it is missing on some machines.
* :class:`PyAVDecoder` (``av``): always available; seeks to the keyframe before the first wanted
  frame and decodes forward, remembering its position so that a series of sorted requests on one
  handle never decodes the same stretch twice.

Both resize with FFmpeg's swscale (bicubic), a plain resize to ``height x width`` (160x256 by
default, no crop: MineCLIP frames are resized 640x360 Minecraft views), and return ``uint8`` RGB.
Frame ``i`` is the ``i``-th frame in presentation order; timestamps are in seconds from the first
frame's presentation time (so frame 0 is at 0.0), rounded to the microsecond, and identical between
the two back ends up to decord's float32 timestamps (exact to the microsecond for the first few
seconds, to ~0.1 ms after an hour of video).

Every problem with the input surfaces as :class:`~goalcraft.data.quarantine.InputError` with one of
the reasons ``video_missing``, ``video_empty``, ``video_unreadable`` or ``insufficient_frames``;
no decord or PyAV exception escapes :meth:`VideoDecoder.open` or :meth:`VideoHandle.read`.
Programming errors (negative or non-integer indices, reading a closed handle) raise
``ValueError``/``TypeError``.

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

_TS_DECIMALS = 6  # timestamps are rounded to the microsecond


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
    """``video_missing`` / ``video_empty`` / ``video_unreadable`` for what is not a non-empty file."""
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


@dataclass(frozen=True)
class _Header:
    """Container-level facts, read with PyAV without decoding (cheap: headers only)."""

    width: int
    height: int
    fps: float  # 0.0 when the container does not say
    format_name: str
    codec_name: str


def _open_container(path: Path) -> Any:
    import av

    try:
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except Exception as e:  # av.error.*, OSError, UnicodeDecodeError, ...
        raise InputError("video_unreadable", f"cannot open {path}: {e}") from None


def _video_stream(container: Any, path: Path) -> Any:
    streams = list(container.streams.video)
    if not streams:
        raise InputError("video_unreadable", f"no video stream in {path}")
    try:
        best = container.streams.best("video")
    except Exception:
        best = None
    stream = best if best is not None else streams[0]
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


def _read_header(path: Path) -> _Header:
    container = _open_container(path)
    try:
        stream = _video_stream(container, path)
        return _Header(
            width=int(stream.codec_context.width),
            height=int(stream.codec_context.height),
            fps=_stream_fps(stream),
            format_name=container.format.name or "",
            codec_name=stream.codec_context.name or "",
        )
    except InputError:
        raise
    except Exception as e:
        raise InputError("video_unreadable", f"cannot read stream header of {path}: {e}") from None
    finally:
        container.close()


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
# PyAV
# --------------------------------------------------------------------------------------------


class _PyAVHandle(_HandleBase):
    """Keyframe-indexed forward decoder.

    At open the packets of the video stream are demuxed (no decoding) to learn every frame's pts and
    which frames are keyframes. Frame ``i`` is the ``i``-th smallest pts, the same numbering decord
    uses. A decoded frame's index is looked up from its pts, so B-frame reordering and leading
    frames after a seek are handled exactly. When pts are missing or repeated (raw streams, some
    AVI files) the handle falls back to counting frames from the start of the file.
    """

    def __init__(self, path: Path, height: int, width: int, threads: int) -> None:
        self.path = path
        self._h = int(height)
        self._w = int(width)
        self._threads = int(threads)
        self._container: Any = None
        self._frames_iter: Iterator[Any] | None = None
        self._pos = -1  # index of the last frame the current iterator produced
        self._decode_errors = 0
        self._open_container()
        try:
            self._build_index()
        except BaseException:
            self.close()
            raise

    # ---- setup -------------------------------------------------------------------------------
    def _open_container(self) -> None:
        from av.video.reformatter import VideoReformatter

        self._container = _open_container(self.path)
        try:
            self._stream = _video_stream(self._container, self.path)
            cc = self._stream.codec_context
            cc.thread_type = "AUTO"
            cc.thread_count = self._threads
        except BaseException:
            self._container.close()
            self._container = None
            raise
        self._reformatter = VideoReformatter()
        self._frames_iter = None
        self._pos = -1

    def _build_index(self) -> None:
        stream = self._stream
        pts_list: list[int | None] = []
        key_list: list[bool] = []
        demux = self._container.demux(stream)
        while True:
            try:
                packet = next(demux)
            except StopIteration:
                break
            except Exception as e:  # a damaged tail: what was demuxed so far is what exists
                log.warning("demux of %s stopped early: %s", self.path, e)
                break
            if packet.size == 0 or packet.is_discard:
                continue
            pts_list.append(packet.pts)
            key_list.append(bool(packet.is_keyframe))
        if not pts_list:
            raise InputError("video_unreadable", f"no video frames in {self.path}")

        self._time_base = Fraction(stream.time_base) if stream.time_base else None
        n = len(pts_list)
        self._sequential = (
            self._time_base is None
            or any(p is None for p in pts_list)
            or len(set(pts_list)) != n
        )
        fps = _stream_fps(stream)
        if self._sequential:
            # Count frames from the start of the file; no seeking except back to the start.
            self._pts = np.zeros(0, dtype=np.int64)
            self._rank: dict[int, int] = {}
            self._keyframes = np.zeros(1, dtype=np.int64)  # only "frame 0"
            if fps <= 0:
                raise InputError(
                    "video_unreadable", f"{self.path}: no timestamps and no frame rate"
                )
            self._timestamps = np.round(np.arange(n, dtype=np.float64) / fps, _TS_DECIMALS)
        else:
            raw = np.asarray(pts_list, dtype=np.int64)
            order = np.argsort(raw, kind="stable")
            self._pts = raw[order]
            self._rank = {int(p): i for i, p in enumerate(self._pts)}
            keys = np.asarray(key_list, dtype=bool)[order]
            kf = np.flatnonzero(keys).astype(np.int64)
            if kf.size == 0 or kf[0] != 0:
                kf = np.concatenate([[0], kf]).astype(np.int64)
            self._keyframes = kf
            tb = self._time_base
            assert tb is not None
            rel = self._pts - self._pts[0]
            ts = rel.astype(np.float64) * tb.numerator / tb.denominator
            self._timestamps = np.round(ts, _TS_DECIMALS)
            if fps <= 0:
                fps = _fps_from_timestamps(self._timestamps)
            if fps <= 0:
                raise InputError("video_unreadable", f"{self.path}: cannot determine frame rate")
        cc = stream.codec_context
        self.info = VideoInfo(num_frames=n, fps=fps, width=int(cc.width), height=int(cc.height))
        # Demuxing moved the read position to the end: go back to the start for decoding.
        self._restart()

    # ---- positioning -------------------------------------------------------------------------
    def _restart(self) -> None:
        """Decode from the beginning of the file (reopen: works for every format)."""
        if self._container is not None:
            self._container.close()
        self._open_container()

    def _seek_keyframe(self, k: int) -> None:
        """Position the decoder so the next frames start at keyframe number ``k`` (in the list)."""
        kf = int(self._keyframes[k])
        if kf == 0 or self._sequential:
            self._restart()
            return
        try:
            self._container.seek(int(self._pts[kf]), stream=self._stream, backward=True)
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
            except Exception as e:
                log.warning("demux of %s failed: %s", self.path, e)
                packet = None
            if packet is None:  # damaged tail: flush what the decoder holds, then stop
                try:
                    yield from self._stream.codec_context.decode(None)
                except Exception:
                    pass
                return
            try:
                frames = packet.decode()
            except Exception as e:
                self._decode_errors += 1
                log.debug("undecodable packet (pts %s) in %s: %s", packet.pts, self.path, e)
                continue
            yield from frames

    def _index_of(self, frame: Any) -> int:
        if self._sequential or frame.pts is None:
            return self._pos + 1
        i = self._rank.get(int(frame.pts))
        if i is not None:
            return i
        # pts the demuxer did not announce (should not happen): nearest announced frame
        j = int(np.searchsorted(self._pts, int(frame.pts)))
        if j >= len(self._pts):
            return len(self._pts) - 1
        if j > 0 and int(frame.pts) - self._pts[j - 1] < self._pts[j] - int(frame.pts):
            return j - 1
        return j

    def _next(self) -> tuple[int, Any] | None:
        if self._frames_iter is None:
            self._frames_iter = self._decoded()
        try:
            frame = next(self._frames_iter)
        except StopIteration:
            return None
        except Exception as e:  # anything PyAV raises mid-iteration: treat as end of stream
            log.warning("decoding %s stopped: %s", self.path, e)
            return None
        i = self._index_of(frame)
        self._pos = i
        return i, frame

    def _keyframe_slot(self, target: int) -> int:
        """Position in the keyframe list of the last keyframe at or before ``target``."""
        return int(np.searchsorted(self._keyframes, target, side="right")) - 1

    def _frame(self, target: int) -> np.ndarray:
        slot = self._keyframe_slot(target)
        just_seeked = False
        if target <= self._pos or int(self._keyframes[slot]) > self._pos + 1:
            self._seek_keyframe(slot)
            just_seeked = True
        while True:
            got = self._next()
            if got is None:
                raise InputError(
                    "insufficient_frames",
                    f"{self.path}: decoding ended before frame {target} "
                    f"({self.info.num_frames} frames announced; file truncated?)",
                )
            i, frame = got
            if i < target:
                continue
            if i == target:
                out = self._reformatter.reformat(
                    frame,
                    width=self._w,
                    height=self._h,
                    format="rgb24",
                    interpolation="BICUBIC",
                )
                return out.to_ndarray()
            # Overshot: either the seek landed late, or the frame cannot be decoded.
            if just_seeked and slot > 0:
                slot -= 1
                self._seek_keyframe(slot)
                continue
            raise InputError(
                "video_unreadable", f"{self.path}: frame {target} could not be decoded"
            )

    # ---- API -----------------------------------------------------------------------------------
    def read(self, indices: Sequence[int]) -> DecodedFrames:
        self._check_open()
        idx = _as_indices(indices, self.info.num_frames, self.path)
        if idx.size == 0:
            return _empty(self._h, self._w)
        uniq, inverse = np.unique(idx, return_inverse=True)
        out = np.empty((len(uniq), self._h, self._w, 3), dtype=np.uint8)
        try:
            for j, target in enumerate(uniq.tolist()):
                out[j] = self._frame(target)
        except InputError:
            self._frames_iter = None
            self._pos = self.info.num_frames  # force a fresh seek on the next read
            raise
        except Exception as e:
            self._frames_iter = None
            self._pos = self.info.num_frames
            raise InputError("video_unreadable", f"{self.path}: decoding failed: {e}") from None
        return DecodedFrames(frames=out[inverse], timestamps=self._timestamps[idx].copy())

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

    ``threads`` is FFmpeg's decoder thread count (``0``: FFmpeg picks from the CPU count).
    """

    name = "pyav"

    def __init__(self, threads: int = 0) -> None:
        self.threads = int(threads)

    def open(
        self, path: Path, *, height: int = DEFAULT_HEIGHT, width: int = DEFAULT_WIDTH
    ) -> VideoHandle:
        _check_size(height, width)
        p = _check_file(path)
        try:
            return _PyAVHandle(p, height, width, self.threads)
        except InputError:
            raise
        except Exception as e:
            raise InputError("video_unreadable", f"cannot open {p}: {e}") from None

    def __repr__(self) -> str:
        return f"PyAVDecoder(threads={self.threads})"


# --------------------------------------------------------------------------------------------
# decord
# --------------------------------------------------------------------------------------------


class _DecordHandle(_HandleBase):
    """decord ``VideoReader`` wrapper.

    decord builds its frame index from the demuxed packets, so its frame count can include a last
    packet that does not decode (a truncated file). When ``get_batch`` fails, the same request is
    replayed with PyAV, which either recovers the frames or raises the precise reason
    (``insufficient_frames`` for frames past the decodable end).
    """

    def __init__(self, path: Path, header: _Header, height: int, width: int, threads: int):
        self.path = path
        self._h = int(height)
        self._w = int(width)
        self._threads = int(threads)
        self._vr: Any = None
        self._limit: int | None = None  # first index known not to decode
        self._vr = self._new_reader()
        n = len(self._vr)
        if n <= 0:
            raise InputError("video_unreadable", f"no video frames in {path}")
        try:
            raw = np.asarray(self._vr.get_frame_timestamp(list(range(n))), dtype=np.float64)
        except Exception as e:
            raise InputError("video_unreadable", f"{path}: no frame timestamps: {e}") from None
        start = raw[:, 0] if raw.ndim == 2 else raw
        self._timestamps = np.round(start - start[0], _TS_DECIMALS)
        fps = header.fps
        if fps <= 0:
            try:
                fps = float(self._vr.get_avg_fps())
            except Exception:
                fps = 0.0
        if not fps > 0:
            fps = _fps_from_timestamps(self._timestamps)
        if fps <= 0:
            raise InputError("video_unreadable", f"{path}: cannot determine frame rate")
        self.info = VideoInfo(num_frames=n, fps=fps, width=header.width, height=header.height)

    def _new_reader(self) -> Any:
        import decord

        try:
            return decord.VideoReader(
                str(self.path), width=self._w, height=self._h, num_threads=self._threads
            )
        except Exception as e:  # RuntimeError / DECORDError / AssertionError
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise InputError("video_unreadable", f"decord cannot open {self.path}: {msg}") from None

    def read(self, indices: Sequence[int]) -> DecodedFrames:
        self._check_open()
        idx = _as_indices(indices, self.info.num_frames, self.path)
        if idx.size == 0:
            return _empty(self._h, self._w)
        if self._limit is not None and int(idx.max()) >= self._limit:
            raise InputError(
                "insufficient_frames",
                f"{self.path}: frame {int(idx.max())} requested, only frames < {self._limit} decode",
            )
        uniq, inverse = np.unique(idx, return_inverse=True)
        try:
            if self._vr is None:
                self._vr = self._new_reader()
            batch = self._vr.get_batch(uniq.tolist())
            arr = batch.asnumpy() if hasattr(batch, "asnumpy") else np.asarray(batch)
            if arr.shape != (len(uniq), self._h, self._w, 3) or arr.dtype != np.uint8:
                raise RuntimeError(f"decord returned {arr.dtype} {arr.shape}")
        except Exception as e:
            self._vr = None  # the reader's decoder may be wedged: reopen on the next read
            msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            log.info("decord failed on %s (%s); replaying with PyAV", self.path, msg)
            return self._replay_with_pyav(idx, uniq)
        return DecodedFrames(frames=arr[inverse], timestamps=self._timestamps[idx].copy())

    def _replay_with_pyav(self, idx: np.ndarray, uniq: np.ndarray) -> DecodedFrames:
        try:
            with PyAVDecoder(threads=self._threads).open(
                self.path, height=self._h, width=self._w
            ) as h:
                got = h.read(idx)
        except InputError as e:
            if e.reason == "insufficient_frames":
                self._limit = self._first_missing(uniq)
            raise
        return DecodedFrames(frames=got.frames, timestamps=self._timestamps[idx].copy())

    def _first_missing(self, uniq: np.ndarray) -> int | None:
        """The smallest requested index PyAV cannot decode (only called after a failure)."""
        try:
            with PyAVDecoder(threads=self._threads).open(
                self.path, height=self._h, width=self._w
            ) as h:
                for i in uniq.tolist():
                    try:
                        h.read([i])
                    except InputError:
                        return int(i)
        except InputError:
            return None
        return None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._vr = None  # decord frees the reader when the object is collected


class DecordDecoder:
    """decord2 back end (``decord`` is imported on first ``open``).

    ``num_threads`` is decord's decoder thread count (``0``: decord picks).
    The source frame size and frame rate come from a PyAV header probe (decord does not expose the
    source size once a resize is requested); that probe also rejects text files that FFmpeg would
    otherwise "decode" as ANSI art.
    """

    name = "decord"

    def __init__(self, num_threads: int = 0) -> None:
        self.num_threads = int(num_threads)

    def open(
        self, path: Path, *, height: int = DEFAULT_HEIGHT, width: int = DEFAULT_WIDTH
    ) -> VideoHandle:
        _check_size(height, width)
        p = _check_file(path)
        header = _read_header(p)
        try:
            return _DecordHandle(p, header, height, width, self.num_threads)
        except InputError:
            raise
        except ImportError:
            raise
        except Exception as e:
            raise InputError("video_unreadable", f"decord cannot read {p}: {e}") from None

    def __repr__(self) -> str:
        return f"DecordDecoder(num_threads={self.num_threads})"


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


def get_decoder(name: str = "auto", *, num_threads: int = 0) -> VideoDecoder:
    """``"auto"``: decord if importable, else PyAV; ``"decord"`` / ``"pyav"``: that one.

    ``num_threads`` is passed to the back end (``0``: the library picks).
    """
    key = (name or "").strip().lower()
    if key == "auto":
        key = "decord" if decord_available() else "pyav"
    if key == "decord":
        if not decord_available():
            raise ImportError("decoder 'decord' requested but `import decord` fails (pip install decord2)")
        return DecordDecoder(num_threads=num_threads)
    if key in ("pyav", "av"):
        return PyAVDecoder(threads=num_threads)
    raise ValueError(f"unknown decoder {name!r}; choose one of {', '.join(DECODER_NAMES)}")


def probe(path: str | os.PathLike[str], decoder: VideoDecoder | str | None = None) -> VideoInfo:
    """Frame count, frame rate and source size of a video (raises ``InputError`` like ``open``)."""
    dec = get_decoder(decoder) if isinstance(decoder, str) or decoder is None else decoder
    with dec.open(Path(path)) as handle:
        return handle.info
