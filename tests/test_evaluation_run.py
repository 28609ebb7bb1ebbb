"""An evaluation run on constructed goal models with known answers: the tables, accumulation across
runs, and the DuckDB views and named queries over them."""

import pyarrow.parquet as pq
import pytest

from goalcraft.evaluation.run import (
    HeldOutClips,
    evaluate_runs,
    example_rows,
    examples_for_report,
    write_tables,
)
from goalcraft.sql import connect, format_table, named_queries, run_query
from goalcraft.storage import StoragePaths

@pytest.fixture(scope="module")
def tables(toy_evaluation):
    MODELS, SET, CLIPS = toy_evaluation.models, toy_evaluation.instruction_set, toy_evaluation.clips
    return evaluate_runs(MODELS, [SET], CLIPS, run_id="r1", data_versions={"goals": "abc"}, n_boot=100)


def _metric(tables, model, metric, mode="deterministic"):
    (row,) = [r for r in tables["summary"].to_pylist() if r["model"] == model and r["metric"] == metric
              and r["mode"] == mode]
    return row


def test_known_answers(tables):
    assert _metric(tables, "separating", "prior_collapse")["value"] == pytest.approx(0.0)
    assert _metric(tables, "separating", "discriminability")["value"] == pytest.approx(1.0)
    assert _metric(tables, "separating", "top1")["value"] == pytest.approx(1.0)
    assert _metric(tables, "separating", "top1")["chance"] == pytest.approx(1 / 3)
    assert _metric(tables, "separating", "goal_accuracy")["value"] == pytest.approx(1.0)  # (cos 1 + 1) / 2
    assert _metric(tables, "separating", "consistency")["value"] == 1.0  # deterministic
    assert _metric(tables, "collapsed", "prior_collapse")["value"] == pytest.approx(1.0)
    assert _metric(tables, "collapsed", "discriminability")["value"] == pytest.approx(0.0, abs=1e-12)
    assert _metric(tables, "collapsed", "degraded")["value"] == 1.0
    # (1,1,1,1) against each task's axis: cos 0.5 → (0.5 + 1) / 2.
    assert _metric(tables, "collapsed", "goal_accuracy")["value"] == pytest.approx(0.75)
    sampled = _metric(tables, "collapsed", "prior_collapse", "sampled")
    assert sampled["n_seeds"] == 1 and 0.99 < sampled["value"] < 1.0 and sampled["seed_std"] == 0.0
    assert 0.99 < _metric(tables, "collapsed", "consistency", "sampled")["value"] < 1.0
    assert sampled["entry"] == "collapsed" and _metric(tables, "collapsed", "top1")["entry"] == "collapsed:deterministic"
    # The confusion matrix: separating tasks are orthogonal, collapsed ones identical.
    pairs = {(r["model"], r["task_a"], r["task_b"]): r["cosine"] for r in tables["per_pair"].to_pylist()}
    assert pairs[("separating", "wood", "dirt")] == pytest.approx(0.0)
    assert pairs[("collapsed", "wood", "swim")] == pytest.approx(1.0)
    tasks = {(r["model"], r["task"]): r for r in tables["per_task"].to_pylist()}
    assert tasks[("separating", "wood")]["held_out_clips"] == 2
    assert tasks[("separating", "wood")]["goal_accuracy"] == pytest.approx(1.0)
    inst = [r for r in tables["per_instruction"].to_pylist() if r["model"] == "separating"]
    assert all(r["nearest_task"] == r["task"] for r in inst) and {r["z_norm"] for r in inst} == {5.0}
    (run,) = tables["runs"].to_pylist()
    assert run["run_id"] == "r1" and run["held_out_clips"] == 4 and '"goals": "abc"' in run["data_versions"]


def test_tasks_without_clips_are_reported_and_skipped_by_accuracy(toy_evaluation):
    MODELS, SET, AXES = toy_evaluation.models, toy_evaluation.instruction_set, toy_evaluation.axes
    clips = HeldOutClips(["k0"], ["wood"], AXES["wood"][None, :])
    tables = evaluate_runs(MODELS[:1], [SET], clips, run_id="r2", data_versions={}, n_boot=50)
    tasks = {r["task"]: r for r in tables["per_task"].to_pylist()}
    assert tasks["wood"]["held_out_clips"] == 1 and tasks["swim"]["held_out_clips"] == 0
    assert tasks["swim"]["goal_accuracy"] is None and tasks["wood"]["top1"] == 1.0
    top1 = _metric(tables, "separating", "top1")
    assert top1["n_tasks_with_clips"] == 1 and top1["chance"] == 1.0


def test_tables_accumulate_and_duckdb_reads_them(tables, tmp_path, toy_evaluation):
    MODELS, SET, CLIPS = toy_evaluation.models, toy_evaluation.instruction_set, toy_evaluation.clips
    paths = StoragePaths(tmp_path)
    write_tables(tables, paths.evaluation_dir, "r1")
    second = evaluate_runs(MODELS, [SET], CLIPS, run_id="r9", data_versions={"goals": "def"}, n_boot=100)
    written = write_tables(second, paths.evaluation_dir, "r9")
    con = connect(tmp_path)
    assert con.execute("SELECT count(DISTINCT run_id) FROM eval_summary").fetchall() == [(2,)]
    # The named comparison query returns the latest run's values, exactly those in the parquet file.
    assert {"comparison", "confused_pairs", "metric_history"} <= set(named_queries())
    latest = max(["r1", "r9"], key=lambda r: (tables if r == "r1" else second)["runs"].column("timestamp")[0].as_py() + r)
    comparison = {r["metric"]: r for r in run_query(tmp_path, "comparison").to_pylist()}
    parquet = {r["metric"]: r["value"] for r in pq.read_table(paths.evaluation_dir / "summary" / f"{latest}.parquet").to_pylist()
               if r["model"] == "separating" and r["mode"] == "deterministic"}
    assert comparison["discriminability"]["separating_value"] == pytest.approx(parquet["discriminability"])
    assert comparison["prior_collapse"]["collapsed:deterministic_value"] == pytest.approx(1.0)
    assert comparison["prior_collapse"]["direction"] == "↓" and comparison["top1"]["chance"] == pytest.approx(1 / 3)
    assert comparison["prior_collapse"]["separating_ci_low"] <= comparison["prior_collapse"]["separating_value"]
    confused = run_query(tmp_path, "confused_pairs").to_pylist()
    assert confused[0]["model"] == "collapsed" and confused[0]["cosine"] == pytest.approx(1.0)
    # Ranked per model and mode (the prior sampled and deterministic apart), the success visuals too.
    ranks = {}
    for r in confused:
        ranks.setdefault((r["model"], r["mode"]), []).append(r["rank"])
    assert ranks == {k: [1, 2, 3] for k in [("collapsed", "deterministic"), ("collapsed", "sampled"),
                                             ("separating", "deterministic"), ("success_visuals", "visuals")]}
    # Two runs × (separating, collapsed sampled, collapsed deterministic) × every metric each reports.
    history = run_query(tmp_path, "metric_history").to_pylist()
    assert len(history) == 2 * sum(1 for _ in pq.read_table(paths.evaluation_dir / "summary" / "r9.parquet").to_pylist()
                                   if _["mode"] != "text_probe")
    assert "discriminability" in format_table(run_query(tmp_path, "comparison"))
    assert written["summary"].name == "r9.parquet"


def test_examples_are_nearest_held_out_clips(toy_evaluation):
    MODELS, SET, CLIPS = toy_evaluation.models, toy_evaluation.instruction_set, toy_evaluation.clips
    table = example_rows(MODELS[:1], [SET], CLIPS, run_id="r1", per_set=2, k=2)
    grouped = examples_for_report(table)
    wood = [g for g in grouped if g["task"] == "wood"][0]
    assert [c["task"] for c in wood["clips"]] == ["wood", "wood"] and wood["clips"][0]["cosine"] == pytest.approx(1.0)


def test_oracles_fractions_and_paired_differences(toy_evaluation):
    """The separating model as the predictor, the collapsed one as the prior: every figure is known."""
    import dataclasses

    import numpy as np

    from goalcraft.evaluation.run import TrainingGoals

    sep, col = toy_evaluation.models
    models = [dataclasses.replace(sep, name="goal_predictor"),
              dataclasses.replace(col, name="mineclip_prior", training_seed=0),
              dataclasses.replace(col, name="mineclip_prior", training_seed=1)]
    AXES = toy_evaluation.axes
    train = TrainingGoals(["wood", "dirt", "swim", "swim"], np.stack([AXES["wood"], AXES["dirt"], AXES["swim"], AXES["swim"]]))
    t = evaluate_runs(models, [toy_evaluation.instruction_set], toy_evaluation.clips, run_id="r3",
                      data_versions={}, training=train, n_boot=200)
    rows = {(r["entry"], r["metric"]): r for r in t["summary"].to_pylist() if r["mode"] != "text_probe"}
    assert rows[("oracle_train_mean", "top1")]["value"] == 1.0
    assert rows[("oracle_held_out_mean", "goal_accuracy")]["value"] == pytest.approx(1.0)
    assert rows[("goal_predictor", "top1")]["fraction_of_oracle"] == pytest.approx(1.0)
    assert rows[("mineclip_prior", "top1")]["n_seeds"] == 2
    # Centred on the training mean (¼, ¼, ½, 0): the collapsed goal (1,1,1,1) − centre is one vector for all.
    assert rows[("mineclip_prior:deterministic", "prior_collapse_centred")]["value"] == pytest.approx(1.0)
    diffs = {(r["mode_b"], r["metric"]): r for r in t["differences"].to_pylist()}
    d = diffs[("deterministic", "discriminability")]
    assert d["difference"] == pytest.approx(1.0) and d["excludes_zero"] and d["better"] == "goal_predictor"
    assert diffs[("deterministic", "consistency")]["zero_width_ci"]  # both deterministic: always 0
    assert diffs[("sampled", "goal_accuracy")]["better"] == "goal_predictor"


def test_success_visuals_pairs_are_the_held_out_clips_cross_task_cosines(toy_evaluation):
    """per_pair's success_visuals rows: the mean cosine between two tasks' held-out clips (the
    heatmap of what visual_similarity averages); NULL for a task without clips."""
    import math

    import numpy as np

    MODELS, SET, AXES = toy_evaluation.models, toy_evaluation.instruction_set, toy_evaluation.axes
    clips = HeldOutClips(["k0", "k1", "k2"], ["wood", "wood", "dirt"],
                         np.stack([AXES["wood"], AXES["wood"] * 2, AXES["wood"] + AXES["dirt"]]))
    tables = evaluate_runs(MODELS[:1], [SET], clips, run_id="r4", data_versions={}, n_boot=20)
    visuals = {(r["task_a"], r["task_b"]): r for r in tables["per_pair"].to_pylist() if r["model"] == "success_visuals"}
    assert len(visuals) == 6 and {r["mode"] for r in visuals.values()} == {"visuals"}
    assert visuals[("wood", "dirt")]["cosine"] == pytest.approx(1 / math.sqrt(2))
    assert visuals[("dirt", "wood")]["cosine"] == pytest.approx(1 / math.sqrt(2))
    assert visuals[("wood", "swim")]["cosine"] is None and visuals[("swim", "dirt")]["cosine"] is None
    assert _metric(tables, "separating", "visual_similarity")["value"] == pytest.approx(1 / math.sqrt(2))


def test_headline_names_the_figures_of_each_set(toy_evaluation):
    import dataclasses

    import numpy as np

    from goalcraft.evaluation.run import TrainingGoals, headline, headline_line

    sep, col = toy_evaluation.models
    models = [dataclasses.replace(sep, name="goal_predictor"), dataclasses.replace(col, name="mineclip_prior")]
    AXES = toy_evaluation.axes
    train = TrainingGoals(["wood", "dirt", "swim"], np.stack([AXES["wood"], AXES["dirt"], AXES["swim"]]))
    t = evaluate_runs(models, [toy_evaluation.instruction_set], toy_evaluation.clips, run_id="r4",
                      data_versions={}, training=train, n_boot=50)
    h = headline(t)["toy"]
    assert h["goal_predictor"] == 1.0 and h["oracle_train_mean"] == 1.0 and h["chance"] == pytest.approx(1 / 3)
    assert h["difference"][0] == pytest.approx(1.0 - h["mineclip_prior"])
    assert headline_line({"toy": h}).startswith("toy top1: predictor 1.00, prior ")


def test_imported_success_visuals_are_references_marked_with_their_source(toy_evaluation):
    """Imported visuals join the held-out clips as references; the figures are those of the combined
    visuals (the formulas do not change), and per_task / examples / runs say where each came from."""
    import json

    import numpy as np

    from goalcraft.data.steve1_eval import SuccessVisuals

    MODELS, SET, AXES = toy_evaluation.models, toy_evaluation.instruction_set, toy_evaluation.axes
    held_out = HeldOutClips(["k0"], ["wood"], AXES["wood"][None, :])
    assert held_out.sources == ["test_split"]
    imported = HeldOutClips.from_success_visuals({
        "dirt": SuccessVisuals("dig dirt", np.stack([AXES["dirt"], AXES["dirt"] + AXES["wood"]]).astype(np.float32)),
        "swim": SuccessVisuals("go swimming", AXES["swim"][None, :].astype(np.float32))}, "imported:sv.pkl")
    assert imported.keys == ["imported:sv.pkl#dirt#0", "imported:sv.pkl#dirt#1", "imported:sv.pkl#swim#0"]
    clips = held_out + imported
    tables = evaluate_runs(MODELS, [SET], clips, run_id="r5", data_versions={}, n_boot=20)
    plain = evaluate_runs(MODELS, [SET], HeldOutClips(clips.keys, clips.tasks, clips.embeddings), run_id="r5",
                          data_versions={}, n_boot=20)
    values = lambda t: [(r["entry"], r["metric"], str(r["value"])) for r in t["summary"].to_pylist()]  # noqa: E731
    assert values(tables) == values(plain)  # sources change no figure
    tasks = {(r["model"], r["task"]): r for r in tables["per_task"].to_pylist()}
    assert tasks[("separating", "wood")]["visual_sources"] == "test_split"
    assert tasks[("separating", "dirt")]["visual_sources"] == "imported:sv.pkl"
    assert tasks[("separating", "dirt")]["held_out_clips"] == 2
    # The separating model's dirt goal is the dirt axis: cosines 1 and 1/√2 with its two visuals.
    expected = ((1 + 1) / 2 + (1 / np.sqrt(2) + 1) / 2) / 2
    assert tasks[("separating", "dirt")]["goal_accuracy"] == pytest.approx(expected)
    (run,) = tables["runs"].to_pylist()
    assert json.loads(run["held_out_sources"]) == {"imported:sv.pkl": 3, "test_split": 1}
    both = held_out + HeldOutClips(["x"], ["wood"], AXES["wood"][None, :] * 3, ["imported:b.pkl"])
    assert both.task_sources(["wood", "dirt"]) == ["imported:b.pkl+test_split", None]
    examples = example_rows(MODELS[:1], [SET], clips, run_id="r5", per_set=3, k=1).to_pylist()
    assert {(r["task"], r["clip_source"]) for r in examples} == {("wood", "test_split"), ("dirt", "imported:sv.pkl"),
                                                                 ("swim", "imported:sv.pkl")}
    with pytest.raises(ValueError, match="one entry per clip"):
        HeldOutClips(["a"], ["wood"], AXES["wood"][None, :], ["x", "y"])
