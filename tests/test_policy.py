"""The goal-conditioned Crafter policy: shapes, the goal path, classifier-free guidance, frame
handling and strict save/load. Tiny configs only."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from goalcraft.models.checkpoints import CONFIG_FILE, WEIGHTS_FILE, CheckpointError
from goalcraft.models.policy import (
    CRAFTER_ACTIONS,
    POLICY_CONFIGS,
    FrameStack,
    GoalConditionedPolicy,
    PolicyConfig,
    load_policy,
    save_policy,
    stack_indices,
)

TINY = POLICY_CONFIGS["tiny"]


def tiny_policy(seed: int = 0, config: PolicyConfig = TINY) -> GoalConditionedPolicy:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return GoalConditionedPolicy(config).eval()


def frames(n: int = 3, config: PolicyConfig = TINY, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    shape = (n, config.frame_stack, config.frame_height, config.frame_width, 3)
    return torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)


def goals(n: int = 3, config: PolicyConfig = TINY, seed: int = 2) -> torch.Tensor:
    return 10 * torch.randn(n, config.goal_dim, generator=torch.Generator().manual_seed(seed))


def test_crafter_actions_are_crafters():
    from crafter import constants

    assert CRAFTER_ACTIONS == tuple(constants.actions)
    assert PolicyConfig().n_actions == 17


def test_default_config_sizes():
    model = GoalConditionedPolicy(POLICY_CONFIGS["crafter"])
    assert model.goal_linear.in_features == 512  # STEVE-1's 512-d goal
    assert POLICY_CONFIGS["crafter"].feature_grid == (10, 16)  # one cell per Crafter tile
    assert sum(p.numel() for p in model.parameters()) < 2_000_000
    assert sum(p.numel() for p in tiny_policy().parameters()) < 20_000


@pytest.mark.parametrize("bad", [{"n_actions": 0}, {"goal_dim": True}, {"frame_stack": 1.5},
                                 {"channels": (4, 8)}, {"channels": (4, 0, 4)}, {"frame_height": 4}])
def test_config_rejects_bad_sizes(bad):
    with pytest.raises(ValueError):
        PolicyConfig(**bad)


def test_logits_shape_and_goal_changes_them():
    model = tiny_policy()
    out = model(frames(), goals())
    assert out.shape == (3, 17) and out.dtype == torch.float32
    other = model(frames(), goals(seed=5))
    assert not torch.allclose(out, other)


def test_zero_goal_is_the_goal_linear_bias_only():
    """The goal enters only through goal_linear: a zero goal adds its bias (STEVE-1's unconditional input)."""
    model = tiny_policy()
    f = frames()
    features = model.encode_frames(f)
    manual = model.pre_ln(features + model.goal_linear.bias)
    manual = manual + model.mlp(manual)
    manual = model.action_head(model.final_ln(model.last(torch.relu(manual))))
    assert torch.allclose(model(f, torch.zeros(3, TINY.goal_dim)), manual, atol=1e-6)


def test_guidance_formula():
    model = tiny_policy()
    f, g = frames(), goals()
    cond = model(f, g)
    uncond = model(f, torch.zeros_like(g))
    assert torch.equal(model.guided_logits(f, g, 0.0), cond)
    for lam in (1.0, 3.0, 6.0):
        assert torch.allclose(model.guided_logits(f, g, lam), (1 + lam) * cond - lam * uncond, atol=1e-5)
    per_row = torch.tensor([0.0, 1.0, 6.0])
    expected = torch.stack([cond[0], 2 * cond[1] - uncond[1], 7 * cond[2] - 6 * uncond[2]])
    assert torch.allclose(model.guided_logits(f, g, per_row), expected, atol=1e-5)
    with pytest.raises(ValueError):
        model.guided_logits(f, g, torch.ones(2))


def test_act_is_seeded_and_greedy_is_argmax():
    model = tiny_policy()
    f, g = frames(8), goals(8)
    a = model.act(f, g, 3.0, generator=torch.Generator().manual_seed(4))
    b = model.act(f, g, 3.0, generator=torch.Generator().manual_seed(4))
    assert a.dtype == torch.int64 and a.shape == (8,) and torch.equal(a, b)
    assert ((0 <= a) & (a < 17)).all()
    assert torch.equal(model.act(f, g, 3.0, greedy=True), model.guided_logits(f, g, 3.0).argmax(1))


@pytest.mark.parametrize("shape", [(3, 2, 20, 32), (3, 3, 20, 32, 3), (3, 2, 32, 20, 3)])
def test_rejects_wrong_frame_shapes(shape):
    with pytest.raises(ValueError):
        tiny_policy()(torch.zeros(shape, dtype=torch.uint8), goals())


def test_rejects_wrong_goal_shapes():
    with pytest.raises(ValueError):
        tiny_policy()(frames(), torch.zeros(3, 8))
    with pytest.raises(ValueError):
        tiny_policy()(frames(), torch.zeros(2, TINY.goal_dim))


# -- observations ----------------------------------------------------------------------------------


def test_crafter_renders_the_policy_frames():
    from goalcraft.crafter.deterministic_env import make_env

    config = POLICY_CONFIGS["crafter"]
    obs = make_env(0, (config.frame_width, config.frame_height), tile=4).reset()
    assert obs.shape == (config.frame_height, config.frame_width, 3) and obs.dtype == np.uint8


def test_frame_stack_pads_with_the_first_frame_and_shifts():
    stack = FrameStack(TINY, 2)
    f0 = np.full((20, 32, 3), 1, np.uint8)
    stack.reset(0, f0)
    stack.reset(1, f0 * 2)
    assert (stack.frames[0] == 1).all() and (stack.frames[1] == 2).all()
    stack.push(np.stack([f0 * 3, f0 * 4]))
    assert stack.frames[0, 0].max() == 1 and stack.frames[0, 1].max() == 3
    stack.push(f0[None] * 5, indices=[1])
    assert stack.frames[1, 0].max() == 4 and stack.frames[1, 1].max() == 5 and stack.frames[0, 1].max() == 3
    assert stack.tensor([1]).shape == (1, 2, 20, 32, 3)


def test_stack_indices_match_the_frame_stack():
    assert stack_indices(np.array([0, 1, 5]), 3).tolist() == [[0, 0, 0], [0, 0, 1], [3, 4, 5]]


# -- checkpoints -------------------------------------------------------------------------------------


def test_save_load_round_trip(tmp_path):
    model = tiny_policy()
    save_policy(model, tmp_path / "policy")
    assert {p.name for p in (tmp_path / "policy").iterdir()} == {WEIGHTS_FILE, CONFIG_FILE}
    config = json.loads((tmp_path / "policy" / CONFIG_FILE).read_text())
    assert config["model_type"] == "goal_policy" and config["channels"] == [4, 8, 4]
    loaded = load_policy(tmp_path / "policy")
    assert not loaded.training and loaded.config == TINY
    assert torch.equal(loaded.guided_logits(frames(), goals(), 2.0), model.guided_logits(frames(), goals(), 2.0))


def test_load_is_strict(tmp_path):
    from safetensors.torch import save_file

    save_policy(tiny_policy(), tmp_path / "policy")
    state = dict(tiny_policy().state_dict())
    state.pop("goal_linear.weight")
    state["extra"] = torch.zeros(1)
    save_file(state, str(tmp_path / "policy" / WEIGHTS_FILE))
    with pytest.raises(CheckpointError, match="goal_linear.weight"):
        load_policy(tmp_path / "policy")


def test_load_refuses_another_model_type(tmp_path):
    save_policy(tiny_policy(), tmp_path / "policy")
    path = tmp_path / "policy" / CONFIG_FILE
    path.write_text(path.read_text().replace("goal_policy", "steve1_prior"))
    with pytest.raises(CheckpointError, match="model_type"):
        load_policy(tmp_path / "policy")


def test_loading_leaves_the_global_rng_alone(tmp_path):
    save_policy(tiny_policy(), tmp_path / "policy")
    before = torch.get_rng_state()
    load_policy(tmp_path / "policy")
    assert torch.equal(before, torch.get_rng_state())
