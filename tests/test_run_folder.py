"""The run folder and the shared training loop: atomic checkpoints and their recovery, resume and its
refusals, best tracking, checkpoint cadence, bitwise resume of a real (tiny) regression, progress lines."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
import torch

from goalcraft.models.checkpoints import load_state_dict_file
from goalcraft.training.run_folder import (
    Progress,
    RunFolder,
    format_record,
    record_logger,
    restore_rng_state,
    rng_state,
    train_loop,
)


class Refused(ValueError):
    pass


def write_text(text: str):
    def write(d: Path) -> None:
        (d / "content.txt").write_text(text)

    return write


# --- the folder ------------------------------------------------------------------------------------


def test_checkpoints_are_swapped_in_whole_and_leftovers_undone(tmp_path):
    folder = RunFolder(tmp_path, {"a": 1})
    folder.save_best(write_text("best 1"))
    folder.save_last(write_text("last 1"), {"epoch": 1})
    folder.save_history({"history": [{"epoch": 1}]})
    folder.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best", "history.json", "last"]
    assert (tmp_path / "best" / "content.txt").read_text() == "best 1"
    assert sorted(p.name for p in (tmp_path / "last").iterdir()) == ["content.txt", "state.pt"]
    state = torch.load(tmp_path / "last" / "state.pt", weights_only=True)
    assert state == {"format": 2, "fingerprint": {"a": 1}, "epoch": 1}
    assert json.loads((tmp_path / "history.json").read_text()) == {"history": [{"epoch": 1}], "settings": {"a": 1}}

    # What a killed writer leaves: a staged folder, a swap cut between its renames (last/ moved to the
    # trash, the new one never moved in), temporary files of save_model_dir and of an atomic JSON write.
    (tmp_path / ".staging" / "best-deadbeef").mkdir(parents=True)
    (tmp_path / "last").rename(tmp_path / ".trash-last-deadbeef0000")
    (tmp_path / ".best.tmp-deadbeef").mkdir()
    (tmp_path / ".history.json.tmp-deadbeef").write_text("{")
    reopened = RunFolder(tmp_path, {"a": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best", "history.json", "last"]
    assert reopened.state == state  # the old last/ is back, and resumable

    # A write that fails leaves the previous complete folder.
    def broken(d: Path) -> None:
        (d / "content.txt").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        reopened.save_best(broken)
    assert (tmp_path / "best" / "content.txt").read_text() == "best 1"
    reopened.close()
    assert not (tmp_path / ".staging").exists()


def test_resume_refuses_another_fingerprint_and_auto_starts_afresh(tmp_path):
    fingerprint = {"config": {"hidden": 4, "layers": 2}, "lr": 0.1, "data": "abc"}
    folder = RunFolder(tmp_path, fingerprint)
    assert folder.state is None
    folder.save_best(write_text("best"))
    folder.save_last(write_text("last"), {"epoch": 3})
    folder.save_history({"history": []})
    folder.scalars({"val/loss": 1.0}, 3)
    folder.close()

    assert RunFolder(tmp_path, fingerprint).state["epoch"] == 3
    other = {**fingerprint, "config": {"hidden": 8, "layers": 2}, "lr": 0.2}
    with pytest.raises(Refused, match=r"other data or settings \(config.hidden: 4 -> 8; lr: 0.1 -> 0.2\)"):
        RunFolder(tmp_path, other, error=Refused)
    assert (tmp_path / "last").is_dir()  # a refusal deletes nothing

    # "auto": a matching run continues, another one starts afresh (every file of the old run gone).
    assert RunFolder(tmp_path, fingerprint, resume="auto").state["epoch"] == 3
    fresh = RunFolder(tmp_path, other, resume="auto")
    assert fresh.state is None and list(tmp_path.iterdir()) == []

    # A state file in an older format is refused, not misread.
    RunFolder(tmp_path, fingerprint).save_last(write_text("x"), {"epoch": 1})
    torch.save({"step": 1}, tmp_path / "last" / "state.pt")
    with pytest.raises(ValueError, match="older or unknown format"):
        RunFolder(tmp_path, fingerprint)
    assert RunFolder(tmp_path, fingerprint, resume=False).state is None and list(tmp_path.iterdir()) == []

    # A damaged or foreign state file (a pickle of anything) is refused in one line; "auto" starts afresh.
    RunFolder(tmp_path, fingerprint).save_last(write_text("x"), {"epoch": 1})
    (tmp_path / "last" / "state.pt").write_bytes(b"garbage")
    with pytest.raises(Refused, match="damaged or not a training state"):
        RunFolder(tmp_path, fingerprint, error=Refused)
    assert RunFolder(tmp_path, fingerprint, resume="auto", error=Refused).state is None
    assert not (tmp_path / "last").exists()


def test_a_stored_run_past_the_end_asked_for_is_not_continued(tmp_path):
    """A run asked for fewer units than its folder holds cannot be cut out of the longer run (its last/
    is past the end, its best/ may be): True refuses it in one line, "auto" starts afresh and says why."""
    fingerprint = {"lr": 0.1}
    folder = RunFolder(tmp_path, fingerprint, end=3)
    folder.save_best(write_text("best"))
    folder.save_last(write_text("last"), {"step": 3, "epoch": 1})
    folder.close()

    assert RunFolder(tmp_path, fingerprint, end=3, unit="step").state["step"] == 3  # as far as asked: kept
    assert RunFolder(tmp_path, fingerprint, end=5, unit="step").state["step"] == 3  # longer: continues
    assert RunFolder(tmp_path, fingerprint, end=1).state["epoch"] == 1  # counted in its own unit
    with pytest.raises(Refused, match=r"holds a run of 3 steps, more than the 2 asked for; pass resume=False"):
        RunFolder(tmp_path, fingerprint, end=2, unit="step", error=Refused)
    assert (tmp_path / "last").is_dir()  # a refusal deletes nothing
    fresh = RunFolder(tmp_path, fingerprint, resume="auto", end=2, unit="step", error=Refused)
    assert fresh.state is None and not (tmp_path / "last").exists() and not (tmp_path / "best").exists()
    assert fresh.afresh_because == f"{tmp_path / 'last' / 'state.pt'} holds a run of 3 steps, more than the 2 asked for"

    records = []
    train_loop(fresh, Progress("step"), end=2, train=lambda p, q, tick: {"train_loss": 1.0},
               evaluate=lambda q: {"val_loss": 1.0 / q}, write_model=write_text("m"), trainer_state=dict,
               name="short", log=records.append)
    assert records[0] == {"event": "restart", "line": f"short: starting afresh: {fresh.afresh_because}"}
    assert [r["step"] for r in records[1:]] == [1, 2]  # and it trained the two steps asked for
    shown = []
    record_logger(shown.append, lambda _m: None)(records[0])
    assert shown == [records[0]["line"]]  # a pipeline step's log shows it too


def test_rng_state_round_trip():
    torch.manual_seed(5)
    saved = rng_state("cpu")
    expected = torch.rand(3)
    torch.rand(10)
    restore_rng_state(saved, "cpu")
    assert torch.equal(torch.rand(3), expected)


# --- the loop on a real regression -------------------------------------------------------------------

# y = 3x - 1 on 32 points; SGD with a per-step shuffled batch from the global torch RNG (saved and
# restored through the state file, as the goal-space trainer does).
X = torch.linspace(-1, 1, 32).unsqueeze(1)
Y = 3 * X - 1


def regression(out_dir: Path, end: int, *, every: int = 1, checkpoint_every: int = 1, log=None, crash_at=None,
               val_losses=None):
    folder = RunFolder(out_dir, {"lr": 0.1}, tensorboard=False)
    torch.manual_seed(0)
    model = torch.nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    if folder.state is not None:
        model.load_state_dict(load_state_dict_file(folder.last_dir / "weights.safetensors"))
        optimizer.load_state_dict(folder.state["optimizer"])
        restore_rng_state(folder.state["rng"], "cpu")
    progress = Progress.from_state(folder.state, "step")
    calls = []

    def train(start, stop, tick):
        calls.append((start, stop))
        total = 0.0
        for step in range(start, stop):
            idx = torch.randperm(32)[:8]
            loss = torch.nn.functional.mse_loss(model(X[idx]), Y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
            tick(step + 1 - start, stop - start, total / (step + 1 - start))
        return {"train_loss": total / (stop - start)}

    def evaluate(step):
        if crash_at == step:
            raise KeyboardInterrupt
        if val_losses is not None:
            return {"val_loss": val_losses[step]}
        with torch.no_grad():
            return {"val_loss": float(torch.nn.functional.mse_loss(model(X), Y))}

    def write_model(d: Path) -> None:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(d / "weights.safetensors"))

    try:
        train_loop(folder, progress, end=end, every=every, checkpoint_every=checkpoint_every, train=train,
                   evaluate=evaluate, write_model=write_model, name="regression",
                   trainer_state=lambda: {"optimizer": optimizer.state_dict(), "rng": rng_state("cpu")}, log=log)
    finally:
        folder.close()
    return progress, calls


def test_rounds_best_and_checkpoint_cadence(tmp_path):
    # Rounds of 3 steps up to 8: positions 3, 6, 8. Validation losses chosen so that 6 is the best.
    records = []
    progress, calls = regression(tmp_path, 8, every=3, checkpoint_every=6, log=records.append,
                                 val_losses={3: 2.0, 6: 1.0, 8: 1.5})
    assert calls == [(0, 3), (3, 6), (6, 8)]
    assert [h["step"] for h in progress.history] == [3, 6, 8]
    assert (progress.best_position, progress.best_val_loss) == (6, 1.0)
    evals = [r for r in records if r["event"] == "eval"]
    assert [(r["step"], r["improved"], r["best_step"]) for r in evals] == [(3, True, 3), (6, True, 6), (8, False, 6)]
    assert all(r["of"] == 8 and r["unit"] == "step" and r["seconds"] >= 0 for r in evals)
    # last/ at 6 (a multiple of checkpoint_every) and at the end; the history file has every round.
    state = torch.load(tmp_path / "last" / "state.pt", weights_only=True)
    assert state["step"] == 8 and state["best_step"] == 6 and len(state["history"]) == 3
    saved = json.loads((tmp_path / "history.json").read_text())
    assert saved["best_step"] == 6 and [h["val_loss"] for h in saved["history"]] == [2.0, 1.0, 1.5]


def test_resume_is_bitwise_the_uninterrupted_run(tmp_path):
    whole, _ = regression(tmp_path / "whole", 9, every=3)
    reference = load_state_dict_file(tmp_path / "whole" / "last" / "weights.safetensors")
    assert whole.history[-1]["val_loss"] < 0.5 * whole.history[0]["val_loss"]  # it learns

    with pytest.raises(KeyboardInterrupt):  # killed while evaluating step 6: last/ is step 3's
        regression(tmp_path / "split", 9, every=3, crash_at=6)
    resumed, calls = regression(tmp_path / "split", 9, every=3)
    assert calls == [(3, 6), (6, 9)]
    weights = load_state_dict_file(tmp_path / "split" / "last" / "weights.safetensors")
    assert all(torch.equal(weights[k], reference[k]) for k in reference)
    assert resumed.history == whole.history

    again, calls = regression(tmp_path / "split", 9, every=3)  # nothing left to do
    assert calls == [] and again.history == whole.history


def test_a_diverging_round_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="training diverged at step 2"):
        regression(tmp_path, 4, every=2, val_losses={2: math.nan})


# --- progress lines ------------------------------------------------------------------------------------


def test_record_lines():
    record = {"event": "eval", "unit": "step", "step": 50, "of": 200, "train_loss": 2.3134, "val_loss": 2.4,
              "top1": 0.2143, "chance_top1": 0.0625, "improved": False, "seconds": 12.34}
    line = format_record("goal space", record, ("train_loss", "val_loss", "top1", "top5"))
    assert line == "goal space: step 50/200 train_loss 2.313 val_loss 2.4 top1 0.2143 (chance 0.062) 12.3s"
    best = format_record("prior", {"event": "eval", "unit": "epoch", "epoch": 3, "of": 20, "val_loss": 0.5,
                                   "improved": True, "seconds": 1.0}, ("val_loss",))
    assert best == "prior: epoch 3/20 val_loss 0.5 (best) 1.0s"
    tick = {"event": "progress", "unit": "epoch", "epoch": 3, "of": 20, "batch": 7, "batches": 40,
            "train_loss": 0.75, "seconds": 31.0}
    assert format_record("prior", tick, ("val_loss",)) == "prior: epoch 3/20 batch 7/40 train_loss 0.75 31.0s"


def test_progress_records_during_a_long_round_and_printed_lines(tmp_path, capsys):
    folder = RunFolder(tmp_path, {}, tensorboard=False)
    records = []

    def slow_train(start, stop, tick):
        for batch in range(1, 6):
            time.sleep(0.06)
            tick(batch, 5, 1.0 / batch)
        return {"train_loss": 0.2}

    train_loop(folder, Progress(), end=1, train=slow_train, evaluate=lambda e: {"val_loss": 0.5},
               write_model=write_text("m"), trainer_state=dict, name="slow", log=records.append,
               progress_every_s=0.1)
    ticks = [r for r in records if r["event"] == "progress"]
    # 5 batches of 60 ms with a line at most every 100 ms: batches 2 and 4 report (±1 on a busy machine).
    assert 1 <= len(ticks) <= 3, ticks
    assert all(r["epoch"] == 1 and r["batches"] == 5 and r["train_loss"] == 1.0 / r["batch"] for r in ticks)
    assert records[-1]["event"] == "eval" and records[-1]["val_loss"] == 0.5

    # No log: one printed line per record.
    train_loop(RunFolder(tmp_path / "printed", {}, tensorboard=False), Progress(), end=2,
               train=lambda s, e, tick: {"train_loss": 0.25}, evaluate=lambda e: {"val_loss": 1.0 / e},
               write_model=write_text("m"), trainer_state=dict, name="printed")
    lines = capsys.readouterr().out.splitlines()
    assert [line.rsplit(" ", 1)[0] for line in lines] == [
        "printed: epoch 1/2 train_loss 0.25 val_loss 1 (best)",
        "printed: epoch 2/2 train_loss 0.25 val_loss 0.5 (best)",
    ]


def test_a_pipeline_steps_log_shows_a_few_evaluation_lines_and_keeps_every_record():
    info, debug = [], []
    log = record_logger(info.append, debug.append, lines=6)
    for replicate in range(2):  # two runs of 30 epochs through one log, as the prior's replicates
        for epoch in range(1, 31):
            log({"event": "progress", "unit": "epoch", "epoch": epoch, "of": 30, "line": f"tick {epoch}"})
            log({"event": "eval", "unit": "epoch", "epoch": epoch, "of": 30, "val_loss": 1 / epoch,
                 "line": f"r{replicate} epoch {epoch}"})
    shown = [1, 5, 10, 15, 20, 25, 30]  # the first, then each sixth of the run; the last always
    assert info == [f"r{r} epoch {e}" for r in range(2) for e in shown]
    records = [json.loads(m) for m in debug]
    assert len(records) == 120 and all("line" not in r for r in records)
    assert [r["epoch"] for r in records if r["event"] == "eval"] == list(range(1, 31)) * 2

    # evaluations every 40 steps from step 0 to 300 (the goal space): none of the last run is lost
    info.clear()
    log = record_logger(info.append, debug.append, lines=6)
    for step in [*range(0, 300, 40), 300]:
        log({"event": "eval", "unit": "step", "step": step, "of": 300, "line": str(step)})
    assert info == ["0", "80", "120", "160", "200", "280", "300"]


def test_every_record_of_the_loop_carries_its_line(tmp_path):
    records = []
    train_loop(RunFolder(tmp_path, {}, tensorboard=False), Progress(), end=2,
               train=lambda s, e, tick: {"train_loss": 0.25}, evaluate=lambda e: {"val_loss": 1.0 / e},
               write_model=write_text("m"), trainer_state=dict, name="lined", fields=("val_loss",), log=records.append)
    assert [r["line"] for r in records] == [format_record("lined", {k: v for k, v in r.items() if k != "line"},
                                                          ("val_loss",)) for r in records]
    assert records[1]["line"].startswith("lined: epoch 2/2 val_loss 0.5 (best)")
