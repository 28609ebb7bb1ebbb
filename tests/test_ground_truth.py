import json

import pytest

from goalcraft.data.ground_truth import GroundTruth, event_coverage, read_ground_truth


def _row(source, task, miner, first_frame, fps=10.0):
    return {"source_id": source, "task": task, "miner": miner,
            "frame_timestamps": [(first_frame + i) / fps for i in range(16)]}


def test_a_clip_shows_its_event_only_when_the_unlock_happens_inside_it(tmp_path):
    lines = [
        {"source_id": "v0", "achievement": "collect_wood", "time": 2.0},
        {"source_id": "v0", "achievement": "collect_wood", "time": 9.0},
        {"source_id": "v0", "achievement": "place_table", "time": 2.5},
        {"source_id": "v1", "achievement": "collect_wood", "time": 1.5},
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join([json.dumps(x) for x in lines] + [
        "not json", json.dumps({"source_id": "v0", "achievement": "x"}),  # no time
        json.dumps({"source_id": "v0", "achievement": "x", "time": "NaN"}),
        json.dumps({"source_id": 3, "achievement": "x", "time": 1.0}), ""]))
    truth = read_ground_truth(path)
    assert truth.bad_lines == 4 and truth.times[("v0", "collect_wood")] == [2.0, 9.0]
    rows = [
        _row("v0", "collect_wood", "transcript", 10),  # 1.0..2.5: holds 2.0
        _row("v0", "collect_wood", "transcript", 20),  # 2.0..3.5: 2.0 is its first frame, not inside
        _row("v0", "place_table", "transcript", 5),  # 0.5..2.0: 2.5 is after it
        _row("v1", "collect_wood", "trial", 0),  # 0.0..1.5: the last frame is the unlock
        _row("v2", "collect_wood", "trial", 0),  # no events for this source
    ]
    # The first clip (1.0..2.5) shows its wood at 2.0 and also the table placed at 2.5: not exclusive.
    assert event_coverage(rows, truth) == {
        "all": {"clips": 5, "with_event": 2, "coverage": 0.4, "exclusive": 1, "purity": 0.2},
        "transcript": {"clips": 3, "with_event": 1, "coverage": pytest.approx(0.3333), "exclusive": 0, "purity": 0.0},
        "trial": {"clips": 2, "with_event": 1, "coverage": 0.5, "exclusive": 1, "purity": 0.5},
    }
    assert truth.others("v0", "collect_wood", 1.0, 2.5) and not truth.others("v0", "collect_wood", 1.0, 2.4)
    assert truth.others("v0", "place_table", 1.9, 2.5) and not truth.others("v0", "place_table", 2.0, 2.5)


def test_no_rows_no_coverage():
    assert event_coverage([], GroundTruth()) == {}
