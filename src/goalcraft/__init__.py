"""goalcraft: from Minecraft gameplay video to goal embeddings a STEVE-1 agent can follow."""

__version__ = "0.1.0"
