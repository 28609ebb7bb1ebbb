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
