"""A folder of PNG frames as a video source, behind the decoder seam (goalcraft.data.decode).

STEVE-1 evaluation tools save episodes as one PNG per environment step: konder/aimc's recorded
samples (``<task>/trial<N>/frames/step_NNNN.png``) and its evaluation reports
(``report_<task>_trial<i>/frames/step_NNNN.png``). Both decoders open such a folder when the path
they are given is a directory, so the clip and goal stages cut clips from it exactly as from a video.

Rules
    * Frames are the files named ``step_<digits>.png``; frame ``i`` is ``step_<i>.png`` (numbers read
      as integers, so ``step_0010.png`` is frame 10 whatever the zero padding). Numbering starts at 0
      and has no gap; hidden entries (``.DS_Store``) are ignored.
    * The folder carries no frame rate: it is the decoder's ``frames_fps`` (``[clips] frames_fps``,
      20 by default: Minecraft's tick rate, one frame a tick, as aimc records). Frame ``i`` is at
      ``i / fps`` seconds.
    * ``info`` width and height are those of ``step_0``; every frame is converted to RGB (alpha
      dropped, grey expanded) and resized to the requested size with the decoder's resize
      (goalcraft.data.resize: FFmpeg's swscale bicubic by default, the resize the video decoders use).

Problems are :class:`~goalcraft.data.quarantine.InputError`, like a video's:
``video_unreadable`` (no ``step_NNNN.png`` frame, an entry that is not one, two files with the same
number), ``frame_missing`` (a gap in the numbering: the first missing file is named),
``frame_unreadable`` (a PNG that does not decode: truncated, corrupt, not a PNG), and
``insufficient_frames`` for indices past the last frame.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from goalcraft.data.decode import DecodedFrames, VideoInfo, _check_size, _empty, _HandleBase
from goalcraft.data.quarantine import InputError
from goalcraft.data.resize import resize_frame

__all__ = ["FRAME_NAME", "FrameFolderHandle", "frame_files", "open_frame_folder"]

#: A frame file: ``step_<number>.png``.
FRAME_NAME = re.compile(r"step_([0-9]{1,9})\.png")


def frame_files(folder: Path) -> list[Path]:
    """The frames of ``folder`` in frame order (rules and errors in the module docstring)."""
    folder = Path(folder)
    try:
        names = sorted(n for n in os.listdir(folder) if not n.startswith("."))
    except OSError as exc:
        raise InputError("video_unreadable", f"cannot list the frame folder {folder}: {exc.strerror or exc}") from None
    numbered: dict[int, str] = {}
    for name in names:
        match = FRAME_NAME.fullmatch(name)
        if match is None or not (folder / name).is_file():
            raise InputError("video_unreadable", f"frame folder {folder} holds {name!r}, which is not a "
                                                 "step_NNNN.png frame")
        number = int(match.group(1))
        if number in numbered:
            raise InputError("video_unreadable", f"frame folder {folder}: {numbered[number]!r} and {name!r} "
                                                 f"are both frame {number}")
        numbered[number] = name
    if not numbered:
        raise InputError("video_unreadable", f"frame folder {folder} holds no step_NNNN.png frame")
    count = len(numbered)
    if max(numbered) != count - 1:
        missing = next(i for i in range(count) if i not in numbered)
        width = len(numbered[min(numbered)]) - len("step_.png")
        raise InputError("frame_missing", f"frame folder {folder}: step_{missing:0{width}d}.png is missing "
                                          f"(frames 0-{max(numbered)} expected, {count} present)")
    return [folder / numbered[i] for i in range(count)]


def _load_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as image:
            if image.format != "PNG":
                raise ValueError(f"a {image.format} image, not a PNG")
            return np.asarray(image.convert("RGB"))
    except Exception as exc:  # PIL.UnidentifiedImageError, OSError (truncated), ValueError, ...
        text = str(exc).strip() or type(exc).__name__
        raise InputError("frame_unreadable", f"{path}: {text}") from None


class FrameFolderHandle(_HandleBase):
    """An open frame folder (a :class:`~goalcraft.data.decode.VideoHandle`)."""

    def __init__(self, folder: Path, height: int, width: int, fps: float, resize: str = "ffmpeg-bicubic") -> None:
        if not fps > 0:
            raise ValueError(f"frames_fps must be positive, got {fps!r}")
        self.path = Path(folder)
        self._h, self._w, self._fps = int(height), int(width), float(fps)
        self._resize = resize
        self._files = frame_files(self.path)
        first_h, first_w = _load_rgb(self._files[0]).shape[:2]
        self.info = VideoInfo(len(self._files), self._fps, int(first_w), int(first_h))

    def read(self, indices: Sequence[int]) -> DecodedFrames:
        idx, uniq, inverse = self._request(indices)
        if idx.size == 0:
            return _empty(self._h, self._w)
        out = np.empty((len(uniq), self._h, self._w, 3), dtype=np.uint8)
        for j, i in enumerate(uniq.tolist()):
            out[j] = resize_frame(_load_rgb(self._files[i]), self._h, self._w, self._resize)
        return DecodedFrames(frames=out[inverse], timestamps=idx.astype(np.float64) / self._fps)

    def close(self) -> None:
        self._closed = True


def open_frame_folder(folder: Path, *, height: int, width: int, fps: float,
                      resize: str = "ffmpeg-bicubic") -> FrameFolderHandle:
    """Open a frame folder for reading at ``height x width`` (what the decoders call for a directory)."""
    _check_size(height, width)
    return FrameFolderHandle(Path(folder), height, width, fps, resize)
