"""Goal-space embedding throughput: MineCLIP encode_video on 16-frame 160x256 clips.

    python bench/embedding_throughput.py                     # full ViT-B/16 size, CPU
    python bench/embedding_throughput.py --device cuda --dtype bf16 --batch 64

Weights are random (the real attn.pth cannot be downloaded here); speed does not depend on them.
FLOPs are counted with torch.utils.flop_counter on one batch; MFU = achieved FLOP/s / --peak-tflops
(pass your device's dense peak, e.g. ~989 for H100 SXM bf16; on CPU it is reported as achieved only).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from goalcraft.models.mineclip import MINECLIP_CONFIGS, MineCLIP


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="vitb16", choices=sorted(MINECLIP_CONFIGS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--peak-tflops", type=float, default=None)
    args = parser.parse_args()

    model = MineCLIP(MINECLIP_CONFIGS[args.config]).to(args.device).eval()
    frames = torch.randint(0, 256, (args.batch, 16, 160, 256, 3), dtype=torch.uint8, device=args.device)
    autocast = torch.autocast(args.device.split(":")[0], dtype=torch.bfloat16, enabled=args.dtype == "bf16")
    with torch.inference_mode(), autocast:
        counter = FlopCounterMode(display=False)
        with counter:
            model.encode_video(frames)
        flops = counter.get_total_flops()
        model.encode_video(frames)  # warm-up
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(args.iters):
            model.encode_video(frames)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = (time.perf_counter() - started) / args.iters
    rate = flops / seconds
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, threads "
          f"{torch.get_num_threads()}, device {args.device}, {args.dtype}")
    print(f"model: {args.config}, {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters; "
          f"batch {args.batch} clips x 16 frames")
    print(f"throughput: {args.batch / seconds:.2f} clips/s ({seconds:.2f} s a batch)")
    print(f"compute: {flops / args.batch / 1e9:.1f} GFLOP a clip, achieved {rate / 1e12:.3f} TFLOP/s"
          + (f", MFU {rate / (args.peak_tflops * 1e12):.1%}" if args.peak_tflops else ""))


if __name__ == "__main__":
    main()
