"""STEVE-1's prior: real checkpoint format, layer order, sampling, save/load. Tiny models only."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from goalcraft.models.checkpoints import CheckpointError
from goalcraft.models.prior import (
    PRIOR_CONFIGS,
    PriorConfig,
    TranslatorVAE,
    load_prior,
    load_steve1_prior,
    save_prior,
)

TINY = PriorConfig(input_dim=16, hidden_dim=32, latent_dim=8)

# The state dict of the released steve1_prior.pt, as STEVE-1 builds it: TranslatorVAE in
# steve1/data/text_alignment/vae.py (two nn.Sequential of Linear, LayerNorm, ReLU, Linear,
# LayerNorm, ReLU, Linear) with PRIOR_INFO = {mineclip_dim 512, latent_dim 512, hidden_dim 512}
# from steve1/config.py. Saved as best_model._orig_mod.state_dict(): no prefix.
STEVE1_PRIOR_SHAPES = {
    "encoder.0.weight": (512, 1024),  # Linear(visual 512 ⊕ text 512 → 512)
    "encoder.0.bias": (512,),
    "encoder.1.weight": (512,),  # LayerNorm
    "encoder.1.bias": (512,),
    "encoder.3.weight": (512, 512),
    "encoder.3.bias": (512,),
    "encoder.4.weight": (512,),
    "encoder.4.bias": (512,),
    "encoder.6.weight": (1024, 512),  # → mu 512 ⊕ logvar 512
    "encoder.6.bias": (1024,),
    "decoder.0.weight": (512, 1024),  # Linear(z 512 ⊕ text 512 → 512)
    "decoder.0.bias": (512,),
    "decoder.1.weight": (512,),
    "decoder.1.bias": (512,),
    "decoder.3.weight": (512, 512),
    "decoder.3.bias": (512,),
    "decoder.4.weight": (512,),
    "decoder.4.bias": (512,),
    "decoder.6.weight": (512, 512),
    "decoder.6.bias": (512,),
}


def tiny_model(seed: int = 0, config: PriorConfig = TINY) -> TranslatorVAE:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return TranslatorVAE(config).eval()


def texts(n: int = 5, dim: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


# -- architecture and names ---------------------------------------------------------------------


def test_steve1_config_matches_released_prior():
    assert PRIOR_CONFIGS["steve1"] == PriorConfig(input_dim=512, hidden_dim=512, latent_dim=512)
    state = TranslatorVAE(PRIOR_CONFIGS["steve1"]).state_dict()
    assert list(state) == list(STEVE1_PRIOR_SHAPES)
    assert {k: tuple(v.shape) for k, v in state.items()} == STEVE1_PRIOR_SHAPES
    assert all(v.dtype == torch.float32 for v in state.values())


def test_tiny_config_is_small():
    n_params = sum(p.numel() for p in TranslatorVAE(PRIOR_CONFIGS["tiny"]).parameters())
    assert n_params < 10_000


@pytest.mark.parametrize("bad", [{"input_dim": 0}, {"hidden_dim": -1}, {"latent_dim": 2.0}, {"input_dim": True}])
def test_config_rejects_bad_sizes(bad):
    with pytest.raises(ValueError):
        PriorConfig(**bad)


def test_layer_order_known_answer():
    """Recompute both halves by hand from the raw weights: visual first in the encoder, z first in
    the decoder, Linear → LayerNorm → ReLU twice, then Linear; mu is the first half."""
    model = tiny_model()
    w = {k: v.detach() for k, v in model.state_dict().items()}

    def mlp(prefix, x, hidden):
        x = F.relu(F.layer_norm(F.linear(x, w[f"{prefix}.0.weight"], w[f"{prefix}.0.bias"]), (hidden,),
                                w[f"{prefix}.1.weight"], w[f"{prefix}.1.bias"]))
        x = F.relu(F.layer_norm(F.linear(x, w[f"{prefix}.3.weight"], w[f"{prefix}.3.bias"]), (hidden,),
                                w[f"{prefix}.4.weight"], w[f"{prefix}.4.bias"]))
        return F.linear(x, w[f"{prefix}.6.weight"], w[f"{prefix}.6.bias"])

    text, visual = texts(4, seed=1), texts(4, seed=2)
    z = torch.randn(4, TINY.latent_dim, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        mu, logvar = model.encode(text, visual)
        enc = mlp("encoder", torch.cat([visual, text], dim=1), TINY.hidden_dim)
        torch.testing.assert_close(mu, enc[:, :TINY.latent_dim], rtol=0, atol=1e-6)
        torch.testing.assert_close(logvar, enc[:, TINY.latent_dim:], rtol=0, atol=1e-6)
        torch.testing.assert_close(model.decode(z, text), mlp("decoder", torch.cat([z, text], dim=1), TINY.hidden_dim),
                                   rtol=0, atol=1e-6)
        z0 = torch.zeros(4, TINY.latent_dim)
        torch.testing.assert_close(model.sample(text, deterministic=True),
                                   mlp("decoder", torch.cat([z0, text], dim=1), TINY.hidden_dim), rtol=0, atol=1e-6)


def test_encoder_reads_visual_from_the_first_half():
    model = tiny_model()
    with torch.no_grad():
        model.encoder[0].weight[:, TINY.input_dim:] = 0.0  # the text half of the input
        visual = texts(3, seed=5)
        a = model.encode(texts(3, seed=6), visual)
        b = model.encode(texts(3, seed=7), visual)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_forward_shapes_and_seeded_noise():
    model = tiny_model()
    text, visual = texts(6, seed=1), texts(6, seed=2)
    with torch.no_grad():
        r1, mu, logvar = model(text, visual, generator=torch.Generator().manual_seed(9))
        r2, _, _ = model(text, visual, generator=torch.Generator().manual_seed(9))
        r3, _, _ = model(text, visual, generator=torch.Generator().manual_seed(10))
    assert r1.shape == (6, 16) and mu.shape == (6, 8) and logvar.shape == (6, 8)
    assert torch.equal(r1, r2) and not torch.equal(r1, r3)


# -- sampling ---------------------------------------------------------------------------------------


def test_deterministic_sample_is_reproducible_and_ignores_the_generator():
    model = tiny_model()
    text = texts()
    with torch.no_grad():
        a = model.sample(text, deterministic=True)
        b = model.sample(text, deterministic=True, generator=torch.Generator().manual_seed(1))
        c = model.sample(text, deterministic=True, generator=torch.Generator().manual_seed(2))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(123)
            d = model.sample(text, deterministic=True)
    assert torch.equal(a, b) and torch.equal(a, c) and torch.equal(a, d)


def test_deterministic_sample_is_the_prior_mean_latent():
    model = tiny_model()
    text = texts()
    with torch.no_grad():
        expected = model.decode(torch.zeros(5, TINY.latent_dim), text)
        assert torch.equal(model.sample(text, deterministic=True), expected)


def test_seeded_sampling():
    model = tiny_model()
    text = texts()
    with torch.no_grad():
        a = model.sample(text, generator=torch.Generator().manual_seed(7))
        b = model.sample(text, generator=torch.Generator().manual_seed(7))
        c = model.sample(text, generator=torch.Generator().manual_seed(8))
        det = model.sample(text, deterministic=True)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert not torch.allclose(a, det)


def test_seeded_sampling_leaves_the_global_rng_alone():
    model = tiny_model()
    before = torch.get_rng_state()
    with torch.no_grad():
        model.sample(texts(), generator=torch.Generator().manual_seed(7))
    assert torch.equal(before, torch.get_rng_state())


def test_sample_shape_and_dtype():
    model = tiny_model()
    with torch.no_grad():
        out = model.sample(texts(3))
        out64 = model.sample(texts(3).double(), deterministic=True)  # cast to the model's dtype
    assert out.shape == (3, 16) and out.dtype == torch.float32
    assert out64.shape == (3, 16) and out64.dtype == torch.float32
    steve1 = TranslatorVAE(PRIOR_CONFIGS["steve1"]).eval()
    with torch.no_grad():
        out = steve1.sample(torch.randn(2, 512), generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 512) and out.dtype == torch.float32


@pytest.mark.parametrize("shape", [(16,), (3, 15), (3, 16, 1)])
def test_sample_rejects_wrong_shapes(shape):
    with pytest.raises(ValueError, match=r"\[B, 16\]"):
        tiny_model().sample(torch.zeros(shape))


def test_forward_rejects_mismatched_batches():
    with pytest.raises(ValueError, match="batch sizes differ"):
        tiny_model()(texts(3), texts(4))


# -- the released checkpoint format -------------------------------------------------------------


def test_real_format_round_trip(tmp_path):
    model = tiny_model(seed=4)
    path = tmp_path / "steve1_prior.pt"
    torch.save(model.state_dict(), path)  # what STEVE-1's train_vae.py writes
    loaded = load_steve1_prior(path, config=TINY)
    assert not loaded.training
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    with torch.no_grad():
        assert torch.equal(loaded.sample(texts(), deterministic=True), model.sample(texts(), deterministic=True))


def test_steve1_size_round_trip(tmp_path):
    """A full-size state dict in the released format loads with the default config."""
    model = tiny_model(seed=2, config=PRIOR_CONFIGS["steve1"])
    path = tmp_path / "steve1_prior.pt"
    torch.save(model.state_dict(), path)
    loaded = load_steve1_prior(path)
    assert loaded.config == PRIOR_CONFIGS["steve1"]
    text = torch.randn(2, 512, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded.sample(text, deterministic=True), model.sample(text, deterministic=True))


def test_loading_leaves_the_global_rng_alone(tmp_path):
    path = tmp_path / "prior.pt"
    torch.save(tiny_model().state_dict(), path)
    save_prior(tiny_model(), tmp_path / "dir")
    before = torch.get_rng_state()
    load_steve1_prior(path, config=TINY)
    load_prior(tmp_path / "dir")
    TranslatorVAE.uninitialized(TINY)
    assert torch.equal(before, torch.get_rng_state())


def _saved(tmp_path, state):
    path = tmp_path / "prior.pt"
    torch.save(state, path)
    return path


def test_unexpected_key_is_named(tmp_path):
    state = tiny_model().state_dict()
    state["decoder.6.bias_extra"] = state.pop("decoder.6.bias")
    with pytest.raises(CheckpointError) as err:
        load_steve1_prior(_saved(tmp_path, state), config=TINY)
    assert "decoder.6.bias_extra" in str(err.value) and "decoder.6.bias" in str(err.value)


def test_missing_key_is_named(tmp_path):
    state = tiny_model().state_dict()
    del state["encoder.4.weight"]
    with pytest.raises(CheckpointError, match=r"encoder\.4\.weight"):
        load_steve1_prior(_saved(tmp_path, state), config=TINY)


def test_wrong_shape_is_named(tmp_path):
    state = tiny_model().state_dict()
    state["encoder.0.weight"] = torch.zeros(32, 31)
    with pytest.raises(CheckpointError, match=r"encoder\.0\.weight"):
        load_steve1_prior(_saved(tmp_path, state), config=TINY)


def test_wrong_config_fails_on_shapes(tmp_path):
    path = _saved(tmp_path, tiny_model().state_dict())
    with pytest.raises(CheckpointError, match=r"encoder\.6\.weight"):
        load_steve1_prior(path, config=PriorConfig(input_dim=16, hidden_dim=32, latent_dim=4))


def test_compiled_prefix_is_not_the_released_format(tmp_path):
    state = {f"_orig_mod.{k}": v for k, v in tiny_model().state_dict().items()}
    with pytest.raises(CheckpointError, match=r"_orig_mod\.encoder\.0\.weight"):
        load_steve1_prior(_saved(tmp_path, state), config=TINY)


def test_pickled_module_is_refused(tmp_path):
    path = tmp_path / "whole_module.pt"
    torch.save(tiny_model(), path)  # a pickled nn.Module: code, not a state dict
    with pytest.raises(CheckpointError):
        load_steve1_prior(path, config=TINY)


# -- goalcraft's own format ---------------------------------------------------------------------


def test_save_load_round_trip(tmp_path):
    model = tiny_model(seed=11)
    out = save_prior(model, tmp_path / "prior")
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    loaded = load_prior(out)
    assert loaded.config == TINY and not loaded.training
    text = texts(7)
    with torch.no_grad():
        assert torch.equal(loaded.sample(text, deterministic=True), model.sample(text, deterministic=True))
        g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
        assert torch.equal(loaded.sample(text, generator=g()), model.sample(text, generator=g()))
        assert torch.equal(loaded(text, text, generator=g())[0], model(text, text, generator=g())[0])


def test_save_overwrites(tmp_path):
    save_prior(tiny_model(seed=1), tmp_path / "prior")
    second = tiny_model(seed=2)
    save_prior(second, tmp_path / "prior")
    loaded = load_prior(tmp_path / "prior")
    with torch.no_grad():
        assert torch.equal(loaded.sample(texts(), deterministic=True), second.sample(texts(), deterministic=True))
