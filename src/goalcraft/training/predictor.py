"""Train the goal predictor (:mod:`goalcraft.models.predictor`) in two stages, and compare it with the
MineCLIP text → prior baseline.

**Stage 1** (:func:`train_stage1`): the text side learns to predict the visual tokens of the goal clip.
For a batch of (instruction, goal clip) pairs the video side encodes the clip's per-frame features into
visual tokens ``V`` (the Q-Former with its learned queries); the text side predicts tokens ``P`` from the
instruction. Loss = video–text contrastive (InfoNCE between ``llama_proj(mean V)`` and the mean text
state, pairs of the same task are not negatives) + 0.5 x MSE(``P``, ``V`` detached). The backbone is
frozen except for LoRA adapters (peft); everything else but the aligner trains.

**Stage 2** (:func:`train_stage2`): with the stage-1 predictor frozen, the aligner maps predicted tokens
to the goal embedding of the clip: MSE + 0.1 x (1 − cosine). Tokens are computed once per distinct
instruction (the frozen predictor is deterministic in eval mode), so stage 2 is cheap. After training
the output scale is calibrated so predicted norms match the raw goal embeddings (policy scale).

Splits come from the goal-embeddings table's ``split`` column (goalcraft.data.splits: assigned once,
by source): ``train``, ``val`` (model selection) and ``test`` (held out for the evaluation), so the
clips of one video or trial never cross splits and every model is compared on clips none saw.

Both stages write, under their ``out_dir``::

    best/              the best validation checkpoint (save_goal_predictor: config.json,
                       model.safetensors, adapter/ for LoRA)
    last/              the last complete epoch, plus state.pt (optimizer, RNG, history) for resuming
    history.json       per-epoch metrics, best epoch, settings
    tensorboard/       the same curves as TensorBoard scalars

(a :class:`goalcraft.training.run_folder.RunFolder`; the epochs run in its ``train_loop``). A run resumes
from ``last/`` (same data and settings, else :class:`PredictorTrainingError`; ``resume="auto"`` starts
afresh instead) and gives the weights an uninterrupted run would. Under ``torch.distributed`` (torchrun) each rank takes its slice
of every global batch and the model is wrapped in DistributedDataParallel; rank 0 writes files.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from goalcraft.data.embeddings import embedding_matrix, frame_feature_tensor
from goalcraft.models.backbones import load_text_backbone, mean_pool
from goalcraft.models.predictor import (
    GoalPredictor,
    PredictorConfig,
    apply_lora,
    load_goal_predictor,
    save_goal_predictor,
)
from goalcraft.config import Stage1Settings, Stage2Settings
from goalcraft.training.goal_space import contrastive_loss
from goalcraft.training.run_folder import Progress, RunFolder, Tick, barrier, dist_info, train_loop

# peft asks transformers for is_gradient_checkpointing, which transformers 5 deprecates; not ours to fix.
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)

STATE_FILE = "state.pt"


class PredictorTrainingError(ValueError):
    """Training inputs or settings that cannot work, or a resume that does not match its run."""


# -- data ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PredictorExamples:
    """One row per goal clip: instruction, task, goal embedding ``[N, 512]``, frame features ``[N, T, D]``."""

    keys: list[str]
    instructions: list[str]
    tasks: list[str]
    goals: np.ndarray
    frames: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.keys)
        if not (len(self.instructions) == len(self.tasks) == self.goals.shape[0] == n):
            raise PredictorTrainingError("keys, instructions, tasks and goals differ in length")
        if self.frames is not None and self.frames.shape[0] != n:
            raise PredictorTrainingError("frame features and goals differ in length")
        if not np.isfinite(self.goals).all() or (self.frames is not None and not np.isfinite(self.frames).all()):
            raise PredictorTrainingError("goal embeddings or frame features hold NaN or infinite values")

    @classmethod
    def from_table(cls, table: pa.Table) -> PredictorExamples:
        """From the goal-embeddings table (``goal_embeddings`` asset); ``frame_features`` when present."""
        frames = frame_feature_tensor(table) if "frame_features" in table.column_names else None
        tasks = [t or i for t, i in zip(table.column("task").to_pylist(), table.column("instruction").to_pylist())]
        return cls(table.column("key").to_pylist(), table.column("instruction").to_pylist(), tasks,
                   embedding_matrix(table), frames)

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(json.dumps([self.keys, self.instructions, self.tasks]).encode())
        h.update(np.ascontiguousarray(self.goals, np.float32).tobytes())
        if self.frames is not None:
            h.update(np.ascontiguousarray(self.frames, np.float32).tobytes())
        return h.hexdigest()


def instruction_for(examples: PredictorExamples, i: int, variants: Mapping[str, Sequence[str]] | None,
                    rng: np.random.Generator | None) -> str:
    """Row ``i``'s instruction, or (training with ``variants``) a seeded pick among its task's phrasings."""
    options = list(variants.get(examples.tasks[i], ())) if variants else []
    if rng is None or not options:
        return examples.instructions[i]
    options = [examples.instructions[i], *[o for o in options if o != examples.instructions[i]]]
    return options[int(rng.integers(len(options)))]


# -- settings and results ----------------------------------------------------------------------------


@dataclass
class StageResult:
    history: list[dict[str, float]]
    best_epoch: int
    best_val_loss: float
    best_dir: Path
    resumed_from_epoch: int
    extra: dict[str, Any] = field(default_factory=dict)


# -- distributed -----------------------------------------------------------------------------------


def _wrap(module: nn.Module, device: torch.device) -> nn.Module:
    if dist_info()[1] == 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids)


def _autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


# -- the two objectives (nn.Modules so DDP can wrap them) -------------------------------------------


class Stage1Objective(nn.Module):
    """Contrastive + ``mse_weight`` x goal-prediction MSE for one batch."""

    def __init__(self, model: GoalPredictor, temperature: float, mse_weight: float) -> None:
        super().__init__()
        self.model, self.temperature, self.mse_weight = model, temperature, mse_weight

    def forward(self, instructions: list[str], frames: Tensor, classes: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        states, mask = self.model.encode_text(instructions)
        video = self.model.encode_video(frames)
        predicted = self.model.predict_tokens(states, mask)
        v = F.normalize(self.model.video_text_embedding(video).float(), dim=-1)
        t = F.normalize(mean_pool(states, mask).float(), dim=-1)
        # One text column per task in the batch (its first row's phrasing): rows of one task are
        # positives of that column, never each other's negatives.
        first = torch.stack([torch.nonzero(classes == c)[0, 0] for c in range(int(classes.max()) + 1)])
        contrastive = contrastive_loss(v @ t[first].t() / self.temperature, classes)
        mse = F.mse_loss(predicted.float(), video.detach().float())
        return contrastive + self.mse_weight * mse, contrastive, mse


def goal_loss(pred: Tensor, goal: Tensor, cos_weight: float, std: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Stage 2's loss: MSE + ``cos_weight`` x (1 − cosine); returns (loss, mse, mean cosine).

    With ``std`` the MSE is measured in units of the training goals' per-dimension spread (the goals'
    shared component would otherwise drown the differences between tasks); the cosine is on raw vectors.
    """
    mse = F.mse_loss(pred / std, goal / std) if std is not None else F.mse_loss(pred, goal)
    cos = F.cosine_similarity(pred, goal, dim=-1).mean()
    return mse + cos_weight * (1 - cos), mse, cos


def task_contrastive_loss(pred: Tensor, goal: Tensor, task: Tensor, mean: Tensor, std: Tensor,
                          temperature: float) -> Tensor:
    """Cross entropy of each predicted goal against the batch's goal clips, in standardised units
    (``(x − mean) / std``: the shared component would make every cosine ≈ 1): the positives are the
    clips of the prediction's own task (uniform target over them), the negatives other tasks' clips."""
    p = F.normalize((pred - mean) / std, dim=-1)
    g = F.normalize((goal - mean) / std, dim=-1)
    logits = p @ g.T / temperature
    same = (task[:, None] == task[None, :]).float()
    return -(F.log_softmax(logits, dim=-1) * same / same.sum(-1, keepdim=True)).sum(-1).mean()


class Stage2Objective(nn.Module):
    def __init__(self, model: GoalPredictor, cos_weight: float, contrastive_weight: float = 0.0,
                 temperature: float = 0.1) -> None:
        super().__init__()
        self.model, self.cos_weight = model, cos_weight
        self.contrastive_weight, self.temperature = contrastive_weight, temperature

    def forward(self, tokens: Tensor, goal: Tensor, task: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        scale = self.model.goal_std * self.model.output_scale
        pred = self.model.align(tokens).float()
        loss, mse, cos = goal_loss(pred, goal, self.cos_weight, scale)
        if self.contrastive_weight and task is not None and len(task) > 1:
            loss = loss + self.contrastive_weight * task_contrastive_loss(
                pred, goal, task, self.model.goal_mean, scale, self.temperature)
        return loss, mse, cos


# -- shared loop machinery -----------------------------------------------------------------------------


def _trainable_state(model: nn.Module) -> dict[str, Tensor]:
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()
            if k in names or k.endswith("output_scale")}


def _load_trainable(model: nn.Module, state: Mapping[str, Tensor]) -> None:
    own = model.state_dict()
    missing = sorted(set(_trainable_state(model)) - set(state))
    if missing:
        raise PredictorTrainingError(f"resume state lacks trainable weights {missing[:5]}")
    with torch.no_grad():
        for k, v in state.items():
            own[k].copy_(v)


def _rank_slice(idx: np.ndarray) -> np.ndarray:
    rank, world = dist_info()
    return idx[rank::world]


def _class_index(tasks: Sequence[str]) -> Tensor:
    order = {t: i for i, t in enumerate(dict.fromkeys(tasks))}
    return torch.tensor([order[t] for t in tasks])


# -- stage 1 -----------------------------------------------------------------------------------------


def build_predictor(config: PredictorConfig, settings: Stage1Settings, *, seed: int) -> GoalPredictor:
    """A fresh predictor with its backbone (LoRA-wrapped, only the adapters trainable); seeded init."""
    backbone = load_text_backbone(config.backbone)
    for p in backbone.parameters():
        p.requires_grad_(False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        apply_lora(backbone, r=settings.lora_r, alpha=settings.lora_alpha)
        model = GoalPredictor(config, backbone)
    for p in model.aligner.parameters():  # stage 2 trains the aligner
        p.requires_grad_(False)
    return model


def train_stage1(examples: PredictorExamples, splits: Mapping[str, np.ndarray], config: PredictorConfig,
                 out_dir: Path, settings: Stage1Settings = Stage1Settings(), *, resume: bool | str = True,
                 variants: Mapping[str, Sequence[str]] | None = None,
                 log: Callable[[dict], None] | None = None) -> StageResult:
    """Stage 1 (see the module docstring). Needs ``examples.frames``."""
    if examples.frames is None:
        raise PredictorTrainingError("stage 1 needs the goal clips' frame features (goal_embeddings table "
                                     "with a frame_features column)")
    if examples.frames.shape[2] != config.frame_dim:
        raise PredictorTrainingError(f"frame features are {examples.frames.shape[2]}-d, the config expects "
                                     f"{config.frame_dim}")
    device = torch.device(settings.device)
    folder = RunFolder(out_dir, {"stage": 1, "config": asdict(config), "settings": _settings_key(settings),
                         "data": examples.fingerprint(), "splits": _split_digest(splits),
                         "variants": json.dumps(variants, sort_keys=True) if variants else ""},
                       resume=resume, state_file=STATE_FILE, error=PredictorTrainingError, end=settings.epochs)
    model = build_predictor(config, settings, seed=settings.seed).to(device)
    objective = Stage1Objective(model, settings.temperature, settings.mse_weight)
    wrapped = _wrap(objective, device)  # once: a DDP per epoch would leave the old one's hooks behind
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay, foreach=True)
    frames = torch.from_numpy(examples.frames)
    train_idx, val_idx = np.asarray(splits["train"]), np.asarray(splits["val"])

    def evaluate() -> dict[str, float]:
        model.eval()
        sums = {"loss": 0.0, "contrastive": 0.0, "mse": 0.0}
        with torch.no_grad(), _autocast(device, settings.precision):
            for start in range(0, len(val_idx), settings.batch_size):
                idx = val_idx[start:start + settings.batch_size]
                out = objective([examples.instructions[i] for i in idx], frames[idx].to(device),
                                _class_index([examples.tasks[i] for i in idx]).to(device))
                for k, v in zip(sums, out):
                    sums[k] += float(v.detach()) * len(idx)
        return {f"val_{k}": v / len(val_idx) for k, v in sums.items()}

    def step(epoch: int, rng: np.random.Generator, tick: Tick) -> dict[str, float]:
        model.train()

        def inputs(batch: np.ndarray) -> Callable[[np.ndarray], tuple]:
            texts = [instruction_for(examples, i, variants, rng) for i in batch]  # every rank draws alike
            return lambda mine: ([texts[j] for j in mine], frames[batch[mine]].to(device),
                                 _class_index([examples.tasks[i] for i in batch[mine]]).to(device))

        # A contrastive batch needs a negative: a last batch of one clip is skipped.
        return _train_epoch(wrapped, optimizer, rng.permutation(train_idx), settings, ("loss", "contrastive", "mse"),
                            inputs, tick, min_batch=2)

    return _run_stage(folder, model, optimizer, settings, step, evaluate, log, "predictor stage 1",
                      ("train_loss", "val_loss", "val_contrastive", "val_mse"))


def _settings_key(settings: Stage1Settings | Stage2Settings) -> dict[str, Any]:
    """The settings a resumed run must share (where it runs, how often it checkpoints and how many epochs
    it runs to may change)."""
    return {k: v for k, v in settings.model_dump().items() if k not in ("device", "checkpoint_every", "epochs")}


def _split_digest(splits: Mapping[str, np.ndarray]) -> str:
    return hashlib.sha256(json.dumps({k: np.asarray(v).tolist() for k, v in sorted(splits.items())}).encode()).hexdigest()


def _train_epoch(wrapped: nn.Module, optimizer: torch.optim.Optimizer, order: np.ndarray,
                 settings: Stage1Settings | Stage2Settings, names: Sequence[str],
                 inputs: Callable[[np.ndarray], Callable[[np.ndarray], tuple]], tick: Tick, *, min_batch: int = 1
                 ) -> dict[str, float]:
    """One epoch over ``order`` in global batches of ``settings.batch_size``: each rank runs the objective
    (which returns ``names``-ordered losses, the first optimised) on its slice of the batch.

    ``inputs(batch)`` is called for every global batch on every rank, skipped or not, so random draws it
    makes stay aligned across ranks and epochs; it returns the objective's arguments for a rank's slice.
    Returns ``train_<name>`` means over the samples this rank saw; ``tick`` hears of every batch.
    """
    device = torch.device(settings.device)
    sums, seen = dict.fromkeys(names, 0.0), 0
    n_batches = -(-len(order) // settings.batch_size)
    for start in range(0, len(order), settings.batch_size):
        batch = order[start:start + settings.batch_size]
        arguments = inputs(batch)
        if len(batch) < min_batch:
            continue
        mine = _rank_slice(np.arange(len(batch)))
        with _autocast(device, settings.precision):
            out = wrapped(*arguments(mine))
        optimizer.zero_grad(set_to_none=True)
        out[0].backward()
        optimizer.step()
        for k, v in zip(names, out):
            sums[k] += float(v.detach()) * len(mine)
        seen += len(mine)
        tick(start // settings.batch_size + 1, n_batches, sums[names[0]] / seen)
    return {f"train_{k}": v / max(seen, 1) for k, v in sums.items()}


def _run_stage(folder: RunFolder, model: GoalPredictor, optimizer: torch.optim.Optimizer,
               settings: Stage1Settings | Stage2Settings,
               train_epoch: Callable[[int, np.random.Generator, Tick], dict[str, float]],
               evaluate: Callable[[], dict[str, float]], log: Callable[[dict], None] | None,
               name: str, fields: Sequence[str]) -> StageResult:
    """Both stages' epochs, through :func:`goalcraft.training.run_folder.train_loop`.

    Epoch ``e``'s shuffling and phrasing draws come from ``default_rng([seed, e])`` and its dropout from
    a torch seed of its own, so a resumed run sees exactly the batches an uninterrupted one would."""
    state = folder.state
    if state is not None:
        _load_trainable(model, state["trainable"])
        optimizer.load_state_dict(state["optimizer"])
    progress = Progress.from_state(state)
    start = progress.position

    def train(_start: int, epoch: int, tick: Tick) -> dict[str, float]:
        with torch.random.fork_rng(devices=[]):  # dropout draws: seeded per epoch, global RNG untouched
            torch.manual_seed(settings.seed * 100_003 + epoch)
            return train_epoch(epoch, np.random.default_rng([settings.seed, epoch]), tick)

    try:
        train_loop(folder, progress, end=settings.epochs, train=train, evaluate=lambda _epoch: evaluate(),
                   write_model=lambda d: save_goal_predictor(model, d),
                   trainer_state=lambda: {"trainable": _trainable_state(model), "optimizer": optimizer.state_dict()},
                   checkpoint_every=settings.checkpoint_every, name=name, fields=fields, log=log)
    finally:
        folder.close()
    return StageResult(progress.history, progress.best_position, progress.best_val_loss, folder.best_dir, start)


# -- stage 2 -----------------------------------------------------------------------------------------


@torch.no_grad()
def instruction_tokens(model: GoalPredictor, instructions: Sequence[str], *, batch_size: int = 64) -> dict[str, Tensor]:
    """Predicted visual tokens (CPU) of each distinct instruction, from the model in eval mode."""
    model.eval()
    unique = list(dict.fromkeys(instructions))
    out: dict[str, Tensor] = {}
    for start in range(0, len(unique), batch_size):
        texts = unique[start:start + batch_size]
        states, mask = model.encode_text(texts)
        for text, tokens in zip(texts, model.predict_tokens(states, mask).float().cpu()):
            out[text] = tokens
    return out


def train_stage2(examples: PredictorExamples, splits: Mapping[str, np.ndarray], stage1_dir: Path, out_dir: Path,
                 settings: Stage2Settings = Stage2Settings(), *, aligner: str | None = None, resume: bool | str = True,
                 variants: Mapping[str, Sequence[str]] | None = None,
                 log: Callable[[dict], None] | None = None) -> StageResult:
    """Stage 2 (see the module docstring): the aligner on the frozen stage-1 predictor in ``stage1_dir``.

    ``aligner`` ("mlp" = A, "attention" = B) overrides the stage-1 config's choice; the aligner is
    freshly initialised from ``settings.seed`` either way.
    """
    device = torch.device(settings.device)
    model = load_goal_predictor(stage1_dir)
    if aligner is not None and aligner != model.config.aligner:
        model = _with_aligner(model, aligner)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        for module in model.aligner.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
        for name, p in model.aligner.named_parameters():
            if name.endswith("query"):  # attention-pooling query (variant B)
                nn.init.normal_(p, std=0.02)
    model.output_scale.fill_(1.0)
    goals = torch.from_numpy(examples.goals)
    train_goals = goals[np.asarray(splits["train"])]
    model.set_goal_statistics(train_goals.mean(0), train_goals.std(0) if len(train_goals) > 1 else torch.ones(1))
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("aligner."))
    model.to(device)
    phrasings = list(examples.instructions)
    for options in (variants or {}).values():
        phrasings += list(options)
    tokens = instruction_tokens(model, phrasings)
    folder = RunFolder(out_dir, {"stage": 2, "config": asdict(model.config), "settings": _settings_key(settings),
                         "data": examples.fingerprint(), "splits": _split_digest(splits),
                         "stage1": _dir_digest(stage1_dir),
                         "variants": json.dumps(variants, sort_keys=True) if variants else ""},
                       resume=resume, state_file=STATE_FILE, error=PredictorTrainingError, end=settings.epochs)
    objective = Stage2Objective(model, settings.cos_weight, settings.contrastive_weight, settings.temperature)
    task_index = _class_index(examples.tasks)
    wrapped = _wrap(objective, device)
    optimizer = torch.optim.AdamW(model.aligner.parameters(), lr=settings.lr, weight_decay=settings.weight_decay,
                                  foreach=True)
    train_idx, val_idx = np.asarray(splits["train"]), np.asarray(splits["val"])

    def batch_tokens(texts: Sequence[str]) -> Tensor:
        return torch.stack([tokens[t] for t in texts]).to(device)

    def evaluate() -> dict[str, float]:
        model.eval()
        with torch.no_grad():
            pred = model.align(batch_tokens([examples.instructions[i] for i in val_idx])).float()
            loss, mse, cos = goal_loss(pred, goals[val_idx].to(device), settings.cos_weight,
                                       model.goal_std * model.output_scale)
        return {"val_loss": float(loss), "val_mse": float(mse), "val_cosine": float(cos)}

    def step(epoch: int, rng: np.random.Generator, tick: Tick) -> dict[str, float]:
        model.train()

        def inputs(batch: np.ndarray) -> Callable[[np.ndarray], tuple]:
            texts = [instruction_for(examples, i, variants, rng) for i in batch]
            return lambda mine: (batch_tokens([texts[j] for j in mine]), goals[batch[mine]].to(device),
                                 task_index[batch[mine]].to(device))

        return _train_epoch(wrapped, optimizer, rng.permutation(train_idx), settings, ("loss", "mse", "cosine"),
                            inputs, tick)

    result = _run_stage(folder, model, optimizer, settings, step, evaluate, log, "predictor stage 2",
                        ("train_loss", "val_loss", "val_cosine"))
    # Calibrate the best checkpoint's output scale on the training clips, then re-save it.
    if dist_info()[0] == 0:
        best = load_goal_predictor(result.best_dir, with_backbone=False)
        best.set_backbone(model.backbone)  # the frozen stage-1 backbone, adapter included
        train_texts = [examples.instructions[i] for i in train_idx]
        with torch.no_grad():
            pred = best.align(torch.stack([tokens[t] for t in train_texts]))
        scale = best.calibrate_scale(pred, goals[train_idx])
        save_goal_predictor(best, result.best_dir)
        result.extra["output_scale"] = scale
    barrier()
    return result


def _with_aligner(model: GoalPredictor, aligner: str) -> GoalPredictor:
    from goalcraft.models.predictor import build_aligner

    model.config = model.config.replace(aligner=aligner)
    model.aligner = build_aligner(model.config)
    return model


def _dir_digest(path: Path) -> str:
    h = hashlib.sha256()
    for name in ("config.json", "model.safetensors"):
        h.update((Path(path) / name).read_bytes())
    return h.hexdigest()

