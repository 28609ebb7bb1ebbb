"""How goalcraft's assets are run: partitions, jobs, executors (and later schedules and sensors)."""
