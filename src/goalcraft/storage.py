"""Where goalcraft's outputs live: the one seam for storage paths, and atomic writes.

Layout under the data root (:class:`StoragePaths` names each folder and table)::

    ingest/manifest.parquet              one row per usable video (with its partition)
    ingest/trials.parquet                one row per usable agent trial
    ingest/manifest_quarantine.parquet   manifest rows that were rejected, with the reason
    ingest/trials_quarantine.parquet     trial folders that were rejected, with the reason
    clips/<partition>/<partition>-<n>.tar          WebDataset shard of 16-frame clips (n: 00000, ...)
    clips/<partition>/<partition>-<n>.parquet      index of the shard's samples
    clips/<partition>/<partition>-<n>_stats.json   per-shard stats
    clips/<partition>/quarantine.parquet    clip-stage rejects of the partition
    clips/<partition>/partition.json        partition summary, written last
    goals/<partition>/...                   goal clips, same layout as clips/
    models/goal_space/{best,last}/          the trained MineCLIP goal space (safetensors + config.json),
                                            norm_stats.json, tensorboard/
    models/prior/{best,last}/               the STEVE-1 prior (trained on the train and val splits)
    models/predictor_stage1/{best,last}/    goal predictor stage 1 (text → 32 query tokens)
    models/goal_predictor/{best,last}/      the whole goal predictor with its aligner (→ z_goal)
    embeddings/goal_clips.parquet           one goal-space embedding per goal clip, with its split
    embeddings/clips/<partition>.parquet    one goal-space embedding per clip
    evaluation/<table>/<run_id>.parquet     evaluation tables, one file per run
    evaluation/report.html                  the latest HTML report (reports/<run_id>.html: each run's)
    dagster_home/                           the Dagster instance the CLI and the UI share
    .locks/<asset>/<partition>.lock         write locks of partitioned outputs (see :func:`partition_lock`)

A partition folder is built under ``clips/.staging/`` (``goals/.staging/``) and swapped into place
whole, so readers only ever see a complete partition (see :func:`commit_directory`). A writer holds
the partition's lock (:func:`partition_lock`, ``.locks/<asset>/<partition>.lock``) from the clean-up of
stale staging folders to the swap, so two runs of one partition at once (a backfill and the sensor,
two Ray workers) cannot interleave: the second fails at once with :class:`PartitionBusy`.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq


@dataclass(frozen=True)
class StoragePaths:
    data_root: Path

    @property
    def ingest_dir(self) -> Path:
        return self.data_root / "ingest"

    @property
    def manifest_table(self) -> Path:
        return self.ingest_dir / "manifest.parquet"

    @property
    def trials_table(self) -> Path:
        return self.ingest_dir / "trials.parquet"

    @property
    def manifest_quarantine_table(self) -> Path:
        return self.ingest_dir / "manifest_quarantine.parquet"

    @property
    def trials_quarantine_table(self) -> Path:
        return self.ingest_dir / "trials_quarantine.parquet"

    @property
    def clips_dir(self) -> Path:
        return self.data_root / "clips"

    def clip_partition_dir(self, partition: str) -> Path:
        return self.clips_dir / partition

    @property
    def staging_dir(self) -> Path:
        return self.clips_dir / ".staging"

    def clip_shards(self) -> list[Path]:
        """Every clip shard of every materialized partition, in partition and shard order."""
        return sorted(self.clips_dir.glob("p*/p*-*.tar"))

    def goal_shards(self) -> list[Path]:
        return sorted(self.goals_dir.glob("p*/p*-*.tar"))

    @property
    def goals_dir(self) -> Path:
        return self.data_root / "goals"

    def goal_partition_dir(self, partition: str) -> Path:
        return self.goals_dir / partition

    @property
    def goal_staging_dir(self) -> Path:
        return self.goals_dir / ".staging"

    @property
    def goal_space_dir(self) -> Path:
        return self.data_root / "models" / "goal_space"

    @property
    def prior_dir(self) -> Path:
        return self.data_root / "models" / "prior"

    @property
    def predictor_stage1_dir(self) -> Path:
        """Stage 1 of the goal predictor (text → 32 visual query tokens), the start of stage 2."""
        return self.data_root / "models" / "predictor_stage1"

    @staticmethod
    def replicate_dirs(base: Path, replicates: int) -> list[Path]:
        """The folders of a model's training replicates: ``base`` for replicate 0 (the served model),
        ``<base>_r<k>`` beside it for the others."""
        return [base if k == 0 else base.with_name(f"{base.name}_r{k}") for k in range(replicates)]

    @property
    def goal_predictor_dir(self) -> Path:
        """The whole goal predictor (stage 1 frozen + its trained aligner): what ``predict_goal`` loads."""
        return self.data_root / "models" / "goal_predictor"

    @property
    def policy_dir(self) -> Path:
        """The goal-conditioned policy (goalcraft.training.policy) and its episode cache."""
        return self.data_root / "models" / "policy"

    @property
    def goal_predictor_rl_dir(self) -> Path:
        """The residual head REINFORCE fine-tunes on the goal predictor (goalcraft.training.predictor_rl)."""
        return self.data_root / "models" / "goal_predictor_rl"

    @property
    def agent_success_dir(self) -> Path:
        """Agent success: one parquet file per run (goalcraft.evaluation.agent_success)."""
        return self.data_root / "evaluation" / "agent_success"

    @property
    def task_vocabulary_file(self) -> Path:
        """The task vocabulary of the configured task files (goalcraft.data.task_vocabulary)."""
        return self.ingest_dir / "task_vocabulary.json"

    @property
    def evaluation_dir(self) -> Path:
        """Evaluation tables, one folder per table, one parquet file per run (goalcraft.evaluation.run)."""
        return self.data_root / "evaluation"

    @property
    def goal_embeddings_table(self) -> Path:
        return self.data_root / "embeddings" / "goal_clips.parquet"

    @property
    def clip_embeddings_dir(self) -> Path:
        return self.data_root / "embeddings" / "clips"

    def clip_embeddings_table(self, partition: str) -> Path:
        return self.clip_embeddings_dir / f"{partition}.parquet"

    @property
    def dagster_home(self) -> Path:
        return self.data_root / "dagster_home"

    def lock_dir(self, asset: str) -> Path:
        """Where the write locks of ``asset``'s partitions live (:func:`partition_lock`)."""
        return self.data_root / ".locks" / asset


def temporary_name(path: Path) -> Path:
    # Hidden, unique and in the same folder, so the final rename never crosses a file system.
    return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:12]}")


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``, else delete it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def write_text_atomic(text: str, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(data: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def commit_directory(staged: Path, final: Path) -> None:
    """Replace ``final`` by the fully written ``staged`` folder.

    POSIX cannot swap two folders in one step, so the old folder is first renamed to a
    ``.trash-*`` sibling; :func:`recover_directory` restores it if the process dies between the
    two renames. Either the old or the new folder is complete at every moment.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    trash = final.with_name(f".trash-{final.name}-{uuid.uuid4().hex[:12]}")
    if final.exists():
        os.replace(final, trash)
    os.replace(staged, final)
    if trash.exists():
        shutil.rmtree(trash)


def recover_directory(final: Path, staging_root: Path) -> None:
    """Undo what a killed writer left: stale staging folders, and a lost swap."""
    if staging_root.is_dir():
        for stale in staging_root.glob(f"{final.name}-*"):
            shutil.rmtree(stale, ignore_errors=True)
    trashes = sorted(final.parent.glob(f".trash-{final.name}-*"), key=lambda p: p.stat().st_mtime)
    if not final.exists() and trashes:
        os.replace(trashes.pop(), final)
    for trash in trashes:
        shutil.rmtree(trash, ignore_errors=True)


def new_staging_dir(final: Path, staging_root: Path) -> Path:
    staged = staging_root / f"{final.name}-{uuid.uuid4().hex[:12]}"
    staged.mkdir(parents=True)
    return staged


class PartitionBusy(RuntimeError):
    """Another process holds the partition's write lock: this writer stepped back, writing nothing."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _lock_holder(fd: int, patience: float = 0.5) -> str:
    """Who holds the lock, from the record its holder writes just after taking it.

    The holder takes the lock first and writes its record next, so a loser can read an empty or half
    written record, or, on this host, a dead earlier holder's: it reads again for up to ``patience``
    seconds before naming no one."""
    deadline = time.monotonic() + patience
    while True:
        try:
            holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
            pid = int(holder["pid"])
            if holder["host"] == socket.gethostname() and not _pid_alive(pid):
                raise ValueError("a dead holder's record")
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(holder["since"])))
            return f"pid {pid} on {holder['host']} since {since}"
        except (ValueError, KeyError, TypeError, OSError):
            if time.monotonic() >= deadline:
                return "another process"
            time.sleep(0.01)


@contextmanager
def partition_lock(lock_root: Path, name: str, what: str) -> Iterator[None]:
    """Hold the write lock of one partition while the block runs; raise :class:`PartitionBusy` at once
    (no waiting) when another process holds it.

    The lock is an ``flock`` on ``<lock_root>/<name>.lock``: the kernel drops it when its holder
    exits or is killed, so a crashed writer leaves no stale lock (the small file stays, and records
    who holds it for the loser's message). On NFS, Linux maps ``flock`` to POSIX locks, which NFSv4
    servers honour across hosts. ``what`` names the output in the message, e.g. ``video_clips[p0003]``.
    """
    lock_root.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_root / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PartitionBusy(f"{what} is being written by another run ({_lock_holder(fd)}); this run left it "
                                "untouched and wrote nothing: the other run's partition stands (re-run after it "
                                "ends to rebuild it)") from None
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # a finished holder leaves no record to be mistaken for the next one's
    finally:
        os.close(fd)  # releases the lock
