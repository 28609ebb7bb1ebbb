"""DuckDB over goalcraft's parquet and JSON outputs.

:func:`connect` opens an in-memory DuckDB with one view per output table that exists under the data
root; the views read the files as they are (nothing is copied or loaded ahead):

    manifest, trials               the ingest tables
    quarantine                     every rejected input with its stage and reason, and the ``step``
                                   (ingest, clips, goals) whose records hold it
    quarantined_inputs             the same, one row per input and reason, with the steps that hit it
    clips                          one row per clip (the shards' parquet indexes) and its ``partition``
    clip_shard_stats               one row per shard (the ``<shard>_stats.json`` records)
    clip_partitions                one row per materialized partition (``partition.json``)
    goal_clips, goal_clip_shard_stats, goal_clip_partitions
                                   the same three for the goal clips
    goal_embeddings                one row per goal clip: provenance and its 512-d embedding
    clip_embeddings                one row per clip of every embedded partition
    eval_runs, eval_summary, eval_differences, eval_per_task, eval_per_pair, eval_per_instruction, eval_examples
                                   the evaluation tables of every run (goalcraft.evaluation.run)
    agent_success                  one row per rollout episode of every agent-success run: run_id, model
                                   (goal source), task, instruction, guidance, world_seed, success, steps,
                                   achievements, ... (goalcraft.evaluation.agent_success)

``partition_of(id)`` (a macro, once the ingest tables exist) names the partition of a video or trial
id, so ``SELECT * FROM clips WHERE partition = partition_of('<id>') AND source_id = '<id>'`` reads
one partition's files only.

Named queries live beside this file as ``<name>.sql`` (:func:`named_queries`, :func:`run_query`):
``comparison`` (the latest run's metrics, models side by side), ``confused_pairs`` (most-confused task
pairs), ``metric_history`` (metrics over runs) and ``agent_success`` (the latest agent-success run's
success rates with Wilson 95% intervals). ``goalcraft sql NAME`` or ``goalcraft sql "SELECT …"``
prints the result.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa

from goalcraft.storage import StoragePaths


def _quote(path: Path | str) -> str:
    return "'" + str(path).replace("'", "''") + "'"


_SHARD_STATS_COLUMNS = (
    "columns = {shard: 'VARCHAR', partition: 'VARCHAR', videos_seen: 'BIGINT', trials_seen: 'BIGINT', "
    "clips_written: 'BIGINT', failures: 'MAP(VARCHAR, BIGINT)', bytes: 'BIGINT', seconds: 'DOUBLE'}"
)


#: The partition folder a file lies in (``clips/p0003/p0003-00000.parquet`` → ``p0003``).
_PARTITION_OF_FILE = "parse_filename(parse_dirpath(filename))"


def _parquet_list(files: list[Path]) -> str:
    return "[" + ", ".join(_quote(p) for p in files) + "]"


def _empty_select(schema: pa.Schema) -> str:
    """A zero-row SELECT with the DuckDB types of ``schema``: the view of a stage that ran and wrote
    no rows, so queries over it give empty results rather than a missing-table error."""
    types = duckdb.from_arrow(schema.empty_table()).types
    columns = ", ".join(f'CAST(NULL AS {t}) AS "{f.name}"' for f, t in zip(schema, types))
    return f"SELECT {columns} WHERE false"


def _index_schema(stage: str) -> pa.Schema:
    # Imported only for an empty stage: the shard modules load the decoders (about 1 s at start-up).
    if stage == "goals":
        from goalcraft.data.goal_stage import GOAL_INDEX_SCHEMA
        return GOAL_INDEX_SCHEMA
    from goalcraft.data.shards import INDEX_SCHEMA
    return INDEX_SCHEMA


def _partitioned_views(views: dict[str, str], root: Path, prefix: str, stage: str) -> None:
    """``<prefix>s``, ``<prefix>_shard_stats``, ``<prefix>_partitions`` for one shard stage folder.

    The clip views carry each row's ``partition``, read from its file's folder: a filter on it skips
    the other partitions' files unopened (``WHERE partition = partition_of('<video id>')``), which is
    what keeps one video's clips under a second among the 256 partitions of a 730K-video corpus.
    """
    if any(root.glob("p*/p*-*.parquet")):
        views[f"{prefix}s"] = (f"SELECT * EXCLUDE (filename), {_PARTITION_OF_FILE} AS partition "
                               f"FROM read_parquet({_quote(root / 'p*' / 'p*-*.parquet')}, filename = true)")
    elif any(root.glob("p*/partition.json")):
        views[f"{prefix}s"] = f"SELECT *, CAST(NULL AS VARCHAR) AS partition FROM ({_empty_select(_index_schema(stage))})"
    if any(root.glob("p*/*_stats.json")):
        views[f"{prefix}_shard_stats"] = (
            f"SELECT * FROM read_json({_quote(root / 'p*' / '*_stats.json')}, {_SHARD_STATS_COLUMNS})")
    if any(root.glob("p*/partition.json")):
        views[f"{prefix}_partitions"] = f"SELECT * FROM read_json_auto({_quote(root / 'p*' / 'partition.json')})"


def view_sources(paths: StoragePaths) -> dict[str, str]:
    """View name → the SQL that reads it, for the outputs present on disk."""
    views: dict[str, str] = {}
    if paths.manifest_table.is_file():
        views["manifest"] = f"SELECT * FROM read_parquet({_quote(paths.manifest_table)})"
    if paths.trials_table.is_file():
        views["trials"] = f"SELECT * FROM read_parquet({_quote(paths.trials_table)})"
    # Each step records the inputs it could not use. The clip and goal steps both read transcripts,
    # so a bad transcript is in both: ``step`` says which wrote the row, ``quarantined_inputs`` has one
    # row per (input, stage, reason) with the steps that hit it.
    steps = {
        "ingest": [p for p in (paths.manifest_quarantine_table, paths.trials_quarantine_table) if p.is_file()],
        "clips": sorted(paths.clips_dir.glob("p*/quarantine.parquet")),
        "goals": sorted(paths.goals_dir.glob("p*/quarantine.parquet")),
    }
    parts = [f"SELECT *, '{step}' AS step FROM read_parquet({_parquet_list(files)}, union_by_name = true)"
             for step, files in steps.items() if files]
    if parts:
        views["quarantine"] = " UNION ALL BY NAME ".join(parts)
        views["quarantined_inputs"] = (
            "SELECT input, stage, reason, any_value(source_id) AS source_id, any_value(detail) AS detail, "
            "list(DISTINCT step ORDER BY step) AS steps FROM quarantine GROUP BY input, stage, reason")
    _partitioned_views(views, paths.clips_dir, "clip", "clips")
    _partitioned_views(views, paths.goals_dir, "goal_clip", "goals")
    if paths.goal_embeddings_table.is_file():
        views["goal_embeddings"] = f"SELECT * FROM read_parquet({_quote(paths.goal_embeddings_table)})"
    clip_embedding_files = sorted(paths.clip_embeddings_dir.glob("p*.parquet"))
    if clip_embedding_files:
        views["clip_embeddings"] = f"SELECT * FROM read_parquet({_parquet_list(clip_embedding_files)})"
    if any(paths.agent_success_dir.glob("*.parquet")):
        views["agent_success"] = (f"SELECT * FROM read_parquet({_quote(paths.agent_success_dir / '*.parquet')}, "
                                  "union_by_name = true)")
    for table in ("runs", "summary", "differences", "per_task", "per_pair", "per_instruction", "examples"):
        if any((paths.evaluation_dir / table).glob("*.parquet")):
            views[f"eval_{table}"] = (f"SELECT * FROM read_parquet({_quote(paths.evaluation_dir / table / '*.parquet')}, "
                                      "union_by_name = true)")
    return views


def named_queries() -> dict[str, str]:
    """Query name → SQL, from the ``*.sql`` files shipped with goalcraft.sql."""
    from importlib import resources

    folder = resources.files("goalcraft.sql")
    return {p.name[:-4]: p.read_text(encoding="utf-8") for p in folder.iterdir() if p.name.endswith(".sql")}


def run_query(data_root: Path | str, name_or_sql: str) -> pa.Table:
    """A named query (see :func:`named_queries`) or any SQL, over the views of :func:`connect`."""
    sql = named_queries().get(name_or_sql, name_or_sql)
    return connect(data_root).sql(sql).to_arrow_table()


def format_table(table: pa.Table, max_rows: int = 200) -> str:
    """A plain-text table for the terminal (floats to 4 significant digits)."""
    def cell(v) -> str:
        return f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))

    rows = [[cell(v) for v in r.values()] for r in table.slice(0, max_rows).to_pylist()]
    head = table.column_names
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    if table.num_rows > max_rows:
        lines.append(f"... {table.num_rows - max_rows} more rows")
    return "\n".join(lines)


def partition_of_macro(count: int) -> str:
    """A DuckDB macro ``partition_of(id)``: goalcraft.data.partition_keys.partition_of in SQL (the
    first 8 bytes of the id's SHA-1, big-endian, modulo the partition count)."""
    from goalcraft.data.partition_keys import partition_key

    width = len(partition_key(0, count)) - 1
    return (f"CREATE MACRO partition_of(id) AS "
            f"'p' || lpad(((('0x' || left(sha1(id), 16))::UBIGINT) % {count})::VARCHAR, {width}, '0')")


def _partition_count(paths: StoragePaths) -> int | None:
    """The partition count the ingest tables were split into, from the manifest table's metadata."""
    import pyarrow.parquet as pq

    from goalcraft.data.tables import PARTITION_COUNT_KEY

    if not paths.manifest_table.is_file():
        return None
    count = int((pq.read_schema(paths.manifest_table).metadata or {}).get(PARTITION_COUNT_KEY, b"0"))
    return count or None


def connect(data_root: Path | str) -> duckdb.DuckDBPyConnection:
    """The views of :func:`view_sources`, and ``partition_of(id)`` when the ingest tables exist."""
    con = duckdb.connect()
    paths = StoragePaths(Path(data_root))
    for name, sql in view_sources(paths).items():
        con.execute(f"CREATE VIEW {name} AS {sql}")
    count = _partition_count(paths)
    if count:
        con.execute(partition_of_macro(count))
    return con
