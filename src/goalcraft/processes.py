"""Worker processes, one way for every stage that fans out (corpus generation, trajectory replay,
rollouts).

* Started by forkserver where the platform has it, else spawn: never a forked copy of the caller's
  threads (torch's, Dagster's) or state.
* Workers ignore SIGINT. Ctrl-C reaches the whole foreground process group, so without this every
  worker would print its own KeyboardInterrupt traceback; the parent alone handles it, stops
  submitting and shuts the pool down, and the CLI prints one line.
"""

from __future__ import annotations

import collections
import itertools
import multiprocessing
import pickle
import signal
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from multiprocessing.context import BaseContext
from typing import Any, TypeVar

__all__ = ["ignore_interrupts", "ordered_map", "process_context", "process_pool"]

T = TypeVar("T")
_NOTHING = object()


def process_context() -> BaseContext:
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def ignore_interrupts() -> None:
    """In a worker: leave Ctrl-C to the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def process_pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=workers, mp_context=process_context(), initializer=ignore_interrupts)


def ordered_map(pool: Executor | None, fn: Callable[[T], Any], items: Iterable[T], *, ahead: int
                ) -> Iterator[tuple[T, Any]]:
    """``(item, fn(item))`` for each item, in order. With ``pool`` (``fn`` picklable), up to ``ahead``
    items run in its processes ahead of the consumer: enough to keep them busy, few enough that the
    results waiting to be consumed stay small in memory. Without, each item runs when it is asked for.
    An exception ``fn`` raises is raised here, at its item."""
    if pool is None:
        for item in items:
            yield item, fn(item)
        return
    if ahead < 1:
        raise ValueError(f"ahead must be >= 1, got {ahead}")
    source = iter(items)
    first = next(source, _NOTHING)
    if first is _NOTHING:
        return
    # A task that does not pickle fails in the pool's feeder thread, and on Python 3.11 the pool then
    # hangs in shutdown; pickling the function and the first item here makes it a plain error.
    try:
        pickle.dumps((fn, first))
    except Exception as exc:  # noqa: BLE001 - any failure to pickle is the same mistake
        raise TypeError(f"ordered_map: the task cannot be sent to a worker process ({type(exc).__name__}: {exc})") from exc
    source = itertools.chain([first], source)
    pending: collections.deque[tuple[T, Future]] = collections.deque()

    def submit_one() -> None:
        for item in source:
            pending.append((item, pool.submit(fn, item)))
            return

    for _ in range(ahead):
        submit_one()
    while pending:
        item, future = pending.popleft()
        submit_one()  # before waiting: the processes never run dry while this one consumes
        yield item, future.result()
