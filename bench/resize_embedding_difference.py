"""How much STEVE-1's resize changes goal embeddings: the same 16-frame clips decoded with FFmpeg's
bicubic scaler (goalcraft's default) and with STEVE-1's OpenCV INTER_LINEAR (``[clips] resize =
"steve1-bilinear"``), embedded by one MineCLIP, compared by cosine.

    python bench/resize_embedding_difference.py                       # Crafter at 640x360 + the MineStudio fixtures
    python bench/resize_embedding_difference.py --config vitb16 --clips 6

Sources: a Crafter corpus rendered at 640x352 (Crafter needs multiples of 16; MineRL gives 640x360), so
both resizes do work (the demo renders 256x160, where neither resizes anything), and real Minecraft
footage (tests/fixtures/minestudio, 640x360).
Clips: non-overlapping 16-frame windows from the start of each video. Model: MineCLIP of ``--config``
with random weights (seed 0; the real attn.pth cannot be downloaded here), so the figure says how far
the resize moves an embedding of this architecture, not the trained model's exact number. For scale it
also prints the cosine between neighbouring clips of one video under one resize, and both cosines
again centred on the mean embedding of all clips (random weights give every clip a large shared
component, which raw cosines hide differences under).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from goalcraft.data.decode import get_decoder
from goalcraft.models.mineclip import MINECLIP_CONFIGS, MineCLIP

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "minestudio"
METHODS = ("ffmpeg-bicubic", "steve1-bilinear")


def _clips(video: Path, n: int, method: str) -> np.ndarray:
    with get_decoder("pyav", resize=method).open(video) as handle:
        count = min(n, handle.info.num_frames // 16)
        return handle.read(list(range(16 * count))).frames.reshape(count, 16, 160, 256, 3)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def measure(name: str, videos: list[Path], model: MineCLIP, n: int) -> None:
    frames = {m: np.concatenate([_clips(v, n, m) for v in videos]) for m in METHODS}
    diff = np.abs(frames[METHODS[0]].astype(np.int16) - frames[METHODS[1]].astype(np.int16))
    with torch.inference_mode():
        raw = {m: np.concatenate([model.encode_video(torch.from_numpy(f[i:i + 4])).numpy()
                                  for i in range(0, len(f), 4)]) for m, f in frames.items()}
    centre = np.concatenate(list(raw.values())).mean(0)
    per_video = [len(_clips(v, n, METHODS[0])) for v in videos]
    starts = np.cumsum([0] + per_video[:-1])
    print(f"{name}: {sum(per_video)} clips from {len(videos)} videos")
    print(f"  pixels: mean |bicubic - bilinear| {diff.mean():.2f}/255, {np.mean(diff > 8):.2%} of values off by > 8")
    for label, shift in (("raw", 0.0), ("centred", centre)):
        emb = {m: _unit(e - shift) for m, e in raw.items()}
        cos = (emb[METHODS[0]] * emb[METHODS[1]]).sum(1)
        neighbours = np.concatenate([(emb[METHODS[0]][s:s + k - 1] * emb[METHODS[0]][s + 1:s + k]).sum(1)
                                     for s, k in zip(starts, per_video) if k > 1])
        print(f"  {label}: cosine(bicubic, bilinear) of the same clip: mean {cos.mean():.5f}, min {cos.min():.5f}; "
              f"neighbouring clips (one resize): mean {neighbours.mean():.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="demo", choices=sorted(MINECLIP_CONFIGS))
    parser.add_argument("--clips", type=int, default=8, help="clips per video")
    parser.add_argument("--minestudio", type=Path, default=FIXTURES)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = MineCLIP(MINECLIP_CONFIGS[args.config]).eval()
    print(f"MineCLIP {args.config} (random weights, seed 0), {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M "
          "parameters")
    with tempfile.TemporaryDirectory() as tmp:
        from goalcraft.crafter.corpus import generate_crafter_corpus

        corpus = Path(tmp) / "crafter"
        generate_crafter_corpus(corpus, seed=0, n_videos=2, steps_per_video=16 * args.clips, n_trials=0,
                                n_steve1_episodes=0, size=(640, 352))
        measure("Crafter rendered at 640x352", sorted((corpus / "videos").glob("*.mp4")), model, args.clips)
    measure("MineStudio Minecraft footage, 640x360", sorted(args.minestudio.glob("*.mp4")), model, args.clips)


if __name__ == "__main__":
    main()
