"""Rollouts: the protocol's runner (slots, processes, ends of episodes), the Crafter env with its
world cache and scripted ceiling, and the policy agent. Tiny policies, short episodes."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch

from goalcraft.crafter.deterministic_env import make_env
from goalcraft.evaluation.rollouts import CrafterGoalEnv, NoAgent, PolicyAgent, RolloutRequest, run_rollouts
from goalcraft.models.policy import POLICY_CONFIGS, GoalConditionedPolicy

TINY = POLICY_CONFIGS["tiny"]
TINY_ENV = partial(CrafterGoalEnv, (TINY.frame_width, TINY.frame_height))


class CountingEnv:
    """A made-up env: observation = step count; the target unlocks when action 1 is taken at step >= 3;
    the episode is over after ``seed`` steps (the player 'dies')."""

    def reset(self, seed, target):
        self.t, self.limit, self.target = 0, seed, target
        return 0

    def step(self, action):
        self.t += 1
        unlocked = ["noise"] if self.t == 1 else []
        if action == 1 and self.t >= 3:
            unlocked.append(self.target)
        return self.t, unlocked, self.t >= self.limit


class AlwaysAgent:
    def __init__(self):
        self.log = []

    def reset(self, slot, goal, guidance, seed):
        self.log.append(("reset", slot, None if goal is None else float(goal[0])))

    def act(self, slots, observations):
        return [1] * len(slots)


def test_runner_ends_episodes_at_success_death_or_budget():
    agent = AlwaysAgent()
    requests = [RolloutRequest(100, "win", 10, np.ones(2)), RolloutRequest(2, "win", 10, np.zeros(2)),
                RolloutRequest(100, "win", 2, np.ones(2)), RolloutRequest(100, "win", 50, None)]
    results = run_rollouts(CountingEnv, agent, requests, slots=2)
    assert [(r.success, r.steps, r.died) for r in results] == [(True, 3, False), (False, 2, True),
                                                                (False, 2, False), (True, 3, False)]
    assert results[0].achievements == ("noise", "win") and results[0].off_target == ("noise",)
    assert [r.request for r in results] == requests
    assert len([e for e in agent.log if e[0] == "reset"]) == 4


def test_crafter_env_world_cache_replays_the_same_world():
    env = TINY_ENV()
    first = env.reset(7, "collect_wood")
    steps = [env.step(a) for a in (1, 5, 3, 3, 5)]
    again = env.reset(7, "collect_wood")  # from the cache
    assert np.array_equal(first, again)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(steps, [env.step(a) for a in (1, 5, 3, 3, 5)]))
    fresh = make_env(7, (TINY.frame_width, TINY.frame_height), tile=2).reset()
    assert np.array_equal(first, fresh) and first.shape == (20, 32, 3)


def test_scripted_ceiling_reaches_its_target():
    requests = [RolloutRequest(s, "collect_wood", 200) for s in (11, 12)]
    results = run_rollouts(TINY_ENV, NoAgent(), requests, slots=2)
    assert all(r.success and 0 < r.steps < 200 for r in results)


def _policy(seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return GoalConditionedPolicy(TINY).eval()


def _requests(n=6, steps=25):
    goal = np.ones(TINY.goal_dim, np.float32)
    return [RolloutRequest(20 + i % 3, "collect_wood", steps, goal if i != 4 else None, guidance=float(i % 2) * 3,
                           seed=i) for i in range(n)]


@pytest.mark.slow
def test_policy_rollouts_do_not_depend_on_slots_or_processes():
    torch.set_num_threads(1)
    requests = _requests()
    one = run_rollouts(TINY_ENV, PolicyAgent(_policy(), 1), requests, slots=1, record_frames=lambda i: i == 0)
    many = run_rollouts(TINY_ENV, PolicyAgent(_policy(), 4), requests, slots=4, workers=2)
    assert [(r.success, r.steps, r.achievements) for r in one] == [(r.success, r.steps, r.achievements) for r in many]
    assert one[0].frames.shape == (one[0].steps + 1, 20, 32, 3) and many[0].frames is None


def test_policy_agent_follows_the_guided_logits():
    policy = _policy()
    agent = PolicyAgent(policy, 2, greedy=True)
    obs = [np.full((20, 32, 3), 9, np.uint8), np.full((20, 32, 3), 200, np.uint8)]
    goals = np.random.default_rng(0).normal(size=(2, TINY.goal_dim)).astype(np.float32)
    agent.reset(0, goals[0], 0.0, 1)
    agent.reset(1, goals[1], 6.0, 2)
    actions = agent.act([0, 1], obs)
    frames = torch.from_numpy(np.stack([np.repeat(o[None], TINY.frame_stack, 0) for o in obs]))
    expected = policy.guided_logits(frames, torch.from_numpy(goals), torch.tensor([0.0, 6.0])).argmax(1).tolist()
    assert actions == expected
    agent.reset(1, None, 0.0, 3)  # no goal: the environment's own player acts
    assert agent.act([0, 1], obs)[1] is None


def test_runner_rejects_no_slots():
    with pytest.raises(ValueError):
        run_rollouts(CountingEnv, AlwaysAgent(), [], slots=0)


def test_warm_generates_the_worlds_first_and_timings_count_the_steps():
    timings = {}
    requests = [RolloutRequest(s, "collect_diamond", 5, np.zeros(TINY.goal_dim, np.float32)) for s in (31, 32, 31)]
    results = run_rollouts(TINY_ENV, PolicyAgent(_policy(), 2), requests, slots=2, warm=True, timings=timings)
    assert set(timings) == {"warm_s", "run_s", "steps"} and timings["steps"] == sum(r.steps for r in results) == 15
    assert timings["warm_s"] > 0


def test_recorded_frames_are_every_stride_th_observation_and_the_last():
    # CountingEnv's observation is the step count, so the frames name the steps they show.
    requests = [RolloutRequest(100, "win", 7, None), RolloutRequest(100, "win", 6, None)]

    class Idle(AlwaysAgent):
        def act(self, slots, observations):
            return [0] * len(slots)  # never wins: the episodes run to their budget

    results = run_rollouts(CountingEnv, Idle(), requests, slots=2, record_frames=lambda i: True, frame_stride=3)
    assert [list(r.frames) for r in results] == [[0, 3, 6, 7], [0, 3, 6]]
    with pytest.raises(ValueError, match="frame_stride"):
        run_rollouts(CountingEnv, Idle(), requests, frame_stride=0)


def test_recording_does_not_change_the_rollouts():
    requests = _requests(4, steps=25)
    plain = run_rollouts(TINY_ENV, PolicyAgent(_policy(), 2), requests, slots=2)
    every = run_rollouts(TINY_ENV, PolicyAgent(_policy(), 2), requests, slots=2, record_frames=lambda i: True)
    strided = run_rollouts(TINY_ENV, PolicyAgent(_policy(), 2), requests, slots=2, record_frames=lambda i: i != 1,
                           frame_stride=4)
    assert ([(r.success, r.steps, r.achievements, r.died) for r in plain]
            == [(r.success, r.steps, r.achievements, r.died) for r in every]
            == [(r.success, r.steps, r.achievements, r.died) for r in strided])
    assert plain[0].frames is None and strided[1].frames is None
    for full, kept in zip(every, strided):
        if kept.frames is None:
            continue
        wanted = list(range(0, full.steps + 1, 4)) + ([] if full.steps % 4 == 0 else [full.steps])
        assert full.frames.shape[0] == full.steps + 1 and np.array_equal(kept.frames, full.frames[wanted])


class LabellingCountingEnv(CountingEnv):
    """CountingEnv whose steps carry a label (ten times the step number): a labelling env's shape."""

    def step(self, action):
        obs, unlocked, over = super().step(action)
        return obs, unlocked, over, 10 * self.t


def test_recorded_episodes_keep_the_agents_actions_and_the_envs_labels():
    requests = [RolloutRequest(100, "win", 10, None), RolloutRequest(2, "win", 10, None)]

    class Alternate(AlwaysAgent):
        def act(self, slots, observations):
            return [0 if o < 2 else 1 for o in observations]  # wins at step 3 unless it dies first

    results = run_rollouts(LabellingCountingEnv, Alternate(), requests, slots=2, record_frames=lambda i: i == 0)
    assert (results[0].success, results[0].steps) == (True, 3)
    assert results[0].labels.tolist() == [10, 20, 30] and results[0].actions.tolist() == [0, 0, 1]
    assert results[1].labels is None and results[1].actions is None  # not recorded
    plain = run_rollouts(CountingEnv, Alternate(), requests[:1], record_frames=lambda i: True)
    assert plain[0].labels is None and plain[0].actions.tolist() == [0, 0, 1]


def test_expert_labels_are_what_the_scripted_player_would_do_while_the_env_takes_the_given_action():
    from goalcraft.crafter.agent import ACTION_IDS, make_agent

    seed, target = 5, "place_table"
    env = CrafterGoalEnv((TINY.frame_width, TINY.frame_height), expert_labels=True)
    env.reset(seed, target)
    # The reference: the same player (no random share, no warm-up) asked in a twin world that takes
    # the same actions; the actions are not the player's, so the two worlds only agree if the env
    # takes the given action and labels the state before it.
    twin = make_env(seed, (TINY.frame_width, TINY.frame_height), tile=2)
    twin.reset()
    player = make_agent(np.random.RandomState(seed), target)
    player.eps, player.warmup = 0.0, 0
    rng = np.random.default_rng(0)
    labels, expected = [], []
    for _ in range(60):
        action = int(rng.integers(0, 5))  # noop and moves: the walk is not the player's
        expected.append(player.act(twin))
        twin_obs = twin.step(action)[0]
        obs, _unlocked, over, label = env.step(action)
        labels.append(label)
        assert np.array_equal(obs, twin_obs)
        if over:
            break
    assert labels == expected
    assert {ACTION_IDS["move_left"], ACTION_IDS["move_right"]} & set(labels)  # it walks somewhere on its own
    # Without expert_labels the step keeps its three-element shape.
    plain = CrafterGoalEnv((TINY.frame_width, TINY.frame_height))
    plain.reset(seed, target)
    assert len(plain.step(0)) == 3


@pytest.mark.slow
def test_an_env_process_whose_parent_goes_away_ends_quietly(capfd):
    """The parent stopped (Ctrl-C, SIGTERM) and its pipes closed while its env processes waited for a
    command or were sending an answer: they end with status 0 and print no traceback."""
    from goalcraft.evaluation.rollouts import _Envs

    for pending in (False, True):
        envs = _Envs(CountingEnv, slots=2, workers=1)
        if pending:  # the worker answers into a pipe nobody reads any more
            envs.conns[0].send([("reset", 0, (5, "t")), ("step", 0, 1)])
        envs.conns[0].close()
        (proc,) = envs.procs
        proc.join(timeout=60)
        assert proc.exitcode == 0
    assert "Traceback" not in capfd.readouterr().err
