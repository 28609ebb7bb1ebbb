"""Plain, framework-free data handling: corpus readers, clip windows, decoding, shards.

Nothing in here imports Dagster; the assets in ``goalcraft.assets`` are thin wrappers around it.
"""
