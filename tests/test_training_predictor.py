"""Two-stage goal-predictor training on a synthetic goal table with a known structure (real MiniLM
backbone, tiny Q-Former/head/aligner), and the comparison with a baseline."""

import contextlib
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from goalcraft.models.predictor import PREDICTOR_CONFIGS, load_goal_predictor
from goalcraft.training.predictor import (
    PredictorExamples,
    PredictorTrainingError,
    Stage1Settings,
    Stage2Settings,
    goal_loss,
    train_stage1,
    train_stage2,
)

from goalcraft.data.splits import split_indices, with_split_column
from goalcraft.evaluation.comparison import compare_with_baseline, goal_metrics, paraphrase_rows

CONFIG = PREDICTOR_CONFIGS["tiny"].replace(text_dim=384)  # MiniLM's width
S1 = Stage1Settings(epochs=3, batch_size=8, lr=1e-3, lora_r=4, lora_alpha=8)
S2 = Stage2Settings(epochs=40, batch_size=8, lr=1e-3, checkpoint_every=20)


@pytest.fixture(scope="module")
def variants(synthetic_tasks):
    return {t: p for t, (_, p) in synthetic_tasks.items()}


@pytest.fixture(scope="module")
def data(synthetic_goal_table):
    table = with_split_column(synthetic_goal_table(12), val_fraction=0.2, test_fraction=0.2)
    return PredictorExamples.from_table(table), split_indices(table)


@pytest.fixture(scope="module")
def stage1(data, tmp_path_factory):
    examples, splits = data
    out = tmp_path_factory.mktemp("s1")
    return train_stage1(examples, splits, CONFIG, out, S1, resume=False), out


@pytest.fixture(scope="module")
def stage2(data, stage1, tmp_path_factory):
    examples, splits = data
    out = tmp_path_factory.mktemp("s2")
    return train_stage2(examples, splits, stage1[0].best_dir, out, S2, resume=False), out


def test_goal_loss_and_metrics_known_answers():
    g = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    loss, mse, cos = goal_loss(g.clone(), g, 0.1)
    assert float(loss) == pytest.approx(0.0, abs=1e-7) and float(cos) == pytest.approx(1.0)
    loss, mse, cos = goal_loss(torch.tensor([[-4.0, 3.0], [0.0, 1.0]]), g, 0.1)  # orthogonal rows
    assert float(cos) == pytest.approx(0.0, abs=1e-7)
    assert float(loss) == pytest.approx(float(mse) + 0.1)
    m = goal_metrics(2 * g, g, torch.zeros(2))
    assert m["cosine"] == pytest.approx(1.0) and m["norm_ratio"] == pytest.approx(2.0)


def test_stage1_learns_and_writes_its_files(stage1):
    result, out = stage1
    history = result.history
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["train_mse"] < history[0]["train_mse"]
    assert result.best_val_loss == min(h["val_loss"] for h in history)
    saved = json.loads((out / "history.json").read_text())
    assert saved["best_epoch"] == result.best_epoch and len(saved["history"]) == 3
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    # best/ is a full predictor: the head in safetensors (no backbone weights), LoRA in peft format.
    weights = load_file(str(out / "best" / "model.safetensors"))
    assert not any(k.startswith("backbone.") for k in weights) and "qformer.layernorm.weight" in weights
    assert (out / "best" / "adapter" / "adapter_model.safetensors").is_file()
    adapter = load_file(str(out / "best" / "adapter" / "adapter_model.safetensors"))
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in adapter.items())  # the adapter trained


def test_stage1_resume_is_the_uninterrupted_run(data, stage1, tmp_path):
    examples, splits = data
    _, full = stage1
    part = tmp_path / "part"
    train_stage1(examples, splits, CONFIG, part, Stage1Settings(**{**S1.__dict__, "epochs": 2}), resume=False)
    records = []
    resumed = train_stage1(examples, splits, CONFIG, part, S1, resume=True, log=records.append)
    assert resumed.resumed_from_epoch == 2 and [h["epoch"] for h in resumed.history] == [1, 2, 3]
    # One eval record, for the one epoch this call trained, with the history's figures.
    (record,) = [r for r in records if r["event"] == "eval"]
    assert record["epoch"] == 3 and record["of"] == 3 and record["best_epoch"] == resumed.best_epoch
    assert {k: record[k] for k in resumed.history[-1]} == resumed.history[-1]
    a, b = load_file(str(full / "last" / "model.safetensors")), load_file(str(part / "last" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    la = load_file(str(full / "last" / "adapter" / "adapter_model.safetensors"))
    lb = load_file(str(part / "last" / "adapter" / "adapter_model.safetensors"))
    assert all(torch.equal(la[k], lb[k]) for k in la)
    with pytest.raises(PredictorTrainingError, match="other data or settings"):
        train_stage1(examples, splits, CONFIG, part, Stage1Settings(**{**S1.__dict__, "lr": 5e-4}), resume=True)


def test_stage1_needs_frame_features(data, tmp_path):
    examples, splits = data
    bare = PredictorExamples(examples.keys, examples.instructions, examples.tasks, examples.goals)
    with pytest.raises(PredictorTrainingError, match="frame features"):
        train_stage1(bare, splits, CONFIG, tmp_path, S1)


def test_stage2_fits_goals_at_the_goal_space_scale(data, stage2):
    examples, splits = data
    result, out = stage2
    history = result.history
    assert history[-1]["val_cosine"] > history[0]["val_cosine"]
    assert result.best_val_loss == min(h["val_loss"] for h in history)
    model = load_goal_predictor(out / "best")
    train = splits["train"]
    pred = model.predict_goal([examples.instructions[i] for i in train])
    goal = torch.from_numpy(examples.goals[train])
    # Calibrated: predicted norms match the raw goal norms (median ratio 1 on the training clips).
    assert goal_metrics(pred, goal, goal.mean(0))["norm_ratio"] == pytest.approx(1.0, abs=1e-4)
    assert result.extra["output_scale"] == pytest.approx(float(model.output_scale))
    # The task-specific part is learned: on held-out clips the prediction points at the right task.
    test = splits["test"]
    m = goal_metrics(model.predict_goal([examples.instructions[i] for i in test]),
                     torch.from_numpy(examples.goals[test]), goal.mean(0))
    assert m["centered_cosine"] > 0.5, m


def test_stage2_attention_aligner_and_resume(data, stage1, stage2, tmp_path):
    examples, splits = data
    _, full = stage2
    part = tmp_path / "s2"
    train_stage2(examples, splits, stage1[0].best_dir, part, Stage2Settings(**{**S2.__dict__, "epochs": 20}),
                 resume=False)
    resumed = train_stage2(examples, splits, stage1[0].best_dir, part, S2, resume=True)
    assert resumed.resumed_from_epoch == 20
    a, b = load_file(str(full / "last" / "model.safetensors")), load_file(str(part / "last" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    attention = train_stage2(examples, splits, stage1[0].best_dir, tmp_path / "b",
                             Stage2Settings(**{**S2.__dict__, "epochs": 3}), aligner="attention", resume=False)
    model = load_goal_predictor(attention.best_dir)
    assert model.config.aligner == "attention" and type(model.aligner).__name__ == "AttentionPoolAligner"


def test_comparison_and_paraphrase_rows(data, stage2, variants):
    examples, splits = data
    model = load_goal_predictor(stage2[1] / "best")
    center = torch.from_numpy(examples.goals[splits["train"]]).mean(0)

    def mean_goal(texts):  # a baseline that ignores the instruction
        return center.expand(len(texts), -1).clone()

    out = compare_with_baseline(examples, splits, model.predict_goal, mean_goal)
    assert out["n"]["clips"] == len(splits["test"])
    assert out["baseline"]["centered_cosine"] == pytest.approx(0.0, abs=1e-6)  # zero vector after centering
    assert out["predictor"]["cosine"] > out["baseline"]["cosine"]
    texts, rows = paraphrase_rows(examples, splits["test"], variants)
    assert len(texts) == 2 * len(splits["test"]) and all(t in variants[examples.tasks[r]] for t, r in zip(texts, rows))


@contextlib.contextmanager
def _hooked(handle):
    try:
        yield
    finally:
        handle.remove()


def test_bf16_autocast_path_trains(data, tmp_path):
    """The bf16 path GPUs use, exercised with CPU autocast: finite losses, float32 checkpoints."""
    examples, splits = data
    seen: dict[str, set] = {}

    def record(label):
        # Every nn.Linear output during training: under bf16 autocast these are bfloat16, else float32.
        def hook(module, inputs, output):
            if isinstance(module, torch.nn.Linear) and torch.is_tensor(output):
                seen.setdefault(label, set()).add(output.dtype)
        return torch.nn.modules.module.register_module_forward_hook(hook)

    with _hooked(record("s1")):
        s1 = train_stage1(examples, splits, CONFIG, tmp_path / "s1",
                          S1.model_copy(update={"epochs": 1, "precision": "bf16"}), resume=False)
    assert all(np.isfinite(v) for v in s1.history[0].values())
    with _hooked(record("s2")):
        s2 = train_stage2(examples, splits, s1.best_dir, tmp_path / "s2",
                          S2.model_copy(update={"epochs": 2, "precision": "bf16"}), resume=False)
    assert all(np.isfinite(v) for h in s2.history for v in h.values())
    with _hooked(record("fp32")):
        train_stage2(examples, splits, s1.best_dir, tmp_path / "s2_fp32", S2.model_copy(update={"epochs": 1}),
                     resume=False)
    # The precision setting reaches the matmuls: bf16 runs compute in bfloat16, the fp32 run never does.
    assert torch.bfloat16 in seen["s1"] and torch.bfloat16 in seen["s2"]
    assert seen["fp32"] == {torch.float32}
    weights = load_file(str(tmp_path / "s2" / "best" / "model.safetensors"))
    assert {v.dtype for v in weights.values()} == {torch.float32}


def test_task_contrastive_loss_matches_hand_computed_cross_entropy():
    import math

    import torch

    from goalcraft.training.predictor import task_contrastive_loss

    goal = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 2.0]])
    task = torch.tensor([0, 1, 1])
    zero, one = torch.zeros(2), torch.ones(2)
    loss = task_contrastive_loss(goal, goal, task, zero, one, temperature=1.0)
    # Row 0: logits (1, 0, 0), positive {0}: −log(e / (e + 2)). Rows 1, 2: logits (0, 1, 1), positives
    # {1, 2} with weight ½ each: −log(e / (1 + 2e)).
    expected = (-math.log(math.e / (math.e + 2)) + 2 * -math.log(math.e / (1 + 2 * math.e))) / 3
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    # Standardising first: a shared offset in every vector changes nothing.
    shifted = task_contrastive_loss(goal + 5, goal + 5, task, torch.full((2,), 5.0), one, temperature=1.0)
    assert float(shifted) == pytest.approx(expected, rel=1e-6)
