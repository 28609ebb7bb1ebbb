"""Video manifests: MineDojo YouTube-database records, plus optional local ``path`` / ``transcript``.

A manifest is either JSON Lines (one object per line; any suffix other than ``.json``) or a single
JSON list (``.json``). Each record becomes a :class:`VideoRecord`, or, when it cannot be used, a
:class:`~goalcraft.data.quarantine.QuarantineRecord` with stage ``manifest``. A manifest that cannot
be read at all (missing, not UTF-8, a ``.json`` file that is not a JSON list) is a configuration
error and raises :class:`ManifestError` instead.

Per-record checks, in this order (the first failure is the reason recorded):

1. ``manifest_malformed``: the line is not valid JSON, or the record is not a JSON object.
2. ``manifest_invalid_field``: ``id`` is not a non-empty string without surrounding whitespace,
   path separators or control characters (and not ``.``/``..``); ``duration`` or ``fps`` is missing
   or not a positive finite number; ``title``/``link`` present but neither a string nor null
   (lone surrogates in them are replaced by ``?``; in an ``id`` they are invalid);
   ``view_count``/``like_count`` present but neither a non-negative integer nor null; ``path`` /
   ``transcript`` present but neither a string nor null.
3. ``manifest_duplicate_id``: an earlier record (in this file or an earlier file of the same
   :func:`read_manifests` call) already claimed the id. The first record with a valid id claims it
   even if that record is later quarantined for another reason, so a duplicate is never promoted.
4. ``path_escapes_root`` / ``path_invalid``: ``path`` or ``transcript`` does not stay inside the
   corpus root (see :mod:`goalcraft.data.paths`).
5. ``video_missing``: the video file does not exist (or is not a regular file), or, with no
   ``path`` field, no ``videos/<id>.<ext>`` exists for a known video extension.

The transcript is not opened here: a ``transcript`` field naming a file that does not exist is kept
and the transcript stage quarantines it (``transcript_missing``). Without a ``transcript`` field the
default is the first existing of ``transcripts/<id>.json``, ``transcripts/<id>.vtt`` and
``transcripts/<id>.en.vtt`` (yt-dlp's name for English captions), else no transcript (``None``).
Without a ``path`` field the video is the first existing ``videos/<id>.<ext>`` for ``ext`` in
:data:`VIDEO_EXTENSIONS` order.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from goalcraft.data.paths import relative_to_root, resolve_inside
from goalcraft.data.quarantine import InputError, QuarantineRecord, json_error_detail

__all__ = [
    "TRANSCRIPT_SUFFIXES",
    "VIDEO_EXTENSIONS",
    "ManifestError",
    "VideoRecord",
    "read_manifest",
    "read_manifests",
]

#: Extensions tried for the default ``videos/<id>.<ext>`` path, in order of preference. Other files
#: next to a video (``<id>.info.json``, ``<id>.webp`` thumbnails, ``<id>.mp4.part``) are never picked.
# Any container FFmpeg (PyAV, decord) demuxes; GIFs included (short clips, screen captures).
VIDEO_EXTENSIONS: tuple[str, ...] = ("mp4", "webm", "mkv", "mov", "avi", "m4v", "flv", "gif", "mpg", "mpeg", "ts",
                                     "ogv", "wmv", "3gp")

#: Default transcript files tried, in order: ``transcripts/<id><suffix>``. ``.en.vtt`` is what yt-dlp
#: writes for English (auto-)captions (see goalcraft.data.download).
TRANSCRIPT_SUFFIXES: tuple[str, ...] = (".json", ".vtt", ".en.vtt")

STAGE = "manifest"
_INT64_LIMIT = 2**63


class ManifestError(Exception):
    """A manifest file that cannot be read at all: a configuration error, not a per-record one."""


@dataclass(frozen=True)
class VideoRecord:
    """One usable video from a manifest.

    ``video_path`` and ``transcript_path`` are relative to the corpus root, POSIX style, after
    resolving symlinks (so they always name a location inside the root).
    """

    id: str
    title: str
    link: str
    view_count: int | None
    like_count: int | None
    duration: float
    fps: float
    video_path: str
    transcript_path: str | None


def read_manifest(
    path: Path, corpus_root: Path, *, require_video: bool = True
) -> tuple[list[VideoRecord], list[QuarantineRecord]]:
    """Read one manifest file. See the module docstring for the format and the checks."""
    return read_manifests([path], corpus_root, require_video=require_video)


def read_manifests(
    paths: Iterable[Path], corpus_root: Path, *, require_video: bool = True
) -> tuple[list[VideoRecord], list[QuarantineRecord]]:
    """Read several manifest files in the given order; ids must be unique across all of them.

    With ``require_video=False`` (used by the downloader to find what to fetch) a missing video is
    not a failure: the record keeps ``video_path`` = its ``path`` field, or the first existing
    ``videos/<id>.<ext>``, or ``videos/<id>.mp4``.
    """
    corpus_root = Path(corpus_root)
    if not corpus_root.is_dir():
        raise ManifestError(f"corpus root {str(corpus_root)!r} is not a directory")
    seen: set[str] = set()
    records: list[VideoRecord] = []
    quarantined: list[QuarantineRecord] = []
    for path in paths:
        path = Path(path)
        for line_no, raw in _iter_raw_records(path):
            where = f"{path.name}:{line_no}"
            source_id = ""
            try:
                if isinstance(raw, _Malformed):
                    raise InputError("manifest_malformed", raw.detail)
                if not isinstance(raw, dict):
                    raise InputError(
                        "manifest_malformed", f"expected a JSON object, got {_json_type(raw)}"
                    )
                fields = _validate_fields(raw)
                source_id = fields["id"]
                if source_id in seen:
                    raise InputError("manifest_duplicate_id", f"id {source_id!r} already listed")
                seen.add(source_id)
                records.append(_locate_files(fields, corpus_root, require_video))
            except InputError as exc:
                quarantined.append(
                    QuarantineRecord(
                        input=where, stage=STAGE, reason=exc.reason, detail=exc.detail,
                        source_id=source_id,
                    )
                )
    return records, quarantined


# --------------------------------------------------------------------------------------------------
# Reading the file


@dataclass(frozen=True)
class _Malformed:
    detail: str


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise ManifestError(f"manifest {str(path)!r} not found (a corpus of agent trials only needs "
                            "[paths] manifests = [])") from exc
    except OSError as exc:
        raise ManifestError(f"cannot read manifest {str(path)!r}: {exc}") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ManifestError(
            f"manifest {str(path)!r} is not UTF-8 (byte offset {exc.start}): {exc.reason}"
        ) from exc


def _iter_raw_records(path: Path) -> list[tuple[int, Any]]:
    """(line number, parsed value or _Malformed) for every record of the file, in file order."""
    text = _read_text(path)
    if path.suffix.lower() == ".json":
        return _json_list_records(path, text)
    out: list[tuple[int, Any]] = []
    # Split on "\n" only: str.splitlines() would also split on U+2028 etc., which JSON strings may hold.
    for index, line in enumerate(text.split("\n")):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, huge ints, deep nesting
            value = _Malformed(f"invalid JSON: {json_error_detail(exc)}")
        out.append((index + 1, value))
    return out


def _json_list_records(path: Path, text: str) -> list[tuple[int, Any]]:
    try:
        whole = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ManifestError(f"manifest {str(path)!r} is not valid JSON: {json_error_detail(exc)}") from exc
    if not isinstance(whole, list):
        raise ManifestError(
            f"manifest {str(path)!r} must hold a JSON list of records, got {_json_type(whole)}"
        )
    # The file parsed, so walking it element by element cannot fail; this only finds each element's
    # line (the line its first character is on).
    decoder = json.JSONDecoder()
    pos = _skip_ws(text, 0)
    assert text[pos] == "["
    pos = _skip_ws(text, pos + 1)
    out: list[tuple[int, Any]] = []
    if text[pos] == "]":
        return out
    while True:
        line_no = text.count("\n", 0, pos) + 1
        value, pos = decoder.raw_decode(text, pos)
        out.append((line_no, value))
        pos = _skip_ws(text, pos)
        if text[pos] == "]":
            return out
        pos = _skip_ws(text, pos + 1)  # the comma


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


# --------------------------------------------------------------------------------------------------
# Field validation


def _validate_fields(raw: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {"id": _valid_id(raw.get("id"))}
    for name in ("duration", "fps"):
        fields[name] = _positive_number(raw, name)
    for name in ("title", "link"):
        fields[name] = _valid_unicode(_optional_str(raw, name) or "")
    for name in ("view_count", "like_count"):
        fields[name] = _optional_count(raw, name)
    for name in ("path", "transcript"):
        fields[name] = _optional_str(raw, name)
    return fields


def _invalid(detail: str) -> InputError:
    return InputError("manifest_invalid_field", detail)


def _valid_id(value: Any) -> str:
    if not isinstance(value, str):
        raise _invalid("id: required, must be a string" if value is None else
                       f"id: must be a string, got {_json_type(value)}")
    if value == "" or value.strip() != value:
        raise _invalid(f"id: must be non-empty without surrounding whitespace, got {value!r}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _invalid(f"id: not valid Unicode (lone surrogate escape), got {value!r}") from None
    if value in (".", "..") or any(c in value for c in "/\\") or any(
        ord(c) < 32 or ord(c) == 127 for c in value
    ):
        raise _invalid(f"id: must not hold path separators or control characters, got {value!r}")
    return value


def _valid_unicode(text: str) -> str:
    """Replace lone surrogates (JSON allows ``"\\ud800"``) so the text can be written as UTF-8."""
    return text.encode("utf-8", "replace").decode("utf-8")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive_number(raw: dict[str, Any], name: str) -> float:
    if name not in raw or raw[name] is None:
        raise _invalid(f"{name}: required")
    value = raw[name]
    if not _is_number(value):
        raise _invalid(f"{name}: must be a number, got {_json_type(value)}")
    try:
        value = float(value)
    except OverflowError:  # an integer too large for a float
        value = math.inf
    if not math.isfinite(value) or value <= 0:
        raise _invalid(f"{name}: must be a positive finite number, got {value!r}")
    return value


def _optional_str(raw: dict[str, Any], name: str) -> str | None:
    value = raw.get(name)
    if value is None or isinstance(value, str):
        return value
    raise _invalid(f"{name}: must be a string or null, got {_json_type(value)}")


def _optional_count(raw: dict[str, Any], name: str) -> int | None:
    value = raw.get(name)
    if value is None:
        return None
    if _is_number(value) and isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < _INT64_LIMIT:
        raise _invalid(f"{name}: must be a non-negative 64-bit integer or null, got {value!r}")
    return value


# --------------------------------------------------------------------------------------------------
# Files


def _locate_files(fields: dict[str, Any], corpus_root: Path, require_video: bool) -> VideoRecord:
    root = corpus_root.resolve()
    video_id: str = fields["id"]

    if fields["path"] is not None:
        video = resolve_inside(root, fields["path"])
        if require_video and not video.is_file():
            raise InputError("video_missing", f"video file {fields['path']!r} does not exist")
    else:
        try:
            video = _default_video(root, video_id)
        except InputError as exc:
            if require_video or exc.reason != "video_missing":
                raise
            video = resolve_inside(root, f"videos/{video_id}.{VIDEO_EXTENSIONS[0]}")

    transcript: Path | None
    if fields["transcript"] is not None:
        transcript = resolve_inside(root, fields["transcript"])
    else:
        transcript = None
        for suffix in TRANSCRIPT_SUFFIXES:
            candidate = resolve_inside(root, f"transcripts/{video_id}{suffix}")
            if candidate.is_file():
                transcript = candidate
                break

    return VideoRecord(
        id=video_id,
        title=fields["title"],
        link=fields["link"],
        view_count=fields["view_count"],
        like_count=fields["like_count"],
        duration=fields["duration"],
        fps=fields["fps"],
        video_path=relative_to_root(root, video),
        transcript_path=None if transcript is None else relative_to_root(root, transcript),
    )


def _default_video(root: Path, video_id: str) -> Path:
    for ext in VIDEO_EXTENSIONS:
        rel = f"videos/{video_id}.{ext}"
        lexical = root / rel
        if lexical.is_file() or lexical.is_symlink():
            # resolve_inside raises path_escapes_root for a symlink that points out of the root.
            video = resolve_inside(root, rel)
            if video.is_file():
                return video
    tried = ", ".join(f"videos/{video_id}.{ext}" for ext in VIDEO_EXTENSIONS)
    raise InputError("video_missing", f"no video file found (tried {tried})")
