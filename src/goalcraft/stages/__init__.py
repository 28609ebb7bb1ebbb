"""Stage functions: the body of every asset as a plain, typed function of its settings and paths.

Each takes goalcraft's settings objects and a :class:`~goalcraft.storage.StoragePaths` and returns a
:class:`StageResult` (the figures a run reports, as plain values, plus warnings for the log). They
know nothing of Dagster: the assets in :mod:`goalcraft.assets` only map resources to arguments and the
result to a materialization, and tests call these directly. A :class:`StageError` is a user-facing,
one-line reason a stage cannot run (the asset turns it into a ``dg.Failure``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class StageError(RuntimeError):
    """The inputs or settings cannot make this stage's output; the message says why, in one line."""


class Markdown(str):
    """A figure meant to be shown as markdown (a table)."""


class Url(str):
    """A figure that is a link (a file:// URL to open)."""


@dataclass
class StageResult:
    """What a stage reports: ``metadata`` (ints, floats, strings, lists/dicts, paths, :class:`Markdown`)
    and ``warnings`` (said once each, in the run's log)."""

    metadata: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
