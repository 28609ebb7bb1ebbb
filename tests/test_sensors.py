"""The new-inputs sensor on a small corpus written here (manifest lines, empty video files, trial
folders: the sensor and ingest never decode video), evaluated as the daemon would, with the real
ingest assets materialized in between."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import dagster as dg
import pytest

from goalcraft.assets.clips import build_clip_assets
from goalcraft.assets.ingest import build_ingest_assets
from goalcraft.data.partition_keys import partition_of
from goalcraft.data.trials import trial_id_for
from goalcraft.pipelines.jobs import build_jobs
from goalcraft.pipelines.partitions_definition import corpus_partitions
from goalcraft.config import AutomationSettings, PathsSettings
from goalcraft.pipelines.sensors import WatchState, build_new_inputs_sensor
from goalcraft.resources import ClipStageResource, CorpusResource, GoalsResource, StorageResource, as_config

COUNT = 8
VIDEOS = ["vidAlpha001", "vidBravo002", "vidCharlie3", "vidDelta004"]
TRIALS = ["trial_000", "my trial 1"]


def _record(video_id: str) -> str:
    return json.dumps({"id": video_id, "title": f"video {video_id}", "link": f"https://youtu.be/{video_id}",
                       "duration": 12.5, "fps": 20})


def _add_videos(root: Path, ids: list[str], manifest: str = "manifest.jsonl") -> None:
    (root / "videos").mkdir(parents=True, exist_ok=True)
    with open(root / manifest, "a", encoding="utf-8") as f:
        for video_id in ids:
            (root / "videos" / f"{video_id}.mp4").write_bytes(b"")
            f.write(_record(video_id) + "\n")


def _add_trial(root: Path, name: str, complete: bool = True) -> None:
    folder = root / "trials" / name
    folder.mkdir(parents=True)
    (folder / "video.mp4").write_bytes(b"")
    if complete:
        (folder / "metadata.json").write_text(json.dumps({"instruction": "chop a tree", "success": False}))


class Harness:
    """A corpus, its Definitions (real ingest + clip assets, goalcraft's jobs, the sensor) and an instance."""

    def __init__(self, tmp_path: Path, instance: dg.DagsterInstance, manifests=("manifest.jsonl",)):
        self.root = tmp_path / "corpus"
        self.root.mkdir()
        self.data = tmp_path / "data"
        self.instance = instance
        partitions_def = corpus_partitions(COUNT)
        self.ingest = build_ingest_assets(COUNT)
        clip_assets, clip_checks = build_clip_assets(partitions_def)
        jobs = {job.name: job for job in build_jobs() if job.name in ("ingest_job", "clips_job")}
        self.resources = {
            "storage": StorageResource(data_root=str(self.data)),
            "corpus": CorpusResource(paths=as_config(PathsSettings(corpus_root=str(self.root), manifests=list(manifests),
                                                                   trials_dir="trials"))),
            "clip_stage": ClipStageResource(),
            "goals": GoalsResource(),
        }
        self.sensor = build_new_inputs_sensor(COUNT, ingest_job=jobs["ingest_job"], clips_job=jobs["clips_job"])
        self.defs = dg.Definitions(assets=[*self.ingest, *clip_assets], asset_checks=clip_checks,
                                   jobs=list(jobs.values()), sensors=[self.sensor], resources=self.resources)
        self.cursor: str | None = None

    def tick(self, cursor: str | None = ...):
        context = dg.build_sensor_context(instance=self.instance, definitions=self.defs, resources=self.resources,
                                          cursor=self.cursor if cursor is ... else cursor)
        data = self.sensor.evaluate_tick(context)
        self.cursor = data.cursor
        return data

    def ingest_runs(self, succeeds: bool = True) -> None:
        result = dg.materialize(self.ingest, resources=self.resources, instance=self.instance,
                                raise_on_error=False)
        assert result.success is succeeds

    def mark_clipped(self, partitions) -> None:
        for partition in partitions:
            self.instance.report_runless_asset_event(dg.AssetMaterialization("video_clips", partition=partition))


@pytest.fixture
def instance():
    # In-memory run/event storage: what the daemon's instance answers, without sqlite set-up per test.
    inst = dg.DagsterInstance.ephemeral()
    yield inst
    inst.dispose()


def _partitions(video_ids=(), trial_names=()) -> set[str]:
    return ({partition_of(v, COUNT) for v in video_ids}
            | {partition_of(trial_id_for(t), COUNT) for t in trial_names})


def _only_ingest(data) -> dg.RunRequest:
    (request,) = data.run_requests
    assert request.job_name == "ingest_job" and request.partition_key is None
    assert request.run_key.startswith("ingest:")
    assert request.tags["goalcraft/trigger"] == "sensor"
    return request


def _clip_requests(data) -> dict[str, dg.RunRequest]:
    assert all(r.job_name == "clips_job" for r in data.run_requests), [r.job_name for r in data.run_requests]
    by_partition = {r.partition_key: r for r in data.run_requests}
    assert len(by_partition) == len(data.run_requests)  # one run per partition
    run_keys = [r.run_key for r in data.run_requests]
    assert len(set(run_keys)) == len(run_keys)
    for partition, request in by_partition.items():
        assert request.run_key.startswith(f"{partition}:")
        assert request.tags["dagster/partition"] == partition
    return by_partition


def test_sensor_is_stopped_by_default_and_loads(tmp_path, instance):
    h = Harness(tmp_path, instance)
    assert h.sensor.default_status == dg.DefaultSensorStatus.STOPPED
    assert h.sensor.name == "new_inputs_sensor"
    assert h.sensor.minimum_interval_seconds == 300
    assert {j.name for j in h.sensor.jobs} == {"ingest_job", "clips_job"}
    dg.Definitions.validate_loadable(h.defs)
    jobs = {job.name: job for job in build_jobs()}
    faster = build_new_inputs_sensor(COUNT, ingest_job=jobs["ingest_job"], clips_job=jobs["clips_job"],
                                     automation=AutomationSettings(watch_interval_s=30))
    assert faster.minimum_interval_seconds == 30


def test_first_tick_on_an_unclipped_corpus_ingests_then_clips_every_partition_of_its_sources(tmp_path, instance):
    h = Harness(tmp_path, instance)
    _add_videos(h.root, VIDEOS)
    for name in TRIALS:
        _add_trial(h.root, name)
    expected = _partitions(VIDEOS, TRIALS)
    assert 2 <= len(expected) < COUNT  # the corpus is spread over partitions, but not all of them

    _only_ingest(h.tick())
    # Ingest has not run yet: the clips wait.
    waiting = h.tick()
    assert waiting.run_requests == [] and "waits for agent_trials/corpus_manifest" in waiting.skip_message

    h.ingest_runs()
    clips = _clip_requests(h.tick())
    assert set(clips) == expected

    idle = h.tick()
    assert idle.run_requests == [] and idle.skip_message == "no new inputs"


def test_new_records_and_trial_folder_request_exactly_their_partitions(tmp_path, instance):
    h = Harness(tmp_path, instance)
    _add_videos(h.root, VIDEOS)
    _add_trial(h.root, TRIALS[0])
    # Already clipped before the sensor was turned on: the first tick only records a baseline.
    h.mark_clipped(_partitions(VIDEOS, TRIALS[:1]))
    baseline = h.tick()
    assert baseline.run_requests == []
    assert "first evaluation: 5 sources" in baseline.skip_message
    state = WatchState.from_cursor(baseline.cursor, COUNT)
    assert state is not None and state.trials == [TRIALS[0]] and state.pending == []
    assert state.manifests["manifest.jsonl"]["records"] == 4
    assert state.manifests["manifest.jsonl"]["offset"] == (h.root / "manifest.jsonl").stat().st_size

    new_videos = ["vidEcho0005", "vidFoxtrot6"]
    _add_videos(h.root, new_videos)
    _add_trial(h.root, TRIALS[1])
    expected = _partitions(new_videos, TRIALS[1:])
    before_ingest = h.cursor
    ingest = _only_ingest(h.tick())
    # Evaluating the same tick again (a cursor that was never stored) asks for the same run keys,
    # which Dagster launches once.
    assert _only_ingest(h.tick(before_ingest)).run_key == ingest.run_key
    h.tick()  # back on the stored cursor: still waiting

    h.ingest_runs()
    clips = _clip_requests(h.tick())
    assert set(clips) == expected
    assert all(r.tags["goalcraft/inputs_batch"] == ingest.tags["goalcraft/inputs_batch"] for r in clips.values())

    nothing = h.tick()
    assert nothing.run_requests == [] and nothing.skip_message == "no new inputs"
    assert WatchState.from_cursor(nothing.cursor, COUNT).to_cursor() == nothing.cursor

    # Another record later in an already requested partition gets a new run key there.
    one_more = next(f"vidGolf{i:04d}" for i in range(1000) if partition_of(f"vidGolf{i:04d}", COUNT) in expected)
    _add_videos(h.root, [one_more])
    _only_ingest(h.tick())
    h.ingest_runs()
    again = _clip_requests(h.tick())
    assert set(again) == {partition_of(one_more, COUNT)}
    assert again[partition_of(one_more, COUNT)].run_key != clips[partition_of(one_more, COUNT)].run_key


def test_malformed_and_unfinished_lines_do_not_crash_the_sensor(tmp_path, instance):
    h = Harness(tmp_path, instance)
    _add_videos(h.root, VIDEOS)
    h.mark_clipped(_partitions(VIDEOS))
    h.tick()
    with open(h.root / "manifest.jsonl", "ab") as f:
        f.write(b'{"id": "broken", "duration": \n')  # not JSON
        f.write(b"[1, 2, 3]\n")  # not an object
        f.write(b'{"id": 42, "duration": 1, "fps": 1}\n')  # no string id
        f.write(b'{"id": "vidHotel008", "dura')  # still being written
    skipped = h.tick()
    assert skipped.run_requests == []
    assert "3 manifest records without a readable id skipped" in skipped.skip_message
    # The unfinished line is read once the writer finishes it.
    with open(h.root / "manifest.jsonl", "ab") as f:
        f.write(b'tion": 3, "fps": 20}\n')
    (h.root / "videos" / "vidHotel008.mp4").write_bytes(b"")
    _only_ingest(h.tick())
    h.ingest_runs()
    assert set(_clip_requests(h.tick())) == {partition_of("vidHotel008", COUNT)}
    h.mark_clipped({partition_of("vidHotel008", COUNT)})
    # A garbage cursor is a first evaluation, not a crash.
    restart = h.tick("{not json")
    assert restart.run_requests == [] and "first evaluation" in restart.skip_message


def test_new_manifest_file_rewrite_and_incomplete_trial(tmp_path, instance):
    h = Harness(tmp_path, instance, manifests=("manifest.jsonl", "extra.json"))
    _add_videos(h.root, VIDEOS)
    h.mark_clipped(_partitions(VIDEOS))
    first = h.tick()
    assert "manifest extra.json not found" in first.skip_message

    # A configured manifest appears (a JSON list), a trial folder is still being copied.
    extra = ["vidIndia009", "vidJuliet10"]
    for video_id in extra:
        (h.root / "videos" / f"{video_id}.mp4").write_bytes(b"")
    (h.root / "extra.json").write_text(json.dumps([json.loads(_record(v)) for v in extra], indent=1))
    _add_trial(h.root, "late_trial", complete=False)
    _only_ingest(h.tick())
    assert WatchState.from_cursor(h.cursor, COUNT).trials == []  # not taken until complete
    h.ingest_runs()
    assert set(_clip_requests(h.tick())) == _partitions(extra)

    # The trial folder completes.
    (h.root / "trials" / "late_trial" / "metadata.json").write_text('{"instruction": "swim", "success": false}')
    ingest = _only_ingest(h.tick())
    assert ingest.tags["goalcraft/inputs_batch"]
    h.ingest_runs()
    trial_runs = _clip_requests(h.tick())
    assert set(trial_runs) == _partitions(trial_names=["late_trial"])
    assert WatchState.from_cursor(h.cursor, COUNT).trials == ["late_trial"]

    # Removed (its clips are stale), then put back: each change re-clips the partition, with new run keys.
    (trial_partition,) = trial_runs
    shutil.move(h.root / "trials" / "late_trial", tmp_path / "late_trial")
    _only_ingest(h.tick())
    h.ingest_runs()
    removed = _clip_requests(h.tick())
    shutil.move(tmp_path / "late_trial", h.root / "trials" / "late_trial")
    _only_ingest(h.tick())
    h.ingest_runs()
    restored = _clip_requests(h.tick())
    assert set(removed) == set(restored) == {trial_partition}
    keys = {r[trial_partition].run_key for r in (trial_runs, removed, restored)}
    assert len(keys) == 3

    # manifest.jsonl rewritten: reordered (no change) and one video dropped: only its partition changes.
    dropped = VIDEOS[1]
    kept = [v for v in VIDEOS if v != dropped]
    (h.root / "manifest.jsonl").write_text("".join(_record(v) + "\n" for v in reversed(kept)))
    os.utime(h.root / "manifest.jsonl", ns=(1, 1))
    _only_ingest(h.tick())
    h.ingest_runs()
    assert set(_clip_requests(h.tick())) == {partition_of(dropped, COUNT)}
    assert h.tick().skip_message == "no new inputs"


def test_a_failed_ingest_keeps_the_clips_waiting_until_ingest_succeeds(tmp_path, instance):
    h = Harness(tmp_path, instance)
    _add_videos(h.root, VIDEOS)
    h.mark_clipped(_partitions(VIDEOS))
    h.tick()
    _add_videos(h.root, ["vidKilo0011"])
    good_size = (h.root / "manifest.jsonl").stat().st_size
    with open(h.root / "manifest.jsonl", "ab") as f:
        f.write(b"\xff\xfe not utf-8\n")  # the sensor skips it; ingest refuses the whole file
    data = h.tick()
    _only_ingest(data)
    h.ingest_runs(succeeds=False)
    waiting = h.tick()
    assert waiting.run_requests == [] and "waits for corpus_manifest" in waiting.skip_message
    # The manifest is repaired (truncated, so re-read whole: its partitions are unchanged) and
    # ingest re-run by hand: the waiting clips follow.
    os.truncate(h.root / "manifest.jsonl", good_size)
    repaired = h.tick()
    assert repaired.run_requests == [] and "rewritten" in repaired.skip_message
    h.ingest_runs()
    assert set(_clip_requests(h.tick())) == {partition_of("vidKilo0011", COUNT)}
