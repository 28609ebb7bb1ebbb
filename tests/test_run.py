"""`goalcraft run`: the plan comes from the asset graph, runs are real in-process materializations on
the persistent instance, and user errors are one line on stderr."""

import dagster as dg
import pytest

from goalcraft.cli import main
from goalcraft.definitions import build_definitions
from goalcraft.pipelines.run import Step, plan_steps, run_steps


def _names(steps):
    return [("+".join(k.to_user_string() for k in s.keys), s.partition) for s in steps]


def test_plan_follows_the_asset_graph(make_config, tmp_path):
    defs = build_definitions(make_config(tmp_path / "data", tmp_path / "corpus", count=2))
    steps = plan_steps(defs)
    graph = defs.resolve_asset_graph()
    position = {}
    for i, step in enumerate(steps):
        for key in step.keys:
            position.setdefault(key, i)
    assert set(position) == set(graph.materializable_asset_keys)
    for key, i in position.items():  # every parent runs before its child
        assert all(position[parent] < i for parent in graph.get(key).parent_keys if parent in position)
    assert [p for name, p in _names(steps) if name == "video_clips"] == ["p0000", "p0001"]
    assert [p for name, p in _names(steps) if name == "goal_model_evaluation"] == [None]
    # Groups and assets mix; partitions narrow the partitioned ones, unpartitioned ones run once.
    assert _names(plan_steps(defs, "ingest,video_clips", "p0001")) == [
        ("agent_trials", None), ("corpus_manifest", None), ("task_vocabulary", None), ("video_clips", "p0001")]
    assert plan_steps(defs, ["video_clips", "clip_embeddings"], "p0000,p0001")[1] == Step(
        (dg.AssetKey("video_clips"),), "p0001", 2, 2)


def test_new_assets_are_planned_and_run_in_dependency_order(tmp_path):
    """A graph goalcraft has never seen: a partitioned root, a multi-asset, an unpartitioned sink."""
    log = tmp_path / "log.txt"
    parts = dg.StaticPartitionsDefinition(["a", "b"])

    def note(text: str) -> None:
        with log.open("a") as f:
            f.write(text + "\n")

    @dg.asset(partitions_def=parts, group_name="raw")
    def zeta(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        note(f"zeta {context.partition_key}")
        return dg.MaterializeResult(metadata={"rows": 3})

    @dg.multi_asset(specs=[dg.AssetSpec("left", deps=["zeta"]), dg.AssetSpec("right", deps=["zeta"])])
    def split():
        note("split")
        yield dg.MaterializeResult(asset_key="left")
        yield dg.MaterializeResult(asset_key="right")

    @dg.asset(deps=["left", "right"])
    def alpha() -> None:
        note("alpha")

    defs = dg.Definitions(assets=[zeta, split, alpha])
    steps = plan_steps(defs)
    assert _names(steps) == [("zeta", "a"), ("zeta", "b"), ("left+right", None), ("alpha", None)]
    lines = []
    with dg.DagsterInstance.ephemeral() as instance:
        summary = run_steps(defs, instance, steps, lines.append)
    assert log.read_text().splitlines() == ["zeta a", "zeta b", "split", "alpha"]
    assert summary.metadata["zeta[a]"] == {"rows": 3} and summary.steps == 4
    assert [l.split(",")[0] for l in lines] == ["zeta [#.] a: rows=3", "zeta [##] b: rows=3", "left: materialized",
                                                "right: materialized", "alpha: materialized"]


def test_a_stages_own_log_lines_reach_the_terminal_and_engine_events_do_not(tmp_path, capsys):
    """A step that logs (epochs, rounds) is not silent under `goalcraft run`: its info and warning lines
    print as they happen, before the step's summary line; Dagster's engine events stay in the instance."""
    from goalcraft.pipelines.progress import LOGGERS

    @dg.asset
    def slow(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        context.log.info("epoch 1/2")
        context.log.debug("not shown: below the level")
        context.log.warning("loss rose")
        print("between the lines", flush=True)
        context.log.info("epoch 2/2")
        return dg.MaterializeResult(metadata={"rows": 2})

    defs, lines = dg.Definitions(assets=[slow], loggers=LOGGERS), []
    with dg.DagsterInstance.ephemeral() as instance:
        run_steps(defs, instance, plan_steps(defs), lambda line: (lines.append(line), print(line)))
        (record,) = instance.get_run_records()
        events = [e.event_log_entry for e in instance.get_records_for_run(record.dagster_run.run_id).records]
    assert capsys.readouterr().out.splitlines() == [
        "  slow: epoch 1/2", "  slow: warning: loss rose", "between the lines", "  slow: epoch 2/2",
        "slow: rows=2, no check, " + lines[0].rsplit(", ", 1)[1]]
    # the same lines are in the run's event log, where the UI shows them
    assert [e.user_message for e in events if e.dagster_event is None] == ["epoch 1/2", "not shown: below the level",
                                                                           "loss rose", "epoch 2/2"]


def test_ctrl_c_inside_a_step_stops_the_run_as_an_interrupt_not_a_failed_step(tmp_path):
    """Dagster turns Ctrl-C inside a step into the step's failure; the run stops as interrupted (the
    CLI prints one line for it) and the next step never runs."""
    import os
    import signal
    import time

    ran = []

    @dg.asset
    def first() -> None:
        os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C sends
        time.sleep(5)
        ran.append("first finished")

    @dg.asset(deps=[first])
    def second() -> None:
        ran.append("second")

    defs = dg.Definitions(assets=[first, second])
    with dg.DagsterInstance.ephemeral() as instance, pytest.raises(KeyboardInterrupt):
        run_steps(defs, instance, plan_steps(defs), lambda line: None)
    assert ran == []


@pytest.fixture
def configured(make_config, crafter_corpus, tmp_path, monkeypatch):
    """GOALCRAFT_CONFIG pointing at the session corpus, a fresh data root and no DAGSTER_HOME."""
    data = tmp_path / "data"
    cfg = tmp_path / "goalcraft.toml"
    cfg.write_text(f'[paths]\ndata_root = "{data}"\ncorpus_root = "{crafter_corpus}"\n[partitions]\ncount = 2\n')
    monkeypatch.setenv("GOALCRAFT_CONFIG", str(cfg))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    return data


@pytest.mark.slow
def test_run_materializes_the_selection_on_the_persistent_instance(configured, capsys):
    assert main(["run", "--select", "ingest,video_clips", "--partition", "p0001"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [l.split(":")[0] for l in out] == ["agent_trials", "corpus_manifest", "task_vocabulary",
                                              "video_clips [#] p0001", "done"]
    clips = int(out[3].split(": ")[1].split(" clips")[0])
    assert clips > 0 and "check passed" in out[3] and out[4].startswith(f"done: {clips} clips")
    from dagster._core.instance.ref import InstanceRef  # the public API only opens $DAGSTER_HOME

    instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(configured / "dagster_home")))
    assert instance.get_materialized_partitions(dg.AssetKey("video_clips")) == {"p0001"}
    (record,) = instance.get_run_records(dg.RunsFilter(tags={"goalcraft/trigger": "cli",
                                                              "dagster/partition": "p0001"}))
    assert record.dagster_run.is_success


@pytest.mark.parametrize("argv, message", [
    (["run", "--select", "video_clip"], "goalcraft: unknown asset or group: video_clip (assets: agent_success, "
     "agent_trials, clip_embeddings, corpus_manifest, evaluation_report, goal_aligner, goal_clips, goal_embeddings, "
     "goal_model_comparison, goal_model_evaluation, goal_policy, goal_predictor, goal_predictor_rl, goal_space_model, "
     "steve1_prior, task_vocabulary, video_clips; groups: agent, clips, embeddings, evaluation, goals, ingest, "
     "predictor, training)"),
    (["run", "--select", "clips", "--partition", "p0001,p7"], "goalcraft: unknown partition: p7 (partitions: "
     "p0000, p0001)"),
    (["run", "--select", "ingest", "--partition", "p0000"], "goalcraft: --partition p0000: none of the selected "
     "assets is partitioned"),
])
def test_unknown_selection_is_one_line_and_exit_2(configured, capsys, argv, message):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err == message + "\n" and captured.out == ""
    assert not (configured / "dagster_home").exists()  # refused before any run


def test_a_failed_step_prints_its_error_not_the_stack(configured, capsys):
    # The clip stage before ingest: its input table does not exist yet.
    assert main(["run", "--select", "video_clips", "--partition", "p0000"]) == 1
    captured = capsys.readouterr()
    assert captured.err == (f"goalcraft: video_clips[p0000] failed: FileNotFoundError: "
                            f"{configured / 'ingest' / 'manifest.parquet'}\n")
    assert captured.out == ""


@pytest.mark.parametrize("toml, message", [
    ("[clips]\nframes_per_clip = 16\nfps_out = 5\n", "unknown key frames_per_clip; unknown key fps_out"),
    ("[partitions]\ncount = 0\n", "count: Input should be greater than 0"),
])
def test_a_bad_setting_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, toml, message):
    cfg = tmp_path / "goalcraft.toml"
    cfg.write_text(toml)
    monkeypatch.setenv("GOALCRAFT_CONFIG", str(cfg))
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("goalcraft: ") and message in err and err.count("\n") == 1


def test_a_ray_target_reads_its_settings_from_a_file(configured, capsys, tmp_path):
    """Ray steps load the settings file themselves: --data-root cannot reach them, nor can settings
    that came from no file."""
    from goalcraft.cli import CliError, run_pipeline
    from goalcraft.config import config_from_dict

    cfg = tmp_path / "goalcraft.toml"
    cfg.write_text(cfg.read_text() + '[gpu]\ntarget = "ray"\n')
    assert main(["run", "--select", "video_clips", "--data-root", str(tmp_path / "other")]) == 2
    assert capsys.readouterr().err == ("goalcraft: --data-root cannot reach steps on [gpu] target = 'ray' (they "
                                       "read the settings file): set [paths] data_root there\n")
    with pytest.raises(CliError, match=r"runs steps in other processes, which read the settings from a file"):
        run_pipeline(config_from_dict({"gpu": {"target": "ray"}, "paths": {"data_root": str(configured)}}, tmp_path),
                     select="ingest")


def test_the_study_preset_sizes_the_closed_loop_and_the_demo_runs_every_group(tmp_path, monkeypatch):
    """`goalcraft demo --study` materializes every asset, the closed loop included, with the preset's
    study-size [policy], [agent] and [predictor_rl] under the user's file."""
    import goalcraft.cli as cli
    from goalcraft.config import load_config

    config = load_config(None, preset="study")
    assert (config.policy.epochs, config.predictor_rl.iterations) == (6, 10)
    assert (config.agent.tasks, config.agent.episodes, config.agent.max_steps, config.agent.guidance) == ([], 20, 300, [1.0])
    assert "unconditional" in config.agent.sources and "oracle_visual" in config.agent.sources
    seen = {}
    monkeypatch.setattr(cli, "run_demo", lambda config: seen.update(config=config))  # every asset: no selection
    assert cli.main(["demo", "--study", "--data-root", str(tmp_path)]) == 0
    assert seen["config"].agent.max_steps == 300
    assert seen["config"].paths.data_root == str(tmp_path.resolve())


