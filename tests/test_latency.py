"""Latency measurement: what is timed and how it is summarised. No test here reads the clock's
verdict: how latency scales with batch size and width is benchmarks/latency_scaling.py's to print."""

import numpy as np
import pytest
import torch
from helpers import DEVICES
from torch import nn

from prunelab import latency
from prunelab.latency import compare_latency, measure_latency


def conv_net(width: int) -> nn.Sequential:
    """Two 3x3 convolutions and a linear classifier."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10))


def scripted_clock(durations_ms):
    """A stand-in for time.perf_counter whose k-th (start, stop) pair is durations_ms[k] apart."""
    ticks = []
    t = 100.0
    for d in durations_ms:
        ticks += [t, t + d / 1e3]
        t += d / 1e3 + 1.0
    return iter(ticks).__next__


def numpy_stats(times_ms):
    p10, p25, p50, p75, p90 = np.percentile(times_ms, [10, 25, 50, 75, 90])  # linear interpolation
    return {"median_ms": p50, "p10_ms": p10, "p25_ms": p25, "p75_ms": p75, "p90_ms": p90, "iqr_ms": p75 - p25}


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 10, 50])
def test_statistics_are_numpys_percentiles_of_the_timed_passes(monkeypatch, n):
    """With a scripted clock, every reported figure of each model at each batch size is
    np.percentile of exactly that model's timed passes."""
    rng = np.random.default_rng(n)
    durations = rng.exponential(5.0, size=2 * 2 * n).tolist()  # 2 batch sizes x 2 models x n passes
    monkeypatch.setattr(latency.time, "perf_counter", scripted_clock(durations))
    calls = []

    class Probe(nn.Module):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def forward(self, x):
            calls.append((self.name, len(x)))
            return x

    got = compare_latency({"a": Probe("a"), "b": Probe("b")}, (2, 4, 4), batch_sizes=(1, 3), warmup=0, repeats=n)
    assert len(calls) == len(durations)
    for name in ("a", "b"):
        for b in (1, 3):
            mine = [d for d, call in zip(durations, calls) if call == (name, b)]
            assert len(mine) == n
            assert got[name][b] == pytest.approx(numpy_stats(mine), rel=1e-9, abs=1e-9), (name, b)


@pytest.mark.parametrize("device", DEVICES)
def test_measuring_on_a_device_restores_the_model_s_mode(device):
    model = conv_net(8).train()
    got = measure_latency(model, (3, 8, 8), batch_sizes=(1, 4), device=device, warmup=1, repeats=3)
    assert list(got) == [1, 4]
    assert all(set(s) == {"median_ms", "p10_ms", "p25_ms", "p75_ms", "p90_ms", "iqr_ms"} for s in got.values())
    assert model.training and next(model.parameters()).device.type == device.type


def test_inference_runs_without_autograd_in_eval_mode():
    seen = []

    class Probe(nn.Module):
        def forward(self, x):
            seen.append((self.training, torch.is_grad_enabled(), torch.is_inference_mode_enabled(), tuple(x.shape)))
            return x

    measure_latency(Probe(), (2, 4, 4), batch_sizes=(3,), warmup=1, repeats=2)
    assert seen == [(False, False, True, (3, 2, 4, 4))] * 3  # 1 warm-up + 2 timed


def test_models_compared_are_timed_interleaved_on_the_same_input():
    calls = []

    class Probe(nn.Module):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def forward(self, x):
            calls.append((self.name, x.sum().item()))
            return x

    got = compare_latency({"a": Probe("a"), "b": Probe("b")}, (2, 4, 4), batch_sizes=(3,), warmup=1, repeats=3)
    # warm-up each, then alternating order: a slow spell of the machine hits both alike
    assert [name for name, _ in calls] == ["a", "b", "a", "b", "b", "a", "a", "b"]
    assert len({total for _, total in calls}) == 1  # one input for all
    assert set(got) == {"a", "b"} and set(got["a"]) == {3} and got["a"][3]["median_ms"] > 0
    with pytest.raises(ValueError, match="models: expected at least one"):
        compare_latency({}, (2, 4, 4))


@pytest.mark.parametrize("device", DEVICES)
def test_speed_options_time_a_bf16_nhwc_forward_and_hand_the_model_back(device):
    seen = []

    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)

        def forward(self, x):
            out = self.conv(x)
            seen.append((x.is_contiguous(memory_format=torch.channels_last), self.conv.weight.is_contiguous(),
                         out.dtype))
            return out

    probe = Probe()
    measure_latency(probe, (3, 8, 8), batch_sizes=(4,), device=device, warmup=0, repeats=2, amp="bf16",
                    channels_last=True)
    assert seen == [(True, False, torch.bfloat16)] * 2
    assert probe.conv.weight.is_contiguous() and probe.conv.weight.dtype == torch.float32
    seen.clear()
    measure_latency(probe, (3, 8, 8), batch_sizes=(4,), device=device, warmup=0, repeats=1, amp="auto",
                    channels_last="auto")  # auto: off on the CPU, on for CUDA
    cuda = device.type == "cuda"
    assert seen == [(cuda, not cuda, torch.bfloat16 if cuda else torch.float32)]
    with pytest.raises(ValueError, match="amp: unknown mode 'fp8'"):
        measure_latency(probe, (3, 8, 8), device=device, amp="fp8")


@pytest.mark.parametrize("kwargs, message", [
    ({"input_shape": (3, 0, 32)}, "input_shape: expected one image's shape as positive ints"),
    ({"input_shape": 32}, "input_shape"),
    ({"batch_sizes": ()}, "batch_sizes: expected a non-empty list of positive ints"),
    ({"batch_sizes": (1, -4)}, "batch_sizes"),
    ({"warmup": -1}, r"warmup: expected an int >= 0"),
    ({"repeats": 0}, r"repeats: expected an int >= 1"),
])
def test_bad_arguments_are_refused_with_the_argument_named(kwargs, message):
    args = {"input_shape": (3, 8, 8), **kwargs}
    with pytest.raises(ValueError, match=message):
        measure_latency(nn.Identity(), **args)


def test_latency_spread_benchmark_repeats_the_measurement_in_fresh_processes(tmp_path):
    import os
    import re
    import subprocess
    import sys
    from pathlib import Path

    from prunelab import checkpoint, models

    ckpt = tmp_path / "net.pt"
    checkpoint.save(ckpt, models.build_model("resnet20", in_channels=1), "resnet20", models.default_widths("resnet20"),
                    1, 10)
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "latency_spread.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, str(script), "--baseline", str(ckpt), "--pruned", str(ckpt), "--runs", "2",
                        "--batch-sizes", "1", "2", "--repeats", "3", "--warmup", "1"],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    assert len(re.findall(r"^run \d: batch 1: [\d.]+x  batch 2: [\d.]+x$", r.stdout, re.M)) == 2, r.stdout
    assert re.search(r"batch 2: speed-up min [\d.]+x, median [\d.]+x, max [\d.]+x", r.stdout), r.stdout
    r = subprocess.run([sys.executable, str(script), "--baseline", str(ckpt), "--pruned",
                        str(tmp_path / "missing.pt")], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 2 and "no checkpoint at" in r.stderr and "missing.pt" in r.stderr
