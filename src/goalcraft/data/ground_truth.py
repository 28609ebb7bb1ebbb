"""Ground-truth success events, and how many mined goal clips actually show theirs.

A corpus may carry ``ground_truth/events.jsonl`` (the Crafter corpus writes it: one JSON object a line
with ``source_id``, ``achievement`` and ``time``, the second at which the unlock became visible). The
miners never read it; it measures them. A goal clip **shows its event** when an event of its task in
its source happened during the clip: ``first frame time < event time <= last frame time``, so the
clip holds the frame before the unlock and the frame after it (a trial's clip, which ends on its
success frame, always does). The fraction of clips that do (``coverage``) is the precision of the
goal labels: a goal clip that does not show its task is a wrong success visual for every goal model
alike, and caps what any of them can score (docs/results.md). A clip that also shows an event of
another task is ambiguous: its success visual fits two tasks. ``exclusive`` counts the clips that
show their event and no other task's; ``purity`` = exclusive / clips.
"""

from __future__ import annotations

import bisect
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

__all__ = ["GROUND_TRUTH_EVENTS", "GroundTruth", "event_coverage", "read_ground_truth"]

#: Where a corpus keeps its ground-truth events, relative to its root.
GROUND_TRUTH_EVENTS = "ground_truth/events.jsonl"


@dataclass
class GroundTruth:
    """Event times by ``(source_id, achievement)``, sorted; ``bad_lines``: lines that were not an event."""

    times: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    bad_lines: int = 0
    # (number of keys it was built from, tasks by source): built on first use, not per call.
    _by_source: tuple[int, dict[str, list[str]]] | None = field(default=None, init=False, repr=False, compare=False)

    def shows(self, source_id: str, task: str, first: float, last: float) -> bool:
        """Whether an event of ``task`` in ``source_id`` lies in ``(first, last]``."""
        times = self.times.get((source_id, task), [])
        i = bisect.bisect_right(times, first)
        return i < len(times) and times[i] <= last + 1e-9

    def others(self, source_id: str, task: str, first: float, last: float) -> bool:
        """Whether an event of a task other than ``task`` in ``source_id`` lies in ``(first, last]``."""
        return any(self.shows(source_id, other, first, last)
                   for other in self._tasks_by_source().get(source_id, ()) if other != task)

    def _tasks_by_source(self) -> dict[str, list[str]]:
        if self._by_source is None or self._by_source[0] != len(self.times):
            by_source: dict[str, list[str]] = defaultdict(list)
            for source, task in self.times:
                by_source[source].append(task)
            self._by_source = (len(self.times), dict(by_source))
        return self._by_source[1]


def read_ground_truth(path: Path) -> GroundTruth:
    """Read an events file. It is untrusted input: a line that is not a JSON object with a string
    ``source_id`` and ``achievement`` and a finite number ``time`` is counted in ``bad_lines``, not
    raised."""
    times: dict[tuple[str, str], list[float]] = defaultdict(list)
    bad = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                event = json.loads(line)
                source, task, t = event["source_id"], event["achievement"], event["time"]
                if not (isinstance(source, str) and isinstance(task, str)) or isinstance(t, bool):
                    raise TypeError
                t = float(t)
                if t != t or t in (float("inf"), float("-inf")):
                    raise ValueError
            except (ValueError, TypeError, KeyError):
                bad += 1
                continue
            times[(source, task)].append(t)
    return GroundTruth({k: sorted(v) for k, v in times.items()}, bad)


def event_coverage(rows: Iterable[Mapping[str, Any]], truth: GroundTruth) -> dict[str, dict[str, float]]:
    """Per miner and ``"all"``: ``clips``, ``with_event`` (clips that show an event of their task),
    ``coverage`` = with_event / clips, ``exclusive`` (clips that show their event and no other
    task's) and ``purity`` = exclusive / clips. ``rows``: goal-clip index rows (``source_id``,
    ``task``, ``miner``, ``frame_timestamps``)."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for row in rows:
        stamps = row["frame_timestamps"]
        first, last = float(stamps[0]), float(stamps[-1])
        hit = truth.shows(row["source_id"], row["task"], first, last)
        alone = hit and not truth.others(row["source_id"], row["task"], first, last)
        for key in (row["miner"], "all"):
            counts[key][0] += 1
            counts[key][1] += int(hit)
            counts[key][2] += int(alone)
    return {k: {"clips": n, "with_event": h, "coverage": round(h / n, 4), "exclusive": e, "purity": round(e / n, 4)}
            for k, (n, h, e) in sorted(counts.items())}
