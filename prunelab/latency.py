"""Inference latency of a model: the median and spread of repeated forward passes per batch size."""

from __future__ import annotations

import math
import time

import torch
from torch import nn


def _check(input_shape, batch_sizes, warmup: int, repeats: int) -> None:
    if not (isinstance(input_shape, (tuple, list)) and input_shape
            and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in input_shape)):
        raise ValueError(f"input_shape: expected one image's shape as positive ints, e.g. (3, 32, 32), "
                         f"got {input_shape!r}")
    if not (isinstance(batch_sizes, (tuple, list)) and batch_sizes
            and all(isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in batch_sizes)):
        raise ValueError(f"batch_sizes: expected a non-empty list of positive ints, got {batch_sizes!r}")
    if not (isinstance(warmup, int) and warmup >= 0):
        raise ValueError(f"warmup: expected an int >= 0 (untimed runs), got {warmup!r}")
    if not (isinstance(repeats, int) and repeats >= 1):
        raise ValueError(f"repeats: expected an int >= 1 (timed runs), got {repeats!r}")


def _quantile(sorted_ms: list[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default method)."""
    pos = q * (len(sorted_ms) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_ms[lo] + (sorted_ms[hi] - sorted_ms[lo]) * (pos - lo)


def measure_latency(model: nn.Module, input_shape: tuple[int, ...], batch_sizes: tuple[int, ...] = (1, 256),
                    device: torch.device | str = "cpu", warmup: int = 10, repeats: int = 50,
                    seed: int = 0) -> dict[int, dict[str, float]]:
    """Milliseconds per forward pass, per batch size: {batch: {median_ms, p10_ms, p25_ms,
    p75_ms, p90_ms, iqr_ms}}.

    input_shape: one image, (C, H, W). The model is moved to `device` and run in eval mode
    under inference_mode on a fixed random input (seeded); `warmup` untimed passes (allocator,
    cuDNN algorithm choice, caches), then `repeats` timed ones, each bracketed by
    torch.cuda.synchronize on CUDA (kernels run asynchronously). Thread settings are left as
    the caller configured them. The model's train/eval mode is restored afterwards.
    """
    _check(input_shape, batch_sizes, warmup, repeats)
    device = torch.device(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    was_training = model.training
    model.to(device).eval()
    gen = torch.Generator().manual_seed(seed)
    out = {}
    try:
        with torch.inference_mode():
            for b in batch_sizes:
                x = torch.randn((b, *input_shape), generator=gen).to(device)  # (B, C, H, W)
                for _ in range(warmup):
                    model(x)
                times = []
                for _ in range(repeats):
                    sync()
                    start = time.perf_counter()
                    model(x)
                    sync()
                    times.append((time.perf_counter() - start) * 1e3)
                times.sort()
                q = {p: _quantile(times, p / 100) for p in (10, 25, 50, 75, 90)}
                out[b] = {"median_ms": q[50], "p10_ms": q[10], "p25_ms": q[25], "p75_ms": q[75],
                          "p90_ms": q[90], "iqr_ms": q[75] - q[25]}
    finally:
        model.train(was_training)
    return out
