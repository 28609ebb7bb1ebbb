"""Frozen dataclass records ↔ Arrow tables, so ingest tables round-trip into the records the
clip stage consumes without a hand-written column list per record type."""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence, TypeVar

import pyarrow as pa

T = TypeVar("T")


def records_table(records: Sequence[Any], cls: type, extra: dict[str, list[Any]] | None = None) -> pa.Table:
    columns: dict[str, list[Any]] = {f.name: [getattr(r, f.name) for r in records] for f in dataclasses.fields(cls)}
    columns.update(extra or {})
    return pa.table(columns) if records else pa.table({name: pa.array([], pa.string()) for name in columns})


def table_records(table: pa.Table, cls: type[T]) -> list[T]:
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    return [cls(**{n: row[n] for n in names}) for row in table.to_pylist()]
