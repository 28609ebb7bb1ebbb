"""The closed loop: the goal-conditioned policy trained on the corpus's trajectories by hindsight
relabelling, and agent success per task and goal source (docs/closed-loop.md). Logic in
goalcraft.training.policy, goalcraft.evaluation.rollouts and goalcraft.evaluation.agent_success."""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np

from goalcraft.config import AgentSettings, ClipsSettings, PolicySettings, PredictorRLSettings
from goalcraft.data.quarantine import QuarantineRecord, quarantine_table
from goalcraft.stages import Markdown, StageError, StageResult, Url
from goalcraft.stages.training import history_markdown
from goalcraft.storage import StoragePaths, write_json_atomic, write_parquet_atomic, write_text_atomic

#: In the policy's folder: the world seed of every trajectory it was trained on (never evaluated on).
TRAINING_SEEDS_FILE = "training_seeds.json"
#: In the REINFORCE head's folder: the worlds it was fine-tuned on (never evaluated on either).
RL_SEEDS_FILE = "rl_world_seeds.json"
#: The stream agent success's world seeds are drawn from is goalcraft.evaluation.agent_success's
#: default; REINFORCE draws its worlds from this one.
RL_WORLD_STREAM = 0xA11
#: The REINFORCE head agent success plays: the last iteration's (``last/``). ``best/`` is picked by a
#: moving average (momentum 0.9, so weighted to the first iterations) of rewards of *sampled* goals on
#: the head's few training worlds: a selection on noise, and not the head bench/rl_step_synthetic.py
#: measured (docs/closed-loop.md §5).
RL_HEAD = "last"
#: DAgger's rounds (models/policy/dagger/): round_0 is behaviour cloning alone, round_k.npz the
#: episodes round k-1's policy played and the scripted player labelled; their worlds come from this stream.
DAGGER_DIR = "dagger"
DAGGER_WORLD_STREAM = 0xDA66E2
EPISODE_CACHE = "episodes"
Say = Callable[[str], None]


def _quiet(_msg: str) -> None:
    pass


@contextmanager
def _one_thread(when: bool = True) -> Iterator[None]:
    """torch on one thread for the duration (``when`` true)."""
    import torch

    threads = torch.get_num_threads()
    if when:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _policy_threads(workers: int):
    """torch on one thread while env processes run: they have the other cores, and more OpenMP threads
    only contend with them (a tenfold slowdown measured on a busy 2-core machine, docs/benchmarks.md)."""
    return _one_thread(workers > 0)


# -- training --------------------------------------------------------------------------------------


def _episode_key(record, goal_space_version: str, corpus_root: Path, clips: ClipsSettings, frame_size) -> str:
    from goalcraft.evaluation.run import file_digest

    h = hashlib.sha256()
    for part in (goal_space_version, file_digest(corpus_root / record.video_path), record.actions.tobytes(),
                 str(record.env_seed), clips.resize, clips.decoder, str(clips.jpeg_quality), str(frame_size)):
        h.update(part if isinstance(part, bytes) else part.encode())
    return h.hexdigest()


class _Preparer:
    """Prepares a trajectory as a :class:`~goalcraft.training.policy.PolicyEpisode`: the video decoded
    as the clip stage decodes it (and JPEG-compressed as its shards are), every 16-frame clip embedded
    in the goal space, the policy's frames by replaying the actions (they must reproduce the recorded
    unlocks). Picklable: a worker process loads the goal space and the decoder once
    (:func:`_prepare_in_worker`); here they are loaded on the first call."""

    def __init__(self, corpus_root: Path, goal_space: Path, version: str, clips: ClipsSettings, frame_size,
                 device: str) -> None:
        self.corpus_root, self.goal_space, self.version = Path(corpus_root), Path(goal_space), version
        # Plain values, not the settings object: in a pipeline step it is Dagster's config class,
        # made at run time, which does not pickle.
        self.decoding = (str(clips.decoder), float(clips.frames_fps), str(clips.resize), int(clips.jpeg_quality))
        self.frame_size, self.device = tuple(frame_size), device
        self._loaded: tuple[Any, Any] | None = None

    @property
    def key(self) -> tuple:
        return str(self.corpus_root), str(self.goal_space), self.version, self.decoding, self.frame_size, self.device

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_loaded": None}

    def __call__(self, record) -> Any:
        """The episode, or the :class:`~goalcraft.data.quarantine.InputError` that rejects the
        trajectory (returned, not raised: it crosses processes as a value)."""
        from goalcraft.data.decode import get_decoder
        from goalcraft.data.quarantine import InputError
        from goalcraft.data.shards import decode_jpeg, encode_jpeg
        from goalcraft.formats import CLIP_HEIGHT, CLIP_WIDTH
        from goalcraft.models.mineclip import load_mineclip
        from goalcraft.training.policy import PolicyEpisode, clip_goal_embeddings, replay_frames

        decoder_name, fps, resize, jpeg_quality = self.decoding
        if self._loaded is None:
            self._loaded = (load_mineclip(self.goal_space).to(self.device),
                            get_decoder(decoder_name, frames_fps=fps, resize=resize))
        model, decoder = self._loaded
        try:
            if record.env_seed is None:
                raise InputError("trajectory_no_seed", "no env_seed: the episode cannot be replayed")
            with decoder.open(self.corpus_root / record.video_path, height=CLIP_HEIGHT, width=CLIP_WIDTH) as handle:
                n = handle.info.num_frames
                if n != record.num_frames:
                    raise InputError("trajectory_frames_mismatch",
                                     f"the video has {n} frames, the actions {record.num_frames}")
                frames = handle.read(list(range(n))).frames
            frames = np.stack([decode_jpeg(encode_jpeg(f, jpeg_quality)) for f in frames])
            # One thread wherever a trajectory is prepared (a worker or this process, any core count):
            # on two, ~8% of the study's trajectories came out different in the last bits (up to
            # 1e-6), enough to change the policy trained on them.
            with _one_thread():
                goals = clip_goal_embeddings(model, frames, device=self.device)
            policy_frames, unlocked, rewards = replay_frames(record.env_seed, record.actions, self.frame_size)
            recorded = np.isfinite(record.rewards).all()  # an actions.pkl alone records no rewards or unlocks
            if recorded and (sorted(unlocked) != sorted(record.unlocked)
                             or not np.allclose(rewards, record.rewards, atol=1e-5)):
                raise InputError("trajectory_replay_mismatch",
                                 "replaying the actions does not reproduce the recorded rewards and unlocks")
        except InputError as exc:
            return exc
        return PolicyEpisode(record.id, policy_frames, record.actions.copy(), goals, record.env_seed,
                             tuple(step for step, _name in unlocked))


#: A worker process's preparer, its goal space and decoder loaded (one per process, reused by the
#: trajectories it is given).
_WORKER_PREPARER: _Preparer | None = None


def _prepare_in_worker(preparer: _Preparer, record) -> Any:
    """In a worker process: :class:`_Preparer` with the model this process already loaded."""
    global _WORKER_PREPARER
    if _WORKER_PREPARER is None or _WORKER_PREPARER.key != preparer.key:
        _WORKER_PREPARER = preparer
    return _WORKER_PREPARER(record)


def _load_episodes(paths: StoragePaths, corpus_root: Path, trials_dir: str, clips: ClipsSettings, frame_size,
                   device: str, say: Say, workers: int = 0):
    """Every trajectory of the corpus prepared for training (cached per episode under
    ``models/policy/episodes/``, keyed by the goal space, the video, the actions and the settings).
    ``workers`` processes prepare the uncached trajectories, in order, a few ahead of this one, which
    writes the cache (docs/benchmarks.md, "Preparing trajectories for the policy")."""
    from goalcraft.data.quarantine import InputError
    from goalcraft.data.trajectories import scan_trajectories
    from goalcraft.evaluation.run import file_digest
    from goalcraft.formats import CLIP_FRAMES
    from goalcraft.processes import ordered_map, process_pool
    from goalcraft.training.policy import PolicyEpisode

    records, quarantined = scan_trajectories(corpus_root, trials_dir=trials_dir)
    if not records:
        raise StageError("no trajectories with actions in the corpus: generate it with record_actions "
                         "(goalcraft.crafter.corpus; docs/closed-loop.md)")
    goal_space = paths.goal_space_dir / "best"
    if not (goal_space / "model.safetensors").is_file():
        raise StageError("no goal space: materialize goal_space_model first")
    version = file_digest(goal_space / "model.safetensors")
    cache = paths.policy_dir / EPISODE_CACHE
    cache.mkdir(parents=True, exist_ok=True)
    seeds = {int(r.env_seed) for r in records if r.env_seed is not None}
    usable, keys, cached = [], {}, {}
    for record in records:
        if record.num_frames < CLIP_FRAMES:
            quarantined.append(QuarantineRecord(record.video_path, "trajectory", "trajectory_too_short",
                                                f"{record.num_frames} frames, fewer than one clip", record.id))
            continue
        usable.append(record)
        keys[record.id] = key = _episode_key(record, version, corpus_root, clips, frame_size)
        path = cache / f"{record.id}.npz"
        if path.is_file():
            with np.load(path) as data:
                if str(data["key"]) == key:
                    # Older caches have no unlock frames; the record's are the replay's (checked then).
                    unlocks = (data["unlock_frames"].tolist() if "unlock_frames" in data.files
                               else [step for step, _name in record.unlocked])
                    cached[record.id] = PolicyEpisode(record.id, data["frames"], data["actions"], data["goals"],
                                                      record.env_seed, tuple(int(u) for u in unlocks))
    todo = [r for r in usable if r.id not in cached]
    preparer = _Preparer(corpus_root, goal_space, version, clips, frame_size, device)
    pool = process_pool(min(workers, len(todo))) if workers > 0 and len(todo) > 1 else None
    prepare = partial(_prepare_in_worker, preparer) if pool is not None else preparer
    prepared: dict[str, Any] = {}
    done = 0
    try:
        for record, outcome in ordered_map(pool, prepare, todo, ahead=2 * workers + 2):
            done += 1
            if isinstance(outcome, InputError):
                quarantined.append(QuarantineRecord(record.video_path, "trajectory", outcome.reason, outcome.detail,
                                                    record.id))
            else:
                path = cache / f"{record.id}.npz"
                tmp = path.with_name(f".{path.name}.tmp.npz")
                np.savez(tmp, key=np.array(keys[record.id]), frames=outcome.frames, actions=outcome.actions,
                         goals=outcome.goals, unlock_frames=np.asarray(outcome.unlock_frames, np.int64))
                tmp.replace(path)
                prepared[record.id] = outcome
            if done % 50 == 0 or done == len(todo):
                say(f"prepared {done}/{len(todo)} trajectories ({len(cached)} from the cache)")
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    episodes, kinds = [], Counter()
    for record in usable:
        episode = cached.get(record.id) or prepared.get(record.id)
        if episode is not None:
            episodes.append(episode)
            kinds[record.kind] += 1
    return episodes, quarantined, seeds, len(cached), dict(kinds)


def train_goal_policy(paths: StoragePaths, corpus_root: Path, settings: PolicySettings, clips: ClipsSettings, *,
                      trials_dir: str = "trials", say: Say | None = None) -> StageResult:
    """The policy in ``models/policy`` (best/, last/, history.json), trained on every trajectory of the
    corpus; ``training_seeds.json`` lists their world seeds, and trajectories that cannot be used are
    quarantined (``models/policy/quarantine.parquet``). With ``dagger_rounds`` > 0, behaviour cloning
    alone trains ``dagger/round_0``, each round's policy plays and the scripted player labels
    (``dagger/round_k.npz``, reused when written for the same policy and requests), the next round
    trains on the trajectories plus every labelled episode, and the last round is the policy;
    their worlds join ``training_seeds.json`` (agent success never plays them)."""
    import dataclasses

    from goalcraft.models.policy import POLICY_CONFIGS
    from goalcraft.training.policy import PolicyTrainingError, train_policy

    say = say or _quiet
    started = time.perf_counter()
    base = POLICY_CONFIGS[settings.config]
    frame_size = (base.frame_width, base.frame_height)
    episodes, quarantined, seeds, reused, kinds = _load_episodes(paths, corpus_root, trials_dir, clips, frame_size,
                                                                 settings.device, say, settings.workers)
    write_parquet_atomic(quarantine_table(quarantined), paths.policy_dir / "quarantine.parquet")
    if len(episodes) < 2:
        raise StageError(f"{len(episodes)} usable trajectories; the policy needs at least 2 (see "
                         f"{paths.policy_dir / 'quarantine.parquet'})")
    config = dataclasses.replace(base, goal_dim=int(episodes[0].goals.shape[1]))

    def log(record: dict) -> None:
        if record["event"] == "eval":
            say(f"policy: epoch {record['epoch']}/{record['of']} train_loss {record['train_loss']:.4g} "
                f"val_loss {record['val_loss']:.4g} val_goal_gain {record['val_goal_gain']:.3g} "
                f"({record['train_samples_per_s']:.0f} samples/s)")
        elif record["event"] == "restart":
            say(record["line"])

    def fit(data: list, out_dir: Path, init: Path | None = None):
        try:
            return train_policy(data, config, out_dir, epochs=epochs_from(init), init=init, batch_size=settings.batch_size,
                                lr=settings.lr, seed=settings.seed, val_fraction=settings.val_fraction,
                                gap=(settings.gap_low, settings.gap_high), p_uncond=settings.p_uncond,
                                relabel=settings.relabel, unlock_keep=settings.unlock_keep,
                                weight_decay=settings.weight_decay, resume="auto", log=log, device=settings.device)
        except PolicyTrainingError as exc:
            raise StageError(str(exc)) from None

    def epochs_from(init: Path | None) -> int:
        return settings.dagger_warm_epochs if init is not None else settings.epochs

    def fit_round(data: list, r: int, round_dir: Path, init: Path | None) -> Path:
        # Raising dagger_rounds: the last run's policy (models/policy) may be exactly this round's
        # training. Seed the round's folder with it; the run folder keeps it only if the fingerprint
        # (config, settings, data digest) matches, else it trains afresh.
        seeded = _seed_round_from_policy(paths.policy_dir, round_dir)
        say(f"policy: DAgger round {r}: training on {len(episodes)} trajectories + {len(labelled)} labelled")
        result = fit(data, round_dir, init)
        if seeded:
            how = ("on the same data and settings: reused" if result.resumed_from_epoch >= epochs_from(init)
                   else "on other data or settings: trained afresh" if result.resumed_from_epoch == 0
                   else f"on the same data and settings: continued from epoch {result.resumed_from_epoch}")
            say(f"policy: DAgger round {r}: the last run's policy trained {how}")
        return result.best_dir

    rounds: list[dict] = []
    labelled: list = []
    if settings.dagger_rounds:
        from goalcraft.evaluation.agent_success import world_seeds

        bank = _goal_bank(paths)
        dagger_dir = paths.policy_dir / DAGGER_DIR
        say(f"policy: behaviour cloning first (DAgger round 0 of {settings.dagger_rounds})")
        previous = fit(episodes, dagger_dir / "round_0").best_dir
        warm = settings.dagger_warm_epochs > 0
        last_success: dict | None = None
        for r in range(1, settings.dagger_rounds + 1):
            worlds = world_seeds(settings.dagger_episodes, settings.seed * 1000 + r, seeds, stream=DAGGER_WORLD_STREAM)
            weights = _focus(bank, last_success, settings.dagger_focus, r, say)
            round_eps, figures = _dagger_round(previous, bank, worlds, settings, r, dagger_dir / f"round_{r}.npz", say,
                                               weights)
            last_success = figures.get("success_by_target")
            labelled += round_eps
            seeds |= set(worlds)
            rounds.append({"round": r, **figures})
            if r < settings.dagger_rounds:
                previous = fit_round(episodes + labelled, r, dagger_dir / f"round_{r}",
                                     previous.parent if warm else None)
        init = previous.parent if warm else None
        say(f"policy: training on {len(episodes)} trajectories + {len(labelled)} labelled episodes"
            + (f", from round {settings.dagger_rounds - 1}'s policy, {settings.dagger_warm_epochs} epoch(s)" if init else ""))
    else:
        init = None
    write_json_atomic(sorted(seeds), paths.policy_dir / TRAINING_SEEDS_FILE)
    result = fit(episodes + labelled, paths.policy_dir, init)
    last = result.history[-1] if result.history else {}
    meta = {
        "trajectories": len(episodes),
        "reused_from_cache": reused,
        "by_kind": kinds,
        "train_steps": result.n_train_steps,
        "val_steps": result.n_val_steps,
        "best_epoch": result.best_epoch,
        "best_val_loss": result.best_val_loss,
        "val_goal_gain": last.get("val_goal_gain"),
        "val_accuracy": last.get("val_accuracy"),
        "train_samples_per_s": last.get("train_samples_per_s"),
        "history": history_markdown(list(result.history), ["epoch", "train_loss", "val_loss", "val_uncond_loss",
                                                           "val_goal_gain", "val_accuracy", "train_samples_per_s"]),
        "quarantined": len(quarantined),
        "training_world_seeds": len(seeds),
        "seconds": round(time.perf_counter() - started, 1),
        "policy": paths.policy_dir / "best",
    }
    if rounds:
        meta["dagger_labelled_episodes"] = len(labelled)
        meta["dagger_rounds"] = history_markdown(rounds, ["round", "episodes", "steps", "success_rate", "agreement",
                                                          "died", "dropped", "reused"])
        by_target = [r for r in rounds if r.get("success_by_target")]
        if by_target:  # each target's success rate, round by round (where the policy fails)
            columns = [f"round_{r['round']}" for r in by_target]
            meta["dagger_success_by_target"] = history_markdown(
                [{"target": t, **{c: r["success_by_target"].get(t, "") for c, r in zip(columns, by_target)}}
                 for t in sorted({t for r in by_target for t in r["success_by_target"]})], ["target", *columns])
    return StageResult(meta, [f"trajectory {q.source_id} left out ({q.reason}): {q.detail}" for q in quarantined])


def _seed_round_from_policy(policy_dir: Path, round_dir: Path) -> bool:
    """Copy the last run's policy (``best/``, ``last/``, ``history.json`` of ``policy_dir``) into a DAgger
    round's missing run folder; True if it did. Staged and committed whole, so a killed copy leaves no
    half folder that a resume could take for a run."""
    import shutil

    from goalcraft.storage import commit_directory, new_staging_dir, recover_directory
    from goalcraft.training.run_folder import BEST_DIR, HISTORY_FILE, LAST_DIR, STAGING_DIR

    parts = [policy_dir / BEST_DIR, policy_dir / LAST_DIR, policy_dir / HISTORY_FILE]
    staging = round_dir.parent / STAGING_DIR
    recover_directory(round_dir, staging)
    if round_dir.exists() or not all(p.exists() for p in parts):
        return False
    staged = new_staging_dir(round_dir, staging)
    try:
        for part in parts:
            (shutil.copytree if part.is_dir() else shutil.copy2)(part, staged / part.name)
        commit_directory(staged, round_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return True


def _task_embeddings(paths: StoragePaths, split: str) -> dict[str, np.ndarray]:
    """The goal embeddings ``[n, D]`` of one split's goal clips, by task (the oracle's held-out ones,
    DAgger's training ones)."""
    import pyarrow.parquet as pq

    from goalcraft.data.embeddings import embedding_matrix
    from goalcraft.data.splits import split_indices

    table = pq.read_table(paths.goal_embeddings_table)
    rows = split_indices(table)[split]
    matrix, labels = embedding_matrix(table)[rows], np.asarray(table.column("task").to_pylist())[rows]
    return {str(t): matrix[labels == t] for t in dict.fromkeys(labels.tolist())}


def oracle_goals(paths: StoragePaths) -> dict[str, np.ndarray]:
    """Each task's oracle visual goal (STEVE-1's "visual prompt"): the mean goal embedding of its
    held-out goal clips (the test split of the goal embeddings)."""
    return {task: clips.mean(0) for task, clips in _task_embeddings(paths, "test").items() if len(clips)}


def _goal_bank(paths: StoragePaths) -> dict[str, np.ndarray]:
    """DAgger's goals: the training split's goal embeddings of each task a scripted player pursues."""
    from goalcraft.crafter.agent import scripted_targets

    if not paths.goal_embeddings_table.is_file():
        raise StageError("[policy] dagger_rounds needs the goal embeddings (materialize goal_embeddings)")
    bank = {t: m for t, m in sorted(_task_embeddings(paths, "train").items()) if t in scripted_targets()}
    if not bank:
        raise StageError("DAgger: no training goal clip of a task a scripted player pursues")
    return bank


def _focus(bank: dict[str, np.ndarray], last_success: dict | None, focus: float, r: int,
           say: Say) -> dict[str, float] | None:
    """Round ``r``'s target shares under ``[policy] dagger_focus`` (None: the targets cycle evenly)."""
    from goalcraft.training.dagger import focus_weights

    if focus == 0 or r == 1:
        return None
    if last_success is None:  # a round file written before per-target figures were kept
        say(f"policy: DAgger round {r}: round {r - 1} has no per-target success rates; its targets spread evenly")
        return None
    weights = focus_weights(sorted(bank), last_success, focus)
    top = sorted(weights, key=lambda t: (-weights[t], t))[:4]
    say(f"policy: DAgger round {r}: focus {focus}: most episodes to " + ", ".join(
        f"{t} {weights[t]:.0%} (round {r - 1}: {last_success.get(t, 0.0):.0%} success)" for t in top))
    return weights


def _dagger_round(policy_dir: Path, bank: dict[str, np.ndarray], worlds: list[int], settings: PolicySettings, r: int,
                  path: Path, say: Say, weights: dict[str, float] | None = None) -> tuple[list, dict]:
    """Round ``r``'s labelled episodes, played by the policy in ``policy_dir`` (targets by ``weights``,
    :func:`~goalcraft.training.dagger.dagger_requests`): read back from ``path`` when it was written for
    these weights and requests (its key), else played, labelled and written."""
    from goalcraft.evaluation.run import file_digest
    from goalcraft.models.policy import load_policy
    from goalcraft.training.dagger import dagger_requests, read_labelled, run_dagger_round, write_labelled

    requests = dagger_requests(bank, worlds, max_steps=settings.dagger_max_steps, guidance=settings.dagger_guidance,
                               seed=settings.seed + r, weights=weights)
    h = hashlib.sha256(file_digest(policy_dir).encode())
    for q in requests:
        h.update(repr((q.world_seed, q.target, q.max_steps, q.guidance, q.seed)).encode())
        h.update(q.goal.tobytes())
    key = h.hexdigest()
    try:
        stored = read_labelled(path, key)
    except ValueError as exc:  # our own file, damaged: play the round again (it is rewritten atomically)
        say(f"policy: DAgger round {r}: {exc}; playing it again")
        stored = None
    if stored is not None:
        episodes, figures = stored
        say(f"policy: DAgger round {r}: {len(episodes)} labelled episodes reused ({path.name})")
        return episodes, {**figures, "reused": True}
    started = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if done % max(1, total // 10) == 0 or done == total:
            say(f"policy: DAgger round {r}: {done}/{total} episodes played and labelled "
                f"({time.perf_counter() - started:.0f} s)")

    with _policy_threads(settings.workers):
        played = run_dagger_round(load_policy(policy_dir), requests, f"dagger{r}", workers=settings.workers, slots=64,
                                  progress=progress)
    figures = {"episodes": len(played.episodes), "steps": played.steps, "success_rate": round(played.success_rate, 4),
               "agreement": round(played.agreement, 4), "died": round(played.died, 4), "dropped": played.dropped,
               "success_by_target": {t: round(v, 4) for t, v in played.success_by_target.items()}}
    write_labelled(path, list(played.episodes), key, figures)
    return list(played.episodes), {**figures, "reused": False}


# -- agent success ---------------------------------------------------------------------------------


def _tasks(paths: StoragePaths, corpus_root: Path, settings: AgentSettings) -> list[tuple[str, str]]:
    from goalcraft.crafter.tasks import ACHIEVEMENTS
    from goalcraft.data.task_vocabulary import read_task_vocabulary
    from goalcraft.evaluation.instructions import load_instruction_set

    vocabulary = read_task_vocabulary(paths.task_vocabulary_file) if paths.task_vocabulary_file.is_file() else None
    try:
        iset = load_instruction_set(settings.instruction_set, corpus_root, vocabulary)
    except ValueError as exc:
        raise StageError(f"[agent] instruction_set: {exc}") from None
    wanted = set(settings.tasks) or set(ACHIEVEMENTS)
    tasks = [(t.name, t.phrasings[0]) for t in iset.tasks if t.name in ACHIEVEMENTS and t.name in wanted]
    if not tasks:
        raise StageError(f"instruction set {iset.name!r} has no task that is a Crafter achievement"
                         + (f" among {sorted(settings.tasks)}" if settings.tasks else ""))
    return tasks


def _sources(paths: StoragePaths, settings: AgentSettings, tasks: list[tuple[str, str]], dim: int):
    """The goal sources of ``settings.sources`` whose models exist (and a note for each one missing)."""
    from goalcraft.evaluation import agent_success as A

    sources, notes = [], []
    wanted = settings.sources
    if A.ORACLE in wanted:
        if paths.goal_embeddings_table.is_file():
            oracle = oracle_goals(paths)
            means = {t: oracle[t] for t, _ in tasks if t in oracle}
            missing = [t for t, _ in tasks if t not in means]
            if missing:
                notes.append(f"oracle_visual: no held-out goal clips for {', '.join(missing)}; those tasks are skipped")
            sources.append(A.GoalSource(A.ORACLE, lambda task, _i, _e, m=means: m[task], tasks=frozenset(means)))
        else:
            notes.append("oracle_visual skipped: no goal embeddings (materialize goal_embeddings)")
    prior_wanted = [s for s in (A.PRIOR_SAMPLED, A.PRIOR_DETERMINISTIC) if s in wanted]
    if prior_wanted:
        if (paths.prior_dir / "best").is_dir() and (paths.goal_space_dir / "best").is_dir():
            from goalcraft.models.baseline import load_baseline

            baseline = load_baseline(paths.goal_space_dir / "best", paths.prior_dir / "best")
            if A.PRIOR_SAMPLED in wanted:
                draws = {task: baseline.predict_goal([instr] * settings.episodes, deterministic=False,
                                                     seed=settings.seed * 1000 + i).numpy()
                         for i, (task, instr) in enumerate(tasks)}
                sources.append(A.GoalSource(A.PRIOR_SAMPLED, lambda task, _i, e, d=draws: d[task][e]))
            if A.PRIOR_DETERMINISTIC in wanted:
                fixed = {task: baseline.predict_goal([instr], deterministic=True).numpy()[0] for task, instr in tasks}
                sources.append(A.GoalSource(A.PRIOR_DETERMINISTIC, lambda task, _i, _e, f=fixed: f[task]))
        else:
            notes.append("MineCLIP text + prior skipped: no goal space or prior (materialize steve1_prior)")
    if A.PREDICTOR in wanted or A.PREDICTOR_RL in wanted:
        if (paths.goal_predictor_dir / "best").is_dir():
            z = _predictor_goals(paths, [instr for _, instr in tasks])
            fixed = {task: z[i] for i, (task, _) in enumerate(tasks)}
            if A.PREDICTOR in wanted:
                sources.append(A.GoalSource(A.PREDICTOR, lambda task, _i, _e, f=fixed: f[task]))
            if A.PREDICTOR_RL in wanted and (paths.goal_predictor_rl_dir / RL_HEAD).is_dir():
                import torch

                from goalcraft.models.goal_head import load_goal_head

                with torch.no_grad():
                    tuned = load_goal_head(paths.goal_predictor_rl_dir / RL_HEAD)(torch.from_numpy(z)).numpy()
                fixed_rl = {task: tuned[i] for i, (task, _) in enumerate(tasks)}
                sources.append(A.GoalSource(A.PREDICTOR_RL, lambda task, _i, _e, f=fixed_rl: f[task]))
            elif A.PREDICTOR_RL in wanted:
                notes.append("goal_predictor_rl skipped: no fine-tuned head (materialize goal_predictor_rl)")
        else:
            notes.append("goal_predictor skipped: no goal predictor (materialize goal_aligner)")
    if A.UNCONDITIONAL in wanted:
        zero = np.zeros(dim, np.float32)
        sources.append(A.GoalSource(A.UNCONDITIONAL, lambda _t, _i, _e: zero, guided=False))
    if A.SCRIPTED in wanted:
        from goalcraft.crafter.agent import scripted_targets

        playable = scripted_targets()
        unscripted = [t for t, _ in tasks if t not in playable]
        if unscripted:
            notes.append(f"scripted: no scripted player for {', '.join(unscripted)}; those tasks are skipped")
        sources.append(A.GoalSource(A.SCRIPTED, None, tasks=playable))
    return sources, notes


def _predictor_goals(paths: StoragePaths, instructions: list[str]) -> np.ndarray:
    from goalcraft.models.predictor import load_goal_predictor

    return load_goal_predictor(paths.goal_predictor_dir / "best").predict_goal(instructions).numpy()


def excluded_world_seeds(paths: StoragePaths, corpus_root: Path, trials_dir: str = "trials") -> set[int]:
    """World seeds agent success must not play: every training trajectory's (``training_seeds.json``),
    every seed the corpus's trajectories and trial metadata name, and REINFORCE's worlds."""
    from goalcraft.data.trajectories import scan_trajectories

    seeds: set[int] = set()
    for recorded in (paths.policy_dir / TRAINING_SEEDS_FILE, paths.goal_predictor_rl_dir / RL_SEEDS_FILE):
        if recorded.is_file():
            seeds |= {int(s) for s in json.loads(recorded.read_text())}
    records, _ = scan_trajectories(corpus_root, trials_dir=trials_dir)
    seeds |= {int(r.env_seed) for r in records if r.env_seed is not None}
    for meta in (Path(corpus_root) / trials_dir).glob("*/metadata.json"):
        try:
            seed = json.loads(meta.read_text(encoding="utf-8")).get("seed")
        except (ValueError, OSError):
            continue
        if isinstance(seed, int):
            seeds.add(seed)
    return seeds


def pooled_markdown(summary: list[dict]) -> Markdown:
    """The pooled success rates of an agent-success summary as a Markdown table."""
    rows = sorted((r for r in summary if r["task"] == "(all)"),
                  key=lambda r: (r["model"], -1 if r["guidance"] is None else r["guidance"]))
    for r in rows:
        r["λ"] = "-" if r["guidance"] is None else f"{r['guidance']:g}"
        r["success [95% CI]"] = f"{r['success_rate']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
    return history_markdown(rows, ["model", "λ", "episodes", "successes", "success [95% CI]",
                                   "mean_steps_to_success", "mean_off_target"])


def paired_markdown(differences: list[dict]) -> Markdown:
    """The pooled rows of :func:`~goalcraft.evaluation.agent_success.paired_differences` as a table."""
    rows = [{"a − b": f"{d['a']} − {d['b']}", "pairs": d["pairs"],
             "difference [95% CI]": f"{d['difference']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]"}
            for d in differences if d["task"] == "(all)"]
    return history_markdown(rows, ["a − b", "pairs", "difference [95% CI]"])


class AgentRun(NamedTuple):
    """An agent-success run as written: its id, table and report, and the paired differences of
    :data:`~goalcraft.evaluation.agent_success.COMPARISONS` at each λ of the run."""

    run_id: str
    table_path: Path
    report_path: Path
    report_bytes: int
    differences: list[dict]

    def pooled(self, a: str, b: str) -> list[dict]:
        """The pooled ``a`` − ``b`` rows (one per λ)."""
        return [d for d in self.differences if d["task"] == "(all)" and d["a"].split("@")[0] == a
                and d["b"].split("@")[0] == b]


class AgentPlan(NamedTuple):
    """What an agent-success run plays: the policy and its version, the tasks, goal sources, world
    seeds and every planned episode, and notes on the sources left out."""

    policy: Any
    version: str
    tasks: list[tuple[str, str]]
    sources: list
    seeds: list[int]
    plan: list
    notes: list[str]


def plan_agent_success(paths: StoragePaths, corpus_root: Path, settings: AgentSettings, *,
                       trials_dir: str = "trials", sample_seed: int | None = None) -> AgentPlan:
    """The run ``settings`` describe: the trained policy, the instruction set's achievement tasks,
    the goal sources whose models exist, world seeds no training trajectory used, and the plan
    (action-sampling seeds from ``sample_seed``, default ``settings.seed``)."""
    from goalcraft.evaluation import agent_success as A
    from goalcraft.evaluation.run import file_digest
    from goalcraft.models.policy import load_policy

    if not (paths.policy_dir / "best" / "model.safetensors").is_file():
        raise StageError("no policy: materialize goal_policy first")
    policy = load_policy(paths.policy_dir / "best")
    version = file_digest(paths.policy_dir / "best" / "model.safetensors")
    tasks = _tasks(paths, corpus_root, settings)
    sources, notes = _sources(paths, settings, tasks, policy.config.goal_dim)
    seeds = A.world_seeds(settings.episodes, settings.seed, excluded_world_seeds(paths, corpus_root, trials_dir))
    plan = A.rollout_plan(tasks, sources, seeds, guidance=settings.guidance, max_steps=settings.max_steps,
                          sample_seed=settings.seed if sample_seed is None else sample_seed)
    return AgentPlan(policy, version, tasks, sources, seeds, plan, notes)


def record_agent_run(paths: StoragePaths, table, animations, *, n_boot: int = 2000, seed: int = 0) -> AgentRun:
    """Write an agent-success run: its parquet file and its HTML report (``report.html`` and a copy
    under ``reports/``)."""
    from goalcraft.evaluation import agent_success as A
    from goalcraft.evaluation.agent_report import render_agent_report

    run_id = table.column("run_id")[0].as_py()
    out = paths.agent_success_dir / f"{run_id}.parquet"
    write_parquet_atomic(table, out)
    differences = A.paired_differences(table, n_boot=n_boot, seed=seed)
    html_text = render_agent_report(table, animations, differences)
    report = paths.agent_success_dir / "report.html"
    for path in (paths.agent_success_dir / "reports" / f"{run_id}.html", report):
        write_text_atomic(html_text, path)
    return AgentRun(run_id, out, report, len(html_text.encode()), differences)


def evaluate_agent_success(paths: StoragePaths, corpus_root: Path, settings: AgentSettings, *,
                           trials_dir: str = "trials", say: Say | None = None) -> StageResult:
    """Roll out the policy for every task, goal source, guidance scale and world seed; one parquet file
    per run under ``evaluation/agent_success/`` (DuckDB view ``agent_success``), and its HTML report
    ``report.html`` (a copy per run under ``reports/``) with one episode per source and task animated."""
    from goalcraft.evaluation import agent_success as A

    say = say or _quiet
    started = time.perf_counter()
    policy, version, tasks, sources, seeds, plan, notes = plan_agent_success(paths, corpus_root, settings,
                                                                             trials_dir=trials_dir)
    say(f"agent success: {len(plan)} episodes ({len(tasks)} tasks, {len(sources)} goal sources, "
        f"{len(settings.guidance)} guidance scales, {len(seeds)} world seeds, T = {settings.max_steps})")
    shown = [0]

    def progress(done: int, total: int) -> None:
        if done == total or done - shown[0] >= max(1, total // 10):
            shown[0] = done
            say(f"agent success: {done}/{total} episodes, {time.perf_counter() - started:.0f}s")

    with _policy_threads(settings.workers):
        results, animations = A.play_plan(policy, plan, slots=settings.slots, workers=settings.workers,
                                          progress=progress)
    table = A.agent_success_table(plan, results, policy=version)
    run = record_agent_run(paths, table, animations, n_boot=settings.n_boot, seed=settings.seed)
    summary = A.summarize(table)
    env_steps = int(sum(r.steps for r in results))
    seconds = time.perf_counter() - started
    return StageResult({
        "run_id": run.run_id,
        "episodes": len(results),
        "tasks": [t for t, _ in tasks],
        "sources": [s.name for s in sources],
        "success": pooled_markdown(summary),
        "oracle_above_unconditional": A.oracle_beats_floor(summary),
        "predictor_minus_prior_pooled": run.pooled(A.PREDICTOR, A.PRIOR_SAMPLED),
        "predictor_rl_minus_predictor_pooled": run.pooled(A.PREDICTOR_RL, A.PREDICTOR),
        "paired_pooled": paired_markdown(run.differences),
        "env_steps": env_steps,
        "env_steps_per_s": round(env_steps / max(seconds, 1e-9), 1),
        "seconds": round(seconds, 1),
        "table": run.table_path,
        "report": Url(run.report_path.resolve().as_uri()),
        "report_path": run.report_path,
        "report_bytes": run.report_bytes,
    }, notes)


# -- REINFORCE fine-tuning of the goal predictor ----------------------------------------------------


def finetune_goal_predictor_rl(paths: StoragePaths, corpus_root: Path, rl: PredictorRLSettings, agent: AgentSettings,
                               *, trials_dir: str = "trials", say: Say | None = None) -> StageResult:
    """A residual head on the goal predictor fine-tuned by REINFORCE on agent success with the frozen
    policy (goalcraft.training.predictor_rl), on worlds of its own (``rl_world_seeds.json``: none a
    training trajectory's, none agent success plays). ``models/goal_predictor_rl``: best/, last/ (the
    head agent success plays, :data:`RL_HEAD`)."""
    from goalcraft.evaluation.agent_success import world_seeds
    from goalcraft.evaluation.rollouts import CrafterGoalEnv, PolicyAgent, RolloutPool
    from goalcraft.evaluation.run import file_digest
    from goalcraft.models.policy import load_policy
    from goalcraft.training.predictor_rl import PredictorRLError, RLTask, reinforce_goal_head

    say = say or _quiet
    started = time.perf_counter()
    if not (paths.policy_dir / "best" / "model.safetensors").is_file():
        raise StageError("no policy: materialize goal_policy first")
    if not (paths.goal_predictor_dir / "best").is_dir():
        raise StageError("no goal predictor: materialize goal_aligner first")
    tasks = _tasks(paths, corpus_root, agent.model_copy(update={"tasks": rl.tasks or agent.tasks}))
    z0 = _predictor_goals(paths, [instr for _, instr in tasks])
    excluded = excluded_world_seeds(paths, corpus_root, trials_dir) - _rl_seeds(paths)
    evaluated = set(world_seeds(agent.episodes, agent.seed, excluded))
    pool_seeds = world_seeds(rl.worlds, rl.seed, excluded | evaluated, stream=RL_WORLD_STREAM)
    write_json_atomic(pool_seeds, paths.goal_predictor_rl_dir / RL_SEEDS_FILE)
    policy = load_policy(paths.policy_dir / "best")
    frame_size = (policy.config.frame_width, policy.config.frame_height)
    # Played as agent success plays, by default: it is what the head is judged by.
    max_steps = rl.max_steps or agent.max_steps
    if rl.guidance is None and not agent.guidance:
        raise StageError("set [predictor_rl] guidance: [agent] guidance is empty")
    guidance = rl.guidance if rl.guidance is not None else max(agent.guidance)
    basis = _goal_basis(paths) if rl.explore == "goals" else None

    def log(record: dict) -> None:
        if record["event"] == "eval":
            say(f"goal predictor rl: iteration {record['iteration']}/{record['of']} success {record['success']:.3f} "
                f"reward_ema {record['reward_ema']:.3f} informative pairs {record['informative_pairs']:.2f} "
                f"mu_shift {record['mu_shift']:.3g} tasks {record['tasks']:.0f} {record['seconds']:.0f}s")
        elif record["event"] == "restart":
            say(record["line"])

    try:
        with _policy_threads(agent.workers), \
                RolloutPool(partial(CrafterGoalEnv, frame_size), slots=agent.slots, workers=agent.workers) as pool:
            player = PolicyAgent(policy, agent.slots)
            result = reinforce_goal_head(
                [RLTask(t, i, z) for (t, i), z in zip(tasks, z0)], lambda requests: pool.run(player, requests),
                paths.goal_predictor_rl_dir, iterations=rl.iterations, episodes_per_task=rl.episodes_per_task,
                world_seeds=pool_seeds, max_steps=max_steps, guidance=guidance, sigma=rl.sigma, lr=rl.lr,
                seed=rl.seed, baseline_momentum=rl.baseline_momentum, off_target_penalty=rl.off_target_penalty,
                player=file_digest(paths.policy_dir / "best"), basis=basis, focus_after=rl.focus_after,
                resume="auto", log=log)
    except PredictorRLError as exc:
        raise StageError(str(exc)) from None
    history = list(result.history)
    learnable = [r["task"] for r in result.per_task if r["informative_pairs"]]
    say(f"goal predictor rl: informative pairs on {len(learnable)} of {len(tasks)} tasks "
        "([predictor_rl] focus_after or tasks narrows the episodes to them; per_task in its metadata)")
    return StageResult({
        "tasks": [t for t, _ in tasks],
        "iterations": result.iterations_completed,
        "best_iteration": result.best_iteration,
        "best_reward_ema": result.best_reward,
        "success_first_iteration": history[0]["success"] if history else None,
        "success_last_iteration": history[-1]["success"] if history else None,
        "history": history_markdown(history, ["iteration", "tasks", "success", "reward", "reward_ema",
                                              "informative_pairs", "mu_shift"]),
        "focus_after": rl.focus_after,
        # Which tasks the step could learn from: those whose mirrored pairs' rewards ever differed.
        "per_task": history_markdown(list(result.per_task), ["task", "episodes", "successes", "pairs",
                                                             "informative_pairs", "last_success"]),
        "tasks_with_informative_pairs": len(learnable),
        "rl_worlds": len(pool_seeds),
        "max_steps": max_steps,
        "guidance": guidance,
        "explore": rl.explore,
        "explore_directions": int(basis.shape[1]) if basis is not None else len(z0[0]),
        "seconds": round(time.perf_counter() - started, 1),
        "head": paths.goal_predictor_rl_dir / RL_HEAD,  # what agent success plays
    })


def _goal_basis(paths: StoragePaths) -> np.ndarray:
    """``[D, k]``: an orthonormal basis of the training split's mean goal embedding of each task."""
    if not paths.goal_embeddings_table.is_file():
        raise StageError('[predictor_rl] explore = "goals" needs the goal embeddings (materialize goal_embeddings)')
    means = [m.mean(0) for _, m in sorted(_task_embeddings(paths, "train").items()) if len(m)]
    if not means:
        raise StageError('[predictor_rl] explore = "goals": the training split has no goal clip')
    # SVD, not QR: a task mean that others span (duplicates, collinear means) must not add a direction.
    u, s, _ = np.linalg.svd(np.stack(means, 1).astype(np.float64), full_matrices=False)
    return u[:, s > 1e-8 * s[0]]


def _rl_seeds(paths: StoragePaths) -> set[int]:
    path = paths.goal_predictor_rl_dir / RL_SEEDS_FILE
    return {int(s) for s in json.loads(path.read_text())} if path.is_file() else set()
