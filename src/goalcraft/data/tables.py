"""Frozen dataclass records ↔ Arrow tables, so ingest tables round-trip into the records the
clip stage consumes without a hand-written column list per record type.

The Arrow schema comes from the dataclass's type hints, so a table of zero records has the same
column types as a full one (an empty manifest or trials table is an ordinary input: a YouTube-only
corpus has no trials, a trials-only corpus has no manifest rows).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, Sequence, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

T = TypeVar("T")

#: Schema metadata key: the partition count an ingest table was split into.
PARTITION_COUNT_KEY = b"goalcraft.partition_count"

_SCALARS: dict[Any, pa.DataType] = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}


class StalePartitioningError(RuntimeError):
    """An ingest table split for another partition count than the one configured now."""


def _arrow_type(hint: Any) -> pa.DataType:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):  # X | None: nullable X
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(inner) == 1:
            return _arrow_type(inner[0])
    if origin is Literal:
        values = typing.get_args(hint)
        return _arrow_type(type(values[0]))
    if origin in (list, tuple):
        return pa.list_(_arrow_type(typing.get_args(hint)[0]))
    if hint in _SCALARS:
        return _SCALARS[hint]
    raise TypeError(f"no Arrow type for the record field type {hint!r}")


def record_schema(cls: type) -> pa.Schema:
    """The Arrow schema of a dataclass record type, from its type hints."""
    hints = typing.get_type_hints(cls)
    return pa.schema([pa.field(f.name, _arrow_type(hints[f.name])) for f in dataclasses.fields(cls)])


def records_table(records: Sequence[Any], cls: type, extra: dict[str, list[Any]] | None = None) -> pa.Table:
    """Records as a table typed by :func:`record_schema`, plus ``extra`` columns (inferred types)."""
    schema = record_schema(cls)
    table = pa.Table.from_pylist([dataclasses.asdict(r) for r in records], schema=schema)
    for name, values in (extra or {}).items():
        table = table.append_column(name, pa.array(values, pa.string() if not values else None))
    return table


def table_records(table: pa.Table, cls: type[T]) -> list[T]:
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    missing = [n for n in names if n not in table.column_names]
    if missing:
        raise ValueError(f"table lacks the {cls.__name__} column(s) {missing}")
    return [cls(**{n: row[n] for n in names}) for row in table.select(names).to_pylist()]


def rows_where(table: pa.Table, column: str, value: Any) -> pa.Table:
    """The rows whose ``column`` equals ``value``; a zero-row table gives a zero-row table.

    (A boolean mask from ``pc.equal`` is typed even when empty; a Python list of zero booleans is
    not, and pyarrow refuses it as a filter.)
    """
    if table.num_rows == 0:
        return table
    return table.filter(pc.fill_null(pc.equal(table.column(column), value), False))


def read_partition_rows(table_path: Path, partition: str, count: int, cls: type[T]) -> list[T]:
    """The records of one partition from an ingest table, refusing a table split for another count."""
    table = pq.read_table(table_path)
    written = int((table.schema.metadata or {}).get(PARTITION_COUNT_KEY, b"0"))
    if written != count:
        raise StalePartitioningError(
            f"{table_path} was split into {written} partitions but the clip partitions number {count}: "
            "re-materialize the ingest assets after changing [partitions] count"
        )
    return table_records(rows_where(table, "partition", partition), cls)
