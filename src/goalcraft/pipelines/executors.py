"""The code location's default executor: CPU stages run in parallel processes, one partition a
process (runs launched from ``goalcraft demo`` or tests execute in-process). GPU steps get theirs
from goalcraft.pipelines.gpu.executor_for."""

from __future__ import annotations

import os

import dagster as dg


def cpu_executor(max_concurrent: int | None = None) -> dg.ExecutorDefinition:
    return dg.multiprocess_executor.configured(
        {"max_concurrent": max_concurrent or os.cpu_count() or 1}, name="cpu_multiprocess"
    )

