from goalcraft.data.manifest import VideoRecord
from goalcraft.data.tables import records_table, table_records


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
