import copy
import math

import pytest
import torch
from helpers import DEVICES

from prunelab.data import Loader, load_digits
from prunelab.engine import Recipe, evaluate, fit, lr_at


def test_lr_warms_up_linearly_then_follows_a_cosine():
    assert lr_at(0, 100, 10, 1.0) == pytest.approx(0.1)
    assert lr_at(9, 100, 10, 1.0) == pytest.approx(1.0)
    assert lr_at(10, 100, 10, 1.0) == pytest.approx(1.0)
    assert lr_at(55, 100, 10, 1.0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_at(99, 100, 10, 1.0) < 1e-3


def test_fit_learns_and_evaluate_counts_top1():
    torch.manual_seed(0)
    s = load_digits()
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    train = Loader(s.x_train, s.y_train, s.mean, s.std, 64, shuffle=True, seed=0)
    test = Loader(s.x_test, s.y_test, s.mean, s.std, 500)
    seen = []
    final = fit(model, train, test, Recipe(epochs=3, lr=0.1), torch.device("cpu"), lambda e, m: seen.append(e))
    assert seen == [0, 1, 2] and final["top1"] > 85
    logits = model(next(iter(test))[0])
    assert evaluate(model, test, torch.device("cpu"))["top1"] == pytest.approx(
        100 * (logits.argmax(1) == s.y_test).float().mean().item())


def test_non_positive_epochs_are_refused():
    with pytest.raises(ValueError, match="epochs"):
        fit(torch.nn.Linear(1, 1), [], [], Recipe(epochs=0, lr=0.1), torch.device("cpu"))


def small_cnn(in_channels: int = 1) -> torch.nn.Sequential:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(in_channels, 8, 3, padding=1, bias=False), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 10))


def digits_loaders(device: torch.device = torch.device("cpu")):
    """400 training images in batches of 50 (8 steps an epoch), the 360 test images, held on `device`."""
    s = load_digits()
    return (Loader(s.x_train[:400], s.y_train[:400], s.mean, s.std, 50, device, shuffle=True, augment=s.augment,
                   seed=0),
            Loader(s.x_test, s.y_test, s.mean, s.std, 500, device))


def reference_fit(model, train, test, recipe: Recipe) -> dict:
    """fit as it was before the speed options: float32, NCHW, one process, loss read every step."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": recipe.weight_decay},
                           {"params": no_decay, "weight_decay": 0.0}], lr=recipe.lr, momentum=recipe.momentum)
    total, warmup, step = recipe.epochs * len(train), int(recipe.warmup_epochs * len(train)), 0
    for epoch in range(recipe.epochs):
        model.train()
        train.set_epoch(epoch)
        loss_sum, n = 0.0, 0
        for x, y in train:
            lr = lr_at(step, total, warmup, recipe.lr)
            for g in opt.param_groups:
                g["lr"] = lr
            loss = torch.nn.functional.cross_entropy(model(x), y, label_smoothing=recipe.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum, n, step = loss_sum + loss.item() * y.numel(), n + y.numel(), step + 1
        model.eval()
        correct, test_loss, m = 0, 0.0, 0
        with torch.no_grad():
            for x, y in test:
                logits = model(x)
                test_loss += torch.nn.functional.cross_entropy(logits, y, reduction="sum").item()
                correct += (logits.argmax(1) == y).sum().item()
                m += y.numel()
    return {"train_loss": loss_sum / n, "top1": 100.0 * correct / m, "loss": test_loss / m, "lr": lr}


RECIPE = Recipe(epochs=2, lr=0.1, warmup_epochs=0.5, label_smoothing=0.1)


def test_default_cpu_fit_is_bit_identical_to_plain_float32_training():
    cpu = torch.device("cpu")
    want_model = small_cnn()
    want = reference_fit(want_model, *digits_loaders(), RECIPE)
    for options in ({}, {"amp": "off", "channels_last": False}, {"amp": "auto", "channels_last": "auto"}):
        model = small_cnn()
        got = fit(model, *digits_loaders(), RECIPE, cpu, **options)
        assert got == want, options
        for (k, a), b in zip(model.state_dict().items(), want_model.state_dict().values()):
            assert torch.equal(a, b), (options, k)


def test_channels_last_on_cpu_trains_to_the_same_losses():
    cpu = torch.device("cpu")
    plain, nhwc = small_cnn(), small_cnn()
    want = fit(plain, *digits_loaders(), RECIPE, cpu)
    got = fit(nhwc, *digits_loaders(), RECIPE, cpu, channels_last=True)
    assert abs(got["train_loss"] - want["train_loss"]) < 1e-5 and abs(got["loss"] - want["loss"]) < 1e-5
    for (k, a), b in zip(nhwc.state_dict().items(), plain.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-4), f"{k}: {(a - b).abs().max()}"
        assert a.is_contiguous(), f"{k}: fit hands the model back in the default memory format"
    test = digits_loaders()[1]
    assert evaluate(nhwc, test, cpu, channels_last=True) == pytest.approx(evaluate(nhwc, test, cpu), abs=1e-5)
    assert all(p.is_contiguous() for p in nhwc.parameters())


@pytest.mark.parametrize("device", DEVICES)
def test_automatic_speed_options_train_close_to_float32_on_the_cpu(device):
    # "auto" is float32 NCHW on the CPU and bf16 autocast + channels_last on CUDA, with the
    # data held and augmented on the device; the same batches, so the same curve up to rounding
    recipe = Recipe(epochs=8, lr=0.2, warmup_epochs=0.5, label_smoothing=0.1)  # float32 on the CPU: 50.8% top-1
    want = reference_fit(small_cnn(), *digits_loaders(), recipe)
    model = small_cnn()
    got = fit(model, *digits_loaders(device), recipe, device)
    # bf16 rounding makes 64 steps drift apart a little; a broken path (wrong normalisation,
    # crops, memory format) stays near chance (10%, loss 2.3)
    assert math.isfinite(got["train_loss"]) and abs(got["train_loss"] - want["train_loss"]) < 0.1, (got, want)
    assert abs(got["top1"] - want["top1"]) < 10 and got["top1"] > 35, (got, want)
    for name, p in model.state_dict().items():
        assert p.device.type == device.type and p.is_contiguous(), name
        assert p.dtype in (torch.float32, torch.int64), f"{name}: {p.dtype}"  # weights stay float32 under autocast
    on_cpu = evaluate(copy.deepcopy(model).cpu(), digits_loaders()[1], torch.device("cpu"))
    assert evaluate(model, digits_loaders(device)[1], device)["top1"] == pytest.approx(on_cpu["top1"], abs=3)


def test_bf16_autocast_on_cpu_runs_and_stays_close():
    cpu = torch.device("cpu")
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            small_cnn()(torch.zeros(2, 1, 8, 8))
    except RuntimeError as e:
        pytest.skip(f"no bf16 autocast on this CPU: {e}")
    fp32, bf16 = small_cnn(), small_cnn()
    want = fit(fp32, *digits_loaders(), RECIPE, cpu)
    got = fit(bf16, *digits_loaders(), RECIPE, cpu, amp="bf16")
    assert math.isfinite(got["train_loss"]) and abs(got["train_loss"] - want["train_loss"]) < 0.05
    assert abs(got["top1"] - want["top1"]) < 5
    test = digits_loaders()[1]
    ev32, ev16 = evaluate(fp32, test, cpu), evaluate(fp32, test, cpu, amp="bf16")
    assert abs(ev16["loss"] - ev32["loss"]) < 0.02 and abs(ev16["top1"] - ev32["top1"]) < 2


def test_compiled_fit_saves_and_resumes_the_modules_own_state_dict(monkeypatch):
    compiled = []

    def eager_compile(model, **kwargs):  # dynamo's wrapper without a C++ build: fast and portable
        compiled.append(model)
        return real_compile(model, backend="eager", **kwargs)

    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", eager_compile)
    cpu, model, saved = torch.device("cpu"), small_cnn(), []
    final = fit(model, *digits_loaders(), RECIPE, cpu, save_state=lambda s: saved.append(copy.deepcopy(s)),
                compile=True)
    assert len(compiled) == 1 and compiled[0] is model
    assert [list(s["model"]) for s in saved] == [list(small_cnn().state_dict())] * 2  # no "_orig_mod." prefix
    again = small_cnn()
    resumed = fit(again, *digits_loaders(), RECIPE, cpu, state=saved[0], compile=True)
    assert resumed == final
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values()))


def test_bad_speed_options_are_refused(monkeypatch):
    cpu, args = torch.device("cpu"), (torch.nn.Linear(1, 1), [], [], Recipe(epochs=1, lr=0.1))
    with pytest.raises(ValueError, match="amp: unknown mode 'fp8'; allowed: auto, bf16, off"):
        fit(*args, cpu, amp="fp8")
    with pytest.raises(ValueError, match="channels_last: expected 'auto', true or false, got 'yes'"):
        evaluate(torch.nn.Linear(1, 1), [], cpu, channels_last="yes")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match=r"call prunelab.distributed.init\(device\)"):
        fit(*args, cpu)


def test_train_speed_benchmark_runs_both_paths():
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two cores shared with the worker and other tests
    r = subprocess.run([sys.executable, str(root / "benchmarks" / "train_speed.py"), "--device", "cpu",
                        "--arch", "resnet20", "--batch-size", "8", "--images", "32", "--steps", "2",
                        "--warmup", "1", "--workers", "1"], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 2 and summary["batch_size"] == 8
    for path in ("fast", "plain"):
        assert summary[path]["images_per_s"] > 0 and summary[path]["epoch_s"] > 0
    assert "s/50k-epoch" in r.stdout
