"""Evaluation stage: every goal model on every instruction set against held-out goal clips, as parquet
tables that accumulate across runs, and the HTML comparison report. Logic in goalcraft.evaluation."""

import dagster as dg

from goalcraft.resources import CorpusResource, StorageResource, TrainingResource


def _models(paths, training: TrainingResource):
    import torch

    from goalcraft.evaluation.run import GoalModelUnderTest, file_digest
    from goalcraft.models.backbones import mean_pool
    from goalcraft.models.baseline import MineCLIPPriorBaseline
    from goalcraft.models.mineclip import load_mineclip
    from goalcraft.models.predictor import load_goal_predictor
    from goalcraft.models.prior import load_prior

    predictor = load_goal_predictor(paths.aligner_dir / "best")
    baseline = MineCLIPPriorBaseline(load_mineclip(paths.goal_space_dir / "best"),
                                     load_prior(paths.heldout_prior_dir / "best"))

    @torch.inference_mode()
    def predictor_text(texts):
        states, mask = predictor.encode_text(texts)
        return mean_pool(states, mask).float().numpy()

    return [
        GoalModelUnderTest("goal_predictor", lambda texts, seed: predictor.predict_goal(texts).numpy(),
                           predictor_text, {"aligner": str(paths.aligner_dir / "best"),
                                            "version": file_digest(paths.aligner_dir / "best" / "model.safetensors")}),
        GoalModelUnderTest(
            "mineclip_prior",
            lambda texts, seed: baseline.predict_goal(texts, deterministic=seed is None, seed=seed).numpy(),
            lambda texts: baseline.encode_text(texts).numpy(),
            {"goal_space": str(paths.goal_space_dir / "best"), "prior": str(paths.heldout_prior_dir / "best"),
             "version": file_digest(paths.heldout_prior_dir / "best" / "model.safetensors")},
            seeds=tuple(training.evaluation.prior_seeds)),
    ]


def _held_out(paths, training: TrainingResource):
    import numpy as np
    import pyarrow.parquet as pq

    from goalcraft.evaluation.run import HeldOutClips
    from goalcraft.training.predictor import PredictorExamples, assign_splits

    table = pq.read_table(paths.goal_embeddings_table)
    examples = PredictorExamples.from_table(table)
    s = training.predictor
    test = assign_splits(examples.keys, val_fraction=s.val_fraction, test_fraction=s.test_fraction)["test"]
    idx = np.asarray(test)
    return table, HeldOutClips([examples.keys[i] for i in idx], [examples.tasks[i] for i in idx], examples.goals[idx])


def build_evaluation_assets(goal_aligner: dg.AssetsDefinition) -> list:
    @dg.asset(
        group_name="evaluation",
        kinds={"pytorch", "parquet", "duckdb"},
        deps=[goal_aligner],
        description=(
            "Every goal model (the goal predictor; MineCLIP text + prior, deterministic and sampled over seeds) "
            "on every instruction set, against the held-out goal clips: text discriminability, goal "
            "similarity across tasks (prior collapse), top-1/top-5 goal accuracy, discriminability, synonym "
            "robustness, with bootstrap 95% CIs. Parquet tables per run (runs, summary, per_task, per_pair, "
            "per_instruction, examples) that accumulate; query them with `goalcraft sql`."
        ),
    )
    def goal_model_evaluation(context: dg.AssetExecutionContext, storage: StorageResource, corpus: CorpusResource,
                              training: TrainingResource) -> dg.MaterializeResult:
        from goalcraft.evaluation.instructions import load_instruction_sets
        from goalcraft.evaluation.report import summary_markdown
        from goalcraft.evaluation.run import evaluate_runs, example_rows, file_digest, new_run_id, write_tables

        paths, e = storage.paths, training.evaluation
        sets = load_instruction_sets(e.instruction_sets, corpus.root)
        _, clips = _held_out(paths, training)
        models = _models(paths, training)
        run_id = new_run_id()
        tables = evaluate_runs(models, sets, clips, run_id=run_id, n_boot=e.n_boot, seed=e.seed,
                               data_versions={"goal_embeddings": file_digest(paths.goal_embeddings_table)},
                               settings={"instruction_sets": e.instruction_sets})
        tables["examples"] = example_rows(models, sets, clips, run_id=run_id, per_set=e.examples_per_set)
        written = write_tables(tables, paths.evaluation_dir, run_id)
        missing = {s.name: [t.name for t in s.tasks if t.name not in set(clips.tasks)] for s in sets}
        for name, tasks in missing.items():
            if tasks:
                context.log.info(f"{name}: {len(tasks)} task(s) have no held-out goal clips (goal accuracy skips them)")
        return dg.MaterializeResult(metadata={
            "run_id": run_id,
            "summary": dg.MetadataValue.md(summary_markdown(tables["summary"])),
            "held_out_clips": len(clips.keys),
            "tasks_without_goal_clips": dg.MetadataValue.json(missing),
            "tables": dg.MetadataValue.json({k: str(v) for k, v in written.items()}),
        })

    @dg.asset(
        group_name="evaluation",
        kinds={"html"},
        deps=[goal_model_evaluation],
        description=("The HTML comparison report of the latest evaluation run: metrics with CIs side by side, "
                     "per-model task-similarity heatmaps, most-confused pairs, and instruction → nearest goal "
                     "clips with their frames."),
    )
    def evaluation_report(context: dg.AssetExecutionContext, storage: StorageResource,
                          training: TrainingResource) -> dg.MaterializeResult:
        from goalcraft.evaluation.report import render_report, shard_frame_reader, summary_markdown
        from goalcraft.evaluation.run import TABLES, examples_for_report
        from goalcraft.sql import connect, view_sources
        from goalcraft.storage import atomic_path

        paths = storage.paths
        con = connect(paths.data_root)
        if "eval_runs" not in view_sources(paths):
            raise dg.Failure("no evaluation run found: materialize goal_model_evaluation first")
        ((run_id,),) = con.execute("SELECT run_id FROM eval_runs ORDER BY timestamp DESC, run_id DESC LIMIT 1").fetchall()
        tables = {t: con.sql(f"SELECT * FROM eval_{t} WHERE run_id = ?", params=[run_id]).to_arrow_table()
                  for t in TABLES}
        goal_table, _ = _held_out(paths, training)
        frame = shard_frame_reader(goal_table, lambda shard: paths.goal_partition_dir(shard.split("-")[0]))
        html_text = render_report(run_id, tables, examples_for_report(tables["examples"]), frame)
        out = paths.evaluation_dir / "report.html"
        for path in (paths.evaluation_dir / "reports" / f"{run_id}.html", out):
            with atomic_path(path) as tmp:
                tmp.write_text(html_text, encoding="utf-8")
        return dg.MaterializeResult(metadata={
            "run_id": run_id,
            "summary": dg.MetadataValue.md(summary_markdown(tables["summary"])),
            "report": dg.MetadataValue.url(out.resolve().as_uri()),
            "report_path": dg.MetadataValue.path(str(out)),
            "bytes": len(html_text.encode()),
        })

    return [goal_model_evaluation, evaluation_report]
