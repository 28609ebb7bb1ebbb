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


KW = dict(episodes_per_task=16, world_seeds=[1, 2, 3], max_steps=50, sigma=0.5, lr=1.0, seed=3, log=lambda r: None)


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


def test_goals_are_played_in_mirrored_pairs_on_common_worlds_and_seeds(tmp_path):
    seen = []

    def record(requests):
        seen.extend(requests)
        return fake_rollout(requests)

    reinforce_goal_head(tasks(), record, tmp_path / "rl", iterations=1, **KW)
    assert len(seen) == 2 * KW["episodes_per_task"]
    by_task = {t.task: t.goal for t in tasks()}
    for plus, minus in zip(seen[::2], seen[1::2]):
        assert (plus.target, plus.world_seed, plus.seed) == (minus.target, minus.world_seed, minus.seed)
        # the head starts as the identity, so the pair is symmetric about the predictor's goal
        np.testing.assert_allclose((plus.goal + minus.goal) / 2, by_task[plus.target], atol=1e-5)
        assert not np.allclose(plus.goal, minus.goal)


def test_each_task_moves_by_its_own_step_and_no_other(tmp_path):
    """Only collect_wood's pairs ever differ (its + member always wins): its goal moves by exactly
    lr·σ·mean(ε·(R+ − R−)/2), and place_table's goal does not move, though the head is shared."""
    seen = []

    def wood_plus_wins(requests):
        seen.extend(requests)
        return [RolloutResult(r, r.target == "collect_wood" and k % 2 == 0, 1, (), False) for k, r in enumerate(requests)]

    ts = tasks()
    result = reinforce_goal_head(ts, wood_plus_wins, tmp_path / "rl", iterations=1, **KW)
    head = load_goal_head(result.last_dir)
    goals = np.stack([t.goal for t in ts])
    std = KW["sigma"] * np.sqrt(np.mean(goals.astype(np.float64) ** 2))
    wood = [r for r in seen if r.target == "collect_wood"]
    eps = np.stack([(p.goal - m.goal) / (2 * std) for p, m in zip(wood[::2], wood[1::2])])
    expected = KW["lr"] * std * (0.5 * eps).mean(0)
    moved = head(torch.from_numpy(goals)).detach().numpy() - goals
    np.testing.assert_allclose(moved[0], expected, atol=1e-5)
    np.testing.assert_allclose(moved[1], 0, atol=1e-5)
    assert result.history[0]["informative_pairs"] == 0.5
    # best/ is the head those rollouts measured (the identity), not the one the step made
    best = load_goal_head(result.best_dir)(torch.from_numpy(goals)).detach().numpy()
    np.testing.assert_allclose(best, goals, atol=1e-6)


def test_an_odd_number_of_episodes_is_refused(tmp_path):
    with pytest.raises(PredictorRLError, match="even"):
        reinforce_goal_head(tasks(), fake_rollout, tmp_path / "rl", iterations=1, **{**KW, "episodes_per_task": 3})


def test_rewards_blind_to_the_goal_leave_the_goals_near_the_predictors(tmp_path):
    """17 similar goals in 512-d (the study's shape), success a coin flip whatever the goal: ten
    iterations of noise must not carry a goal further from the predictor's than one exploration sample
    is (cosine 1/sqrt(1 + σ²)). Adam on the shared head, the first version, ended at cosine ~0.6."""
    rng = np.random.default_rng(0)
    common = rng.normal(size=512)
    goals = [(2 * common + rng.normal(size=512)) for _ in range(17)]
    goals = [(g / np.linalg.norm(g)).astype(np.float32) for g in goals]

    def coin_flips(requests):
        return [RolloutResult(r, bool(np.random.default_rng([r.seed, int(abs(r.goal[0]) * 1e6)]).random() < 0.2),
                              1, (), False) for r in requests]

    ts = [RLTask(f"task{i}", f"do {i}", g) for i, g in enumerate(goals)]
    result = reinforce_goal_head(ts, coin_flips, tmp_path / "rl", iterations=10, episodes_per_task=4,
                                 world_seeds=[1, 2, 3], max_steps=10, sigma=0.5, seed=0, log=lambda r: None)
    z0 = torch.from_numpy(np.stack(goals))
    cos = torch.nn.functional.cosine_similarity(load_goal_head(result.last_dir)(z0).detach(), z0)
    assert result.history[-1]["informative_pairs"] > 0 and result.history[-1]["mu_shift"] > 0  # noise moved it
    assert float(cos.min()) > 1 / np.sqrt(1 + 0.5**2)


def test_noise_in_a_subspace_moves_the_goals_within_it_and_finds_the_direction_sooner(tmp_path):
    """A basis holding the tasks' hidden directions: every sampled goal and every step stays in its
    span (plus the start), the noise keeps the full space's expected norm, and success rises faster."""
    basis = np.linalg.qr(np.stack(list(DIRECTIONS.values()), 1))[0]  # [8, 2]
    seen = []

    def record(requests):
        seen.extend(requests)
        return fake_rollout(requests)

    ts = tasks()
    sub = reinforce_goal_head(ts, record, tmp_path / "sub", iterations=10, basis=basis, **KW)
    full = reinforce_goal_head(ts, fake_rollout, tmp_path / "full", iterations=10, **KW)
    goals = np.stack([t.goal for t in ts])
    outside = np.eye(DIM) - basis @ basis.T
    moved = load_goal_head(sub.last_dir)(torch.from_numpy(goals)).detach().numpy() - goals
    np.testing.assert_allclose(moved @ outside, 0, atol=1e-5)
    first = {t.task: t.goal for t in ts}
    noise = np.stack([r.goal - first[r.target] for r in seen[:2 * KW["episodes_per_task"]]])
    np.testing.assert_allclose(noise @ outside, 0, atol=1e-5)
    std = KW["sigma"] * np.sqrt(np.mean(goals.astype(np.float64) ** 2))
    assert 0.5 < np.mean(np.sum(noise**2, 1)) / (DIM * std**2) < 2  # the same expected norm (E = 1)
    assert np.mean([h["success"] for h in sub.history]) > np.mean([h["success"] for h in full.history])
    with pytest.raises(PredictorRLError, match="orthonormal"):
        reinforce_goal_head(ts, fake_rollout, tmp_path / "bad", iterations=1, basis=2 * basis, **KW)


def test_per_task_counts_tell_which_tasks_the_step_can_learn_from(tmp_path):
    """collect_wood always wins, place_table never, make_wood_pickaxe wins iff its goal lies on the
    positive side of the first axis, so exactly one goal of each mirrored pair wins (when the noise moves
    the first coordinate, which the full-space noise always does)."""
    def rollout(requests):
        return [RolloutResult(r, win, 5, (), False) for r in requests
                for win in [{"collect_wood": True, "place_table": False}.get(r.target, bool(r.goal[0] > 0))]]

    three = [RLTask(t, f"do {t}", np.zeros(DIM, np.float32)) for t in ("collect_wood", "place_table", "make_wood_pickaxe")]
    kw = dict(KW, episodes_per_task=6)
    result = reinforce_goal_head(three, rollout, tmp_path / "rl", iterations=1, **kw)
    rows = {r["task"]: r for r in result.per_task}
    assert rows["collect_wood"] == {"task": "collect_wood", "episodes": 6, "successes": 6, "pairs": 3,
                                    "informative_pairs": 0, "last_success": 1.0}
    assert rows["place_table"] == {"task": "place_table", "episodes": 6, "successes": 0, "pairs": 3,
                                   "informative_pairs": 0, "last_success": 0.0}
    assert rows["make_wood_pickaxe"]["informative_pairs"] == 3 and rows["make_wood_pickaxe"]["successes"] == 3
    # Kept across a resume: the counts cover both calls' iterations.
    resumed = reinforce_goal_head(three, rollout, tmp_path / "rl", iterations=3, **kw)
    assert resumed.resumed_from == 1
    rows = {r["task"]: r for r in resumed.per_task}
    assert {t: (r["episodes"], r["successes"], r["pairs"]) for t, r in rows.items() if t != "make_wood_pickaxe"} == {
        "collect_wood": (18, 18, 9), "place_table": (18, 0, 9)}
    # The first step moved the pickaxe's goal to the winning side, so later pairs may both win: every
    # pair won once or twice, and the pairs that won twice are the uninformative ones.
    pickaxe = rows["make_wood_pickaxe"]
    assert pickaxe["episodes"] == 18 and pickaxe["informative_pairs"] >= 3
    assert pickaxe["successes"] == 9 + (9 - pickaxe["informative_pairs"])


def test_focus_plays_only_the_tasks_with_mixed_outcomes_and_holds_the_others_goals(tmp_path):
    """collect_wood always wins, place_table never, make_wood_pickaxe wins iff its goal's first coordinate
    is above its start: after the first iteration only the pickaxe is played, with all 9 pairs."""
    start = np.random.default_rng(5).normal(size=(3, DIM)).astype(np.float32)

    def rollout(requests):
        return [RolloutResult(r, win, 5, (), False) for r in requests
                for win in [{"collect_wood": True, "place_table": False}.get(r.target, bool(r.goal[0] > start[2, 0]))]]

    three = [RLTask(t, f"do {t}", g) for t, g in zip(("collect_wood", "place_table", "make_wood_pickaxe"), start)]
    kw = dict(KW, episodes_per_task=6)
    result = reinforce_goal_head(three, rollout, tmp_path / "rl", iterations=3, focus_after=1, **kw)
    assert [h["tasks"] for h in result.history] == [3, 1, 1]
    rows = {r["task"]: r for r in result.per_task}
    assert [(rows[t]["episodes"], rows[t]["pairs"]) for t in ("collect_wood", "place_table", "make_wood_pickaxe")] \
        == [(6, 3), (6, 3), (6 + 18 + 18, 3 + 9 + 9)]
    assert rows["make_wood_pickaxe"]["informative_pairs"] >= 3
    head = load_goal_head(result.last_dir)
    with torch.no_grad():
        moved = head(torch.from_numpy(start)).numpy() - start
    np.testing.assert_allclose(moved[:2], 0, atol=1e-5)  # the tasks with one outcome keep their goals
    assert moved[2, 0] > 0  # the pickaxe's goal moved to the winning side
    # Without focus every iteration plays every task, as before.
    plain = reinforce_goal_head(three, rollout, tmp_path / "plain", iterations=2, **kw)
    assert [h["tasks"] for h in plain.history] == [3, 3]
    assert {r["task"]: r["episodes"] for r in plain.per_task} == {t.task: 12 for t in three}


def test_a_focused_run_resumes_exactly(tmp_path):
    kw = dict(KW, episodes_per_task=4, focus_after=1)
    once = reinforce_goal_head(tasks(), fake_rollout, tmp_path / "once", iterations=4, **kw)
    reinforce_goal_head(tasks(), fake_rollout, tmp_path / "twice", iterations=2, **kw)
    twice = reinforce_goal_head(tasks(), fake_rollout, tmp_path / "twice", iterations=4, **kw)
    assert twice.resumed_from == 2 and twice.per_task == once.per_task
    a, b = load_goal_head(once.last_dir).state_dict(), load_goal_head(twice.last_dir).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
