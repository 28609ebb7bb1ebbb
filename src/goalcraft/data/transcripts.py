"""Timed transcripts: JSON segment lists and WebVTT captions, read into :class:`Segment` lists.

Both readers are strict and all-or-nothing: a file either yields a clean, start-sorted list of
segments or raises :class:`~goalcraft.data.quarantine.InputError` (stage ``transcript``) with one of

* ``transcript_missing``: the file does not exist (or is not a regular file);
* ``transcript_unreadable``: the file exists but cannot be read (permissions, I/O error);
* ``transcript_unsupported_format``: the suffix is neither ``.json`` nor ``.vtt``;
* ``transcript_not_utf8``: the bytes are not UTF-8 (a leading BOM is allowed and ignored);
* ``transcript_malformed``: invalid JSON, wrong structure, or any single invalid segment / cue
  (the detail names the segment index or the VTT line number): one bad segment rejects the file,
  because a transcript with holes would silently mis-caption the clips around the hole;
* ``transcript_empty``: no segments, or only segments whose text is blank.

Text is whitespace-normalised (runs of whitespace, newlines included, become one space; leading and
trailing whitespace is removed). Segments whose normalised text is empty are dropped. Non-speech
markers such as ``[Music]`` are kept verbatim; the clip-window stage decides what to do with them.

JSON
    A list of objects ``{"text": str, "start": number, "duration": number}`` (seconds). ``start`` and
    ``duration`` must be finite and non-negative (booleans and numeric strings are not numbers).
    Other keys are ignored. Segments may overlap; the result is sorted by ``start`` (stable).

WebVTT
    ``WEBVTT`` signature line (BOM allowed), header lines (``Kind:``, ``Language:``) up to the first
    empty line, then blocks separated by empty lines. ``NOTE``, ``STYLE`` and ``REGION`` blocks are
    skipped. A cue is an optional identifier line, a timing line ``[HH:]MM:SS.mmm --> [HH:]MM:SS.mmm``
    (hours may have 1 to 9 digits; anything after the end time, e.g. ``align:start
    position:0%``, is a cue setting and ignored) and text lines. Only a zero-length line ends a
    block: a line holding just a space (as YouTube writes) is cue text. A line containing ``-->``
    inside a cue starts the next cue. Inline tags (``<c>``, ``</c>``, ``<c.colorE5E5E5>``, ``<i>``,
    ``<v Speaker>``, word timestamps ``<00:00:01.520>``) are removed, then HTML character references
    (``&amp;``, ``&nbsp;`` ...) are decoded. A cue whose end is before its start is malformed.

    Rolling-caption de-duplication (YouTube auto-captions show the previous line above the new one,
    and insert 10 ms "transition" cues that repeat a line alone). Cues are taken in start order
    (stable) and each cue's non-blank text lines are matched against the lines shown by the
    *immediately preceding* cue, in order (the i-th line of a cue continues the earliest not yet
    matched, equal line of the previous cue that comes after the last match). The rule:

    * a line that continues a line of the previous cue is the same spoken line: it extends that
      line's end to this cue's end, whatever the time gap between the cues;
    * any other line is a new spoken line starting at this cue's start;
    * a spoken line ends at the end of the last cue that showed it without interruption (a line
      that disappears for one cue and comes back later is a new line);
    * lines that first appear in the same cue and are last shown in the same cue are one caption
      (a wrapped multi-line cue in hand-made subtitles): they become one segment, joined with a space.

    So each spoken line becomes exactly one :class:`Segment` with ``start`` = the start of the cue
    where it first appeared and ``end`` = the end of the last cue that showed it. For rolling
    captions consecutive segments therefore overlap (a line stays on screen while the next is
    spoken), exactly like YouTube's JSON transcripts; :mod:`goalcraft.data.windows` trims the overlap.
"""

from __future__ import annotations

import html
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from goalcraft.data.quarantine import InputError, json_error_detail

__all__ = [
    "Segment",
    "normalise_text",
    "parse_json_transcript",
    "parse_vtt",
    "read_transcript",
]

STAGE = "transcript"


@dataclass(frozen=True)
class Segment:
    """One caption line: ``text`` spoken from ``start`` for ``duration`` seconds."""

    text: str
    start: float
    duration: float

    @property
    def end(self) -> float:
        return self.start + self.duration


def normalise_text(text: str) -> str:
    """Collapse every run of whitespace (newlines, tabs, no-break spaces) into one space and strip.

    Lone surrogates (possible through JSON ``"\\ud800"`` escapes) become ``?`` so the text can
    always be written as UTF-8.
    """
    return " ".join(text.encode("utf-8", "replace").decode("utf-8").split())


def read_transcript(path: Path) -> list[Segment]:
    """Read a ``.json`` or ``.vtt`` transcript (suffix case-insensitive). Raises :class:`InputError`."""
    path = Path(path)
    if not path.is_file():
        raise InputError("transcript_missing", f"transcript {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix not in (".json", ".vtt"):
        raise InputError(
            "transcript_unsupported_format",
            f"transcript {path.name!r}: expected a .json or .vtt file",
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError("transcript_unreadable", f"cannot read {path.name!r}: {exc}") from exc
    if suffix == ".json":
        return parse_json_transcript(data)
    return parse_vtt(data)


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            "transcript_not_utf8", f"not UTF-8 at byte offset {exc.start}: {exc.reason}"
        ) from exc


def _finish(segments: list[Segment]) -> list[Segment]:
    kept = [s for s in segments if s.text]
    if not kept:
        detail = "no segments" if not segments else "every segment has blank text"
        raise InputError("transcript_empty", detail)
    return sorted(kept, key=lambda s: s.start)  # sorted() is stable


# --------------------------------------------------------------------------------------------------
# JSON


def parse_json_transcript(data: bytes) -> list[Segment]:
    """Parse ``[{"text", "start", "duration"}, ...]``; see the module docstring for the rules."""
    text = _decode(data)
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, huge ints, deep nesting
        raise InputError("transcript_malformed", f"invalid JSON: {json_error_detail(exc)}") from exc
    if not isinstance(value, list):
        raise InputError(
            "transcript_malformed", f"expected a JSON list of segments, got {type(value).__name__}"
        )
    segments = [_json_segment(index, item) for index, item in enumerate(value)]
    return _finish(segments)


def _json_segment(index: int, item: Any) -> Segment:
    def bad(detail: str) -> InputError:
        return InputError("transcript_malformed", f"segment {index}: {detail}")

    if not isinstance(item, dict):
        raise bad(f"expected an object, got {type(item).__name__}")
    for key in ("text", "start", "duration"):
        if key not in item:
            raise bad(f"missing {key!r}")
    if not isinstance(item["text"], str):
        raise bad(f"'text' must be a string, got {type(item['text']).__name__}")
    numbers = {}
    for key in ("start", "duration"):
        value = item[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad(f"{key!r} must be a number, got {type(value).__name__}")
        try:
            value = float(value)
        except OverflowError:  # an integer too large for a float
            value = math.inf
        if not math.isfinite(value):
            raise bad(f"{key!r} must be finite, got {value!r}")
        if value < 0:
            raise bad(f"{key!r} must not be negative, got {value!r}")
        numbers[key] = value
    return Segment(normalise_text(item["text"]), numbers["start"], numbers["duration"])


# --------------------------------------------------------------------------------------------------
# WebVTT

_TIMESTAMP = r"(?:(\d{1,9}):)?([0-5]\d):([0-5]\d)\.(\d{3})"
_TIMING = re.compile(rf"^{_TIMESTAMP}[ \t]+-->[ \t]+{_TIMESTAMP}(?:[ \t]+.*)?$")
_TAG = re.compile(r"<[^>\n]*>")
_SKIPPED_BLOCKS = ("NOTE", "STYLE", "REGION")


@dataclass
class _Cue:
    start_ms: int
    end_ms: int
    lines: list[str]


@dataclass
class _Line:
    text: str
    start_ms: int
    end_ms: int
    first_cue: int
    last_cue: int


def _ms(hours: str | None, minutes: str, seconds: str, millis: str) -> int:
    return ((int(hours or 0) * 60 + int(minutes)) * 60 + int(seconds)) * 1000 + int(millis)


def _is_keyword_line(line: str, keyword: str) -> bool:
    return line == keyword or line.startswith((keyword + " ", keyword + "\t"))


def _clean_cue_line(line: str) -> str:
    return normalise_text(html.unescape(_TAG.sub("", line)))


def _vtt_blocks(lines: list[str]) -> list[tuple[int, list[str]]]:
    """Split the body (everything after the header) into (first line number, lines) blocks."""
    i = 1
    while i < len(lines) and lines[i] != "" and "-->" not in lines[i]:
        i += 1  # header lines: Kind:, Language:, ...
    blocks: list[tuple[int, list[str]]] = []
    current: list[str] | None = None
    current_start = 0
    for k in range(i, len(lines)):
        line = lines[k]
        if line == "":
            if current is not None:
                blocks.append((current_start, current))
                current = None
            continue
        if current is not None and "-->" in line:
            special = any(_is_keyword_line(current[0], kw) for kw in _SKIPPED_BLOCKS)
            if special or any("-->" in earlier for earlier in current):
                blocks.append((current_start, current))
                current = None
        if current is None:
            current, current_start = [line], k + 1
        else:
            current.append(line)
    if current is not None:
        blocks.append((current_start, current))
    return blocks


def _vtt_cues(text: str) -> list[_Cue]:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if not (lines[0] == "WEBVTT" or lines[0].startswith(("WEBVTT ", "WEBVTT\t"))):
        raise InputError("transcript_malformed", "line 1: missing the 'WEBVTT' signature")
    cues: list[_Cue] = []
    for line_no, block in _vtt_blocks(lines):
        if any(_is_keyword_line(block[0], kw) for kw in _SKIPPED_BLOCKS):
            continue
        if "-->" in block[0]:
            timing_at = 0
        elif len(block) > 1 and "-->" in block[1]:
            timing_at = 1  # block[0] is a cue identifier
        elif all(not line.strip() for line in block):
            continue  # stray whitespace-only lines between cues
        else:
            raise InputError(
                "transcript_malformed", f"line {line_no}: expected a cue timing line, got {block[0]!r}"
            )
        timing_line_no = line_no + timing_at
        match = _TIMING.match(block[timing_at].strip())
        if match is None:
            raise InputError(
                "transcript_malformed",
                f"line {timing_line_no}: invalid cue timing {block[timing_at]!r}",
            )
        groups = match.groups()
        start_ms, end_ms = _ms(*groups[:4]), _ms(*groups[4:8])
        if end_ms < start_ms:
            raise InputError(
                "transcript_malformed", f"line {timing_line_no}: cue ends before it starts"
            )
        texts = [_clean_cue_line(line) for line in block[timing_at + 1 :]]
        cues.append(_Cue(start_ms, end_ms, [t for t in texts if t]))
    return cues


def _dedupe_rolling(cues: list[_Cue]) -> list[Segment]:
    """Apply the rolling-caption rule of the module docstring."""
    cues = sorted(cues, key=lambda c: c.start_ms)  # stable: equal starts keep file order
    spoken: list[_Line] = []
    shown: list[_Line] = []  # lines of the previous cue, in display order
    for cue_index, cue in enumerate(cues):
        now_shown: list[_Line] = []
        search_from = 0
        for text in cue.lines:
            match = None
            for j in range(search_from, len(shown)):
                if shown[j].text == text:
                    match = j
                    break
            if match is not None:
                line = shown[match]
                line.end_ms = max(line.end_ms, cue.end_ms)
                line.last_cue = cue_index
                search_from = match + 1
            else:
                line = _Line(text, cue.start_ms, cue.end_ms, cue_index, cue_index)
                spoken.append(line)
            now_shown.append(line)
        shown = now_shown

    segments: list[Segment] = []
    groups: dict[tuple[int, int], list[_Line]] = {}
    for line in spoken:
        groups.setdefault((line.first_cue, line.last_cue), []).append(line)
    emitted: set[tuple[int, int]] = set()
    for line in spoken:  # creation order = (first cue, position in cue)
        key = (line.first_cue, line.last_cue)
        if key in emitted:
            continue
        emitted.add(key)
        members = groups[key]
        start_ms = members[0].start_ms
        end_ms = max(m.end_ms for m in members)
        text = " ".join(m.text for m in members)
        segments.append(Segment(text, start_ms / 1000, (end_ms - start_ms) / 1000))
    return segments


def parse_vtt(data: bytes) -> list[Segment]:
    """Parse WebVTT captions, de-duplicating rolling lines; see the module docstring for the rules."""
    text = _decode(data)
    if not text.strip():
        raise InputError("transcript_malformed", "file is empty (no 'WEBVTT' signature)")
    return _finish(_dedupe_rolling(_vtt_cues(text)))
