"""Executors. CPU stages run in parallel processes, one partition a process; runs launched from
``goalcraft demo`` or tests execute in-process."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import dagster as dg

if TYPE_CHECKING:
    from goalcraft.pipelines.gpu import GpuSettings


def cpu_executor(max_concurrent: int | None = None) -> dg.ExecutorDefinition:
    return dg.multiprocess_executor.configured(
        {"max_concurrent": max_concurrent or os.cpu_count() or 1}, name="cpu_multiprocess"
    )


def gpu_executor(execution: GpuSettings | None = None) -> dg.ExecutorDefinition:
    """The executor for GPU steps (goalcraft.pipelines.gpu.executor_for): in-process by default, or
    dagster-k8s's ``k8s_job_executor`` / dagster-ray's ``ray_executor`` when the ``[k8s]`` / ``[ray]``
    extra is installed and ``execution.target`` asks for it."""
    from goalcraft.pipelines.gpu import GpuSettings, executor_for

    return executor_for(execution if execution is not None else GpuSettings())
