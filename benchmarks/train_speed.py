"""Training throughput of ResNet-56 (--arch) at 32x32: prunelab's fast path against a plain one.

Data: synthetic CIFAR-sized uint8 images (random, default 50,000 x 3 x 32 x 32, 10 classes).

  fast   the images held on the device (data.Loader): batches cut, randomly cropped (pad 4)
         and flipped there; bf16 autocast and channels_last per --amp/--channels-last
         ("auto": on for CUDA, off on the CPU, as in engine.fit); torch.compile with --compile
  plain  the usual torchvision-style path: a CPU uint8 TensorDataset -> torch DataLoader with
         worker processes -> .to(device) every batch, float32, NCHW (no augmentation, so it
         is if anything faster than a real pipeline of that style)

Both run engine.train_step (SGD, momentum 0.9, weight decay 5e-4). Warm-up steps (compilation,
the allocator's first blocks, the workers' start) are not timed; timers are read after
torch.cuda.synchronize. Prints a table, then the same figures as one JSON line.

    python benchmarks/train_speed.py [--device auto|cpu|cuda] [--arch resnet56] [--batch-size 256]
        [--epochs 1 | --steps N] [--warmup 20] [--compile [--compile-mode reduce-overhead]] [--amp auto|bf16|off]
        [--channels-last auto|true|false] [--workers 8] [--images 50000]

Imports only torch, numpy and prunelab (engine, data, models): runs on the GPU machine as it is.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from prunelab.data import Loader  # noqa: E402
from prunelab.engine import Accel, Recipe, make_optimizer, resolve_device, train_step  # noqa: E402
from prunelab.models import ARCHS, build_model  # noqa: E402

EPOCH_IMAGES = 50_000
MEAN, STD = torch.tensor([0.4914, 0.4822, 0.4465]), torch.tensor([0.2470, 0.2435, 0.2616])  # CIFAR-10's


def batches(loader):
    """Endless batches, a new epoch (new shuffle) whenever one ends."""
    epoch = 0
    while True:
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        yield from loader
        epoch += 1


def timed_training(model, data, accel: Accel, device: torch.device, warmup: int, steps: int, batch_size: int) -> dict:
    """Images per second over `steps` steps after `warmup` untimed ones."""
    opt = make_optimizer(model, Recipe(epochs=1, lr=0.1))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    model.train()
    for _ in range(warmup):
        x, y = next(data)
        train_step(model, opt, x, y, 0.1, accel, device)
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        x, y = next(data)
        train_step(model, opt, x, y, 0.1, accel, device)
    sync()
    seconds = time.perf_counter() - start
    rate = steps * batch_size / seconds
    return {"images_per_s": rate, "epoch_s": EPOCH_IMAGES / rate, "timed_s": seconds}


def fast_path(x, y, args, device: torch.device) -> dict:
    accel = Accel.resolve(device, args.amp, args.channels_last)
    model = build_model(args.arch).to(device, memory_format=torch.channels_last if accel.channels_last
                                       else torch.contiguous_format)
    net = torch.compile(model, mode=args.compile_mode) if args.compile else model
    loader = Loader(x, y, MEAN, STD, args.batch_size, device, shuffle=True, augment={"shift": 4, "flip": True},
                    drop_last=True)  # full batches only: one compiled shape
    result = timed_training(net, batches(loader), accel, device, args.warmup, args.steps, args.batch_size)
    return {**result, "amp": "bf16" if accel.amp_dtype == torch.bfloat16 else "off",
            "channels_last": accel.channels_last, "compile": args.compile and args.compile_mode}


def plain_path(x, y, args, device: torch.device) -> dict:
    dataset = torch.utils.data.TensorDataset(x.cpu(), y.cpu())
    loader = torch.utils.data.DataLoader(dataset, args.batch_size, shuffle=True, num_workers=args.workers,
                                         pin_memory=device.type == "cuda", drop_last=True,
                                         persistent_workers=args.workers > 0)
    mean, std = MEAN.to(device)[None, :, None, None], STD.to(device)[None, :, None, None]

    def normalised():
        for xb, yb in batches(loader):
            yield (xb.to(device).float().div_(255) - mean) / std, yb.to(device)  # (B, 3, 32, 32)

    model = build_model(args.arch).to(device)
    result = timed_training(model, normalised(), Accel(), device, args.warmup, args.steps, args.batch_size)
    return {**result, "amp": "off", "channels_last": False, "compile": False, "workers": args.workers}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--arch", default="resnet56", choices=[a for a in ARCHS if a != "resnet50"], help="a 32x32 model")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--epochs", type=float, default=1.0, help="timed epochs of --images (ignored with --steps)")
    p.add_argument("--steps", type=int, help="timed steps per path")
    p.add_argument("--warmup", type=int, default=20, help="untimed steps per path")
    p.add_argument("--compile", action="store_true", help="torch.compile the fast path")
    p.add_argument("--compile-mode", default="default", choices=("default", "reduce-overhead", "max-autotune"),
                   help="torch.compile's mode: reduce-overhead replays the step's kernels as CUDA graphs")
    p.add_argument("--amp", default="auto", choices=("auto", "bf16", "off"))
    p.add_argument("--channels-last", default="auto", choices=("auto", "true", "false"))
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                   help="DataLoader workers of the plain path")
    p.add_argument("--images", type=int, default=EPOCH_IMAGES, help="synthetic training images")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    args.channels_last = {"auto": "auto", "true": True, "false": False}[args.channels_last]
    device = resolve_device(args.device)
    if args.images < args.batch_size:
        p.error(f"--images ({args.images}) must be at least --batch-size ({args.batch_size})")
    if args.steps is None:
        args.steps = max(1, round(args.epochs * (args.images // args.batch_size)))

    torch.manual_seed(args.seed)
    gen = torch.Generator(device=device).manual_seed(args.seed)
    x = torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8, device=device, generator=gen)
    y = torch.randint(0, 10, (args.images,), device=device, generator=gen)
    results = {"fast": fast_path(x, y, args, device), "plain": plain_path(x, y, args, device)}

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"{args.arch}, 32x32, batch {args.batch_size}, {args.steps} timed steps after {args.warmup} warm-up, "
          f"torch {torch.__version__}, {name}")
    print(f"{'path':<6} {'amp':>5} {'NHWC':>5} {'compile':>7} {'images/s':>10} {'s/50k-epoch':>12}")
    for path, r in results.items():
        print(f"{path:<6} {r['amp']:>5} {str(r['channels_last']):>5} {str(r['compile']):>7} "
              f"{r['images_per_s']:>10.0f} {r['epoch_s']:>12.2f}")
    speedup = results["fast"]["images_per_s"] / results["plain"]["images_per_s"]
    print(f"fast / plain: {speedup:.2f}x")
    summary = {"arch": args.arch, "device": name, "torch": torch.__version__, "batch_size": args.batch_size,
               "steps": args.steps, "warmup": args.warmup, **results, "speedup": speedup}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
