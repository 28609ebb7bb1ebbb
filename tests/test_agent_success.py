"""Agent success: Wilson intervals, held-out world seeds, the rollout plan, the table and its DuckDB
view and named query, paired differences."""

from __future__ import annotations

import math

import numpy as np
import pyarrow.parquet as pq
import pytest

from goalcraft.evaluation.agent_success import (
    AGENT_SUCCESS_SCHEMA,
    GoalSource,
    agent_success_table,
    animated_episodes,
    oracle_beats_floor,
    paired_difference,
    paired_differences,
    rollout_plan,
    summarize,
    wilson,
    world_seeds,
)
from goalcraft.evaluation.rollouts import RolloutResult


@pytest.mark.parametrize("k, n, low, high", [(0, 20, 0.0, 0.1611), (20, 20, 0.8389, 1.0), (10, 20, 0.2993, 0.7007),
                                             (3, 10, 0.1078, 0.6032)])
def test_wilson_known_values(k, n, low, high):
    rate, lo, hi = wilson(k, n)
    assert rate == k / n and lo == pytest.approx(low, abs=1e-4) and hi == pytest.approx(high, abs=1e-4)
    assert all(math.isnan(x) for x in wilson(0, 0))


def test_world_seeds_avoid_training_seeds():
    seeds = world_seeds(20, 0)
    assert len(set(seeds)) == 20 and seeds == world_seeds(20, 0) and seeds != world_seeds(20, 1)
    avoided = world_seeds(20, 0, exclude=set(seeds[:5]))
    assert not set(avoided) & set(seeds[:5])


def _sources():
    return [GoalSource("oracle_visual", lambda t, i, e: np.full(4, 1.0), tasks=frozenset({"collect_wood"})),
            GoalSource("mineclip_prior_sampled", lambda t, i, e: np.full(4, float(e))),
            GoalSource("unconditional", lambda t, i, e: np.zeros(4), guided=False),
            GoalSource("scripted", None)]


def test_rollout_plan():
    tasks = [("collect_wood", "chop a tree"), ("place_table", "place a table")]
    plan = rollout_plan(tasks, _sources(), [5, 6, 7], guidance=[0.0, 3.0], max_steps=50)
    counts = {}
    for p in plan:
        counts[(p.model, p.guidance)] = counts.get((p.model, p.guidance), 0) + 1
    assert counts == {("oracle_visual", 0.0): 3, ("oracle_visual", 3.0): 3, ("mineclip_prior_sampled", 0.0): 6,
                      ("mineclip_prior_sampled", 3.0): 6, ("unconditional", 0.0): 6, ("scripted", None): 6}
    assert all(p.request.world_seed == [5, 6, 7][p.episode] and p.request.max_steps == 50 for p in plan)
    sampled = [p for p in plan if p.model == "mineclip_prior_sampled" and p.guidance == 0.0 and p.task == "place_table"]
    assert [float(p.request.goal[0]) for p in sampled] == [0.0, 1.0, 2.0]  # a draw per episode
    assert all(p.request.goal is None for p in plan if p.model == "scripted")
    assert len({p.request.seed for p in plan}) == len(plan)  # each episode samples actions on its own


def test_animated_episodes_one_per_source_and_task_first_world_largest_guidance():
    tasks = [("collect_wood", "chop a tree"), ("place_table", "place a table")]
    plan = rollout_plan(tasks, _sources(), [5, 6, 7], guidance=[3.0, 6.0, 0.0], max_steps=50)
    picked = [plan[i] for i in animated_episodes(plan)]
    assert sorted((p.model, p.task, p.guidance) for p in picked) == sorted(
        [("oracle_visual", "collect_wood", 6.0), ("mineclip_prior_sampled", "collect_wood", 6.0),
         ("mineclip_prior_sampled", "place_table", 6.0), ("unconditional", "collect_wood", 0.0),
         ("unconditional", "place_table", 0.0), ("scripted", "collect_wood", None), ("scripted", "place_table", None)])
    assert all(p.episode == 0 and p.request.world_seed == 5 for p in picked)


def _table():
    tasks = [("collect_wood", "chop a tree"), ("place_table", "place a table")]
    plan = rollout_plan(tasks, _sources(), list(range(10)), guidance=[0.0], max_steps=50)
    rng = np.random.default_rng(0)
    results = []
    for p in plan:
        p_win = {"oracle_visual": 0.9, "mineclip_prior_sampled": 0.5, "unconditional": 0.1, "scripted": 1.0}[p.model]
        win = bool(rng.random() < p_win)
        results.append(RolloutResult(p.request, win, 10 if win else 50, (p.task, "collect_sapling") if win else (),
                                     False))
    return agent_success_table(plan, results, run_id="r1", policy="v1")


def test_table_and_summary():
    table = _table()
    assert table.schema == AGENT_SUCCESS_SCHEMA
    rows = table.to_pylist()
    assert {r["model"] for r in rows} == {"oracle_visual", "mineclip_prior_sampled", "unconditional", "scripted"}
    assert all(r["off_target"] == (1 if r["success"] else 0) for r in rows)
    summary = summarize(table)
    pooled = {(r["model"], r["guidance"]): r for r in summary if r["task"] == "(all)"}
    assert pooled[("scripted", None)]["success_rate"] == 1.0 and pooled[("scripted", None)]["episodes"] == 20
    oracle = pooled[("oracle_visual", 0.0)]
    assert oracle["episodes"] == 10 and oracle["ci_low"] <= oracle["success_rate"] <= oracle["ci_high"]
    assert oracle["mean_steps_to_success"] == 10.0


def test_oracle_beats_floor_needs_the_best_guidance_ci_above_the_floors():
    def row(model, guidance, task, k, n=20):
        rate, low, high = wilson(k, n)
        return {"model": model, "guidance": guidance, "task": task, "success_rate": rate, "ci_low": low, "ci_high": high}

    summary = [row("unconditional", 0.0, "a", 0), row("oracle_visual", 0.0, "a", 6), row("oracle_visual", 1.0, "a", 7),
               row("unconditional", 0.0, "b", 0), row("oracle_visual", 1.0, "b", 6),  # 6/20 CI reaches 0/20's
               row("unconditional", 0.0, "c", 10), row("oracle_visual", 3.0, "c", 20),
               row("unconditional", 0.0, "(all)", 10, 60), row("oracle_visual", 1.0, "(all)", 33, 60)]
    # 7/20's CI [0.18, 0.57] lies above 0/20's [0, 0.16]; 6/20's [0.145, ...] does not; 20/20 above 10/20.
    assert oracle_beats_floor(summary) == {"tasks": ["a", "c"], "count": 2, "of": 3}


def test_paired_difference():
    table = _table()
    diffs = paired_difference(table, ("scripted", None), ("unconditional", 0.0), n_boot=500)
    pooled = next(d for d in diffs if d["task"] == "(all)")
    assert pooled["pairs"] == 20 and pooled["ci_low"] > 0 and pooled["ci_low"] <= pooled["difference"] <= pooled["ci_high"]
    assert {d["task"] for d in diffs} == {"(all)", "collect_wood", "place_table"}


def test_paired_differences_of_the_reported_comparisons_with_known_outcomes():
    # Two tasks x 4 worlds, λ 1 and 3. The oracle wins everything; the predictor task a only; the
    # sampled prior world 0 of each task only; the zero goal (λ 0) world 0 of task a only.
    sources = [GoalSource("oracle_visual", lambda t, i, e: np.ones(4)),
               GoalSource("goal_predictor", lambda t, i, e: np.ones(4)),
               GoalSource("mineclip_prior_sampled", lambda t, i, e: np.ones(4)),
               GoalSource("unconditional", lambda t, i, e: np.zeros(4), guided=False)]
    plan = rollout_plan([("a", "do a"), ("b", "do b")], sources, [10, 11, 12, 13], guidance=[1.0, 3.0], max_steps=9)
    wins = {"oracle_visual": lambda p: True, "goal_predictor": lambda p: p.task == "a",
            "mineclip_prior_sampled": lambda p: p.episode == 0,
            "unconditional": lambda p: p.task == "a" and p.episode == 0}
    results = [RolloutResult(p.request, wins[p.model](p), 5, (), False) for p in plan]
    diffs = paired_differences(agent_success_table(plan, results, run_id="r", policy="v"), n_boot=200)
    pooled = {(d["a"], d["b"]): d for d in diffs if d["task"] == "(all)"}
    # Pairs absent from the run (the deterministic prior, the REINFORCE head) give no rows; the floor
    # is compared at its λ 0 for every λ of the oracle.
    assert sorted(pooled) == sorted([
        ("goal_predictor@1.0", "mineclip_prior_sampled@1.0"), ("goal_predictor@3.0", "mineclip_prior_sampled@3.0"),
        ("oracle_visual@1.0", "unconditional@0.0"), ("oracle_visual@3.0", "unconditional@0.0"),
        ("oracle_visual@1.0", "goal_predictor@1.0"), ("oracle_visual@3.0", "goal_predictor@3.0")])
    expected = {("goal_predictor", "mineclip_prior_sampled"): (4 - 2) / 8, ("oracle_visual", "unconditional"): (8 - 1) / 8,
                ("oracle_visual", "goal_predictor"): (8 - 4) / 8}
    for (a, b), d in pooled.items():
        assert d["pairs"] == 8 and d["difference"] == pytest.approx(expected[(a.split("@")[0], b.split("@")[0])])
    per_task = {d["task"]: d for d in diffs if (d["a"], d["b"]) == ("oracle_visual@3.0", "goal_predictor@3.0")}
    assert (per_task["a"]["difference"], per_task["b"]["difference"]) == (0.0, 1.0)
    assert per_task["b"]["ci_low"] == per_task["b"]["ci_high"] == 1.0  # every pair the same: no spread


def test_duckdb_view_and_named_query_match_python(tmp_path):
    from goalcraft.sql import run_query
    from goalcraft.storage import StoragePaths

    paths = StoragePaths(tmp_path)
    paths.agent_success_dir.mkdir(parents=True)
    table = _table()
    pq.write_table(table, paths.agent_success_dir / "r1.parquet")
    assert run_query(tmp_path, "SELECT count(*) AS n FROM agent_success").to_pylist() == [{"n": table.num_rows}]
    rows = run_query(tmp_path, "agent_success").to_pylist()
    python = {(r["model"], r["guidance"], r["task"]): r for r in summarize(table)}
    assert len(rows) == len(python)
    for r in rows:
        expected = python[(r["model"], r["guidance"], r["task"])]
        for key in ("episodes", "successes"):
            assert r[key] == expected[key]
        for key in ("success_rate", "ci_low", "ci_high"):
            assert r[key] == pytest.approx(expected[key], abs=1e-6)
    assert rows[0]["task"] == "(all)"


def test_plan_round_trips_through_files_and_results_come_back_in_order(tmp_path):
    from goalcraft.evaluation.agent_success import load_plan, load_results, save_plan, save_results

    tasks = [("collect_wood", "chop a tree"), ("place_table", "place a table")]
    plan = rollout_plan(tasks, _sources(), [5, 6, 7], guidance=[0.0, 3.0], max_steps=50)
    save_plan(plan, tmp_path / "p", meta={"policy": "abc"})
    # Each distinct goal is stored once: the sampled source's draws 0, 1, 2 (draw 1 is the oracle's ones,
    # draw 0 the unconditional zeros).
    assert np.load(tmp_path / "p" / "plan_goals.npy", allow_pickle=False).shape == (3, 4)
    back, meta = load_plan(tmp_path / "p")
    assert meta == {"policy": "abc"} and len(back) == len(plan)
    for a, b in zip(plan, back):
        assert (a.model, a.task, a.instruction, a.guidance, a.episode) == (b.model, b.task, b.instruction, b.guidance,
                                                                           b.episode)
        ra, rb = a.request, b.request
        assert (ra.world_seed, ra.target, ra.max_steps, ra.guidance, ra.seed) == (rb.world_seed, rb.target,
                                                                                 rb.max_steps, rb.guidance, rb.seed)
        assert (ra.goal is None and rb.goal is None) or np.array_equal(ra.goal, rb.goal)
    results = [RolloutResult(p.request, i % 3 == 0, i, ("collect_sapling",) if i % 2 else (), i % 5 == 0)
               for i, p in enumerate(back)]
    save_results(results, tmp_path / "p" / "results.jsonl")
    again = load_results(back, tmp_path / "p" / "results.jsonl")
    assert [(r.success, r.steps, r.achievements, r.died) for r in again] == \
        [(r.success, r.steps, r.achievements, r.died) for r in results]
    # The same table whether played here or read back from a file.
    assert agent_success_table(back, again, run_id="r", policy="abc").drop(["timestamp"]).equals(
        agent_success_table(plan, results, run_id="r", policy="abc").drop(["timestamp"]))


def test_plan_and_results_files_that_do_not_fit_are_refused(tmp_path):
    from goalcraft.evaluation.agent_success import PlanError, load_plan, load_results, save_plan, save_results

    plan = rollout_plan([("collect_wood", "chop a tree")], _sources(), [5, 6], guidance=[0.0], max_steps=50)
    save_plan(plan, tmp_path / "p")
    results = [RolloutResult(p.request, True, 3, (), False) for p in plan]
    save_results(results[:-1], tmp_path / "short.jsonl")
    with pytest.raises(PlanError, match="7 results for a plan of 8"):
        load_results(plan, tmp_path / "short.jsonl")
    other = rollout_plan([("collect_wood", "chop a tree")], _sources(), [8, 9], guidance=[0.0], max_steps=50)
    save_results([RolloutResult(p.request, True, 3, (), False) for p in other], tmp_path / "other.jsonl")
    with pytest.raises(PlanError, match="line 1 .*world or target differs"):
        load_results(plan, tmp_path / "other.jsonl")
    (tmp_path / "p" / "plan.json").write_text('{"format": "something else"}')
    with pytest.raises(PlanError, match="not a goalcraft.agent_plan/1 plan"):
        load_plan(tmp_path / "p")
    save_plan(plan, tmp_path / "p")
    # A pickled array is refused, not unpickled.
    np.save(tmp_path / "p" / "plan_goals.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(PlanError, match="cannot read the plan"):
        load_plan(tmp_path / "p")
