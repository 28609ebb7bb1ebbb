"""The HTML report and its markdown summary, from a constructed evaluation run and a real goal shard."""

import base64
import re

import numpy as np
import pyarrow as pa

from goalcraft.data.shards import ClipSample, ClipShardWriter, decode_jpeg, read_index
from goalcraft.evaluation.report import render_report, shard_frame_reader, summary_markdown
from goalcraft.evaluation.run import example_rows, examples_for_report, evaluate_runs


def _shard(tmp_path, CLIPS):
    with ClipShardWriter(tmp_path, "p0000", target_bytes=10**9) as writer:
        for i, key in enumerate(CLIPS.keys):
            frames = np.zeros((16, 160, 256, 3), np.uint8)
            frames[-1] = 40 * (i + 1)  # the last frame, the success moment, is what the report shows
            writer.write(ClipSample(key, frames, "c", {"window_start": 0.0, "window_end": 1.0,
                                                      "frame_timestamps": [k / 16 for k in range(16)]}))
    return read_index(tmp_path / "p0000-00000.parquet")


def test_report_has_metrics_heatmaps_confusions_and_frames(tmp_path, toy_evaluation):
    MODELS, SET, CLIPS = toy_evaluation.models, toy_evaluation.instruction_set, toy_evaluation.clips
    tables = evaluate_runs(MODELS, [SET], CLIPS, run_id="r1", data_versions={"goals": "abc"}, n_boot=50)
    tables["examples"] = example_rows(MODELS, [SET], CLIPS, run_id="r1", per_set=2, k=2)
    frame = shard_frame_reader(_shard(tmp_path, CLIPS), lambda shard: tmp_path)
    page = render_report("r1", tables, examples_for_report(tables["examples"]), frame)
    assert page.startswith("<!doctype html>") and "run r1" in page
    assert "<th>separating</th><th>collapsed</th>" in page
    assert "sampled:" in page  # the stochastic model's seed aggregate
    assert page.count("class='heat'") == 2  # one heatmap per model
    assert "Most confused: dirt / swim (1.000)" in page  # collapsed: every pair at cosine 1
    images = re.findall(r"data:image/jpeg;base64,([A-Za-z0-9+/=]+)' alt='(k\d)'", page)
    assert images
    for data, key in images:
        pixels = decode_jpeg(base64.b64decode(data))
        assert pixels.shape == (160, 256, 3)
        assert abs(int(pixels.mean()) - 40 * (CLIPS.keys.index(key) + 1)) <= 2


def test_summary_markdown_puts_models_side_by_side(toy_evaluation):
    MODELS, SET, CLIPS = toy_evaluation.models, toy_evaluation.instruction_set, toy_evaluation.clips
    tables = evaluate_runs(MODELS, [SET], CLIPS, run_id="r1", data_versions={}, n_boot=50)
    md = summary_markdown(tables["summary"]).splitlines()
    assert md[0] == "| set | metric | separating | collapsed |"
    row = [l for l in md if l.startswith("| toy | discriminability |")][0]
    assert row.split("|")[3].strip().startswith("1.000 [")


def test_most_confused_pairs_are_the_highest_cosines_each_pair_once():
    cosine = {("a", "b"): 0.2, ("a", "c"): 0.9, ("b", "c"): 0.5}
    rows = [{"model": "m", "instruction_set": "s", "task_a": x, "task_b": y, "cosine": c}
            for (a, b), c in cosine.items() for x, y in ((a, b), (b, a))]
    tables = {"runs": pa.table({}), "summary": pa.table({}), "per_pair": pa.Table.from_pylist(rows)}
    page = render_report("r2", tables, [], lambda key: None, confused=2)
    assert "<p>Most confused: a / c (0.900); b / c (0.500)</p>" in page
