"""Evaluation: the goal models side by side on the test split, every model on every instruction set
(tables that accumulate per run), and the HTML report of the latest run. Logic in goalcraft.evaluation."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from goalcraft.config import EvaluationSettings
from goalcraft.data.splits import SplitError, require_splits, split_indices
from goalcraft.stages import Markdown, StageError, StageResult, Url
from goalcraft.stages.training import history_markdown
from goalcraft.storage import StoragePaths, write_text_atomic


def _goal_table(paths: StoragePaths) -> tuple[pa.Table, dict[str, np.ndarray]]:
    table = pq.read_table(paths.goal_embeddings_table)
    splits = split_indices(table)
    try:
        require_splits(splits, ("train", "test"))
    except SplitError as exc:
        raise StageError(str(exc)) from None
    return table, splits


def _held_out(paths: StoragePaths):
    """(goal table, the goal clips that are success visuals of the evaluation: the test split and the
    user's STEVE-1 trials (the ``reference`` column), the train + val goals the models trained on)."""
    from goalcraft.data.splits import reference_rows
    from goalcraft.evaluation.run import HeldOutClips, TrainingGoals
    from goalcraft.training.predictor import PredictorExamples

    table, splits = _goal_table(paths)
    examples = PredictorExamples.from_table(table)
    idx, sources = reference_rows(table)
    seen = np.sort(np.concatenate([splits["train"], splits["val"]]))
    return (table, HeldOutClips([examples.keys[i] for i in idx], [examples.tasks[i] for i in idx], examples.goals[idx],
                                sources),
            TrainingGoals([examples.tasks[i] for i in seen], examples.goals[seen]))


def imported_references(entries: list[str], corpus_root: Path, embed_dim: int):
    """``[evaluation] success_visuals`` as success visuals marked ``imported:<entry>``
    (goalcraft.evaluation.references), and a line per task or trial left out."""
    from goalcraft.evaluation.references import VisualsError, imported_visuals

    try:
        clips, quarantined = imported_visuals(entries, corpus_root, embed_dim)
    except VisualsError as exc:
        raise StageError(f"[evaluation] success_visuals: {exc}") from None
    return clips, [f"success visuals {q.input} left out ({q.reason}): {q.detail}" for q in quarantined]


def _provenance(model_dir: Path) -> dict[str, str]:
    """Where a model folder came from: its ``best/`` path and version, and the user's checkpoint file
    with its sha256 when it was imported rather than trained."""
    from goalcraft.evaluation.run import file_digest
    from goalcraft.stages.training import imported_checkpoint

    out = {"path": str(model_dir / "best"), "version": file_digest(model_dir / "best" / "model.safetensors")}
    record = imported_checkpoint(model_dir)
    if record:
        out.update(user_checkpoint=record["checkpoint"], sha256=record["sha256"])
    return out


def _models(paths: StoragePaths, replicates: int):
    """Every training replicate of the goal predictor and of the MineCLIP text → prior baseline (one
    prior when it is the user's STEVE-1 checkpoint)."""
    from goalcraft.evaluation.goal_models import baseline_under_test, predictor_under_test
    from goalcraft.models.mineclip import load_mineclip
    from goalcraft.models.prior import load_prior
    from goalcraft.stages.training import prior_replicate_dirs

    models = [predictor_under_test(folder / "best", training_seed=k)
              for k, folder in enumerate(paths.replicate_dirs(paths.goal_predictor_dir, replicates))]
    goal_space = _provenance(paths.goal_space_dir)
    goal_space = {"goal_space": goal_space.pop("path"), **{f"goal_space_{key}": v for key, v in goal_space.items()}}
    for k, folder in enumerate(prior_replicate_dirs(paths, replicates)):
        prior = _provenance(folder)
        checkpoints = {**goal_space, "prior": prior.pop("path"), "version": prior.pop("version"),
                       **{f"prior_{key}": v for key, v in prior.items()}}
        models.append(baseline_under_test(load_mineclip(paths.goal_space_dir / "best"), load_prior(folder / "best"),
                                          checkpoints, training_seed=k))
    return models


def compare_goal_models(paths: StoragePaths) -> StageResult:
    """The predictor and the MineCLIP text → prior baseline on the test split (goalcraft.evaluation.comparison)."""
    from goalcraft.evaluation.comparison import evaluate_against_baseline
    from goalcraft.models.baseline import load_baseline
    from goalcraft.models.predictor import load_goal_predictor
    from goalcraft.training.launch import load_variants
    from goalcraft.training.predictor import PredictorExamples

    table, splits = _goal_table(paths)
    examples = PredictorExamples.from_table(table)
    predictor = load_goal_predictor(paths.goal_predictor_dir / "best")
    baseline = load_baseline(paths.goal_space_dir / "best", paths.prior_dir / "best")
    comparison = evaluate_against_baseline(examples, splits, predictor.predict_goal, baseline.predict_goal,
                                           load_variants(paths.task_vocabulary_file))
    rows = [{"model": name, **values} for name, values in comparison.items() if name != "n"]
    return StageResult({
        "test_cosine": comparison["predictor"]["cosine"],
        "baseline_test_cosine": comparison["baseline"]["cosine"],
        "test_norm_ratio": comparison["predictor"]["norm_ratio"],
        "comparison": history_markdown(rows, ["model", "cosine", "centered_cosine", "norm_ratio"]),
        "test_clips": int(comparison["n"]["clips"]),
    })


def evaluate_goal_models(paths: StoragePaths, corpus_root: Path, settings: EvaluationSettings) -> StageResult:
    """Every goal model on every instruction set against the success visuals (the test split, the
    user's STEVE-1 trials, ``[evaluation] success_visuals``): one parquet file per table."""
    from goalcraft.data.task_vocabulary import read_task_vocabulary
    from goalcraft.evaluation.instructions import load_instruction_sets
    from goalcraft.evaluation.report import summary_markdown
    from goalcraft.evaluation.run import file_digest, headline, headline_line, run_evaluation, write_tables
    from goalcraft.evaluation.steve1_summary import write_prior_summaries

    sets = load_instruction_sets(settings.instruction_sets, corpus_root, read_task_vocabulary(paths.task_vocabulary_file))
    _, clips, training = _held_out(paths)
    imported, notes = imported_references(settings.success_visuals, corpus_root, clips.embeddings.shape[1])
    clips = clips + imported
    models = _models(paths, settings.replicates)
    tables = run_evaluation(models, sets, clips, training=training, n_boot=settings.n_boot, seed=settings.seed,
                            data_versions={"goal_embeddings": file_digest(paths.goal_embeddings_table)},
                            settings={"instruction_sets": settings.instruction_sets, "replicates": settings.replicates,
                                      "success_visuals": settings.success_visuals},
                            examples_per_set=settings.examples_per_set)
    run_id = tables["runs"].column("run_id")[0].as_py()
    written = write_tables(tables, paths.evaluation_dir, run_id)
    summaries = write_prior_summaries(tables, paths.evaluation_dir / "prior_evaluation")
    missing = {s.name: [t.name for t in s.tasks if t.name not in set(clips.tasks)] for s in sets}
    figures = headline(tables)
    return StageResult({
        "run_id": run_id,
        "headline": headline_line(figures),
        "top1": figures,
        "replicates": settings.replicates,
        "summary": Markdown(summary_markdown(tables["summary"], tables.get("differences"))),
        "held_out_clips": len(clips.keys),
        "success_visuals_by_source": dict(sorted(Counter(clips.sources).items())),
        "tasks_without_goal_clips": missing,
        "tables": {k: str(v) for k, v in written.items()},
        "prior_evaluation_summaries": {k: str(v) for k, v in summaries.items()},
    }, notes + [f"{name}: {len(tasks)} task(s) have no held-out goal clips (goal accuracy skips them)"
                for name, tasks in missing.items() if tasks])


def write_evaluation_report(paths: StoragePaths) -> StageResult:
    """The HTML report of the latest evaluation run (and a copy per run under reports/)."""
    from goalcraft.evaluation.report import render_report, shard_frame_reader, summary_markdown
    from goalcraft.evaluation.run import TABLES, examples_for_report
    from goalcraft.sql import connect, view_sources

    con = connect(paths.data_root)
    views = view_sources(paths)
    if "eval_runs" not in views:
        raise StageError("no evaluation run found: materialize goal_model_evaluation first")
    ((run_id,),) = con.execute("SELECT run_id FROM eval_runs ORDER BY timestamp DESC, run_id DESC LIMIT 1").fetchall()
    # A table no run has written yet (runs older than it) is left out; the report skips what is missing.
    tables = {t: con.sql(f"SELECT * FROM eval_{t} WHERE run_id = ?", params=[run_id]).to_arrow_table()
              for t in TABLES if f"eval_{t}" in views}
    goal_table, _, _ = _held_out(paths)
    frame = shard_frame_reader(goal_table, lambda shard: paths.goal_partition_dir(shard.split("-")[0]))
    examples = examples_for_report(tables["examples"]) if "examples" in tables else []
    html_text = render_report(run_id, tables, examples, frame)
    out = paths.evaluation_dir / "report.html"
    for path in (paths.evaluation_dir / "reports" / f"{run_id}.html", out):
        write_text_atomic(html_text, path)
    return StageResult({
        "run_id": run_id,
        "summary": Markdown(summary_markdown(tables.get("summary"), tables.get("differences"))),
        "report": Url(out.resolve().as_uri()),
        "report_path": out,
        "bytes": len(html_text.encode()),
    })
