"""Settings presets shipped with goalcraft (TOML files read by goalcraft.config.load_config)."""
