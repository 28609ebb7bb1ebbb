"""Sensors: watch the corpus for new inputs and clip only the partitions they fall into.

:func:`build_new_inputs_sensor` builds ``new_inputs_sensor``. Each evaluation it looks for

* new records in the configured manifests (lines appended to a JSONL manifest, a configured
  manifest file that appears, or a manifest rewritten in place), and
* new trial folders under ``trials_dir`` (and trial folders that disappeared),

maps every new source to its partition with goalcraft's own assignment
(:func:`goalcraft.data.partition_keys.partition_of`, the function the ingest assets use), and asks for
runs of ``ingest_job`` and then ``clips_job`` for those partitions only. Like every goalcraft
automation it is **stopped by default** (docs/automation.md).

Ingest before clips (two phases)
    The ingest assets are unpartitioned: one run validates every manifest and trial folder into the
    ingest tables, which each clip partition then reads. A Dagster 1.13 asset job may mix them with
    the partitioned clip asset, but then *each* partition run would re-ingest the whole corpus (a
    730K-record manifest and a stat per video) and the runs would race to rewrite the same tables.
    So the sensor works in two phases, kept in its cursor:

    1. On the tick that sees new inputs it asks for **one** ``ingest_job`` run (run key
       ``ingest:<batch fingerprint>``) and records a *pending batch*: the partitions, a fingerprint
       per partition, and the time the inputs were seen.
    2. On a later tick, once every ingest asset the batch needs (``corpus_manifest`` for manifest
       changes, ``agent_trials`` for trial changes) has a materialization from a run that *started
       after* the inputs were seen (so it read them), it asks for one ``clips_job`` run per
       partition: ``partition_key=<partition>``, ``run_key=<partition>:<fingerprint of the new
       inputs in it>``.

    Any ingest run counts (the one the sensor asked for, or one started by hand), so a failed ingest
    run only delays the clips: the batch waits, named in the tick's skip message, until ingest is
    re-materialized.

State
    Everything lives in the sensor cursor (JSON; :class:`WatchState`), nothing in globals: per
    manifest its size, mtime, the byte offset read up to, hashes of the bytes around that offset
    (to tell an append from a rewrite) and one 64-bit digest per partition of the ids it holds
    (to find the partitions a rewrite changed); the trial folder names seen; the pending batches.

Cost (a 730K-video corpus, 256 partitions)
    A tick with no change costs one ``stat`` per manifest and one ``listdir`` of ``trials_dir``
    (plus a ``stat`` per *unseen* name), and two instance queries per ingest asset while a batch is
    pending. An appended manifest is read from the stored offset only. Only the first evaluation,
    a newly configured manifest, a rewritten (not appended) JSONL manifest or any change to a
    ``.json`` list manifest parses the whole file (about 5 s for a 730K-record, 150 MB JSONL
    file on one core; a no-change tick on it takes milliseconds). The cursor holds ~20 bytes per
    partition per manifest plus the trial folder names (25 KB for 256 partitions and 2,000 trials).

First evaluation
    With an empty cursor every source is "new"; the sensor asks for ingest, then clips only for the
    partitions of those sources that have **no** ``video_clips`` materialization yet. On a corpus
    that was never clipped that is every partition with a source; on one already clipped it is
    none (the first tick then only records the baseline). A partition clipped before the sensor
    was turned on is not re-checked: backfill it from the UI if its inputs changed meanwhile.

Rejecting bad input is ingest's job: malformed manifest lines (not JSON, not an object, no string
``id``) and incomplete trial folders are skipped here (counted in the tick's message), never
raised. An unterminated last line is only taken once it parses as a JSON object (a writer may be
mid-line); a trial folder only once it holds ``metadata.json`` and a video, so write trial folders
under a hidden name (``.tmp-…``) and rename them when complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import dagster as dg

from goalcraft.data.partition_keys import partition_of
from goalcraft.data.trials import TRIAL_VIDEO_EXTENSIONS, trial_id_for
from goalcraft.config import AutomationSettings
from goalcraft.resources import CorpusResource
from goalcraft.pipelines.schedules import AUTOMATION_TAG, TRIGGER_TAG

__all__ = [
    "BATCH_TAG",
    "NEW_INPUTS_SENSOR_NAME",
    "InputChanges",
    "PendingBatch",
    "WatchState",
    "build_new_inputs_sensor",
    "scan_inputs",
]

NEW_INPUTS_SENSOR_NAME = "new_inputs_sensor"
#: Tag on the runs the sensor asks for: the fingerprint(s) of the input batch(es) they serve.
BATCH_TAG = "goalcraft/inputs_batch"
CURSOR_VERSION = 1
#: Bytes hashed at the start of a manifest and just before the read offset: if both still match,
#: a grown file is taken as appended to; otherwise it is re-read whole.
_WINDOW = 4096
_MASK64 = (1 << 64) - 1
_BOM = b"\xef\xbb\xbf"


# --------------------------------------------------------------------------------------------------
# Cursor


@dataclass
class PendingBatch:
    """New inputs whose ingest has been asked for; their clip runs follow once ingest has read them."""

    fingerprint: str
    seen_at: float  # epoch seconds, after the inputs were seen
    needs: list[str]  # ingest asset keys (user strings) that must be re-materialized
    partitions: dict[str, str]  # partition -> fingerprint of the new inputs in it

    def to_json(self) -> dict[str, Any]:
        return {"fp": self.fingerprint, "seen_at": self.seen_at, "needs": self.needs, "parts": self.partitions}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> PendingBatch:
        return cls(str(raw["fp"]), float(raw["seen_at"]), [str(k) for k in raw["needs"]],
                   {str(p): str(f) for p, f in raw["parts"].items()})


@dataclass
class WatchState:
    """The sensor cursor. ``manifests`` maps a configured manifest name to what was read of it."""

    partition_count: int
    manifests: dict[str, dict[str, Any]] = field(default_factory=dict)
    trials: list[str] = field(default_factory=list)
    pending: list[PendingBatch] = field(default_factory=list)

    def to_cursor(self) -> str:
        return json.dumps(
            {"v": CURSOR_VERSION, "count": self.partition_count, "manifests": self.manifests,
             "trials": sorted(self.trials), "pending": [b.to_json() for b in self.pending]},
            sort_keys=True, separators=(",", ":"),
        )

    @classmethod
    def from_cursor(cls, cursor: str | None, partition_count: int) -> WatchState | None:
        """The state in ``cursor``; None for no cursor, an unreadable one, or another partition count
        (all of which mean: evaluate as a first tick)."""
        if not cursor:
            return None
        try:
            raw = json.loads(cursor)
            if raw.get("v") != CURSOR_VERSION or raw.get("count") != partition_count:
                return None
            return cls(partition_count=partition_count, manifests=dict(raw["manifests"]),
                       trials=[str(t) for t in raw["trials"]],
                       pending=[PendingBatch.from_json(b) for b in raw["pending"]])
        except (ValueError, TypeError, KeyError, AttributeError):
            return None


# --------------------------------------------------------------------------------------------------
# Scanning the corpus


class InputChanges:
    """New inputs, by partition: a running fingerprint and a count of new sources for each."""

    def __init__(self) -> None:
        self._hashers: dict[str, Any] = {}
        self.sources: dict[str, int] = {}
        self.needs: set[str] = set()
        self.notes: list[str] = []
        self.unparsed = 0
        self.incomplete_trials = 0

    def add(self, partition: str, descriptor: str, need: str) -> None:
        hasher = self._hashers.get(partition)
        if hasher is None:
            hasher = self._hashers[partition] = hashlib.sha1()
            self.sources[partition] = 0
        hasher.update(descriptor.encode("utf-8", "surrogateescape") + b"\n")
        self.sources[partition] += 1
        self.needs.add(need)

    def partitions(self) -> dict[str, str]:
        """partition -> fingerprint (16 hex digits) of the new inputs in it."""
        return {p: h.hexdigest()[:16] for p, h in sorted(self._hashers.items())}

    def restrict(self, keep: set[str]) -> None:
        for partition in list(self._hashers):
            if partition not in keep:
                del self._hashers[partition]
                del self.sources[partition]

    def __bool__(self) -> bool:
        return bool(self._hashers)


def _id_hash(source_id: str) -> int:
    return int.from_bytes(hashlib.sha1(source_id.encode("utf-8", "surrogateescape")).digest()[:8], "big")


def _record_id(raw: bytes) -> str | None:
    """The ``id`` of one manifest line, or None when the line is not a JSON object with a string id."""
    try:
        value = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # not UTF-8, not JSON
        return None
    if not isinstance(value, dict):
        return None
    source_id = value.get("id")
    return source_id if isinstance(source_id, str) and source_id else None


def _window_hashes(f: BinaryIO, offset: int) -> tuple[str, str]:
    f.seek(0)
    head = f.read(min(_WINDOW, offset))
    start = max(0, offset - _WINDOW)
    f.seek(start)
    tail = f.read(offset - start)
    return hashlib.sha1(head).hexdigest()[:16], hashlib.sha1(tail).hexdigest()[:16]


def _iter_lines(f: BinaryIO, offset: int) -> Iterator[tuple[bytes, int, bool]]:
    """(line without its newline, offset after it, terminated?) from ``offset`` on."""
    f.seek(offset)
    for line in f:  # binary iteration splits on b"\n" only, like goalcraft.data.manifest
        offset += len(line)
        terminated = line.endswith(b"\n")
        yield line.rstrip(b"\n").rstrip(b"\r"), offset, terminated


def _scan_jsonl(path: Path, name: str, old: dict[str, Any] | None, st: os.stat_result, count: int,
                changes: InputChanges, need: str) -> dict[str, Any]:
    with open(path, "rb") as f:
        appended = False
        if old is not None and st.st_size >= old["offset"]:
            appended = _window_hashes(f, old["offset"]) == (old["head"], old["tail"])
        start = old["offset"] if appended and old is not None else 0
        digests = {p: int(d, 16) for p, d in old["digests"].items()} if appended and old is not None else {}
        records = old["records"] if appended and old is not None else 0
        consumed = start
        for line, end, terminated in _iter_lines(f, start):
            if start == 0 and consumed == 0 and line.startswith(_BOM):
                line = line[len(_BOM):]
            source_id = _record_id(line) if line.strip() else None
            if not terminated and source_id is None:
                break  # an unterminated tail: maybe a line still being written; read it next tick
            consumed = end
            if source_id is None:
                changes.unparsed += bool(line.strip())
                continue
            partition = partition_of(source_id, count)
            digests[partition] = (digests.get(partition, 0) + _id_hash(source_id)) & _MASK64
            records += 1
            if appended or old is None:
                changes.add(partition, f"video:{source_id}", need)
        head, tail = _window_hashes(f, consumed)
    new_digests = {p: f"{d:016x}" for p, d in sorted(digests.items())}
    if not appended and old is not None:
        _diff_digests(name, old["digests"], new_digests, changes, need)
        changes.notes.append(f"{name} was rewritten (not appended to): re-read whole")
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "offset": consumed, "head": head, "tail": tail,
            "digests": new_digests, "records": records}


def _scan_json_list(path: Path, name: str, old: dict[str, Any] | None, st: os.stat_result, count: int,
                    changes: InputChanges, need: str) -> dict[str, Any] | None:
    try:
        whole = json.loads(path.read_bytes().decode("utf-8-sig"))
    except (ValueError, RecursionError):
        whole = None
    if not isinstance(whole, list):
        changes.notes.append(f"{name} is not (yet) a readable JSON list: kept the previous state, retrying")
        return old
    digests: dict[str, int] = {}
    records = 0
    for value in whole:
        source_id = value.get("id") if isinstance(value, dict) else None
        if not isinstance(source_id, str) or not source_id:
            changes.unparsed += 1
            continue
        partition = partition_of(source_id, count)
        digests[partition] = (digests.get(partition, 0) + _id_hash(source_id)) & _MASK64
        records += 1
    new_digests = {p: f"{d:016x}" for p, d in sorted(digests.items())}
    _diff_digests(name, old["digests"] if old else {}, new_digests, changes, need)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "offset": st.st_size, "head": "", "tail": "",
            "digests": new_digests, "records": records}


def _diff_digests(name: str, old: dict[str, str], new: dict[str, str], changes: InputChanges, need: str) -> None:
    for partition in sorted(set(old) | set(new)):
        if old.get(partition) != new.get(partition):
            changes.add(partition, f"manifest:{name}:{new.get(partition, '-')}", need)


def _scan_manifest(root: Path, name: str, old: dict[str, Any] | None, count: int, changes: InputChanges,
                   need: str) -> dict[str, Any] | None:
    path = root / name
    try:
        st = path.stat()
        if old is not None and (old["size"], old["mtime_ns"]) == (st.st_size, st.st_mtime_ns):
            return old
        if path.suffix.lower() == ".json":
            return _scan_json_list(path, name, old, st, count, changes, need)
        return _scan_jsonl(path, name, old, st, count, changes, need)
    except FileNotFoundError:
        changes.notes.append(f"manifest {name} not found")
    except OSError as exc:
        changes.notes.append(f"manifest {name} unreadable ({exc.strerror or exc}): retrying next tick")
    return old


def _trial_complete(folder: Path) -> bool:
    """Both layouts of goalcraft.data.trials need metadata.json and a video file."""
    if not (folder / "metadata.json").exists():
        return False
    names = [f"video.{ext}" for ext in TRIAL_VIDEO_EXTENSIONS] + ["frames.mp4"]
    return any((folder / n).exists() for n in names)


def _scan_trials(trials_path: Path, seen: list[str], count: int, changes: InputChanges,
                 need: str) -> list[str]:
    try:
        names = {n for n in os.listdir(trials_path) if not n.startswith(".")}
    except FileNotFoundError:
        return seen  # no trials folder (yet): nothing seen, nothing forgotten
    except OSError as exc:
        changes.notes.append(f"trials folder unreadable ({exc.strerror or exc}): retrying next tick")
        return seen
    known = set(seen)
    now_seen = known & names
    for name in sorted(names - known):
        folder = trials_path / name
        if not folder.is_dir():
            continue  # plain files are not trials (goalcraft.data.trials)
        if not _trial_complete(folder):
            changes.incomplete_trials += 1
            continue
        trial_id = trial_id_for(name)
        changes.add(partition_of(trial_id, count), f"trial:{trial_id}", need)
        now_seen.add(name)
    for name in sorted(known - names):  # removed: its clips are stale too
        trial_id = trial_id_for(name)
        changes.add(partition_of(trial_id, count), f"trial-removed:{trial_id}", need)
    return sorted(now_seen)


def scan_inputs(corpus_root: str | os.PathLike[str], manifests: Sequence[str], trials_dir: str,
                partition_count: int, state: WatchState | None, *, manifest_asset: str = "corpus_manifest",
                trials_asset: str = "agent_trials") -> tuple[WatchState, InputChanges]:
    """Compare the corpus with ``state`` (None: nothing seen yet): the updated state (pending batches
    unchanged) and the new inputs, by partition."""
    root = Path(corpus_root)
    old = state or WatchState(partition_count=partition_count)
    new = WatchState(partition_count=partition_count, pending=list(old.pending))
    changes = InputChanges()
    for name in dict.fromkeys(manifests):  # configured order, each once
        entry = _scan_manifest(root, name, old.manifests.get(name), partition_count, changes, manifest_asset)
        if entry is not None:
            new.manifests[name] = entry
    new.trials = _scan_trials(root / trials_dir, old.trials, partition_count, changes, trials_asset)
    return new, changes


# --------------------------------------------------------------------------------------------------
# The sensor


def _digest(items: Sequence[str]) -> str:
    return hashlib.sha1("\n".join(sorted(items)).encode()).hexdigest()[:16]


def _combined(fingerprints: Sequence[str]) -> str:
    """One fingerprint for several (a partition that more than one ready batch touches)."""
    return fingerprints[0] if len(fingerprints) == 1 else _digest(fingerprints)


def _latest_ingest(instance: dg.DagsterInstance, key: str) -> tuple[str, float | None]:
    """(run id, start time) of the run behind the latest materialization of ``key``; ("", None) if
    it was never materialized."""
    event = instance.get_latest_materialization_event(dg.AssetKey.from_user_string(key))
    if event is None:
        return "", None
    if event.run_id:
        record = instance.get_run_record_by_id(event.run_id)
        if record is not None:
            if record.start_time is not None:
                return event.run_id, record.start_time
            return event.run_id, record.create_timestamp.timestamp()
    return event.run_id, event.timestamp


def build_new_inputs_sensor(
    partition_count: int,
    *,
    ingest_job: dg.UnresolvedAssetJobDefinition | dg.JobDefinition,
    clips_job: dg.UnresolvedAssetJobDefinition | dg.JobDefinition,
    automation: AutomationSettings | None = None,
    minimum_interval_seconds: int | None = None,
    name: str = NEW_INPUTS_SENSOR_NAME,
    clips_asset: str = "video_clips",
    manifest_asset: str = "corpus_manifest",
    trials_asset: str = "agent_trials",
) -> dg.SensorDefinition:
    """The new-inputs sensor (module docstring); STOPPED by default.

    What it watches comes from the ``corpus`` resource (``[paths]``: the corpus root, the manifest
    names and the trials folder), the same resource the ingest assets read. ``partition_count`` is
    ``[partitions] count``. ``ingest_job`` and ``clips_job`` must be the very job objects given to
    the ``Definitions`` (a sensor targets job definitions, and two definitions of one name
    conflict). The evaluation interval is ``minimum_interval_seconds``, else
    ``automation.watch_interval_s`` (default 300 s).
    """
    settings = automation if automation is not None else AutomationSettings()
    interval = minimum_interval_seconds if minimum_interval_seconds is not None else settings.watch_interval_s

    @dg.sensor(
        name=name,
        jobs=[ingest_job, clips_job],
        minimum_interval_seconds=interval,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=(
            "Watches the corpus's manifests and trials folder ([paths]) for new sources; runs "
            f"{ingest_job.name} once, then {clips_job.name} for the partitions they fall into. "
            "Stopped by default: turn it on in the UI or with `dagster sensor start`."
        ),
    )
    def _new_inputs(context: dg.SensorEvaluationContext, corpus: CorpusResource) -> dg.SensorResult:
        root, manifests, trials_dir = corpus.root, list(corpus.paths.manifests), corpus.paths.trials_dir
        previous = WatchState.from_cursor(context.cursor, partition_count)
        first = previous is None
        state, changes = scan_inputs(root, manifests, trials_dir, partition_count, previous,
                                     manifest_asset=manifest_asset, trials_asset=trials_asset)
        seen_at = time.time()  # after the scan: an ingest run started later reads what was seen
        messages = list(changes.notes)
        requests: list[dg.RunRequest] = []

        if first and changes:
            found = sum(changes.sources.values())
            clipped = context.instance.get_materialized_partitions(dg.AssetKey.from_user_string(clips_asset))
            todo = set(changes.sources) - set(clipped)
            messages.append(f"first evaluation: {found} sources in {len(changes.sources)} partitions, "
                            f"{len(changes.sources) - len(todo)} of them already clipped")
            changes.restrict(todo)

        latest: dict[str, tuple[str, float | None]] = {}

        def ingest_of(key: str) -> tuple[str, float | None]:
            if key not in latest:
                latest[key] = _latest_ingest(context.instance, key)
            return latest[key]

        if changes:
            # The fingerprints cover the new inputs *and* the state they were found in (the previous
            # cursor, the latest ingest runs): evaluating the same tick again gives the same run keys,
            # while the same inputs seen again later (a trial folder removed and put back) get new ones.
            basis = hashlib.sha1((context.cursor or "").encode("utf-8", "surrogateescape"))
            for key in sorted(changes.needs):
                basis.update(f"|{key}={ingest_of(key)[0]}".encode())
            parts = {p: _digest([basis.hexdigest(), f"{p}={f}"]) for p, f in changes.partitions().items()}
            batch_fp = _digest([f"{p}={f}" for p, f in parts.items()])
            batch = PendingBatch(batch_fp, seen_at, sorted(changes.needs), parts)
            state.pending.append(batch)
            requests.append(dg.RunRequest(
                job_name=ingest_job.name, run_key=f"ingest:{batch_fp}",
                tags={TRIGGER_TAG: "sensor", AUTOMATION_TAG: name, BATCH_TAG: batch_fp},
            ))
            messages.append(f"{sum(changes.sources.values())} new inputs in {len(parts)} partitions "
                            f"(batch {batch_fp}): asked for {ingest_job.name}")

        # Release the pending batches whose ingest has read their inputs.
        ready: list[PendingBatch] = []
        waiting: list[PendingBatch] = []
        for batch in state.pending:
            if all((ingest_of(k)[1] or 0.0) >= batch.seen_at for k in batch.needs):
                ready.append(batch)
            else:
                waiting.append(batch)
        state.pending = waiting
        by_partition: dict[str, list[str]] = {}
        for batch in ready:
            for partition, fp in batch.partitions.items():
                by_partition.setdefault(partition, []).append(fp)
        batches = ",".join(b.fingerprint for b in ready)
        for partition, fps in sorted(by_partition.items()):
            requests.append(dg.RunRequest(
                job_name=clips_job.name, partition_key=partition, run_key=f"{partition}:{_combined(fps)}",
                tags={TRIGGER_TAG: "sensor", AUTOMATION_TAG: name, BATCH_TAG: batches},
            ))
        if ready:
            messages.append(f"ingest done for batch(es) {batches}: asked for {clips_job.name} on "
                            f"{len(by_partition)} partitions")
        for batch in waiting:
            if batch.seen_at < seen_at:
                messages.append(f"batch {batch.fingerprint} ({len(batch.partitions)} partitions) waits for "
                                f"{'/'.join(batch.needs)} to be re-materialized "
                                f"(seen {round(seen_at - batch.seen_at)} s ago)")
        if changes.unparsed:
            messages.append(f"{changes.unparsed} manifest records without a readable id skipped "
                            "(ingest quarantines them)")
        if changes.incomplete_trials:
            messages.append(f"{changes.incomplete_trials} trial folders not complete yet "
                            "(no metadata.json or video): looked at again next tick")
        for message in messages:
            context.log.info(message)
        if requests:
            return dg.SensorResult(run_requests=requests, cursor=state.to_cursor())
        return dg.SensorResult(skip_reason="; ".join(messages) or "no new inputs", cursor=state.to_cursor())

    return _new_inputs
