"""The clip stage on real Crafter video: content, bad input, crash safety, idempotency."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections import Counter, defaultdict
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest

from goalcraft.formats import CLIP_FRAMES
from goalcraft.data.clip_stage import ClipStageSettings, build_clip_partition
from goalcraft.data.decode import get_decoder
from goalcraft.data.manifest import read_manifests
from goalcraft.data.shards import iter_shard, read_clip, shard_indexes, verify_partition
from goalcraft.data.transcripts import read_transcript
from goalcraft.data.trials import scan_trials
from goalcraft.data.windows import WindowRules, windows_from_segments
from goalcraft.storage import StoragePaths

SETTINGS = ClipStageSettings(rules=WindowRules(), trial_window_s=3.2, shard_target_bytes=2_000_000)


def _ingest(corpus: Path):
    videos, rejected_videos = read_manifests([corpus / "manifest.jsonl"], corpus)
    trials, rejected_trials = scan_trials(corpus / "trials", corpus)
    return videos, trials, rejected_videos + rejected_trials


def _clips(partition_dir: Path) -> dict[str, tuple[np.ndarray, str, dict]]:
    out = {}
    for index in shard_indexes(partition_dir):
        for sample in iter_shard(index.with_suffix(".tar")):
            assert sample["__key__"] not in out, "duplicate sample key"
            out[sample["__key__"]] = read_clip(sample)
    return out


@pytest.fixture(scope="module")
def clean_run(crafter_corpus, tmp_path_factory):
    storage = StoragePaths(tmp_path_factory.mktemp("clean"))
    videos, trials, rejected = _ingest(crafter_corpus)
    assert rejected == []
    assert {t.layout for t in trials} == {"goalcraft", "steve1"}
    report = build_clip_partition("p0000", videos, trials, crafter_corpus, storage, SETTINGS)
    return storage, videos, trials, report


def test_every_transcript_window_becomes_a_clip_with_its_caption(crafter_corpus, clean_run):
    storage, videos, _, report = clean_run
    clips = _clips(storage.clip_partition_dir("p0000"))
    decoder = get_decoder("pyav")
    for video in videos:
        segments = read_transcript(crafter_corpus / video.transcript_path)
        with decoder.open(crafter_corpus / video.video_path) as handle:
            info = handle.info
            expected = windows_from_segments(segments, info.duration, info.fps, SETTINGS.rules).windows
            ours = sorted((c for c in clips.values() if c[2]["source_id"] == video.id),
                          key=lambda c: (c[2]["window_start"], c[2]["window_end"]))
            assert len(ours) == len(expected) > 0
            for (frames, caption, meta), window in zip(ours, expected):
                assert caption == window.caption
                assert [segments[i].text for i in meta["segment_indices"]] == [caption]
                assert meta["window_start"] == pytest.approx(window.start)
                assert meta["window_end"] == pytest.approx(window.end)
                ts = np.array(meta["frame_timestamps"])
                assert len(ts) == CLIP_FRAMES and np.all(np.diff(ts) > 0)
                # Each frame is the one on screen at its sampling time, which lies inside the window.
                dur = window.end - window.start
                t = window.start + (np.arange(CLIP_FRAMES) + 0.5) * dur / CLIP_FRAMES
                assert np.all(ts <= t + 1e-6) and np.all(t < ts + 1 / info.fps + 1e-6)
                assert np.all(ts > window.start - 1 / info.fps) and np.all(ts < window.end)
                np.testing.assert_allclose(ts, np.array(meta["frame_indices"]) / info.fps, atol=1e-6)
                # The stored pixels are those frames, up to JPEG error (Crafter's pixel-art edges
                # cost q90 JPEG ~4 grey levels on average; frames from elsewhere differ by tens).
                direct = handle.read(meta["frame_indices"]).frames
                assert frames.shape == (16, 160, 256, 3)
                assert np.abs(frames.astype(int) - direct.astype(int)).mean() < 6
    assert report.videos_seen == len(videos)


def test_trials_are_tiled_and_captioned_with_their_instruction(crafter_corpus, clean_run):
    storage, _, trials, report = clean_run
    clips = _clips(storage.clip_partition_dir("p0000"))
    quarantined = pq.read_table(storage.clip_partition_dir("p0000") / "quarantine.parquet").to_pylist()
    for trial in trials:
        ours = [c for c in clips.values() if c[2]["source_id"] == trial.id]
        with get_decoder("pyav").open(crafter_corpus / trial.video_path) as handle:
            fps = handle.info.fps
            end = trial.success_time if trial.success else handle.info.duration
        if end * fps < CLIP_FRAMES:
            # Succeeded before 16 frames were on screen: no clip, and the reason is recorded.
            assert ours == []
            assert [(q["stage"], q["reason"]) for q in quarantined if q["source_id"] == trial.id] == [
                ("window", "window_too_short")]
            continue
        # Tiled up to the success moment; a trial shorter than one window is one clip of all of it.
        assert len(ours) == max(1, int(end // 3.2)), trial.id
        assert max(c[2]["window_end"] for c in ours) <= end + 1e-6
        assert {c[1] for c in ours} == {trial.instruction}
        starts = sorted(c[2]["window_start"] for c in ours)
        assert starts == pytest.approx([i * 3.2 for i in range(len(ours))])
        assert all(np.all(np.diff(c[2]["frame_indices"]) > 0) for c in ours)
        assert all(c[2]["success"] == trial.success and c[2]["layout"] == trial.layout for c in ours)
    assert report.trials_seen == len(trials)


def test_partition_outputs_agree(clean_run):
    storage, _, _, report = clean_run
    part = storage.clip_partition_dir("p0000")
    shards, clips, problems = verify_partition(part)
    assert problems == []
    assert clips == report.clips_written and shards == len(report.shards) >= 2  # 2 MB target rolls shards
    stats = [json.loads(p.read_text()) for p in sorted(part.glob("*_stats.json"))]
    assert sum(s["clips_written"] for s in stats) == report.clips_written
    assert sum(s["videos_seen"] for s in stats) == report.videos_seen
    assert sum(s["bytes"] for s in stats) == report.bytes
    summary = json.loads((part / "partition.json").read_text())
    assert summary["clips_written"] == report.clips_written
    assert pq.read_table(part / "quarantine.parquet").num_rows == sum(report.failures.values())
    assert not list(storage.staging_dir.iterdir())


# --- bad input ------------------------------------------------------------------------------


def _faststart_truncated(src: Path, dst: Path, keep: float) -> None:
    """Remux with the index (moov) first, then cut the tail: the container still claims every
    frame, but the last ones cannot be decoded."""
    tmp = dst.with_suffix(".full.mp4")
    with av.open(str(src)) as inp, av.open(str(tmp), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is None:
                continue
            packet.stream = stream
            out.mux(packet)
    data = tmp.read_bytes()
    dst.write_bytes(data[: int(len(data) * keep)])
    tmp.unlink()


def _add_video(corpus: Path, vid: str, video_bytes: bytes | None, transcript: bytes | None, *,
               path: str | None = None, duration: float = 15.0) -> None:
    if video_bytes is not None:
        (corpus / "videos" / f"{vid}.mp4").write_bytes(video_bytes)
    record = {"id": vid, "title": vid, "link": "", "view_count": 0, "like_count": 0, "duration": duration, "fps": 10}
    if path is not None:
        record["path"] = path
    if transcript is not None:
        (corpus / "transcripts" / f"{vid}.json").write_bytes(transcript)
        record["transcript"] = f"transcripts/{vid}.json"
    with open(corpus / "manifest.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


def test_bad_inputs_are_quarantined_and_the_rest_goes_on(corpus_copy, clean_run, tmp_path):
    corpus = corpus_copy
    good_video = sorted((corpus / "videos").glob("*.mp4"))[0]
    good_bytes = good_video.read_bytes()
    ok_transcript = json.dumps([{"text": "collect some wood", "start": 3.0, "duration": 2.0}]).encode()
    rng = np.random.default_rng(0)
    _add_video(corpus, "bad-corrupt", rng.integers(0, 256, 50_000, dtype=np.uint8).tobytes(), ok_transcript)
    _add_video(corpus, "bad-zero", b"", ok_transcript)
    _faststart_truncated(good_video, corpus / "videos" / "bad-trunc.mp4", keep=0.5)
    late = [{"text": "early words", "start": 1.0, "duration": 2.0}, {"text": "late words", "start": 13.0, "duration": 2.0}]
    _add_video(corpus, "bad-trunc", None, json.dumps(late).encode())
    _add_video(corpus, "bad-json", good_bytes, b'[{"text": "chop", "start": 1.0,')
    _add_video(corpus, "bad-latin1", good_bytes, '[{"text": "caf\u00e9", "start": 1.0, "duration": 2.0}]'.encode("latin-1"))
    _add_video(corpus, "bad-empty", good_bytes, b"[]")
    past = [{"text": "inside", "start": 2.0, "duration": 3.0}, {"text": "after the end", "start": 400.0, "duration": 2.0}]
    _add_video(corpus, "bad-past-end", good_bytes, json.dumps(past).encode())
    _add_video(corpus, "bad-missing", None, ok_transcript)
    _add_video(corpus, "bad-escape", None, ok_transcript, path="../outside.mp4")
    (corpus.parent / "outside.mp4").write_bytes(good_bytes)
    broken_trial = corpus / "trials" / "bad-trial"
    broken_trial.mkdir()
    (broken_trial / "video.mp4").write_bytes(good_bytes)
    (broken_trial / "metadata.json").write_text("{not json")

    videos, trials, rejected = _ingest(corpus)
    storage = StoragePaths(tmp_path / "data")
    report = build_clip_partition("p0000", videos, trials, corpus, storage, SETTINGS)
    part = storage.clip_partition_dir("p0000")
    quarantined = pq.read_table(part / "quarantine.parquet").to_pylist()
    reasons = defaultdict(set)
    for row in quarantined + [r.__dict__ for r in rejected]:
        reasons[row["source_id"] or row["input"]].add((row["stage"], row["reason"]))
    assert reasons["bad-corrupt"] == {("decode", "video_unreadable")}
    assert reasons["bad-zero"] == {("decode", "video_empty")}
    assert reasons["bad-json"] == {("transcript", "transcript_malformed")}
    assert reasons["bad-latin1"] == {("transcript", "transcript_not_utf8")}
    assert reasons["bad-empty"] == {("transcript", "transcript_empty")}
    assert reasons["bad-past-end"] == {("window", "segment_past_video_end")}
    assert reasons["bad-trunc"] == {("decode", "insufficient_frames")}
    assert {r.reason for r in rejected if "bad-missing" in (r.source_id, r.input) or r.source_id == "bad-missing"} == {"video_missing"}
    assert any(r.reason == "path_escapes_root" and r.source_id == "bad-escape" for r in rejected)
    assert any(r.reason == "trial_metadata_malformed" and "bad-trial" in (r.source_id + r.input) for r in rejected)

    clips = _clips(part)
    by_source = defaultdict(list)
    for frames, caption, meta in clips.values():
        by_source[meta["source_id"]].append(caption)
    # The readable parts of damaged inputs still give their clips ...
    assert by_source["bad-past-end"] == ["inside"]
    assert by_source["bad-trunc"] == ["early words"]
    # ... and every clean source gives exactly what it gave in the clean run.
    clean_clips = _clips(clean_run[0].clip_partition_dir("p0000"))
    assert {k for k, c in clips.items() if not c[2]["source_id"].startswith("bad-")} == set(clean_clips)
    assert report.failures == dict(sorted(Counter(q["reason"] for q in quarantined).items()))
    assert verify_partition(part)[2] == []


# --- crash safety and idempotency -------------------------------------------------------------

_KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from goalcraft.data import shards
    from goalcraft.data.clip_stage import ClipStageSettings, build_clip_partition
    from goalcraft.data.manifest import read_manifests
    from goalcraft.data.trials import scan_trials
    from goalcraft.data.windows import WindowRules
    from goalcraft.storage import StoragePaths

    corpus, data = Path(sys.argv[1]), Path(sys.argv[2])
    kill_after = int(sys.argv[3])
    written = 0
    original = shards.ClipShardWriter.write

    def write_then_die(self, sample):
        global written
        size = original(self, sample)
        written += 1
        if written == kill_after:  # die mid-shard: the tar is open, half written
            os.kill(os.getpid(), signal.SIGKILL)
        return size

    shards.ClipShardWriter.write = write_then_die
    videos, _ = read_manifests([corpus / "manifest.jsonl"], corpus)
    trials, _ = scan_trials(corpus / "trials", corpus)
    settings = ClipStageSettings(rules=WindowRules(), trial_window_s=3.2, shard_target_bytes=2_000_000)
    build_clip_partition("p0000", videos, trials, corpus, StoragePaths(data), settings)
    """
)


def _kill_mid_write(corpus: Path, data: Path, after: int) -> None:
    proc = subprocess.run([sys.executable, "-c", _KILLER, str(corpus), str(data), str(after)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr


def _snapshot(part: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(part.iterdir()) if p.suffix in (".tar", ".parquet")}


@pytest.mark.slow
def test_killed_run_leaves_nothing_visible_and_rerun_matches_clean(crafter_corpus, clean_run, tmp_path):
    clean_storage, videos, trials, report = clean_run
    clean = _snapshot(clean_storage.clip_partition_dir("p0000"))
    data = tmp_path / "data"
    storage = StoragePaths(data)
    part = storage.clip_partition_dir("p0000")

    # Killed during the first run: no partition is visible, only staging debris.
    _kill_mid_write(crafter_corpus, data, after=report.clips_written // 2)
    assert not part.exists()
    assert list(storage.staging_dir.iterdir())

    # Re-run: identical bytes to the clean run, debris gone.
    build_clip_partition("p0000", videos, trials, crafter_corpus, storage, SETTINGS)
    assert _snapshot(part) == clean
    assert not list(storage.staging_dir.iterdir())

    # Killed while re-materializing: the complete previous partition stays visible, untouched.
    _kill_mid_write(crafter_corpus, data, after=3)
    assert _snapshot(part) == clean
    build_clip_partition("p0000", videos, trials, crafter_corpus, storage, SETTINGS)
    assert _snapshot(part) == clean
    assert not list(storage.staging_dir.iterdir())
    assert not list(part.parent.glob(".trash-*"))


# --- real Minecraft footage ---------------------------------------------------------------------

MINESTUDIO = Path(__file__).parent / "fixtures" / "minestudio"


def test_minestudio_footage_as_trial_and_as_narrated_video_with_keyword_filter(tmp_path):
    from goalcraft.config import ClipsSettings
    from goalcraft.resources import as_config

    corpus = tmp_path / "corpus"
    trial = corpus / "trials" / "build_pillar_0"
    trial.mkdir(parents=True)
    (trial / "video.mp4").write_bytes((MINESTUDIO / "build_pillar_0.mp4").read_bytes())
    (trial / "metadata.json").write_text(json.dumps({"instruction": "build a pillar", "success": False}))
    (corpus / "videos").mkdir()
    (corpus / "videos" / "spider.mp4").write_bytes((MINESTUDIO / "combat_spider_7.mp4").read_bytes())
    (corpus / "transcripts").mkdir()
    (corpus / "transcripts" / "spider.json").write_text(json.dumps([
        {"text": "okay let's fight the Spider", "start": 2.0, "duration": 2.0},
        {"text": "[Music]", "start": 5.0, "duration": 2.0},
        {"text": "look at the sky", "start": 9.0, "duration": 3.0},
    ]))
    (corpus / "manifest.jsonl").write_text(json.dumps({"id": "spider", "duration": 20.0, "fps": 30}) + "\n")
    (corpus / "tasks.txt").write_text("spider\nbuild a pillar\n")

    from goalcraft.resources import ClipStageResource

    settings = ClipStageResource(clips=as_config(ClipsSettings(keywords_file="tasks.txt"))).settings(corpus)
    assert settings.rules.keywords == ("spider", "build a pillar")
    videos, trials, rejected = _ingest(corpus)
    assert rejected == []
    storage = StoragePaths(tmp_path / "data")
    report = build_clip_partition("p0000", videos, trials, corpus, storage, settings)
    clips = _clips(storage.clip_partition_dir("p0000"))

    assert report.segments_filtered == 2  # "[Music]" and the segment naming no task
    (spider,) = [c for c in clips.values() if c[2]["source_id"] == "spider"]
    assert spider[1] == "okay let's fight the Spider"
    assert (spider[2]["window_start"], spider[2]["window_end"]) == (2.0, 4.0)
    pillar = sorted((c for c in clips.values() if c[2]["source_id"] == "build_pillar_0"),
                    key=lambda c: c[2]["window_start"])
    assert len(pillar) == 6  # 20 s of footage in 3.2 s tiles
    with get_decoder("pyav").open(MINESTUDIO / "build_pillar_0.mp4") as handle:
        for frames, caption, meta in pillar + [spider]:
            assert caption in ("build a pillar", "okay let's fight the Spider")
            # 640x360 footage resized to 160x256; timestamps are frame index / 30.
            assert frames.shape == (16, 160, 256, 3)
            np.testing.assert_allclose(meta["frame_timestamps"], np.array(meta["frame_indices"]) / 30, atol=1e-6)
        direct = handle.read(pillar[2][2]["frame_indices"]).frames
        assert np.abs(pillar[2][0].astype(int) - direct.astype(int)).mean() < 4
    assert verify_partition(storage.clip_partition_dir("p0000"))[2] == []


@pytest.mark.parametrize("decoder_name", ["pyav", "decord"])
def test_one_decoding_pass_per_video_gives_every_window_the_same_frames(crafter_corpus, tmp_path, decoder_name):
    """Overlapping windows read in one pass over the sorted union of their frames give exactly the
    samples and timestamps of one read per window, with fewer frames requested and no backward read;
    a frame that does not decode gives the same quarantine records both ways."""
    from goalcraft.data.clip_stage import _window_clips
    from goalcraft.data.decode import decord_available, get_decoder
    from goalcraft.data.quarantine import InputError
    from goalcraft.data.windows import ClipWindow
    from goalcraft.formats import CLIP_HEIGHT, CLIP_WIDTH

    if decoder_name == "decord" and not decord_available():
        pytest.skip("decord is not installed")
    video = sorted((crafter_corpus / "videos").glob("*.mp4"))[0]
    # MineDojo-like: long windows, each overlapping the next by half (15 s of 10 fps video).
    windows = [ClipWindow(start, start + 4.0, f"w{k}", ()) for k, start in enumerate(np.arange(0.0, 11.0, 2.0))]

    class Counting:
        def __init__(self, handle):
            self.handle, self.requests = handle, []

        @property
        def info(self):
            return self.handle.info

        def read(self, indices):
            self.requests.append([int(i) for i in indices])
            return self.handle.read(indices)

    def run(path, pass_frames):
        with get_decoder(decoder_name).open(path, height=CLIP_HEIGHT, width=CLIP_WIDTH) as handle:
            counting = Counting(handle)
            out = list(_window_clips(counting, windows, source="video", source_id="v", video_path=path.name,
                                     extra_meta={}, pass_frames=pass_frames))
        return out, counting.requests

    one, one_requests = run(video, 1024)
    each, each_requests = run(video, 0)
    assert [c.key for c in one] == [c.key for c in each] and len(one) == len(windows)
    for a, b in zip(one, each):
        assert np.array_equal(a.frames, b.frames) and a.meta == b.meta and a.caption == b.caption
    assert len(one_requests) == 1 and one_requests[0] == sorted(set(one_requests[0]))
    assert len(one_requests[0]) < sum(len(r) for r in each_requests)  # shared frames decoded once
    # A frame that does not decode (one that two windows share): the pass fails, each window is read
    # on its own, and exactly the windows that need it are quarantined, as with one read per window.
    bad = next(i for i in one_requests[0] if sum(i in r for r in each_requests) == 2)

    class Damaged(Counting):
        def read(self, indices):
            if bad in [int(i) for i in indices]:
                raise InputError("insufficient_frames", f"frame {bad} does not decode")
            return super().read(indices)

    def run_damaged(pass_frames):
        with get_decoder(decoder_name).open(video, height=CLIP_HEIGHT, width=CLIP_WIDTH) as handle:
            return list(_window_clips(Damaged(handle), windows, source="video", source_id="v", video_path=video.name,
                                      extra_meta={}, pass_frames=pass_frames))

    one_bad, each_bad = run_damaged(1024), run_damaged(0)
    describe = [(type(x).__name__, getattr(x, "key", None), getattr(x, "reason", None)) for x in one_bad]
    assert describe == [(type(x).__name__, getattr(x, "key", None), getattr(x, "reason", None)) for x in each_bad]
    quarantined = [x for x in one_bad if type(x).__name__ == "QuarantineRecord"]
    assert len(quarantined) == 2 and len(one_bad) == len(windows)
