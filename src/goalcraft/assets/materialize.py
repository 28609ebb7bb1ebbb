"""From a stage function's result to a Dagster materialization (the one place that converts)."""

from pathlib import Path
from typing import Any, Callable

import dagster as dg

from goalcraft.stages import Markdown, StageError, StageResult, Url
from goalcraft.storage import PartitionBusy


def metadata_value(value: Any) -> Any:
    if isinstance(value, Markdown):
        return dg.MetadataValue.md(str(value))
    if isinstance(value, Url):
        return dg.MetadataValue.url(str(value))
    if isinstance(value, Path):
        return dg.MetadataValue.path(str(value))
    if isinstance(value, (dict, list, tuple)):
        return dg.MetadataValue.json(value if not isinstance(value, tuple) else list(value))
    return value


def materialize(context: dg.AssetExecutionContext | None, stage: Callable[[], StageResult]) -> dg.MaterializeResult:
    """Run a stage function: its warnings go to the run's log, a :class:`StageError` becomes a
    one-line ``dg.Failure`` (so does :class:`PartitionBusy`: another run is writing the same partition),
    its figures become the materialization's metadata."""
    try:
        result = stage()
    except (StageError, PartitionBusy) as exc:
        raise dg.Failure(str(exc)) from None
    if context is not None:
        for warning in result.warnings:
            context.log.warning(warning)
    return dg.MaterializeResult(metadata={k: metadata_value(v) for k, v in result.metadata.items()})
