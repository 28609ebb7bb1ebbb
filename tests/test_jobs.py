"""Jobs as a user drives them: the ingest job from the CLI, then a partition backfill of the clip job
picked up by the Dagster daemon (what a backfill launched from the UI does)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest


def _dagster(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("dagster")
    return subprocess.run([str(exe), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # a real daemon and multiprocess runs: minutes
def test_backfill_of_two_partitions_runs_through_the_daemon(crafter_corpus, tmp_path):
    config = tmp_path / "goalcraft.toml"
    config.write_text(f'[paths]\ndata_root = "data"\ncorpus_root = "{crafter_corpus}"\n[partitions]\ncount = 2\n')
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = dict(os.environ, GOALCRAFT_CONFIG=str(config), DAGSTER_HOME=str(home))

    ingest = _dagster(["job", "execute", "-m", "goalcraft.definitions", "-j", "ingest_job"], env, tmp_path)
    assert ingest.returncode == 0, ingest.stderr[-2000:]
    backfill = _dagster(["job", "backfill", "-m", "goalcraft.definitions", "-j", "clips_job",
                         "--partitions", "p0000,p0001", "--noprompt"], env, tmp_path)
    assert backfill.returncode == 0 and "Launched backfill" in backfill.stdout, backfill.stdout + backfill.stderr

    daemon = subprocess.Popen([str(Path(sys.executable).with_name("dagster-daemon")), "run", "-m",
                               "goalcraft.definitions"], env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    old_home = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        instance = dg.DagsterInstance.get()
        deadline = time.time() + 240
        while time.time() < deadline:
            runs = instance.get_runs(filters=dg.RunsFilter(job_name="clips_job"))
            if len(runs) == 2 and all(r.is_finished for r in runs):
                break
            time.sleep(2)
        assert sorted(r.tags["dagster/partition"] for r in runs) == ["p0000", "p0001"]
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), [r.status for r in runs]
        assert instance.get_materialized_partitions(dg.AssetKey("video_clips")) == {"p0000", "p0001"}
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(timeout=60)
        if old_home is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = old_home
    from goalcraft.sql import connect

    con = connect(tmp_path / "data")
    written = con.execute("SELECT sum(clips_written) FROM clip_partitions").fetchone()[0]
    assert written == con.execute("SELECT count(*) FROM clips").fetchone()[0] > 0
