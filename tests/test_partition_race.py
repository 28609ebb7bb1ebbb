"""Two runs of one partition at once (a backfill and the sensor, two Ray workers): one complete,
consistent partition, and a clear message from the run that stepped back; never a mix."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from goalcraft.cli import main
from goalcraft.data.shards import verify_partition
from goalcraft.storage import PartitionBusy, StoragePaths, partition_lock

SRC = str(Path(__file__).resolve().parents[1] / "src")

# Holds the lock of `name` under `root` until the file `release` appears.
HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from goalcraft.storage import partition_lock
    root, name, ready, release = sys.argv[1:]
    with partition_lock(Path(root), name, "video_clips[" + name + "]"):
        Path(ready).touch()
        while not Path(release).exists():
            time.sleep(0.02)
""")

# `goalcraft run` of one clip partition, with two hooks for the race: every racer waits at a barrier
# just before taking the partition's lock (so they reach it together), and the winner then holds the
# lock 2 s longer (so the other certainly finds it held).
RACER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    import goalcraft.stages.clips as stage
    from goalcraft.cli import main

    barrier, racers = Path(sys.argv[1]), int(sys.argv[2])
    rows, build = stage._rows, stage.build_clip_partition

    def rows_at_barrier(*args):
        (barrier / str(os.getpid())).touch()
        while len(list(barrier.iterdir())) < racers:
            time.sleep(0.01)
        return rows(*args)

    def slow_build(*args, **kwargs):
        time.sleep(2.0)
        return build(*args, **kwargs)

    stage._rows, stage.build_clip_partition = rows_at_barrier, slow_build
    sys.exit(main(sys.argv[3:]))
""")


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), **extra)
    env.pop("GOALCRAFT_CONFIG", None)
    return env


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


def test_a_held_partition_lock_turns_the_second_writer_away_at_once(tmp_path):
    root = tmp_path / "locks"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(root), "p0003", str(tmp_path / "ready"),
                               str(tmp_path / "release")], env=_env())
    try:
        _wait_for(tmp_path / "ready", holder)
        started = time.monotonic()
        with pytest.raises(PartitionBusy) as busy:
            with partition_lock(root, "p0003", "video_clips[p0003]"):
                pytest.fail("the lock was taken twice")
        assert time.monotonic() - started < 1  # no waiting
        message = str(busy.value)
        assert message.startswith(f"video_clips[p0003] is being written by another run (pid {holder.pid} on ")
        assert "wrote nothing" in message
    finally:
        (tmp_path / "release").touch()
        holder.wait(timeout=30)
    with partition_lock(root, "p0003", "video_clips[p0003]"):  # released when its holder ended
        pass


def test_a_killed_writer_leaves_no_stale_lock(tmp_path):
    root = tmp_path / "locks"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(root), "p0000", str(tmp_path / "ready"),
                               str(tmp_path / "never")], env=_env())
    _wait_for(tmp_path / "ready", holder)
    holder.kill()
    holder.wait(timeout=30)
    with partition_lock(root, "p0000", "video_clips[p0000]"):
        assert (root / "p0000.lock").is_file()


# Takes the lock the way partition_lock does, but writes its record only after `delay` seconds: the
# window in which a loser finds the lock held and its record not yet written.
LATE_HOLDER = textwrap.dedent("""
    import fcntl, json, os, socket, sys, time
    from pathlib import Path
    lock, ready, delay = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    ready.touch()
    time.sleep(delay)
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}).encode(), 0)
    time.sleep(5)
""")


@pytest.mark.parametrize("stale", [False, True], ids=["empty record", "dead holder's record"])
def test_the_loser_names_a_holder_that_writes_its_record_late(tmp_path, stale):
    root = tmp_path / "locks"
    root.mkdir()
    lock = root / "p0001.lock"
    if stale:  # an earlier holder on this host that was killed before it could clear its record
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        lock.write_text(f'{{"pid": {dead.pid}, "host": "{socket.gethostname()}", "since": 0}}')
    holder = subprocess.Popen([sys.executable, "-c", LATE_HOLDER, str(lock), str(tmp_path / "ready"), "0.2"])
    try:
        _wait_for(tmp_path / "ready", holder)
        with pytest.raises(PartitionBusy) as busy:
            with partition_lock(root, "p0001", "video_clips[p0001]"):
                pytest.fail("the lock was taken twice")
        assert str(busy.value).startswith(f"video_clips[p0001] is being written by another run (pid {holder.pid} on ")
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_a_finished_holder_leaves_no_record_behind(tmp_path):
    root = tmp_path / "locks"
    with partition_lock(root, "p0002", "video_clips[p0002]"):
        assert f'"pid": {os.getpid()}' in (root / "p0002.lock").read_text()
    assert (root / "p0002.lock").read_text() == ""


def _config_file(path: Path, data: Path, corpus: Path) -> Path:
    path.write_text(f'[paths]\ndata_root = "{data}"\ncorpus_root = "{corpus}"\n[partitions]\ncount = 2\n')
    return path


@pytest.mark.slow
def test_two_runs_of_one_clip_partition_at_once_leave_one_complete_partition(crafter_corpus, tmp_path, monkeypatch,
                                                                               capsys, same_outputs):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    reference = tmp_path / "reference"
    assert main(["--config", str(_config_file(tmp_path / "reference.toml", reference, crafter_corpus)), "run",
                 "--select", "ingest,video_clips", "--partition", "p0000"]) == 0
    capsys.readouterr()
    # The racers: a data root with the same ingest tables and an older build of the partition.
    data = tmp_path / "data"
    shutil.copytree(reference / "ingest", data / "ingest")
    shutil.copytree(reference / "clips" / "p0000", data / "clips" / "p0000")
    config = _config_file(tmp_path / "race.toml", data, crafter_corpus)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    racers = [subprocess.Popen([sys.executable, "-c", RACER, str(barrier), "2", "--config", str(config), "run",
                                "--select", "video_clips", "--partition", "p0000"],
                               env=_env(DAGSTER_HOME=str(tmp_path / f"home{n}")), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for n in range(2)]
    results = [(r.wait(timeout=300), *r.communicate()) for r in racers]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 1], results
    (winner,) = [out for code, out, _ in results if code == 0]
    (loser,) = [(proc, err) for proc, (code, _, err) in zip(racers, results) if code == 1]
    winner_pid = next(p.pid for p, (code, _, _) in zip(racers, results) if code == 0)
    assert "video_clips [#] p0000:" in winner and "check passed" in winner
    assert loser[1].strip().startswith(
        "goalcraft: video_clips[p0000] failed: video_clips[p0000] is being written by another run "
        f"(pid {winner_pid} on "), loser[1]
    # One complete partition, the same bytes as a run alone; nothing half-written left behind.
    partition = StoragePaths(data).clip_partition_dir("p0000")
    assert verify_partition(partition)[2] == []
    assert "p0000-00000.tar" in same_outputs(reference / "clips" / "p0000", partition)
    assert not any((data / "clips" / ".staging").iterdir())
    assert not list((data / "clips").glob(".trash-*"))


def test_the_embedding_of_a_partition_being_written_steps_back(tmp_path):
    """clip_embeddings takes the same lock (goal_clips too): the second writer fails before it loads
    a model or reads a shard, and the table on disk is untouched."""
    from goalcraft.config import GoalSpaceSettings
    from goalcraft.stages.embeddings import embed_clip_partition

    paths = StoragePaths(tmp_path / "data")
    table = paths.clip_embeddings_table("p0001")
    table.parent.mkdir(parents=True)
    table.write_bytes(b"the winner's table")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(paths.lock_dir("clip_embeddings")), "p0001",
                               str(tmp_path / "ready"), str(tmp_path / "release")], env=_env())
    try:
        _wait_for(tmp_path / "ready", holder)
        with pytest.raises(PartitionBusy, match=r"^clip_embeddings\[p0001\] is being written by another run"):
            embed_clip_partition(paths, GoalSpaceSettings(), "p0001")
        assert table.read_bytes() == b"the winner's table"
    finally:
        (tmp_path / "release").touch()
        holder.wait(timeout=30)
