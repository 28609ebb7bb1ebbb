"""STEVE-1's prior: a conditional MLP VAE from a MineCLIP text embedding to a visual goal embedding.

Architecture and parameter names follow STEVE-1's ``TranslatorVAE``
(``steve1/data/text_alignment/vae.py``; sizes from ``PRIOR_INFO`` in ``steve1/config.py``), so the
released ``steve1_prior.pt`` (a plain ``state_dict``, no prefix) loads strictly::

    encoder  q(z | visual, text)   input  concat(visual ⊕ text)   [2·D]
        encoder.0  Linear(2·D → H)    encoder.1  LayerNorm(H)    encoder.2  ReLU
        encoder.3  Linear(H → H)      encoder.4  LayerNorm(H)    encoder.5  ReLU
        encoder.6  Linear(H → 2·L)    output split in half: mu = [:L], logvar = [L:]
    decoder  p(visual | z, text)   input  concat(z ⊕ text)        [L + D]
        decoder.0  Linear(L+D → H)    decoder.1  LayerNorm(H)    decoder.2  ReLU
        decoder.3  Linear(H → H)      decoder.4  LayerNorm(H)    decoder.5  ReLU
        decoder.6  Linear(H → D)

with D = 512 (MineCLIP), H = 512 and L = 512 for the released prior. Note the encoder's input
order: the *visual* embedding comes first, then the text embedding (STEVE-1's ``encode``), while
:meth:`TranslatorVAE.forward` takes ``(text, visual)`` like the rest of goalcraft.

At inference STEVE-1 never uses the encoder: it draws ``z ~ N(0, I)`` (the prior) and decodes
``(z, text)``; its ``deterministic=True`` uses ``z = 0``, the prior mean (its agent scripts call the
prior with the default ``deterministic=False``, i.e. they sample, from the global RNG).
:meth:`TranslatorVAE.sample` does the same, with an optional ``torch.Generator`` so that sampled
goals are reproducible.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor, nn

from goalcraft.models.checkpoints import load_model_dir, load_state_dict_file, save_model_dir, strict_load


@dataclass(frozen=True)
class PriorConfig:
    """Sizes of a :class:`TranslatorVAE`: embedding (MineCLIP) width, MLP width, latent width."""

    # Written to config.json by save_model_dir and checked by load_config_json.
    model_type: ClassVar[str] = "steve1_prior"
    input_dim: int = 512
    hidden_dim: int = 512
    latent_dim: int = 512

    def __post_init__(self) -> None:
        for name in ("input_dim", "hidden_dim", "latent_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"PriorConfig.{name} must be a positive int, got {value!r}")


PRIOR_CONFIGS: dict[str, PriorConfig] = {
    # steve1_prior.pt: PRIOR_INFO = {mineclip_dim: 512, latent_dim: 512, hidden_dim: 512}.
    "steve1": PriorConfig(input_dim=512, hidden_dim=512, latent_dim=512),
    # For tests and the demo: same architecture, a few thousand parameters.
    "tiny": PriorConfig(input_dim=16, hidden_dim=32, latent_dim=8),
}


def prior_config_for(dim: int) -> PriorConfig:
    """STEVE-1's prior layout at embedding width ``dim`` (hidden and latent as wide as the input)."""
    return PriorConfig(**{**PRIOR_CONFIGS["steve1"].__dict__, "input_dim": dim, "hidden_dim": dim, "latent_dim": dim})


def _mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    # Indices 0..6 are the parameter names of the released checkpoint: keep this exact layout.
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim),
        nn.LayerNorm(hidden_dim),
        nn.ReLU(),
        nn.Linear(hidden_dim, hidden_dim),
        nn.LayerNorm(hidden_dim),
        nn.ReLU(),
        nn.Linear(hidden_dim, out_dim),
    )


class TranslatorVAE(nn.Module):
    """STEVE-1's prior (see the module docstring for the layout and the state-dict names)."""

    def __init__(self, config: PriorConfig = PRIOR_CONFIGS["steve1"]) -> None:
        super().__init__()
        self.config = config
        d, h, z = config.input_dim, config.hidden_dim, config.latent_dim
        self.encoder = _mlp(2 * d, h, 2 * z)
        self.decoder = _mlp(z + d, h, d)

    @classmethod
    def uninitialized(cls, config: PriorConfig = PRIOR_CONFIGS["steve1"]) -> "TranslatorVAE":
        """A model whose parameters are allocated (on CPU) but not initialized, to be filled from a
        state dict. Unlike the constructor it draws nothing from torch's global RNG."""
        with torch.device("meta"):
            model = cls(config)
        return model.to_empty(device="cpu")

    # -- shapes -----------------------------------------------------------------------------

    def _check(self, x: Tensor, dim: int, what: str) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim != 2 or x.shape[1] != dim:
            raise ValueError(f"{what} must have shape [B, {dim}], got {list(x.shape)}")
        p = self.decoder[0].weight
        return x.to(device=p.device, dtype=p.dtype)

    # -- the two halves -----------------------------------------------------------------------

    def encode(self, text_emb: Tensor, visual_emb: Tensor) -> tuple[Tensor, Tensor]:
        """q(z | visual, text): ``(mu, logvar)``, each ``[B, latent_dim]``."""
        text = self._check(text_emb, self.config.input_dim, "text_emb")
        visual = self._check(visual_emb, self.config.input_dim, "visual_emb")
        if text.shape[0] != visual.shape[0]:
            raise ValueError(f"batch sizes differ: text {text.shape[0]}, visual {visual.shape[0]}")
        # Visual first: the released encoder.0 weight expects concat(visual, text).
        mu, logvar = self.encoder(torch.cat([visual, text], dim=1)).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: Tensor, text_emb: Tensor) -> Tensor:
        """p(visual | z, text): the predicted visual embedding ``[B, input_dim]``."""
        text = self._check(text_emb, self.config.input_dim, "text_emb")
        z = self._check(z, self.config.latent_dim, "z")
        if z.shape[0] != text.shape[0]:
            raise ValueError(f"batch sizes differ: z {z.shape[0]}, text {text.shape[0]}")
        return self.decoder(torch.cat([z, text], dim=1))

    # -- training and inference ----------------------------------------------------------------

    def forward(
        self, text_emb: Tensor, visual_emb: Tensor, *, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Training pass: encode, reparameterize ``z = mu + eps·σ``, decode; ``(recon, mu, logvar)``.

        ``eps`` is drawn from ``generator`` when given (on the generator's device, then moved),
        otherwise from torch's global RNG.
        """
        mu, logvar = self.encode(text_emb, visual_emb)
        eps = _standard_normal(mu.shape, like=mu, generator=generator)
        z = mu + eps * torch.exp(0.5 * logvar)
        return self.decode(z, text_emb), mu, logvar

    def sample(
        self,
        text_emb: Tensor,
        *,
        deterministic: bool = False,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Goal embeddings for text embeddings ``[B, input_dim]`` → ``[B, input_dim]``.

        Like STEVE-1 at inference, ``z`` comes from the prior N(0, I), not the encoder.
        ``deterministic=True`` decodes ``z = 0`` (the prior mean) and ignores ``generator``;
        otherwise ``z`` is drawn from ``generator`` (same seed, same goals) or the global RNG.
        The output has the model's dtype and device; no gradient is tracked unless the caller
        enables it.
        """
        text = self._check(text_emb, self.config.input_dim, "text_emb")
        shape = (text.shape[0], self.config.latent_dim)
        if deterministic:
            z = torch.zeros(shape, dtype=text.dtype, device=text.device)
        else:
            z = _standard_normal(shape, like=text, generator=generator)
        return self.decode(z, text)


def _standard_normal(shape, *, like: Tensor, generator: torch.Generator | None) -> Tensor:
    # Draw on the generator's own device so a CPU generator gives the same numbers whatever
    # device the model is on; then move to the model's device.
    device = generator.device if generator is not None else like.device
    eps = torch.randn(tuple(shape), generator=generator, device=device, dtype=like.dtype)
    return eps.to(like.device)


# -- checkpoints --------------------------------------------------------------------------------


def prior_config_of(state_dict: Mapping[str, Tensor]) -> PriorConfig:
    """The sizes a STEVE-1-format state dict was saved with, read from its shapes (``decoder.6``:
    ``[D, H]``, ``encoder.6``: ``[2·L, H]``); the released prior's sizes where those keys are absent
    (strict loading then names what is missing)."""
    decoder, encoder = state_dict.get("decoder.6.weight"), state_dict.get("encoder.6.weight")
    if not isinstance(decoder, Tensor) or not isinstance(encoder, Tensor) or decoder.ndim != 2 or encoder.ndim != 2:
        return PRIOR_CONFIGS["steve1"]
    try:
        return PriorConfig(input_dim=int(decoder.shape[0]), hidden_dim=int(decoder.shape[1]),
                           latent_dim=int(encoder.shape[0]) // 2)
    except ValueError:
        return PRIOR_CONFIGS["steve1"]


def load_steve1_prior(path: str | Path, config: PriorConfig | None = PRIOR_CONFIGS["steve1"]) -> TranslatorVAE:
    """Load a STEVE-1-format prior (``steve1_prior.pt``: a plain state_dict) strictly, in eval mode.

    Every key must be present with the right shape and no key may be extra; otherwise
    ``CheckpointError`` names them. Files that pickle code are refused. ``config=None`` reads the
    sizes from the file (:func:`prior_config_of`).
    """
    state = load_state_dict_file(Path(path))
    model = TranslatorVAE.uninitialized(prior_config_of(state) if config is None else config)
    strict_load(model, state, source=str(path))
    return model.eval()


def save_prior(model: TranslatorVAE, out_dir: str | Path) -> Path:
    """Write ``model.safetensors`` + ``config.json`` into ``out_dir`` (swapped in whole); returns it."""
    return save_model_dir(model, model.config, Path(out_dir))


def load_prior(model_dir: str | Path) -> TranslatorVAE:
    """Load a prior written by :func:`save_prior` (or by training), strictly, in eval mode."""
    return load_model_dir(model_dir, PriorConfig, TranslatorVAE.uninitialized)
