"""Compute logs: the captured files and the terminal mirror, and Ctrl-C without helper processes' tracebacks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from goalcraft.cli import dagster_home
from goalcraft.pipelines.compute_logs import InProcessComputeLogManager, instance_yaml
from goalcraft.storage import StoragePaths

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _python(code: str, tmp_path: Path, extra_env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), PYTHONUNBUFFERED="1",
               **(extra_env or {}))
    env.pop("DAGSTER_HOME", None)
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def test_mirror_copies_every_byte_to_the_file_and_the_terminal_in_order(tmp_path):
    proc = _python("""
        import os, sys
        from goalcraft.pipelines.compute_logs import mirror_to_file
        print("before", flush=True)
        with mirror_to_file(sys.stdout, "out.log"):
            for i in range(2000):
                print(f"line {i}")
            sys.stdout.flush()
            os.write(1, b"raw fd write\\n")  # a C library or child process writes to the descriptor
        print("after", flush=True)
    """, tmp_path)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    inside = [f"line {i}" for i in range(2000)] + ["raw fd write"]
    assert out.splitlines() == ["before", *inside, "after"]
    assert (tmp_path / "out.log").read_text().splitlines() == inside


def test_goalcraft_writes_its_instance_yaml_and_keeps_yours(tmp_path, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    paths = StoragePaths(tmp_path / "data")
    home = dagster_home(paths)
    config = yaml.safe_load((home / "dagster.yaml").read_text())
    assert config["telemetry"] == {"enabled": False}
    assert config["compute_logs"]["class"] == "InProcessComputeLogManager"
    assert config["compute_logs"]["config"]["base_dir"] == str(home.resolve() / "storage")
    # The file earlier versions wrote is brought up to date; one of the user's own is not touched.
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    dagster_home(paths)
    assert (home / "dagster.yaml").read_text() == instance_yaml(str(home))
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: true\n")
    dagster_home(paths)
    assert (home / "dagster.yaml").read_text() == "telemetry:\n  enabled: true\n"


_RUN = """
    import os, sys, time
    from pathlib import Path
    import dagster as dg
    from goalcraft.cli import _instance
    from goalcraft.pipelines.run import Step, execute_step
    from goalcraft.storage import StoragePaths

    @dg.asset
    def slow():
        print("step started", flush=True)
        print("to stderr", file=sys.stderr, flush=True)
        if os.environ.get("SLEEP"):
            time.sleep(60)
        return 1

    instance = _instance(StoragePaths(Path("data").resolve()))
    try:  # as `goalcraft run` executes a step (its run config, its handling of an interrupt)
        execute_step(dg.Definitions(assets=[slow]), instance, Step((slow.key,)))
        print("manager", type(instance.compute_log_manager).__name__, flush=True)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr, flush=True)
"""


@pytest.mark.slow
def test_a_real_run_captures_the_steps_output_and_mirrors_it(tmp_path):
    proc = _python(_RUN, tmp_path)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "step started" in out and "manager InProcessComputeLogManager" in out
    assert "to stderr" in err
    logs = list((tmp_path / "data" / "dagster_home" / "storage").rglob("*.out"))
    assert len(logs) == 1 and "step started" in logs[0].read_text()
    assert "to stderr" in logs[0].with_suffix(".err").read_text()
    assert logs[0].with_suffix(".complete").exists()
    assert isinstance(InProcessComputeLogManager.from_config_value(None, {"base_dir": str(tmp_path)}),
                      InProcessComputeLogManager)


@pytest.mark.slow
def test_ctrl_c_during_a_step_prints_no_helper_traceback(tmp_path):
    # The whole process group gets SIGINT, as from a terminal. Dagster's own manager would leave a
    # KeyboardInterrupt traceback from each of its watcher processes on stderr.
    proc = _python(_RUN, tmp_path, {"SLEEP": "1"}, start_new_session=True)
    deadline = time.monotonic() + 120
    line = ""
    while "step started" not in line and time.monotonic() < deadline:
        line = proc.stdout.readline()
        assert line or proc.poll() is None, proc.stderr.read()
    time.sleep(1.0)  # the mirror is running
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert "interrupted" in err
    assert "Traceback" not in err, err
    assert "KeyboardInterrupt" not in err, err
