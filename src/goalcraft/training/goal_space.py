"""Train the goal space: MineCLIP's video and text encoders, contrastively, on clip shards.

MineCLIP's training code was never released; this is goalcraft's loop. :func:`train_goal_space`
is a plain function (the Dagster asset calls it): it reads clip shards through
:class:`goalcraft.training.data.ClipBatches`, trains with a symmetric video–text InfoNCE loss,
evaluates on a held-out split, writes checkpoints and TensorBoard scalars, and resumes.

**Loss.** ``model(frames, tokens)`` gives ``logits[i, j] = exp(logit_scale) · cos(video_i, text_j)``.
The texts of a batch are its *unique* captions (several clips often share an instruction; a caption
is encoded once). Video→text: cross entropy of each clip's row against the column of its caption.
Text→video: cross entropy of each caption's column against a target distribution spread uniformly
over *all* clips with that caption. So clips that share a caption are never negatives of each other
(plain InfoNCE over a ``B×B`` matrix would push a clip away from its own instruction whenever a
batch-mate has the same one), and the loss stays a proper cross entropy with minimum 0 for the
video→text side. The loss is the mean of the two directions.

**Evaluation** (every ``eval_every`` steps, at step 0 and at the last step) on the validation split,
all of it in one matrix (validation clips × unique validation captions), so the numbers do not
depend on batching: the same loss; text→video retrieval, each unique caption a query ranking all
validation clips, a hit at ``k`` if one of the top ``k`` clips has the query's caption; and the
chance level of each metric for that set (a random ranking: ``n_c/N`` at top-1,
``1 − C(N−n_c, k)/C(N, k)`` at top-k, averaged over queries).

**Checkpoints**: a :class:`goalcraft.training.run_folder.RunFolder` under ``out_dir``::

    last/model.safetensors, config.json   the model at the last evaluation (save_model_dir)
    last/trainer_state.pt                 optimizer, step, RNG states, history, fingerprint: tensors
                                          and plain numbers only, so torch.load(weights_only=True) reads it
    best/model.safetensors, config.json   the model with the lowest validation loss so far
    best/best.json                        its step and validation metrics
    history.json                          one record per evaluation, the best step, the settings
    tensorboard/                          train/loss, train/lr, train/logit_scale, val/* scalars

The rounds of :func:`goalcraft.training.run_folder.train_loop` are ``eval_every`` steps. Each folder
is staged and swapped in whole, so a crash leaves the previous complete checkpoint. With
``resume=True`` a run continues from ``last/`` to ``steps``: the learning rate depends on the step
only (linear warm-up, then constant; no decay tied to the total), batch ``s`` depends on ``(seed, s)``
only, and the torch RNG state is restored, so on CPU ``train(steps=k)`` then ``train(steps=n)`` gives
bitwise the weights of one ``train(steps=n)``.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from goalcraft.models.checkpoints import WEIGHTS_FILE, load_state_dict_file, strict_load
from goalcraft.models.clip_tokenizer import tokenize
from goalcraft.models.mineclip import MINECLIP_CONFIGS, MineCLIP, MineCLIPConfig, save_mineclip
from goalcraft.storage import write_json_atomic
from goalcraft.training.data import ClipBatches
from goalcraft.training.run_folder import Progress, RunFolder, Tick, restore_rng_state, rng_state, train_loop

__all__ = [
    "GOAL_SPACE_TRAINING",
    "GoalSpaceTrainingError",
    "GoalSpaceTrainResult",
    "contrastive_loss",
    "evaluate_goal_space",
    "retrieval_metrics",
    "train_goal_space",
]

Precision = Literal["fp32", "bf16"]

@dataclass(frozen=True)
class GoalSpacePreset:
    """A named training recipe: the MineCLIP size (a ``MINECLIP_CONFIGS`` key) and the keyword
    arguments of :func:`train_goal_space` (:meth:`training_kwargs`)."""

    model: str
    steps: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup_steps: int
    eval_every: int
    frames: int
    jitter: bool
    cache: bool
    precision: Precision
    device: str
    decode_workers: int = 0

    def training_kwargs(self, **overrides: Any) -> dict[str, Any]:
        kwargs = {k: v for k, v in asdict(self).items() if k != "model"}
        unknown = set(overrides) - set(kwargs)
        if unknown:
            raise TypeError(f"not preset fields: {sorted(unknown)}")
        return {**kwargs, **overrides}


# Presets (``[goal_space] preset``; the settings' literal lists the same names, a test checks it).
# tiny-cpu: the embedded Crafter demo corpus (~120 clips) on a laptop CPU: 8 of 16 frames with
#   temporal jitter, clips cached in memory; ~0.35 s a step on 2 cores. On that corpus validation
#   loss bottoms out after ~50 steps (the best/ checkpoint) while held-out text→video retrieval keeps
#   improving to ~150-300 steps (top-5 ~0.3 above chance; tests/test_training_goal_space.py).
# vitb16-gpu: MineCLIP ViT-B/16 on a real corpus, one GPU, bf16 autocast, clips streamed.
GOAL_SPACE_TRAINING: dict[str, GoalSpacePreset] = {
    "tiny-cpu": GoalSpacePreset(model="demo", steps=200, batch_size=16, lr=1e-3, weight_decay=0.05, warmup_steps=5,
                                eval_every=40, frames=16, jitter=True, cache=True, precision="fp32", device="cpu"),
    "vitb16-gpu": GoalSpacePreset(model="vitb16", steps=20_000, batch_size=256, lr=1e-4, weight_decay=0.2,
                                  warmup_steps=1_000, eval_every=1_000, frames=16, jitter=False, cache=False,
                                  decode_workers=12, precision="bf16", device="cuda"),
}

STATE_FILE = "trainer_state.pt"
_VAL_SCALARS = ("val_loss", "top1", "top5", "chance_top1", "chance_top5")  # the TensorBoard val/* curves


class GoalSpaceTrainingError(ValueError):
    """The clips or settings cannot train a goal space (a user-facing, one-line reason)."""


# --------------------------------------------------------------------------------------------
# Loss and metrics
# --------------------------------------------------------------------------------------------


def unique_captions(captions: Sequence[str]) -> tuple[list[str], torch.Tensor]:
    """``(unique captions in first-seen order, index of each caption among them)``."""
    order: dict[str, int] = {}
    index = [order.setdefault(c, len(order)) for c in captions]
    return list(order), torch.tensor(index, dtype=torch.long)


def contrastive_loss(logits: torch.Tensor, caption_index: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE for ``logits`` [videos, unique captions]; ``caption_index[i]`` is the
    column of clip ``i``'s caption. Video→text: cross entropy against that column. Text→video:
    cross entropy against a uniform target over all clips with the caption. Mean of the two."""
    logits = logits.float()
    n_video, n_text = logits.shape
    caption_index = caption_index.to(logits.device)
    v2t = F.cross_entropy(logits, caption_index)
    positives = F.one_hot(caption_index, n_text).T.to(logits.dtype)  # [texts, videos]
    target = positives / positives.sum(dim=1, keepdim=True)
    t2v = -(target * F.log_softmax(logits.T, dim=1)).sum(dim=1).mean()
    return 0.5 * (v2t + t2v)


def _chance_at_k(n_total: int, n_pos: int, k: int) -> float:
    """Probability that a random ranking of ``n_total`` clips has one of ``n_pos`` in its top ``k``."""
    k = min(k, n_total)
    return 1.0 - math.comb(n_total - n_pos, k) / math.comb(n_total, k)


def retrieval_metrics(logits: torch.Tensor, caption_index: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Text→video retrieval over ``logits`` [videos, unique captions]: every caption is a query;
    a hit at k if a clip with that caption is among the k highest-scoring clips. Returns
    ``top{k}`` and ``chance_top{k}`` (expected hit rate of a random ranking), means over queries."""
    n_video, n_text = logits.shape
    caption_index = caption_index.to(logits.device)
    counts = torch.bincount(caption_index, minlength=n_text).tolist()
    out: dict[str, float] = {}
    for k in ks:
        kk = min(k, n_video)
        top = logits.float().T.topk(kk, dim=1).indices  # [texts, kk]
        hits = (caption_index[top] == torch.arange(n_text, device=logits.device)[:, None]).any(dim=1)
        out[f"top{k}"] = float(hits.float().mean())
        out[f"chance_top{k}"] = float(np.mean([_chance_at_k(n_video, c, k) for c in counts]))
    return out


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


def _autocast(device: str, precision: Precision):
    device_type = torch.device(device).type
    return torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=precision == "bf16")


@torch.no_grad()
def evaluate_goal_space(model: MineCLIP, data: ClipBatches, *, device: str = "cpu", precision: Precision = "fp32",
                        chunk: int = 64) -> dict[str, float]:
    """Loss and retrieval metrics of ``model`` on all clips of ``data`` at once (one matrix of
    clips × unique captions; clips are encoded in chunks of ``chunk``, which does not change it)."""
    was_training = model.training
    model.eval()
    try:
        captions = data.captions()
        texts, caption_index = unique_captions(captions)
        tokens = tokenize(texts).to(device)
        rows = []
        with _autocast(device, precision):
            for batch in data.ordered(chunk):
                rows.append(model(batch.frames.to(device), tokens).float())
        logits = torch.cat(rows)
        metrics = {"val_loss": float(contrastive_loss(logits, caption_index))}
        metrics.update(retrieval_metrics(logits, caption_index))
        metrics.update(val_clips=float(len(captions)), val_captions=float(len(texts)))
        return metrics
    finally:
        model.train(was_training)


# --------------------------------------------------------------------------------------------
# Optimization
# --------------------------------------------------------------------------------------------


def _lr_at(step: int, lr: float, warmup_steps: int) -> float:
    """Learning rate for optimizer step ``step`` (0-based): linear warm-up, then constant."""
    if warmup_steps > 0 and step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    return lr


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices and embeddings only (not biases, norms, logit scale)."""
    decay, no_decay = [], []
    for _name, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


class _Prefetcher:
    """Pulls items of ``source`` on a background thread, ``depth`` ahead, in order; an error in the
    source is raised by the ``next`` call that would have returned its item."""

    def __init__(self, source: Iterator[Any], depth: int = 2) -> None:
        self._queue: queue.Queue[tuple[bool, Any]] = queue.Queue(depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(source,), name="batch-prefetch", daemon=True)
        self._thread.start()

    def _put(self, item: tuple[bool, Any]) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, source: Iterator[Any]) -> None:
        try:
            for item in source:
                if not self._put((True, item)):
                    return
        except BaseException as exc:  # handed to the consumer
            self._put((False, exc))
            return
        self._put((False, StopIteration()))

    def __iter__(self) -> _Prefetcher:
        return self

    def __next__(self) -> Any:
        ok, item = self._queue.get()
        if not ok:
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@dataclass
class GoalSpaceTrainResult:
    out_dir: Path
    last_dir: Path
    best_dir: Path
    tensorboard_dir: Path
    steps: int
    best_step: int
    best_val_loss: float
    resumed_from: int | None  # the step continued from, None for a fresh run
    seconds: float
    # One dict per evaluation: step, train_loss (mean since the previous evaluation; NaN at step 0),
    # val_loss, top1, top5, chance_top1, chance_top5, val_clips, val_captions, lr, logit_scale.
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def final(self) -> dict[str, float]:
        return self.history[-1]


def _logit_scale(model: MineCLIP) -> float:
    return float(model.logit_scale.detach().float().exp())


def train_goal_space(
    shards: Sequence[Path],
    config: MineCLIPConfig | str,
    out_dir: Path,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    val_fraction: float = 0.2,
    eval_every: int,
    device: str = "cpu",
    precision: Precision = "fp32",
    resume: bool | str = True,
    log: Callable[[dict[str, Any]], None] | None = None,
    weight_decay: float = 0.05,
    warmup_steps: int = 0,
    frames: int = 16,
    cache: bool = False,
    jitter: bool = False,
    decode_workers: int = 0,
    caption_map: Callable[[str], str] | None = None,
    grad_clip: float = 1.0,
    max_logit_scale: float = 100.0,
    tensorboard: bool = True,
    exclude: Callable[[Path, str], bool] | None = None,
    key_prefix: Mapping[str, str] | None = None,
    data_key: str = "",
) -> GoalSpaceTrainResult:
    """Train a MineCLIP goal space on clip ``shards``; see the module docstring.

    ``config``: a :class:`MineCLIPConfig` or a name in ``MINECLIP_CONFIGS``. ``frames``: clip frames
    used (16, or 8 evenly spaced to halve CPU cost). ``jitter``: shift each training clip's frame
    indices by a seeded random offset (more views of few clips; evaluation never jitters). ``cache``:
    keep decoded clips in memory (small corpora). ``decode_workers``: threads decoding JPEGs, and a
    background thread preparing the next batches (a GPU needs it; results are identical).
    ``caption_map``: applied to every caption (e.g. Crafter narration → task instruction,
    :func:`goalcraft.training.data.task_caption_map`). ``log`` is called with each evaluation's
    record (``event: "eval"``) and, between evaluations, with a progress record (``event:
    "progress"``) at most every 10 s; without it each is printed as one line. Evaluations and
    checkpoints happen at step 0, every ``eval_every`` steps and at ``steps``.
    """
    started = time.perf_counter()
    if isinstance(config, str):
        config = MINECLIP_CONFIGS[config]
    if steps < 0 or eval_every < 1:
        raise ValueError("steps must be >= 0 and eval_every >= 1")
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    out_dir = Path(out_dir)

    # ``exclude``/``key_prefix``: see ClipBatches (the pipeline leaves out test-split sources and adds
    # the other sources' goal clips); ``data_key`` names that choice in the resume fingerprint.
    select = dict(exclude=exclude, key_prefix=key_prefix)
    train = ClipBatches(shards, batch_size=batch_size, split="train", val_fraction=val_fraction, seed=seed,
                        frames=frames, cache=cache, caption_map=caption_map, jitter=jitter,
                        decode_workers=decode_workers, **select)
    val = ClipBatches(shards, batch_size=batch_size, split="val", val_fraction=val_fraction, seed=seed,
                      frames=frames, cache=cache, caption_map=caption_map, decode_workers=decode_workers, **select)
    if len(val) == 0:
        raise GoalSpaceTrainingError(f"no validation clips at val_fraction={val_fraction} ({len(train)} training "
                                     "clips): too few clips to train a goal space on")

    # What must not change between a run and its resumption (the data order and the updates depend on it).
    fingerprint = {"config": asdict(config), "seed": seed, "batch_size": batch_size, "lr": lr,
                   "val_fraction": val_fraction, "frames": frames, "jitter": jitter, "cache": cache,
                   "weight_decay": weight_decay, "warmup_steps": warmup_steps, "precision": precision,
                   "grad_clip": grad_clip, "max_logit_scale": max_logit_scale, "data": data_key}
    folder = RunFolder(out_dir, fingerprint, resume=resume, state_file=STATE_FILE, tensorboard=tensorboard,
                       error=GoalSpaceTrainingError, end=steps, unit="step")

    torch.manual_seed(seed)
    model = MineCLIP(config).to(device)
    # foreach: the multi-tensor AdamW, bitwise the per-tensor one on CPU and faster (docs/benchmarks.md).
    optimizer = torch.optim.AdamW(_param_groups(model, weight_decay), lr=lr, betas=(0.9, 0.98), eps=1e-6,
                                  foreach=True)
    state = folder.state
    if state is not None:
        strict_load(model, load_state_dict_file(folder.last_dir / WEIGHTS_FILE), source=str(folder.last_dir))
        model.to(device)
        optimizer.load_state_dict(state["optimizer"])
        restore_rng_state(state["rng"], device)
    progress = Progress.from_state(state, "step")
    resumed_from = None if state is None else progress.position

    closers: list[Callable[[], None]] = []
    batches: list[Iterator[Any]] = []  # the training stream, opened at the first step this call trains

    def train_round(start: int, stop: int, tick: Tick) -> dict[str, float]:
        if not batches:
            stream: Iterator[Any] = train.stream(start)
            if decode_workers > 0:  # decode the next batches while the model trains on this one
                stream = _Prefetcher(stream, depth=2)
                closers.append(stream.close)
            batches.append(stream)
        model.train()
        loss_sum = 0.0
        for step in range(start, stop):
            batch = next(batches[0])
            current_lr = _lr_at(step, lr, warmup_steps)
            for group in optimizer.param_groups:
                group["lr"] = current_lr
            texts, caption_index = unique_captions(batch.captions)
            tokens = tokenize(texts).to(device)
            with _autocast(device, precision):
                logits = model(batch.frames.to(device, non_blocking=True), tokens)
            loss = contrastive_loss(logits, caption_index)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            model.clamp_logit_scale(max_logit_scale)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise FloatingPointError(f"training loss is {value} at step {step + 1}")
            loss_sum += value
            folder.scalars({"train/loss": value, "train/lr": current_lr, "train/logit_scale": _logit_scale(model)},
                           step + 1)
            tick(step + 1 - start, stop - start, loss_sum / (step + 1 - start))
        return {"train_loss": loss_sum / (stop - start)}

    def evaluate(step: int) -> dict[str, float]:
        metrics = evaluate_goal_space(model, val, device=device, precision=precision)
        return {**metrics, "lr": _lr_at(max(step - 1, 0), lr, warmup_steps), "logit_scale": _logit_scale(model),
                "seconds": round(time.perf_counter() - started, 3)}

    def write_model(d: Path) -> None:
        save_mineclip(model, d)

    def write_best(record: dict[str, Any]) -> Callable[[Path], None]:
        def write(d: Path) -> None:
            save_mineclip(model, d)
            write_json_atomic({k: v for k, v in record.items() if k != "seconds"}, d / "best.json")

        return write

    try:
        train_loop(folder, progress, end=steps, every=eval_every, train=train_round, evaluate=evaluate,
                   write_model=write_model, on_best=write_best,
                   trainer_state=lambda: {"optimizer": optimizer.state_dict(), "rng": rng_state(device)},
                   evaluate_first=True, name="goal space", fields=("train_loss", "val_loss", "top1", "top5"),
                   scalars=lambda r: {f"val/{k.removeprefix('val_')}": r[k] for k in _VAL_SCALARS}, log=log)
    finally:
        for close in closers:
            close()
        folder.close()

    return GoalSpaceTrainResult(
        out_dir=out_dir, last_dir=folder.last_dir, best_dir=folder.best_dir, tensorboard_dir=folder.tensorboard_dir,
        steps=progress.position, best_step=progress.best_position, best_val_loss=progress.best_val_loss,
        resumed_from=resumed_from, seconds=round(time.perf_counter() - started, 3), history=progress.history,
    )
