"""Agent success planned here, played on a machine with more cores (or a GPU), read back here.

    python bench/agent_sweep.py plan --config study.toml --out sweep/ --episodes 20 --guidance 0,1,3,6 \
        --max-steps 300 --tasks all
    python bench/agent_sweep.py play sweep/ --workers 14 --slots 256 --device cuda   # anywhere
    python bench/agent_sweep.py import sweep/ --config study.toml                     # back here

``plan`` builds the agent-success plan exactly as the ``agent_success`` asset does (the same tasks,
goal sources, world seeds that no training trajectory used, action-sampling seeds) but with the sweep
given on the command line, and writes it (goalcraft.evaluation.agent_success.save_plan) with a copy of
the trained policy. ``play`` needs only goalcraft, torch, crafter and that folder: it loads the policy
(strict safetensors), plays every episode through the rollout runner and writes ``results.jsonl``.
``import`` reads the results against the plan and writes the run into the pipeline's agent-success
table (``goalcraft sql agent_success``), then prints the pooled rates, the tasks where the oracle goal
beats the zero goal, and the paired predictor − prior differences.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

POLICY_COPY = "policy"
RESULTS = "results.jsonl"
ANIMATIONS = "animations.json"  # the report's recorded episodes (GIFs in base64), played with the plan


def _paths(config_file: str):
    from goalcraft.config import load_config
    from goalcraft.storage import StoragePaths

    config = load_config(Path(config_file))
    return config, StoragePaths(Path(config.paths.data_root)), config.paths.corpus_path


def cmd_plan(args: argparse.Namespace) -> None:
    from goalcraft.evaluation import agent_success as A
    from goalcraft.stages.agent import plan_agent_success

    config, paths, corpus = _paths(args.config)
    update = {"episodes": args.episodes, "max_steps": args.max_steps,
              "guidance": [float(x) for x in args.guidance.split(",")]}
    if args.tasks:
        update["tasks"] = [] if args.tasks == "all" else args.tasks.split(",")
    if args.sources:
        update["sources"] = args.sources.split(",")
    settings = config.agent.model_copy(update=update)
    planned = plan_agent_success(paths, corpus, settings, trials_dir=config.paths.trials_dir,
                                 sample_seed=args.sample_seed)
    for note in planned.notes:
        print(note)
    out = Path(args.out)
    A.save_plan(planned.plan, out, meta={"policy": planned.version, "settings": settings.model_dump(mode="json")})
    shutil.rmtree(out / POLICY_COPY, ignore_errors=True)
    shutil.copytree(paths.policy_dir / "best", out / POLICY_COPY)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"plan: {len(planned.plan)} episodes ({len(planned.tasks)} tasks, {len(planned.sources)} sources "
          f"{[s.name for s in planned.sources]}, λ {settings.guidance}, {len(planned.seeds)} worlds, "
          f"T = {settings.max_steps}) in {out} ({size / 1e6:.1f} MB)")


def cmd_play(args: argparse.Namespace) -> None:
    import base64
    import dataclasses

    import torch

    from goalcraft.evaluation import agent_success as A
    from goalcraft.models.policy import load_policy

    folder = Path(args.folder)
    plan, meta = A.load_plan(folder)
    policy = load_policy(folder / POLICY_COPY)
    if args.limit:
        plan = plan[:args.limit]
    torch.set_num_threads(args.torch_threads)
    started = time.perf_counter()
    shown = [0]

    def progress(done: int, total: int) -> None:
        if done == total or done - shown[0] >= max(1, total // 20):
            shown[0] = done
            print(f"play: {done}/{total} episodes, {time.perf_counter() - started:.0f}s", flush=True)

    results, animations = A.play_plan(policy, plan, slots=args.slots, workers=args.workers, device=args.device,
                                      progress=progress)
    out = Path(args.results or folder / RESULTS)
    A.save_results(results, out)
    (out.parent / ANIMATIONS).write_text(json.dumps(
        [dict(dataclasses.asdict(a), gif=base64.b64encode(a.gif).decode()) for a in animations]))
    steps = sum(r.steps for r in results)
    seconds = time.perf_counter() - started
    info = {"episodes": len(results), "env_steps": steps, "seconds": round(seconds, 1),
            "env_steps_per_s": round(steps / seconds, 1), "workers": args.workers, "slots": args.slots,
            "device": args.device, "cpus": os.cpu_count(), "machine": platform.node(),
            "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None,
            "policy": meta.get("policy")}
    (out.parent / "play_info.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info))


def cmd_import(args: argparse.Namespace) -> None:
    import base64

    from goalcraft.evaluation import agent_success as A
    from goalcraft.evaluation.agent_report import Animation
    from goalcraft.stages.agent import paired_markdown, pooled_markdown, record_agent_run

    _config, paths, _corpus = _paths(args.config)
    plan, results, animations, policies = [], [], [], set()
    for i, name in enumerate(args.folder):  # several plans of one policy (a sweep played in parts) make one run
        folder = Path(name)
        part, meta = A.load_plan(folder)
        results_file = Path(args.results[i] if args.results else folder / RESULTS)
        results += A.load_results(part, results_file)
        plan += part
        policies.add(str(meta.get("policy", "")))
        if (results_file.parent / ANIMATIONS).is_file():
            for a in json.loads((results_file.parent / ANIMATIONS).read_text()):
                animations.append(Animation(**dict(a, size=tuple(a["size"]), gif=base64.b64decode(a["gif"]))))
    if len(policies) != 1:
        raise A.PlanError(f"the plans were made for {len(policies)} different policies; import them separately")
    table = A.agent_success_table(plan, results, policy=policies.pop())
    run = record_agent_run(paths, table, animations)
    summary = A.summarize(table)
    print(f"run {run.run_id}: {len(results)} episodes → {run.table_path}; report {run.report_path}")
    print(pooled_markdown(summary))
    print("oracle above unconditional:", json.dumps(A.oracle_beats_floor(summary)))
    print(paired_markdown(run.differences))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("plan")
    p.add_argument("--config", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--guidance", default="0,1,3,6")
    p.add_argument("--max-steps", type=int, default=300)
    p.add_argument("--tasks", default="all", help="'all', or a comma-separated list ('' = the config's)")
    p.add_argument("--sample-seed", type=int, default=None,
                   help="the action-sampling seeds' root ([agent] seed); give each part of a sweep its own")
    p.add_argument("--sources", default="", help="a comma-separated subset of the goal sources ('' = the config's)")
    p = sub.add_parser("play")
    p.add_argument("folder")
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    p.add_argument("--slots", type=int, default=128)
    p.add_argument("--device", default="cpu")
    p.add_argument("--torch-threads", type=int, default=1)
    p.add_argument("--limit", type=int, default=0, help="play only the first N episodes (a smoke test)")
    p.add_argument("--results", default=None)
    p = sub.add_parser("import")
    p.add_argument("folder", nargs="+")
    p.add_argument("--config", required=True)
    p.add_argument("--results", nargs="*", default=None, help="each folder's results file (default: in the folder)")
    args = parser.parse_args(argv)
    try:
        {"plan": cmd_plan, "play": cmd_play, "import": cmd_import}[args.cmd](args)
    except ValueError as exc:  # PlanError and settings errors: one line
        sys.exit(f"agent_sweep: {exc}")


if __name__ == "__main__":
    main()
