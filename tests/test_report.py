"""The HTML report and its markdown summary, from constructed evaluation runs (known answers) and a
real goal shard."""

import base64
import dataclasses
import math
import re

import numpy as np
import pyarrow as pa
import pytest

from goalcraft.data.shards import ClipSample, ClipShardWriter, decode_jpeg, read_index
from goalcraft.evaluation.goal_model_metrics import DIRECTIONS
from goalcraft.evaluation.instructions import InstructionSet, InstructionTask
from goalcraft.evaluation.report import (
    DESIGN_FIGURES,
    HEADLINE,
    heatmap_svg,
    render_report,
    shard_frame_reader,
    summary_markdown,
)
from goalcraft.evaluation.run import HeldOutClips, TrainingGoals, evaluate_runs, example_rows, examples_for_report

# The design's text probes, embedded so that cos(kill pig, chop tree) = 0.9 and cos(kill pig, build house) = 0.8.
PROBES = {"kill pig": [1, 0, 0, 0], "chop tree": [0.9, math.sqrt(1 - 0.81), 0, 0], "build house": [0.8, 0, 0.6, 0]}


@pytest.fixture(scope="module")
def run(toy_evaluation):
    """The separating toy model as the goal predictor, the collapsed one as MineCLIP + prior (two
    training seeds), the oracles; three phrasings per task (so semantic robustness exists) and the dirt
    clip halfway to wood (so the success visuals' cosines are not all equal)."""
    sep, col = toy_evaluation.models
    axes = toy_evaluation.axes

    def text(texts):
        return np.array([PROBES[t] if t in PROBES else axes[t.split()[0]] for t in texts], dtype=float)

    models = [dataclasses.replace(sep, name="goal_predictor", encode_text=text),
              *(dataclasses.replace(col, name="mineclip_prior", training_seed=s, encode_text=text,
                                    text_in_goal_space=True) for s in (0, 1))]
    iset = InstructionSet("toy", tuple(InstructionTask(t, (f"{t} a", f"{t} b", f"{t} c")) for t in axes))
    clips = HeldOutClips(["k0", "k1", "k2", "k3"], ["wood", "wood", "dirt", "swim"],
                         np.stack([axes["wood"], axes["wood"] * 2, axes["wood"] + axes["dirt"], axes["swim"]]))
    train = TrainingGoals(["wood", "dirt", "swim"], np.stack([axes["wood"], axes["dirt"], axes["swim"]]))
    tables = evaluate_runs(models, [iset], clips, run_id="r1", data_versions={"goals": "abc"}, training=train, n_boot=100)
    tables["examples"] = example_rows(models, [iset], clips, run_id="r1", per_set=2, k=2)
    page = render_report("r1", tables, examples_for_report(tables["examples"]), lambda key: None)
    return tables, page


def _summary(tables, entry, metric):
    (row,) = [r for r in tables["summary"].to_pylist() if r.get("entry") == entry and r["metric"] == metric]
    return row


def _cells(page):
    """(entry, metric) → (highlighted, text) of the metric table's cells."""
    found = re.findall(r"<td data-entry='([^']+)' data-metric='([^']+)'( class='better')?[^>]*>(.*?)</td>", page)
    return {(e, m): (bool(b), text) for e, m, b, text in found}


def test_metric_table_directions_chance_oracles_and_seeds(run):
    tables, page = run
    metrics = {r["metric"] for r in tables["summary"].to_pylist() if r["mode"] != "text_probe"}
    arrows = dict(re.findall(r"<td class='dir' data-metric='([^']+)'>(.)</td>", page))
    assert arrows == {m: DIRECTIONS[m] for m in metrics}
    assert arrows["top1"] == "↑" and arrows["prior_collapse"] == "↓" and arrows["visual_similarity"] == "·"
    chance = dict(re.findall(r"<td class='chance' data-metric='([^']+)'>([^<]*)</td>", page))
    assert chance["top1"] == "0.333" and chance["top5"] == "1.000" and chance["discriminability"] == ""
    assert "oracle_train_mean<br><small>oracle</small>" in page and "oracle_held_out_mean<br><small>oracle</small>" in page
    cells = _cells(page)
    assert cells[("oracle_train_mean", "top1")][1].startswith("1.000 [1.000, 1.000]")
    assert cells[("oracle_held_out_mean", "goal_accuracy")][1].startswith("1.000 [1.000, 1.000]")
    assert "⚠ zero-width CI" in cells[("goal_predictor", "discriminability")][1]
    assert "⚠ zero-width CI" not in cells[("mineclip_prior", "top1")][1]
    assert "± 0.000 over 2 seeds" in cells[("mineclip_prior", "top1")][1]  # both seeds sample alike
    assert "seeds" not in cells[("goal_predictor", "top1")][1]
    # Fractions of the training-mean oracle: the prior finds a third of the tasks the oracle finds.
    header = re.search(r"<table class='metrics'><tr>(.*?)</tr>", page).group(1)
    columns = re.findall(r"<th>(.*?)</th>", header)
    row = re.search(r"<tr><td>top1</td>(.*?)</tr>", page).group(1)
    values = dict(zip(columns[1:], re.findall(r"<td[^>]*>(.*?)</td>", row)))
    assert values["mineclip_prior<br><small>÷ oracle</small>"] == "0.333"
    assert values["goal_predictor<br><small>÷ oracle</small>"] == "1.000"
    assert not any("oracle_train_mean<br><small>÷" in c for c in columns)


def test_better_model_highlighted_only_where_the_paired_ci_excludes_zero(run):
    tables, page = run
    diffs = tables["differences"].to_pylist()
    better = {d["metric"] for d in diffs if d["better"] == "goal_predictor"}
    significant = {d["metric"] for d in diffs if d["excludes_zero"]}
    # Known answers: the predictor separates the tasks, the collapsed prior does not; with three
    # tasks a resample of only the task the prior retrieves happens often enough that top1's CI keeps 0.
    assert {"discriminability", "prior_collapse"} <= better
    assert "top1" not in significant and "variance" not in significant and "visual_similarity" not in significant
    highlighted = {key for key, (b, _) in _cells(page).items() if b}
    assert highlighted == {("goal_predictor", m) for m in better}
    # The difference columns: one per paired comparison, green where its CI excludes 0.
    top1 = re.search(r"<tr><td>top1</td>(.*?)</tr>", page).group(1)
    sampled = re.search(r"<td data-difference='sampled'>(.*?)</td>", top1).group(1)
    d = [d for d in diffs if d["metric"] == "top1" and d["mode_b"] == "sampled"][0]
    assert sampled.startswith(f"{d['difference']:+.3f} [{d['ci_low']:.3f}, {d['ci_high']:.3f}]")
    disc = re.search(r"<tr><td>discriminability</td>(.*?)</tr>", page).group(1)
    assert re.search(r"<td class='better' data-difference='deterministic'>\+1\.000 \[1\.000, 1\.000\].*?"
                     r"goal_predictor &gt; mineclip_prior:deterministic", disc)


def test_the_baseline_is_highlighted_where_it_wins():
    rows = [{"run_id": "r", "model": m, "mode": mode, "entry": e, "instruction_set": "s", "metric": "top1",
             "direction": "↑", "value": v, "ci_low": v - 0.1, "ci_high": v + 0.1, "seed_std": 0.0, "n_seeds": 1,
             "zero_width_ci": False, "chance": 0.25}
            for m, mode, e, v in (("goal_predictor", "deterministic", "goal_predictor", 0.3),
                                  ("mineclip_prior", "sampled", "mineclip_prior", 0.6))]
    diff = [{"run_id": "r", "instruction_set": "s", "model_a": "goal_predictor", "mode_a": "deterministic",
             "model_b": "mineclip_prior", "mode_b": "sampled", "metric": "top1", "direction": "↑",
             "difference": -0.3, "ci_low": -0.4, "ci_high": -0.2, "excludes_zero": True, "zero_width_ci": False,
             "better": "mineclip_prior"}]
    tables = {"summary": pa.Table.from_pylist(rows), "differences": pa.Table.from_pylist(diff)}
    page = render_report("r", tables, [], lambda key: None)
    assert {k for k, (b, _) in _cells(page).items() if b} == {("mineclip_prior", "top1")}
    assert "mineclip_prior &gt; goal_predictor" in page
    md = summary_markdown(tables["summary"], tables["differences"])
    assert md.splitlines()[2].endswith("| 0.250 | mineclip_prior > goal_predictor |")


def test_text_probes_and_the_design_table(run):
    tables, page = run
    probes = re.search(r"<table class='probes'>(.*?)</table>", page).group(1)
    assert "<tr><td>difference</td><td>0.100</td><td>0.100</td></tr>" in probes
    assert "<tr><td>cos(kill pig | chop tree)</td><td>0.900</td><td>0.900</td></tr>" in probes
    design = {f.metric: f for f in DESIGN_FIGURES}
    assert (design["text_discriminability"].figure, design["visual_similarity"].figure,
            design["prior_collapse"].figure, design["discriminability"].figure) == (0.013, 0.925, 0.873, 0.12)
    assert design["goal_accuracy"].hoped == (0.91, 0.99) and design["semantic_robustness"].hoped == (0.96, 0.99)
    table = re.search(r"<table class='design'>(.*?)</table>", page).group(1)
    rows = {m: re.findall(r"<td>(.*?)</td>", body)
            for m, body in re.findall(r"<tr data-metric='([^']+)'>(.*?)</tr>", table)}
    assert list(rows) == [f.metric for f in DESIGN_FIGURES]
    assert rows["text_discriminability"][1:] == ["0.013", "–", "0.100", "0.100"]  # the probes' difference
    assert rows["visual_similarity"][1:3] == ["0.925", "–"]
    vis = _summary(tables, "mineclip_prior", "visual_similarity")
    assert rows["visual_similarity"][3] == f"{vis['value']:.3f} [{vis['ci_low']:.3f}, {vis['ci_high']:.3f}]"
    assert rows["prior_collapse"][1:3] == ["0.873", "–"] and rows["prior_collapse"][4] == "0.000 [0.000, 0.000]"
    assert rows["discriminability"][1:3] == ["0.12", "–"] and rows["discriminability"][4] == "1.000 [1.000, 1.000]"
    assert rows["goal_accuracy"][1:3] == ["–", "0.91–0.99"]
    assert rows["goal_accuracy"][3].endswith("<small>(below range)</small>")  # the collapsed prior
    assert rows["semantic_robustness"][1:3] == ["–", "0.96–0.99"]
    assert rows["semantic_robustness"][4] == "1.000 [1.000, 1.000] <small>(above range)</small>"


def test_heatmaps_name_the_tasks_and_scale_to_the_data(run):
    tables, page = run
    pairs = tables["per_pair"].to_pylist()
    figures = re.findall(r"<figure class='heat'><figcaption><b>(.*?) \((.*?)\)</b></figcaption>(<svg.*?</svg>)", page)
    groups = list(dict.fromkeys((p["model"], p["mode"]) for p in pairs))
    assert [(m, mode) for m, mode, _ in figures] == groups
    assert ("success_visuals", "visuals") in groups and ("oracle_train_mean", "oracle") in groups
    for model, mode, svg in figures:
        assert re.findall(r"class='row-label'[^>]*>([^<]+)<", svg) == ["wood", "dirt", "swim"]
        assert re.findall(r"class='col-label'[^>]*>([^<]+)<", svg) == ["wood", "dirt", "swim"]
        values = [p["cosine"] for p in pairs if (p["model"], p["mode"]) == (model, mode)]
        assert re.search(r"class='legend-lo'[^>]*>([^<]+)<", svg).group(1) == f"{min(values):.3f}"
        assert re.search(r"class='legend-hi'[^>]*>([^<]+)<", svg).group(1) == f"{max(values):.3f}"
    visuals = [svg for m, _, svg in figures if m == "success_visuals"][0]
    assert "legend-lo' x='" in visuals and ">0.000<" in visuals and ">0.707<" in visuals  # wood / dirt at 45°


def test_heatmap_colours_span_the_data_not_minus_one_to_one():
    value = {("a", "b"): 0.2, ("b", "a"): 0.2, ("a", "c"): 0.9, ("c", "a"): 0.9, ("b", "c"): 0.55, ("c", "b"): 0.55}
    svg = heatmap_svg(["a", "b", "c"], value, "s")
    fill = {title: colour for colour, title in re.findall(r"fill='([^']+)'><title>([^<]+)</title>", svg)}
    assert fill["a / b: 0.200"] == "rgb(68,1,84)"  # the scale's low end (viridis)
    assert fill["a / c: 0.900"] == "rgb(253,231,37)"  # its high end
    assert fill["b / c: 0.550"] == "rgb(33,145,140)"  # the middle
    assert ">0.200</text>" in svg and ">0.900</text>" in svg


def test_bar_chart_one_bar_per_entry_and_metric_with_ci_whiskers(run):
    tables, page = run
    svg = re.search(r"<svg class='bars'.*?</svg>", page).group(0)
    ymin, ymax, top, bottom = (float(re.search(rf"data-{k}='([^']+)'", svg).group(1))
                               for k in ("ymin", "ymax", "top", "bottom"))

    def y(v):
        return bottom - (v - ymin) / (ymax - ymin) * (bottom - top)

    entries = ["goal_predictor", "mineclip_prior", "mineclip_prior:deterministic", "oracle_train_mean",
               "oracle_held_out_mean"]
    bars = re.findall(r"<rect class='bar' data-entry='([^']+)' data-metric='([^']+)'", svg)
    assert sorted(bars) == sorted((e, m) for e in entries for m in HEADLINE)
    whiskers = re.findall(r"<line class='ci' data-entry='([^']+)' data-metric='([^']+)' x1='[^']+' x2='[^']+' "
                          r"y1='([^']+)' y2='([^']+)'", svg)
    assert len(whiskers) == len(bars)
    for entry, metric, y1, y2 in whiskers:
        row = _summary(tables, entry, metric)
        assert float(y1) == pytest.approx(y(row["ci_low"]), abs=0.01)
        assert float(y2) == pytest.approx(y(row["ci_high"]), abs=0.01)
    (chance,) = re.findall(r"<line class='chance' data-metric='([^']+)'[^>]*y1='([^']+)'[^>]*stroke-dasharray", svg)
    assert chance[0] == "top1" and float(chance[1]) == pytest.approx(y(1 / 3), abs=0.01)


def test_sql_comparison_shows_what_the_report_shows(run, tmp_path):
    from goalcraft.evaluation.run import write_tables
    from goalcraft.sql import run_query
    from goalcraft.storage import StoragePaths

    tables, page = run
    write_tables(tables, StoragePaths(tmp_path).evaluation_dir, "r1")
    sql = run_query(tmp_path, "comparison").to_pylist()
    cells = _cells(page)
    chance = dict(re.findall(r"<td class='chance' data-metric='([^']+)'>([^<]*)</td>", page))
    arrows = dict(re.findall(r"<td class='dir' data-metric='([^']+)'>(.)</td>", page))
    for r in sql:
        metric = r["metric"]
        assert arrows[metric] == r["direction"]
        assert chance[metric] == ("" if r["chance"] is None else f"{r['chance']:.3f}")
        for entry in ("goal_predictor", "mineclip_prior", "mineclip_prior:deterministic", "oracle_train_mean"):
            if r[f"{entry}_value"] is None or r[f"{entry}_value"] != r[f"{entry}_value"]:
                continue
            text = f"{r[f'{entry}_value']:.3f} [{r[f'{entry}_ci_low']:.3f}, {r[f'{entry}_ci_high']:.3f}]"
            assert cells[(entry, metric)][1].replace("-0.000", "0.000").startswith(text.replace("-0.000", "0.000"))
        highlighted = {e for (e, m), (b, _) in cells.items() if b and m == metric}
        assert highlighted == {b for b in (r["sampled_better"], r["deterministic_better"]) if b}


def test_summary_markdown_shows_direction_chance_and_the_better_model(run):
    tables, _ = run
    md = summary_markdown(tables["summary"], tables["differences"]).splitlines()
    assert md[0] == ("| set | metric | dir | goal_predictor | mineclip_prior | mineclip_prior:deterministic | "
                     "oracle_train_mean | oracle_held_out_mean | chance | better |")
    cols = [c.strip() for c in [l for l in md if l.startswith("| toy | top1 |")][0].split("|")[1:-1]]
    assert cols[2] == "↑" and cols[3].startswith("1.000 [") and cols[8] == "0.333" and cols[9] == ""
    cols = [c.strip() for c in [l for l in md if l.startswith("| toy | discriminability |")][0].split("|")[1:-1]]
    assert cols[9] == "goal_predictor > mineclip_prior; goal_predictor > mineclip_prior:deterministic"
    assert summary_markdown(tables["summary"], tables["differences"], instruction_set="other").count("\n") == 2


def _shard(tmp_path, CLIPS):
    with ClipShardWriter(tmp_path, "p0000", target_bytes=10**9) as writer:
        for i, key in enumerate(CLIPS.keys):
            frames = np.zeros((16, 160, 256, 3), np.uint8)
            frames[-1] = 40 * (i + 1)  # the last frame, the success moment, is what the report shows
            writer.write(ClipSample(key, frames, "c", {"window_start": 0.0, "window_end": 1.0,
                                                      "frame_timestamps": [k / 16 for k in range(16)]}))
    return read_index(tmp_path / "p0000-00000.parquet")


def test_report_of_models_without_oracles_has_confusions_and_frames(tmp_path, toy_evaluation):
    MODELS, SET, CLIPS = toy_evaluation.models, toy_evaluation.instruction_set, toy_evaluation.clips
    tables = evaluate_runs(MODELS, [SET], CLIPS, run_id="r1", data_versions={"goals": "abc"}, n_boot=50)
    tables["examples"] = example_rows(MODELS, [SET], CLIPS, run_id="r1", per_set=2, k=2)
    frame = shard_frame_reader(_shard(tmp_path, CLIPS), lambda shard: tmp_path)
    page = render_report("r1", tables, examples_for_report(tables["examples"]), frame)
    assert page.startswith("<!doctype html>") and "run r1" in page and "<script" not in page
    assert "<th>separating<br><small>deterministic</small></th><th>collapsed<br><small>sampled</small></th>" in page
    assert "class='better'" not in page  # no goal_predictor / mineclip_prior pair: nothing to highlight
    assert page.count("<figure class='heat'>") == 4  # separating, collapsed sampled and deterministic, visuals
    assert "<b>collapsed (deterministic)</b></figcaption>" in page
    assert "Most confused: wood / dirt (1.000); wood / swim (1.000); dirt / swim (1.000)" in page
    images = re.findall(r"data:image/jpeg;base64,([A-Za-z0-9+/=]+)' alt='(k\d)'", page)
    assert images
    for data, key in images:
        pixels = decode_jpeg(base64.b64decode(data))
        assert pixels.shape == (160, 256, 3)
        assert abs(int(pixels.mean()) - 40 * (CLIPS.keys.index(key) + 1)) <= 2


def test_most_confused_pairs_are_the_highest_cosines_each_pair_once():
    cosine = {("a", "b"): 0.2, ("a", "c"): 0.9, ("b", "c"): 0.5}
    rows = [{"model": "m", "mode": "deterministic", "instruction_set": "s", "task_a": x, "task_b": y, "cosine": c}
            for (a, b), c in cosine.items() for x, y in ((a, b), (b, a))]
    tables = {"runs": pa.table({}), "summary": pa.table({}), "per_pair": pa.Table.from_pylist(rows)}
    page = render_report("r2", tables, [], lambda key: None, confused=2)
    assert "<p>Most confused: a / c (0.900); b / c (0.500)</p>" in page
