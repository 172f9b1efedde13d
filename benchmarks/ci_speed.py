"""Channel-independence scoring: ours against the naive definition, on the same maps.

Prints, per ResNet-56 layer shape (N images, default 128): seconds (ours: the median of 7 runs;
the references: one run each) for CHIP's public algorithm
(float32, a clone of the whole batch per image and channel), for the naive reference (one
nuclear norm per image per removed channel, float64, cloning only that map) and for
prunelab.criteria, the ratios, and our largest difference from the naive reference relative to
the layer's largest score. Then the full ResNet-56 scoring time (19, 18
and 18 layers of the three shapes, 640 images) extrapolated from those figures, and the same for
ResNet-50's hooked layers at 224x224 (ours timed on a few images per shape; naive estimated from
the time of one nuclear norm per shape).

    python benchmarks/ci_speed.py [--device cpu|cuda] [--images 128] [--resnet50-images 8]

Imports only torch, prunelab.criteria and tests/oracles.py, the naive definition the tests use
(runs on the GPU machine as it is).
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from oracles import channel_independence as naive  # noqa: E402  the tests' reference, not the library's

from prunelab.criteria.chip import channel_independence_per_image  # noqa: E402

RESNET56 = [((16, 32, 32), 19), ((32, 16, 16), 18), ((64, 8, 8), 18)]  # (C, H, W), hooked layers
# CHIP's prunable groups: stem 16; 27 block inner widths; 18 block outputs of stages 1-2
RESNET56_GROUPS = [16] + [16] * 9 + [32] * 9 + [64] * 9 + [16] * 9 + [32] * 9
# ResNet-50 at 224x224, CHIP's hooked ReLUs: stem; conv1 and conv2 of every bottleneck (stride on
# conv2); the first block's output of stages 1-3.
RESNET50 = [((64, 112, 112), 1),
            ((64, 56, 56), 6), ((256, 56, 56), 1),
            ((128, 56, 56), 1), ((128, 28, 28), 7), ((512, 28, 28), 1),
            ((256, 28, 28), 1), ((256, 14, 14), 11), ((1024, 14, 14), 1),
            ((512, 14, 14), 1), ((512, 7, 7), 5)]
# its prunable groups: stem 64; conv1 and conv2 of 3+4+6+3 bottlenecks; stage outputs 1-3
RESNET50_GROUPS = [64] + [64] * 6 + [128] * 8 + [256] * 12 + [512] * 6 + [256, 512, 1024]
IMAGES = 640


def stored_bytes(channels: list[int]) -> int:
    """Size of what extract_features stores for CHIP: one float64 per channel per hooked layer."""
    buf = io.BytesIO()
    torch.save({"layers": {f"layer{i}": {"chip": torch.zeros(c, dtype=torch.float64)} for i, c in enumerate(channels)}},
               buf)
    return len(buf.getvalue())


def chip_public(fmaps: torch.Tensor) -> torch.Tensor:
    """CHIP's public algorithm: float32, and for every (image, channel) a clone of the whole batch."""
    n, c = fmaps.shape[:2]
    a = fmaps.reshape(n, c, -1).float()
    out = torch.empty(n, c)
    for i in range(n):
        for ch in range(c):
            batch = a.clone()  # (N, C, M), as the public code does
            batch[i, ch] = 0
            out[i, ch] = torch.linalg.matrix_norm(batch[i], "nuc")
    full = torch.linalg.matrix_norm(a, "nuc")  # (N,)
    return full[:, None] - out


def timed(fn, device: torch.device, repeats: int = 1):
    """(result, median seconds over `repeats` runs)."""
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return out, sorted(times)[len(times) // 2]


def maps(shape, n, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.relu(torch.randn(n, *shape, generator=g)).to(device)  # ReLU outputs: sparse, non-negative


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--images", type=int, default=128)
    p.add_argument("--resnet50-images", type=int, default=8)
    args = p.parse_args()
    dev = torch.device(args.device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"# CHIP scoring speed: torch {torch.__version__}, {name}")
    print(f"{'shape (C,H,W)':>16} {'N':>4} {'CHIP code s':>11} {'naive s':>9} {'ours s':>8} {'ratio':>7} "
          f"{'vs CHIP':>7} {'max err':>9}")
    full_naive = full_ours = full_chip = 0.0
    worst = float("inf")
    for shape, layers in RESNET56:
        x = maps(shape, args.images, dev)
        channel_independence_per_image(x[:2])  # warm-up (kernels, allocator)
        ref, t_naive = timed(lambda: naive(x.cpu()), torch.device("cpu"))
        _, t_chip = timed(lambda: chip_public(x.cpu()), torch.device("cpu"))
        ours, t_ours = timed(lambda: channel_independence_per_image(x), dev, repeats=7)
        err = ((ours.double().cpu() - ref).abs().max() / ref.abs().max()).item()
        worst = min(worst, t_naive / t_ours)
        print(f"{str(shape):>16} {args.images:>4} {t_chip:11.3f} {t_naive:9.3f} {t_ours:8.4f} {t_naive / t_ours:6.0f}x "
              f"{t_chip / t_ours:6.0f}x {err:9.1e}")
        full_naive += layers * t_naive * IMAGES / args.images
        full_chip += layers * t_chip * IMAGES / args.images
        full_ours += layers * t_ours * IMAGES / args.images
    print(f"ResNet-56, 55 layers x {IMAGES} images (extrapolated): CHIP's code {full_chip:.0f} s, naive {full_naive:.0f} s, "
          f"ours {full_ours:.2f} s: {full_naive / full_ours:.0f}x faster than naive ({full_chip / full_ours:.0f}x than "
          f"CHIP's code); slowest shape {worst:.0f}x")

    r50_ours = r50_naive = 0.0
    for shape, layers in RESNET50:
        x = maps(shape, args.resnet50_images, dev, seed=1)
        channel_independence_per_image(x[:1])
        _, t = timed(lambda: channel_independence_per_image(x), dev, repeats=3)
        a = x[0].reshape(shape[0], -1).double().cpu()
        _, t_norm = timed(lambda: [torch.linalg.matrix_norm(a, "nuc") for _ in range(2)], torch.device("cpu"))
        r50_ours += layers * t * IMAGES / args.resnet50_images
        r50_naive += layers * (t_norm / 2) * (shape[0] + 1) * IMAGES
    print(f"ResNet-50, 36 layers x {IMAGES} images at 224x224 (extrapolated from {args.resnet50_images} images/shape): "
          f"ours {r50_ours:.0f} s ({r50_ours / 60:.1f} min); naive {r50_naive / 86400:.1f} days")
    for name, groups in (("ResNet-56", RESNET56_GROUPS), ("ResNet-50", RESNET50_GROUPS)):
        print(f"stored CHIP statistics, {name}: {len(groups)} layers, {sum(groups):,} channels, "
              f"{stored_bytes(groups) / 1024:.1f} KB (raw maps only with features.save_maps)")


if __name__ == "__main__":
    main()
