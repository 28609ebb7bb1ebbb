"""Training the goal-conditioned policy by hindsight relabelling (STEVE-1's recipe; docs/closed-loop.md).

Behaviour cloning on recorded trajectories (:mod:`goalcraft.data.trajectories`) where the goal of a
step is a clip the episode itself reaches later. STEVE-1 (``get_episode_chunk`` in
``steve1/data/minecraft_dataset.py``) cuts each episode into segments whose lengths are drawn
uniformly from ``[min_btwn_goals, max_btwn_goals)`` = [15, 200) frames; every step of a segment gets
as its goal the goal-space embedding of the 16-frame clip ending at the segment's last frame. So the
goal of step ``t`` is the clip ending at ``t + k``, ``0 <= k < gap``. :func:`hindsight_goal_frames`
draws the segments the same way with bounds scaled to Crafter's pace (:data:`HINDSIGHT_GAP`; the
reasoning is in docs/closed-loop.md) and without STEVE-1's one-step overlap (its goal index moves on
one step after the goal frame; here a segment ends at its goal frame).

* By default (``relabel="unlocks"``) the segments end at the episode's unlocks instead
  (:func:`unlock_goal_frames`), so training goals are success clips, the kind of goal the policy is
  asked to reach later; STEVE-1's segments remain for the steps after the last unlock.
* Goals come from the same goal-space model the goal embeddings come from
  (:func:`clip_goal_embeddings`: per-frame features once, then every 16-frame window through the
  temporal encoder; frame ``f``'s row is the clip of frames ``f-15 … f``).
* Classifier-free guidance: each training sample's goal is zeroed with probability ``p_uncond``
  (0.1, STEVE-1's ``--p_uncond``; STEVE-1 zeroes a whole 640-frame chunk, a frame-stack policy has
  no chunks, so it is per sample).
* Seeded and resumable like the other trainers (:mod:`goalcraft.training.run_folder`): the episode
  split, the initialization, each epoch's relabelling, order and zeroed goals are functions of
  ``(seed, epoch)``, so a resumed run trains exactly as an uninterrupted one; ``best/`` and ``last/``
  are policy folders (:func:`goalcraft.models.policy.save_policy`), ``last/`` with the optimizer.
* Validation: the held-out episodes with one fixed relabelling; ``val_loss`` is the cross-entropy
  with the goals, ``val_uncond_loss`` with zero goals, and ``val_goal_gain`` their difference (how
  much the goal tells the policy about the next action; 0 = it ignores goals).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, get_args

import numpy as np
import torch
import torch.nn.functional as F

from goalcraft.config import RelabelMode
from goalcraft.formats import CLIP_FRAMES
from goalcraft.models.checkpoints import WEIGHTS_FILE, load_state_dict_file, strict_load
from goalcraft.models.policy import GoalConditionedPolicy, PolicyConfig, load_policy, save_policy, stack_indices
from goalcraft.training.run_folder import (
    BEST_DIR,
    HISTORY_FILE,
    Progress,
    RunFolder,
    Tick,
    deterministic_algorithms,
    train_loop,
    weights_writer,
)

__all__ = [
    "HINDSIGHT_GAP",
    "P_UNCOND",
    "PolicyEpisode",
    "PolicyTrainResult",
    "PolicyTrainingError",
    "RELABEL_MODES",
    "clip_goal_embeddings",
    "hindsight_goal_frames",
    "load_best_policy",
    "replay_frames",
    "train_policy",
    "unlock_goal_frames",
]

STATE_FILE = "state.pt"
#: STEVE-1's segment lengths are uniform in [15, 200) MineRL frames (20 per second); scaled to
#: Crafter's pace (docs/closed-loop.md): [15, 45) steps.
STEVE1_GAP = (15, 200)
HINDSIGHT_GAP = (15, 45)
#: STEVE-1's --p_uncond: the share of training goals zeroed (classifier-free guidance).
P_UNCOND = 0.1
#: How goal frames are drawn: STEVE-1's random segments, or segments that end at unlocks
#: (:func:`unlock_goal_frames`; docs/closed-loop.md).
RELABEL_MODES: tuple[str, ...] = get_args(RelabelMode)
UNLOCK_KEEP = 0.3

# Offsets of the random streams drawn from ``seed``.
_SPLIT, _INIT, _RELABEL, _ORDER, _UNCOND, _VAL = range(6)


class PolicyTrainingError(ValueError):
    """The trajectories or the resumable state do not fit the requested training run."""


@dataclass(frozen=True, eq=False)
class PolicyEpisode:
    """One trajectory ready for training: ``frames`` the policy's frames ``[F, h, w, 3]`` uint8,
    ``actions`` ``[F - 1]`` (step ``t``'s action chosen on frame ``t``), ``goals`` ``[F, D]`` float32
    (row ``f``: the goal embedding of the 16-frame clip ending at frame ``f``; rows ``f < 15`` unused),
    ``unlock_frames``: the frames at which an achievement was unlocked (step ``s``'s unlock shows on
    frame ``s``), for :func:`unlock_goal_frames`."""

    id: str
    frames: np.ndarray = field(repr=False)
    actions: np.ndarray = field(repr=False)
    goals: np.ndarray = field(repr=False)
    env_seed: int | None = None
    unlock_frames: tuple[int, ...] = ()


@dataclass(frozen=True)
class PolicyTrainResult:
    """What :func:`train_policy` did. ``history``: one dict per epoch (``train_loss``, ``val_loss``,
    ``val_accuracy``, ``val_uncond_loss``, ``val_goal_gain``, ``train_samples_per_s``)."""

    history: tuple[dict[str, float], ...]
    best_epoch: int
    best_val_loss: float
    best_dir: Path
    last_dir: Path
    history_path: Path
    epochs_completed: int
    resumed_from_epoch: int
    train_episodes: tuple[str, ...]
    val_episodes: tuple[str, ...]
    n_train_steps: int
    n_val_steps: int
    seconds: float


# -- goals -------------------------------------------------------------------------------------------


@torch.inference_mode()
def clip_goal_embeddings(model: Any, frames: np.ndarray, *, batch_size: int = 64, device: str = "cpu") -> np.ndarray:
    """Goal embeddings ``[F, D]`` float32 of every 16-frame clip of an episode's frames ``[F, H, W, 3]``:
    row ``f`` is ``model``'s goal embedding of frames ``f-15 … f`` (as a goal clip ending at ``f`` is
    embedded), NaN for ``f < 15``. ``model`` is a goal-space model (``encode_frames``,
    ``goal_embedding_of_frame_features``, :class:`goalcraft.data.embeddings.GoalEncoder`)."""
    frames = np.asarray(frames)
    n = frames.shape[0]
    features = []
    for start in range(0, n, batch_size):
        chunk = torch.from_numpy(np.ascontiguousarray(frames[start:start + batch_size])).to(device)
        features.append(model.encode_frames(chunk[None])[0].float())
    if not features:
        raise ValueError("no frames")
    per_frame = torch.cat(features)  # [F, D']
    if n < CLIP_FRAMES:
        return np.full((n, int(getattr(model, "embed_dim", per_frame.shape[1]))), np.nan, np.float32)
    windows = per_frame.unfold(0, CLIP_FRAMES, 1).permute(0, 2, 1)  # [F - 15, 16, D']
    rows = []
    for start in range(0, windows.shape[0], batch_size):
        rows.append(model.goal_embedding_of_frame_features(windows[start:start + batch_size]).float().cpu())
    emb = torch.cat(rows).numpy()
    out = np.full((n, emb.shape[1]), np.nan, np.float32)
    out[CLIP_FRAMES - 1:] = emb
    return out


def hindsight_goal_frames(n_frames: int, rng: np.random.Generator, gap: tuple[int, int] = HINDSIGHT_GAP) -> np.ndarray:
    """The goal frame of each decision step ``t = 0 … n_frames - 2`` of an episode, drawn as STEVE-1
    draws them: goal frames ``g_1 < g_2 < …`` with ``g_i - g_{i-1}`` uniform in ``[gap[0], gap[1])``
    (``g_0 = 0``); a goal that would leave fewer than ``gap[0]`` frames after it, or run past the
    end, moves to the last frame. Step ``t`` gets the first ``g_i >= t``. Goal frames are never
    below 15 (a clip needs 16 frames), so ``gap[0] >= 15``."""
    low, high = int(gap[0]), int(gap[1])
    if low < CLIP_FRAMES - 1 or high <= low:
        raise ValueError(f"gap must be [low, high) with 15 <= low < high, got {gap!r}")
    last = n_frames - 1
    if last < CLIP_FRAMES - 1:
        raise ValueError(f"an episode of {n_frames} frames has no 16-frame clip")
    goals = []
    current = 0
    while current < last:
        current += int(rng.integers(low, high))
        if last - current < low:
            current = last
        goals.append(current)
    steps = np.arange(n_frames - 1)
    return np.asarray(goals, np.int64)[np.searchsorted(goals, steps, side="left")]


def unlock_goal_frames(n_frames: int, unlock_frames: Sequence[int], rng: np.random.Generator,
                       gap: tuple[int, int] = HINDSIGHT_GAP, keep: float = UNLOCK_KEEP) -> np.ndarray:
    """Goal frames like :func:`hindsight_goal_frames`, but the segments end at unlocks: each unlock
    frame (>= 15, so it has a 16-frame clip) is a segment end with probability ``keep``, the last one
    always; step ``t`` gets the first kept unlock ``>= t``, so its goal is a success clip, the next
    one with probability ``keep``, a later one otherwise (errands chain: table, pickaxe, stone). Steps
    after the last unlock (or an episode without one) get STEVE-1's segments (``gap``)."""
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be in (0, 1], got {keep!r}")
    last = n_frames - 1
    ends = sorted({int(u) for u in unlock_frames if CLIP_FRAMES - 1 <= int(u) <= last})
    if not ends:
        return hindsight_goal_frames(n_frames, rng, gap)
    kept = np.asarray([u for u, k in zip(ends, rng.random(len(ends)) < keep) if k or u == ends[-1]], np.int64)
    steps = np.arange(n_frames - 1)
    out = kept[np.minimum(np.searchsorted(kept, steps, side="left"), len(kept) - 1)]
    tail = steps > kept[-1]
    if tail.any():
        # The rest of the episode after the last unlock, relabelled as STEVE-1 does: a sub-episode whose
        # frame 15 is the first step after it (a tail step exists, so it has >= 16 frames).
        start = int(kept[-1]) + 1 - (CLIP_FRAMES - 1)
        out[tail] = hindsight_goal_frames(n_frames - start, rng, gap)[steps[tail] - start] + start
    return out


def replay_frames(env_seed: int, actions: np.ndarray, frame_size: tuple[int, int] = (64, 40)
                  ) -> tuple[np.ndarray, list[tuple[int, str]], np.ndarray]:
    """The policy's frames ``[len(actions) + 1, h, w, 3]`` of a recorded Crafter episode, by replaying
    its actions in its world rendered at ``frame_size`` (the corpus's 16 x 10-tile view at
    ``frame_size[0] / 16`` pixels a tile: the frames the policy sees when it plays), with the replay's
    ``(step, achievement)`` unlocks and rewards (a faithful replay reproduces the recorded ones)."""
    from goalcraft.crafter.deterministic_env import DEFAULT_SIZE, TILE, make_env
    from goalcraft.crafter.tasks import ACHIEVEMENTS

    tile = frame_size[0] // (DEFAULT_SIZE[0] // TILE)
    env = make_env(int(env_seed), tuple(frame_size), tile=tile)
    frames = [env.reset()]
    counts = dict.fromkeys(ACHIEVEMENTS, 0)
    unlocked, rewards = [], []
    for step, action in enumerate(np.asarray(actions).tolist(), start=1):
        obs, reward, _done, info = env.step(int(action))
        frames.append(obs)
        rewards.append(reward)
        for name in ACHIEVEMENTS:
            if info["achievements"][name] > counts[name]:
                unlocked.append((step, name))
            counts[name] = info["achievements"][name]
    return np.stack(frames), unlocked, np.asarray(rewards, np.float32)


# -- the data ----------------------------------------------------------------------------------------


class _Steps:
    """Every decision step of some episodes in flat arrays, and batches of them."""

    def __init__(self, episodes: Sequence[PolicyEpisode], frame_stack: int) -> None:
        self.episodes = list(episodes)
        self.frame_stack = frame_stack
        lengths = [e.frames.shape[0] for e in self.episodes]
        self.offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self.frames = np.concatenate([e.frames for e in self.episodes]) if self.episodes else np.zeros((0,))
        self.goals = np.concatenate([e.goals for e in self.episodes]) if self.episodes else np.zeros((0,))
        self.actions = np.concatenate([e.actions for e in self.episodes]) if self.episodes else np.zeros(0, np.int64)
        self.episode_of = np.concatenate([np.full(n - 1, i) for i, n in enumerate(lengths)]).astype(np.int64)
        self.t = np.concatenate([np.arange(n - 1) for n in lengths]).astype(np.int64)

    def __len__(self) -> int:
        return int(self.actions.shape[0])

    def goal_rows(self, rng_for: Callable[[int], np.random.Generator], gap: tuple[int, int],
                  relabel: str, keep: float) -> np.ndarray:
        """Flat goal-row index of every step, with each episode relabelled by ``rng_for(episode)``."""
        if relabel == "unlocks":
            return np.concatenate([self.offsets[i] + unlock_goal_frames(e.frames.shape[0], e.unlock_frames, rng_for(i),
                                                                        gap, keep)
                                   for i, e in enumerate(self.episodes)])
        return np.concatenate([self.offsets[i] + hindsight_goal_frames(e.frames.shape[0], rng_for(i), gap)
                               for i, e in enumerate(self.episodes)])

    def batch(self, idx: np.ndarray, goal_rows: np.ndarray, zero: np.ndarray | None) -> tuple[torch.Tensor, ...]:
        ep, t = self.episode_of[idx], self.t[idx]
        rows = self.offsets[ep][:, None] + stack_indices(t, self.frame_stack)
        frames = torch.from_numpy(self.frames[rows])
        goals = self.goals[goal_rows[idx]].copy()
        if zero is not None:
            goals[zero[idx]] = 0.0
        return frames, torch.from_numpy(goals), torch.from_numpy(self.actions[idx])


def _check(episodes: Sequence[PolicyEpisode], config: PolicyConfig) -> None:
    if len({e.id for e in episodes}) != len(episodes):
        raise PolicyTrainingError("episode ids must be unique")
    shape = (config.frame_height, config.frame_width, 3)
    for e in episodes:
        f = e.frames.shape[0] if e.frames.ndim == 4 else -1
        if e.frames.dtype != np.uint8 or tuple(e.frames.shape[1:]) != shape:
            raise PolicyTrainingError(f"episode {e.id}: frames must be uint8 [F, {', '.join(map(str, shape))}], "
                                      f"got {e.frames.dtype} {list(e.frames.shape)}")
        if f < CLIP_FRAMES:
            raise PolicyTrainingError(f"episode {e.id}: {f} frames, fewer than one 16-frame clip")
        if e.actions.shape != (f - 1,) or not np.issubdtype(e.actions.dtype, np.integer):
            raise PolicyTrainingError(f"episode {e.id}: needs {f - 1} integer actions, got {list(e.actions.shape)}")
        if e.actions.min() < 0 or e.actions.max() >= config.n_actions:
            raise PolicyTrainingError(f"episode {e.id}: actions outside 0..{config.n_actions - 1}")
        if e.goals.shape != (f, config.goal_dim):
            raise PolicyTrainingError(f"episode {e.id}: goals must be [{f}, {config.goal_dim}], got {list(e.goals.shape)}")
        if not np.isfinite(e.goals[CLIP_FRAMES - 1:]).all():
            raise PolicyTrainingError(f"episode {e.id}: goal embeddings of frames >= 15 must be finite")


def _digest(episodes: Sequence[PolicyEpisode]) -> str:
    h = hashlib.sha256()
    for e in episodes:
        h.update(e.id.encode())
        for a in (e.frames, e.actions.astype(np.int64), np.nan_to_num(e.goals.astype(np.float32))):
            h.update(str(a.shape).encode())
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), *key])


# -- training ----------------------------------------------------------------------------------------


def train_policy(
    episodes: Sequence[PolicyEpisode],
    config: PolicyConfig,
    out_dir: Path,
    *,
    epochs: int,
    batch_size: int = 256,
    lr: float = 3e-4,
    seed: int = 0,
    val_fraction: float = 0.1,
    gap: tuple[int, int] = HINDSIGHT_GAP,
    p_uncond: float = P_UNCOND,
    relabel: str = "unlocks",
    unlock_keep: float = UNLOCK_KEEP,
    weight_decay: float = 0.01,
    grad_clip: float = 1.0,
    resume: bool | str = True,
    log: Callable[[dict[str, Any]], None] | None = None,
    device: str = "cpu",
    init: Path | None = None,
) -> PolicyTrainResult:
    """Behaviour-clone ``episodes`` with hindsight goals until ``epochs`` epochs are complete.

    Episodes are split by a seeded permutation (at least one each side). An epoch relabels every
    training episode (:func:`hindsight_goal_frames` with ``gap``), zeroes a ``p_uncond`` share of the
    goals and takes every training step once in a seeded order, in batches of ``batch_size``; then the
    validation metrics (module docstring). ``resume``: continue ``out_dir/last`` when its
    fingerprint (config, hyperparameters, data digest) matches (else :class:`PolicyTrainingError`),
    ``False`` start afresh, ``"auto"`` continue when it matches, else start afresh. ``log`` gets each
    epoch's record and progress records (:func:`goalcraft.training.run_folder.train_loop`).

    ``init``: another run's folder to start from (a DAgger round fine-tuning the last round's policy):
    its ``best/`` weights (same config) replace the seeded initialization and its digest joins the
    fingerprint. Its split is kept (its validation episodes stay held out, its training episodes
    are never validated on); only the episodes new since then are split, by the seeded permutation.
    """
    started = time.perf_counter()
    _check(episodes, config)
    if not isinstance(epochs, int) or epochs < 1 or not isinstance(batch_size, int) or batch_size < 1:
        raise PolicyTrainingError(f"epochs and batch_size must be positive ints, got {epochs!r}, {batch_size!r}")
    if not (lr > 0 and 0 < val_fraction < 1 and 0 <= p_uncond < 1 and weight_decay >= 0):
        raise PolicyTrainingError("need lr > 0, 0 < val_fraction < 1, 0 <= p_uncond < 1, weight_decay >= 0")
    if len(episodes) < 2:
        raise PolicyTrainingError(f"need at least 2 episodes (one to train, one to validate), got {len(episodes)}")
    hindsight_goal_frames(CLIP_FRAMES, _rng(0), gap)  # checks gap
    if relabel not in RELABEL_MODES or not 0 < unlock_keep <= 1:
        raise PolicyTrainingError(f"relabel must be one of {RELABEL_MODES} and 0 < unlock_keep <= 1, "
                                  f"got {relabel!r}, {unlock_keep!r}")

    start_from = _start_weights(Path(init), config) if init is not None else None
    if start_from is None:
        order = _rng(seed, _SPLIT).permutation(len(episodes))
        n_val = min(len(episodes) - 1, max(1, round(len(episodes) * val_fraction)))
        val_set = set(order[:n_val].tolist())
    else:
        val_set = _kept_split(episodes, Path(init), seed, val_fraction)
    train_eps = [e for i, e in enumerate(episodes) if i not in val_set]
    val_eps = [e for i, e in enumerate(episodes) if i in val_set]
    train, val = _Steps(train_eps, config.frame_stack), _Steps(val_eps, config.frame_stack)
    val_goal_rows = val.goal_rows(lambda i: _rng(seed, _VAL, i), gap, relabel, unlock_keep)

    hyper = {"batch_size": batch_size, "lr": float(lr), "seed": int(seed), "val_fraction": float(val_fraction),
             "gap": list(gap), "p_uncond": float(p_uncond), "weight_decay": float(weight_decay),
             "grad_clip": float(grad_clip), "data_sha256": _digest(episodes)}
    if relabel == "unlocks":  # (a STEVE-1-segments run keeps the fingerprint it had before this setting)
        hyper.update(relabel=relabel, unlock_keep=float(unlock_keep))
        hyper["unlocks_sha256"] = hashlib.sha256(repr([e.unlock_frames for e in episodes]).encode()).hexdigest()
    if start_from is not None:  # (a run from the seeded initialization keeps its fingerprint)
        hyper["init_sha256"] = start_from[1]
    folder = RunFolder(Path(out_dir), {"config": asdict(config), **hyper}, resume=resume, state_file=STATE_FILE,
                       tensorboard=False, error=PolicyTrainingError, end=epochs)
    device_t = torch.device(device)

    with deterministic_algorithms():
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(int(_rng(seed, _INIT).integers(2**62)))
            model = GoalConditionedPolicy(config)
        if start_from is not None:
            strict_load(model, start_from[0], source=str(Path(init) / BEST_DIR / WEIGHTS_FILE))
        model.to(device_t)
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, foreach=True)
        best: dict[str, Any] = {"state": None}
        state = folder.state
        if state is not None:
            weights = folder.last_dir / WEIGHTS_FILE
            strict_load(model, {k: v.to(device_t) for k, v in load_state_dict_file(weights).items()}, source=str(weights))
            optimizer.load_state_dict(state["optimizer"])
            best["state"] = {k: v.clone() for k, v in state["best_model"].items()}
            folder.save_best(weights_writer(best["state"], GoalConditionedPolicy.uninitialized, config, save_policy))
        progress = Progress.from_state(state)
        start_epoch = progress.position

        def train_epoch(epoch: int, _stop: int, tick: Tick) -> dict[str, float]:
            model.train()
            t0 = time.perf_counter()
            goal_rows = train.goal_rows(lambda i: _rng(seed, _RELABEL, epoch, i), gap, relabel, unlock_keep)
            zero = _rng(seed, _UNCOND, epoch).random(len(train)) < p_uncond
            perm = _rng(seed, _ORDER, epoch).permutation(len(train))
            total, n_batches = 0.0, -(-len(train) // batch_size)
            for b, start in enumerate(range(0, len(train), batch_size)):
                frames, goals, actions = train.batch(perm[start:start + batch_size], goal_rows, zero)
                loss = F.cross_entropy(model(frames.to(device_t), goals.to(device_t)), actions.to(device_t))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                optimizer.step()
                total += float(loss.detach()) * len(actions)
                tick(b + 1, n_batches, total / (start + len(actions)))
            return {"train_loss": total / len(train),
                    "train_samples_per_s": round(len(train) / max(time.perf_counter() - t0, 1e-9), 1)}

        def evaluate(_epoch: int) -> dict[str, float]:
            return _evaluate(model, val, val_goal_rows, batch_size, device_t)

        def on_best(_record: dict[str, Any]) -> Callable[[Path], None]:
            best["state"] = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            return weights_writer(best["state"], GoalConditionedPolicy.uninitialized, config, save_policy)

        try:
            train_loop(folder, progress, end=epochs, name="policy", train=train_epoch, evaluate=evaluate,
                       fields=("train_loss", "val_loss", "val_accuracy", "val_goal_gain"),
                       write_model=lambda d: save_policy(model, d), on_best=on_best,
                       trainer_state=lambda: {"optimizer": optimizer.state_dict(), "best_model": best["state"]},
                       history_extra=lambda: {"train_episodes": [e.id for e in train_eps],
                                              "val_episodes": [e.id for e in val_eps]},
                       log=log)
        finally:
            folder.close()

    return PolicyTrainResult(
        history=tuple(progress.history), best_epoch=progress.best_position, best_val_loss=progress.best_val_loss,
        best_dir=folder.best_dir, last_dir=folder.last_dir, history_path=folder.history_path,
        epochs_completed=len(progress.history), resumed_from_epoch=start_epoch,
        train_episodes=tuple(e.id for e in train_eps), val_episodes=tuple(e.id for e in val_eps),
        n_train_steps=len(train), n_val_steps=len(val), seconds=round(time.perf_counter() - started, 3))


def _start_weights(init: Path, config: PolicyConfig) -> tuple[dict[str, torch.Tensor], str]:
    """The ``best/`` weights of the run folder ``init`` and their file's digest; one-line errors."""
    path = init / BEST_DIR / WEIGHTS_FILE
    if not path.is_file():
        raise PolicyTrainingError(f"cannot start from {init}: no {BEST_DIR}/{WEIGHTS_FILE} (not a finished policy run)")
    try:
        stored = load_policy(init / BEST_DIR)
    except Exception as exc:  # noqa: BLE001 - untrusted files: any failure is one line
        raise PolicyTrainingError(f"cannot start from {init}: {exc}") from None
    if stored.config != config:
        raise PolicyTrainingError(f"cannot start from {init}: its policy config differs from this run's")
    return stored.state_dict(), hashlib.sha256(path.read_bytes()).hexdigest()


def _kept_split(episodes: Sequence[PolicyEpisode], init: Path, seed: int, val_fraction: float) -> set[int]:
    """Indices of the validation episodes when starting from ``init``: its validation episodes that
    are here, plus a ``val_fraction`` share of the episodes it did not see (seeded permutation)."""
    try:
        history = json.loads((init / HISTORY_FILE).read_text())
        seen_val, seen_train = set(history["val_episodes"]), set(history["train_episodes"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PolicyTrainingError(f"cannot start from {init}: its {HISTORY_FILE} lacks the episode split "
                                  f"({type(exc).__name__})") from None
    val = {i for i, e in enumerate(episodes) if e.id in seen_val}
    new = [i for i, e in enumerate(episodes) if e.id not in seen_val and e.id not in seen_train]
    order = _rng(seed, _SPLIT).permutation(len(new))
    val |= {new[j] for j in order[:round(len(new) * val_fraction)].tolist()}
    if not val or len(val) == len(episodes):
        raise PolicyTrainingError(f"starting from {init} leaves {len(val)} of {len(episodes)} episodes for validation; "
                                  "need at least one each side")
    return val


@torch.no_grad()
def _evaluate(model: GoalConditionedPolicy, data: _Steps, goal_rows: np.ndarray, batch_size: int,
              device: torch.device) -> dict[str, float]:
    model.eval()
    sums = {"loss": 0.0, "uncond_loss": 0.0, "accuracy": 0.0}
    for start in range(0, len(data), batch_size):
        frames, goals, actions = data.batch(np.arange(start, min(start + batch_size, len(data))), goal_rows, None)
        frames, goals, actions = frames.to(device), goals.to(device), actions.to(device)
        features = model.encode_frames(frames)
        cond = model.head(features, goals)
        uncond = model.head(features, torch.zeros_like(goals))
        sums["loss"] += float(F.cross_entropy(cond, actions, reduction="sum"))
        sums["uncond_loss"] += float(F.cross_entropy(uncond, actions, reduction="sum"))
        sums["accuracy"] += float((cond.argmax(1) == actions).sum())
    out = {f"val_{k}": v / max(len(data), 1) for k, v in sums.items()}
    out["val_goal_gain"] = out["val_uncond_loss"] - out["val_loss"]
    return out


def load_best_policy(out_dir: Path) -> GoalConditionedPolicy:
    """The best-validation policy a training run wrote under ``out_dir``."""
    return load_policy(Path(out_dir) / BEST_DIR)
