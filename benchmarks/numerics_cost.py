"""What the portable CPU numerics cost: training throughput under engine.cpu_numerics portable
against native, on this machine, in one run; and which of its settings the difference comes from.

Each setting trains the default pipeline's network (ResNet-56 on digits, 8x8, batch 64: what
train_baseline and finetune run) in a fresh process, since each library reads its variable when
it loads. The processes alternate (native, portable, native, portable, ...) so that a slow spell
of the machine falls on both; each reports images per second over --steps SGD steps after
--warmup untimed ones, and the median over --rounds is taken.

  native    every library's fastest path, --threads threads (default: as portable, 2)
  portable  prunelab.numerics.PORTABLE_ENV: ATen and oneDNN capped at AVX2, MKL_CBWR=COMPATIBLE,
            numpy's SIMD targets above AVX2 off, OpenBLAS as Haswell, 2 threads
  aten, onednn, mkl   native plus that one cap (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA,
            MKL_CBWR): where the cost goes

    python benchmarks/numerics_cost.py [--rounds 3] [--steps 60] [--warmup 10] [--parts] [--out FILE]

Prints a table, then one JSON line (also written to --out: the README's figures come from
results/numerics_cost.json, written so).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from prunelab import numerics  # noqa: E402  (imports neither torch nor numpy)

PARTS = {"aten": ("ATEN_CPU_CAPABILITY",), "onednn": ("ONEDNN_MAX_CPU_ISA",), "mkl": ("MKL_CBWR",)}

CHILD = """
import json, sys, time
sys.path.insert(0, {root!r})
import torch
from prunelab import data, models
from prunelab.engine import Accel, Recipe, make_optimizer, seed_everything, train_step
torch.set_num_threads({threads})
seed_everything(0)
splits = data.load_dataset("digits", "data", False, 0, 8, 0.2)
model = models.build_model("resnet56", None, splits.in_channels, splits.num_classes)
opt = make_optimizer(model, Recipe(epochs=1, lr=0.1))
loader, cpu, accel = splits.train_loader(64, 0, torch.device("cpu")), torch.device("cpu"), Accel()

def batches():
    epoch = 0
    while True:
        loader.set_epoch(epoch)
        yield from loader
        epoch += 1

it = batches()
model.train()
for _ in range({warmup}):
    train_step(model, opt, *next(it), 0.1, accel, cpu)
images, start = 0, time.perf_counter()
for _ in range({steps}):
    x, y = next(it)
    train_step(model, opt, x, y, 0.1, accel, cpu)
    images += len(y)
print(json.dumps({{"images_per_s": images / (time.perf_counter() - start),
                   "capability": torch.backends.cpu.get_cpu_capability()}}))
"""


def environment(setting: str, threads: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in numerics.PORTABLE_ENV}
    thread_vars = {k: str(threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    if setting == "portable":
        return {**env, **numerics.PORTABLE_ENV}
    return {**env, **thread_vars, **{k: numerics.PORTABLE_ENV[k] for k in PARTS.get(setting, ())}}


def measure(setting: str, args: argparse.Namespace) -> dict:
    threads = numerics.THREADS if setting == "portable" else args.threads
    code = CHILD.format(root=str(ROOT), threads=threads, warmup=args.warmup, steps=args.steps)
    out = subprocess.run([sys.executable, "-c", code], env=environment(setting, args.threads), cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=numerics.THREADS, help="native's threads")
    parser.add_argument("--parts", action="store_true", help="also each cap alone (aten, onednn, mkl)")
    parser.add_argument("--out", type=Path, help="also write the JSON line here")
    args = parser.parse_args()
    settings = ["native", "portable"] + (list(PARTS) if args.parts else [])
    runs: dict[str, list[dict]] = {s: [] for s in settings}
    for _ in range(args.rounds):  # interleaved: a slow spell of the machine falls on every setting
        for s in settings:
            runs[s].append(measure(s, args))
    median = {s: statistics.median(r["images_per_s"] for r in runs[s]) for s in settings}
    vendor, model = numerics.cpu_name()
    print(f"{model} ({vendor}), ResNet-56 on digits 8x8, batch 64; median of {args.rounds} rounds of {args.steps} steps")
    print(f"{'setting':<10} {'capability':<11} {'images/s':>9} {'vs native':>9}")
    for s in settings:
        print(f"{s:<10} {runs[s][0]['capability']:<11} {median[s]:>9.0f} {median[s] / median['native']:>9.3f}")
    line = json.dumps({"cpu": model, "vendor": vendor, "rounds": args.rounds, "steps": args.steps,
                       "threads": args.threads, "images_per_s": median,
                       "portable_over_native": median["portable"] / median["native"]}, sort_keys=True)
    print(line)
    if args.out:
        args.out.write_text(line + "\n")


if __name__ == "__main__":
    main()
