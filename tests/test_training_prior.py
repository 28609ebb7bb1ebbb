"""Training the prior on synthetic pairs with a known mapping: learning, best checkpoint, determinism,
resume. Tiny config, CPU, a few seconds."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from goalcraft.models.prior import PriorConfig, load_prior
from goalcraft.training.prior import PriorTrainingError, kl_divergence, load_best_prior, train_prior

CONFIG = PriorConfig(input_dim=16, hidden_dim=32, latent_dim=8)
HYPER = dict(batch_size=64, lr=1e-2, beta=1e-2, seed=0)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matrices gain nothing from intra-op threads, and on a busy machine spinning OpenMP
    workers make these tests many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data():
    """goal = W·text + small noise, N = 512."""
    rng = np.random.default_rng(42)
    n, d = 512, CONFIG.input_dim
    w = rng.normal(size=(d, d)) / np.sqrt(d)
    text = rng.normal(size=(n, d)).astype(np.float32)
    goal = (text @ w.T + 0.05 * rng.normal(size=(n, d))).astype(np.float32)
    return text, goal


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def last_state(out_dir):
    return torch.load(out_dir / "last" / "state.pt", weights_only=True)


@pytest.fixture(scope="module")
def run20(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run20")
    return out, train_prior(*data, CONFIG, out, epochs=20, **HYPER)


def test_kl_known_answer():
    mu = torch.tensor([[0.0, 0.0], [1.0, 2.0]])
    logvar = torch.tensor([[0.0, 0.0], [0.0, np.log(2.0)]], dtype=torch.float32)
    # KL(N(mu, s²) || N(0, 1)) = ½ Σ (s² + mu² − 1 − log s²)
    expected = torch.tensor([0.0, 0.5 * (1 + 1 - 1 - 0) + 0.5 * (2 + 4 - 1 - np.log(2.0))])
    torch.testing.assert_close(kl_divergence(mu, logvar), expected.float())


def test_training_learns_the_mapping(run20):
    out, result = run20
    first, final = result.history[0], result.history[-1]
    assert len(result.history) == 20 and result.epochs_completed == 20 and result.resumed_from_epoch == 0
    assert [h["epoch"] for h in result.history] == list(range(1, 21))
    assert (result.n_train, result.n_val) == (410, 102)
    # The untrained model's validation error vs the best epoch's (≈ 0.05 × with these settings):
    # the objective, the VAE reconstruction and the deterministic prior output (z = 0, what
    # STEVE-1 uses) all fall below 0.15 × their starting value.
    best, start = result.history[result.best_epoch - 1], result.initial_val
    assert best["val_loss"] < 0.15 * start["val_loss"]
    assert best["val_recon"] < 0.15 * start["val_recon"]
    assert best["val_prior_mse"] < 0.15 * start["val_prior_mse"]
    assert final["val_loss"] < 0.3 * first["val_loss"]
    assert final["train_loss"] < 0.3 * first["train_loss"]
    # The best epoch is the one with the lowest validation loss.
    losses = [h["val_loss"] for h in result.history]
    assert result.best_val_loss == min(losses)
    assert result.best_epoch == 1 + losses.index(min(losses))


def test_best_checkpoint_on_disk_is_the_in_memory_best(run20, data):
    out, result = run20
    assert result.best_dir == out / "best"
    assert (out / "best" / "model.safetensors").is_file() and (out / "best" / "config.json").is_file()
    reloaded = load_prior(result.best_dir)
    assert reloaded.config == CONFIG
    assert_same_weights(weights(reloaded), weights(result.best_model))
    text = torch.from_numpy(data[0][:50])
    with torch.no_grad():
        assert torch.equal(reloaded.sample(text, deterministic=True), result.best_model.sample(text, deterministic=True))
    assert_same_weights(weights(load_best_prior(out)), weights(result.best_model))
    assert_same_weights(last_state(out)["best_model"], weights(result.best_model))


def test_state_and_history_files(run20):
    out, result = run20
    state = last_state(out)  # weights_only=True: tensors and plain values only
    assert state["epoch"] == 20 and state["best_epoch"] == result.best_epoch
    assert set(state) >= {"optimizer", "shuffle_rng", "noise_rng", "history", "best_model", "hyper"}
    assert sorted(p.name for p in (out / "last").iterdir()) == ["config.json", "model.safetensors", "state.pt"]
    last = load_prior(out / "last")  # the last epoch's model is a model folder too
    assert last.config == CONFIG
    if result.best_epoch == 20:
        assert_same_weights(weights(last), weights(result.best_model))
    history = json.loads((out / "history.json").read_text())
    assert history["best_epoch"] == result.best_epoch
    assert [h["val_loss"] for h in history["history"]] == [h["val_loss"] for h in result.history]
    assert sorted(p.name for p in out.iterdir()) == ["best", "history.json", "last"]


def test_same_seed_same_weights(run20, data, tmp_path):
    _, first = run20
    before = torch.get_rng_state()
    second = train_prior(*data, CONFIG, tmp_path, epochs=20, **HYPER)
    assert torch.equal(before, torch.get_rng_state())  # the global RNG is left alone
    assert_same_weights(weights(first.best_model), weights(second.best_model))
    assert first.history == second.history
    seed0 = train_prior(*data, CONFIG, tmp_path / "seed0", epochs=2, **HYPER)
    seed1 = train_prior(*data, CONFIG, tmp_path / "seed1", epochs=2, **{**HYPER, "seed": 1})
    assert seed0.history == first.history[:2]
    assert seed1.history != seed0.history
    assert not torch.equal(weights(seed1.best_model)["decoder.6.weight"], weights(seed0.best_model)["decoder.6.weight"])


def test_resume_matches_one_run(run20, data, tmp_path):
    out20, full = run20
    logged = []
    part = train_prior(*data, CONFIG, tmp_path, epochs=7, log=logged.append, **HYPER)
    evals = lambda: [m["epoch"] for m in logged if m["event"] == "eval"]  # noqa: E731
    assert part.epochs_completed == 7 and evals() == list(range(1, 8))
    resumed = train_prior(*data, CONFIG, tmp_path, epochs=20, log=logged.append, **HYPER)
    assert resumed.resumed_from_epoch == 7
    assert evals() == list(range(1, 21))  # epochs 1..7 were not redone
    assert resumed.history == full.history
    assert resumed.best_epoch == full.best_epoch
    assert_same_weights(weights(load_prior(tmp_path / "last")), weights(load_prior(out20 / "last")))
    assert_same_weights(weights(resumed.best_model), weights(full.best_model))
    assert_same_weights(weights(load_prior(tmp_path / "best")), weights(full.best_model))


def test_resume_after_a_kill_between_writes(run20, data, tmp_path):
    """A run killed after writing ``best/`` for epoch 6 but before ``last/`` for it resumes from
    epoch 5 (``last/``), puts ``best/`` back in step, and ends where an uninterrupted run ends."""
    _, full = run20
    train_prior(*data, CONFIG, tmp_path, epochs=5, **HYPER)
    shutil.copytree(tmp_path / "last", tmp_path / "saved_last_at_5")
    train_prior(*data, CONFIG, tmp_path, epochs=6, **HYPER)
    # The kill: last/ of epoch 6 was staged but not swapped in, so last/ is still epoch 5's ...
    shutil.move(tmp_path / "last", tmp_path / ".staging" / "last-deadbeef")
    shutil.move(tmp_path / "saved_last_at_5", tmp_path / "last")
    (tmp_path / ".best.tmp-deadbeef").mkdir()  # ... and save_model_dir's temp folders stayed
    (tmp_path / ".history.json.tmp-deadbeef").write_text("{")
    at5 = train_prior(*data, CONFIG, tmp_path, epochs=5, **HYPER)  # nothing to train
    assert at5.epochs_completed == 5 and at5.history == full.history[:5]
    assert_same_weights(weights(load_prior(tmp_path / "best")), weights(at5.best_model))
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name or ".staging" in p.name]
    resumed = train_prior(*data, CONFIG, tmp_path, epochs=20, **HYPER)
    assert resumed.resumed_from_epoch == 5 and resumed.history == full.history
    assert_same_weights(weights(load_prior(tmp_path / "best")), weights(full.best_model))


def test_resume_after_a_kill_mid_swap(run20, data, tmp_path):
    """Killed between the two renames of the last/ swap: last/ is gone, the old one is in trash."""
    _, full = run20
    train_prior(*data, CONFIG, tmp_path, epochs=3, **HYPER)
    (tmp_path / "last").rename(tmp_path / ".trash-last-deadbeef0000")
    resumed = train_prior(*data, CONFIG, tmp_path, epochs=8, **HYPER)
    assert resumed.resumed_from_epoch == 3 and resumed.history == full.history[:8]
    assert not list(tmp_path.glob(".trash-*"))


def test_nothing_left_to_do(run20, data):
    out, full = run20
    logged = []
    again = train_prior(*data, CONFIG, out, epochs=20, log=logged.append, **HYPER)
    assert logged == [] and again.epochs_completed == 20 and again.history == full.history
    assert_same_weights(weights(again.best_model), weights(full.best_model))
    # Fewer epochs than the folder holds are not a run of 20 cut short: refused, not handed back.
    with pytest.raises(PriorTrainingError, match="holds a run of 20 epochs, more than the 12 asked for"):
        train_prior(*data, CONFIG, out, epochs=12, **HYPER)


def test_resume_refuses_other_data_or_settings(data, tmp_path):
    train_prior(*data, CONFIG, tmp_path, epochs=1, **HYPER)
    text, goal = data
    with pytest.raises(PriorTrainingError, match="lr"):
        train_prior(text, goal, CONFIG, tmp_path, epochs=2, **{**HYPER, "lr": 1e-3})
    with pytest.raises(PriorTrainingError, match="data_sha256"):
        train_prior(text, goal * 2, CONFIG, tmp_path, epochs=2, **HYPER)
    with pytest.raises(PriorTrainingError, match="config"):
        train_prior(text, goal, PriorConfig(16, 16, 8), tmp_path, epochs=2, **HYPER)
    fresh = train_prior(text, goal, CONFIG, tmp_path, epochs=2, resume=False, **{**HYPER, "lr": 1e-3})
    assert fresh.resumed_from_epoch == 0 and last_state(tmp_path)["hyper"]["lr"] == 1e-3


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(text_embeddings=np.zeros((10, 15), np.float32)), r"\[N, 16\]"),
        (dict(goal_embeddings=np.zeros((9, 16), np.float32)), "10 text embeddings but 9"),
        (dict(goal_embeddings=np.full((10, 16), np.nan, np.float32)), "NaN"),
        (dict(epochs=0), "epochs"),
        (dict(val_fraction=0.0), "val_fraction"),
        (dict(batch_size=0), "batch_size"),
        (dict(seed=-1), "seed"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, match):
    args = dict(text_embeddings=np.zeros((10, 16), np.float32), goal_embeddings=np.zeros((10, 16), np.float32),
                config=CONFIG, out_dir=tmp_path, epochs=1, **HYPER)
    args.update(kwargs)
    with pytest.raises(PriorTrainingError, match=match):
        train_prior(**args)
    assert not (tmp_path / "last").exists()


def test_progress_lines_are_printed_by_default(run20, data, tmp_path, capsys):
    """Without ``log`` every epoch prints one line with its train and validation figures, matching the
    history (the same figures a ``log`` callback receives)."""
    _, full = run20
    train_prior(*data, CONFIG, tmp_path, epochs=3, **HYPER)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    for epoch, (line, h) in enumerate(zip(lines, full.history), start=1):
        assert line.startswith(f"prior: epoch {epoch}/3 train_loss {h['train_loss']:.4g} val_loss {h['val_loss']:.4g} "
                               f"val_prior_mse {h['val_prior_mse']:.4g}"), line
        assert line.endswith("s")
    assert "(best)" in lines[0]
