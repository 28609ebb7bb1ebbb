"""Format facts every layer shares: the shape of a clip. Dependency-free, so data/ and models/ can
import it without pulling in the settings (goalcraft.config, which needs Dagster)."""

from __future__ import annotations

__all__ = ["CLIP_FRAMES", "CLIP_HEIGHT", "CLIP_WIDTH"]

# MineCLIP and STEVE-1 consume 16 frames of 160x256 (HxW); these are format facts, not settings.
CLIP_FRAMES = 16
CLIP_HEIGHT = 160
CLIP_WIDTH = 256
