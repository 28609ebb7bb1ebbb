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
    assert _metric(tables, "separating", "goal_similarity")["value"] == pytest.approx(0.0)
    assert _metric(tables, "separating", "discriminability")["value"] == pytest.approx(1.0)
    assert _metric(tables, "separating", "top1")["value"] == pytest.approx(1.0)
    assert _metric(tables, "collapsed", "goal_similarity")["value"] == pytest.approx(1.0)
    assert _metric(tables, "collapsed", "discriminability")["value"] == pytest.approx(0.0, abs=1e-12)
    sampled = _metric(tables, "collapsed", "goal_similarity", "sampled")
    assert sampled["n_seeds"] == 2 and 0.99 < sampled["value"] < 1.0 and sampled["seed_std"] >= 0
    # The confusion matrix: separating tasks are orthogonal, collapsed ones identical.
    pairs = {(r["model"], r["task_a"], r["task_b"]): r["cosine"] for r in tables["per_pair"].to_pylist()}
    assert pairs[("separating", "wood", "dirt")] == pytest.approx(0.0)
    assert pairs[("collapsed", "wood", "swim")] == pytest.approx(1.0)
    tasks = {(r["model"], r["task"]): r for r in tables["per_task"].to_pylist()}
    assert tasks[("separating", "wood")]["held_out_clips"] == 2
    assert tasks[("separating", "wood")]["cosine_to_own_clips"] == pytest.approx(1.0)
    inst = [r for r in tables["per_instruction"].to_pylist() if r["model"] == "separating"]
    assert all(r["nearest_task"] == r["task"] for r in inst) and {r["z_norm"] for r in inst} == {5.0}
    (run,) = tables["runs"].to_pylist()
    assert run["run_id"] == "r1" and run["held_out_clips"] == 4 and '"goals": "abc"' in run["data_versions"]


def test_tasks_without_clips_are_reported_and_skipped_by_accuracy(toy_evaluation):
    MODELS, SET, AXES = toy_evaluation.models, toy_evaluation.instruction_set, toy_evaluation.axes
    clips = HeldOutClips(["k0"], ["wood"], AXES["wood"][None, :])
    tables = evaluate_runs(MODELS[:1], [SET], clips, run_id="r2", data_versions={}, n_boot=50)
    tasks = {r["task"]: r for r in tables["per_task"].to_pylist()}
    assert tasks["wood"]["has_goal_clips"] and not tasks["swim"]["has_goal_clips"]
    assert _metric(tables, "separating", "top1")["n_rows"] == 2  # only the wood phrasings are scored


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
    assert comparison["goal_similarity"]["collapsed_value"] == pytest.approx(1.0)
    assert comparison["goal_similarity"]["separating_ci_low"] <= comparison["goal_similarity"]["separating_value"]
    confused = run_query(tmp_path, "confused_pairs").to_pylist()
    assert confused[0]["model"] == "collapsed" and confused[0]["cosine"] == pytest.approx(1.0)
    assert len(run_query(tmp_path, "metric_history").to_pylist()) == 2 * len(comparison) * 2
    assert "discriminability" in format_table(run_query(tmp_path, "comparison"))
    assert written["summary"].name == "r9.parquet"


def test_examples_are_nearest_held_out_clips(toy_evaluation):
    MODELS, SET, CLIPS = toy_evaluation.models, toy_evaluation.instruction_set, toy_evaluation.clips
    table = example_rows(MODELS[:1], [SET], CLIPS, run_id="r1", per_set=2, k=2)
    grouped = examples_for_report(table)
    wood = [g for g in grouped if g["task"] == "wood"][0]
    assert [c["task"] for c in wood["clips"]] == ["wood", "wood"] and wood["clips"][0]["cosine"] == pytest.approx(1.0)
