"""``goalcraft run``: materialize selected assets in-process, in the asset graph's order.

The plan comes from the Definitions, not from a list: the selected assets in topological order,
grouped by the node that computes them (a multi-asset runs as one step), a partitioned node once per
selected partition, an unpartitioned one once. Each step is one in-process Dagster run on the given
instance (the one ``goalcraft ui`` shows), so there is no per-step process or code-location start-up,
which is what makes ``dagster asset materialize`` cost 15-22 s per partition.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import dagster as dg

from goalcraft.pipelines.progress import PROGRESS_LOGGER

# Dagster's console logger prints every engine event at DEBUG, and a failed step's stack at ERROR;
# `run` prints its own line per step, the stages' own log lines (goalcraft.pipelines.progress) and a
# failure's one line. The events stay in the instance (UI).
QUIET_RUN_CONFIG: dict[str, Any] = {"loggers": {PROGRESS_LOGGER: {"config": {"log_level": "INFO"}}}}
# For Definitions without goalcraft's loggers (a graph built in a test or a notebook): nothing printed.
_SILENT_RUN_CONFIG: dict[str, Any] = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
RUN_TAGS = {"goalcraft/trigger": "cli"}


class RunError(Exception):
    """A user-facing failure of ``goalcraft run``: one line, and the exit code to leave with."""

    exit_code = 1


class SelectionError(RunError):
    """An asset, group or partition that the Definitions do not have: a usage error."""

    exit_code = 2


class StepFailed(RunError):
    """A Dagster step failed; the message is the step's error, not its stack."""


@dataclass(frozen=True)
class Step:
    """One in-process run: the selected keys of one node, for one partition (None: unpartitioned)."""

    keys: tuple[dg.AssetKey, ...]
    partition: str | None = None
    index: int = 1  # position among this node's partitions, for the progress bar
    of: int = 1


@dataclass
class RunSummary:
    """Materialization metadata per ``asset`` or ``asset[partition]``, and totals over partitions."""

    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TOTALS, 0))
    steps: int = 0


TOTALS = ("clips_written", "goals_written", "quarantined", "bytes")


def _split(text: str | Sequence[str] | None) -> list[str]:
    if text is None:
        return []
    items = [text] if isinstance(text, str) else list(text)
    return [part.strip() for item in items for part in item.split(",") if part.strip()]


def resolve_selection(graph: Any, select: str | Sequence[str] | None) -> set[dg.AssetKey]:
    """Asset names and/or group names (comma-separated) → asset keys; everything when empty."""
    materializable = set(graph.materializable_asset_keys)
    names = _split(select)
    if not names:
        return materializable
    by_name = {key.to_user_string(): key for key in materializable}
    groups = graph.all_group_names
    chosen: set[dg.AssetKey] = set()
    unknown = []
    for name in names:
        if name in by_name:
            chosen.add(by_name[name])
        elif name in groups:
            chosen |= graph.asset_keys_for_group(name, require_materializable=True)
        else:
            unknown.append(name)
    if unknown:
        raise SelectionError(f"unknown asset or group: {', '.join(unknown)} (assets: {', '.join(sorted(by_name))}; "
                             f"groups: {', '.join(sorted(groups))})")
    return chosen


def plan_steps(defs: dg.Definitions, select: str | Sequence[str] | None = None,
               partitions: str | Sequence[str] | None = None) -> list[Step]:
    """The steps that materialize ``select`` for ``partitions`` (default: all), in dependency order."""
    graph = defs.resolve_asset_graph()
    chosen = resolve_selection(graph, select)
    order = {key: i for i, key in enumerate(graph.toposorted_asset_keys)}
    nodes: dict[int, list[dg.AssetKey]] = {}
    node_defs: dict[int, Any] = {}
    for key in sorted(chosen, key=order.__getitem__):
        assets_def = graph.assets_def_for_key(key)
        nodes.setdefault(id(assets_def), []).append(key)
        node_defs[id(assets_def)] = assets_def
    wanted = _split(partitions)
    partitioned = [node_defs[n].partitions_def for n in nodes if node_defs[n].partitions_def is not None]
    known = {k for p in partitioned for k in p.get_partition_keys()}
    if wanted and not partitioned:
        raise SelectionError(f"--partition {','.join(wanted)}: none of the selected assets is partitioned")
    unknown = [k for k in wanted if k not in known]
    if unknown:
        raise SelectionError(f"unknown partition: {', '.join(unknown)} (partitions: {', '.join(sorted(known))})")
    steps = []
    for node, keys in nodes.items():  # dicts keep insertion order: the node's first key's topological place
        partitions_def = node_defs[node].partitions_def
        if partitions_def is None:
            steps.append(Step(tuple(keys)))
            continue
        run_keys = [k for k in partitions_def.get_partition_keys() if not wanted or k in wanted]
        steps += [Step(tuple(keys), k, n, len(run_keys)) for n, k in enumerate(run_keys, 1)]
    return steps


def _values(metadata: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v.value if isinstance(v, dg.MetadataValue) else v for k, v in metadata.items()}


def _numbers(meta: Mapping[str, Any]) -> str:
    shown = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in meta.items()
             if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "seconds"]
    return ", ".join(shown[:8]) or "materialized"


def _nan(meta: Mapping[str, Any], key: str) -> float:
    value = meta.get(key)
    return float(value) if isinstance(value, (int, float)) else float("nan")


# The key figures of each asset's progress line; an asset not listed here shows its numeric metadata.
DESCRIBE: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "video_clips": lambda m: f"{m.get('clips_written', 0)} clips in {m.get('shards', 0)} shard(s), "
                             f"{m.get('quarantined', 0)} quarantined",
    "goal_clips": lambda m: f"{m.get('goals_written', 0)} goal clips {m.get('by_miner', {})}, "
                            f"{m.get('quarantined', 0)} quarantined"
                            + "".join(f" ({note})" for note in m.get("notes") or []),
    "goal_space_model": lambda m: f"val top-1 {_nan(m, 'val_top1'):.2f} (chance {_nan(m, 'chance_top1'):.2f})",
    "goal_embeddings": lambda m: f"{m.get('rows', 0)} goal embeddings",
    "steve1_prior": lambda m: f"best val loss {_nan(m, 'best_val_loss'):.4f}",
    "clip_embeddings": lambda m: f"{m.get('rows', 0)} clips embedded",
    "goal_predictor": lambda m: f"best epoch {m.get('best_epoch', '?')}, best val loss {_nan(m, 'best_val_loss'):.4f}",
    "goal_aligner": lambda m: f"best val loss {_nan(m, 'best_val_loss'):.4f}, output scale "
                              f"{_nan(m, 'output_scale'):.3f}",
    "goal_model_comparison": lambda m: f"test cosine {_nan(m, 'test_cosine'):.4f} (baseline "
                                       f"{_nan(m, 'baseline_test_cosine'):.4f}) on {m.get('test_clips', 0)} clips, "
                                       f"norm ratio {_nan(m, 'test_norm_ratio'):.3f}",
    "task_vocabulary": lambda m: f"{m.get('tasks', 0)} tasks" + "".join(f" ({n})" for n in m.get("notes") or []),
    "goal_model_evaluation": lambda m: f"run {m.get('run_id', '?')}" + (f"; {m['headline']}" if m.get("headline") else ""),
    "evaluation_report": lambda m: f"report {m.get('report_path', '?')}",
}


def describe(asset: str, meta: Mapping[str, Any]) -> str:
    return DESCRIBE.get(asset, _numbers)(meta)


def _verdict(evaluations: Sequence[Any]) -> str:
    if not evaluations:
        return "no check"
    failed = [e.check_name for e in evaluations if not e.passed]
    return f"check FAILED ({', '.join(failed)})" if failed else "check passed"


def _interrupted(error: Any) -> bool:
    while error is not None:
        if getattr(error, "cls_name", None) == "DagsterExecutionInterruptedError":
            return True
        error = getattr(error, "cause", None)
    return False


def _root_message(error: Any) -> str:
    """The innermost cause's first line: the user's exception, not Dagster's wrapper around it. A
    ``dg.Failure`` (a stage's one-line reason) is shown without its class name."""
    while getattr(error, "cause", None) is not None:
        error = error.cause
    lines = (getattr(error, "message", None) or str(error)).strip().splitlines()
    line = lines[0] if lines else "unknown error"
    if getattr(error, "cls_name", None) == "Failure":
        line = line.split(": ", 1)[-1]
    return line


def _label(step: Step, key: dg.AssetKey) -> str:
    name = key.to_user_string()
    return name if step.partition is None else f"{name}[{step.partition}]"


def _execute_remote(job_name: str, instance: dg.DagsterInstance, step: Step) -> dg.ExecutionResult:
    """One run of ``job_name`` in this process whose steps the code location's executor launches
    (Ray jobs, Kubernetes Jobs): the job is loaded by reference (goalcraft.pipelines.location), as
    every step process loads it."""
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    from goalcraft.pipelines.location import POINTER

    job = ReconstructableRepository.for_module(*POINTER).get_reconstructable_job(job_name)
    tags = RUN_TAGS if step.partition is None else {**RUN_TAGS, "dagster/partition": step.partition}
    with dg.execute_job(job, instance, run_config=QUIET_RUN_CONFIG, tags=tags, asset_selection=list(step.keys),
                        raise_on_error=False) as result:
        return result


def execute_step(defs: dg.Definitions, instance: dg.DagsterInstance, step: Step,
                 remote: bool = False) -> tuple[dict, list, float]:
    """Run one step; its materialization metadata per label, check evaluations, seconds. Raises StepFailed.

    ``remote``: the steps run where the code location's executor sends them (``[gpu] target`` k8s or
    ray), not in this process; ``defs`` must then be the Definitions that goalcraft.pipelines.location
    builds from the same settings.
    """
    started = time.perf_counter()
    job = defs.resolve_implicit_job_def_def_for_assets(list(step.keys))
    assert job is not None, step.keys  # every materializable asset is in an implicit asset job
    if remote:
        result = _execute_remote(job.name, instance, step)
    else:
        run_config = QUIET_RUN_CONFIG if PROGRESS_LOGGER in job.loggers else _SILENT_RUN_CONFIG
        result = job.execute_in_process(instance=instance, partition_key=step.partition,
                                        asset_selection=list(step.keys), run_config=run_config, tags=RUN_TAGS,
                                        raise_on_error=False)
    seconds = time.perf_counter() - started
    failures = result.get_step_failure_events()
    if any(_interrupted(f.step_failure_data.error) for f in failures):
        raise KeyboardInterrupt  # Ctrl-C inside a step: Dagster reports it as the step's failure
    if failures or not result.success:
        where = ", ".join(_label(step, k) for k in step.keys)
        message = _root_message(failures[0].step_failure_data.error) if failures else "the run failed"
        raise StepFailed(f"{where} failed: {message}")
    metadata = {_label(step, e.asset_key): _values(e.materialization.metadata)
                for e in result.get_asset_materialization_events()}
    return metadata, list(result.get_asset_check_evaluations()), seconds


def run_steps(defs: dg.Definitions, instance: dg.DagsterInstance, steps: Sequence[Step],
              say: Callable[[str], None], remote: bool = False) -> RunSummary:
    """Execute ``steps`` in order, one progress line per asset and partition; stop at the first failure.
    ``remote``: see :func:`execute_step`."""
    summary = RunSummary()
    for step in steps:
        metadata, evaluations, seconds = execute_step(defs, instance, step, remote)
        summary.steps += 1
        for key in step.keys:
            name, label = key.to_user_string(), _label(step, key)
            meta = metadata.get(label, {})
            summary.metadata[label] = meta
            if step.partition is not None:
                for total in TOTALS:
                    value = meta.get(total, 0)
                    summary.totals[total] += int(value) if isinstance(value, (int, float)) else 0
            checks = [e for e in evaluations if e.asset_key == key]
            where = name if step.partition is None else \
                f"{name} [{'#' * step.index}{'.' * (step.of - step.index)}] {step.partition}"
            say(f"{where}: {describe(name, meta)}, {_verdict(checks)}, {seconds:.1f}s")
    return summary


def closing_lines(summary: RunSummary, data_root: str) -> list[str]:
    """The run's headline results: the predictor against its baseline, the evaluation report, totals."""
    lines = []
    comparison = summary.metadata.get("goal_model_comparison")
    if comparison:
        lines.append(f"predictor: held-out cosine to the true goal {_nan(comparison, 'test_cosine'):.4f} vs baseline "
                     f"{_nan(comparison, 'baseline_test_cosine'):.4f} on {comparison.get('test_clips', 0)} test-split "
                     "clips")
    evaluation = summary.metadata.get("goal_model_evaluation")
    if evaluation:
        lines.append(f"evaluation: run {evaluation.get('run_id', '?')}, report "
                     f"{summary.metadata.get('evaluation_report', {}).get('report_path', '?')}; "
                     "compare with `goalcraft sql comparison`")
    t = summary.totals
    lines.append(f"done: {t['clips_written']} clips ({t['bytes'] / 1e6:.1f} MB), {t['goals_written']} goal clips, "
                 f"{t['quarantined']} input(s) quarantined in {summary.steps} step(s). Outputs in {data_root}; "
                 "browse them with `goalcraft ui`.")
    return lines
