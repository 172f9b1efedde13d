"""How much a measured speed-up moves between runs: the evaluate stage's latency measurement of
one baseline and one pruned checkpoint, repeated in fresh processes.

Each run is a new Python process (as each DVC stage is) that loads both checkpoints and calls
latency.compare_latency with the evaluate stage's defaults (interleaved passes, median). Prints
every run's speed-up per batch size, then their minimum, median and maximum.

    python benchmarks/latency_spread.py [--baseline models/baseline.pt]
        [--pruned models/finetuned/chip-r2.pt] [--runs 6] [--batch-sizes 1 256] [--repeats 50]
        [--warmup 5] [--device cpu]

Needs the checkpoints of a `make repro`. Imports only torch and prunelab.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from prunelab import checkpoint  # noqa: E402
from prunelab.latency import compare_latency  # noqa: E402


def one_run(args) -> dict[int, float]:
    """{batch: baseline median ms / pruned median ms} of one measurement in this process."""
    base, pruned = (checkpoint.load(p) for p in (args.baseline, args.pruned))
    if (base["in_channels"], base["num_classes"]) != (pruned["in_channels"], pruned["num_classes"]):
        raise SystemExit("error: --baseline and --pruned take different inputs or classes")
    shape = (base["in_channels"], args.image_size, args.image_size)
    times = compare_latency({"baseline": checkpoint.build(base), "pruned": checkpoint.build(pruned)}, shape,
                            tuple(args.batch_sizes), args.device, args.warmup, args.repeats)
    return {b: times["baseline"][b]["median_ms"] / times["pruned"][b]["median_ms"] for b in args.batch_sizes}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", default="models/baseline.pt")
    p.add_argument("--pruned", default="models/finetuned/chip-r2.pt")
    p.add_argument("--runs", type=int, default=6, help="fresh processes")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 256])
    p.add_argument("--image-size", type=int, default=8, help="input H = W (digits: 8)")
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child: one run, JSON out
    args = p.parse_args(argv)
    for path in (args.baseline, args.pruned):
        if not Path(path).is_file():
            p.error(f"no checkpoint at {path!r}: run `make repro` first, or pass --baseline/--pruned")
    if args.one:
        print(json.dumps(one_run(args)))
        return
    child = [sys.executable, __file__, "--one", *(argv if argv is not None else sys.argv[1:])]
    runs = []
    for i in range(args.runs):
        out = subprocess.run(child, capture_output=True, text=True, check=True).stdout
        runs.append({int(b): s for b, s in json.loads(out.splitlines()[-1]).items()})
        print(f"run {i + 1}: " + "  ".join(f"batch {b}: {s:.2f}x" for b, s in runs[-1].items()), flush=True)
    print(f"{args.pruned} against {args.baseline}, {args.runs} fresh processes, {args.device}:")
    for b in args.batch_sizes:
        s = [r[b] for r in runs]
        print(f"  batch {b}: speed-up min {min(s):.2f}x, median {statistics.median(s):.2f}x, max {max(s):.2f}x")


if __name__ == "__main__":
    main()
