"""Worker processes, one way for every stage that fans out (corpus generation, trajectory replay,
rollouts).

* Started by forkserver where the platform has it, else spawn: never a forked copy of the caller's
  threads (torch's, Dagster's) or state.
* Workers ignore SIGINT. Ctrl-C reaches the whole foreground process group, so without this every
  worker would print its own KeyboardInterrupt traceback; the parent alone handles it, stops
  submitting and shuts the pool down, and the CLI prints one line.
"""

from __future__ import annotations

import multiprocessing
import signal
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.context import BaseContext

__all__ = ["ignore_interrupts", "process_context", "process_pool"]


def process_context() -> BaseContext:
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def ignore_interrupts() -> None:
    """In a worker: leave Ctrl-C to the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def process_pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=workers, mp_context=process_context(), initializer=ignore_interrupts)
