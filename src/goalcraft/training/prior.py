"""Train STEVE-1's prior (:class:`~goalcraft.models.prior.TranslatorVAE`) on (text, goal) embedding pairs.

The objective is STEVE-1's (``steve1/data/text_alignment/vae_pipeline/train_vae.py``): a VAE ELBO
``MSE(recon, goal) + β·KL(q(z | goal, text) || N(0, I))`` with AdamW at a constant learning rate,
keeping the weights of the epoch with the lowest validation loss. One deliberate difference: the KL
here is summed over latent dimensions and *averaged* over the batch, while STEVE-1 sums it over the
batch as well, so its β is worth ``β · batch_size`` here (STEVE-1's defaults, β = 1 and batch 256,
are β ≈ 256 in these units, which drives the posterior to the prior).

Output folder::

    out_dir/best/model.safetensors + config.json   weights of the best validation epoch
    out_dir/last/model.safetensors + config.json   weights after the last complete epoch
    out_dir/last/state.pt                           the rest of what resuming needs (see below)
    out_dir/history.json                            per-epoch metrics, best epoch, hyperparameters

Both model folders load with :func:`goalcraft.models.prior.load_prior`. ``last/state.pt`` holds
tensors and plain Python values only, so it loads with ``torch.load(weights_only=True)``: the
optimizer state, the number of epochs completed, the shuffling and noise RNG states, the best
weights so far, the metric history, and the config, hyperparameters and data fingerprint a resumed
run must match. ``last/`` is rewritten after every epoch, so an interrupted run resumes from its
last complete epoch, and continuing a run of ``k`` epochs to ``n`` gives bit for bit the weights of
one run of ``n`` epochs (there is no schedule that depends on the total). Both folders are staged
and swapped in whole (``best/`` first, ``last/`` second); ``history.json`` is written under a
temporary name and renamed. What a killed run leaves (staging folders, a half-done swap) is cleaned
up or rolled back by the next call.

Reproducibility: the split, the initialization, the batch order, the reparameterization noise and
the validation noise each come from their own generator seeded from ``seed``; the global torch RNG
is neither used nor disturbed. On CPU the same inputs give bitwise identical weights.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from goalcraft.models.checkpoints import WEIGHTS_FILE, load_state_dict_file, strict_load
from goalcraft.models.prior import PriorConfig, TranslatorVAE, load_prior, save_prior
from goalcraft.training.run_folder import (
    BEST_DIR,
    Progress,
    RunFolder,
    Tick,
    deterministic_algorithms,
    train_loop,
    weights_writer,
)

STATE_FILE = "state.pt"

# Offsets of the seeds drawn from ``seed`` for each random stream.
_SPLIT, _INIT, _SHUFFLE, _NOISE, _VAL = range(5)


class PriorTrainingError(ValueError):
    """The inputs or the resumable state do not fit the requested training run."""


@dataclass(frozen=True)
class PriorTrainResult:
    """What :func:`train_prior` did.

    ``history`` has one dict per completed epoch (1-based ``epoch``; ``train_loss``, ``train_recon``,
    ``train_kl``, ``val_loss``, ``val_recon``, ``val_kl``, ``val_prior_mse``), including epochs done
    by earlier, resumed calls. ``initial_val`` is the validation metrics of the untrained model.
    ``val_prior_mse`` is the MSE of the deterministic prior sample (``z = 0``) against the goal: the
    error of what STEVE-1 uses at inference.
    """

    history: tuple[dict[str, float], ...]
    initial_val: dict[str, float]
    best_epoch: int
    best_val_loss: float
    best_dir: Path
    last_dir: Path
    history_path: Path
    epochs_completed: int
    resumed_from_epoch: int
    n_train: int
    n_val: int
    best_model: TranslatorVAE = field(repr=False, compare=False)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per sample, summed over latent dimensions: ``[B]``."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)


def train_prior(
    text_embeddings: np.ndarray,
    goal_embeddings: np.ndarray,
    config: PriorConfig,
    out_dir: Path,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    beta: float,
    seed: int,
    val_fraction: float = 0.2,
    resume: bool | str = True,
    log: Callable[[dict], None] | None = None,
    weight_decay: float = 0.01,
    device: str | torch.device = "cpu",
) -> PriorTrainResult:
    """Train a prior on ``text_embeddings`` → ``goal_embeddings`` (both ``[N, config.input_dim]``).

    Trains until ``epochs`` epochs are complete in total: with ``resume`` and an existing
    ``out_dir/last/state.pt`` it continues from there (the data, config and hyperparameters must be
    the ones it was started with, else :class:`PriorTrainingError`). With ``resume=False`` it first
    deletes any earlier ``best/``, ``last/`` state and history in ``out_dir`` and starts afresh (``"auto"``:
    continues a matching run, else starts afresh). ``log`` receives each epoch's record (its metrics plus
    ``best_epoch``, ``best_val_loss``, ``improved``; ``event: "eval"``) and, in a long epoch, progress
    records (``event: "progress"``); without it one line per record is printed. ``weight_decay`` is
    AdamW's (0.01, its default, as in STEVE-1). Folder and loop: :mod:`goalcraft.training.run_folder`.
    """
    out_dir = Path(out_dir)
    text, goal = _check_inputs(text_embeddings, goal_embeddings, config)
    _check_hyper(epochs=epochs, batch_size=batch_size, lr=lr, beta=beta, seed=seed, val_fraction=val_fraction,
                 weight_decay=weight_decay)
    device = torch.device(device)
    n = text.shape[0]
    seeds = np.random.SeedSequence(int(seed)).generate_state(5, dtype=np.uint64).tolist()

    # Seeded split: the validation rows are the first ``n_val`` of a permutation.
    n_val = min(n - 1, max(1, int(round(n * val_fraction))))
    order = np.random.default_rng(seeds[_SPLIT]).permutation(n)
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    train_text, train_goal = text[train_idx].to(device), goal[train_idx].to(device)
    val_text, val_goal = text[val_idx].to(device), goal[val_idx].to(device)

    hyper = {
        "batch_size": int(batch_size), "lr": float(lr), "beta": float(beta), "seed": int(seed),
        "val_fraction": float(val_fraction), "weight_decay": float(weight_decay),
        "n": int(n), "data_sha256": _fingerprint(text, goal),
    }
    folder = RunFolder(out_dir, {"config": asdict(config), **hyper}, resume=resume, state_file=STATE_FILE,
                       tensorboard=False, error=PriorTrainingError, end=epochs)

    with deterministic_algorithms():
        with torch.random.fork_rng(devices=[]):  # CPU RNG only: the model is built on the CPU
            torch.random.default_generator.manual_seed(seeds[_INIT])
            model = TranslatorVAE(config)
        model.to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, foreach=True)
        shuffle_gen = torch.Generator().manual_seed(seeds[_SHUFFLE])
        noise_gen = torch.Generator().manual_seed(seeds[_NOISE])
        best: dict[str, Any] = {"state": None}  # the best epoch's weights (CPU), kept for the state file

        state = folder.state
        if state is not None:
            weights = load_state_dict_file(folder.last_dir / WEIGHTS_FILE)
            strict_load(model, {k: v.to(device) for k, v in weights.items()}, source=str(folder.last_dir / WEIGHTS_FILE))
            optimizer.load_state_dict(state["optimizer"])
            shuffle_gen.set_state(state["shuffle_rng"])
            noise_gen.set_state(state["noise_rng"])
            initial_val = dict(state["initial_val"])
            best["state"] = {k: v.clone() for k, v in state["best_model"].items()}
            # ``best/`` may be one epoch ahead of ``last/`` if a run died between the two writes;
            # make it agree with the state being resumed (the lost epoch reproduces it exactly).
            folder.save_best(weights_writer(best["state"], TranslatorVAE.uninitialized, config, save_prior))
        else:
            initial_val = _evaluate(model, val_text, val_goal, beta, batch_size, seeds[_VAL])
        progress = Progress.from_state(state)
        start_epoch = progress.position

        def on_best(_record: dict[str, Any]) -> Callable[[Path], None]:
            best["state"] = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            return weights_writer(best["state"], TranslatorVAE.uninitialized, config, save_prior)

        try:
            train_loop(
                folder, progress, end=epochs, name="prior", fields=("train_loss", "val_loss", "val_prior_mse"),
                train=lambda _start, _stop, tick: _train_epoch(model, optimizer, train_text, train_goal, beta,
                                                               batch_size, shuffle_gen, noise_gen, tick),
                evaluate=lambda _epoch: _evaluate(model, val_text, val_goal, beta, batch_size, seeds[_VAL]),
                write_model=lambda d: save_prior(model, d), on_best=on_best,
                trainer_state=lambda: {"hyper": hyper, "optimizer": optimizer.state_dict(),
                                       "shuffle_rng": shuffle_gen.get_state(), "noise_rng": noise_gen.get_state(),
                                       "best_model": best["state"], "initial_val": initial_val},
                history_extra=lambda: {"initial_val": initial_val}, log=log)
        finally:
            folder.close()

    best_model = TranslatorVAE.uninitialized(config)
    best_model.load_state_dict(best["state"])
    best_model.eval()
    return PriorTrainResult(
        history=tuple(progress.history),
        initial_val=initial_val,
        best_epoch=progress.best_position,
        best_val_loss=progress.best_val_loss,
        best_dir=folder.best_dir,
        last_dir=folder.last_dir,
        history_path=folder.history_path,
        epochs_completed=len(progress.history),
        resumed_from_epoch=start_epoch,
        n_train=int(train_idx.size),
        n_val=int(val_idx.size),
        best_model=best_model,
    )


def load_best_prior(out_dir: Path) -> TranslatorVAE:
    """The best-validation prior a training run wrote under ``out_dir``."""
    return load_prior(Path(out_dir) / BEST_DIR)


# -- one epoch -----------------------------------------------------------------------------------


def _train_epoch(model, optimizer, text, goal, beta, batch_size, shuffle_gen, noise_gen, tick: Tick) -> dict[str, float]:
    model.train()
    n = text.shape[0]
    perm = torch.randperm(n, generator=shuffle_gen).to(text.device)
    sums = {"loss": 0.0, "recon": 0.0, "kl": 0.0}
    for start in range(0, n, batch_size):
        idx = perm[start:start + batch_size]
        recon, mu, logvar = model(text[idx], goal[idx], generator=noise_gen)
        recon_loss = torch.nn.functional.mse_loss(recon, goal[idx])
        kl = kl_divergence(mu, logvar).mean()
        loss = recon_loss + beta * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        b = idx.numel()
        sums["loss"] += loss.item() * b
        sums["recon"] += recon_loss.item() * b
        sums["kl"] += kl.item() * b
        tick(start // batch_size + 1, -(-n // batch_size), sums["loss"] / (start + b))
    return {f"train_{k}": v / n for k, v in sums.items()}


@torch.no_grad()
def _evaluate(model, text, goal, beta, batch_size, val_seed) -> dict[str, float]:
    """Validation ELBO with the same noise every time (so epochs compare), and the prior-mean MSE."""
    model.eval()
    noise_gen = torch.Generator().manual_seed(val_seed)
    n = text.shape[0]
    sums = {"loss": 0.0, "recon": 0.0, "kl": 0.0, "prior_mse": 0.0}
    for start in range(0, n, batch_size):
        t, g = text[start:start + batch_size], goal[start:start + batch_size]
        recon, mu, logvar = model(t, g, generator=noise_gen)
        recon_loss = torch.nn.functional.mse_loss(recon, g)
        kl = kl_divergence(mu, logvar).mean()
        prior_mse = torch.nn.functional.mse_loss(model.sample(t, deterministic=True), g)
        b = t.shape[0]
        sums["loss"] += (recon_loss + beta * kl).item() * b
        sums["recon"] += recon_loss.item() * b
        sums["kl"] += kl.item() * b
        sums["prior_mse"] += prior_mse.item() * b
    return {f"val_{k}": v / n for k, v in sums.items()}


# -- checks ----------------------------------------------------------------------------------------


def _check_inputs(text_embeddings, goal_embeddings, config: PriorConfig) -> tuple[torch.Tensor, torch.Tensor]:
    arrays = []
    for name, a in (("text_embeddings", text_embeddings), ("goal_embeddings", goal_embeddings)):
        a = np.asarray(a)
        if a.ndim != 2 or a.shape[1] != config.input_dim:
            raise PriorTrainingError(f"{name} must have shape [N, {config.input_dim}], got {list(a.shape)}")
        if not np.issubdtype(a.dtype, np.floating):
            raise PriorTrainingError(f"{name} must be floating point, got {a.dtype}")
        a = np.ascontiguousarray(a, dtype=np.float32)
        if not np.isfinite(a).all():
            raise PriorTrainingError(f"{name} holds NaN or infinite values")
        arrays.append(torch.from_numpy(a.copy()))
    text, goal = arrays
    if text.shape[0] != goal.shape[0]:
        raise PriorTrainingError(f"{text.shape[0]} text embeddings but {goal.shape[0]} goal embeddings")
    if text.shape[0] < 2:
        raise PriorTrainingError(f"need at least 2 pairs (one to train, one to validate), got {text.shape[0]}")
    return text, goal


def _check_hyper(*, epochs, batch_size, lr, beta, seed, val_fraction, weight_decay) -> None:
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise PriorTrainingError(f"seed must be an int >= 0, got {seed!r}")
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise PriorTrainingError(f"epochs must be an int >= 1, got {epochs!r}")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise PriorTrainingError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if not (lr > 0 and math.isfinite(lr)):
        raise PriorTrainingError(f"lr must be positive, got {lr!r}")
    if not (beta >= 0 and math.isfinite(beta)):
        raise PriorTrainingError(f"beta must be >= 0, got {beta!r}")
    if not (0 < val_fraction < 1):
        raise PriorTrainingError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    if not (weight_decay >= 0 and math.isfinite(weight_decay)):
        raise PriorTrainingError(f"weight_decay must be >= 0, got {weight_decay!r}")


def _fingerprint(text: torch.Tensor, goal: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in (text, goal):
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()
