"""Quarantine records: every input the pipeline could not use, with the stage and the reason.

Bad input never crashes a partition and is never dropped silently: it becomes one row here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

import pyarrow as pa

QUARANTINE_SCHEMA = pa.schema(
    [
        ("partition", pa.string()),
        ("input", pa.string()),
        ("source_id", pa.string()),
        ("stage", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
    ]
)


@dataclass(frozen=True)
class QuarantineRecord:
    """One rejected input.

    ``input`` is the path (relative to the corpus root where possible) or manifest line that failed;
    ``stage`` is where it failed (``manifest``, ``transcript``, ``trial``, ``decode``, ``window``);
    ``reason`` is a short machine-readable code (see docs/data-formats.md) and ``detail`` the message.
    """

    input: str
    stage: str
    reason: str
    detail: str = ""
    source_id: str = ""
    partition: str = ""


class InputError(Exception):
    """An input the pipeline cannot use; carries the quarantine reason code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def quarantine_table(records: Iterable[QuarantineRecord]) -> pa.Table:
    rows = [asdict(r) for r in records]
    return pa.Table.from_pylist(rows, schema=QUARANTINE_SCHEMA)


def json_error_detail(exc: Exception) -> str:
    """A short description of why ``json.loads`` failed (syntax, huge integer, deep nesting)."""
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} (line {exc.lineno}, column {exc.colno})"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc)[:200]
