"""A residual head on a goal model's output, the part REINFORCE fine-tunes (docs/closed-loop.md §5).

``z' = z + W z + b`` with ``W`` and ``b`` zero at the start, so the head begins as the identity and the
goal predictor it sits on stays frozen. Strict safetensors + ``config.json`` save/load like the other
models; no Dagster, no trainer here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor, nn

from goalcraft.models.checkpoints import load_model_dir, save_model_dir

__all__ = ["ResidualGoalHead", "ResidualGoalHeadConfig", "load_goal_head", "save_goal_head"]


@dataclass(frozen=True)
class ResidualGoalHeadConfig:
    model_type: ClassVar[str] = "residual_goal_head"
    goal_dim: int = 512

    def __post_init__(self) -> None:
        if not isinstance(self.goal_dim, int) or isinstance(self.goal_dim, bool) or self.goal_dim <= 0:
            raise ValueError(f"goal_dim must be a positive int, got {self.goal_dim!r}")


class ResidualGoalHead(nn.Module):
    """``z + linear(z)``, the linear map zero-initialized (the identity until trained)."""

    def __init__(self, config: ResidualGoalHeadConfig = ResidualGoalHeadConfig()) -> None:
        super().__init__()
        self.config = config
        self.linear = nn.Linear(config.goal_dim, config.goal_dim)
        with torch.no_grad():
            self.linear.weight.zero_()
            self.linear.bias.zero_()

    @classmethod
    def uninitialized(cls, config: ResidualGoalHeadConfig) -> ResidualGoalHead:
        with torch.device("meta"):
            model = cls(config)
        return model.to_empty(device="cpu")

    def forward(self, z: Tensor) -> Tensor:
        if z.ndim != 2 or z.shape[1] != self.config.goal_dim:
            raise ValueError(f"z must have shape [B, {self.config.goal_dim}], got {list(z.shape)}")
        z = z.to(self.linear.weight.dtype)
        return z + self.linear(z)


def save_goal_head(model: ResidualGoalHead, out_dir: str | Path) -> Path:
    return save_model_dir(model, model.config, Path(out_dir))


def load_goal_head(model_dir: str | Path) -> ResidualGoalHead:
    return load_model_dir(model_dir, ResidualGoalHeadConfig, ResidualGoalHead.uninitialized)
