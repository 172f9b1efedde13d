"""How measured inference latency scales with the work: batch size, and the width of a layer.

Prints, for a two-conv network on 3x32x32 inputs (prunelab.latency.measure_latency, median of
`--repeats` passes): batch 1 against batch 64 at width 32, and width 16 against width 64 (the
second conv's MACs grow as width**2: 16x) at batch 16, with the ratios. A measurement, not a
test: on a loaded machine the ratios move.

    python benchmarks/latency_scaling.py [--device cpu|cuda] [--threads 1] [--repeats 21]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from prunelab.latency import measure_latency  # noqa: E402


def conv_net(width: int) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (one: no OpenMP spin-waits on a shared machine)")
    p.add_argument("--repeats", type=int, default=21)
    p.add_argument("--warmup", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    run = dict(device=args.device, warmup=args.warmup, repeats=args.repeats)
    by_batch = measure_latency(conv_net(32), (3, 32, 32), batch_sizes=(1, 64), **run)
    b1, b64 = by_batch[1]["median_ms"], by_batch[64]["median_ms"]
    print(f"# latency scaling on {args.device}, {args.threads} thread(s), median of {args.repeats} passes")
    print(f"width 32: batch 1 {b1:.3f} ms, batch 64 {b64:.3f} ms: {b64 / b1:.1f}x for 64x the images")
    tiny = measure_latency(conv_net(16), (3, 32, 32), batch_sizes=(16,), **run)[16]["median_ms"]
    wide = measure_latency(conv_net(64), (3, 32, 32), batch_sizes=(16,), **run)[16]["median_ms"]
    print(f"batch 16: width 16 {tiny:.3f} ms, width 64 {wide:.3f} ms: {wide / tiny:.1f}x for 16x the second conv's MACs")


if __name__ == "__main__":
    main()
