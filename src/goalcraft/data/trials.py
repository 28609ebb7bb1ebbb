"""Agent trial recordings: one folder per trial under the corpus's trials directory.

Two layouts are read (a folder holding both a ``video.*`` and a ``frames.mp4`` is read as goalcraft):

goalcraft
    ``video.<ext>`` (``ext`` one of mp4, mkv, webm, avi, mov; the first existing in that order) and
    ``metadata.json``: ``{"instruction": str, "success": bool, "success_time": seconds,
    "success_frame": int, "task": str?, "fps": number?}``. ``instruction`` and ``success`` are
    required.

STEVE-1 ``EpisodeStorage``
    ``frames.mp4``, ``metadata.json`` and (optional) ``len.txt`` holding the frame count. The
    instruction is the first non-blank string among the metadata keys ``instruction``,
    ``text_prompt``, ``prompt``, ``task`` (in that order). ``success`` is optional here (default
    ``false``): episodes recorded for training carry no outcome. ``*.pkl`` files
    (``actions.pkl``, ``embeds_attn.pkl``) are never opened: unpickling runs arbitrary code.

Two more layouts, ``steve1_result`` (STEVE-1 evaluation result folders) and ``recorded_sample``
(recorded samples), are read by :mod:`goalcraft.data.steve1_eval` into the same :class:`TrialRecord`.

Common rules
    * Folders are visited in sorted name order; hidden entries (name starting with ``.``) and plain
      files directly in the trials directory are ignored (they are not trials).
    * Trial id: the folder name when it only holds ``[A-Za-z0-9_-]``; otherwise every other
      character becomes ``_`` and ``-`` plus the first 8 hex digits of the SHA-1 of the UTF-8 name
      is appended (so ``"my trial"`` and ``"my_trial"`` stay distinct). ``video_path`` keeps the
      real folder name.
    * ``success_time`` (seconds, finite, >= 0) or ``success_frame`` (integer, >= 0) is required
      when ``success`` is true and must be absent or null when it is false. When both are given and
      ``fps`` is known they must agree within one frame: ``abs(success_time * fps - success_frame)
      <= 1``. When ``fps`` is known the missing one is derived: ``success_frame =
      floor(success_time * fps)``, ``success_time = success_frame / fps``. When ``len.txt`` is
      known, ``success_frame`` must be below it.
    * ``len.txt`` may also be present in the goalcraft layout; it must hold one positive integer.
    * Instructions and tasks are whitespace-normalised; a blank ``task`` counts as absent.

Quarantine reasons (stage ``trial``; ``input`` is the corpus-relative folder path):
``trial_no_video``, ``trial_metadata_missing``, ``trial_metadata_malformed`` (not UTF-8, not JSON,
not an object, a field of the wrong type, a bad ``len.txt``), ``trial_no_instruction``,
``trial_invalid_success``, ``trial_duplicate_id`` (two folders whose ids collide),
``path_escapes_root`` (a folder or file that is a symlink out of the corpus root) and
``path_invalid`` (a folder name that is not valid UTF-8).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Sequence, TypeVar

from goalcraft.data.paths import join_relative, relative_to_root, resolve_inside
from goalcraft.data.quarantine import InputError, QuarantineRecord, read_json

__all__ = [
    "INSTRUCTION_KEYS",
    "TRIAL_VIDEO_EXTENSIONS",
    "TrialRecord",
    "drop_duplicate_ids",
    "input_dir",
    "read_trial_folders",
    "scan_trials",
    "subfolders",
    "trial_id_for",
]

STAGE = "trial"
R = TypeVar("R")
TRIAL_VIDEO_EXTENSIONS: tuple[str, ...] = ("mp4", "mkv", "webm", "avi", "mov")
#: Metadata keys that may hold the instruction of a STEVE-1 episode, in order of preference.
INSTRUCTION_KEYS: tuple[str, ...] = ("instruction", "text_prompt", "prompt", "task")
_SAFE_ID = re.compile(r"[A-Za-z0-9_-]+")
_FRAME_EPS = 1e-9
#: Frame numbers at or above this are not plausible (and would not survive float arithmetic).
_MAX_FRAME = 2**53


@dataclass(frozen=True)
class TrialRecord:
    """One usable trial. ``video_path`` is relative to the corpus root (POSIX style, resolved)."""

    id: str
    layout: Literal["goalcraft", "steve1", "steve1_result", "recorded_sample"]
    video_path: str
    instruction: str
    task: str | None
    success: bool
    success_time: float | None
    success_frame: int | None
    fps: float | None
    num_frames: int | None


def trial_id_for(folder_name: str) -> str:
    """The key-safe trial id for a folder name (see the module docstring)."""
    if _SAFE_ID.fullmatch(folder_name):
        return folder_name
    raw = folder_name.encode("utf-8", "surrogateescape")
    digest = hashlib.sha1(raw).hexdigest()[:8]
    return re.sub(r"[^A-Za-z0-9_-]", "_", folder_name) + "-" + digest


def input_dir(folder: Path, corpus_root: Path, what: str) -> tuple[Path, Path, str]:
    """A configured input folder (relative to ``corpus_root``, or absolute): the resolved root, the
    resolved folder and its corpus-relative path. A folder that does not exist or lies outside the
    corpus root is a configuration error: :class:`ValueError` naming ``what``."""
    root = Path(corpus_root).resolve()
    folder = Path(folder)
    if not folder.is_absolute():
        folder = Path(corpus_root) / folder
    if not folder.is_dir():
        raise ValueError(f"{what} {str(folder)!r} does not exist")
    resolved = folder.resolve()
    if not resolved.is_relative_to(root):
        raise ValueError(f"{what} {str(folder)!r} is not inside the corpus root {str(root)!r}")
    return root, resolved, relative_to_root(root, resolved)


def scan_trials(
    trials_dir: Path, corpus_root: Path
) -> tuple[list[TrialRecord], list[QuarantineRecord]]:
    """Read every trial folder directly under ``trials_dir`` (which must lie inside ``corpus_root``).

    A missing ``trials_dir`` or one outside the corpus root is a configuration error and raises
    :class:`ValueError`; every problem with a single trial becomes a quarantine record instead.
    """
    root, resolved_dir, dir_rel = input_dir(trials_dir, corpus_root, "trials directory")
    folders = [(join_relative(dir_rel, name), trial_id_for(name))
               for name in subfolders(resolved_dir)]
    return read_trial_folders(root, folders, _read_trial)


def drop_duplicate_ids(records: Sequence[TrialRecord]) -> tuple[list[TrialRecord], list[QuarantineRecord]]:
    """The records with ids not taken by an earlier one (trials read from several folders), and a
    ``trial_duplicate_id`` quarantine record for each later one."""
    kept: list[TrialRecord] = []
    quarantined: list[QuarantineRecord] = []
    first: dict[str, str] = {}
    for record in records:
        if record.id in first:
            quarantined.append(QuarantineRecord(
                record.video_path, STAGE, "trial_duplicate_id",
                f"id {record.id!r} of {record.video_path} already used by {first[record.id]}", record.id))
            continue
        first[record.id] = record.video_path
        kept.append(record)
    return kept, quarantined


def subfolders(folder: Path) -> list[str]:
    """The names of the folders directly in ``folder``, sorted; hidden entries and plain files left out."""
    return [name for name in sorted(os.listdir(folder))
            if not name.startswith(".") and (Path(folder) / name).is_dir()]


def read_trial_folders(
    root: Path, folders: Sequence[tuple[str, str]], read: Callable[[Path, str, str], R]
) -> tuple[list[R], list[QuarantineRecord]]:
    """``read(root, rel, trial_id)`` for each ``(corpus-relative folder, trial id)``, in order: the
    records, and a quarantine record for every folder whose name is not UTF-8, whose id an earlier
    folder took, or whose ``read`` raised :class:`InputError`. (Trajectories are read with it too:
    goalcraft.data.trajectories.)"""
    records: list[R] = []
    quarantined: list[QuarantineRecord] = []
    seen: dict[str, str] = {}
    for rel, trial_id in folders:
        shown = _printable(rel)
        try:
            if shown != rel:
                raise InputError("path_invalid", f"folder name is not valid UTF-8: {shown!r}")
            if trial_id in seen:
                raise InputError(
                    "trial_duplicate_id",
                    f"id {trial_id!r} of folder {rel!r} already used by folder {seen[trial_id]!r}",
                )
            seen[trial_id] = rel
            records.append(read(root, rel, trial_id))
        except InputError as exc:
            quarantined.append(
                QuarantineRecord(
                    input=shown, stage=STAGE, reason=exc.reason, detail=exc.detail,
                    source_id=trial_id,
                )
            )
    return records, quarantined


def _printable(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _existing_file(root: Path, rel: str) -> Path | None:
    """The resolved file at ``rel`` if something is there; raises path_escapes_root for symlinks out."""
    lexical = root / rel
    if not (lexical.exists() or lexical.is_symlink()):
        return None
    resolved = resolve_inside(root, rel)
    return resolved if resolved.is_file() else None


def _read_trial(root: Path, rel: str, trial_id: str) -> TrialRecord:
    resolve_inside(root, rel)  # the folder itself may be a symlink out of the root

    layout: Literal["goalcraft", "steve1"] | None = None
    video: Path | None = None
    for ext in TRIAL_VIDEO_EXTENSIONS:
        video = _existing_file(root, f"{rel}/video.{ext}")
        if video is not None:
            layout = "goalcraft"
            break
    if video is None:
        video = _existing_file(root, f"{rel}/frames.mp4")
        layout = "steve1" if video is not None else None
    if video is None or layout is None:
        names = ", ".join(f"video.{ext}" for ext in TRIAL_VIDEO_EXTENSIONS)
        raise InputError("trial_no_video", f"no {names} (goalcraft) or frames.mp4 (STEVE-1)")

    metadata_file = _existing_file(root, f"{rel}/metadata.json")
    if metadata_file is None:
        raise InputError("trial_metadata_missing", "metadata.json not found")
    metadata = _load_metadata(metadata_file)

    num_frames = _read_len(root, rel)
    fps = _optional_positive(metadata, "fps")
    task = _optional_text(metadata, "task")

    if layout == "goalcraft":
        instruction = _optional_text(metadata, "instruction")
        if instruction is None:
            raise InputError("trial_no_instruction", "metadata.json has no 'instruction'")
        if "success" not in metadata or metadata["success"] is None:
            raise InputError("trial_metadata_malformed", "'success' is required")
    else:
        instruction = None
        for key in INSTRUCTION_KEYS:
            instruction = _optional_text(metadata, key)
            if instruction is not None:
                break
        if instruction is None:
            keys = ", ".join(INSTRUCTION_KEYS)
            raise InputError("trial_no_instruction", f"metadata.json has none of {keys}")

    success = metadata.get("success", False)
    if success is None:
        success = False
    if not isinstance(success, bool):
        raise InputError("trial_metadata_malformed", f"'success' must be a boolean, got {success!r}")

    success_time, success_frame = _success_point(metadata, success, fps, num_frames)

    return TrialRecord(
        id=trial_id,
        layout=layout,
        video_path=relative_to_root(root, video),
        instruction=instruction,
        task=task,
        success=success,
        success_time=success_time,
        success_frame=success_frame,
        fps=fps,
        num_frames=num_frames,
    )


def _load_metadata(path: Path) -> dict[str, Any]:
    """A trial's JSON metadata file (``metadata.json``, ``trial_info.json``): a JSON object."""
    value = read_json(path, "trial_metadata_malformed")
    if not isinstance(value, dict):
        raise InputError(
            "trial_metadata_malformed", f"{path.name} must hold an object, got {type(value).__name__}"
        )
    return value


def _read_len(root: Path, rel: str) -> int | None:
    path = _existing_file(root, f"{rel}/len.txt")
    if path is None:
        return None
    try:
        text = path.read_bytes().decode("utf-8-sig").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError("trial_metadata_malformed", f"cannot read len.txt: {exc}") from exc
    if not re.fullmatch(r"[0-9]{1,16}", text) or not 0 < int(text) < _MAX_FRAME:
        raise InputError(
            "trial_metadata_malformed", f"len.txt must hold a positive integer, got {text[:40]!r}"
        )
    return int(text)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _as_float(value: int | float) -> float:
    try:
        return float(value)
    except OverflowError:  # an integer too large for a float
        return math.inf


def _optional_text(metadata: dict[str, Any], key: str) -> str | None:
    value = metadata.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError(
            "trial_metadata_malformed", f"{key!r} must be a string, got {type(value).__name__}"
        )
    text = " ".join(value.encode("utf-8", "replace").decode("utf-8").split())
    return text or None


def _optional_positive(metadata: dict[str, Any], key: str) -> float | None:
    value = metadata.get(key)
    if value is None:
        return None
    if not _is_number(value) or not math.isfinite(_as_float(value)) or value <= 0:
        raise InputError(
            "trial_metadata_malformed", f"{key!r} must be a positive number, got {value!r}"
        )
    return _as_float(value)


def _success_point(
    metadata: dict[str, Any], success: bool, fps: float | None, num_frames: int | None
) -> tuple[float | None, int | None]:
    time_value = metadata.get("success_time")
    frame_value = metadata.get("success_frame")
    if time_value is not None and not _is_number(time_value):
        raise InputError(
            "trial_metadata_malformed",
            f"'success_time' must be a number, got {type(time_value).__name__}",
        )
    if frame_value is not None and not (
        isinstance(frame_value, int) and not isinstance(frame_value, bool)
    ):
        raise InputError(
            "trial_metadata_malformed",
            f"'success_frame' must be an integer, got {frame_value!r}",
        )

    if not success:
        if time_value is not None or frame_value is not None:
            raise InputError(
                "trial_invalid_success", "success is false but a success_time/success_frame is given"
            )
        return None, None

    if time_value is None and frame_value is None:
        raise InputError("trial_invalid_success", "success is true but no success_time or success_frame")
    success_time: float | None = None
    success_frame: int | None = frame_value
    if time_value is not None:
        success_time = _as_float(time_value)
        if not math.isfinite(success_time) or success_time < 0:
            raise InputError(
                "trial_invalid_success", f"success_time must be finite and >= 0, got {time_value!r}"
            )
    if success_frame is not None and not 0 <= success_frame < _MAX_FRAME:
        raise InputError(
            "trial_invalid_success", f"success_frame must be >= 0 and plausible, got {success_frame}"
        )

    if fps is not None:
        if success_time is not None and success_frame is not None:
            if abs(success_time * fps - success_frame) > 1 + _FRAME_EPS:
                raise InputError(
                    "trial_invalid_success",
                    f"success_time {success_time} s (frame {success_time * fps:.2f} at {fps} fps) "
                    f"disagrees with success_frame {success_frame} by more than one frame",
                )
        elif success_time is not None:
            success_frame = math.floor(success_time * fps + _FRAME_EPS)
        elif success_frame is not None:
            success_time = success_frame / fps

    if num_frames is not None and success_frame is not None and success_frame >= num_frames:
        raise InputError(
            "trial_invalid_success",
            f"success_frame {success_frame} is past the last frame (len.txt says {num_frames} frames)",
        )
    return success_time, success_frame
