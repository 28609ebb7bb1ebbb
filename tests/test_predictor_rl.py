"""REINFORCE fine-tuning of the goal predictor's residual head: learns from success, seeded and
resumable. A made-up rollout function stands in for the policy and Crafter."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from goalcraft.evaluation.rollouts import RolloutResult
from goalcraft.models.goal_head import ResidualGoalHead, ResidualGoalHeadConfig, load_goal_head, save_goal_head
from goalcraft.training.predictor_rl import PredictorRLError, RLTask, reinforce_goal_head

DIM = 8
RNG = np.random.default_rng(0)
DIRECTIONS = {"collect_wood": RNG.normal(size=DIM), "place_table": RNG.normal(size=DIM)}


def fake_rollout(requests):
    """Success is likelier the more the goal points along its task's hidden direction; the draw is
    seeded by the request, as the policy's action sampling is."""
    out = []
    for r in requests:
        d = DIRECTIONS[r.target]
        cos = float(r.goal @ d / (np.linalg.norm(r.goal) * np.linalg.norm(d)))
        p = 1 / (1 + np.exp(-6 * (cos - 0.3)))
        win = bool(np.random.default_rng(r.seed).random() < p)
        out.append(RolloutResult(r, win, 5 if win else r.max_steps, (r.target,) if win else ("collect_sapling",), False))
    return out


def tasks():
    rng = np.random.default_rng(1)
    return [RLTask(t, f"do {t}", rng.normal(size=DIM).astype(np.float32)) for t in DIRECTIONS]


KW = dict(episodes_per_task=16, world_seeds=[1, 2, 3], max_steps=50, sigma=0.5, lr=0.05, seed=3, log=lambda r: None)


def test_head_starts_as_the_identity_and_round_trips(tmp_path):
    head = ResidualGoalHead(ResidualGoalHeadConfig(goal_dim=DIM))
    z = torch.randn(3, DIM)
    assert torch.equal(head(z), z)
    save_goal_head(head, tmp_path / "h")
    assert torch.equal(load_goal_head(tmp_path / "h")(z), z)


def test_reinforce_raises_success(tmp_path):
    result = reinforce_goal_head(tasks(), fake_rollout, tmp_path / "rl", iterations=30, **KW)
    success = [h["success"] for h in result.history]
    assert np.mean(success[-5:]) > np.mean(success[:5]) + 0.2
    head = load_goal_head(result.best_dir)
    for t in tasks():
        d = DIRECTIONS[t.task]
        before = t.goal @ d / (np.linalg.norm(t.goal) * np.linalg.norm(d))
        z = head(torch.from_numpy(t.goal[None]))[0].detach().numpy()
        assert z @ d / (np.linalg.norm(z) * np.linalg.norm(d)) > before
    assert result.history[-1]["mu_shift"] > 0 and result.best_iteration >= 1


def test_off_target_penalty_lowers_the_reward(tmp_path):
    plain = reinforce_goal_head(tasks(), fake_rollout, tmp_path / "a", iterations=1, **KW)
    penalised = reinforce_goal_head(tasks(), fake_rollout, tmp_path / "b", iterations=1, off_target_penalty=0.5, **KW)
    assert penalised.history[0]["reward"] < plain.history[0]["reward"]
    assert penalised.history[0]["success"] == plain.history[0]["success"]


def test_resume_continues_exactly(tmp_path):
    reinforce_goal_head(tasks(), fake_rollout, tmp_path / "once", iterations=4, **KW)
    reinforce_goal_head(tasks(), fake_rollout, tmp_path / "twice", iterations=2, **KW)
    resumed = reinforce_goal_head(tasks(), fake_rollout, tmp_path / "twice", iterations=4, **KW)
    assert resumed.resumed_from == 2 and resumed.iterations_completed == 4
    for name in ("last", "best"):
        a, b = load_goal_head(tmp_path / "once" / name).state_dict(), load_goal_head(tmp_path / "twice" / name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_rejects_bad_inputs(tmp_path):
    with pytest.raises(PredictorRLError):
        reinforce_goal_head([], fake_rollout, tmp_path / "rl", iterations=1, **KW)
    with pytest.raises(PredictorRLError):
        reinforce_goal_head(tasks(), fake_rollout, tmp_path / "rl", iterations=1, **{**KW, "sigma": 0.0})


def test_a_head_tuned_against_one_policy_is_not_resumed_against_another(tmp_path):
    done = reinforce_goal_head(tasks(), fake_rollout, tmp_path / "rl", iterations=2, player="policy-a", **KW)
    again = reinforce_goal_head(tasks(), fake_rollout, tmp_path / "rl", iterations=2, player="policy-a",
                                resume="auto", **KW)
    assert again.resumed_from == 2 and again.history == done.history  # the same policy: nothing to redo
    with pytest.raises(PredictorRLError):
        reinforce_goal_head(tasks(), fake_rollout, tmp_path / "rl", iterations=2, player="policy-b", **KW)
    fresh = reinforce_goal_head(tasks(), fake_rollout, tmp_path / "rl", iterations=2, player="policy-b",
                                resume="auto", **KW)
    assert fresh.resumed_from == 0 and fresh.iterations_completed == 2
