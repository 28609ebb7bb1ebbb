"""Format facts every layer shares, with no dependencies: MineCLIP and STEVE-1 consume clips of 16
frames of 160x256 (HxW). These are not settings."""

__all__ = ["CLIP_FRAMES", "CLIP_HEIGHT", "CLIP_WIDTH", "CRAFTER_ACTIONS", "MINECRAFT_FPS"]

CLIP_FRAMES = 16
CLIP_HEIGHT = 160
CLIP_WIDTH = 256
#: Minecraft's tick rate: MineRL steps, and STEVE-1 evaluation tools record, one frame a tick.
MINECRAFT_FPS = 20.0
#: Crafter's action space in its order (``crafter.constants.actions``): index = action id.
CRAFTER_ACTIONS: tuple[str, ...] = (
    "noop", "move_left", "move_right", "move_up", "move_down", "do", "sleep", "place_stone", "place_table",
    "place_furnace", "place_plant", "make_wood_pickaxe", "make_stone_pickaxe", "make_iron_pickaxe",
    "make_wood_sword", "make_stone_sword", "make_iron_sword",
)
