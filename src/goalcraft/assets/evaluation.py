"""Evaluation stage: the goal models side by side on the held-out goal clips (goal_model_comparison),
every goal model on every instruction set as parquet tables that accumulate across runs, and the HTML
comparison report. Logic in goalcraft.evaluation; every model and table read is an upstream asset."""

import dagster as dg

from goalcraft.assets.keys import (
    GOAL_ALIGNER,
    GOAL_CLIPS,
    GOAL_EMBEDDINGS,
    GOAL_SPACE_MODEL,
    STEVE1_PRIOR,
    TASK_VOCABULARY,
)
from goalcraft.assets.training import history_markdown
from goalcraft.config import GoalcraftConfig
from goalcraft.resources import CorpusResource, StorageResource, TrainingResource

#: What a goal model's evaluation reads: the predictor, the baseline (goal-space text → prior), and the
#: goal-embeddings table (its split column says which clips are held out).
MODEL_INPUTS = [GOAL_ALIGNER, STEVE1_PRIOR, GOAL_SPACE_MODEL, GOAL_EMBEDDINGS, TASK_VOCABULARY]


def definitions(config: GoalcraftConfig) -> dg.Definitions:
    return dg.Definitions(assets=build_evaluation_assets())


def _models(paths, training: TrainingResource):
    import torch

    from goalcraft.evaluation.run import GoalModelUnderTest, file_digest
    from goalcraft.models.backbones import mean_pool
    from goalcraft.models.baseline import MineCLIPPriorBaseline
    from goalcraft.models.mineclip import load_mineclip
    from goalcraft.models.predictor import load_goal_predictor
    from goalcraft.models.prior import load_prior

    predictor = load_goal_predictor(paths.goal_predictor_dir / "best")
    baseline = MineCLIPPriorBaseline(load_mineclip(paths.goal_space_dir / "best"), load_prior(paths.prior_dir / "best"))

    @torch.inference_mode()
    def predictor_text(texts):
        states, mask = predictor.encode_text(texts)
        return mean_pool(states, mask).float().numpy()

    return [
        GoalModelUnderTest("goal_predictor", lambda texts, seed: predictor.predict_goal(texts).numpy(),
                           predictor_text, {"aligner": str(paths.goal_predictor_dir / "best"),
                                            "version": file_digest(paths.goal_predictor_dir / "best" / "model.safetensors")}),
        GoalModelUnderTest(
            "mineclip_prior",
            lambda texts, seed: baseline.predict_goal(texts, deterministic=seed is None, seed=seed).numpy(),
            lambda texts: baseline.encode_text(texts).numpy(),
            {"goal_space": str(paths.goal_space_dir / "best"), "prior": str(paths.prior_dir / "best"),
             "version": file_digest(paths.prior_dir / "best" / "model.safetensors")},
            seeds=tuple(training.evaluation.prior_seeds)),
    ]


def _held_out(paths):
    import numpy as np
    import pyarrow.parquet as pq

    from goalcraft.data.splits import split_indices
    from goalcraft.evaluation.run import HeldOutClips
    from goalcraft.training.predictor import PredictorExamples

    table = pq.read_table(paths.goal_embeddings_table)
    examples = PredictorExamples.from_table(table)
    idx = np.asarray(split_indices(table)["test"])
    return table, HeldOutClips([examples.keys[i] for i in idx], [examples.tasks[i] for i in idx], examples.goals[idx])


def build_evaluation_assets() -> list[dg.AssetsDefinition]:
    @dg.asset(
        group_name="evaluation",
        kinds={"pytorch"},
        deps=MODEL_INPUTS,
        description=(
            "The goal predictor and the MineCLIP text → prior baseline on the test split's goal clips (which "
            "neither trained on): mean cosine of z_goal to the clip's true goal embedding, the same centred "
            "on the training goals' mean, and the norm ratio; with each clip's own instruction and with its "
            "task's other phrasings."
        ),
    )
    def goal_model_comparison(context: dg.AssetExecutionContext, storage: StorageResource,
                              corpus: CorpusResource) -> dg.MaterializeResult:
        import pyarrow.parquet as pq

        from goalcraft.data.splits import require_splits, split_indices
        from goalcraft.evaluation.comparison import evaluate_against_baseline
        from goalcraft.models.baseline import load_baseline
        from goalcraft.models.predictor import load_goal_predictor
        from goalcraft.training.launch import load_variants
        from goalcraft.training.predictor import PredictorExamples

        paths = storage.paths
        table = pq.read_table(paths.goal_embeddings_table)
        splits = split_indices(table)
        require_splits(splits, ("train", "test"))
        examples = PredictorExamples.from_table(table)
        predictor = load_goal_predictor(paths.goal_predictor_dir / "best")
        baseline = load_baseline(paths.goal_space_dir / "best", paths.prior_dir / "best")
        comparison = evaluate_against_baseline(examples, splits, predictor.predict_goal, baseline.predict_goal,
                                               load_variants(paths.task_vocabulary_file))
        rows = [{"model": name, **values} for name, values in comparison.items() if name != "n"]
        return dg.MaterializeResult(metadata={
            "test_cosine": comparison["predictor"]["cosine"],
            "baseline_test_cosine": comparison["baseline"]["cosine"],
            "test_norm_ratio": comparison["predictor"]["norm_ratio"],
            "comparison": dg.MetadataValue.md(history_markdown(rows, ["model", "cosine", "centered_cosine",
                                                                       "norm_ratio"])),
            "test_clips": int(comparison["n"]["clips"]),
        })

    @dg.asset(
        group_name="evaluation",
        kinds={"pytorch", "parquet", "duckdb"},
        deps=MODEL_INPUTS,
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
        from goalcraft.data.task_vocabulary import read_task_vocabulary
        from goalcraft.evaluation.instructions import load_instruction_sets
        from goalcraft.evaluation.report import summary_markdown
        from goalcraft.evaluation.run import evaluate_runs, example_rows, file_digest, new_run_id, write_tables

        paths, e = storage.paths, training.evaluation
        sets = load_instruction_sets(e.instruction_sets, corpus.root, read_task_vocabulary(paths.task_vocabulary_file))
        _, clips = _held_out(paths)
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
        deps=[goal_model_evaluation, GOAL_EMBEDDINGS, GOAL_CLIPS],
        description=("The HTML comparison report of the latest evaluation run: metrics with CIs side by side, "
                     "per-model task-similarity heatmaps, most-confused pairs, and instruction → nearest goal "
                     "clips with their frames."),
    )
    def evaluation_report(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
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
        goal_table, _ = _held_out(paths)
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

    return [goal_model_comparison, goal_model_evaluation, evaluation_report]
