"""The goal models as the evaluation sees them (:class:`~goalcraft.evaluation.run.GoalModelUnderTest`):
the goal predictor from its folder, and MineCLIP text → STEVE-1 prior from a MineCLIP and a prior.
The Dagster evaluation (goalcraft.stages.evaluation) and ``goalcraft evaluate-prior`` build them here.

The prior is evaluated as STEVE-1 draws from it and in its deterministic mode. STEVE-1
(``steve1/data/text_alignment/vae.py``, ``TranslatorVAE.forward`` with the default
``deterministic=False``, called by ``get_prior_embed`` once per instruction) draws the latent
``z ~ N(0, I)`` (``mu = 0``, ``logvar = 0``, ``torch.randn_like``) for each instruction and decodes
``(z, MineCLIP text embedding)``; ``deterministic=True`` decodes ``z = 0``. goalcraft's sampled mode
draws the same way, one independent ``z`` per instruction (and per repeated instruction, for
``consistency``), from a CPU generator seeded with the evaluation seed instead of torch's global RNG,
in float32 (STEVE-1's scripts run under CUDA fp16 autocast): the same distribution, reproducible
draws, not STEVE-1's numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from goalcraft.evaluation.run import BASELINE, PREDICTOR, GoalModelUnderTest, file_digest

__all__ = ["baseline_under_test", "predictor_under_test"]


def predictor_under_test(folder: Path, training_seed: int = 0) -> GoalModelUnderTest:
    """The goal predictor in ``folder`` (``model.safetensors`` + its config, as training writes ``best/``)."""
    import torch

    from goalcraft.models.backbones import mean_pool
    from goalcraft.models.predictor import load_goal_predictor

    predictor = load_goal_predictor(folder)

    @torch.inference_mode()
    def encode_text(texts: list[str]) -> np.ndarray:
        states, mask = predictor.encode_text(texts)
        return mean_pool(states, mask).float().numpy()

    return GoalModelUnderTest(
        PREDICTOR, lambda texts, seed: predictor.predict_goal(texts).numpy(), encode_text,
        {"aligner": str(folder), "version": file_digest(Path(folder) / "model.safetensors")},
        training_seed=training_seed)


def baseline_under_test(mineclip: Any, prior: Any, checkpoints: dict[str, str],
                        training_seed: int = 0) -> GoalModelUnderTest:
    """MineCLIP text → prior (a :class:`~goalcraft.models.mineclip.MineCLIP` and a
    :class:`~goalcraft.models.prior.TranslatorVAE`): stochastic (sampled as STEVE-1 samples, see the
    module docstring, and deterministic), its text side in the goal space. ``checkpoints`` records
    where both came from."""
    from goalcraft.models.baseline import MineCLIPPriorBaseline

    baseline = MineCLIPPriorBaseline(mineclip, prior).eval()
    return GoalModelUnderTest(
        BASELINE,
        lambda texts, seed: baseline.predict_goal(texts, deterministic=seed is None, seed=seed).numpy(),
        lambda texts: baseline.encode_text(texts).numpy(),
        dict(checkpoints), stochastic=True, text_in_goal_space=True, training_seed=training_seed)
