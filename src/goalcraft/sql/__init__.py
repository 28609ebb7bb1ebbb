"""DuckDB over goalcraft's parquet and JSON outputs.

:func:`connect` opens an in-memory DuckDB with one view per output table that exists under the data
root; the views read the files as they are (nothing is copied or loaded ahead):

    manifest, trials               the ingest tables
    quarantine                     every rejected input, ingest and clip stage, with stage and reason
    clips                          one row per clip (the shards' parquet indexes)
    clip_shard_stats               one row per shard (the ``<shard>_stats.json`` records)
    clip_partitions                one row per materialized partition (``partition.json``)
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from goalcraft.storage import StoragePaths


def _quote(path: Path | str) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def view_sources(paths: StoragePaths) -> dict[str, str]:
    """View name → the SQL that reads it, for the outputs present on disk."""
    clips = paths.clips_dir
    views: dict[str, str] = {}
    if paths.manifest_table.is_file():
        views["manifest"] = f"SELECT * FROM read_parquet({_quote(paths.manifest_table)})"
    if paths.trials_table.is_file():
        views["trials"] = f"SELECT * FROM read_parquet({_quote(paths.trials_table)})"
    quarantine_files = [p for p in (paths.manifest_quarantine_table, paths.trials_quarantine_table) if p.is_file()]
    quarantine_files += sorted(clips.glob("p*/quarantine.parquet"))
    if quarantine_files:
        files = ", ".join(_quote(p) for p in quarantine_files)
        views["quarantine"] = f"SELECT * FROM read_parquet([{files}], union_by_name = true)"
    if any(clips.glob("p*/p*-*.parquet")):
        views["clips"] = f"SELECT * FROM read_parquet({_quote(clips / 'p*' / 'p*-*.parquet')})"
    if any(clips.glob("p*/*_stats.json")):
        views["clip_shard_stats"] = (
            f"SELECT * FROM read_json({_quote(clips / 'p*' / '*_stats.json')}, "
            "columns = {shard: 'VARCHAR', partition: 'VARCHAR', videos_seen: 'BIGINT', trials_seen: 'BIGINT', "
            "clips_written: 'BIGINT', failures: 'MAP(VARCHAR, BIGINT)', bytes: 'BIGINT', seconds: 'DOUBLE'})"
        )
    if any(clips.glob("p*/partition.json")):
        views["clip_partitions"] = f"SELECT * FROM read_json_auto({_quote(clips / 'p*' / 'partition.json')})"
    return views


def connect(data_root: Path | str) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for name, sql in view_sources(StoragePaths(Path(data_root))).items():
        con.execute(f"CREATE VIEW {name} AS {sql}")
    return con
