"""Training and evaluation loops: SGD, linear warm-up then cosine (per iteration), progress bars."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    if name not in DEVICES:
        raise ValueError(f"device: unknown device {name!r}; allowed: {', '.join(DEVICES)}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' requested but no CUDA device is available; use auto or cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Recipe:
    epochs: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    nesterov: bool = False


def lr_at(step: int, total_steps: int, warmup_steps: int, base_lr: float) -> float:
    """Linear warm-up from ~0 to base_lr over warmup_steps, then cosine decay to 0."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * base_lr * (1 + math.cos(math.pi * progress))


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, device: torch.device) -> dict:
    """Top-1 (percent) and mean cross-entropy over the whole loader, model in eval mode."""
    model.eval()
    correct, loss_sum, n = 0, 0.0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        logits = model(x)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        n += y.numel()
    return {"top1": 100.0 * correct / n, "loss": loss_sum / n}


def fit(model: nn.Module, train_loader, test_loader, recipe: Recipe, device: torch.device,
        on_epoch_end: Callable[[int, dict], None] | None = None, desc: str = "train",
        state: dict | None = None, save_state: Callable[[dict], None] | None = None) -> dict:
    """Train for recipe.epochs; returns the final epoch's test metrics.

    on_epoch_end(epoch, metrics) receives {train_loss, top1, loss, lr} after every epoch.
    save_state(state), when given, receives {epoch, step, model, optimizer, metrics} after every
    epoch; passing such a state back in resumes after its epoch. Batches depend only on (seed,
    epoch), so on the CPU a resumed run ends with the same weights as an uninterrupted one.
    """
    if recipe.epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {recipe.epochs}")
    model.to(device)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]  # BN and biases: no weight decay
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.nesterov,
    )
    steps_per_epoch = len(train_loader)
    total, warmup = recipe.epochs * steps_per_epoch, int(recipe.warmup_epochs * steps_per_epoch)
    step, metrics, start = 0, {}, 0
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, metrics, start = state["step"], state["metrics"], state["epoch"] + 1
    bar = tqdm(range(start, recipe.epochs), desc=desc, unit="epoch", dynamic_ncols=True,
               initial=start, total=recipe.epochs)
    for epoch in bar:
        model.train()
        if hasattr(train_loader, "set_epoch"):
            train_loader.set_epoch(epoch)
        loss_sum, n = 0.0, 0
        for x, y in train_loader:
            x, y = x.to(device), y.to(device)
            lr = lr_at(step, total, warmup, recipe.lr)
            for g in opt.param_groups:
                g["lr"] = lr
            loss = F.cross_entropy(model(x), y, label_smoothing=recipe.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * y.numel()
            n += y.numel()
            step += 1
        metrics = {"train_loss": loss_sum / n, **evaluate(model, test_loader, device), "lr": lr}
        bar.set_postfix(loss=f"{metrics['train_loss']:.3f}", top1=f"{metrics['top1']:.2f}")
        if on_epoch_end:
            on_epoch_end(epoch, metrics)
        if save_state:
            save_state({"epoch": epoch, "step": step, "model": model.state_dict(), "optimizer": opt.state_dict(),
                        "metrics": metrics})
    return metrics
