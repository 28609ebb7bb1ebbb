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
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import pyarrow as pa

from goalcraft.data.paths import relative_to_root, resolve_inside
from goalcraft.data.quarantine import InputError, QuarantineRecord, json_error_detail
from goalcraft.data.tables import record_schema, table_records

__all__ = [
    "TRANSCRIPT_SUFFIXES",
    "VIDEO_EXTENSIONS",
    "ManifestError",
    "VideoRecord",
    "read_manifest",
    "read_manifest_table",
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
_BOM = b"\xef\xbb\xbf"


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


_SCHEMA = record_schema(VideoRecord)


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
    table, quarantined = read_manifest_table(paths, corpus_root, require_video=require_video)
    return table_records(table, VideoRecord), quarantined


def read_manifest_table(
    paths: Iterable[Path], corpus_root: Path, *, require_video: bool = True
) -> tuple[pa.Table, list[QuarantineRecord]]:
    """:func:`read_manifests` as an Arrow table with :class:`VideoRecord`'s columns, for corpora of
    MineDojo's size (730K records): files are read line by line, each usable record goes straight into
    columns (no record object), and the ``videos/`` and ``transcripts/`` folders are listed once
    instead of probing each record's candidate files (docs/scale.md has the figures)."""
    corpus_root = Path(corpus_root)
    if not corpus_root.is_dir():
        raise ManifestError(f"corpus root {str(corpus_root)!r} is not a directory")
    root = corpus_root.resolve()
    folders = {name: _Listing(root, name) for name in ("videos", "transcripts")}
    seen: set[str] = set()
    columns: dict[str, list[Any]] = {name: [] for name in _SCHEMA.names}
    quarantined: list[QuarantineRecord] = []
    for path in paths:
        path = Path(path)
        for line_no, raw in _iter_raw_records(path):
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
                video_path, transcript_path = _locate_files(fields, root, require_video, folders)
            except InputError as exc:
                quarantined.append(
                    QuarantineRecord(
                        input=f"{path.name}:{line_no}", stage=STAGE, reason=exc.reason, detail=exc.detail,
                        source_id=source_id,
                    )
                )
                continue
            fields["video_path"], fields["transcript_path"] = video_path, transcript_path
            for name, column in columns.items():
                column.append(fields[name])
    table = pa.table({name: pa.array(values, _SCHEMA.field(name).type) for name, values in columns.items()},
                     schema=_SCHEMA)
    return table, quarantined


# --------------------------------------------------------------------------------------------------
# Reading the file


@dataclass(frozen=True)
class _Malformed:
    detail: str


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise _not_found(path) from exc
    except OSError as exc:
        raise ManifestError(f"cannot read manifest {str(path)!r}: {exc}") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, exc.start, exc.reason) from exc


def _not_found(path: Path) -> ManifestError:
    return ManifestError(f"manifest {str(path)!r} not found (a corpus of agent trials only needs "
                         "[paths] manifests = [])")


def _not_utf8(path: Path, offset: int, reason: str) -> ManifestError:
    return ManifestError(f"manifest {str(path)!r} is not UTF-8 (byte offset {offset}): {reason}")


def _iter_raw_records(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value or _Malformed) for every record of the file, in file order.

    JSON Lines are read one line at a time (a 730K-record manifest is never held whole); a file
    that is not UTF-8 raises :class:`ManifestError` when the reader reaches the bad byte.
    """
    if path.suffix.lower() == ".json":
        yield from _json_list_records(path, _read_text(path))
        return
    try:
        f = open(path, "rb")
    except FileNotFoundError as exc:
        raise _not_found(path) from exc
    except OSError as exc:
        raise ManifestError(f"cannot read manifest {str(path)!r}: {exc}") from exc
    with f:
        offset = 0
        line_no = 0
        try:
            # Split on b"\n" only: str.splitlines() would also split on U+2028 etc., which JSON
            # strings may hold (and a UTF-8 b"\n" byte is always a newline).
            for raw in f:
                line_no += 1
                start = 3 if line_no == 1 and raw.startswith(_BOM) else 0
                try:
                    line = raw[start:].decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise _not_utf8(path, offset + start + exc.start, exc.reason) from exc
                offset += len(raw)
                line = line.rstrip("\n").rstrip("\r")
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except (ValueError, RecursionError) as exc:  # JSONDecodeError, huge ints, deep nesting
                    value = _Malformed(f"invalid JSON: {json_error_detail(exc)}")
                yield line_no, value
        except OSError as exc:  # a folder named like a manifest, an I/O error
            raise ManifestError(f"cannot read manifest {str(path)!r}: {exc}") from exc


def _json_list_records(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    try:
        whole = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ManifestError(f"manifest {str(path)!r} is not valid JSON: {json_error_detail(exc)}") from exc
    if not isinstance(whole, list):
        raise ManifestError(
            f"manifest {str(path)!r} must hold a JSON list of records, got {_json_type(whole)}"
        )
    # The file parsed, so walking it element by element cannot fail; this only finds each element's
    # line (the line its first character is on), counting newlines from the previous element on.
    del whole
    decoder = json.JSONDecoder()
    pos = _skip_ws(text, 0)
    assert text[pos] == "["
    pos = _skip_ws(text, pos + 1)
    if text[pos] == "]":
        return
    line_no, counted = 1, 0
    while True:
        line_no += text.count("\n", counted, pos)
        counted = pos
        value, pos = decoder.raw_decode(text, pos)
        yield line_no, value
        pos = _skip_ws(text, pos)
        if text[pos] == "]":
            return
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


class _Listing:
    """One corpus folder (``videos/``, ``transcripts/``) listed once: the names of its regular files,
    so that finding a record's default files is a set look-up, not a ``resolve`` and ``stat`` per
    candidate. Symlinks, and a folder that is itself a link out of the root, keep the per-record
    checks (:func:`resolve_inside`), so every record gets the answer it would get file by file."""

    def __init__(self, root: Path, name: str) -> None:
        self.name = name
        self.files: set[str] = set()
        self.links: set[str] = set()
        self.prefix: str | None = None  # the folder's resolved location, relative to the root
        folder = root / name
        try:
            resolved = folder.resolve()
            if not folder.is_dir() or not (resolved == root or resolved.is_relative_to(root)):
                return  # missing (nothing to find), or outside the root: checked record by record
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.is_symlink():
                        self.links.add(entry.name)
                    elif entry.is_file(follow_symlinks=False):
                        self.files.add(entry.name)
        except (OSError, RuntimeError):
            return
        self.prefix = relative_to_root(root, resolved)

    def find(self, root: Path, name: str, *, only_present: bool = False) -> str | None:
        """``<folder>/<name>`` relative to the root if it is a file inside the root, else None; raises
        :class:`InputError` where :func:`resolve_inside` would (a link out of the root), for an
        absent name too unless ``only_present``."""
        if self.prefix is not None:
            if name in self.files:
                return name if self.prefix == "." else f"{self.prefix}/{name}"
            if name not in self.links:
                return None
        rel = f"{self.name}/{name}"
        if only_present and not ((root / rel).is_file() or (root / rel).is_symlink()):
            return None
        path = resolve_inside(root, rel)
        return relative_to_root(root, path) if path.is_file() else None


def _locate_files(fields: dict[str, Any], root: Path, require_video: bool,
                  folders: dict[str, _Listing]) -> tuple[str, str | None]:
    """The record's video and transcript paths, relative to the (resolved) root."""
    video_id: str = fields["id"]

    if fields["path"] is not None:
        video = resolve_inside(root, fields["path"])
        if require_video and not video.is_file():
            raise InputError("video_missing", f"video file {fields['path']!r} does not exist")
        video_path = relative_to_root(root, video)
    else:
        found = next((v for ext in VIDEO_EXTENSIONS
                      if (v := folders["videos"].find(root, f"{video_id}.{ext}", only_present=True))), None)
        if found is not None:
            video_path = found
        elif require_video:
            tried = ", ".join(f"videos/{video_id}.{ext}" for ext in VIDEO_EXTENSIONS)
            raise InputError("video_missing", f"no video file found (tried {tried})")
        else:
            video_path = relative_to_root(root, resolve_inside(root, f"videos/{video_id}.{VIDEO_EXTENSIONS[0]}"))

    if fields["transcript"] is not None:
        transcript_path: str | None = relative_to_root(root, resolve_inside(root, fields["transcript"]))
    else:
        transcript_path = next((t for suffix in TRANSCRIPT_SUFFIXES
                                if (t := folders["transcripts"].find(root, f"{video_id}{suffix}"))), None)
    return video_path, transcript_path
