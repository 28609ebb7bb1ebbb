"""The ``goalcraft`` command line.

    goalcraft demo               generate the Crafter demo corpus (if absent) and materialize every asset
    goalcraft run                materialize assets on the configured corpus, in dependency order
                                 (--select ASSETS|GROUPS, --partition KEYS; default everything)
    goalcraft generate-corpus    only generate the Crafter corpus
    goalcraft ui                 open the Dagster UI on the same instance the demo wrote to
    goalcraft download           fetch the manifest's videos with yt-dlp (the ``download`` extra)
    goalcraft predict TEXT...    z_goal of instructions from the trained goal predictor, and the nearest
                                 goal clips (task, source, cosine)
    goalcraft gpu-config         write the k8s / Ray deployment config for the GPU training assets
    goalcraft sql NAME|SQL       run a named DuckDB query (comparison, confused_pairs, metric_history) or
                                 any SQL over the output tables, and print the result
    goalcraft convert-video-llama CKPT OUT
                                 convert an original Video-LLaMA checkpoint into goalcraft's format
    goalcraft export-goals --instructions FILE --out DIR
                                 z_goal of every instruction as <name>.pkl files STEVE-1 loads as visual
                                 prompts, plus goals.npz and index.json (docs/steve1.md)
    goalcraft evaluate-prior --tasks eval_tasks.yaml --success-visuals PATH|--trials DIR --out DIR
                                 the user's STEVE-1 prior evaluation, standalone: prior_evaluation_summary.json
                                 and the HTML report (no Dagster instance)
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

from goalcraft.config import CONFIG_ENV_VAR, GoalcraftConfig, load_config
from goalcraft.storage import StoragePaths


class CliError(Exception):
    """An ordinary user error: printed as one line on stderr, no traceback; ``exit_code`` is returned."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _say(message: str) -> None:
    print(message, flush=True)


def dagster_home(paths: StoragePaths) -> Path:
    """``$DAGSTER_HOME``, else ``<data_root>/dagster_home``: the UI should show the runs the CLI made.
    A home without a ``dagster.yaml`` (or with the one earlier versions wrote) gets goalcraft's:
    telemetry off (no internet) and compute logs mirrored without helper processes
    (goalcraft.pipelines.compute_logs). A ``dagster.yaml`` of your own is left as it is."""
    from goalcraft.pipelines.compute_logs import TELEMETRY_OFF, instance_yaml
    from goalcraft.storage import atomic_path

    home = Path(os.environ.get("DAGSTER_HOME") or paths.dagster_home)
    home.mkdir(parents=True, exist_ok=True)
    settings = home / "dagster.yaml"
    if not settings.exists() or settings.read_text() == TELEMETRY_OFF:  # an earlier version's
        with atomic_path(settings) as tmp:
            tmp.write_text(instance_yaml(str(home)))
    return home


def _instance(paths: StoragePaths):
    import dagster as dg

    os.environ["DAGSTER_HOME"] = str(dagster_home(paths))
    return dg.DagsterInstance.get()


def ensure_demo_corpus(config: GoalcraftConfig, say: Callable[[str], None] = _say) -> None:
    """Generate the Crafter corpus ``[demo]`` describes, unless the configured corpus exists."""
    corpus = config.paths.corpus_path
    manifests = [corpus / m for m in config.paths.manifests]
    if all(m.is_file() for m in manifests):
        say(f"corpus: using {corpus}")
        return
    if config.paths.corpus_root:
        raise CliError(f"manifest(s) {', '.join(map(str, manifests))} not found under the configured "
                       f"corpus_root; the demo only generates a corpus in the default location")
    from goalcraft.crafter.corpus import generate_crafter_corpus
    from goalcraft.crafter.tasks import STUDY_TRIAL_TARGETS, TRIAL_TARGETS

    demo = config.demo
    say(f"corpus: generating the Crafter demo corpus in {corpus} (seed {demo.seed}, {demo.videos} videos of "
        f"{demo.steps_per_video} steps, {demo.trials} trials, {demo.workers} worker(s))")
    started = time.perf_counter()
    summary = generate_crafter_corpus(
        corpus, seed=demo.seed, n_videos=demo.videos, steps_per_video=demo.steps_per_video, n_trials=demo.trials,
        n_steve1_episodes=demo.steve1_episodes, trial_max_steps=demo.trial_max_steps, video_agent=demo.video_agent,
        trial_targets=TRIAL_TARGETS + STUDY_TRIAL_TARGETS if demo.trial_targets == "study" else TRIAL_TARGETS,
        workers=demo.workers, n_explore_episodes=demo.explore_episodes, explore_steps=demo.explore_steps,
        transcripts=demo.transcripts, trial_pace_steps=demo.trial_pace_steps,
        video_pace_steps=demo.video_pace_steps, progress=say)
    say(f"corpus: {summary.videos} videos, {summary.trials + summary.episodes} trials, "
        f"{summary.events} achievement events in {time.perf_counter() - started:.1f}s")


@contextmanager
def _settings_for_steps(config: GoalcraftConfig) -> Iterator[None]:
    """With ``[gpu] target`` k8s or ray, steps run in other processes that load the settings file
    themselves (goalcraft.pipelines.location): name it in ``GOALCRAFT_CONFIG`` for them while the runs
    last. In-process runs need nothing."""
    if config.gpu.target == "inprocess":
        yield
        return
    if not Path(config.source).is_file():
        raise CliError(f"[gpu] target = {config.gpu.target!r} runs steps in other processes, which read the "
                       f"settings from a file: give one with --config or GOALCRAFT_CONFIG (settings came from "
                       f"{config.source})", exit_code=2)
    previous = os.environ.get(CONFIG_ENV_VAR)
    os.environ[CONFIG_ENV_VAR] = config.source
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(CONFIG_ENV_VAR, None)
        else:
            os.environ[CONFIG_ENV_VAR] = previous


def run_pipeline(config: GoalcraftConfig, *, select: str | None = None, partitions: str | None = None,
                 say: Callable[[str], None] = _say) -> dict[str, dict]:
    """Materialize the selected assets (default: all) for the selected partitions (default: all) on the
    configured corpus, in the asset graph's order, on the instance ``goalcraft ui`` shows.

    ``[gpu] target``: ``inprocess`` runs every step in this process; ``ray`` (or ``k8s``) runs each
    step as a Ray job (Kubernetes Job) on the configured cluster, this process being the run worker.
    """
    from goalcraft.definitions import build_definitions
    from goalcraft.pipelines.run import closing_lines, plan_steps, run_steps

    defs = build_definitions(config)
    steps = plan_steps(defs, select, partitions)  # before touching the instance: a typo costs nothing
    paths = StoragePaths(Path(config.paths.data_root))
    with _settings_for_steps(config):
        summary = run_steps(defs, _instance(paths), steps, say, remote=config.gpu.target != "inprocess")
    for line in closing_lines(summary, str(paths.data_root)):
        say(line)
    return summary.metadata


def run_demo(config: GoalcraftConfig, *, say: Callable[[str], None] = _say) -> dict[str, dict]:
    """Generate the demo corpus if needed, then materialize every asset, partition by partition."""
    ensure_demo_corpus(config, say=say)
    return run_pipeline(config, say=say)


def _config(args: argparse.Namespace, preset: str | None = None) -> GoalcraftConfig:
    config = load_config(args.config, preset=preset)
    if getattr(args, "data_root", None):
        config = config.model_copy(update={"paths": config.paths.model_copy(
            update={"data_root": str(Path(args.data_root).resolve())})})
    return config


def _cmd_demo(args: argparse.Namespace) -> int:
    config = _config(args, "study" if args.study else None)
    flags = {k: v for k, v in (("seed", args.seed), ("videos", args.videos), ("trials", args.trials)) if v is not None}
    if flags:  # the flags override [demo] (validated like the file)
        from pydantic import ValidationError

        try:
            demo = type(config.demo)(**(config.demo.model_dump() | flags))
        except ValidationError as exc:
            raise CliError("; ".join(f"--{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None
        config = config.model_copy(update={"demo": demo})
    if args.study:
        _say("study: the goal models' evaluation and the closed loop on the study corpus (docs/results.md)")
    run_demo(config)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    config = _config(args)
    if args.data_root and config.gpu.target != "inprocess":
        raise CliError(f"--data-root cannot reach steps on [gpu] target = {config.gpu.target!r} (they read the "
                       "settings file): set [paths] data_root there", exit_code=2)
    run_pipeline(config, select=args.select, partitions=args.partition)
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    from goalcraft.crafter.corpus import generate_crafter_corpus

    summary = generate_crafter_corpus(Path(args.out), seed=args.seed, n_videos=args.videos,
                                      n_trials=args.trials, steps_per_video=args.steps, progress=_say)
    _say(f"wrote {summary.videos} videos, {summary.trials} trials, {summary.episodes} STEVE-1 episodes, "
         f"{summary.events} events to {args.out}")
    return 0


def run_process_group(cmd: Sequence[str], env: Mapping[str, str], *, grace_s: float = 150.0) -> int:
    """Run ``cmd`` in its own session and process group, and take the whole group down with us.

    ``dagster dev`` starts a webserver, a daemon and code servers; a SIGTERM to goalcraft alone used
    to leave them running. Here SIGTERM and SIGINT (Ctrl-C: the child's group is not the terminal's
    foreground group, so it would not see it) are forwarded to the child's group, which shuts down
    cleanly; whatever is left of the group ``grace_s`` later, or once the leader exits, is killed.
    150 s: ``dagster dev`` itself waits up to 60 s for its webserver and then up to 60 s for its
    daemon before killing them (dagster/_cli/dev.py, ``_SUBPROCESS_WAIT_TIMEOUT``); a shorter grace
    (it was 30 s) killed it in the middle of its own clean shutdown (exit 247 under a loaded CI run).
    """
    proc = subprocess.Popen(list(cmd), env=dict(env), start_new_session=True)
    requested: list[float] = []

    def forward(signum: int, _frame: object) -> None:
        requested.append(time.monotonic())
        _signal_group(proc.pid, signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while proc.poll() is None:
            if requested and time.monotonic() - requested[0] > grace_s:
                _signal_group(proc.pid, signal.SIGKILL)
            time.sleep(0.2)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _end_group(proc.pid, grace_s)
    return proc.returncode


def _signal_group(pgid: int, signum: int) -> bool:
    """Send ``signum`` to the group; False when no process is left in it."""
    try:
        os.killpg(pgid, signum)
        return True
    except ProcessLookupError:
        return False


def _end_group(pgid: int, grace_s: float) -> None:
    """SIGTERM the rest of the group (code servers outlive a crashed parent), then SIGKILL after ``grace_s``."""
    if not _signal_group(pgid, signal.SIGTERM):
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        time.sleep(0.2)
        if not group_alive(pgid):
            return
    _signal_group(pgid, signal.SIGKILL)


def group_alive(pgid: int) -> bool:
    """Whether a live (non-zombie) process is in group ``pgid``. Zombies count for kill(0) and may
    linger where PID 1 does not reap, so on Linux /proc is read; elsewhere kill(0) decides."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").is_file():
        return _signal_group(pgid, 0)
    for stat in proc.glob("[0-9]*/stat"):
        try:
            state, _ppid, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue  # exited while we looked
        if state != "Z" and int(group) == pgid:
            return True
    return False


def _cmd_ui(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    paths = StoragePaths(Path(config.paths.data_root))
    env = dict(os.environ, DAGSTER_HOME=str(dagster_home(paths)))
    if config.source != "defaults":
        env["GOALCRAFT_CONFIG"] = config.source
    # `dagster dev` of the running interpreter's dagster: no reliance on a `dagster` script on PATH.
    cmd = [sys.executable, "-m", "dagster", "dev", "-m", "goalcraft.definitions", "--port", str(args.port)]
    _say(f"DAGSTER_HOME={env['DAGSTER_HOME']} {' '.join(cmd)}")
    return run_process_group(cmd, env)


def _cmd_download(args: argparse.Namespace) -> int:
    from goalcraft.data.download import download_manifest_videos

    config = load_config(args.config)
    corpus = config.paths.corpus_path
    results = download_manifest_videos([corpus / m for m in config.paths.manifests], corpus, limit=args.limit)
    failed = [r for r in results if not r.ok]
    _say(f"downloaded {len(results) - len(failed)} of {len(results)} videos into {corpus / 'videos'}")
    for r in failed:
        _say(f"  {r.video_id}: {r.error}")
    return 1 if failed else 0


def _cmd_predict(args: argparse.Namespace) -> int:
    import pyarrow.parquet as pq

    from goalcraft.data.embeddings import nearest_goal_clips
    from goalcraft.models.predictor import load_goal_predictor

    config = load_config(args.config)
    paths = StoragePaths(Path(config.paths.data_root))
    model_dir = Path(args.model) if args.model else paths.goal_predictor_dir / "best"
    if not (model_dir / "config.json").is_file():
        raise CliError(f"no trained goal predictor in {model_dir}: run `goalcraft run` (or `goalcraft demo`) "
                       "to train goal_aligner first")
    z = load_goal_predictor(model_dir).predict_goal(list(args.instructions))
    table = pq.read_table(paths.goal_embeddings_table) if paths.goal_embeddings_table.is_file() else None
    nearest = nearest_goal_clips(z.numpy(), table, args.k) if table is not None else [[] for _ in args.instructions]
    for text, vec, clips in zip(args.instructions, z, nearest):
        _say(f"{text!r}: z_goal [{vec.numel()}] norm {vec.norm():.3f} mean {vec.mean():+.4f} std {vec.std():.4f} "
             f"first {', '.join(f'{x:+.3f}' for x in vec[:4].tolist())} ...")
        for clip in clips:
            _say(f"    {clip['cosine']:.4f}  {clip.get('task') or '-':<24} {clip.get('source', ''):<8} {clip['key']}")
    return 0


def _cmd_gpu_config(args: argparse.Namespace) -> int:
    from goalcraft.pipelines.gpu import write_deployment_config

    config = load_config(args.config)
    execution = config.gpu.model_copy(update={"target": args.target}) if args.target else config.gpu
    for path in write_deployment_config(execution, Path(args.out)):
        _say(f"wrote {path}")
    return 0


def _cmd_convert_video_llama(args: argparse.Namespace) -> int:
    from goalcraft.models.video_llama import convert_video_llama

    out, report = convert_video_llama(Path(args.checkpoint), Path(args.out))
    _say(report.summary())
    _say(f"wrote {out}")
    return 0


# --------------------------------------------------------------------------------------------------
# The user's STEVE-1 models: export-goals, evaluate-prior


def _checkpoint_error(exc: Exception) -> CliError:
    return CliError("; ".join(line.strip() for line in str(exc).splitlines() if line.strip()))


def _user_baseline(args: argparse.Namespace, config: GoalcraftConfig):
    """MineCLIP text → STEVE-1 prior from the user's files (--mineclip / --prior, else the settings'
    checkpoints), else the pipeline's models under data_root; None when there is neither."""
    from goalcraft.evaluation.goal_models import baseline_under_test
    from goalcraft.models.checkpoints import CheckpointError, file_sha256
    from goalcraft.models.mineclip import MINECLIP_CONFIGS, load_mineclip, load_mineclip_checkpoint
    from goalcraft.models.prior import load_prior, load_steve1_prior

    mineclip_file = args.mineclip or config.goal_space.mineclip_checkpoint
    prior_file = args.prior or config.prior.checkpoint
    if bool(mineclip_file) != bool(prior_file):
        raise CliError("--mineclip and --prior go together (STEVE-1's prior reads the real MineCLIP's text embeddings)",
                       exit_code=2)
    try:
        if mineclip_file and prior_file:
            name = args.mineclip_config or config.goal_space.mineclip_config
            for path in (mineclip_file, prior_file):
                if not Path(path).is_file():
                    raise CliError(f"checkpoint not found: {path}")
            mineclip = load_mineclip_checkpoint(mineclip_file, MINECLIP_CONFIGS[name])
            prior = load_steve1_prior(prior_file, config=None)
            checkpoints = {"goal_space": str(mineclip_file), "goal_space_sha256": file_sha256(mineclip_file),
                           "mineclip_config": name, "prior": str(prior_file), "prior_sha256": file_sha256(prior_file)}
            return baseline_under_test(mineclip, prior, checkpoints), mineclip, True
        paths = StoragePaths(Path(config.paths.data_root))
        if (paths.goal_space_dir / "best" / "config.json").is_file() and (paths.prior_dir / "best" / "config.json").is_file():
            mineclip = load_mineclip(paths.goal_space_dir / "best")
            checkpoints = {"goal_space": str(paths.goal_space_dir / "best"), "prior": str(paths.prior_dir / "best")}
            return baseline_under_test(mineclip, load_prior(paths.prior_dir / "best"), checkpoints), mineclip, False
    except CheckpointError as exc:
        raise _checkpoint_error(exc) from None
    return None, None, False


def _predictor(folder: str | None, config: GoalcraftConfig, required: bool):
    """The goal predictor of ``folder`` (its ``best/`` when it has one), else the pipeline's."""
    from goalcraft.evaluation.goal_models import predictor_under_test
    from goalcraft.models.checkpoints import CheckpointError

    if folder:
        root = Path(folder)
        model_dir = root / "best" if (root / "best" / "config.json").is_file() else root
    else:
        model_dir = StoragePaths(Path(config.paths.data_root)).goal_predictor_dir / "best"
    if not (model_dir / "config.json").is_file():
        if folder or required:
            raise CliError(f"no goal predictor in {model_dir}: train one (goalcraft run) or pass --predictor DIR")
        return None
    try:
        return predictor_under_test(model_dir)
    except CheckpointError as exc:
        raise _checkpoint_error(exc) from None


def _task_file(path: Path, what: str):
    """An instruction-set file given on the command line (goalcraft.evaluation.instructions)."""
    from goalcraft.evaluation.instructions import load_instruction_set

    if not path.exists():
        raise CliError(f"{what} file not found: {path}")
    try:
        return load_instruction_set(str(path.resolve()), Path.cwd())
    except ValueError as exc:
        raise CliError(str(exc)) from None


def _instruction_goals(path: Path) -> list[tuple[str, str, str | None]]:
    """(name, instruction, task) to export: a text file (one instruction a line) or any instruction-set
    file (tasks.json, eval_tasks.yaml, instruction_variants.json, MineDojo YAML): each task's
    canonical instruction, named by the task."""
    from goalcraft.evaluation.export import read_instruction_lines, safe_name

    taken: set[str] = set()
    if path.is_file() and path.suffix.lower() in (".txt", ""):
        return [(safe_name(text, taken), text, None) for text in read_instruction_lines(path)]
    return [(safe_name(t.name, taken), t.phrasings[0], t.name) for t in _task_file(path, "instructions").tasks]


def _cmd_export_goals(args: argparse.Namespace) -> int:
    from goalcraft.evaluation.export import ExportedGoal, write_goals

    config = load_config(args.config)
    items = _instruction_goals(Path(args.instructions))
    if not items:
        raise CliError(f"no instructions in {args.instructions}")
    if args.model == "baseline":
        model, _, _ = _user_baseline(args, config)
        if model is None:
            raise CliError("no baseline: pass --mineclip attn.pth --prior steve1_prior.pt (or set [goal_space] "
                           "mineclip_checkpoint and [prior] checkpoint, or train the pipeline's prior)")
        mode = f"sampled (seed {args.seed})" if args.sample else "deterministic"
    else:
        model, mode = _predictor(args.predictor, config, required=True), "deterministic"
    seed = args.seed if args.model == "baseline" and args.sample else None
    z = model.predict([text for _, text, _ in items], seed)
    goals = [ExportedGoal(name, text, task, z[i]) for i, (name, text, task) in enumerate(items)]
    written = write_goals(goals, Path(args.out), {"model": model.name, "mode": mode,
                                                  "checkpoints": model.checkpoints,
                                                  "instructions_file": str(Path(args.instructions).resolve())})
    _say(f"wrote {len(goals)} goals ({model.name}, {mode}, shape (1, {z.shape[1]}) float32) to {args.out}: "
         f"<name>.pkl, goals.npz, index.json")
    for goal in goals:
        _say(f"  {written[goal.name].name}: {goal.instruction!r} (norm {float((goal.z_goal ** 2).sum()) ** 0.5:.3f})")
    return 0


def _cmd_evaluate_prior(args: argparse.Namespace) -> int:
    from goalcraft.data.steve1_eval import EMBED_DIM
    from goalcraft.evaluation.references import VisualsError, imported_visuals, trial_visuals
    from goalcraft.evaluation.report import render_report
    from goalcraft.evaluation.run import examples_for_report, file_digest, run_evaluation, write_tables
    from goalcraft.evaluation.steve1_summary import SUMMARY_FILE, prior_evaluation_summary
    from goalcraft.storage import atomic_path, write_json_atomic

    config = load_config(args.config)
    tasks = Path(args.tasks)
    iset = _task_file(tasks, "tasks")
    baseline, mineclip, users = _user_baseline(args, config)
    predictor = _predictor(args.predictor, config, required=False) if args.predictor else None
    models = [m for m in (predictor, baseline) if m is not None]
    if not models:
        raise CliError("nothing to evaluate: pass --mineclip attn.pth --prior steve1_prior.pt and/or --predictor DIR")
    dim = mineclip.embed_dim if mineclip is not None else EMBED_DIM
    try:
        if args.trials:
            if mineclip is None:
                raise CliError("--trials needs a MineCLIP to embed the trials' goal clips: pass --mineclip and --prior")
            resize = args.resize or ("steve1-bilinear" if users else config.clips.resize_method)
            clips, left_out = trial_visuals(Path(args.trials), mineclip, resize=resize, frames_fps=config.clips.frames_fps)
            inputs = {"trials": str(Path(args.trials).resolve()), "resize": resize}
        else:
            path = Path(args.success_visuals).resolve()
            clips, left_out = imported_visuals([path.name], path.parent, dim)
            inputs = {"success_visuals": file_digest(path)}
    except VisualsError as exc:
        raise CliError(str(exc)) from None
    if not len(clips.keys):
        raise CliError("no success visuals to evaluate against (every trial or task was left out)")
    notes = [f"left out {q.input} ({q.reason}): {q.detail}" for q in left_out]
    for note in notes:
        _say(note)
    n_boot = args.n_boot or config.evaluation.n_boot
    seed = config.evaluation.seed if args.seed is None else args.seed
    tables = run_evaluation(models, [iset], clips, n_boot=n_boot, seed=seed,
                            data_versions={"tasks": file_digest(tasks), **inputs},
                            settings={"command": "evaluate-prior"}, examples_per_set=config.evaluation.examples_per_set)
    run_id = tables["runs"].column("run_id")[0].as_py()
    out = Path(args.out)
    summary = prior_evaluation_summary(tables, iset.name)
    summary["goalcraft"]["left_out"] = notes
    write_json_atomic(summary, out / SUMMARY_FILE)
    write_tables(tables, out / "tables", run_id)
    html = render_report(run_id, tables, examples_for_report(tables["examples"]), lambda key: None)
    with atomic_path(out / "report.html") as tmp:
        tmp.write_text(html, encoding="utf-8")
    main = summary["goalcraft"]["entry"]

    def f(x) -> str:
        return "–" if x is None else f"{x:.4f}"

    _say(f"{iset.name}: {len(iset.tasks)} tasks, {len(clips.keys)} success visuals; {main}: goal accuracy "
         f"{f(summary['avg_goal_accuracy'])}, consistency {f(summary['avg_consistency'])}, semantic robustness "
         f"{f(summary['avg_semantic_robustness'])}, discriminability {f(summary['discriminability'])}, "
         f"{summary['degradation_warning']}")
    _say(f"wrote {out / SUMMARY_FILE}, {out / 'report.html'} and the tables under {out / 'tables'}")
    return 0


def _cmd_sql(args: argparse.Namespace) -> int:
    import duckdb

    from goalcraft.sql import format_table, named_queries, run_query

    if args.list:
        for name, sql in sorted(named_queries().items()):
            _say(f"{name}: {sql.splitlines()[0].lstrip('- ')}")
        return 0
    if not args.query:
        raise CliError("give a query name or SQL (goalcraft sql --list shows the names)", exit_code=2)
    config = load_config(args.config)
    try:
        table = run_query(Path(config.paths.data_root), args.query)
    except duckdb.Error as exc:
        raise CliError(f"query failed: {exc}")
    _say(format_table(table, args.max_rows))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="goalcraft", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=None,
                        help="settings file (default: $GOALCRAFT_CONFIG, else ./goalcraft.toml, else built-in)")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="generate the Crafter corpus if needed and materialize every asset")
    demo.add_argument("--data-root", default=None, help="override [paths] data_root")
    demo.add_argument("--study", action="store_true",
                      help="the evaluation study: the packaged study preset (a larger corpus, 3 training "
                           "replicates, the closed loop at study size; about an hour on 2 cores, docs/results.md) "
                           "under your settings file")
    demo.add_argument("--seed", type=int, default=None, help="override [demo] seed")
    demo.add_argument("--videos", type=int, default=None, help="override [demo] videos")
    demo.add_argument("--trials", type=int, default=None, help="override [demo] trials")
    demo.set_defaults(func=_cmd_demo)

    run = sub.add_parser("run", help="materialize assets in-process on the configured corpus, in dependency order")
    run.add_argument("--select", default=None,
                     help="asset and/or group names, comma-separated (default: every asset)")
    run.add_argument("--partition", default=None,
                     help="partition keys of the partitioned assets, comma-separated (default: all)")
    run.add_argument("--data-root", default=None, help="override [paths] data_root")
    run.set_defaults(func=_cmd_run)

    gen = sub.add_parser("generate-corpus", help="write a Crafter corpus in goalcraft's input formats")
    gen.add_argument("out")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--videos", type=int, default=6)
    gen.add_argument("--trials", type=int, default=4)
    gen.add_argument("--steps", type=int, default=300)
    gen.set_defaults(func=_cmd_generate)

    ui = sub.add_parser("ui", help="run `dagster dev` on goalcraft's code location and instance")
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(func=_cmd_ui)

    dl = sub.add_parser("download", help="download the manifest's videos with yt-dlp (pip install goalcraft[download])")
    dl.add_argument("--limit", type=int, default=None)
    dl.set_defaults(func=_cmd_download)

    pr = sub.add_parser("predict", help="z_goal of instructions and their nearest goal clips")
    pr.add_argument("instructions", nargs="+")
    pr.add_argument("--model", default=None, help="predictor folder (default: <data_root>/models/goal_predictor/best)")
    pr.add_argument("-k", type=int, default=5, help="goal clips to list per instruction")
    pr.set_defaults(func=_cmd_predict)

    gc = sub.add_parser("gpu-config", help="write dagster.yaml / run config for a k8s or Ray GPU cluster")
    gc.add_argument("--target", choices=("inprocess", "k8s", "ray"), default=None,
                    help="override [gpu] target")
    gc.add_argument("--out", required=True, help="folder to write the files into")
    gc.set_defaults(func=_cmd_gpu_config)

    sq = sub.add_parser("sql", help="run a named DuckDB query or any SQL over the output tables")
    sq.add_argument("query", nargs="?", help="comparison | confused_pairs | metric_history | any SQL")
    sq.add_argument("--list", action="store_true", help="list the named queries")
    sq.add_argument("--max-rows", type=int, default=200)
    sq.set_defaults(func=_cmd_sql)

    cv = sub.add_parser("convert-video-llama", help="convert a Video-LLaMA .pth into a goal-predictor folder")
    cv.add_argument("checkpoint")
    cv.add_argument("out")
    cv.set_defaults(func=_cmd_convert_video_llama)

    def user_models(command: argparse.ArgumentParser) -> None:
        command.add_argument("--mineclip", default=None, help="MineCLIP's attn.pth (default: [goal_space] mineclip_checkpoint)")
        command.add_argument("--prior", default=None, help="STEVE-1's steve1_prior.pt (default: [prior] checkpoint)")
        command.add_argument("--mineclip-config", default=None, choices=("vitb16", "demo", "tiny"),
                             help="the MineCLIP file's architecture (default: [goal_space] mineclip_config, vitb16)")

    ex = sub.add_parser("export-goals", help="z_goal of instructions as STEVE-1 visual-prompt pickles (docs/steve1.md)")
    ex.add_argument("--instructions", required=True,
                    help="a text file (one instruction a line) or a task file (tasks.json, eval_tasks.yaml, "
                         "instruction_variants.json): each task's instruction, named by the task")
    ex.add_argument("--out", required=True, help="folder for <name>.pkl, goals.npz and index.json")
    ex.add_argument("--model", choices=("predictor", "baseline"), default="predictor",
                    help="the goal predictor (default) or MineCLIP text + STEVE-1 prior")
    ex.add_argument("--predictor", default=None, help="goal predictor folder (default: the pipeline's)")
    user_models(ex)
    ex.add_argument("--sample", action="store_true", help="baseline: one draw of the prior, as STEVE-1 samples "
                                                          "(default: its deterministic mode, latent 0)")
    ex.add_argument("--seed", type=int, default=0, help="baseline with --sample: the draw's seed")
    ex.set_defaults(func=_cmd_export_goals)

    ev = sub.add_parser("evaluate-prior", help="the user's STEVE-1 prior evaluation, standalone (no Dagster)")
    ev.add_argument("--tasks", required=True, help="eval_tasks.yaml, instruction_variants.json or any task file")
    refs = ev.add_mutually_exclusive_group(required=True)
    refs.add_argument("--success-visuals", default=None,
                      help="grouped success-visuals pickle, or a recorded-samples folder (its visual_embeds.pkl)")
    refs.add_argument("--trials", default=None,
                      help="STEVE-1 evaluation results or recorded samples: their successful trials' goal clips, "
                           "embedded by the MineCLIP")
    user_models(ev)
    ev.add_argument("--predictor", default=None, help="also evaluate this goal predictor folder")
    ev.add_argument("--out", required=True, help="folder for prior_evaluation_summary.json, report.html, tables/")
    ev.add_argument("--resize", default=None, choices=("ffmpeg-bicubic", "steve1-bilinear", "pil-lanczos"),
                    help="--trials: frame resize (default: steve1-bilinear with the user's MineCLIP)")
    ev.add_argument("--n-boot", type=int, default=None, help="bootstrap replicates (default: [evaluation] n_boot)")
    ev.add_argument("--seed", type=int, default=None, help="bootstrap and sampling seed (default: [evaluation] seed)")
    ev.set_defaults(func=_cmd_evaluate_prior)
    return parser


def _user_errors() -> tuple[type[Exception], ...]:
    from goalcraft.config import ConfigError
    from goalcraft.data.download import DownloadExtraMissing
    from goalcraft.pipelines.run import RunError

    return CliError, ConfigError, DownloadExtraMissing, RunError


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except _user_errors() as exc:
        # Ordinary user errors (bad settings, unknown asset, missing checkpoint or extra, a failed step):
        # one line, no traceback. A bad setting or selection is a usage error, like argparse's (2).
        from goalcraft.config import ConfigError

        code = 2 if isinstance(exc, ConfigError) else getattr(exc, "exit_code", 1)
        print(f"goalcraft: {exc}", file=sys.stderr, flush=True)
        return code
    except KeyboardInterrupt:
        # Every write is atomic and every trainer resumes from last/: re-running picks up from there.
        print("goalcraft: interrupted; what finished is kept, and a re-run goes on from there", file=sys.stderr,
              flush=True)
        return 130


if __name__ == "__main__":
    sys.exit(main())
