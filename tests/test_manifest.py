from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from goalcraft.data.manifest import ManifestError, VideoRecord, read_manifest, read_manifests


def touch(path: Path, data: bytes = b"\x00") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def minedojo(vid: str, **extra: object) -> dict:
    record = {
        "id": vid,
        "title": f"Minecraft {vid}",
        "link": f"https://www.youtube.com/watch?v={vid}",
        "view_count": 1234,
        "like_count": 56,
        "duration": 612.0,
        "fps": 30,
    }
    record.update(extra)
    return record


def write_jsonl(path: Path, rows: list[object]) -> Path:
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    root.mkdir()
    return root


def test_minedojo_records_with_default_paths(corpus: Path) -> None:
    touch(corpus / "videos" / "aaa.mp4")
    touch(corpus / "videos" / "aaa.webm")  # mp4 preferred
    touch(corpus / "videos" / "bbb.webm")
    touch(corpus / "videos" / "bbb.info.json")  # yt-dlp side files are never picked
    touch(corpus / "videos" / "bbb.webp")
    touch(corpus / "videos" / "ccc.mkv")
    touch(corpus / "transcripts" / "aaa.json")
    touch(corpus / "transcripts" / "aaa.vtt")  # json preferred
    touch(corpus / "transcripts" / "bbb.vtt")
    manifest = write_jsonl(corpus / "manifest.jsonl", [minedojo("aaa"), minedojo("bbb"), minedojo("ccc")])

    records, quarantined = read_manifest(manifest, corpus)

    assert quarantined == []
    assert records == [
        VideoRecord("aaa", "Minecraft aaa", "https://www.youtube.com/watch?v=aaa", 1234, 56, 612.0, 30.0,
                    "videos/aaa.mp4", "transcripts/aaa.json"),
        VideoRecord("bbb", "Minecraft bbb", "https://www.youtube.com/watch?v=bbb", 1234, 56, 612.0, 30.0,
                    "videos/bbb.webm", "transcripts/bbb.vtt"),
        VideoRecord("ccc", "Minecraft ccc", "https://www.youtube.com/watch?v=ccc", 1234, 56, 612.0, 30.0,
                    "videos/ccc.mkv", None),
    ]
    assert isinstance(records[0].fps, float)


def test_optional_fields_default(corpus: Path) -> None:
    touch(corpus / "videos" / "x.mp4")
    manifest = write_jsonl(
        corpus / "m.jsonl",
        [{"id": "x", "duration": 10, "fps": 20, "view_count": None, "like_count": 7.0, "title": None}],
    )
    (record,), quarantined = read_manifest(manifest, corpus)
    assert quarantined == []
    assert (record.title, record.link, record.view_count, record.like_count) == ("", "", None, 7)
    assert (record.duration, record.fps) == (10.0, 20.0)


def test_explicit_path_and_transcript_fields(corpus: Path) -> None:
    touch(corpus / "local" / "clip one.mp4")
    touch(corpus / "subs" / "clip.vtt")
    manifest = write_jsonl(
        corpus / "m.jsonl",
        [
            {"id": "one", "duration": 5, "fps": 25, "path": "local/clip one.mp4", "transcript": "subs/clip.vtt"},
            # a named transcript that does not exist is kept: the transcript stage quarantines it
            {"id": "two", "duration": 5, "fps": 25, "path": "local/./clip one.mp4", "transcript": "subs/nope.json"},
        ],
    )
    records, quarantined = read_manifest(manifest, corpus)
    assert quarantined == []
    assert [(r.video_path, r.transcript_path) for r in records] == [
        ("local/clip one.mp4", "subs/clip.vtt"),
        ("local/clip one.mp4", "subs/nope.json"),
    ]


def test_symlinked_video_inside_root_is_reported_as_resolved(corpus: Path) -> None:
    touch(corpus / "store" / "real.mp4")
    (corpus / "videos").mkdir()
    os.symlink(corpus / "store" / "real.mp4", corpus / "videos" / "v.mp4")
    manifest = write_jsonl(corpus / "m.jsonl", [minedojo("v")])
    (record,), _ = read_manifest(manifest, corpus)
    assert record.video_path == "store/real.mp4"


def test_each_bad_row_is_quarantined_with_its_reason(tmp_path: Path, corpus: Path) -> None:
    for vid in ("ok", "dup", "esc", "abs", "lnk", "tr"):
        touch(corpus / "videos" / f"{vid}.mp4")
    touch(tmp_path / "outside.mp4")
    os.symlink(tmp_path / "outside.mp4", corpus / "videos" / "lnk2.mp4")
    rows: list[object] = [
        minedojo("ok"),                                   # 1
        '{"id": "broken", "duration": 3',                 # 2 truncated JSON
        "[1, 2, 3]",                                      # 3 not an object
        {"duration": 3, "fps": 30},                       # 4 no id
        minedojo(""),                                     # 5 empty id
        minedojo(17),                                     # 6 id not a string
        minedojo("a/b"),                                  # 7 id with a path separator
        minedojo("zero", duration=0),                     # 8
        minedojo("str", duration="12.5"),                 # 9
        '{"id": "nan", "duration": 10, "fps": NaN}',      # 10
        minedojo("nofps", fps=None),                      # 11
        minedojo("neg", view_count=-1),                   # 12
        minedojo("badtitle", title=42),                   # 13
        minedojo("boolfps", fps=True),                    # 14
        minedojo("dup"),                                  # 15 first "dup": kept
        minedojo("dup", title="second"),                  # 16 duplicate
        minedojo("missing"),                              # 17 no videos/missing.*
        minedojo("esc", path="../outside.mp4"),           # 18
        minedojo("abs", path=str(tmp_path / "outside.mp4")),  # 19
        minedojo("lnk", path="videos/lnk2.mp4"),          # 20 symlink out of the root
        minedojo("tr", transcript="../../etc/passwd"),    # 21
        minedojo("gone", path="videos/gone.mp4"),         # 22 explicit path, no file
        minedojo("lnk2"),                                 # 23 default path is a symlink out
        minedojo("emptypath", path=""),                   # 24
    ]
    manifest = write_jsonl(corpus / "manifest.jsonl", rows)

    records, quarantined = read_manifest(manifest, corpus)

    assert [r.id for r in records] == ["ok", "dup"]
    assert records[1].title == "Minecraft dup"  # the first one is kept
    got = [(q.input, q.reason, q.source_id) for q in quarantined]
    assert got == [
        ("manifest.jsonl:2", "manifest_malformed", ""),
        ("manifest.jsonl:3", "manifest_malformed", ""),
        ("manifest.jsonl:4", "manifest_invalid_field", ""),
        ("manifest.jsonl:5", "manifest_invalid_field", ""),
        ("manifest.jsonl:6", "manifest_invalid_field", ""),
        ("manifest.jsonl:7", "manifest_invalid_field", ""),
        ("manifest.jsonl:8", "manifest_invalid_field", ""),
        ("manifest.jsonl:9", "manifest_invalid_field", ""),
        ("manifest.jsonl:10", "manifest_invalid_field", ""),
        ("manifest.jsonl:11", "manifest_invalid_field", ""),
        ("manifest.jsonl:12", "manifest_invalid_field", ""),
        ("manifest.jsonl:13", "manifest_invalid_field", ""),
        ("manifest.jsonl:14", "manifest_invalid_field", ""),
        ("manifest.jsonl:16", "manifest_duplicate_id", "dup"),
        ("manifest.jsonl:17", "video_missing", "missing"),
        ("manifest.jsonl:18", "path_escapes_root", "esc"),
        ("manifest.jsonl:19", "path_escapes_root", "abs"),
        ("manifest.jsonl:20", "path_escapes_root", "lnk"),
        ("manifest.jsonl:21", "path_escapes_root", "tr"),
        ("manifest.jsonl:22", "video_missing", "gone"),
        ("manifest.jsonl:23", "path_escapes_root", "lnk2"),
        ("manifest.jsonl:24", "path_invalid", "emptypath"),
    ]
    assert all(q.stage == "manifest" for q in quarantined)
    assert "fps" in quarantined[8].detail and "duration" in quarantined[6].detail


def test_blank_lines_are_skipped_but_counted(corpus: Path) -> None:
    touch(corpus / "videos" / "a.mp4")
    manifest = corpus / "m.jsonl"
    manifest.write_text('\n  \n{"id": "a", "duration": 1, "fps": 30}\r\n\n{oops}\n', encoding="utf-8")
    records, quarantined = read_manifest(manifest, corpus)
    assert [r.id for r in records] == ["a"]
    assert [(q.input, q.reason) for q in quarantined] == [("m.jsonl:5", "manifest_malformed")]


def test_first_claim_of_an_id_wins_even_if_it_fails(corpus: Path) -> None:
    touch(corpus / "videos" / "b.mp4")
    manifest = write_jsonl(
        corpus / "m.jsonl",
        [minedojo("b", path="videos/missing.mp4"), minedojo("b")],
    )
    records, quarantined = read_manifest(manifest, corpus)
    assert records == []
    assert [q.reason for q in quarantined] == ["video_missing", "manifest_duplicate_id"]


def test_json_list_manifest_reports_line_numbers(corpus: Path) -> None:
    touch(corpus / "videos" / "a.mp4")
    touch(corpus / "videos" / "b.mp4")
    manifest = corpus / "manifest.json"
    manifest.write_text(
        "[\n"
        '  {"id": "a", "duration": 5, "fps": 30},\n'
        '  {"id": "a", "duration": 5, "fps": 30},\n'
        "  7,\n"
        "  {\n"
        '    "id": "b", "duration": -5, "fps": 30\n'
        "  }\n"
        "]\n",
        encoding="utf-8",
    )
    records, quarantined = read_manifest(manifest, corpus)
    assert [r.id for r in records] == ["a"]
    assert [(q.input, q.reason) for q in quarantined] == [
        ("manifest.json:3", "manifest_duplicate_id"),
        ("manifest.json:4", "manifest_malformed"),
        ("manifest.json:5", "manifest_invalid_field"),
    ]


def test_empty_json_list_and_empty_jsonl(corpus: Path) -> None:
    (corpus / "m.json").write_text(" [ ] ", encoding="utf-8")
    (corpus / "m.jsonl").write_text("", encoding="utf-8")
    assert read_manifest(corpus / "m.json", corpus) == ([], [])
    assert read_manifest(corpus / "m.jsonl", corpus) == ([], [])


def test_bom_is_accepted(corpus: Path) -> None:
    touch(corpus / "videos" / "a.mp4")
    (corpus / "m.jsonl").write_bytes(b"\xef\xbb\xbf" + json.dumps(minedojo("a")).encode() + b"\n")
    records, quarantined = read_manifest(corpus / "m.jsonl", corpus)
    assert [r.id for r in records] == ["a"] and quarantined == []


@pytest.mark.parametrize(
    "name, content",
    [
        ("m.jsonl", b'{"id": "a", "title": "caf\xe9", "duration": 1, "fps": 1}\n'),  # Latin-1, not UTF-8
        ("m.json", b'[{"id": "a", "duration": 1, "fps": 1}'),  # truncated JSON list
        ("m.json", b'{"id": "a", "duration": 1, "fps": 1}'),  # not a list
    ],
)
def test_unreadable_manifest_raises(corpus: Path, name: str, content: bytes) -> None:
    (corpus / name).write_bytes(content)
    with pytest.raises(ManifestError, match=name):
        read_manifest(corpus / name, corpus)


def test_missing_manifest_or_root_raises(tmp_path: Path, corpus: Path) -> None:
    with pytest.raises(ManifestError, match=r"nope.jsonl' not found .*\[paths\] manifests = \[\]"):
        read_manifest(corpus / "nope.jsonl", corpus)
    (corpus / "a_folder.jsonl").mkdir()
    with pytest.raises(ManifestError, match="cannot read"):
        read_manifest(corpus / "a_folder.jsonl", corpus)
    (corpus / "m.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(ManifestError, match="not a directory"):
        read_manifest(corpus / "m.jsonl", tmp_path / "no_root")


def test_ids_are_unique_across_manifests(corpus: Path) -> None:
    for vid in ("a", "b", "c"):
        touch(corpus / "videos" / f"{vid}.mp4")
    first = write_jsonl(corpus / "one.jsonl", [minedojo("a"), minedojo("b")])
    second = write_jsonl(corpus / "two.jsonl", [minedojo("b"), minedojo("c")])
    records, quarantined = read_manifests([first, second], corpus)
    assert [r.id for r in records] == ["a", "b", "c"]
    assert [(q.input, q.reason, q.source_id) for q in quarantined] == [
        ("two.jsonl:1", "manifest_duplicate_id", "b")
    ]


def test_lone_surrogates(corpus: Path) -> None:
    touch(corpus / "videos" / "a.mp4")
    manifest = corpus / "m.jsonl"
    manifest.write_text(
        '{"id": "a", "title": "bad \\ud800 title", "duration": 1, "fps": 1}\n'
        '{"id": "b\\udc80", "duration": 1, "fps": 1}\n',
        encoding="utf-8",
    )
    records, quarantined = read_manifest(manifest, corpus)
    assert records[0].title == "bad ? title"
    assert [(q.input, q.reason) for q in quarantined] == [("m.jsonl:2", "manifest_invalid_field")]


def test_yt_dlp_caption_name_is_found(corpus: Path) -> None:
    touch(corpus / "videos" / "a.mp4")
    touch(corpus / "transcripts" / "a.en.vtt")
    manifest = write_jsonl(corpus / "m.jsonl", [minedojo("a")])
    (record,), _ = read_manifest(manifest, corpus)
    assert record.transcript_path == "transcripts/a.en.vtt"


def test_require_video_false_keeps_records_without_a_video(corpus: Path) -> None:
    touch(corpus / "videos" / "b.webm")
    manifest = write_jsonl(
        corpus / "m.jsonl",
        [minedojo("a"), minedojo("b"), minedojo("c", path="local/c.mkv"), minedojo("d", path="../x.mp4")],
    )
    records, quarantined = read_manifest(manifest, corpus, require_video=False)
    assert [(r.id, r.video_path) for r in records] == [
        ("a", "videos/a.mp4"), ("b", "videos/b.webm"), ("c", "local/c.mkv")
    ]
    assert [(q.source_id, q.reason) for q in quarantined] == [("d", "path_escapes_root")]
    records, _ = read_manifests([manifest], corpus, require_video=False)
    assert len(records) == 3


def test_pathological_rows_are_quarantined_not_crashes(corpus: Path) -> None:
    touch(corpus / "videos" / "a.mp4")
    manifest = corpus / "m.jsonl"
    manifest.write_text(
        '{"id": "a", "duration": 1' + "0" * 5000 + ', "fps": 30}\n'  # int too long to parse
        + "[" * 100_000 + "]" * 100_000 + "\n"  # too deeply nested
        + '{"id": "a", "duration": 1' + "0" * 400 + ', "fps": 30}\n'  # too large for a float
        + '{"id": "a", "duration": 1, "fps": 30, "view_count": 99999999999999999999}\n',  # > int64
        encoding="utf-8",
    )
    records, quarantined = read_manifest(manifest, corpus)
    assert records == []
    assert [(q.input, q.reason) for q in quarantined] == [
        ("m.jsonl:1", "manifest_malformed"),
        ("m.jsonl:2", "manifest_malformed"),
        ("m.jsonl:3", "manifest_invalid_field"),
        ("m.jsonl:4", "manifest_invalid_field"),
    ]


def test_linked_folders_give_the_answers_of_a_file_by_file_check(tmp_path: Path, corpus: Path) -> None:
    """The videos/ and transcripts/ folders are listed once; a folder that is a link behaves as if
    every record's files were resolved one by one."""
    touch(corpus / "store" / "vids" / "a.mp4")
    os.symlink(corpus / "store" / "vids", corpus / "videos")  # a link inside the root
    touch(tmp_path / "elsewhere" / "a.json", b"[]")
    os.symlink(tmp_path / "elsewhere", corpus / "transcripts")  # a link out of the root
    records, quarantined = read_manifests([write_jsonl(corpus / "m.jsonl", [minedojo("a"), minedojo("b")])],
                                          corpus)
    assert records == []
    assert [(q.source_id, q.reason) for q in quarantined] == [("a", "path_escapes_root"), ("b", "video_missing")]
    (corpus / "transcripts").unlink()
    (records,), _ = read_manifests([corpus / "m.jsonl"], corpus)
    assert (records.video_path, records.transcript_path) == ("store/vids/a.mp4", None)
    # A video folder linked out of the root: a present file escapes, an absent one is just missing.
    (corpus / "videos").unlink()
    os.symlink(tmp_path / "elsewhere", corpus / "videos")
    touch(tmp_path / "elsewhere" / "a.mp4")
    _, quarantined = read_manifests([corpus / "m.jsonl"], corpus)
    assert [(q.source_id, q.reason) for q in quarantined] == [("a", "path_escapes_root"), ("b", "video_missing")]


def test_not_utf8_names_the_byte_offset_in_the_file(corpus: Path) -> None:
    good = json.dumps(minedojo("a")).encode() + b"\n"
    (corpus / "m.jsonl").write_bytes(b"\xef\xbb\xbf" + good + b'{"id": "caf\xe9"}\n')
    with pytest.raises(ManifestError, match=rf"not UTF-8 \(byte offset {3 + len(good) + 11}\)"):
        read_manifest(corpus / "m.jsonl", corpus)


@pytest.mark.slow
def test_a_manifest_of_20000_records(corpus: Path) -> None:
    """MineDojo-sized reading on a smaller corpus: every field, path, partition and rejection of
    20,000 records (the 730K figures are in docs/benchmarks.md, from bench/scale_730k.py)."""
    from goalcraft.data.partition_keys import partition_of
    from goalcraft.data.tables import PARTITION_COUNT_KEY
    from goalcraft.stages.ingest import ingest_manifests
    from goalcraft.storage import StoragePaths

    import pyarrow.parquet as pq

    n = 20_000
    rows, expected, rejected = [], [], []
    template = touch(corpus / ".template.mp4")
    (corpus / "videos").mkdir()
    (corpus / "transcripts").mkdir()
    for i in range(n):
        vid = f"v{i:07d}x"
        rows.append(minedojo(vid, duration=10.0 + i % 97, view_count=i))
        if i % 10 == 3:
            rejected.append((f"m.jsonl:{i + 1}", vid, "video_missing"))
            continue
        ext = "webm" if i % 7 == 0 else "mp4"
        os.link(template, corpus / "videos" / f"{vid}.{ext}")
        transcript = None
        if i % 3 == 0:
            transcript = f"transcripts/{vid}{'.en.vtt' if i % 2 else '.json'}"
            touch(corpus / transcript)
        expected.append((vid, f"videos/{vid}.{ext}", transcript, 10.0 + i % 97, i))
    rows += [minedojo("v0000000x"), {"id": "", "duration": 1, "fps": 1}]  # a duplicate, an invalid id
    rejected += [(f"m.jsonl:{n + 1}", "v0000000x", "manifest_duplicate_id"),
                 (f"m.jsonl:{n + 2}", "", "manifest_invalid_field")]
    write_jsonl(corpus / "m.jsonl", rows)

    records, quarantined = read_manifests([corpus / "m.jsonl"], corpus)
    assert [(r.id, r.video_path, r.transcript_path, r.duration, r.view_count) for r in records] == expected
    assert [(q.input, q.source_id, q.reason) for q in quarantined] == rejected

    paths = StoragePaths(corpus.parent / "data")
    result = ingest_manifests(paths, corpus, [corpus / "m.jsonl"], 256)
    table = pq.read_table(paths.manifest_table)
    assert table.column("id").to_pylist() == [e[0] for e in expected]
    assert table.column("partition").to_pylist() == [partition_of(e[0], 256) for e in expected]
    assert table.schema.metadata[PARTITION_COUNT_KEY] == b"256"
    assert result.metadata["videos"] == len(expected) and result.metadata["rejected"] == len(rejected)
    assert result.metadata["with_transcript"] == sum(e[2] is not None for e in expected)
    assert result.metadata["partitions_used"] == 256
    assert result.metadata["hours"] == round(sum(e[3] for e in expected) / 3600, 3)

    # The same records as one JSON list: line numbers are found element by element.
    (corpus / "m.json").write_text("[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]\n")
    records, quarantined = read_manifests([corpus / "m.json"], corpus)
    assert len(records) == len(expected)
    # One record a line after the opening "[": each line number is one more than in the JSONL file.
    assert [(q.input, q.reason) for q in quarantined] == [(f"m.json:{int(where.split(':')[1]) + 1}", reason)
                                                          for where, _, reason in rejected]
