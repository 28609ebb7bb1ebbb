"""The MineCLIP text → prior baseline as one goal model, on tiny configs built here."""

import pytest
import torch

from goalcraft.models.baseline import MineCLIPPriorBaseline, encode_instructions, load_baseline
from goalcraft.models.clip_tokenizer import tokenize
from goalcraft.models.mineclip import MINECLIP_CONFIGS, MineCLIP, save_mineclip
from goalcraft.models.prior import PRIOR_CONFIGS, TranslatorVAE, save_prior

INSTRUCTIONS = ["chop down the tree", "collect dirt", "go swimming", "open inventory", "chop down the tree"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    mineclip = MineCLIP(MINECLIP_CONFIGS["tiny"]).eval()
    d = mineclip.embed_dim
    prior = TranslatorVAE(PRIOR_CONFIGS["tiny"].__class__(input_dim=d, hidden_dim=2 * d, latent_dim=8)).eval()
    root = tmp_path_factory.mktemp("baseline")
    save_mineclip(mineclip, root / "goal_space")
    save_prior(prior, root / "prior")
    return mineclip, prior, root


def test_encode_instructions_is_the_text_encoder_in_batches(tiny):
    mineclip, _, _ = tiny
    with torch.inference_mode():
        direct = mineclip.encode_text(tokenize(INSTRUCTIONS)).float()
    batched = encode_instructions(mineclip, INSTRUCTIONS, batch_size=2)
    assert batched.shape == (5, mineclip.embed_dim)
    torch.testing.assert_close(batched, direct, rtol=0, atol=1e-5)
    assert encode_instructions(mineclip, []).shape == (0, mineclip.embed_dim)
    with pytest.raises(TypeError, match="not one string"):
        encode_instructions(mineclip, "collect dirt")


def test_predict_goal_decodes_the_prior_mean_or_seeded_samples(tiny):
    mineclip, prior, root = tiny
    model = MineCLIPPriorBaseline(mineclip, prior)
    z = model.predict_goal(INSTRUCTIONS)
    with torch.inference_mode():
        expected = prior.decode(torch.zeros(5, 8), encode_instructions(mineclip, INSTRUCTIONS))
    torch.testing.assert_close(z, expected)
    # Same instruction, same goal, to float32 rounding: a BLAS kernel may round a row differently by its
    # position in the batch (3.6e-7 on AVX-512 MKL), which is no property of the model.
    torch.testing.assert_close(z[0], z[4], rtol=1e-6, atol=1e-6)
    assert not torch.equal(z[0], z[1])
    a = model.predict_goal(INSTRUCTIONS, deterministic=False, seed=3)
    assert torch.equal(a, model.predict_goal(INSTRUCTIONS, deterministic=False, seed=3))
    assert not torch.equal(a, model.predict_goal(INSTRUCTIONS, deterministic=False, seed=4))
    assert not torch.equal(a[0], a[4])  # sampled latents differ per row
    reloaded = load_baseline(root / "goal_space", root / "prior")
    assert torch.equal(reloaded.predict_goal(INSTRUCTIONS), z)


def test_mismatched_widths_are_refused(tiny):
    mineclip, _, _ = tiny
    with pytest.raises(ValueError, match="prior takes 16-d"):
        MineCLIPPriorBaseline(mineclip, TranslatorVAE(PRIOR_CONFIGS["tiny"]))
