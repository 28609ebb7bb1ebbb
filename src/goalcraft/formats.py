"""Format facts every layer shares, with no dependencies: MineCLIP and STEVE-1 consume clips of 16
frames of 160x256 (HxW). These are not settings."""

__all__ = ["CLIP_FRAMES", "CLIP_HEIGHT", "CLIP_WIDTH", "MINECRAFT_FPS"]

CLIP_FRAMES = 16
CLIP_HEIGHT = 160
CLIP_WIDTH = 256
#: Minecraft's tick rate: MineRL steps, and STEVE-1 evaluation tools record, one frame a tick.
MINECRAFT_FPS = 20.0
