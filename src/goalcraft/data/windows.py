"""Clip windows: which stretch of a video each caption labels, and which 16 frames a clip takes.

:func:`windows_from_segments` turns transcript segments into clip windows. The rules, applied in
this order (``D`` = video duration in seconds, all times in seconds):

1. **Order.** Segments are sorted by ``start`` (stable: equal starts keep their input order).
   ``segment_indices`` always refer to positions in the list *as passed in*.
2. **Invalid.** A segment with a non-finite or negative ``start``/``duration`` is rejected
   (``segment_invalid``); the transcript readers never produce one.
3. **Filter** (counted in ``filtered``, not failures). Text is whitespace-normalised, then a segment
   is dropped when its text is blank; when ``drop_bracketed`` and its text is only bracketed
   non-speech markers (``[Music]``, ``[Applause] [Laughter]``: one or more ``[...]`` groups and
   nothing else); when ``keywords`` is non-empty and none of them occurs in the text. A keyword
   matches case-insensitively as a whole word or phrase: its words, in order, separated by any
   whitespace, with no letter, digit or ``_`` directly before or after (``"tree"`` matches
   ``"a tree."`` but not ``"trees"`` or ``"street"``).
4. **Past the end.** A segment with ``start >= D`` is rejected (``segment_past_video_end``); with
   ``D == 0`` (a video with no frames) that is every segment.
5. **Overlap** (between the remaining segments, in start order; touching, ``end == next start``, is
   not overlap):

   * ``"trim"``: a segment whose end is after the next segment's start ends there instead (the next
     segment is the next remaining one; equal starts trim the earlier one to zero length);
   * ``"merge"``: a run of segments where each starts before the run's latest end so far becomes one
     window, from the first start to the latest end, caption = the captions joined with one space in
     start order, ``segment_indices`` = all of them (rolling auto-captions overlap in a chain, so
     merging them can swallow a whole video: use ``"trim"`` for those);
   * ``"keep"``: nothing changes; windows may overlap.

6. **Clip to the video.** A window ending after ``D`` ends at ``D``. Such a *clipped* window is not
   widened in step 7 (its speech runs past the recorded footage, and moving it back would label
   footage the caption does not describe); it only passes if it still holds ``min_frames`` frames
   (step 8).
7. **Length.** A window shorter than ``min_window_s`` (and not clipped) is widened symmetrically
   around its centre to ``min_window_s``, then shifted (not shrunk) to lie inside ``[0, D]``; if
   ``D < min_window_s`` it becomes ``[0, D]``. A window longer than ``max_window_s`` becomes the
   ``max_window_s`` around its centre. Widening happens after overlap handling, so widened windows
   may overlap their neighbours again.
8. **Enough frames.** Boundaries are rounded to microseconds (never past ``[0, D]``); a window with
   ``(end - start) * fps < min_frames`` (1e-9 tolerance), or whose ``min_frames`` sample times (see
   :func:`frame_indices`) would not fall on distinct frames, is rejected (``window_too_short``), for
   every member segment of a merged window. A 16-frame clip needs 16 distinct frames.

Windows come back sorted by ``(start, end, segment_indices)``, rejections sorted by segment index.

:func:`tile_windows` cuts an agent-trial video into back-to-back windows of ``window_s`` starting at
0, stopping at ``min(duration, end_at)`` and dropping the last partial window.

:func:`frame_indices` picks ``n`` frames evenly spread over a window: frame ``i`` is at time
``t_i = start + (i + 0.5) * (end - start) / n`` and its index is ``floor(t_i * fps)`` clamped to
``[0, num_frames - 1]``. When the window spans at least ``n`` frame periods, consecutive ``t_i`` are
at least one frame period apart, so the indices strictly increase; otherwise (or if clamping makes
two equal) it raises ``ValueError``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Literal, Sequence

from goalcraft.config import ClipsSettings
from goalcraft.formats import CLIP_FRAMES
from goalcraft.data.transcripts import Segment, normalise_text

__all__ = [
    "ClipWindow",
    "WindowResult",
    "WindowRules",
    "frame_indices",
    "tile_windows",
    "windows_from_segments",
]

_EPS = 1e-9
_BRACKETED_ONLY = re.compile(r"(?:\[[^\[\]]*\]\s*)+")


@dataclass(frozen=True)
class WindowRules:
    """How transcript segments become clip windows (see the module docstring)."""

    min_window_s: float = ClipsSettings.model_fields["min_window_s"].default
    max_window_s: float = ClipsSettings.model_fields["max_window_s"].default
    overlap: Literal["trim", "merge", "keep"] = ClipsSettings.model_fields["overlap"].default
    keywords: tuple[str, ...] = ()
    drop_bracketed: bool = ClipsSettings.model_fields["drop_bracketed"].default
    min_frames: int = CLIP_FRAMES

    def __post_init__(self) -> None:
        if not (math.isfinite(self.min_window_s) and self.min_window_s > 0):
            raise ValueError(f"min_window_s must be a positive number, got {self.min_window_s!r}")
        if not (math.isfinite(self.max_window_s) and self.max_window_s >= self.min_window_s):
            raise ValueError(
                f"max_window_s must be >= min_window_s ({self.min_window_s}), got {self.max_window_s!r}"
            )
        if self.overlap not in ("trim", "merge", "keep"):
            raise ValueError(f"overlap must be 'trim', 'merge' or 'keep', got {self.overlap!r}")
        if isinstance(self.keywords, str):
            raise ValueError("keywords must be a tuple of strings, not one string")
        if any(not isinstance(k, str) or not k.strip() for k in self.keywords):
            raise ValueError(f"keywords must be non-blank strings, got {self.keywords!r}")
        if isinstance(self.min_frames, bool) or not isinstance(self.min_frames, int) or self.min_frames < 1:
            raise ValueError(f"min_frames must be a positive integer, got {self.min_frames!r}")


@dataclass(frozen=True)
class ClipWindow:
    """A stretch ``[start, end]`` (seconds) of a video labelled with ``caption``.

    ``segment_indices`` are the transcript segments it came from (empty for tiled trial windows).
    """

    start: float
    end: float
    caption: str
    segment_indices: tuple[int, ...] = ()

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class WindowResult:
    """Windows kept, segments rejected ``(index, reason, detail)``, and the count filtered out."""

    windows: list[ClipWindow] = field(default_factory=list)
    rejected: list[tuple[int, str, str]] = field(default_factory=list)
    filtered: int = 0


@dataclass
class _Candidate:
    start: float
    end: float
    caption: str
    indices: tuple[int, ...]


def _keyword_pattern(keywords: Sequence[str]) -> re.Pattern[str] | None:
    if not keywords:
        return None
    phrases = [r"\s+".join(re.escape(word) for word in k.split()) for k in keywords]
    return re.compile(r"(?<!\w)(?:" + "|".join(phrases) + r")(?!\w)", re.IGNORECASE)


def _is_finite_number(value: object) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def _check_positive(name: str, value: float) -> None:
    if not _is_finite_number(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")


def windows_from_segments(
    segments: Sequence[Segment], video_duration: float, fps: float, rules: WindowRules = WindowRules()
) -> WindowResult:
    """Turn transcript segments into clip windows; see the module docstring for the exact rules."""
    if not _is_finite_number(video_duration) or video_duration < 0:
        raise ValueError(f"video_duration must be a finite number >= 0, got {video_duration!r}")
    _check_positive("fps", fps)
    duration = float(video_duration)
    keyword_re = _keyword_pattern(rules.keywords)

    rejected: list[tuple[int, str, str]] = []
    filtered = 0
    candidates: list[_Candidate] = []
    order = sorted(range(len(segments)), key=lambda i: segments[i].start
                   if math.isfinite(segments[i].start) else -math.inf)
    for index in order:
        seg = segments[index]
        start, length = seg.start, seg.duration
        if not (math.isfinite(start) and math.isfinite(length)) or start < 0 or length < 0:
            rejected.append(
                (index, "segment_invalid", f"start={start!r}, duration={length!r}")
            )
            continue
        text = normalise_text(seg.text)
        if not text:
            filtered += 1
            continue
        if rules.drop_bracketed and _BRACKETED_ONLY.fullmatch(text):
            filtered += 1
            continue
        if keyword_re is not None and keyword_re.search(text) is None:
            filtered += 1
            continue
        if start >= duration:
            rejected.append(
                (index, "segment_past_video_end",
                 f"starts at {start:.3f} s, video is {duration:.3f} s long")
            )
            continue
        candidates.append(_Candidate(start, start + length, text, (index,)))

    if rules.overlap == "trim":
        for current, following in zip(candidates, candidates[1:]):
            if current.end > following.start:
                current.end = following.start
    elif rules.overlap == "merge":
        merged: list[_Candidate] = []
        for cand in candidates:
            if merged and cand.start < merged[-1].end:
                last = merged[-1]
                last.end = max(last.end, cand.end)
                last.caption = f"{last.caption} {cand.caption}"
                last.indices = last.indices + cand.indices
            else:
                merged.append(_Candidate(cand.start, cand.end, cand.caption, cand.indices))
        candidates = merged

    windows: list[ClipWindow] = []
    for cand in candidates:
        start, end = cand.start, cand.end
        clipped = end > duration
        if clipped:
            end = duration
        length = end - start
        if length < rules.min_window_s and not clipped:
            start, end = _widen(start, end, rules.min_window_s, duration)
        elif length > rules.max_window_s:
            centre = (start + end) / 2
            start, end = centre - rules.max_window_s / 2, centre + rules.max_window_s / 2
        start, end = max(round(start, 6), 0.0), min(round(end, 6), duration)
        if not _holds_frames(start, end, fps, rules.min_frames):
            detail = (
                f"window [{start:.3f}, {end:.3f}] s holds {(end - start) * fps:.2f} frames at "
                f"{fps:g} fps, needs {rules.min_frames}"
                + (" (clipped at the video end)" if clipped else "")
            )
            rejected.extend((i, "window_too_short", detail) for i in cand.indices)
            continue
        windows.append(ClipWindow(start, end, cand.caption, cand.indices))

    windows.sort(key=lambda w: (w.start, w.end, w.segment_indices))
    rejected.sort(key=lambda r: r[0])
    return WindowResult(windows=windows, rejected=rejected, filtered=filtered)


def _widen(start: float, end: float, target: float, duration: float) -> tuple[float, float]:
    if duration <= target:
        return 0.0, duration
    centre = (start + end) / 2
    start, end = centre - target / 2, centre + target / 2
    if start < 0:
        start, end = 0.0, target
    elif end > duration:
        start, end = duration - target, duration
    return start, end


def _raw_indices(start: float, end: float, fps: float, n: int) -> list[int]:
    step = (end - start) / n
    return [math.floor((start + (i + 0.5) * step) * fps) for i in range(n)]


def _holds_frames(start: float, end: float, fps: float, n: int) -> bool:
    """Whether ``[start, end]`` spans ``n`` frame periods and yields ``n`` distinct frame indices."""
    if (end - start) * fps < n - _EPS:
        return False
    indices = _raw_indices(start, end, fps, n)
    return all(b > a for a, b in zip(indices, indices[1:]))


def tile_windows(
    duration: float,
    fps: float,
    window_s: float,
    caption: str,
    *,
    end_at: float | None = None,
    min_frames: int = 16,
) -> list[ClipWindow]:
    """Back-to-back windows ``[k*window_s, (k+1)*window_s]`` from 0 up to ``min(duration, end_at)``.

    The last partial window (shorter than ``window_s``) is dropped, so a video shorter than
    ``window_s`` (or ``end_at <= 0``) gives no window. ``caption`` labels every window (for agent
    trials, the instruction); ``end_at`` is typically the success time, so no window shows the agent
    after it reached the goal. Raises ``ValueError`` for a non-positive ``fps``/``window_s``, a
    negative or non-finite ``duration``, or a ``window_s`` that holds fewer than ``min_frames``
    frames at ``fps``.
    """
    _check_positive("fps", fps)
    _check_positive("window_s", window_s)
    if not _is_finite_number(duration) or duration < 0:
        raise ValueError(f"duration must be a finite number >= 0, got {duration!r}")
    if window_s * fps < min_frames - _EPS:
        raise ValueError(
            f"window_s={window_s} s holds {window_s * fps:.2f} frames at {fps:g} fps, "
            f"fewer than min_frames={min_frames}"
        )
    limit = float(duration)
    if end_at is not None:
        if not math.isfinite(end_at):
            raise ValueError(f"end_at must be finite, got {end_at!r}")
        limit = min(limit, end_at)
    text = normalise_text(caption)
    windows: list[ClipWindow] = []
    k = 0
    while (k + 1) * window_s <= limit + _EPS:
        windows.append(ClipWindow(round(k * window_s, 6), round((k + 1) * window_s, 6), text, ()))
        k += 1
    return windows


def frame_indices(window: ClipWindow, fps: float, num_frames: int, n: int = 16) -> list[int]:
    """``n`` strictly increasing frame indices spread evenly over ``window`` (see module docstring)."""
    _check_positive("fps", fps)
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    start, end = window.start, window.end
    if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end <= start:
        raise ValueError(f"invalid window [{start!r}, {end!r}]")
    if (end - start) * fps < n - _EPS:
        raise ValueError(
            f"window [{start:.3f}, {end:.3f}] s holds {(end - start) * fps:.2f} frames at "
            f"{fps:g} fps, fewer than n={n}"
        )
    indices = [min(max(i, 0), num_frames - 1) for i in _raw_indices(start, end, fps, n)]
    if any(b <= a for a, b in zip(indices, indices[1:])):
        raise ValueError(
            f"window [{start:.3f}, {end:.3f}] s does not give {n} distinct frames within "
            f"{num_frames} frames at {fps:g} fps: {indices}"
        )
    return indices
