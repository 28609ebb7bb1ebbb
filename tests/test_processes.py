"""The worker processes every fanning-out stage uses: Ctrl-C is the parent's alone."""

from __future__ import annotations

import os
import signal

from goalcraft.processes import process_pool


def _interrupted_then_answer(value: int) -> tuple[int, int]:
    os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C sends every process of the terminal's group
    return value * 2, os.getpid()


def test_a_worker_shrugs_off_sigint_and_finishes_its_task():
    with process_pool(2) as pool:
        answers = list(pool.map(_interrupted_then_answer, range(4)))
    assert [a for a, _ in answers] == [0, 2, 4, 6]
    assert os.getpid() not in {pid for _, pid in answers}  # played in the workers, not here


def _square_or_fail(x: int) -> int:
    if x == 3:
        raise ValueError("three")
    return x * x


class _CountingPool:
    """A real process pool that records how many tasks were submitted when."""

    def __init__(self, pool) -> None:
        self.pool, self.submitted = pool, 0

    def submit(self, fn, *args):
        self.submitted += 1
        return self.pool.submit(fn, *args)


def test_ordered_map_keeps_order_runs_a_few_ahead_and_raises_at_the_failing_item():
    import pytest

    from goalcraft.processes import ordered_map

    with process_pool(2) as pool:
        counting = _CountingPool(pool)
        seen = []
        results = ordered_map(counting, _square_or_fail, [5, 1, 4, 2, 0, 6], ahead=2)
        for item, value in results:
            seen.append((item, value, counting.submitted))
        # In order; at most `ahead` + 1 submitted when an item is handed over (the next goes in first).
        assert [(i, v) for i, v, _ in seen] == [(5, 25), (1, 1), (4, 16), (2, 4), (0, 0), (6, 36)]
        assert [s for *_, s in seen] == [3, 4, 5, 6, 6, 6]
        failing = ordered_map(pool, _square_or_fail, [2, 3, 4], ahead=4)
        assert next(failing) == (2, 4)
        with pytest.raises(ValueError, match="three"):
            next(failing)
    # Without a pool: each item when asked for.
    calls = []
    lazy = ordered_map(None, lambda x: calls.append(x) or -x, [1, 2], ahead=1)
    assert calls == [] and next(lazy) == (1, -1) and calls == [1]


def _reject(reason: str):
    from goalcraft.data.quarantine import InputError

    return InputError(reason, "a detail: with a colon")


def test_an_input_error_crosses_processes_as_a_value():
    """A worker returns the InputError that rejects its input; it arrives with its reason and detail."""
    with process_pool(1) as pool:
        error = pool.submit(_reject, "trajectory_replay_mismatch").result()
    assert (type(error).__name__, error.reason, error.detail) == ("InputError", "trajectory_replay_mismatch",
                                                                  "a detail: with a colon")
    assert str(error) == "trajectory_replay_mismatch: a detail: with a colon"


def test_ordered_map_refuses_a_task_that_cannot_reach_a_worker():
    """An unpicklable function is a plain error before anything is submitted (on Python 3.11 a pickling
    failure inside the pool leaves it hanging in shutdown)."""
    import pytest

    from goalcraft.processes import ordered_map

    with process_pool(1) as pool:
        with pytest.raises(TypeError, match="cannot be sent to a worker process"):
            list(ordered_map(pool, lambda x: x, [1, 2], ahead=2))
        assert list(ordered_map(pool, _square_or_fail, [], ahead=2)) == []
        assert list(ordered_map(pool, _square_or_fail, [2], ahead=2)) == [(2, 4)]  # the pool still works
