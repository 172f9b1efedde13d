"""Inference latency of a model: the median and spread of repeated forward passes per batch size."""

from __future__ import annotations

import math
import time

import torch
from torch import nn

from prunelab.engine import Accel


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


def _stats(times_ms: list[float]) -> dict[str, float]:
    t = sorted(times_ms)
    q = {p: _quantile(t, p / 100) for p in (10, 25, 50, 75, 90)}
    return {"median_ms": q[50], "p10_ms": q[10], "p25_ms": q[25], "p75_ms": q[75], "p90_ms": q[90],
            "iqr_ms": q[75] - q[25]}


def compare_latency(models: dict[str, nn.Module], input_shape: tuple[int, ...],
                    batch_sizes: tuple[int, ...] = (1, 256), device: torch.device | str = "cpu", warmup: int = 10,
                    repeats: int = 50, seed: int = 0, *, amp: str = "off",
                    channels_last: str | bool = False) -> dict[str, dict[int, dict[str, float]]]:
    """Milliseconds per forward pass of each model, per batch size: {name: {batch: {median_ms,
    p10_ms, p25_ms, p75_ms, p90_ms, iqr_ms}}}.

    The models' timed passes are interleaved (a, b, then b, a, ...), so a slow spell of a shared
    machine falls on all of them alike. (Timed one after the other in two pipeline runs on our
    2-core CPU, the four rate-based r1 networks, all of one shape, measured 0.75x to 1.20x
    against their baseline at batch 1; interleaved, 1.12x to 1.16x.)

    input_shape: one image, (C, H, W). Each model is moved to `device` and run in eval mode
    under inference_mode on the same fixed random input (seeded); `warmup` untimed passes each
    (allocator, cuDNN algorithm choice, caches), then `repeats` timed ones each, every one
    bracketed by torch.cuda.synchronize on CUDA (kernels run asynchronously). Thread settings
    are left as the caller configured them. The models' train/eval modes are restored.
    amp, channels_last: as in engine.evaluate ("auto": bf16 autocast and NHWC on CUDA only),
    so a GPU is timed the way it trains and evaluates; the defaults time float32 NCHW. With
    channels_last the models are handed back in the default memory format.
    """
    _check(input_shape, batch_sizes, warmup, repeats)
    if not models:
        raise ValueError("models: expected at least one {name: model}")
    device = torch.device(device)
    accel = Accel.resolve(device, amp, channels_last)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    was_training = {name: m.training for name, m in models.items()}
    for m in models.values():
        m.to(device).eval()
        if accel.channels_last:
            m.to(memory_format=torch.channels_last)
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, dict[int, dict[str, float]]] = {name: {} for name in models}
    try:
        with torch.inference_mode(), accel.autocast(device):
            for b in batch_sizes:
                x = accel.batch(torch.randn((b, *input_shape), generator=gen), device)  # (B, C, H, W)
                for m in models.values():
                    for _ in range(warmup):
                        m(x)
                times: dict[str, list[float]] = {name: [] for name in models}
                order = list(models)
                for r in range(repeats):
                    for name in order if r % 2 == 0 else order[::-1]:
                        sync()
                        start = time.perf_counter()
                        models[name](x)
                        sync()
                        times[name].append((time.perf_counter() - start) * 1e3)
                for name in models:
                    out[name][b] = _stats(times[name])
    finally:
        for name, m in models.items():
            m.train(was_training[name])
            if accel.channels_last:
                m.to(memory_format=torch.contiguous_format)
    return out


def measure_latency(model: nn.Module, input_shape: tuple[int, ...], batch_sizes: tuple[int, ...] = (1, 256),
                    device: torch.device | str = "cpu", warmup: int = 10, repeats: int = 50, seed: int = 0, *,
                    amp: str = "off", channels_last: str | bool = False) -> dict[int, dict[str, float]]:
    """One model's milliseconds per forward pass, per batch size: compare_latency of it alone."""
    return compare_latency({"model": model}, input_shape, batch_sizes, device, warmup, repeats, seed, amp=amp,
                           channels_last=channels_last)["model"]
