"""One way to train and checkpoint: the run folder every trainer writes, and the loop they share.

Layout under ``out_dir``::

    best/            the checkpoint with the lowest validation loss so far (a model folder)
    last/            the checkpoint of the last saved round (a model folder) plus the state file:
                     format, fingerprint, position, history, best so far and whatever else the
                     trainer needs (optimizer, RNG states), plain data only (torch.load weights_only)
    history.json     one record per round, the best position and loss, the fingerprint
    tensorboard/     scalars (optional)

``best/`` and ``last/`` are written in ``out_dir/.staging/`` and swapped in whole
(:func:`goalcraft.storage.commit_directory`); opening the folder undoes what a killed run left. A run
resumes from ``last/`` only if its fingerprint (config, settings, data digest) is the one stored
there; otherwise it is refused, or with ``resume="auto"`` the folder is wiped and the run starts
afresh (what an asset re-materialized after its inputs changed wants).

:func:`train_loop` runs rounds (an epoch, or ``every`` optimizer steps) until ``end``: train, evaluate,
keep the best, checkpoint, write the history, log. Each round ends with a record to ``log``
(``event: "eval"``); while a round runs, a ``event: "progress"`` record at most every
``progress_every_s`` seconds. Every record carries its one-line summary (``line``,
:func:`format_record`); without ``log`` those lines are printed.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Mapping, Sequence

import torch

from goalcraft.storage import commit_directory, new_staging_dir, recover_directory, write_json_atomic

__all__ = [
    "PROGRESS_EVERY_S",
    "Progress",
    "RunFolder",
    "Tick",
    "barrier",
    "deterministic_algorithms",
    "dist_info",
    "format_record",
    "printer",
    "record_logger",
    "restore_rng_state",
    "rng_state",
    "to_cpu",
    "train_loop",
    "weights_writer",
]

STATE_FORMAT = 2
BEST_DIR, LAST_DIR, HISTORY_FILE, TENSORBOARD_DIR, STAGING_DIR = "best", "last", "history.json", "tensorboard", ".staging"
PROGRESS_EVERY_S = 10.0

Resume = bool | Literal["auto"]
Writer = Callable[[Path], None]  # writes a checkpoint's files into the folder it is given


# -- distributed: every rank trains, rank 0 writes -------------------------------------------------


def dist_info() -> tuple[int, int]:
    """(rank, world size): (0, 1) unless torch.distributed is initialized."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def barrier() -> None:
    if dist_info()[1] > 1:
        torch.distributed.barrier()


# -- RNG -------------------------------------------------------------------------------------------


def rng_state(device: str | torch.device) -> dict[str, Any]:
    """The global torch RNG state (and CUDA's when training there), as tensors for the state file."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any], device: str | torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.device(device).type == "cuda" and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


def to_cpu(obj: Any) -> Any:
    """``obj`` with every tensor in it (nested in dicts, lists, tuples) copied to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


# -- the folder ------------------------------------------------------------------------------------


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """``key: old -> new`` for every leaf that differs (nested dicts are walked, keys dotted)."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            out += _differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]


class RunFolder:
    """The files of one training run (see the module docstring). Rank 0 alone writes.

    ``fingerprint``: what a resumed run must share with the stored one (config, settings that change
    the updates, data digest). ``end``: the ``unit`` position the run is asked to reach; a stored run
    already past it does not match either (its ``best/`` and ``last/`` may come from after ``end``).
    ``resume``: True continues ``last/`` and refuses a different fingerprint or a run past ``end``
    with ``error``; False starts afresh; ``"auto"`` continues a matching ``last/`` and otherwise
    starts afresh (the reason in :attr:`afresh_because`, which :func:`train_loop` reports). After
    construction, :attr:`state` is the stored state to continue from (None for a fresh run).
    """

    def __init__(self, out_dir: Path, fingerprint: Mapping[str, Any], *, resume: Resume = True,
                 state_file: str = "state.pt", tensorboard: bool = True,
                 error: type[Exception] = ValueError, end: int | None = None, unit: str = "epoch") -> None:
        self.out_dir = Path(out_dir)
        self.best_dir, self.last_dir = self.out_dir / BEST_DIR, self.out_dir / LAST_DIR
        self.history_path, self.tensorboard_dir = self.out_dir / HISTORY_FILE, self.out_dir / TENSORBOARD_DIR
        self.fingerprint = dict(fingerprint)
        self.state_file = state_file
        self.error = error
        self.end, self.unit = end, unit
        self.afresh_because: str | None = None  # why resume="auto" did not continue a stored run
        self.writes = dist_info()[0] == 0
        self._tensorboard = tensorboard
        self._tb: Any = None
        self.purge_step = 0  # set by train_loop: where a resumed run's TensorBoard curves continue
        if self.writes:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._remove_leftovers()
        barrier()
        state = None
        if resume == "auto":
            try:
                state = self._load_state()
            except error as exc:
                self.afresh_because = str(exc).split("; pass resume=False")[0]
                resume = False
        elif resume:
            state = self._load_state()
        barrier()  # every rank has read last/ before rank 0 may delete it
        if not resume:
            state = None
            if self.writes:
                # Afresh means afresh: a run killed before its first checkpoint must not leave the old
                # run's files behind for a later resume to pick up.
                for name in (BEST_DIR, LAST_DIR, TENSORBOARD_DIR):
                    shutil.rmtree(self.out_dir / name, ignore_errors=True)
                self.history_path.unlink(missing_ok=True)
            barrier()
        self.state: dict[str, Any] | None = state

    def _remove_leftovers(self) -> None:
        """Undo what a killed writer can leave: staged folders, half-done swaps (rolled back to the old
        complete folder) and temporary files of atomic writes. One writer per folder is assumed."""
        staging = self.out_dir / STAGING_DIR
        for final in (self.best_dir, self.last_dir):
            recover_directory(final, staging)
        shutil.rmtree(staging, ignore_errors=True)
        for name in (BEST_DIR, LAST_DIR, HISTORY_FILE):
            for leftover in self.out_dir.glob(f".{name}.tmp-*"):
                if leftover.is_dir():
                    shutil.rmtree(leftover, ignore_errors=True)
                else:
                    leftover.unlink(missing_ok=True)

    def _load_state(self) -> dict[str, Any] | None:
        path = self.last_dir / self.state_file
        if not path.is_file():
            return None
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - an untrusted file: any failure to read it is one refusal
            raise self.error(f"{path} is damaged or not a training state ({type(exc).__name__}); "
                             "pass resume=False or use another out_dir") from None
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise self.error(f"{path} is in an older or unknown format; pass resume=False or use another out_dir")
        changed = _differences(state["fingerprint"], self.fingerprint)
        if changed:
            raise self.error(f"{path} was written by a run with other data or settings ({'; '.join(changed)}); "
                             "pass resume=False or use another out_dir")
        stored = int(state.get(self.unit, 0))
        if self.end is not None and stored > self.end:
            # A shorter run cannot be cut out of a longer one: last/ is past it, and best/ may be too.
            raise self.error(f"{path} holds a run of {stored} {self.unit}s, more than the {self.end} asked for; "
                             "pass resume=False or use another out_dir")
        return state

    def _write_dir(self, final: Path, write: Writer) -> None:
        staged = new_staging_dir(final, self.out_dir / STAGING_DIR)
        try:
            write(staged)
            commit_directory(staged, final)
        finally:
            shutil.rmtree(staged, ignore_errors=True)

    def save_best(self, write: Writer) -> None:
        """Replace ``best/`` by what ``write(folder)`` puts in a staged folder."""
        if self.writes:
            self._write_dir(self.best_dir, write)

    def save_last(self, write: Writer, state: Mapping[str, Any]) -> None:
        """Replace ``last/`` by ``write``'s files plus the state file (``state`` with format and fingerprint)."""
        if not self.writes:
            return

        def write_all(staged: Path) -> None:
            write(staged)
            with open(staged / self.state_file, "wb") as fh:
                torch.save(to_cpu({"format": STATE_FORMAT, "fingerprint": self.fingerprint, **state}), fh)
                fh.flush()
                os.fsync(fh.fileno())

        self._write_dir(self.last_dir, write_all)

    def save_history(self, content: Mapping[str, Any]) -> None:
        if self.writes:
            write_json_atomic({**content, "settings": self.fingerprint}, self.history_path)

    def scalars(self, values: Mapping[str, float], step: int, *, flush: bool = False) -> None:
        """TensorBoard scalars at ``step`` (nothing when the folder has TensorBoard off)."""
        if not (self.writes and self._tensorboard):
            return
        if self._tb is None:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step: TensorBoard drops what an interrupted run logged past the resumed position.
            self._tb = SummaryWriter(str(self.tensorboard_dir), purge_step=self.purge_step)
        for tag, value in values.items():
            self._tb.add_scalar(tag, value, step)
        if flush:
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self.writes:
            shutil.rmtree(self.out_dir / STAGING_DIR, ignore_errors=True)  # empty by now


# -- progress lines --------------------------------------------------------------------------------


def format_record(name: str, record: Mapping[str, Any], fields: Sequence[str] = ()) -> str:
    """One line: ``goal space: step 50/200 train_loss 2.31 val_loss 2.4 top1 0.21 (chance 0.06) 12.3s``."""
    unit = record["unit"]
    parts = [f"{name}: {unit} {record[unit]}/{record['of']}"]
    if record["event"] == "progress":
        parts.append(f"batch {record['batch']}/{record['batches']}")
        fields = ("train_loss",)
    for key in fields:
        if key in record:
            parts.append(f"{key} {record[key]:.4g}")
            if f"chance_{key}" in record:
                parts.append(f"(chance {record[f'chance_{key}']:.2g})")
    if record.get("improved"):
        parts.append("(best)")
    parts.append(f"{record['seconds']:.1f}s")
    return " ".join(parts)


def printer(name: str, fields: Sequence[str]) -> Callable[[dict[str, Any]], None]:
    """A ``log`` that prints each record as one line to stdout (rank 0 only)."""

    def log(record: dict[str, Any]) -> None:
        if dist_info()[0] == 0:
            print(record.get("line") or format_record(name, record, fields), flush=True)

    return log


def record_logger(info: Callable[[str], None], debug: Callable[[str], None], *,
                  lines: int = 6) -> Callable[[dict[str, Any]], None]:
    """A ``log`` for a trainer run by a pipeline step: every record to ``debug`` as JSON (the run's
    log keeps them all) and evaluations' one-line summaries to ``info`` (what a terminal shows), about
    ``lines`` of them per training run, the last one always. A prior trains replicates of 30–60
    epochs each: one line an epoch would bury the rest of the run's lines."""
    shown = {"bucket": -1, "position": -1}

    def log(record: dict[str, Any]) -> None:
        debug(json.dumps({k: v for k, v in record.items() if k != "line"}))
        if record.get("event") == "restart":
            info(record["line"])
        if record.get("event") != "eval":
            return
        position, end = record[record["unit"]], record["of"]
        if position < shown["position"]:  # the next run (replicate) through the same log
            shown["bucket"] = -1
        shown["position"] = position
        bucket = position * lines // max(end, 1)
        if bucket > shown["bucket"] or position >= end:
            shown["bucket"] = bucket
            info(record["line"])

    return log


# -- the loop --------------------------------------------------------------------------------------


@dataclass
class Progress:
    """Where a run stands; what the loop advances and ``last/`` stores (keys named after the unit)."""

    unit: str = "epoch"
    position: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best_position: int = 0
    best_val_loss: float = math.inf

    def state(self) -> dict[str, Any]:
        return {self.unit: self.position, "history": self.history, f"best_{self.unit}": self.best_position,
                "best_val_loss": self.best_val_loss}

    @classmethod
    def from_state(cls, state: Mapping[str, Any] | None, unit: str = "epoch") -> Progress:
        if state is None:
            return cls(unit)
        return cls(unit, int(state[unit]), [dict(h) for h in state["history"]], int(state[f"best_{unit}"]),
                   float(state["best_val_loss"]))


Tick = Callable[[int, int, float], None]  # (batches done, batches in the round, running train loss)


def train_loop(
    folder: RunFolder,
    progress: Progress,
    *,
    end: int,
    train: Callable[[int, int, Tick], Mapping[str, float]],
    evaluate: Callable[[int], Mapping[str, float]],
    write_model: Writer,
    trainer_state: Callable[[], Mapping[str, Any]],
    name: str,
    fields: Sequence[str] = ("train_loss", "val_loss"),
    every: int = 1,
    checkpoint_every: int = 1,
    evaluate_first: bool = False,
    on_best: Callable[[dict[str, Any]], Writer] | None = None,
    history_extra: Callable[[], Mapping[str, Any]] = dict,
    scalars: Callable[[Mapping[str, Any]], Mapping[str, float]] | None = None,
    log: Callable[[dict[str, Any]], None] | None = None,
    progress_every_s: float = PROGRESS_EVERY_S,
) -> Progress:
    """Advance ``progress`` to ``end`` in rounds of ``every`` units, checkpointing into ``folder``.

    A round from position ``p`` to ``q`` calls ``train(p, q, tick)`` (which trains those units, calls
    ``tick`` as batches finish and returns ``train_*`` metrics), then ``evaluate(q)`` (``val_loss``
    and any other figures). The record ``{unit: q, **train, **val}`` joins the history; a lower
    ``val_loss`` than any before writes ``best/`` (with ``on_best(record)``'s writer, else
    ``write_model``); ``last/`` is written when ``q`` is a multiple of ``checkpoint_every`` or ``end``,
    with ``trainer_state()`` beside the progress; ``history.json`` every round. A non-finite figure
    raises ``folder.error``. ``evaluate_first``: a fresh run first evaluates the untrained model as
    position 0 (train_loss NaN). ``scalars(record)``: the TensorBoard tags of a record (default: every
    figure, ``val_loss`` as ``val/loss``).
    """
    unit = progress.unit
    started = time.perf_counter()
    log = log or printer(name, fields)
    folder.purge_step = progress.position
    last_line = [time.monotonic()]

    def emit(record: dict[str, Any]) -> None:
        last_line[0] = time.monotonic()
        record = {"seconds": round(time.perf_counter() - started, 3), **record}
        log({**record, "line": format_record(name, record, fields)})  # the line a terminal shows

    def save_history() -> None:
        folder.save_history({"history": progress.history, f"best_{unit}": progress.best_position,
                             "best_val_loss": progress.best_val_loss, **history_extra()})

    def finish_round(record: dict[str, Any]) -> None:
        progress.history.append(record)
        folder.scalars(scalars(record) if scalars else
                       {k.replace("_", "/", 1): v for k, v in record.items() if k != unit}, record[unit], flush=True)
        improved = record["val_loss"] < progress.best_val_loss
        if improved:
            progress.best_position, progress.best_val_loss = record[unit], record["val_loss"]
            folder.save_best(on_best(record) if on_best else write_model)
        if progress.position % checkpoint_every == 0 or progress.position == end:
            folder.save_last(write_model, {**progress.state(), **trainer_state()})
        save_history()
        barrier()
        emit({"event": "eval", "unit": unit, "of": end, **record, f"best_{unit}": progress.best_position,
              "best_val_loss": progress.best_val_loss, "improved": improved})

    if folder.afresh_because:
        log({"event": "restart", "line": f"{name}: starting afresh: {folder.afresh_because}"})
    if evaluate_first and folder.state is None:
        finish_round({unit: progress.position, "train_loss": math.nan, **evaluate(progress.position)})
    if progress.position >= end:
        save_history()  # nothing to train; the history file still describes the stored run
    while progress.position < end:
        target = min(end, (progress.position // every + 1) * every)

        def tick(done: int, total: int, train_loss: float, target: int = target) -> None:
            if time.monotonic() - last_line[0] >= progress_every_s:
                emit({"event": "progress", "unit": unit, unit: target, "of": end, "batch": done, "batches": total,
                      "train_loss": train_loss})

        metrics = {unit: target, **train(progress.position, target, tick)}
        metrics.update(evaluate(target))
        if not all(math.isfinite(v) for v in metrics.values()):
            raise folder.error(f"training diverged at {unit} {target}: {metrics}")
        progress.position = target
        finish_round(metrics)
    return progress


# -- helpers the trainers share ---------------------------------------------------------------------


@contextmanager
def deterministic_algorithms() -> Iterator[None]:
    """Deterministic kernels for the duration of training; the caller's setting is restored.

    ``warn_only`` so that a CUDA run without ``CUBLAS_WORKSPACE_CONFIG`` warns instead of failing;
    every op the CPU trainers use is deterministic.
    """
    was_on = torch.are_deterministic_algorithms_enabled()
    was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was_on, warn_only=was_warn_only)


def weights_writer(weights: Mapping[str, torch.Tensor], build: Callable[[Any], torch.nn.Module], config: Any,
                   save: Callable[[Any, Path], Any]) -> Writer:
    """A writer of a model folder holding ``weights`` (e.g. the best round's, kept in memory and in
    the state file): ``build(config)`` loaded with them and written with ``save(model, folder)``."""

    def write(d: Path) -> None:
        model = build(config)
        model.load_state_dict(dict(weights))
        save(model, d)

    return write
