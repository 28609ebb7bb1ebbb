"""Partitions of the corpus: sources hashed by id into a fixed number of shards (see
goalcraft.data.partitioning), so each partition can be (re-)materialized and backfilled alone."""

from __future__ import annotations

import dagster as dg

from goalcraft.data.partitioning import partition_keys


def corpus_partitions(count: int) -> dg.StaticPartitionsDefinition:
    return dg.StaticPartitionsDefinition(partition_keys(count))
