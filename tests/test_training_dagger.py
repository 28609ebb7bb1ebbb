"""DAgger: requests (targets cycle, goals from the bank, seeded), labelled episodes (the expert's
actions, the goal held for every step, short ones dropped), a round in real Crafter with a tiny
policy, and the labelled episodes training a policy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from goalcraft.evaluation.rollouts import RolloutRequest, RolloutResult
from goalcraft.models.policy import POLICY_CONFIGS, GoalConditionedPolicy
from goalcraft.training.dagger import dagger_episodes, dagger_requests, focus_weights, run_dagger_round

TINY = POLICY_CONFIGS["tiny"]


def _bank(dim=TINY.goal_dim):
    return {"collect_wood": np.arange(2 * dim, dtype=np.float32).reshape(2, dim),
            "place_table": -np.ones((1, dim), np.float32), "eat_cow": np.zeros((0, dim), np.float32)}


def test_requests_cycle_the_tasks_with_goals_from_the_bank_and_are_seeded():
    bank = _bank()
    requests = dagger_requests(bank, [10, 11, 12, 13], max_steps=50, guidance=1.5, seed=3)
    assert [r.target for r in requests] == ["collect_wood", "place_table"] * 2  # eat_cow has no goal
    assert [r.world_seed for r in requests] == [10, 11, 12, 13]
    assert all(r.max_steps == 50 and r.guidance == 1.5 for r in requests)
    for r in requests:
        assert any(np.array_equal(r.goal, g) for g in bank[r.target])
    again = dagger_requests(bank, [10, 11, 12, 13], max_steps=50, guidance=1.5, seed=3)
    assert [(r.seed, r.goal.tolist()) for r in again] == [(r.seed, r.goal.tolist()) for r in requests]
    other = dagger_requests(bank, list(range(40)), max_steps=50, guidance=1.5, seed=4)
    assert len({float(r.goal[0]) for r in other if r.target == "collect_wood"}) == 2  # both rows drawn
    with pytest.raises(ValueError, match="no task"):
        dagger_requests({"eat_cow": bank["eat_cow"]}, [1], max_steps=5, guidance=0.0, seed=0)


def test_focus_weights_send_the_focus_share_to_the_failing_targets():
    # failure rates 0, 0.5 and 1 (c was not played: failing); half the round even, half by failure
    weights = focus_weights(["a", "b", "c"], {"a": 1.0, "b": 0.5}, 0.5)
    assert weights == pytest.approx({"a": 1 / 6, "b": 1 / 6 + 1 / 6, "c": 1 / 6 + 1 / 3})
    assert focus_weights(["a", "b"], {"a": 0.2, "b": 0.9}, 0.0) == {"a": 0.5, "b": 0.5}
    assert focus_weights(["a", "b"], {"a": 1.0, "b": 1.0}, 1.0) == {"a": 0.5, "b": 0.5}  # nothing failed
    assert focus_weights(["a", "b"], {"a": 1.0, "b": 0.0}, 1.0) == {"a": 0.0, "b": 1.0}
    with pytest.raises(ValueError, match="focus"):
        focus_weights(["a"], {}, 1.5)


def test_weighted_requests_allot_the_episodes_by_largest_remainders_in_a_seeded_order():
    dim = TINY.goal_dim
    bank = {t: np.full((2, dim), i, np.float32) for i, t in enumerate(["a", "b", "c"])}
    worlds = list(range(100, 110))
    weights = {"a": 1 / 6, "b": 1 / 3, "c": 1 / 2}  # quotas 1.67, 3.33, 5: a takes the odd one
    requests = dagger_requests(bank, worlds, max_steps=50, guidance=1.0, seed=3, weights=weights)
    targets = [r.target for r in requests]
    assert {t: targets.count(t) for t in "abc"} == {"a": 2, "b": 3, "c": 5}
    assert [r.world_seed for r in requests] == worlds
    assert all(float(r.goal[0]) == "abc".index(r.target) for r in requests)
    again = dagger_requests(bank, worlds, max_steps=50, guidance=1.0, seed=3, weights=weights)
    assert [(r.target, r.seed) for r in again] == [(r.target, r.seed) for r in requests]
    assert targets != [r.target for r in dagger_requests(bank, worlds, max_steps=50, guidance=1.0, seed=4,
                                                         weights=weights)]
    # a task missing from the weights gets none; no positive share at all is an error
    assert {r.target for r in dagger_requests(bank, worlds, max_steps=5, guidance=0.0, seed=0,
                                              weights={"b": 1.0})} == {"b"}
    with pytest.raises(ValueError, match="no task"):
        dagger_requests(bank, worlds, max_steps=5, guidance=0.0, seed=0, weights={"x": 1.0})


def _result(seed, steps, labels=True):
    goal = np.full(4, seed, np.float32)
    frames = np.full((steps + 1, 2, 2, 3), seed, np.uint8)
    return RolloutResult(RolloutRequest(seed, "collect_wood", 300, goal, 1.0), False, steps, (), False, frames,
                         np.arange(steps) % 17 if labels else None, np.zeros(steps, np.int64))


def test_labelled_episodes_take_the_experts_actions_and_hold_the_goal():
    episodes, dropped = dagger_episodes([_result(7, 20), _result(8, 14), _result(9, 15)], "d1")
    assert dropped == 1  # 15 frames: no 16-frame clip
    assert [e.id for e in episodes] == ["d1-7-collect_wood", "d1-9-collect_wood"]
    first = episodes[0]
    assert first.actions.tolist() == (np.arange(20) % 17).tolist() and first.env_seed == 7
    assert first.goals.shape == (21, 4) and (first.goals == 7).all()
    with pytest.raises(ValueError, match="labels"):
        dagger_episodes([_result(1, 20, labels=False)], "d1")


@pytest.mark.slow
def test_a_round_in_crafter_labels_every_step_and_its_episodes_train_a_policy(tmp_path):
    from goalcraft.training.policy import train_policy

    torch.set_num_threads(1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        policy = GoalConditionedPolicy(TINY).eval()
    bank = {"collect_wood": np.ones((3, TINY.goal_dim), np.float32),
            "place_table": np.full((2, TINY.goal_dim), 2.0, np.float32)}
    requests = dagger_requests(bank, [101, 102, 103, 104], max_steps=40, guidance=1.0, seed=0)
    done = []
    result = run_dagger_round(policy, requests, "r1", workers=0, slots=2, progress=lambda d, t: done.append((d, t)))
    assert done[-1] == (4, 4)
    assert len(result.episodes) + result.dropped == 4
    assert result.steps == sum(len(e.actions) for e in result.episodes) > 0
    assert 0.0 <= result.agreement <= 1.0 and 0.0 <= result.success_rate <= 1.0
    assert set(result.success_by_target) == {"collect_wood", "place_table"}  # two episodes each
    assert np.mean(list(result.success_by_target.values())) == pytest.approx(result.success_rate)
    for e in result.episodes:
        assert e.frames.shape[1:] == (TINY.frame_height, TINY.frame_width, 3) and e.frames.dtype == np.uint8
        assert len(e.actions) == len(e.frames) - 1 and e.actions.max() < TINY.n_actions
    # A random tiny policy wanders; the expert walks toward trees and chops them: its labels are its own.
    labels = np.concatenate([e.actions for e in result.episodes])
    assert np.bincount(labels, minlength=TINY.n_actions)[5] > 0  # "do"
    out = train_policy(list(result.episodes), TINY, tmp_path / "p", epochs=1, batch_size=32)
    assert out.n_train_steps + out.n_val_steps == result.steps


def test_labelled_episodes_are_written_and_read_back_for_their_key_only(tmp_path):
    from goalcraft.training.dagger import read_labelled, write_labelled

    episodes, _ = dagger_episodes([_result(7, 20), _result(9, 31)], "d2")
    path = tmp_path / "round_2.npz"
    assert read_labelled(path, "k") is None  # nothing written yet
    write_labelled(path, episodes, "k", {"episodes": 2, "agreement": 0.25})
    back, figures = read_labelled(path, "k")
    assert figures == {"episodes": 2, "agreement": 0.25}
    assert [e.id for e in back] == ["d2-7-collect_wood", "d2-9-collect_wood"] and [e.env_seed for e in back] == [7, 9]
    for a, b in zip(episodes, back):
        assert np.array_equal(a.frames, b.frames) and np.array_equal(a.actions, b.actions)
        assert np.array_equal(a.goals, b.goals)
    assert read_labelled(path, "another key") is None  # played for another policy or requests
    assert [p.name for p in tmp_path.iterdir()] == ["round_2.npz"]  # written atomically, nothing left behind


def test_a_labelled_file_that_does_not_hold_together_or_holds_a_pickle_is_refused(tmp_path):
    from goalcraft.training.dagger import read_labelled, write_labelled

    episodes, _ = dagger_episodes([_result(7, 20)], "d1")
    path = tmp_path / "round_1.npz"
    write_labelled(path, episodes, "k", {})
    with np.load(path) as z:
        arrays = dict(z)
    np.savez(path, **{**arrays, "lengths": np.asarray([25])})
    with pytest.raises(ValueError, match="do not add up"):
        read_labelled(path, "k")
    np.savez(path, **{**arrays, "ids": np.asarray([{"a": 1}], dtype=object)})
    with pytest.raises(ValueError, match="not a labelled-episodes file"):
        read_labelled(path, "k")
    path.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a labelled-episodes file"):
        read_labelled(path, "k")
