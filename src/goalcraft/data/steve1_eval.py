"""Users' own STEVE-1 evaluation files (the layouts of konder/aimc's evaluation framework) as agent
trials and success visuals.

Evaluation result folders (:func:`scan_steve1_results`, layout ``steve1_result``)
    Any folder at any depth under a configured results folder that holds ``result.json``:
    ``{"task_id", "language"?, "instruction", "trials": [{"trial_idx", "success", "steps",
    "time_seconds"?, "has_video"?}, ...], ...}`` (aimc writes it as
    ``<set>_<timestamp>/<task>_<lang>_<timestamp>/result.json``; the aggregate fields
    ``success_rate``, ``avg_steps``, ``avg_time`` are derived and not read). Each trial is one
    :class:`~goalcraft.data.trials.TrialRecord`; its footage is ``trial_<trial_idx>.mp4`` beside
    ``result.json`` (640x360, 20 fps), else the PNG frame folder
    ``report_<task_id>_trial<trial_idx>/frames/`` (goalcraft.data.frame_folders). Folders below a
    ``result.json`` are not searched further (they are its reports); hidden folders are skipped; a
    folder holding ``trial_<i>.mp4`` files but no ``result.json`` (an interrupted run) is quarantined.

Recorded samples (:func:`scan_recorded_samples`, layout ``recorded_sample``)
    ``<root>/<task>/<trial folder>/`` (aimc names it ``trial<N>``) holding ``trial_info.json``
    (``{"task_id"?, "instruction", "success", "steps", "time_seconds"?}``), the PNG frame folder
    ``frames/`` (the trial's footage) and optionally ``visual_embeds.pkl`` (MineCLIP ``encode_video``
    of the last 16 frames, a float array of shape (512,)). Plain files in ``<root>`` and in a task
    folder (aimc's per-task ``result.json`` summary) are not trials; ``actions.json`` is not read.
    ``visual_embeds.pkl`` is opened only by :func:`recorded_success_visuals`, through the restricted
    unpickler (goalcraft.data.safe_pickle).

Both: one frame is recorded per environment step and an episode ends at success, so a successful
trial's success frame is ``steps - 1`` (``steps >= 1``; below the frame count of a frame folder). The
frame rate comes from the footage when it is decoded (``success_time`` and ``fps`` stay ``None``);
``time_seconds`` is wall-clock time, not footage time, and is not used. A failed trial is a trial
without a success moment. Task = ``task_id``; a recorded sample's ``task_id`` must name its folder.
Trial id: the corpus-relative folder path with ``/`` read as ``__``, plus ``__trial<trial_idx>`` for
an evaluation result (made key-safe like a trial folder name), so ids are unique across folders.

Grouped success visuals (:func:`load_success_visuals`)
    A pickle ``{task: {"instruction", "success_visual_embeds": [array (512,), ...],
    "n_success_trials"?, "embed_dim"?}}`` → ``{task: SuccessVisuals(instruction, embeds)}`` with
    ``embeds`` a float32 array ``[n, 512]``.

Quarantine reasons (stage ``trial``, ``input`` = the corpus-relative folder, or
``<folder>/result.json#trial<i>`` for one trial of a result): ``trial_metadata_missing``,
``trial_metadata_malformed``, ``trial_no_instruction``, ``trial_no_video``, ``trial_invalid_success``,
``trial_duplicate_id``, ``path_escapes_root``, ``path_invalid`` (as for trial folders), and a frame
folder's ``video_unreadable`` / ``frame_missing``. Success visuals (stage ``success_visuals``):
``pickle_refused``, ``pickle_malformed``, ``embedding_missing``, ``embedding_invalid``,
``success_visuals_malformed``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal, NamedTuple, Sequence

import numpy as np

from goalcraft.data.frame_folders import frame_files
from goalcraft.data.paths import join_relative, relative_to_root, resolve_inside
from goalcraft.data.quarantine import InputError, QuarantineRecord
from goalcraft.data.safe_pickle import safe_load
from goalcraft.data.trials import (
    STAGE,
    TrialRecord,
    _existing_file,
    _load_metadata,
    _optional_text,
    _printable,
    input_dir,
    read_trial_folders,
    subfolders,
    trial_id_for,
)

__all__ = [
    "EMBED_DIM",
    "SuccessVisuals",
    "embedding_vector",
    "load_success_visuals",
    "read_success_visuals",
    "recorded_success_visuals",
    "scan_recorded_samples",
    "scan_steve1_results",
    "trial_sources",
]

#: MineCLIP's (and STEVE-1's goal) embedding width.
EMBED_DIM = 512
VISUALS_STAGE = "success_visuals"
_RESULT_VIDEO = re.compile(r"trial_([0-9]+)\.mp4")


class SuccessVisuals(NamedTuple):
    """A task's instruction and the MineCLIP embeddings of its successes (float32 ``[n, dim]``)."""

    instruction: str
    embeds: np.ndarray


# --------------------------------------------------------------------------------------------------
# Fields shared by both layouts


def _count(data: dict[str, Any], key: str, minimum: int, name: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError("trial_metadata_malformed", f"{name}: {key!r} must be an integer >= {minimum}, got {value!r}")
    return value


def _flag(data: dict[str, Any], key: str, name: str, *, required: bool = True) -> bool | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, bool):
        raise InputError("trial_metadata_malformed", f"{name}: {key!r} must be a boolean, got {value!r}")
    return value


def _outcome(data: dict[str, Any], name: str) -> tuple[bool, int]:
    """``success`` and ``steps``, checked."""
    success = _flag(data, "success", name)
    assert success is not None
    steps = _count(data, "steps", 0, name)
    if success and steps < 1:
        raise InputError("trial_invalid_success", f"{name}: success after {steps} steps: no frame shows it")
    return success, steps


def _success_frame(outcome: tuple[bool, int], name: str, num_frames: int | None) -> tuple[bool, int | None]:
    """``success`` and its frame ``steps - 1`` (None for a failed trial), which the footage must hold."""
    success, steps = outcome
    if not success:
        return False, None
    if num_frames is not None and steps - 1 >= num_frames:
        raise InputError("trial_invalid_success", f"{name}: success at step {steps} (frame {steps - 1}) but the "
                                                  f"frame folder holds {num_frames} frames")
    return True, steps - 1


def _frame_folder(root: Path, rel: str) -> tuple[str, int] | None:
    """A frame folder's corpus-relative path and frame count; None when there is no such folder."""
    lexical = root / rel
    if not (lexical.exists() or lexical.is_symlink()):
        return None
    resolved = resolve_inside(root, rel)
    if not resolved.is_dir():
        return None
    return relative_to_root(root, resolved), len(frame_files(resolved))


def _joined_id(rel: str, suffix: str = "") -> str:
    return trial_id_for(rel.replace("/", "__") + suffix)


def _record(layout: Literal["steve1_result", "recorded_sample"], trial_id: str, video: tuple[str, int | None],
            instruction: str, task: str, outcome: tuple[bool, int], name: str) -> TrialRecord:
    success, frame = _success_frame(outcome, name, video[1])
    return TrialRecord(id=trial_id, layout=layout, video_path=video[0], instruction=instruction, task=task,
                       success=success, success_time=None, success_frame=frame, fps=None, num_frames=video[1])


# --------------------------------------------------------------------------------------------------
# Evaluation result folders


def scan_steve1_results(results_dir: Path, corpus_root: Path) -> tuple[list[TrialRecord], list[QuarantineRecord]]:
    """Every trial of every ``result.json`` under ``results_dir`` (rules in the module docstring).

    ``results_dir`` must exist inside the corpus root (:class:`ValueError` otherwise: configuration).
    """
    root, top, _ = input_dir(results_dir, corpus_root, "STEVE-1 results folder")
    records: list[TrialRecord] = []
    quarantined: list[QuarantineRecord] = []
    seen: set[str] = set()
    for folder, dirs, files in os.walk(top, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        lexical = Path(os.path.relpath(folder, root)).as_posix()
        shown = _printable(lexical)
        try:
            if shown != lexical:
                raise InputError("path_invalid", f"folder name is not valid UTF-8: {shown!r}")
            rel = relative_to_root(root, resolve_inside(root, lexical))  # a symlink out: path_escapes_root
            if rel in seen:
                raise InputError("trial_duplicate_id", f"{shown} is a second path to {rel} (a symlink): read once")
            seen.add(rel)
        except InputError as exc:
            dirs[:] = []
            quarantined.append(QuarantineRecord(shown, STAGE, exc.reason, exc.detail))
            continue
        if "result.json" in files:
            dirs[:] = []  # what lies below a result is its reports
            found, bad = _read_result(root, rel)
            records += found
            quarantined += bad
        elif videos := sorted(f for f in files if _RESULT_VIDEO.fullmatch(f)):
            quarantined.append(QuarantineRecord(rel, STAGE, "trial_metadata_missing",
                                                f"{', '.join(videos[:3])} but no result.json (an interrupted "
                                                "evaluation?): its trials have no instruction or outcome"))
    return records, quarantined


def _read_result(root: Path, rel: str) -> tuple[list[TrialRecord], list[QuarantineRecord]]:
    where = join_relative(rel, "result.json")
    try:
        path = _existing_file(root, where)
        if path is None:
            raise InputError("trial_metadata_missing", "result.json is not a file")
        data = _load_metadata(path)
        if "language" not in data and any((root / rel / d / "trial_info.json").is_file()
                                          for d in subfolders(root / rel)):
            raise InputError("trial_metadata_malformed",
                             "a recorded-samples task summary (trial folders with trial_info.json beside it), "
                             "not an evaluation result: list its root in [paths] recorded_samples_dirs")
        task = _optional_text(data, "task_id")
        if task is None:
            raise InputError("trial_metadata_malformed", "result.json has no 'task_id'")
        instruction = _optional_text(data, "instruction")
        if instruction is None:
            raise InputError("trial_no_instruction", "result.json has no 'instruction'")
        _optional_text(data, "language")
        trials = data.get("trials")
        if not isinstance(trials, list):
            raise InputError("trial_metadata_malformed", f"'trials' must be a list, got {type(trials).__name__}")
    except InputError as exc:
        return [], [QuarantineRecord(where, STAGE, exc.reason, exc.detail)]

    records: list[TrialRecord] = []
    quarantined: list[QuarantineRecord] = []
    seen: set[int] = set()
    for position, trial in enumerate(trials):
        name, trial_id = f"{where}#{position}", ""
        try:
            if not isinstance(trial, dict):
                raise InputError("trial_metadata_malformed", f"trial {position} is a {type(trial).__name__}, "
                                                             "not an object")
            index = _count(trial, "trial_idx", 1, f"trial {position}")
            name, trial_id = f"{where}#trial{index}", _joined_id(rel, f"__trial{index}")
            if index in seen:
                raise InputError("trial_duplicate_id", f"trial_idx {index} is listed twice")
            seen.add(index)
            outcome = _outcome(trial, f"trial {index}")
            has_video = _flag(trial, "has_video", f"trial {index}", required=False)
            video = _result_footage(root, rel, task, index, has_video)
            records.append(_record("steve1_result", trial_id, video, instruction, task, outcome, f"trial {index}"))
        except InputError as exc:
            quarantined.append(QuarantineRecord(name, STAGE, exc.reason, exc.detail, trial_id))
    return records, quarantined


def _result_footage(root: Path, rel: str, task: str, index: int, has_video: bool | None) -> tuple[str, int | None]:
    video = _existing_file(root, join_relative(rel, f"trial_{index}.mp4"))
    if video is not None:
        return relative_to_root(root, video), None
    frames = _frame_folder(root, join_relative(rel, f"report_{task}_trial{index}", "frames"))
    if frames is not None:
        return frames
    said = "" if has_video is None else f" (result.json says has_video: {str(has_video).lower()})"
    raise InputError("trial_no_video", f"no trial_{index}.mp4 and no report_{task}_trial{index}/frames/{said}")


# --------------------------------------------------------------------------------------------------
# Recorded samples


def _sample_folders(samples_dir: Path, corpus_root: Path) -> tuple[Path, list[tuple[str, str]]]:
    root, top, top_rel = input_dir(samples_dir, corpus_root, "recorded samples folder")
    folders = []
    for task in subfolders(top):
        for trial in subfolders(top / task):
            rel = join_relative(top_rel, task, trial)
            folders.append((rel, _joined_id(rel)))
    return root, folders


def _read_sample(root: Path, rel: str, trial_id: str) -> TrialRecord:
    resolve_inside(root, rel)  # the folder itself may be a symlink out of the root
    folder_task = rel.rsplit("/", 2)[-2]
    info = _existing_file(root, f"{rel}/trial_info.json")
    if info is None:
        raise InputError("trial_metadata_missing", "trial_info.json not found")
    data = _load_metadata(info)
    instruction = _optional_text(data, "instruction")
    if instruction is None:
        raise InputError("trial_no_instruction", "trial_info.json has no 'instruction'")
    task = _optional_text(data, "task_id") or folder_task
    if task != folder_task:
        raise InputError("trial_metadata_malformed", f"trial_info.json names task {task!r} but lies in the "
                                                     f"folder of task {folder_task!r}")
    outcome = _outcome(data, "trial_info.json")
    frames = _frame_folder(root, f"{rel}/frames")
    if frames is None:
        raise InputError("trial_no_video", "no frames/ folder of step_NNNN.png")
    return _record("recorded_sample", trial_id, frames, instruction, task, outcome, "trial_info.json")


def scan_recorded_samples(samples_dir: Path, corpus_root: Path) -> tuple[list[TrialRecord], list[QuarantineRecord]]:
    """Every trial folder under ``samples_dir/<task>/`` (rules in the module docstring).

    ``samples_dir`` must exist inside the corpus root (:class:`ValueError` otherwise: configuration).
    """
    root, folders = _sample_folders(samples_dir, corpus_root)
    return read_trial_folders(root, folders, _read_sample)


# --------------------------------------------------------------------------------------------------
# Success visuals


def embedding_vector(value: Any, dim: int = EMBED_DIM, where: str = "embedding") -> np.ndarray:
    """``value`` as a float32 vector of length ``dim``: a float array of shape ``(dim,)`` or
    ``(1, dim)`` with finite values; :class:`InputError` ``embedding_invalid`` otherwise."""
    if not isinstance(value, np.ndarray):
        raise InputError("embedding_invalid", f"{where}: expected a numpy array, got {type(value).__name__}")
    if value.dtype.kind != "f":
        raise InputError("embedding_invalid", f"{where}: expected floats, got dtype {value.dtype}")
    if value.shape not in ((dim,), (1, dim)):
        raise InputError("embedding_invalid", f"{where}: shape {value.shape}, expected ({dim},)")
    with np.errstate(over="ignore"):  # too large for float32: inf, reported below
        vector = value.reshape(dim).astype(np.float32)
    bad = int(np.count_nonzero(~np.isfinite(vector)))
    if bad:
        raise InputError("embedding_invalid", f"{where}: {bad} non-finite value(s) (NaN or infinite, "
                                              "or too large for float32)")
    return vector


def _task_visuals(task: str, spec: Any, dim: int, where: str) -> SuccessVisuals:
    if not isinstance(spec, dict):
        raise InputError("success_visuals_malformed", f"{where}: expected a dict, got {type(spec).__name__}")
    instruction = spec.get("instruction")
    if not isinstance(instruction, str) or not " ".join(instruction.split()):
        raise InputError("success_visuals_malformed", f"{where}: 'instruction' must be a non-blank string, "
                                                      f"got {instruction!r}")
    embeds = spec.get("success_visual_embeds")
    if isinstance(embeds, np.ndarray) and embeds.ndim == 2:
        embeds = list(embeds)
    if not isinstance(embeds, (list, tuple)) or not embeds:
        raise InputError("success_visuals_malformed", f"{where}: 'success_visual_embeds' must be a non-empty "
                                                      f"list of arrays, got {type(embeds).__name__}")
    for key, expected in (("embed_dim", dim), ("n_success_trials", len(embeds))):
        value = spec.get(key, expected)
        if isinstance(value, (bool, float)) or not isinstance(value, (int, np.integer)) or value != expected:
            reason = "embedding_invalid" if key == "embed_dim" else "success_visuals_malformed"
            raise InputError(reason, f"{where}: {key!r} is {value!r}, expected {expected}")
    vectors = [embedding_vector(e, dim, f"{where}: embedding {i}") for i, e in enumerate(embeds)]
    return SuccessVisuals(" ".join(instruction.split()), np.stack(vectors))


def load_success_visuals(path: Path, *, embed_dim: int = EMBED_DIM, shown: str | None = None,
                         ) -> tuple[dict[str, SuccessVisuals], list[QuarantineRecord]]:
    """A grouped success-visuals pickle (module docstring), read with the restricted unpickler.

    A file that is refused, not a pickle, or not a dict of tasks raises :class:`InputError`; a task
    whose entry is malformed (wrong shape or dtype, ``embed_dim`` other than ``embed_dim``, a
    non-finite value, ``n_success_trials`` other than the number of embeddings) is left out with a
    quarantine record naming it, the other tasks are kept.
    """
    shown = shown or str(path)
    data = safe_load(Path(path), shown)
    if not isinstance(data, dict) or not data:
        raise InputError("success_visuals_malformed",
                         f"{shown}: expected a non-empty dict of tasks, got {type(data).__name__}")
    visuals: dict[str, SuccessVisuals] = {}
    quarantined: list[QuarantineRecord] = []
    for task, spec in data.items():
        where = f"{shown}#{task}"
        try:
            if not isinstance(task, str) or not task.strip():
                raise InputError("success_visuals_malformed", f"{where}: a task name must be a non-blank string")
            visuals[task] = _task_visuals(task, spec, embed_dim, where)
        except InputError as exc:
            quarantined.append(QuarantineRecord(where, VISUALS_STAGE, exc.reason, exc.detail, str(task)))
    return visuals, quarantined


def recorded_success_visuals(samples_dir: Path, corpus_root: Path, *, embed_dim: int = EMBED_DIM,
                             ) -> tuple[dict[str, SuccessVisuals], list[QuarantineRecord]]:
    """The ``visual_embeds.pkl`` of every *successful* recorded sample, grouped by task, with the
    instruction of the task's first trial (in folder order). A successful trial without the file
    (aimc writes none for fewer than 16 frames) is ``embedding_missing``; a refused, malformed or
    invalid file is quarantined; the trial folders' own problems are :func:`scan_recorded_samples`'s."""
    root = Path(corpus_root).resolve()
    trials, quarantined = scan_recorded_samples(samples_dir, corpus_root)
    grouped: dict[str, tuple[str, list[np.ndarray]]] = {}
    for trial in trials:
        if not trial.success:
            continue
        where = f"{trial.video_path.rsplit('/', 1)[0]}/visual_embeds.pkl"
        try:
            path = _existing_file(root, where)
            if path is None:
                raise InputError("embedding_missing", f"{where}: a successful trial without visual_embeds.pkl")
            vector = embedding_vector(safe_load(path, where), embed_dim, where)
        except InputError as exc:
            quarantined.append(QuarantineRecord(where, VISUALS_STAGE, exc.reason, exc.detail, trial.id))
            continue
        assert trial.task is not None
        grouped.setdefault(trial.task, (trial.instruction, []))[1].append(vector)
    return {task: SuccessVisuals(instruction, np.stack(vectors))
            for task, (instruction, vectors) in grouped.items()}, quarantined


def read_success_visuals(entry: str, corpus_root: Path, *, embed_dim: int = EMBED_DIM,
                         ) -> tuple[dict[str, SuccessVisuals], list[QuarantineRecord]]:
    """Imported success visuals: ``entry`` (relative to ``corpus_root``, or absolute) is a grouped
    success-visuals pickle (:func:`load_success_visuals`) or a recorded-samples folder
    (:func:`recorded_success_visuals`). A path that does not exist is a :class:`ValueError`."""
    path = Path(entry) if Path(entry).is_absolute() else Path(corpus_root) / entry
    if path.is_dir():
        return recorded_success_visuals(path, Path(corpus_root), embed_dim=embed_dim)
    if not path.is_file():
        raise ValueError(f"success visuals {entry!r}: {path} does not exist")
    return load_success_visuals(path, embed_dim=embed_dim, shown=entry)


def trial_sources(corpus_root: Path, results_dirs: Sequence[str], samples_dirs: Sequence[str],
                  ) -> tuple[list[TrialRecord], list[QuarantineRecord]]:
    """The trials of every configured results and recorded-samples folder, in the order listed."""
    records: list[TrialRecord] = []
    quarantined: list[QuarantineRecord] = []
    for folders, scan in ((results_dirs, scan_steve1_results), (samples_dirs, scan_recorded_samples)):
        for folder in folders:
            found, bad = scan(Path(folder), corpus_root)
            records += found
            quarantined += bad
    return records, quarantined
