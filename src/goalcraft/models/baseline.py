"""STEVE-1's text path as one model: MineCLIP's text encoder → the CVAE prior → ``z_goal``.

This is the baseline the goal predictor is measured against. It exposes the same
``predict_goal(instructions) -> Tensor[B, 512]`` call as :class:`goalcraft.models.predictor.GoalPredictor`
so evaluation code treats every goal model alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from goalcraft.models.clip_tokenizer import tokenize
from goalcraft.models.mineclip import MineCLIP, load_mineclip
from goalcraft.models.prior import TranslatorVAE, load_prior


@torch.inference_mode()
def encode_instructions(mineclip: MineCLIP, instructions: Sequence[str], *, batch_size: int = 256) -> Tensor:
    """MineCLIP text embeddings ``[B, D]`` (float32, CPU) of ``instructions``, in batches."""
    if isinstance(instructions, str):
        raise TypeError("instructions must be a sequence of strings, not one string")
    out = [mineclip.encode_text(tokenize(list(instructions[i:i + batch_size]))).float().cpu()
           for i in range(0, len(instructions), batch_size)]
    return torch.cat(out) if out else torch.zeros(0, mineclip.embed_dim)


class MineCLIPPriorBaseline(nn.Module):
    """MineCLIP text embedding of the instruction, decoded by the prior into a goal embedding."""

    name = "mineclip_prior"

    def __init__(self, mineclip: MineCLIP, prior: TranslatorVAE) -> None:
        super().__init__()
        if prior.config.input_dim != mineclip.embed_dim:
            raise ValueError(f"prior takes {prior.config.input_dim}-d text embeddings, MineCLIP gives {mineclip.embed_dim}")
        self.mineclip = mineclip
        self.prior = prior

    def encode_text(self, instructions: Sequence[str]) -> Tensor:
        return encode_instructions(self.mineclip, instructions)

    @torch.inference_mode()
    def predict_goal(self, instructions: Sequence[str], *, deterministic: bool = True,
                     seed: int | None = None) -> Tensor:
        """``[B, D]`` float32 goal embeddings. Deterministic (latent 0) by default; with
        ``deterministic=False`` the latent is drawn from a CPU generator seeded with ``seed``."""
        text = self.encode_text(instructions)
        generator = None
        if not deterministic:
            generator = torch.Generator().manual_seed(0 if seed is None else seed)
        return self.prior.sample(text, deterministic=deterministic, generator=generator).float().cpu()


def load_baseline(goal_space_dir: str | Path, prior_dir: str | Path) -> MineCLIPPriorBaseline:
    """The baseline from a trained goal space and prior (each a ``model.safetensors`` + ``config.json``
    folder, loaded strictly), in eval mode."""
    return MineCLIPPriorBaseline(load_mineclip(goal_space_dir), load_prior(prior_dir)).eval()
