import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from goalcraft.data.manifest import VideoRecord
from goalcraft.data.tables import (
    PARTITION_COUNT_KEY,
    StalePartitioningError,
    read_partition_rows,
    record_schema,
    records_table,
    rows_where,
    table_records,
)


def test_records_round_trip_through_arrow_with_extra_columns():
    records = [
        VideoRecord("a", "A", "https://youtu.be/a", 10, None, 61.5, 30.0, "videos/a.mp4", "transcripts/a.json"),
        VideoRecord("b", "B", "", None, 3, 12.0, 29.97, "videos/b.webm", None),
    ]
    table = records_table(records, VideoRecord, extra={"partition": ["p0001", "p0000"]})
    assert table.column("partition").to_pylist() == ["p0001", "p0000"]
    assert table.column("duration").to_pylist() == [61.5, 12.0]
    assert table_records(table, VideoRecord) == records


def test_empty_table_keeps_columns():
    table = records_table([], VideoRecord)
    assert table.num_rows == 0 and "video_path" in table.column_names
    assert table_records(table, VideoRecord) == []


def test_empty_tables_are_typed_like_full_ones():
    from goalcraft.data.trials import TrialRecord

    for cls in (VideoRecord, TrialRecord):
        empty, full_schema = records_table([], cls), record_schema(cls)
        assert empty.schema == full_schema
    assert record_schema(TrialRecord).field("success").type == pa.bool_()
    assert record_schema(TrialRecord).field("success_frame").type == pa.int64()
    assert record_schema(VideoRecord).field("duration").type == pa.float64()
    assert record_schema(VideoRecord).field("transcript_path").nullable


def test_rows_where_and_partition_reads_on_empty_and_full_tables(tmp_path):
    records = [
        VideoRecord("a", "A", "", None, None, 1.0, 30.0, "videos/a.mp4", None),
        VideoRecord("b", "B", "", None, None, 2.0, 30.0, "videos/b.mp4", None),
    ]
    table = records_table(records, VideoRecord, extra={"partition": ["p0001", "p0000"]})
    assert rows_where(table, "partition", "p0000").column("id").to_pylist() == ["b"]
    assert rows_where(table, "partition", "p0002").num_rows == 0
    empty = records_table([], VideoRecord, extra={"partition": []})
    assert rows_where(empty, "partition", "p0000").num_rows == 0  # pyarrow refuses a [] filter mask

    path = tmp_path / "manifest.parquet"
    for t, expected in ((table, [records[1]]), (empty, [])):
        pq.write_table(t.replace_schema_metadata({PARTITION_COUNT_KEY: b"2"}), path)
        assert read_partition_rows(path, "p0000", 2, VideoRecord) == expected
    with pytest.raises(StalePartitioningError, match="split into 2 partitions but the clip partitions number 4"):
        read_partition_rows(path, "p0000", 4, VideoRecord)


def test_a_table_missing_record_columns_is_refused_by_name():
    table = records_table([], VideoRecord).drop_columns(["fps"])
    with pytest.raises(ValueError, match=r"lacks the VideoRecord column\(s\) \['fps'\]"):
        table_records(table, VideoRecord)
