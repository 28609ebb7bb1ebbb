"""The clip stage and the goal-space embedding on a live Ray cluster (a real local head node on
127.0.0.1, 2 CPUs), through Dagster's dagster-ray executor as ``goalcraft run`` launches it with
``[gpu] target = "ray"``: the outputs are byte-identical to the in-process run. The cluster is
stopped when the module's tests end, also when they fail."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

pytest.importorskip("dagster_ray", reason="the goalcraft[ray] extra is not installed")
pytest.importorskip("ray.dashboard.modules.job.job_head",
                    reason="Ray's job server needs ray[default] (the goalcraft[ray] extra)")

from goalcraft.cli import main  # noqa: E402

SRC = str(Path(__file__).resolve().parents[1] / "src")
# Every port of the head node, chosen free, so the test never meets another Ray on the machine.
PORT_FLAGS = ("--port", "--dashboard-port", "--ray-client-server-port", "--dashboard-agent-listen-port",
              "--dashboard-agent-grpc-port", "--node-manager-port", "--object-manager-port",
              "--runtime-env-agent-port", "--metrics-export-port")


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _stop(proc: subprocess.Popen) -> None:
    """``ray start --block`` stops the node's processes on SIGTERM; whatever of its session is left
    after 10 s is killed (its processes share the session's process group, and only they do)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    time.sleep(1)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def ray_cluster():
    """A Ray head node bound to 127.0.0.1 with 2 CPUs; yields its job-submission address."""
    from ray.job_submission import JobSubmissionClient

    ports = dict(zip(PORT_FLAGS, _free_ports(len(PORT_FLAGS))))
    # Short and private: Ray's unix sockets live under it (108-byte path limit).
    temp = tempfile.mkdtemp(prefix="gcray-", dir="/tmp")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(
        # Ray's single-machine mode (its default on macOS): the node's address stays 127.0.0.1, so
        # every server binds the loopback interface only.
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
        RAY_USAGE_STATS_ENABLED="0",
        # The steps import this checkout's goalcraft, as a cluster image would have it installed.
        PYTHONPATH=SRC + os.pathsep + env.get("PYTHONPATH", ""),
    )
    cmd = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
           "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1", "--num-cpus=2", "--num-gpus=0",
           "--object-store-memory=100000000", "--min-worker-port=0", "--max-worker-port=0",
           f"--temp-dir={temp}", "--disable-usage-stats", *(f"{flag}={port}" for flag, port in ports.items())]
    log = open(Path(temp) / "ray-start.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{ports['--dashboard-port']}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (Path(temp) / "ray-start.log").read_text()[-3000:]
            try:
                JobSubmissionClient(address).list_jobs()
                break
            except Exception:  # the job server is not up yet
                assert time.monotonic() < deadline, "Ray's job server did not come up in 120 s"
                time.sleep(1)
        yield address
    finally:
        _stop(proc)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def _settings(path: Path, data: Path, corpus: Path, extra: str = "") -> Path:
    path.write_text(f'[paths]\ndata_root = "{data}"\ncorpus_root = "{corpus}"\n[partitions]\ncount = 2\n'
                    f'[goal_space]\nsteps = 4\n{extra}')
    return path


def test_clips_and_embeddings_on_ray_are_byte_identical_to_in_process(ray_cluster, crafter_corpus, tmp_path,
                                                                       monkeypatch, capsys, same_outputs):
    import pyarrow.parquet as pq
    from ray.job_submission import JobStatus, JobSubmissionClient

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv("GOALCRAFT_CONFIG", raising=False)
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    assert main(["--config", str(_settings(tmp_path / "local.toml", local, crafter_corpus)), "run", "--select",
                 "ingest,video_clips,goal_space_model,clip_embeddings"]) == 0
    # The Ray run starts from the same ingest tables and goal space, and makes clips and embeddings.
    for folder in ("ingest", "models"):
        shutil.copytree(local / folder, on_ray / folder)
    ray_toml = _settings(tmp_path / "ray.toml", on_ray, crafter_corpus,
                         f'[gpu]\ntarget = "ray"\nray_address = "{ray_cluster}"\n')
    capsys.readouterr()
    assert main(["--config", str(ray_toml), "run", "--select", "video_clips,clip_embeddings"]) == 0
    out = capsys.readouterr().out
    # (the steps' own log lines, indented, print where the steps run: the Ray jobs' logs)
    assert [line.split(":")[0] for line in out.splitlines() if not line.startswith("  ")] == [
        "video_clips [#.] p0000", "video_clips [##] p0001", "clip_embeddings [#.] p0000",
        "clip_embeddings [##] p0001", "done"], out
    assert "check passed" in out.splitlines()[0]

    # Every step ran as a Ray job on the cluster, and succeeded. Dagster counts a step done when its
    # success event is logged, a moment before the job's process exits, so a job may still read
    # RUNNING here: wait (bounded) for every job to end before reading their statuses.
    client = JobSubmissionClient(ray_cluster)
    deadline = time.monotonic() + 120
    jobs = client.list_jobs()
    while any(not j.status.is_terminal() for j in jobs) and time.monotonic() < deadline:
        time.sleep(0.5)
        jobs = client.list_jobs()
    ops = sorted(j.metadata.get("dagster/op", "") for j in jobs)
    assert ops == sorted(["video_clips", "video_clips_shards_valid"] * 2
                         + ["clip_embeddings", "clip_embeddings_embeddings_sane"] * 2), ops
    assert {j.status for j in jobs} == {JobStatus.SUCCEEDED}
    assert {j.entrypoint.split(" -m ")[-1] for j in jobs} == {"dagster api execute_step"}

    for partition in ("p0000", "p0001"):
        names = same_outputs(local / "clips" / partition, on_ray / "clips" / partition)
        assert f"{partition}-00000.tar" in names
        table = f"embeddings/clips/{partition}.parquet"
        assert pq.read_table(on_ray / table).num_rows > 0
        assert pq.read_table(on_ray / table).equals(pq.read_table(local / table))
        assert (on_ray / table).read_bytes() == (local / table).read_bytes()
