"""The corpus writer: plays the episodes and writes videos, transcripts, trials, the event log and
the task vocabulary under one root (layout in :mod:`goalcraft.crafter`)."""

from __future__ import annotations

import collections
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Sequence

import numpy as np

from goalcraft.crafter.agent import PURSUABLE_TARGETS, Episode, play_episode
from goalcraft.crafter.explore import EXPLORE_AGENTS
from goalcraft.crafter.deterministic_env import DEFAULT_SIZE
from goalcraft.crafter.narration import transcript_segments, webvtt
from goalcraft.crafter.tasks import ACHIEVEMENTS, TASKS, TRIAL_TARGETS, tasks_json_text
from goalcraft.data.trajectories import (
    ACTIONS_FILE,
    STEVE1_ACTIONS_FILE,
    TRAJECTORIES_DIR,
    actions_jsonl,
    steve1_actions_pickle,
)
from goalcraft.data.video_writer import write_video
from goalcraft.formats import CRAFTER_ACTIONS
from goalcraft.processes import process_pool
from goalcraft.storage import commit_directory, new_staging_dir, recover_directory

__all__ = ["TRIAL_TAIL_FRAMES", "VIDEO_AGENTS", "CorpusSummary", "generate_crafter_corpus"]

#: The players :func:`generate_crafter_corpus` can record the videos with (``video_agent``).
VIDEO_AGENTS = ("free", "varied")

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
    trajectories: int = 0  # episodes whose actions were recorded (every episode with record_actions)
    explore_ids: tuple[str, ...] = ()


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _seq(seed: int, *key: int) -> np.random.SeedSequence:
    """Independent, stable random streams: one per (kind, index, ...) under the corpus seed."""
    return np.random.SeedSequence(entropy=seed, spawn_key=key)


def _play_until_alive(seed: int, kind: int, index: int, size: tuple[int, int], max_steps: int,
                      target: str | None = None, attempts: int = 8, varied: bool = False,
                      agent: str | None = None, pace: int = 0) -> tuple[Episode, int]:
    """Play; if the player dies before the episode is complete, replay in another world. An
    exploratory ``agent`` (:data:`EXPLORE_AGENTS`) plays once: its death ends the episode."""
    for attempt in range(1 if agent else attempts):
        env_seed, policy_seed = (int(x) for x in _seq(seed, kind, index, attempt).generate_state(2) % (2**31 - 1))
        episode = play_episode(env_seed, policy_seed, size, max_steps, target, TRIAL_TAIL_FRAMES, varied,
                               agent=EXPLORE_AGENTS[agent] if agent else None, pace=pace)
        if not episode.died:
            break
    return episode, env_seed


@dataclass(frozen=True)
class _Take:
    """One episode to play and encode: a video (``kind`` 1) or a trial / STEVE-1 episode (4)."""

    seed: int
    kind: int
    index: int
    size: tuple[int, int]
    max_steps: int
    target: str | None
    varied: bool
    path: str
    fps: int
    agent: str | None = None  # an exploratory player (kind 5)
    pace: int = 0  # play_episode's pace (videos and trials)


@dataclass(frozen=True)
class _Played:
    """What the writer needs of a played and encoded episode (the frames stay where they were encoded)."""

    events: list[tuple[int, str]]
    daylight: list[float]
    success_frame: int | None
    env_seed: int
    frames: int
    actions: tuple[int, ...] = ()
    rewards: tuple[float, ...] = ()
    agent: str = ""
    died: bool = False


def _play_and_write(take: _Take) -> _Played:
    """Play ``take`` and encode its video; a pure function of ``take`` (any process, any order)."""
    episode, env_seed = _play_until_alive(take.seed, take.kind, take.index, take.size, take.max_steps,
                                          take.target, varied=take.varied, agent=take.agent, pace=take.pace)
    info = write_video(Path(take.path), episode.frames, take.fps)
    return _Played(episode.events, episode.daylight, episode.success_frame, env_seed, info.frames,
                   tuple(episode.actions), tuple(episode.rewards), episode.agent, episode.died)


def _played(takes: list[_Take], workers: int) -> Iterator[_Played]:
    """The takes' results in order: played here one by one, or by ``workers`` processes
    (goalcraft.processes)."""
    if workers == 1 or len(takes) <= 1:
        yield from map(_play_and_write, takes)
        return
    pool = process_pool(min(workers, len(takes)))
    try:
        futures = [pool.submit(_play_and_write, take) for take in takes]
        for future in futures:
            yield future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


_TITLES = (
    "Crafter let's play #{n}: {highlights}",
    "Crafter survival ep. {n} - {highlights}",
    "My Crafter world, part {n}: {highlights}",
    "Crafter #{n} | {highlights} (no commentary... just kidding)",
)


def _title(index: int, episode: _Played, rng: np.random.RandomState) -> str:
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
    video_agent: Literal["free", "varied"] = "free",
    trial_targets: Sequence[str] | None = None,
    workers: int = 1,
    record_actions: bool = True,
    n_explore_episodes: int = 0,
    explore_steps: int = 300,
    explore_agents: Sequence[str] = tuple(EXPLORE_AGENTS),
    transcripts: Literal["mixed", "json"] = "mixed",
    trial_pace_steps: int = 0,
    video_pace_steps: int = 0,
) -> CorpusSummary:
    """Play Crafter and write the demo corpus under ``root`` (layout in :mod:`goalcraft.crafter`).

    ``size`` is (width, height) of every video, multiples of 16 (default 256x160). Videos have
    ``steps_per_video + 1`` frames; frame ``t`` shows the game after step ``t`` and an unlock at step
    ``t`` has ``time = t / fps``. Trials and STEVE-1 episodes stop :data:`TRIAL_TAIL_FRAMES` frames
    after their target's first unlock, or after ``trial_max_steps`` steps (then unsuccessful).

    ``video_agent`` picks the player of the videos: ``"free"`` (default) is
    :class:`~goalcraft.crafter.agent.ScriptedAgent`'s free play, ``"varied"`` is
    :class:`~goalcraft.crafter.agent.VariedAgent`'s errand curriculum, which unlocks many more
    different achievements per video (made for study corpora; 1000-step videos suit it).
    ``trial_targets`` are the achievements the trials and STEVE-1 episodes cycle through, in a
    seeded order (``None``: :data:`~goalcraft.crafter.tasks.TRIAL_TARGETS`; e.g.
    ``TRIAL_TARGETS + STUDY_TRIAL_TARGETS`` for a study corpus, with a larger ``trial_max_steps``);
    each must be in :data:`~goalcraft.crafter.agent.PURSUABLE_TARGETS`. ``workers`` > 1 plays and
    encodes the episodes in that many processes; every episode is a pure function of
    ``(seed, kind, index)``, so the files are the same for any number of workers, and the progress
    lines come in the same order. ``transcripts``: ``"mixed"`` writes every other video's narration as
    YouTube-style WebVTT, ``"json"`` all as timed JSON speech. Invalid ``video_agent``,
    ``trial_targets``, ``workers`` or ``transcripts``: ValueError. ``trial_pace_steps`` > 0: a trial's (or
    STEVE-1 episode's) target unlock waits until that many steps after any other unlock, so its goal
    clip shows one success (:func:`~goalcraft.crafter.agent.play_episode`'s ``pace``; measured: 38
    trials, purity 0.29 -> 0.97, none failed, 23 -> 28 s). ``video_pace_steps`` > 0 keeps all of a
    video player's unlocks of different achievements that far apart (costly: the player dies more
    and unlocks fewer kinds; docs/results.md). Exploratory episodes are not paced.

    ``record_actions`` writes every episode's actions, rewards and unlocks beside its video
    (:mod:`goalcraft.data.trajectories`: ``actions.jsonl`` in each trial folder, plus STEVE-1's
    ``actions.pkl`` in STEVE-1-layout ones, and ``trajectories/<video id>/actions.jsonl`` for the
    videos); these are new files only, every other file is the same as without them.
    ``n_explore_episodes`` exploratory episodes of up to ``explore_steps`` steps, played in turn by
    ``explore_agents`` (:data:`~goalcraft.crafter.explore.EXPLORE_AGENTS`), go to
    ``trajectories/<id>/`` in STEVE-1's episode layout (``frames.mp4``, ``len.txt``,
    ``metadata.json``, ``actions.pkl``) with an ``actions.jsonl``; the pipeline's ingest does not read
    them (they have no instruction), the policy trainer does.

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
    if video_agent not in VIDEO_AGENTS:
        raise ValueError(f"video_agent must be one of {', '.join(VIDEO_AGENTS)}, got {video_agent!r}")
    if isinstance(trial_targets, str):
        raise ValueError(f"trial_targets must be a sequence of achievement names, not the string {trial_targets!r}")
    targets = TRIAL_TARGETS if trial_targets is None else tuple(trial_targets)
    unknown = [t for t in targets if t not in PURSUABLE_TARGETS]
    if unknown:
        raise ValueError(f"unknown trial target(s) {', '.join(map(repr, unknown))}; the agents can pursue: "
                         f"{', '.join(sorted(PURSUABLE_TARGETS))}")
    if not targets and n_trials + n_steve1_episodes > 0:
        raise ValueError("trial_targets is empty but trials or STEVE-1 episodes were asked for")
    if isinstance(workers, bool) or int(workers) != workers or workers < 1:
        raise ValueError(f"workers must be a positive int, got {workers!r}")
    if isinstance(explore_agents, str) or not explore_agents or any(a not in EXPLORE_AGENTS for a in explore_agents):
        raise ValueError(f"explore_agents must name some of {', '.join(EXPLORE_AGENTS)}, got {explore_agents!r}")
    if n_explore_episodes < 0 or explore_steps < 1:
        raise ValueError("n_explore_episodes must be >= 0 and explore_steps positive")
    if transcripts not in ("mixed", "json"):
        raise ValueError(f"transcripts must be 'mixed' or 'json', got {transcripts!r}")
    for name, value in (("trial_pace_steps", trial_pace_steps), ("video_pace_steps", video_pace_steps)):
        if isinstance(value, bool) or int(value) != value or value < 0:
            raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    if root.exists() and any(root.iterdir()) and not (root / "manifest.jsonl").exists():
        raise FileExistsError(f"{root} exists and is not a goalcraft corpus; refusing to replace it")
    say = progress or (lambda _msg: None)

    staging_root = root.parent / f".{root.name}.staging"
    recover_directory(root, staging_root)
    staging = new_staging_dir(root, staging_root)
    try:
        summary = _generate(staging, root, seed, n_videos, steps_per_video, n_trials, n_steve1_episodes,
                            fps, tuple(size), trial_max_steps, say, video_agent == "varied", targets,
                            int(workers), record_actions, int(n_explore_episodes), int(explore_steps),
                            tuple(explore_agents), transcripts, int(trial_pace_steps), int(video_pace_steps))
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
              say: Callable[[str], None], varied: bool, targets: tuple[str, ...], workers: int,
              record_actions: bool = True, n_explore: int = 0, explore_steps: int = 300,
              explore_agents: tuple[str, ...] = tuple(EXPLORE_AGENTS), transcripts: str = "mixed",
              trial_pace: int = 0, video_pace: int = 0) -> CorpusSummary:
    for sub in ("videos", "transcripts", "trials", "ground_truth"):
        (out / sub).mkdir(parents=True)
    events: list[dict[str, Any]] = []
    manifest: list[dict[str, Any]] = []

    def log(source_id: str, source: str, episode: _Played) -> None:
        for step, name in episode.events:
            events.append({"source_id": source_id, "source": source, "achievement": name,
                           "step": step, "frame": step, "time": step / fps})

    # Every episode first (in worker processes if asked), then the files that need them, in order.
    video_ids = [f"crafter-{seed}-v{i:02d}" for i in range(n_videos)]
    takes = [_Take(seed, 1, i, size, steps_per_video, None, varied, str(out / "videos" / f"{vid}.mp4"), fps,
                   pace=video_pace) for i, vid in enumerate(video_ids)]
    order = np.random.RandomState(_seq(seed, 3, 0).generate_state(1)[0]).permutation(len(targets))
    trial_plan = []
    for j in range(n_trials + n_episodes):
        steve1 = j >= n_trials
        tid = f"crafter-{seed}-s{j - n_trials:02d}" if steve1 else f"crafter-{seed}-t{j:02d}"
        target = targets[order[j % len(targets)]]
        tdir = out / "trials" / tid
        tdir.mkdir()
        trial_plan.append((steve1, tid, target, tdir))
        takes.append(_Take(seed, 4, j, size, trial_max_steps, target, False,
                           str(tdir / ("frames.mp4" if steve1 else "video.mp4")), fps, pace=trial_pace))
    explore_plan = []
    for j in range(n_explore):
        xid = f"crafter-{seed}-x{j:02d}"
        xdir = out / TRAJECTORIES_DIR / xid
        xdir.mkdir(parents=True)
        explore_plan.append((xid, xdir))
        takes.append(_Take(seed, 5, j, size, explore_steps, None, False, str(xdir / "frames.mp4"), fps,
                           agent=explore_agents[j % len(explore_agents)]))
    recorded = [0]

    def record(folder: Path, source_id: str, kind: str, video: str, episode: _Played,
               target: str | None = None, steve1: bool = False) -> None:
        """The episode's actions beside its video (new files only; goalcraft.data.trajectories)."""
        if not record_actions:
            return
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ACTIONS_FILE).write_text(actions_jsonl(
            source_id=source_id, kind=kind, agent=episode.agent, env_seed=episode.env_seed, fps=fps, video=video,
            actions=episode.actions, rewards=episode.rewards, events=episode.events, action_names=CRAFTER_ACTIONS,
            died=episode.died, target=target), encoding="utf-8")
        if steve1:
            (folder / STEVE1_ACTIONS_FILE).write_bytes(steve1_actions_pickle(episode.actions, episode.frames))
        recorded[0] += 1

    played = _played(takes, workers)
    try:
        for i, vid in enumerate(video_ids):
            episode = next(played)
            duration = round(episode.frames / fps, 3)
            meta_rng = np.random.RandomState(_seq(seed, 2, i).generate_state(1)[0])
            segments = transcript_segments(episode.events, episode.daylight, fps, duration, meta_rng)
            if i % 2 == 0 or transcripts == "json":
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
            record(out / TRAJECTORIES_DIR / vid, vid, "video", f"videos/{vid}.mp4", episode)
            say(f"video {vid}: {episode.frames} frames, {len(episode.events)} unlocks")

        trial_ids, episode_ids, successes = [], [], 0
        for steve1, tid, target, tdir in trial_plan:
            episode = next(played)
            env_seed = episode.env_seed
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
                (tdir / "len.txt").write_text(str(episode.frames), encoding="utf-8")
                episode_ids.append(tid)
            else:
                trial_ids.append(tid)
            log(tid, "trial", episode)
            record(tdir, tid, "steve1_episode" if steve1 else "trial",
                   f"trials/{tid}/{'frames.mp4' if steve1 else 'video.mp4'}", episode, target, steve1)
            say(f"{'episode' if steve1 else 'trial'} {tid}: {target} "
                f"{'succeeded at frame ' + str(episode.success_frame) if success else 'failed'}")

        for xid, xdir in explore_plan:  # exploratory episodes: STEVE-1's episode layout, no instruction
            episode = next(played)
            (xdir / "len.txt").write_text(str(episode.frames), encoding="utf-8")
            _write_json(xdir / "metadata.json", {"agent": episode.agent, "seed": episode.env_seed, "fps": fps,
                                                 "died": episode.died, "unlocked": [n for _, n in episode.events]})
            record(xdir, xid, "explore", f"{TRAJECTORIES_DIR}/{xid}/frames.mp4", episode, steve1=True)
            say(f"explore {xid}: {episode.agent}, {episode.frames} frames, {len(episode.events)} unlocks"
                f"{', died' if episode.died else ''}")
    finally:
        played.close()  # (stops the worker processes if anything went wrong)

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
        tasks_path=root / "tasks.json", trajectories=recorded[0], explore_ids=tuple(x for x, _ in explore_plan),
    )
