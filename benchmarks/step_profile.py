"""Where a ResNet-56 training step's time goes on a GPU (batch 256, the fast path of
train_speed.py, no compile): the loader alone, a step on a fixed batch, a forward without
gradients, then torch.profiler over 10 steps: the top ops by host time and by GPU time, and the
kernels launched per step. The GPU time per step against the step's wall time says whether the
GPU or the host that launches its kernels is the limit.

    python benchmarks/step_profile.py        # CUDA only; benchmarks/gpu.sh runs it
"""
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from prunelab.data import Loader  # noqa: E402
from prunelab.engine import Accel, Recipe, make_optimizer, train_step  # noqa: E402
from prunelab.models import build_model  # noqa: E402

dev = torch.device("cuda")
accel = Accel.resolve(dev, "auto", "auto")
m = build_model("resnet56").to(dev, memory_format=torch.channels_last)
x = torch.randint(0, 256, (50000, 3, 32, 32), dtype=torch.uint8, device=dev)
y = torch.randint(0, 10, (50000,), device=dev)
mean, std = torch.tensor([0.49, 0.48, 0.45]), torch.tensor([0.25, 0.24, 0.26])
loader = Loader(x, y, mean, std, 256, dev, shuffle=True, augment={"shift": 4, "flip": True}, drop_last=True)
opt = make_optimizer(m, Recipe(epochs=1, lr=0.1))


def batches():
    while True:
        yield from loader


it = batches()
for _ in range(30):
    xb, yb = next(it)
    train_step(m, opt, xb, yb, 0.1, accel, dev)
torch.cuda.synchronize()


def timed(label, fn, n=100):
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    host = time.perf_counter() - t
    torch.cuda.synchronize()
    print(f"{label}: {1000 * (time.perf_counter() - t) / n:.2f} ms per call ({1000 * host / n:.2f} ms on the host before the sync)")


timed("loader: next batch", lambda: next(it))
xb, yb = next(it)
timed("train_step, fixed batch", lambda: train_step(m, opt, xb, yb, 0.1, accel, dev))
timed("forward only, no grad", lambda: torch.no_grad()(lambda: m(accel.batch(xb, dev)))())
with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as p:
    for _ in range(10):
        xb, yb = next(it)
        train_step(m, opt, xb, yb, 0.1, accel, dev)
    torch.cuda.synchronize()
ka = p.key_averages()
print(ka.table(sort_by="self_cpu_time_total", row_limit=20, max_name_column_width=50))
print(ka.table(sort_by="self_device_time_total", row_limit=15, max_name_column_width=50))
print("kernels launched per step:", sum(e.count for e in ka if e.device_type.name == "CUDA") / 10)
