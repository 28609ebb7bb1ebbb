"""Dagster assets, grouped by pipeline stage. Each is a thin wrapper over goalcraft.data."""
