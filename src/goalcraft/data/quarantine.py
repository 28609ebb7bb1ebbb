"""Quarantine records: every input the pipeline could not use, with the stage and the reason.

Bad input never crashes a partition and is never dropped silently: it becomes one row here.
"""

from __future__ import annotations

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
