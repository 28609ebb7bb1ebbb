"""What a narrating player says over a Crafter video: transcript segments placed around the
achievement unlocks, mixed with filler talk (some lines overlap), as JSON segments or as YouTube
auto-caption WebVTT."""

from __future__ import annotations

from typing import Any

import numpy as np

from goalcraft.crafter.tasks import TASKS

__all__ = ["transcript_segments", "webvtt"]

_FILLER_DAY = (
    "alright let's look around",
    "okay where are we",
    "let's head over this way",
    "not much going on over here",
    "let's keep moving",
    "hmm what's over there",
    "this looks like a nice spot",
    "we need to find some resources",
    "let's explore a little more",
    "so many trees around here",
    "I'll just walk around for a bit",
    "let me check the inventory real quick",
)
_FILLER_NIGHT = (
    "it's getting dark",
    "careful, zombies come out at night",
    "it's really dark now",
    "I can barely see anything",
)
_FILLER_START = ("hey everyone, welcome back to crafter", "hi guys, new world today", "okay let's get started")


def _floor3(x: float) -> float:
    return float(np.floor(x * 1000.0) / 1000.0)


def _ceil3(x: float) -> float:
    return float(np.ceil(x * 1000.0) / 1000.0)


def transcript_segments(events: list[tuple[int, str]], daylight: list[float], fps: int, duration: float,
                        rng: np.random.RandomState) -> list[dict[str, Any]]:
    """Narrated segments for a video: one around each unlock (merged while one line covers repeats
    of the same achievement), filler talk in the gaps; some lines overlap."""
    spans: list[tuple[float, float, str]] = []
    open_until: dict[str, float] = {}
    for step, name in events:
        t = step / fps
        if open_until.get(name, -1.0) >= t:
            continue  # still talking about the last one
        start = max(0.0, _floor3(t - rng.uniform(1.0, 2.0)))
        end = min(duration, _ceil3(t + rng.uniform(0.8, 2.0)))
        phrases = TASKS[name]["narration"]
        spans.append((start, end, phrases[rng.randint(len(phrases))]))
        open_until[name] = end
    spans.sort()

    fillers: list[tuple[float, float, str]] = []
    covered = 0.0
    for next_start, next_end in [(s, e) for s, e, _ in spans] + [(duration, duration)]:
        while True:  # talk through the gap before the next narrated line
            start = covered + rng.uniform(0.1, 1.2)
            end = start + rng.uniform(1.5, 3.0)
            if end > min(duration, next_start + 0.6):  # may run a little into the next line
                break
            frame = min(len(daylight) - 1, int(start * fps))
            if not fillers and start < 4.0:
                pool = _FILLER_START
            else:
                pool = _FILLER_NIGHT if daylight[frame] < 0.35 else _FILLER_DAY
            fillers.append((_floor3(start), _ceil3(end), pool[rng.randint(len(pool))]))
            covered = end - rng.uniform(0.0, 0.4)
        covered = max(covered, next_end)
    segments = sorted(spans + fillers)
    return [
        {"text": text, "start": start, "duration": round(end - start, 3)}
        for start, end, text in segments
    ]


def _vtt_time(t: float) -> str:
    ms = int(round(t * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def webvtt(segments: list[dict[str, Any]]) -> str:
    """YouTube auto-caption style WebVTT: each cue shows the previous line, then the new line with
    per-word timing tags; a 10 ms cue then shows the finished line alone (as YouTube does)."""
    lines = ["WEBVTT", "Kind: captions", "Language: en", ""]
    starts: list[float] = []
    for seg in segments:
        start = seg["start"] if not starts else max(seg["start"], starts[-1] + 0.05)
        starts.append(round(start, 3))
    previous = ""
    for i, seg in enumerate(segments):
        start = starts[i]
        end = round(seg["start"] + seg["duration"], 3)
        if i + 1 < len(segments):
            end = min(end, starts[i + 1] - 0.01)
        end = round(max(end, start + 0.02), 3)
        words = seg["text"].split()
        step = (end - start) / max(1, len(words))
        timed = words[0] + "".join(
            f"<{_vtt_time(start + k * step)}><c> {w}</c>" for k, w in enumerate(words[1:], start=1))
        lines += [f"{_vtt_time(start)} --> {_vtt_time(end)} align:start position:0%", previous or " ", timed, ""]
        lines += [f"{_vtt_time(end)} --> {_vtt_time(end + 0.01)} align:start position:0%", seg["text"], " ", ""]
        previous = seg["text"]
    return "\n".join(lines)
