"""Partition keys: their names, and which partition a video or trial belongs to.

Sources are hashed by id into a fixed number of partitions, so a partition's membership never
depends on manifest order or on which other videos exist: adding videos only touches the partitions
they hash into, and a 730K-video corpus at 256 partitions gives ~2,850 videos each.

Plain Python, no Dagster (the ingest assets and the new-inputs sensor both assign sources with it);
the Dagster partitions definition over these keys is goalcraft.pipelines.partitions_definition.
"""

from __future__ import annotations

import hashlib


def partition_key(index: int, count: int) -> str:
    return f"p{index:0{max(4, len(str(count - 1)))}d}"


def partition_keys(count: int) -> list[str]:
    return [partition_key(i, count) for i in range(count)]


def partition_of(source_id: str, count: int) -> str:
    # sha1, not hash(): Python's str hash is salted per process.
    digest = hashlib.sha1(source_id.encode("utf-8")).digest()
    return partition_key(int.from_bytes(digest[:8], "big") % count, count)
