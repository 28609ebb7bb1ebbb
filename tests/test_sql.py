"""DuckDB views over hand-written outputs with known contents."""

import pyarrow as pa

from goalcraft.data.quarantine import QuarantineRecord, quarantine_table
from goalcraft.data.shards import INDEX_SCHEMA
from goalcraft.sql import connect, view_sources
from goalcraft.storage import StoragePaths, write_json_atomic, write_parquet_atomic


def _index_rows(shard: str, n: int, source: str):
    return [{"key": f"{source}-{i:05d}", "shard": shard, "source": "video", "source_id": source, "caption": f"c{i}",
             "window_start": float(i), "window_end": i + 2.0, "frame_timestamps": [i + k / 8 for k in range(16)],
             "bytes": 1000 + i} for i in range(n)]


def test_views_only_for_outputs_present(tmp_path):
    assert view_sources(StoragePaths(tmp_path)) == {}
    con = connect(tmp_path)
    assert con.execute("SELECT count(*) FROM duckdb_views() WHERE NOT internal").fetchone()[0] == 0


def test_views_read_the_files_as_written(tmp_path):
    paths = StoragePaths(tmp_path)
    write_parquet_atomic(quarantine_table([QuarantineRecord("m.jsonl:3", "manifest", "video_missing", "gone", "v9")]),
                         paths.manifest_quarantine_table)
    for part, shard, n, source in (("p0000", "p0000-00000", 3, "va"), ("p0001", "p0001-00000", 2, "vb")):
        d = paths.clip_partition_dir(part)
        write_parquet_atomic(pa.Table.from_pylist(_index_rows(shard, n, source), schema=INDEX_SCHEMA), d / f"{shard}.parquet")
        write_json_atomic({"shard": shard, "partition": part, "videos_seen": 1, "trials_seen": 0, "clips_written": n,
                           "failures": {"video_unreadable": 1} if part == "p0001" else {}, "bytes": 10 * n,
                           "seconds": 0.5}, d / f"{shard}_stats.json")
        write_json_atomic({"partition": part, "clips_written": n}, d / "partition.json")
        write_parquet_atomic(quarantine_table(
            [QuarantineRecord("videos/x.mp4", "decode", "video_unreadable", "bad", "vx", part)] if part == "p0001" else []),
            d / "quarantine.parquet")
    con = connect(tmp_path)
    assert set(view_sources(paths)) == {"quarantine", "quarantined_inputs", "clips", "clip_shard_stats", "clip_partitions"}
    assert con.execute("SELECT source_id, count(*), sum(bytes) FROM clips GROUP BY 1 ORDER BY 1").fetchall() == [
        ("va", 3, 3003), ("vb", 2, 2001)]
    assert con.execute("SELECT frame_timestamps[16] FROM clips WHERE key = 'vb-00001'").fetchone()[0] == 1 + 15 / 8
    assert con.execute("SELECT stage, reason, source_id, step FROM quarantine ORDER BY stage").fetchall() == [
        ("decode", "video_unreadable", "vx", "clips"), ("manifest", "video_missing", "v9", "ingest")]
    assert con.execute("SELECT sum(clips_written), sum(failures['video_unreadable']) FROM clip_shard_stats").fetchone() == (5, 1)
    assert con.execute("SELECT sum(clips_written) FROM clip_partitions").fetchone()[0] == 5


def test_goal_views_and_quarantine_across_steps(tmp_path):
    from goalcraft.data.goal_stage import GOAL_INDEX_SCHEMA

    paths = StoragePaths(tmp_path)
    bad_transcript = QuarantineRecord("videos/a.vtt", "transcript", "transcript_malformed", "line 3", "va", "p0000")
    write_parquet_atomic(quarantine_table([bad_transcript]), paths.clip_partition_dir("p0000") / "quarantine.parquet")
    write_parquet_atomic(quarantine_table([bad_transcript, QuarantineRecord(
        "trials/t1@frame 3 (trial)", "goal", "goal_too_early", "", "t1", "p0000")]),
        paths.goal_partition_dir("p0000") / "quarantine.parquet")
    rows = [{**r, "video_path": "videos/va.mp4", "miner": "transcript", "task": "collect_wood",
             "instruction": "collect wood", "confidence": 0.9, "success_time": r["window_end"],
             "success_frame": 16 + i} for i, r in enumerate(_index_rows("p0000-00000", 2, "va"))]
    write_parquet_atomic(pa.Table.from_pylist(rows, schema=GOAL_INDEX_SCHEMA),
                         paths.goal_partition_dir("p0000") / "p0000-00000.parquet")
    con = connect(tmp_path)
    assert {"quarantine", "quarantined_inputs", "goal_clips"} <= set(view_sources(paths))
    assert "clips" not in view_sources(paths)  # only goal shards exist
    assert con.execute("SELECT step, count(*) FROM quarantine GROUP BY 1 ORDER BY 1").fetchall() == [
        ("clips", 1), ("goals", 2)]
    assert con.execute("SELECT input, steps FROM quarantined_inputs ORDER BY input").fetchall() == [
        ("trials/t1@frame 3 (trial)", ["goals"]), ("videos/a.vtt", ["clips", "goals"])]
    assert con.execute("SELECT task, max(success_frame) FROM goal_clips GROUP BY 1").fetchall() == [
        ("collect_wood", 17)]


def test_clips_carry_their_partition_and_partition_of_matches_the_python_assignment(tmp_path):
    import duckdb

    from goalcraft.data.partition_keys import partition_of
    from goalcraft.data.tables import PARTITION_COUNT_KEY
    from goalcraft.sql import partition_of_macro

    ids = ["va", "vb", "19iEKTIulkM", "é-x", "trial/0001", "a'b"]
    for count in (1, 2, 256, 20_000):
        con = duckdb.connect()
        con.execute(partition_of_macro(count))
        assert [con.execute("SELECT partition_of(?)", [i]).fetchone()[0] for i in ids] == \
            [partition_of(i, count) for i in ids]

    paths = StoragePaths(tmp_path)
    write_parquet_atomic(pa.table({"id": ["va", "vb"]}).replace_schema_metadata({PARTITION_COUNT_KEY: b"2"}),
                         paths.manifest_table)
    for source in ("va", "vb"):
        part = partition_of(source, 2)
        shard = f"{part}-0000{ord(source[1]) % 2}"
        write_parquet_atomic(pa.Table.from_pylist(_index_rows(shard, 2, source), schema=INDEX_SCHEMA),
                             paths.clip_partition_dir(part) / f"{shard}.parquet")
    con = connect(tmp_path)
    assert "filename" not in [c[0] for c in con.execute("DESCRIBE clips").fetchall()]
    assert con.execute("SELECT DISTINCT source_id, partition FROM clips ORDER BY 1").fetchall() == [
        ("va", partition_of("va", 2)), ("vb", partition_of("vb", 2))]
    assert con.execute("SELECT key FROM clips WHERE partition = partition_of('vb') AND source_id = 'vb' "
                       "ORDER BY key").fetchall() == [("vb-00000",), ("vb-00001",)]
