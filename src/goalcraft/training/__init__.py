"""Training loops: plain functions the Dagster assets call; they know nothing of Dagster."""
