"""The corpus writer: plays the episodes and writes videos, transcripts, trials, the event log and
the task vocabulary under one root (layout in :mod:`goalcraft.crafter`)."""

from __future__ import annotations

import collections
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from goalcraft.crafter.agent import Episode, play_episode
from goalcraft.crafter.deterministic_env import DEFAULT_SIZE
from goalcraft.crafter.narration import transcript_segments, webvtt
from goalcraft.crafter.tasks import ACHIEVEMENTS, TASKS, TRIAL_TARGETS, tasks_json_text
from goalcraft.data.video_writer import write_video
from goalcraft.storage import commit_directory, new_staging_dir, recover_directory

__all__ = ["TRIAL_TAIL_FRAMES", "CorpusSummary", "generate_crafter_corpus"]

# A trial's video goes on for this many frames after the success frame, then stops.
TRIAL_TAIL_FRAMES = 10


@dataclass(frozen=True)
class CorpusSummary:
    """What :func:`generate_crafter_corpus` wrote."""

    root: Path
    seed: int
    videos: int
    trials: int
    episodes: int
    events: int
    successes: int  # trials + STEVE-1 episodes that reached their target
    unlocks: dict[str, int]  # achievement -> number of unlock events, whole corpus
    video_ids: tuple[str, ...] = ()
    trial_ids: tuple[str, ...] = ()
    episode_ids: tuple[str, ...] = ()
    manifest_path: Path = field(default=Path())
    events_path: Path = field(default=Path())
    tasks_path: Path = field(default=Path())


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _seq(seed: int, *key: int) -> np.random.SeedSequence:
    """Independent, stable random streams: one per (kind, index, ...) under the corpus seed."""
    return np.random.SeedSequence(entropy=seed, spawn_key=key)


def _play_until_alive(seed: int, kind: int, index: int, size: tuple[int, int], max_steps: int,
                      target: str | None = None, attempts: int = 8, varied: bool = False) -> tuple[Episode, int]:
    """Play; if the player dies before the episode is complete, replay in another world."""
    for attempt in range(attempts):
        env_seed, policy_seed = (int(x) for x in _seq(seed, kind, index, attempt).generate_state(2) % (2**31 - 1))
        episode = play_episode(env_seed, policy_seed, size, max_steps, target, TRIAL_TAIL_FRAMES, varied)
        if not episode.died:
            break
    return episode, env_seed


_TITLES = (
    "Crafter let's play #{n}: {highlights}",
    "Crafter survival ep. {n} - {highlights}",
    "My Crafter world, part {n}: {highlights}",
    "Crafter #{n} | {highlights} (no commentary... just kidding)",
)


def _title(index: int, episode: Episode, rng: np.random.RandomState) -> str:
    """A YouTube-ish title naming the video's rarest unlocks, in the order they happened."""
    counts = collections.Counter(name for _, name in episode.events)
    if not counts:
        highlights = "just exploring"
    else:
        rarest = sorted(counts, key=lambda n: (counts[n], ACHIEVEMENTS.index(n)))[:3]
        names = [TASKS[n]["instruction"] for n in dict.fromkeys(n for _, n in episode.events) if n in rarest]
        highlights = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return _TITLES[rng.randint(len(_TITLES))].format(n=index + 1, highlights=highlights)


def generate_crafter_corpus(
    root: Path,
    *,
    seed: int = 0,
    n_videos: int = 6,
    steps_per_video: int = 300,
    n_trials: int = 4,
    n_steve1_episodes: int = 2,
    fps: int = 10,
    size: tuple[int, int] = DEFAULT_SIZE,
    trial_max_steps: int = 250,
    progress: Callable[[str], None] | None = None,
) -> CorpusSummary:
    """Play Crafter and write the demo corpus under ``root`` (layout in :mod:`goalcraft.crafter`).

    ``size`` is (width, height) of every video, multiples of 16 (default 256x160). Videos have
    ``steps_per_video + 1`` frames; frame ``t`` shows the game after step ``t`` and an unlock at step
    ``t`` has ``time = t / fps``. Trials and STEVE-1 episodes stop :data:`TRIAL_TAIL_FRAMES` frames
    after their target's first unlock, or after ``trial_max_steps`` steps (then unsuccessful).

    The corpus is built in a temporary directory next to ``root`` and swapped in, so readers never
    see a partial corpus; an existing non-corpus directory at ``root`` is refused, not replaced.
    The output is a pure function of the arguments (byte-identical across runs and processes).
    """
    root = Path(os.path.abspath(root))
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    seed = int(seed)
    if steps_per_video < 1 or trial_max_steps < 1 or fps <= 0:
        raise ValueError("steps_per_video, trial_max_steps and fps must be positive")
    if root.exists() and any(root.iterdir()) and not (root / "manifest.jsonl").exists():
        raise FileExistsError(f"{root} exists and is not a goalcraft corpus; refusing to replace it")
    say = progress or (lambda _msg: None)

    staging_root = root.parent / f".{root.name}.staging"
    recover_directory(root, staging_root)
    staging = new_staging_dir(root, staging_root)
    try:
        summary = _generate(staging, root, seed, n_videos, steps_per_video, n_trials, n_steve1_episodes,
                            fps, tuple(size), trial_max_steps, say)
        commit_directory(staging, root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if staging_root.is_dir() and not any(staging_root.iterdir()):
            staging_root.rmdir()
    say(f"corpus written to {root}: {summary.videos} videos, {summary.trials} trials, "
        f"{summary.episodes} episodes, {summary.events} events")
    return summary


def _generate(out: Path, root: Path, seed: int, n_videos: int, steps_per_video: int, n_trials: int,
              n_episodes: int, fps: int, size: tuple[int, int], trial_max_steps: int,
              say: Callable[[str], None]) -> CorpusSummary:
    for sub in ("videos", "transcripts", "trials", "ground_truth"):
        (out / sub).mkdir(parents=True)
    events: list[dict[str, Any]] = []
    manifest: list[dict[str, Any]] = []

    def log(source_id: str, source: str, episode: Episode) -> None:
        for step, name in episode.events:
            events.append({"source_id": source_id, "source": source, "achievement": name,
                           "step": step, "frame": step, "time": step / fps})

    video_ids = []
    for i in range(n_videos):
        vid = f"crafter-{seed}-v{i:02d}"
        episode, _env_seed = _play_until_alive(seed, 1, i, size, steps_per_video)
        info = write_video(out / "videos" / f"{vid}.mp4", episode.frames, fps)
        duration = round(info.frames / fps, 3)
        meta_rng = np.random.RandomState(_seq(seed, 2, i).generate_state(1)[0])
        segments = transcript_segments(episode.events, episode.daylight, fps, duration, meta_rng)
        if i % 2 == 0:
            transcript = f"transcripts/{vid}.json"
            _write_json(out / transcript, segments)
        else:
            transcript = f"transcripts/{vid}.vtt"
            (out / transcript).write_text(webvtt(segments), encoding="utf-8")
        views = int(10 ** meta_rng.uniform(2.5, 5.5))
        manifest.append({
            "id": vid,
            "title": _title(i, episode, meta_rng),
            "link": f"file://videos/{vid}.mp4",
            "view_count": views,
            "like_count": int(views * meta_rng.uniform(0.01, 0.06)),
            "duration": duration,
            "fps": fps,
            "path": f"videos/{vid}.mp4",
            "transcript": transcript,
        })
        log(vid, "video", episode)
        video_ids.append(vid)
        say(f"video {vid}: {info.frames} frames, {len(episode.events)} unlocks")

    order = np.random.RandomState(_seq(seed, 3, 0).generate_state(1)[0]).permutation(len(TRIAL_TARGETS))
    trial_ids, episode_ids, successes = [], [], 0
    for j in range(n_trials + n_episodes):
        steve1 = j >= n_trials
        tid = f"crafter-{seed}-s{j - n_trials:02d}" if steve1 else f"crafter-{seed}-t{j:02d}"
        target = TRIAL_TARGETS[order[j % len(TRIAL_TARGETS)]]
        episode, env_seed = _play_until_alive(seed, 4, j, size, trial_max_steps, target)
        tdir = out / "trials" / tid
        tdir.mkdir()
        info = write_video(tdir / ("frames.mp4" if steve1 else "video.mp4"), episode.frames, fps)
        success = episode.success_frame is not None
        successes += success
        meta = {
            "instruction": TASKS[target]["instruction"],
            "task": target,
            "success": success,
            "success_time": episode.success_frame / fps if success else None,
            "success_frame": episode.success_frame,
            "fps": fps,
            "seed": env_seed,
        }
        _write_json(tdir / "metadata.json", meta)
        if steve1:
            (tdir / "len.txt").write_text(str(info.frames), encoding="utf-8")
            episode_ids.append(tid)
        else:
            trial_ids.append(tid)
        log(tid, "trial", episode)
        say(f"{'episode' if steve1 else 'trial'} {tid}: {target} "
            f"{'succeeded at frame ' + str(episode.success_frame) if success else 'failed'}")

    _write_jsonl(out / "manifest.jsonl", manifest)
    _write_jsonl(out / "ground_truth" / "events.jsonl", events)
    (out / "tasks.json").write_text(tasks_json_text(), encoding="utf-8")
    unlocks = dict.fromkeys(ACHIEVEMENTS, 0)
    for event in events:
        unlocks[event["achievement"]] += 1
    return CorpusSummary(
        root=root, seed=seed, videos=len(video_ids), trials=len(trial_ids), episodes=len(episode_ids),
        events=len(events), successes=successes, unlocks=unlocks, video_ids=tuple(video_ids),
        trial_ids=tuple(trial_ids), episode_ids=tuple(episode_ids),
        manifest_path=root / "manifest.jsonl", events_path=root / "ground_truth" / "events.jsonl",
        tasks_path=root / "tasks.json",
    )
