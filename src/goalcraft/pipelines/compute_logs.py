"""Dagster's local compute-log capture without its helper processes.

Dagster's :class:`~dagster._core.storage.local_compute_log_manager.LocalComputeLogManager` redirects a
run's stdout and stderr to files (the UI's log view) and mirrors them back to the terminal with a
``tail -F`` process and a Python watcher process per stream. On Ctrl-C the whole foreground process
group gets SIGINT, and each watcher prints its own ``KeyboardInterrupt`` traceback under goalcraft's
one-line "interrupted" message. :class:`InProcessComputeLogManager` stores the same files in the
same places but mirrors them with a thread of this process, so an interrupt reaches goalcraft alone.
``goalcraft`` writes it into the ``dagster.yaml`` it creates (:func:`goalcraft.cli.dagster_home`).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Generator, Sequence
from contextlib import contextmanager
from typing import Any

from dagster._core.execution.compute_logs import redirect_to_file
from dagster._core.storage.compute_log_manager import CapturedLogContext, ComputeIOType
from dagster._core.storage.local_compute_log_manager import IO_TYPE_EXTENSION, LocalComputeLogManager
from dagster._serdes import ConfigurableClassData
from dagster._utils import ensure_file, touch_file

__all__ = ["TELEMETRY_OFF", "InProcessComputeLogManager", "instance_yaml", "mirror_to_file"]

_POLL_S = 0.05
#: The whole dagster.yaml goalcraft wrote before it configured the compute logs; the start of the one it writes now.
TELEMETRY_OFF = "telemetry:\n  enabled: false\n"


@contextmanager
def mirror_to_file(stream: Any, path: str) -> Generator[None, None, None]:
    """Send ``stream``'s file descriptor to ``path`` (appending) and copy what lands there back to where
    the descriptor pointed before, until the block ends; every byte written in the block is copied
    before it returns. A stream without a file descriptor is left alone."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        yield
        return
    path = os.path.abspath(path)
    ensure_file(path)
    start = os.path.getsize(path)
    original = os.dup(fd)
    done = threading.Event()

    def pump() -> None:
        with open(path, "rb") as source:
            source.seek(start)
            while True:
                chunk = source.read(1 << 16)
                if chunk:
                    try:
                        os.write(original, chunk)
                    except OSError:  # the terminal went away: keep the file, stop mirroring
                        return
                elif done.is_set():
                    return
                else:
                    done.wait(_POLL_S)

    thread = threading.Thread(target=pump, name=f"goalcraft-log-mirror-{fd}", daemon=True)
    thread.start()
    try:
        with redirect_to_file(stream, path):
            yield
    finally:
        done.set()
        thread.join()
        os.close(original)


class InProcessComputeLogManager(LocalComputeLogManager):
    """:class:`LocalComputeLogManager` (same configuration, files and UI) that mirrors captured output to
    the terminal with a thread instead of ``tail`` and watcher processes (module docstring)."""

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value: Any) -> InProcessComputeLogManager:
        return cls(inst_data=inst_data, **config_value)

    @contextmanager
    def capture_logs(self, log_key: Sequence[str]) -> Generator[CapturedLogContext, None, None]:
        out = self.get_captured_local_path(log_key, IO_TYPE_EXTENSION[ComputeIOType.STDOUT])
        err = self.get_captured_local_path(log_key, IO_TYPE_EXTENSION[ComputeIOType.STDERR])
        with mirror_to_file(sys.stdout, out), mirror_to_file(sys.stderr, err):
            yield CapturedLogContext(log_key)
        touch_file(self.complete_artifact_path(log_key))  # as Dagster's: the capture is complete


def instance_yaml(home: str) -> str:
    """The ``dagster.yaml`` goalcraft writes into a Dagster home it creates: telemetry off (machines
    without internet) and :class:`InProcessComputeLogManager` under ``<home>/storage`` (where the
    default manager keeps its files)."""
    storage = os.path.join(os.path.abspath(home), "storage")
    return (TELEMETRY_OFF
            + "compute_logs:\n  module: goalcraft.pipelines.compute_logs\n  class: InProcessComputeLogManager\n"
            f"  config:\n    base_dir: {json.dumps(storage)}\n")  # a JSON string is YAML
