"""The MineRL seam: STEVE-1's agent and a MineRL env through the rollout protocol. MineRL cannot be
installed here, so the env and the agent below are fakes, named as such."""

from __future__ import annotations

import numpy as np
import pytest

from goalcraft.evaluation.minerl import STEVE1_GUIDANCE, MineRLGoalEnv, Steve1Agent, require_minerl
from goalcraft.evaluation.rollouts import RolloutRequest, run_rollouts


class FakeMineRLEnv:
    """A fake MineRL env (gym API, dict observations with a pov and an inventory): 'attack' for three
    steps in a row yields an oak log."""

    def __init__(self):
        self.seeds = []

    def seed(self, seed):
        self.seeds.append(seed)

    def reset(self):
        self.attacks, self.logs = 0, 0
        return self._obs()

    def _obs(self):
        return {"pov": np.zeros((8, 8, 3), np.uint8), "inventory": {"oak_log": np.array(self.logs), "dirt": np.array(0)}}

    def step(self, action):
        self.attacks = self.attacks + 1 if action.get("attack") else 0
        if self.attacks == 3:
            self.logs += 1
        return self._obs(), 0.0, False, {}


class FakeSteve1ConditionalAgent:
    """A fake of STEVE-1's MineRLConditionalAgent: reset(cond_scale), get_action(obs, goal_embed)."""

    def __init__(self):
        self.calls = []

    def reset(self, cond_scale=None):
        self.cond_scale = cond_scale

    def get_action(self, minerl_obs, goal_embed):
        self.calls.append((goal_embed.shape, self.cond_scale))
        return {"attack": np.array([1 if goal_embed[0, 0] > 0 else 0])}


def test_steve1_agent_in_a_fake_minerl_env():
    agents = []

    def make_agent():
        agents.append(FakeSteve1ConditionalAgent())
        return agents[-1]

    requests = [RolloutRequest(1, "collect_wood", 10, np.ones(512, np.float32), STEVE1_GUIDANCE["visual"]),
                RolloutRequest(2, "collect_wood", 10, -np.ones(512, np.float32), STEVE1_GUIDANCE["text"])]
    results = run_rollouts(lambda: MineRLGoalEnv(make=FakeMineRLEnv), Steve1Agent(1, make_agent), requests, slots=1)
    assert [(r.success, r.steps) for r in results] == [(True, 3), (False, 10)]
    assert agents[0].calls[0] == ((1, 512), 7.0) and agents[0].calls[-1][1] == 6.0


def test_steve1_agent_needs_a_goal():
    agent = Steve1Agent(1, FakeSteve1ConditionalAgent)
    with pytest.raises(ValueError):
        agent.reset(0, None, 6.0, 0)


def test_minerl_is_import_guarded():
    try:
        import minerl  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="minerl extra"):
            require_minerl()
        with pytest.raises(ImportError):
            MineRLGoalEnv()
