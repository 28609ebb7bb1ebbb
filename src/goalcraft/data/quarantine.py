"""Quarantine records: every input the pipeline could not use, with the stage and the reason.

Bad input never crashes a partition and is never dropped silently: it becomes one row here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

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

    def __reduce__(self) -> tuple:
        # Rebuilt from its two fields (a worker process returns it as a value).
        return type(self), (self.reason, self.detail)


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


def read_json(path: Path, reason: str, name: str | None = None) -> Any:
    """The JSON value in ``path`` (UTF-8, a BOM allowed); :class:`InputError` with ``reason`` when the
    file cannot be read, is not UTF-8 or is not JSON. ``name`` is how the messages call the file."""
    name = name or Path(path).name
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(reason, f"cannot read {name}: {exc}") from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(reason, f"{name} is not UTF-8 (byte offset {exc.start})") from exc
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, huge ints, deep nesting
        raise InputError(reason, f"{name} is not valid JSON: {json_error_detail(exc)}") from exc
