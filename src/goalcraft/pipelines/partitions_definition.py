"""The Dagster partitions definition of the corpus: one partition per key of
goalcraft.data.partition_keys (sources hashed by id into a fixed number of partitions), so each
partition can be (re-)materialized and backfilled alone."""

from __future__ import annotations

import dagster as dg

from goalcraft.data.partition_keys import partition_keys


def corpus_partitions(count: int) -> dg.StaticPartitionsDefinition:
    return dg.StaticPartitionsDefinition(partition_keys(count))
