"""A goal-conditioned Crafter policy built by STEVE-1's recipe (docs/closed-loop.md).

STEVE-1 conditions VPT on a 512-d MineCLIP goal embedding by adding a learned linear map of the goal
to the image features before the recurrent trunk (``mineclip_embed_linear`` in STEVE-1's
``embed_conditioned_policy.py``) and acts with classifier-free guidance. This module is the same
design sized for Crafter and a laptop CPU::

    frames  [B, S, H, W, 3] uint8  (the S most recent observations, oldest first)
      → /255, channels stacked [B, 3·S, H, W]
      → encoder: conv(4, stride 2) → ReLU → conv(4, stride 2) → ReLU → conv(3) → ReLU → flatten
                 → Linear → ReLU                                   ("img_process", to hidden_dim)
      + goal_linear(goal)          Linear(goal_dim → hidden_dim)    ("mineclip_embed_linear")
      → pre_ln (LayerNorm) → x + mlp(x) (the residual block that stands in for VPT's recurrence)
      → ReLU → last (Linear → ReLU) → final_ln (LayerNorm) → action_head: logits over the 17 actions

Observations are Crafter's own renders of the corpus's field of view (16 x 10 tiles: the view the
goal space sees in the 256x160 videos) at 4 pixels a tile, 64x40, about Crafter's native 64-pixel
width (``make_env(seed, (64, 40), tile=4)``; training replays the recorded actions to get exactly these
frames, :func:`goalcraft.training.policy.replay_frames`). Memory is a stack of ``frame_stack`` frames
(not a recurrent state); an episode's first frames are padded with frame 0 (:class:`FrameStack`).

Classifier-free guidance: trained with the goal zeroed for a fraction of samples (the trainer's
job), the policy acts on ``(1 + λ)·cond − λ·uncond`` where ``uncond`` are the logits for the zero
goal (:meth:`GoalConditionedPolicy.guided_logits`; λ = 0 is the plain conditional policy, as in
STEVE-1's ``cond_scale``). The image features are computed once for both halves.

Strict safetensors + ``config.json`` save/load like the other models; no Dagster, no trainer here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from goalcraft.formats import CRAFTER_ACTIONS
from goalcraft.models.checkpoints import load_model_dir, save_model_dir

__all__ = [
    "CRAFTER_ACTIONS",
    "POLICY_CONFIGS",
    "FrameStack",
    "GoalConditionedPolicy",
    "PolicyConfig",
    "load_policy",
    "save_policy",
    "stack_indices",
]



def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@dataclass(frozen=True)
class PolicyConfig:
    """Sizes of a :class:`GoalConditionedPolicy`.

    ``frame_height`` x ``frame_width``: the observation the encoder reads (Crafter's render at that
    size); ``frame_stack``: how many recent frames; ``channels``:
    the three conv layers' widths; ``hidden_dim``: the trunk width the goal is projected to.
    """

    model_type: ClassVar[str] = "goal_policy"
    n_actions: int = len(CRAFTER_ACTIONS)
    goal_dim: int = 512
    frame_height: int = 40
    frame_width: int = 64
    frame_stack: int = 4
    channels: tuple[int, int, int] = (32, 64, 32)
    hidden_dim: int = 256

    def __post_init__(self) -> None:
        for name in ("n_actions", "goal_dim", "frame_height", "frame_width", "frame_stack", "hidden_dim"):
            if not _positive_int(getattr(self, name)):
                raise ValueError(f"PolicyConfig.{name} must be a positive int, got {getattr(self, name)!r}")
        channels = tuple(self.channels)
        if len(channels) != 3 or not all(_positive_int(c) for c in channels):
            raise ValueError(f"PolicyConfig.channels must be three positive ints, got {self.channels!r}")
        object.__setattr__(self, "channels", channels)
        if self.frame_height < 8 or self.frame_width < 8:
            raise ValueError(f"frames must be at least 8x8, got {self.frame_height}x{self.frame_width}")

    @property
    def feature_grid(self) -> tuple[int, int]:
        """(height, width) of the last conv layer's output."""
        return _conv_out(_conv_out(self.frame_height)), _conv_out(_conv_out(self.frame_width))


def _conv_out(size: int) -> int:
    # kernel 4, stride 2, padding 1
    return (size + 2 - 4) // 2 + 1


POLICY_CONFIGS: dict[str, PolicyConfig] = {
    # The study and demo policy: 64x40 frames (16 x 10 tiles of 4 px), 4 frames, 512-d goals.
    "crafter": PolicyConfig(),
    # For tests: a few thousand parameters; 32x20 frames are the same 16 x 10-tile view at 2 px a tile.
    "tiny": PolicyConfig(goal_dim=16, frame_height=20, frame_width=32, frame_stack=2, channels=(4, 8, 4),
                         hidden_dim=16),
}


class GoalConditionedPolicy(nn.Module):
    """Logits over Crafter's actions for a stack of recent frames and a goal embedding."""

    def __init__(self, config: PolicyConfig = POLICY_CONFIGS["crafter"]) -> None:
        super().__init__()
        self.config = config
        c1, c2, c3 = config.channels
        gh, gw = config.feature_grid
        h = config.hidden_dim
        self.encoder = nn.Sequential(
            nn.Conv2d(3 * config.frame_stack, c1, kernel_size=4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(c1, c2, kernel_size=4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(c2, c3, kernel_size=3, stride=1, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(c3 * gh * gw, h),
            nn.ReLU(),
        )
        self.goal_linear = nn.Linear(config.goal_dim, h)
        self.pre_ln = nn.LayerNorm(h)
        self.mlp = nn.Sequential(nn.Linear(h, 2 * h), nn.ReLU(), nn.Linear(2 * h, h))
        self.last = nn.Sequential(nn.Linear(h, h), nn.ReLU())
        self.final_ln = nn.LayerNorm(h)
        self.action_head = nn.Linear(h, config.n_actions)

    @classmethod
    def uninitialized(cls, config: PolicyConfig = POLICY_CONFIGS["crafter"]) -> "GoalConditionedPolicy":
        """Parameters allocated on the CPU but not initialized (to be filled from a state dict); draws
        nothing from torch's global RNG."""
        with torch.device("meta"):
            model = cls(config)
        return model.to_empty(device="cpu")

    # -- inputs -----------------------------------------------------------------------------------

    def _param(self) -> Tensor:
        return self.action_head.weight

    def _frames(self, frames: Tensor) -> Tensor:
        c = self.config
        shape = (c.frame_stack, c.frame_height, c.frame_width, 3)
        if not isinstance(frames, Tensor):
            raise TypeError(f"frames must be a torch.Tensor, got {type(frames).__name__}")
        if frames.ndim != 5 or tuple(frames.shape[1:]) != shape:
            raise ValueError(f"frames must have shape [B, {', '.join(map(str, shape))}], got {list(frames.shape)}")
        p = self._param()
        x = frames.to(device=p.device, dtype=p.dtype) / 255.0
        b = x.shape[0]
        return x.permute(0, 1, 4, 2, 3).reshape(b, 3 * c.frame_stack, c.frame_height, c.frame_width)

    def _goal(self, goal: Tensor, batch: int) -> Tensor:
        d = self.config.goal_dim
        if not isinstance(goal, Tensor):
            raise TypeError(f"goal must be a torch.Tensor, got {type(goal).__name__}")
        if goal.ndim != 2 or goal.shape[1] != d or goal.shape[0] != batch:
            raise ValueError(f"goal must have shape [{batch}, {d}], got {list(goal.shape)}")
        p = self._param()
        return goal.to(device=p.device, dtype=p.dtype)

    # -- the network -------------------------------------------------------------------------------

    def encode_frames(self, frames: Tensor) -> Tensor:
        """Image features ``[B, hidden_dim]`` of ``frames`` ``[B, S, H, W, 3]`` (0..255)."""
        return self.encoder(self._frames(frames))

    def head(self, features: Tensor, goal: Tensor) -> Tensor:
        """Logits ``[B, n_actions]`` from image features and goals ``[B, goal_dim]``."""
        x = self.pre_ln(features + self.goal_linear(self._goal(goal, features.shape[0])))
        x = x + self.mlp(x)
        return self.action_head(self.final_ln(self.last(torch.relu(x))))

    def forward(self, frames: Tensor, goal: Tensor) -> Tensor:
        """Conditional logits ``[B, n_actions]`` (a zero goal gives the unconditional policy)."""
        return self.head(self.encode_frames(frames), goal)

    def guided_logits(self, frames: Tensor, goal: Tensor, guidance: float | Tensor = 0.0) -> Tensor:
        """Classifier-free guidance: ``(1 + λ)·cond − λ·uncond`` with ``uncond`` the zero goal's
        logits; ``guidance`` λ is a number or one per row ``[B]``. λ = 0 skips the second pass."""
        features = self.encode_frames(frames)
        cond = self.head(features, goal)
        lam = torch.as_tensor(guidance, dtype=cond.dtype, device=cond.device)
        if lam.ndim == 0 and float(lam) == 0.0:
            return cond
        if lam.ndim not in (0, 1) or (lam.ndim == 1 and lam.shape[0] != cond.shape[0]):
            raise ValueError(f"guidance must be a number or one per row [{cond.shape[0]}], got shape {list(lam.shape)}")
        uncond = self.head(features, torch.zeros_like(self._goal(goal, features.shape[0])))
        lam = lam.view(-1, 1) if lam.ndim == 1 else lam
        return (1 + lam) * cond - lam * uncond

    @torch.no_grad()
    def act(self, frames: Tensor, goal: Tensor, guidance: float | Tensor = 0.0, *,
            generator: torch.Generator | None = None, greedy: bool = False) -> Tensor:
        """Actions ``[B]`` (int64, on the CPU): sampled from the guided logits (as STEVE-1 acts,
        ``stochastic=True``), drawn from ``generator`` when given; ``greedy`` takes the argmax."""
        logits = self.guided_logits(frames, goal, guidance).float().cpu()
        if greedy:
            return logits.argmax(dim=1)
        return torch.multinomial(torch.softmax(logits, dim=1), 1, generator=generator).squeeze(1)


# -- observations -----------------------------------------------------------------------------------


class FrameStack:
    """The last ``frame_stack`` policy frames of ``n`` episodes run side by side, oldest first.

    :meth:`reset` fills episode ``i``'s stack with its first frame (so the first action sees S copies
    of frame 0, the same padding the trainer uses); :meth:`push` appends each episode's new frame.
    """

    def __init__(self, config: PolicyConfig, n: int) -> None:
        self.config = config
        self.frames = np.zeros((n, config.frame_stack, config.frame_height, config.frame_width, 3), np.uint8)

    def reset(self, index: int, frame: np.ndarray) -> None:
        self.frames[index] = frame

    def push(self, frames: np.ndarray, indices: Sequence[int] | None = None) -> None:
        """Append ``frames`` ``[k, H, W, 3]`` to the stacks of ``indices`` (default: all ``n``)."""
        idx = np.arange(len(self.frames)) if indices is None else np.asarray(indices, dtype=np.int64)
        self.frames[idx, :-1] = self.frames[idx, 1:]
        self.frames[idx, -1] = frames

    def tensor(self, indices: Sequence[int] | None = None) -> Tensor:
        return torch.from_numpy(self.frames if indices is None else self.frames[np.asarray(indices, dtype=np.int64)])


def stack_indices(t: np.ndarray, frame_stack: int) -> np.ndarray:
    """For decision steps ``t`` (frame ``t`` is the newest seen), the frame indices of their stacks
    ``[len(t), frame_stack]``, oldest first, clamped at frame 0 (the padding :class:`FrameStack` uses)."""
    offsets = np.arange(-(frame_stack - 1), 1)
    return np.maximum(np.asarray(t)[:, None] + offsets[None, :], 0)


# -- checkpoints ------------------------------------------------------------------------------------


def save_policy(model: GoalConditionedPolicy, out_dir: str | Path) -> Path:
    """Write ``model.safetensors`` + ``config.json`` into ``out_dir`` (swapped in whole); returns it."""
    return save_model_dir(model, model.config, Path(out_dir))


def load_policy(model_dir: str | Path) -> GoalConditionedPolicy:
    """Load a policy written by :func:`save_policy` (or by training), strictly, in eval mode."""
    return load_model_dir(model_dir, PolicyConfig, GoalConditionedPolicy.uninitialized)
