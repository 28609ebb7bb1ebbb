"""Trajectories with actions: what an agent did at every step of a recorded episode, beside its video.

Two files, both written by the Crafter corpus (:func:`goalcraft.crafter.corpus.generate_crafter_corpus`):

``actions.jsonl`` (goalcraft)
    Line 1, the header: ``{"format": "goalcraft.actions/1", "source_id", "kind" ("video", "trial",
    "steve1_episode", "explore"), "agent" (the player's class), "env_seed", "fps", "frames", "steps",
    "died", "target" (or null), "video" (the corpus-relative path of the episode's video),
    "action_names" (the env's actions, index = id)}``. Then one line per step ``t`` = 1 … ``steps``:
    ``{"step": t, "action": id, "reward": r, "unlocked": [achievement, ...]}``. The action of step
    ``t`` was chosen on frame ``t - 1`` of the video; frame ``t`` shows the game after it, so a video
    has ``steps + 1`` frames. ``unlocked``: the achievements whose count rose at that step (Crafter's
    ``info["achievements"]``), in Crafter's order; ``reward``: Crafter's reward of that step.

``actions.pkl`` (STEVE-1's ``EpisodeStorage``)
    STEVE-1 saves one env action per frame (``len(actions) == len(frames) == len.txt``; the action
    on frame ``i`` is the one taken after seeing it), each as the env-format action dict its agent
    hands to ``env.step``, every value an array with a leading batch dimension of 1. Crafter's action
    space is a single ``Discrete(17)``, so each dict is ``{"action": np.array([id])}``; the last frame,
    after which nothing was taken, holds ``{"action": np.array([-1])}``. goalcraft reads this file
    only through the restricted unpickler (:mod:`goalcraft.data.safe_pickle`) and only where no
    ``actions.jsonl`` is beside it; a MineRL episode's dicts (``forward``, ``camera``, …) are not Crafter
    actions and are quarantined as such.

Where they are: a trial folder (``trials/<id>/``, either layout) holds ``actions.jsonl`` beside its
video (and a STEVE-1-layout folder ``actions.pkl`` too); episodes that are not trials (the corpus's
videos, exploratory episodes) have a folder under ``trajectories/<id>/`` whose ``actions.jsonl``
header names the video, which for exploratory episodes is the folder's own ``frames.mp4`` (STEVE-1's
episode layout: ``frames.mp4``, ``len.txt``, ``metadata.json``, ``actions.pkl``).

Reading (:func:`scan_trajectories`) goes through the trial readers: trial folders are read with
:func:`goalcraft.data.trials.scan_trials` (a trial the trial reader quarantines has no trajectory),
and both kinds of folder through :func:`goalcraft.data.trials.read_trial_folders`, so ids, names and
paths follow the trial rules. A trial without an actions file is not a trajectory and is skipped.
Quarantine reasons (stage ``trajectory``): ``trajectory_actions_missing`` (a ``trajectories/`` folder
without an actions file), ``trajectory_malformed`` (not JSON lines, a wrong header, steps out of
order, an action outside the action names, frame counts that disagree), ``trajectory_not_crafter``
(an ``actions.pkl`` of other actions), ``trajectory_no_video``, plus the pickle and path reasons.
"""

from __future__ import annotations

import json
import math
import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from goalcraft.data.paths import join_relative, relative_to_root, resolve_inside
from goalcraft.data.quarantine import InputError, QuarantineRecord
from goalcraft.data.safe_pickle import safe_load
from goalcraft.data.trials import TrialRecord, _read_len, input_dir, read_trial_folders, scan_trials, subfolders
from goalcraft.formats import CRAFTER_ACTIONS

__all__ = [
    "ACTIONS_FILE",
    "ACTIONS_FORMAT",
    "STEVE1_ACTIONS_FILE",
    "TRAJECTORIES_DIR",
    "TrajectoryRecord",
    "actions_jsonl",
    "read_actions_file",
    "scan_trajectories",
    "steve1_actions_pickle",
]

ACTIONS_FILE = "actions.jsonl"
STEVE1_ACTIONS_FILE = "actions.pkl"
ACTIONS_FORMAT = "goalcraft.actions/1"
TRAJECTORIES_DIR = "trajectories"
KINDS = ("video", "trial", "steve1_episode", "explore")
STAGE = "trajectory"
_NO_ACTION = -1


@dataclass(frozen=True, eq=False)
class TrajectoryRecord:
    """One episode with its actions. ``video_path`` is corpus-relative; ``actions`` ``[steps]`` int64,
    ``rewards`` ``[steps]`` float32, ``unlocked`` the ``(step, achievement)`` pairs in order. ``trial``
    is the trial record when the episode is a trial (its instruction, task and success)."""

    id: str
    kind: str
    agent: str
    env_seed: int | None
    fps: float | None
    video_path: str
    num_frames: int
    actions: np.ndarray = field(repr=False)
    rewards: np.ndarray = field(repr=False)
    unlocked: tuple[tuple[int, str], ...] = ()
    target: str | None = None
    died: bool = False
    action_names: tuple[str, ...] = ()
    trial: TrialRecord | None = None

    @property
    def steps(self) -> int:
        return int(self.actions.shape[0])


# -- writing ---------------------------------------------------------------------------------------


def actions_jsonl(*, source_id: str, kind: str, agent: str, env_seed: int, fps: float, video: str,
                  actions: Sequence[int], rewards: Sequence[float], events: Sequence[tuple[int, str]],
                  action_names: Sequence[str], died: bool = False, target: str | None = None) -> str:
    """The text of an ``actions.jsonl`` (see the module docstring); ``events`` are ``(step, achievement)``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if len(actions) != len(rewards):
        raise ValueError(f"{len(actions)} actions but {len(rewards)} rewards")
    unlocked: dict[int, list[str]] = {}
    for step, name in events:
        unlocked.setdefault(int(step), []).append(name)
    header = {"format": ACTIONS_FORMAT, "source_id": source_id, "kind": kind, "agent": agent,
              "env_seed": int(env_seed), "fps": fps, "frames": len(actions) + 1, "steps": len(actions),
              "died": bool(died), "target": target, "video": video, "action_names": list(action_names)}
    lines = [json.dumps(header)]
    for t, (action, reward) in enumerate(zip(actions, rewards), start=1):
        lines.append(json.dumps({"step": t, "action": int(action), "reward": round(float(reward), 6),
                                 "unlocked": unlocked.get(t, [])}))
    return "\n".join(lines) + "\n"


def steve1_actions_pickle(actions: Sequence[int], frames: int) -> bytes:
    """STEVE-1's ``actions.pkl`` for a Crafter episode: one ``{"action": array([id])}`` per frame,
    the last ``frames - len(actions)`` frames (after which nothing was taken) ``array([-1])``."""
    if frames < len(actions):
        raise ValueError(f"{len(actions)} actions but only {frames} frames")
    ids = [int(a) for a in actions] + [_NO_ACTION] * (frames - len(actions))
    return pickle.dumps([{"action": np.array([a], dtype=np.int64)} for a in ids], protocol=4)


# -- reading ---------------------------------------------------------------------------------------


def _malformed(detail: str) -> InputError:
    return InputError("trajectory_malformed", detail)


def _int(value: Any, what: str, low: int = 0) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise _malformed(f"{what} must be an integer >= {low}, got {value!r}")
    return value


def _parse_jsonl(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _malformed(f"cannot read {path.name}: {exc}") from exc
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError) as exc:
            raise _malformed(f"{path.name} line {number} is not JSON: {str(exc)[:120]}") from exc
        if not isinstance(row, dict):
            raise _malformed(f"{path.name} line {number} must be an object")
        rows.append(row)
    if not rows or rows[0].get("format") != ACTIONS_FORMAT:
        raise _malformed(f"{path.name} must start with a header whose format is {ACTIONS_FORMAT!r}")
    return rows[0], rows[1:]


def read_actions_file(path: Path) -> dict[str, Any]:
    """An ``actions.jsonl``, checked: its header fields plus ``actions``, ``rewards``, ``unlocked``."""
    header, steps = _parse_jsonl(path)
    names = header.get("action_names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise _malformed("header 'action_names' must be a non-empty list of strings")
    n_steps = _int(header.get("steps"), "header 'steps'")
    frames = _int(header.get("frames"), "header 'frames'", 1)
    if frames != n_steps + 1:
        raise _malformed(f"header says {frames} frames for {n_steps} steps (a video has steps + 1 frames)")
    if len(steps) != n_steps:
        raise _malformed(f"header says {n_steps} steps, the file has {len(steps)}")
    actions = np.empty(n_steps, np.int64)
    rewards = np.empty(n_steps, np.float32)
    unlocked: list[tuple[int, str]] = []
    for i, row in enumerate(steps):
        if row.get("step") != i + 1:
            raise _malformed(f"step {i + 1} is recorded as step {row.get('step')!r}")
        action = _int(row.get("action"), f"step {i + 1} action")
        if action >= len(names):
            raise _malformed(f"step {i + 1} action {action} is not one of the {len(names)} action names")
        reward = row.get("reward")
        if not isinstance(reward, (int, float)) or isinstance(reward, bool) or not math.isfinite(reward):
            raise _malformed(f"step {i + 1} reward must be a finite number, got {reward!r}")
        names_unlocked = row.get("unlocked", [])
        if not isinstance(names_unlocked, list) or not all(isinstance(n, str) for n in names_unlocked):
            raise _malformed(f"step {i + 1} 'unlocked' must be a list of achievement names")
        actions[i], rewards[i] = action, reward
        unlocked += [(i + 1, n) for n in names_unlocked]
    seed = header.get("env_seed")
    fps = header.get("fps")
    return {**header, "env_seed": seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
            "fps": float(fps) if isinstance(fps, (int, float)) and not isinstance(fps, bool) and fps > 0 else None,
            "actions": actions, "rewards": rewards, "unlocked": tuple(unlocked), "action_names": tuple(names)}


def _read_steve1_actions(path: Path, action_names: Sequence[str]) -> dict[str, Any]:
    """STEVE-1's ``actions.pkl`` of a Crafter episode (restricted unpickler), as :func:`read_actions_file` gives."""
    value = safe_load(path)
    if not isinstance(value, list) or not value:
        raise _malformed(f"{path.name} must hold a non-empty list of action dicts")
    ids = []
    for i, entry in enumerate(value):
        if not isinstance(entry, dict) or set(entry) != {"action"}:
            keys = sorted(entry)[:6] if isinstance(entry, dict) else type(entry).__name__
            raise InputError("trajectory_not_crafter",
                             f"{path.name} frame {i}: not a Crafter action dict {{'action': [id]}} (got {keys})")
        array = np.asarray(entry["action"])
        if array.shape != (1,) or not np.issubdtype(array.dtype, np.integer):
            raise _malformed(f"{path.name} frame {i}: 'action' must be an integer array of shape (1,)")
        ids.append(int(array[0]))
    n = len(ids)
    while n and ids[n - 1] == _NO_ACTION:
        n -= 1
    if n == len(ids) or any(not 0 <= a < len(action_names) for a in ids[:n]):
        raise _malformed(f"{path.name}: actions must be ids in 0..{len(action_names) - 1}, the last frame's -1")
    return {"actions": np.array(ids[:n], np.int64), "rewards": np.full(n, np.nan, np.float32), "unlocked": (),
            "frames": len(ids), "steps": n, "action_names": tuple(action_names), "env_seed": None, "fps": None,
            "agent": "", "died": False, "target": None}


def _existing(root: Path, rel: str) -> Path | None:
    resolved = resolve_inside(root, rel)
    return resolved if resolved.is_file() else None


def _read_folder(root: Path, rel: str, trajectory_id: str, *, trial: TrialRecord | None,
                 action_names: Sequence[str]) -> TrajectoryRecord | None:
    resolve_inside(root, rel)
    jsonl = _existing(root, join_relative(rel, ACTIONS_FILE))
    pkl = _existing(root, join_relative(rel, STEVE1_ACTIONS_FILE))
    if jsonl is not None:
        data = read_actions_file(jsonl)
    elif pkl is not None:
        data = _read_steve1_actions(pkl, action_names)
    elif trial is not None:
        return None  # a trial without actions: not a trajectory
    else:
        raise InputError("trajectory_actions_missing", f"no {ACTIONS_FILE} or {STEVE1_ACTIONS_FILE}")

    if trial is not None:
        video_rel = trial.video_path
    elif isinstance(data.get("video"), str):
        video_rel = data["video"]
    else:
        video_rel = join_relative(rel, "frames.mp4")
    video = _existing(root, video_rel)
    if video is None:
        raise InputError("trajectory_no_video", f"the episode's video {video_rel} is not there")
    known_frames = trial.num_frames if trial is not None else _read_len(root, rel)
    if known_frames is not None and known_frames != data["frames"]:
        raise _malformed(f"len.txt says {known_frames} frames, the actions {data['frames']}")
    return TrajectoryRecord(
        id=trajectory_id, kind=str(data.get("kind") or ("trial" if trial is not None else "episode")),
        agent=str(data.get("agent") or ""), env_seed=data["env_seed"], fps=data["fps"] or (trial.fps if trial else None),
        video_path=relative_to_root(root, video), num_frames=int(data["frames"]), actions=data["actions"],
        rewards=data["rewards"], unlocked=data["unlocked"], target=data.get("target"),
        died=bool(data.get("died", False)), action_names=data["action_names"], trial=trial)


def scan_trajectories(corpus_root: Path, *, trials_dir: str | Path = "trials",
                      trajectories_dir: str | Path = TRAJECTORIES_DIR,
                      action_names: Sequence[str] = ()) -> tuple[list[TrajectoryRecord], list[QuarantineRecord]]:
    """Every trajectory of a corpus: the trials with an actions file (read by the trial reader first),
    then the folders under ``trajectories_dir``. Missing folders are skipped. ``action_names``: the
    env's actions, needed only for ``actions.pkl`` files without an ``actions.jsonl`` beside them
    (default: Crafter's). Problems become quarantine records (stage ``trajectory``; the trial reader's
    own records keep stage ``trial``)."""
    action_names = tuple(action_names) or CRAFTER_ACTIONS
    root = Path(corpus_root).resolve()
    found: list[TrajectoryRecord | None] = []
    quarantined: list[QuarantineRecord] = []
    if (root / trials_dir).is_dir():
        trials, rejected = scan_trials(root / trials_dir, root)
        quarantined += rejected
        by_folder = {t.video_path.rsplit("/", 1)[0]: t for t in trials}

        def read_trial(r: Path, rel: str, tid: str) -> Any:
            return _read_folder(r, rel, tid, trial=by_folder[rel], action_names=action_names)

        records, rejected = read_trial_folders(root, [(rel, t.id) for rel, t in by_folder.items()], read_trial)
        found += records
        quarantined += [_as_trajectory(q) for q in rejected]
    if (root / trajectories_dir).is_dir():
        _, folder, folder_rel = input_dir(Path(trajectories_dir), root, "trajectories directory")
        folders = [(join_relative(folder_rel, name), name) for name in subfolders(folder)]

        def read_episode(r: Path, rel: str, tid: str) -> Any:
            return _read_folder(r, rel, tid, trial=None, action_names=action_names)

        records, rejected = read_trial_folders(root, folders, read_episode)
        found += records
        quarantined += [_as_trajectory(q) for q in rejected]
    kept, seen = [], set()
    for record in found:
        if record is None:
            continue
        if record.id in seen:
            quarantined.append(QuarantineRecord(record.video_path, STAGE, "trajectory_duplicate_id",
                                                f"id {record.id!r} is both a trial and a trajectories/ folder", record.id))
            continue
        seen.add(record.id)
        kept.append(record)
    return kept, quarantined


def _as_trajectory(record: QuarantineRecord) -> QuarantineRecord:
    return QuarantineRecord(record.input, STAGE, record.reason, record.detail, record.source_id, record.partition)
