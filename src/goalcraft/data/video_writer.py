"""Write RGB frames to an H.264 video file, atomically and reproducibly.

Used by the Crafter corpus generator and by tests that need small real videos. The file is encoded
under a temporary name in the destination directory and moved into place with ``os.replace``, so a
reader never sees a half-written video. With libx264 the output is byte-for-byte reproducible for
the same frames and settings: one encoder thread, and x264's mbtree rate control switched off (it
reads memory that differs between runs on short clips).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable

import av
import numpy as np


@dataclass(frozen=True)
class VideoWriteInfo:
    """What was written: the final path, frame count, exact frame rate and frame size."""

    path: Path
    frames: int
    fps: Fraction
    width: int
    height: int


def _as_fraction(fps: float | int | Fraction) -> Fraction:
    rate = Fraction(fps).limit_denominator(1001)
    if rate <= 0:
        raise ValueError(f"fps must be positive, got {fps!r}")
    return rate


def _check_frame(frame: np.ndarray, index: int, shape: tuple[int, ...] | None) -> None:
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(
            f"frame {index}: expected an (H, W, 3) uint8 RGB array, got {frame.dtype} {frame.shape}"
        )
    if shape is not None and frame.shape != shape:
        raise ValueError(f"frame {index}: shape {frame.shape} differs from the first frame's {shape}")


def write_video(
    path: Path,
    frames: Iterable[np.ndarray] | np.ndarray,
    fps: float | int | Fraction,
    *,
    codec: str = "libx264",
    crf: int = 18,
    threads: int = 1,
) -> VideoWriteInfo:
    """Encode ``frames`` (each ``(H, W, 3)`` uint8 RGB) to ``path`` as yuv420p video.

    Frame ``i`` gets presentation time ``i / fps`` exactly (the stream time base is ``1 / fps`` as a
    fraction). Width and height must be even (yuv420p subsamples chroma 2x2); anything else raises
    ``ValueError``, as do an empty frame sequence and frames of mixed shape. The container format
    follows the suffix of ``path`` (``.mp4``, ``.mkv``, ...).
    """
    path = Path(path)
    rate = _as_fraction(fps)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    count = 0
    shape: tuple[int, ...] | None = None
    try:
        with av.open(str(tmp), mode="w") as container:
            stream = None
            for frame in frames:
                frame = np.asarray(frame)
                _check_frame(frame, count, shape)
                if stream is None:
                    shape = frame.shape
                    height, width = shape[:2]
                    if width % 2 or height % 2:
                        raise ValueError(
                            f"yuv420p needs even frame dimensions, got width={width} height={height}; "
                            "crop or pad the frames to even sizes"
                        )
                    stream = container.add_stream(codec, rate=rate)
                    stream.width, stream.height = width, height
                    stream.pix_fmt = "yuv420p"
                    stream.time_base = 1 / rate
                    stream.codec_context.thread_count = threads
                    if codec == "libx264":
                        # mbtree=0: x264's macroblock-tree rate control makes the output bytes vary
                        # from run to run on short or smooth clips (seen with libx264 core 165).
                        stream.options = {"crf": str(crf), "x264-params": "mbtree=0"}
                    elif codec == "libx265":
                        stream.options = {"crf": str(crf)}
                video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
                video_frame.pts = count
                video_frame.time_base = 1 / rate
                container.mux(stream.encode(video_frame))
                count += 1
            if stream is None:
                raise ValueError("no frames to write")
            container.mux(stream.encode(None))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    assert shape is not None
    return VideoWriteInfo(path=path, frames=count, fps=rate, width=shape[1], height=shape[0])
