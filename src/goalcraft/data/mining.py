"""Success mining: find the moments where an instruction has just been carried out ("goal moments").

STEVE-1 takes its goal embedding from the 16 frames ending at the goal frame, so every miner returns
:class:`GoalMoment` objects that name a video and the time (and, where known, the frame) of success;
:mod:`goalcraft.data.goal_stage` cuts the goal clips. Three miners, each returning
``(moments, quarantine records)``:

:func:`mine_trials`
    Every successful agent trial (both layouts of :mod:`goalcraft.data.trials`) gives one moment at
    its ``success_frame`` / ``success_time``, confidence 1.0, task and instruction from the trial.
    Failed trials give nothing (they are not errors).

:func:`mine_transcripts`
    Every transcript segment whose text contains a phrasing of a task (whole words/phrases,
    case-insensitive, punctuation ignored: :class:`~goalcraft.data.task_vocabulary.TaskMatcher`)
    gives one candidate for its best task (the longest matched phrasing; ties go to the task listed
    first). Narrators speak about a success as it happens or right after, so the candidate is placed
    at the **end of the segment's speech**:

    * JSON transcripts (timed speech): the segment's end;
    * WebVTT captions: the end of the line's spoken part, ``min(end, start of the next segment)``.
      A rolling auto-caption line stays on screen while the next line is spoken, so its segment
      (see :mod:`goalcraft.data.transcripts`) ends one line late; the next line's start is when it
      stopped being spoken (the same rule as the ``trim`` overlap rule of the clip windows).

    ``timing="end"`` or ``"spoken"`` forces one rule for every format (``"spoken"`` suits YouTube's
    JSON transcripts of rolling auto-captions). ``lag_s`` moves the moment that much earlier (never
    before the segment's start): how long a narrator goes on speaking after the success, measured
    against a corpus with ground truth (:func:`goalcraft.data.ground_truth.event_coverage`), not
    guessed. ``exclusive_s`` > 0 drops a candidate when another task's candidate in the same video lies
    within that many seconds of it (a quarantine record, reason ``ambiguous_moment``, names both): its
    clip would show two successes, a success visual of two tasks at once. Set it to about the clip's
    length plus the lag's uncertainty; candidates of the same task never exclude each other.
    ``confidence`` = words of the matched phrasing / words of the segment, capped at 1
    (1.0: the segment says just the phrasing; a phrasing lost in a long ramble scores low). ``success_frame`` is left ``None``: the goal stage takes
    ``floor(success_time × fps)`` of the decoded video.

:func:`mine_ratings`
    VLM judgements of whole recordings, three file forms (read by :func:`rating_files` from a
    ratings folder at any depth):

    * MineStudio ratings (``vlm_rating_res/*.json``): a JSON list whose object elements are ratings
      (``"Task Progress"`` score 0–10, ``"video_path"`` — an absolute path on the machine that rated
      it — and ``"task_name"``), interleaved with the rater's free-text answers (strings, skipped);
    * MCU ratings: one JSON object per episode (``vlm_rating_res/<agent>_res/<task> episode_<n>.json``)
      with the same keys, scores written as text (``"8"``); a score may be a number or a number as
      text in either form, and ``"task"`` stands in for a missing ``"task_name"``;
    * MineStudio pairwise comparisons (``video_comparison.py``: ``[{criteria..., "video_1_path",
      "video_2_path"}, answer]``, the file named after the task): ``"Task Progress"`` names the
      judged-better video (``"A"``/``"1"``/``"Video B"``/``"video_2"``…, or a tie: ``"tie"``,
      ``"equal"``, ``"same"``…). The task is ``task_name`` / ``task`` when given, else the file stem.
      (The verdict's wording is not confirmed from MineStudio's prompt file; these are the forms read.)

    Each judged video is found in the corpus by its file name under ``videos_dir`` (searched
    recursively); when several files share the name, by as many trailing folders of the judged path as
    it takes to leave one (MCU names every episode ``episode_<n>.mp4``, in one folder per task). The
    source id is those trailing parts without the extension, joined by ``__`` (made key-safe). A
    rating ``>= threshold`` gives one moment (miner ``rating``, confidence = score / 10), a
    comparison's better video one moment (miner ``comparison``, confidence
    :data:`COMPARISON_CONFIDENCE`: better than the other, not surely a success), both at the video's
    **last decodable frame** (the judgement is of the whole recording, so its end is the one moment
    known to follow success). Ratings below the threshold and ties are skipped without looking for
    the video.

Quarantine reasons added here (stage ``rating``): ``rating_malformed`` (a file that is not UTF-8 /
not JSON / neither a list nor one rating object, or an element that is neither a rating object nor
a string, or a rating without a string ``video_path`` / task name or with a ``Task Progress`` that is
not a number in [0, 10], or a comparison whose verdict names no video or without both video paths;
``input`` is the file, ``#<element>`` for a list), ``rating_video_missing`` (no file of that name under
``videos_dir``), ``rating_video_ambiguous`` (several files of that name that the judged path's
folders do not tell apart). Transcript and decode problems keep the clip stage's reasons
(``transcript_*`` with stage ``transcript``; ``video_*`` with stage ``decode``).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

from goalcraft.formats import CLIP_HEIGHT, CLIP_WIDTH
from goalcraft.data.decode import VideoDecoder, get_decoder
from goalcraft.data.manifest import VideoRecord
from goalcraft.data.paths import relative_to_root, resolve_inside
from goalcraft.data.quarantine import InputError, QuarantineRecord, read_json
from goalcraft.data.task_vocabulary import Task, TaskMatcher
from goalcraft.data.transcripts import read_transcript
from goalcraft.data.trials import TrialRecord, trial_id_for

__all__ = [
    "MINERS",
    "COMPARISON_CONFIDENCE",
    "RATING_SCORE_KEY",
    "GoalMoment",
    "exclusive_moments",
    "mine_ratings",
    "mine_transcripts",
    "mine_trials",
    "mining_notes",
    "rating_files",
    "speech_end_times",
]

MINERS = ("trial", "transcript", "rating", "comparison")
#: The rating field that says how far the agent got (MineStudio's criteria: 0-10).
RATING_SCORE_KEY = "Task Progress"
#: The confidence of a comparison's judged-better video: better than the other, not surely a success.
COMPARISON_CONFIDENCE = 0.5

Timing = Literal["auto", "end", "spoken"]


@dataclass(frozen=True)
class GoalMoment:
    """A moment where ``instruction`` has just been carried out in ``video_path`` (corpus-relative).

    ``success_time`` is in seconds from the first frame; ``success_frame`` is the frame index when
    the miner knows it (trials, ratings), else ``None`` (the goal stage derives it from the time).
    ``success_time`` is ``None`` only for a trial that gives a frame but no fps. ``task`` is the
    task id (``None`` for a trial without one); ``detail`` says where the moment came from.
    """

    source: Literal["trial", "video"]
    source_id: str
    video_path: str
    miner: str
    task: str | None
    instruction: str
    confidence: float
    success_time: float | None
    success_frame: int | None
    detail: str = ""


# --------------------------------------------------------------------------------------------------
# Trials


def mine_trials(trials: Sequence[TrialRecord]) -> tuple[list[GoalMoment], list[QuarantineRecord]]:
    """One moment per successful trial, in trial-id order (rules in the module docstring)."""
    moments: list[GoalMoment] = []
    quarantined: list[QuarantineRecord] = []
    for trial in sorted(trials, key=lambda t: t.id):
        if not trial.success:
            continue
        if trial.success_time is None and trial.success_frame is None:  # scan_trials never yields one
            quarantined.append(QuarantineRecord(trial.video_path, "trial", "trial_invalid_success",
                                                "success is true but no success_time or success_frame",
                                                trial.id))
            continue
        where = f"frame {trial.success_frame}" if trial.success_frame is not None else f"{trial.success_time} s"
        moments.append(GoalMoment(
            source="trial", source_id=trial.id, video_path=trial.video_path, miner="trial",
            task=trial.task, instruction=trial.instruction, confidence=1.0,
            success_time=trial.success_time, success_frame=trial.success_frame,
            detail=f"{trial.layout} trial succeeded at {where}",
        ))
    return moments, quarantined


# --------------------------------------------------------------------------------------------------
# Transcripts


def speech_end_times(segments: Sequence[Any], *, spoken: bool) -> list[float]:
    """Where each segment's speech ends: its ``end``, or with ``spoken`` ``min(end, next start)``
    (segments in start order, as :func:`~goalcraft.data.transcripts.read_transcript` returns them)."""
    ends = []
    for i, segment in enumerate(segments):
        end = segment.end
        if spoken and i + 1 < len(segments):
            end = min(end, max(segment.start, segments[i + 1].start))
        ends.append(round(end, 6))
    return ends


def mine_transcripts(videos: Sequence[VideoRecord], corpus_root: Path, tasks: Sequence[Task], *,
                     timing: Timing = "auto", min_confidence: float = 0.0, lag_s: float = 0.0,
                     exclusive_s: float = 0.0) -> tuple[list[GoalMoment], list[QuarantineRecord]]:
    """One candidate per transcript segment that names a task (rules in the module docstring).

    Videos are visited in id order, segments in start order. A video without a usable transcript
    becomes a quarantine record (stage ``transcript``, the reasons of the clip stage).
    """
    if timing not in ("auto", "end", "spoken"):
        raise ValueError(f"timing must be 'auto', 'end' or 'spoken', got {timing!r}")
    for name, value in (("lag_s", lag_s), ("exclusive_s", exclusive_s)):
        if not (value >= 0 and math.isfinite(value)):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    corpus_root = Path(corpus_root)
    matcher = TaskMatcher(tasks)
    moments: list[GoalMoment] = []
    quarantined: list[QuarantineRecord] = []
    for video in sorted(videos, key=lambda v: v.id):
        if video.transcript_path is None:
            quarantined.append(QuarantineRecord(video.video_path, "transcript", "transcript_missing",
                                                "no transcript file for this video", video.id))
            continue
        try:
            segments = read_transcript(corpus_root / video.transcript_path)
        except InputError as exc:
            quarantined.append(QuarantineRecord(video.transcript_path, "transcript", exc.reason, exc.detail,
                                                video.id))
            continue
        spoken = timing == "spoken" or (timing == "auto" and video.transcript_path.lower().endswith(".vtt"))
        ends = speech_end_times(segments, spoken=spoken)
        found: list[GoalMoment] = []
        for index, (segment, end) in enumerate(zip(segments, ends)):
            match = matcher.best(segment.text)
            if match is None or match.confidence < min_confidence:
                continue
            found.append(GoalMoment(
                source="video", source_id=video.id, video_path=video.video_path, miner="transcript",
                task=match.task.name, instruction=match.task.instruction,
                confidence=round(match.confidence, 6), success_frame=None,
                success_time=round(max(segment.start, end - lag_s), 6) if lag_s else end,
                detail=(f"{video.transcript_path}#segment{index} [{segment.start:.3f}-{segment.end:.3f}] "
                        f"{segment.text!r} says {match.phrasing!r}"),
            ))
        kept, ambiguous = exclusive_moments(found, exclusive_s)
        moments += kept
        quarantined += ambiguous
    return moments, quarantined


def exclusive_moments(moments: Sequence[GoalMoment], exclusive_s: float,
                      ) -> tuple[list[GoalMoment], list[QuarantineRecord]]:
    """``moments`` (one video's, in time order) without those that have a moment of another task
    within ``exclusive_s`` seconds, and a quarantine record for each one dropped (0: all kept)."""
    if not exclusive_s:
        return list(moments), []
    times = [m.success_time for m in moments]
    order = sorted(range(len(moments)), key=times.__getitem__)
    rank = {i: r for r, i in enumerate(order)}
    kept, dropped = [], []
    for i, moment in enumerate(moments):
        near = None
        for step in (-1, 1):  # walk outwards in time order until exclusive_s is passed
            r = rank[i] + step
            while near is None and 0 <= r < len(order) and abs(times[order[r]] - times[i]) < exclusive_s:
                if moments[order[r]].task != moment.task:
                    near = moments[order[r]]
                r += step
        if near is None:
            kept.append(moment)
            continue
        dropped.append(QuarantineRecord(
            moment.detail.split(" ", 1)[0], "transcript", "ambiguous_moment",
            f"{moment.task} at {moment.success_time:.2f}s has {near.task} at {near.success_time:.2f}s within "
            f"exclusive_s = {exclusive_s:g}s: its clip would show both", moment.source_id))
    return kept, dropped


NOTHING_TO_MINE = (
    "no trials and no task vocabulary: no goal clips can be mined here (add agent trials, or name task "
    "files in [success] task_files or set steve1_prompts = true so narrated videos are mined)"
)


def mining_notes(*, trials: int, videos: int, tasks: int, ratings: bool) -> list[str]:
    """Why a partition's inputs can give few or no goal clips, in words a user can act on.

    ``trials``/``videos`` count the partition's ingested rows, ``tasks`` the task vocabulary,
    ``ratings`` whether a ratings folder is configured and present.
    """
    if ratings:
        return []
    if trials == 0 and tasks == 0:
        return [NOTHING_TO_MINE]
    notes = []
    if tasks == 0 and videos:
        notes.append(f"no task vocabulary: the transcripts of {videos} video(s) are not mined for goal clips")
    if trials == 0 and videos == 0:
        notes.append("no trials and no videos in this partition")
    return notes


# --------------------------------------------------------------------------------------------------
# MineStudio VLM ratings


def _shown(path: Path, corpus_root: Path) -> str:
    """A rating file as quarantine input: corpus-relative where it lies inside the corpus."""
    try:
        return Path(os.path.abspath(path)).relative_to(Path(os.path.abspath(corpus_root))).as_posix()
    except ValueError:
        return str(path)


def _load_rating_file(path: Path) -> tuple[list[Any], bool]:
    """The file's elements, and whether it is one MCU rating object (not a list)."""
    value = read_json(path, "rating_malformed", "the rating file")
    if isinstance(value, dict):
        return [value], True
    if not isinstance(value, list):
        raise InputError("rating_malformed",
                         f"expected a JSON list of ratings and rater notes, or one rating object, got "
                         f"{type(value).__name__}")
    return value, False


def _text(element: dict[str, Any], *keys: str, default: str | None = None) -> str:
    """The first of ``keys`` the element has, as a non-blank string (else ``default``, else malformed)."""
    for key in keys:
        if key in element:
            value = element[key]
            if not isinstance(value, str) or not value.strip():
                raise InputError("rating_malformed", f"{key!r} must be a non-blank string, got {value!r}")
            return value.strip()
    if default is not None:
        return default
    raise InputError("rating_malformed", f"no {' or '.join(repr(k) for k in keys)}")


def _score(element: dict[str, Any], score_key: str) -> float:
    """A 0-10 score: a number, or a number written as text (MCU and MineStudio's newer tools)."""
    raw = element.get(score_key)
    value: Any = raw
    if isinstance(raw, str):
        try:
            value = float(raw.strip())
        except ValueError:
            value = None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0 <= value <= 10:
        raise InputError("rating_malformed", f"{score_key!r} must be a number from 0 to 10, got {raw!r}")
    return float(value)


_VIDEO_WORDS = re.compile(r"^(?:the\s+)?(?:video[\s_]*)?([ab12])$")
_TIE_WORDS = frozenset({"tie", "draw", "equal", "same", "both", "neither", "none"})


def _winner(element: dict[str, Any], score_key: str) -> str | None:
    """The judged-better video of a pairwise comparison: ``video_1_path`` / ``video_2_path``, or None
    for a tie. The verdict is ``score_key``'s value naming video A/1 or B/2 (``"A"``, ``"Video B"``,
    ``"video_2"``, ``"1"``), or a tie (``"tie"``, ``"equal"``, ...)."""
    raw = element.get(score_key)
    text = " ".join(raw.strip().lower().rstrip(".").split()) if isinstance(raw, str) else ""
    match = _VIDEO_WORDS.match(text)
    if match:
        return "video_1_path" if match.group(1) in "a1" else "video_2_path"
    if text in _TIE_WORDS:
        return None
    raise InputError("rating_malformed", f"{score_key!r} of a comparison must name video A or B (or a tie), "
                                         f"got {raw!r}")


def _rated_video(files_by_name: dict[str, list[str]], rated_path: str) -> tuple[list[str], list[str]]:
    """The corpus files that can be the rated video, and the trailing parts of ``rated_path`` that
    tell it apart: its file name, then as many of its folders as it takes to leave one file."""
    parts = [p for p in re.split(r"[\\/]+", rated_path.strip()) if p]
    used = parts[-1:]
    matches = files_by_name.get(parts[-1], []) if parts else []
    while len(matches) > 1 and len(used) < len(parts):
        longer = parts[-len(used) - 1:]
        suffix = "/".join(longer)
        narrowed = [m for m in matches if m == suffix or m.endswith("/" + suffix)]
        if not narrowed:
            break
        matches, used = narrowed, longer
    return matches, used


def _video_files(corpus_root: Path, videos_dir: str) -> dict[str, list[str]]:
    """File name -> corpus-relative paths of every file under ``videos_dir`` (hidden entries skipped)."""
    try:
        top = resolve_inside(corpus_root, videos_dir)
    except InputError as exc:
        raise ValueError(f"videos_dir {videos_dir!r}: {exc.detail}") from exc
    if not top.is_dir():
        raise ValueError(f"videos_dir {videos_dir!r} is not a folder inside the corpus root")
    found: dict[str, list[str]] = {}
    root = corpus_root.resolve()
    for folder, dirs, files in os.walk(top):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            try:
                resolved = resolve_inside(root, os.path.relpath(os.path.join(folder, name), root))
            except InputError:
                continue  # a symlink out of the corpus root is not the corpus's video
            found.setdefault(name, []).append(relative_to_root(root, resolved))
    return found


def rating_files(ratings_dir: Path) -> list[Path]:
    """Every ``*.json`` file under ``ratings_dir``, at any depth (MCU keeps one folder per agent,
    ``vlm_rating_res/steve_res/``), sorted; hidden files and folders left out."""
    top = Path(ratings_dir)
    return sorted(p for p in top.rglob("*.json")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(top).parts))


def mine_ratings(rating_files: Iterable[Path], corpus_root: Path, threshold: float = 8.0, *,
                 videos_dir: str = ".", tasks: Sequence[Task] = (), decoder: VideoDecoder | str | None = None,
                 score_key: str = RATING_SCORE_KEY) -> tuple[list[GoalMoment], list[QuarantineRecord]]:
    """One moment per rating with ``score_key >= threshold`` and per comparison's judged-better video
    (rules in the module docstring).

    ``videos_dir`` is the corpus-relative folder the rated videos are looked up in, by file name (and
    trailing folders when names repeat). ``tasks`` (e.g.
    :func:`~goalcraft.data.task_vocabulary.load_minestudio_tasks`) give the instruction of a task
    name; without one, the instruction is the task name with ``_`` read as spaces. Files are read in
    the given order, elements in list order.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 10:
        raise ValueError(f"threshold must be a number from 0 to 10, got {threshold!r}")
    corpus_root = Path(corpus_root)
    if isinstance(decoder, str) or decoder is None:
        decoder = get_decoder(decoder or "auto")
    instructions = {t.name: t.instruction for t in tasks}
    files_by_name: dict[str, list[str]] | None = None
    moments: list[GoalMoment] = []
    quarantined: list[QuarantineRecord] = []
    for path in rating_files:
        path = Path(path)
        shown = _shown(path, corpus_root)
        try:
            elements, single = _load_rating_file(path)
        except InputError as exc:
            quarantined.append(QuarantineRecord(shown, "rating", exc.reason, exc.detail))
            continue
        for index, element in enumerate(elements):
            where = shown if single else f"{shown}#{index}"
            if isinstance(element, str):
                continue  # the rater's free-text answer
            try:
                if not isinstance(element, dict):
                    raise InputError("rating_malformed",
                                     f"element {index} is a {type(element).__name__}, not a rating object or a note")
                if "video_path" not in element and "video_1_path" in element:  # a pairwise comparison
                    # MineStudio names a comparison file after its task (spaces as _)
                    task_name = _text(element, "task_name", "task", default=path.stem)
                    winner = _winner(element, score_key)
                    for key in ("video_1_path", "video_2_path"):
                        _text(element, key)
                    if winner is None:
                        continue  # a tie: neither video is the better one
                    rated_path, miner, confidence = _text(element, winner), "comparison", COMPARISON_CONFIDENCE
                    judged = f"judged the better video of a pair ({score_key}: {element[score_key]!r})"
                else:
                    rated_path, task_name = _text(element, "video_path"), _text(element, "task_name", "task")
                    score = _score(element, score_key)
                    if score < threshold:
                        continue
                    miner, confidence = "rating", round(score / 10, 6)
                    judged = f"rated {score_key} {score:g} >= {threshold:g}"
            except InputError as exc:
                quarantined.append(QuarantineRecord(where, "rating", exc.reason, exc.detail))
                continue
            if files_by_name is None:
                files_by_name = _video_files(corpus_root, videos_dir)
            matches, used = _rated_video(files_by_name, rated_path)
            source_id = trial_id_for("__".join([*used[:-1], Path(used[-1]).stem or used[-1]]) if used else "?")
            if len(matches) != 1:
                reason = "rating_video_missing" if not matches else "rating_video_ambiguous"
                found = "no file" if not matches else f"{len(matches)} files ({', '.join(matches[:3])})"
                quarantined.append(QuarantineRecord(
                    where, "rating", reason,
                    f"{'/'.join(used)} ({judged} for {task_name}, recorded as {rated_path}): "
                    f"{found} of that name under {videos_dir!r} in the corpus", source_id))
                continue
            video_path = matches[0]
            try:
                with decoder.open(corpus_root / video_path, height=CLIP_HEIGHT, width=CLIP_WIDTH) as handle:
                    info = handle.info
            except InputError as exc:
                quarantined.append(QuarantineRecord(video_path, "decode", exc.reason, exc.detail, source_id))
                continue
            last = info.num_frames - 1
            moments.append(GoalMoment(
                source="trial", source_id=source_id, video_path=video_path, miner=miner, task=task_name,
                instruction=instructions.get(task_name) or " ".join(task_name.replace("_", " ").split()),
                confidence=confidence, success_time=round(last / info.fps, 6), success_frame=last,
                detail=(f"{where}: {judged}; the judgement is of the whole recording, so its last decodable "
                        "frame is the goal"),
            ))
    return moments, quarantined
