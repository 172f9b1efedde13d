"""Training and evaluation loops: SGD, linear warm-up then cosine (per iteration), progress bars.

Speed options (keyword arguments of fit and evaluate): bf16 autocast and channels_last on CUDA
by default (off on the CPU, where results stay bit-identical to plain float32 NCHW),
torch.compile on request. Under torchrun (after prunelab.distributed.init) fit trains a
DistributedDataParallel model, each rank on its slice of every global batch.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from prunelab import distributed

DEVICES = ("auto", "cpu", "cuda")
AMP_MODES = ("auto", "bf16", "off")


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


@dataclass(frozen=True)
class Accel:
    """Resolved speed options: the autocast dtype (None: float32) and the memory format of the
    weights and batches (channels_last = NHWC, what cuDNN's fastest bf16 convolutions read)."""

    amp_dtype: torch.dtype | None = None
    channels_last: bool = False

    @classmethod
    def resolve(cls, device: torch.device, amp: str = "auto", channels_last: str | bool = "auto") -> Accel:
        """amp: "auto" (bf16 on CUDA, off on the CPU) | "bf16" | "off";
        channels_last: "auto" (on for CUDA, off on the CPU) | True | False."""
        if amp not in AMP_MODES:
            raise ValueError(f"amp: unknown mode {amp!r}; allowed: {', '.join(AMP_MODES)}")
        if not (isinstance(channels_last, bool) or channels_last == "auto"):
            raise ValueError(f"channels_last: expected 'auto', true or false, got {channels_last!r}")
        cuda = device.type == "cuda"
        dtype = torch.bfloat16 if amp == "bf16" or (amp == "auto" and cuda) else None
        return cls(dtype, cuda if channels_last == "auto" else channels_last)

    def autocast(self, device: torch.device):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.amp_dtype)

    def batch(self, x: torch.Tensor, device: torch.device) -> torch.Tensor:
        """x (B, C, H, W) on `device`, NHWC in memory when channels_last (same shape)."""
        x = x.to(device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


def _full_precision(logits: torch.Tensor) -> torch.Tensor:
    """bf16/fp16 logits (autocast) as float32, for a loss that does not round; others as they are."""
    return logits.float() if logits.dtype in (torch.bfloat16, torch.float16) else logits


def make_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.SGD:
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]  # BN and biases: no weight decay
    return torch.optim.SGD(
        [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.nesterov,
    )


def train_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, lr: float,
               accel: Accel, device: torch.device, label_smoothing: float = 0.0) -> torch.Tensor:
    """One SGD step at learning rate `lr`; returns the batch's summed loss, a float64 scalar left
    on the device (reading it would wait for the GPU).

    Under DDP (x, y) is this rank's slice of a global batch and `model` the DDP wrapper, which
    averages gradients over ranks: each rank's loss is its sum over its images times
    world / global batch size, so the update equals one process's mean over the global batch.
    """
    x, y = accel.batch(x, device), y.to(device, non_blocking=True)
    for g in opt.param_groups:
        g["lr"] = lr
    with accel.autocast(device):
        logits = _full_precision(model(x))  # (B, classes)
    world = distributed.world_size()
    if world > 1:
        summed = F.cross_entropy(logits, y, reduction="sum", label_smoothing=label_smoothing)
        images = distributed.all_reduce_sum(torch.full((), y.numel(), dtype=torch.float64, device=device))
        loss, batch_sum = summed * (world / images).to(summed.dtype), summed.detach().double()
    else:
        loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
        batch_sum = loss.detach().double() * y.numel()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return batch_sum


@torch.no_grad()
def _evaluate(model: nn.Module, loader: Iterable, device: torch.device, accel: Accel) -> dict:
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    n = 0
    for x, y in distributed.shard_loader(loader, drop_small=False):
        if len(y) == 0:  # a rank past the size of a small last batch
            continue
        x, y = accel.batch(x, device), y.to(device, non_blocking=True)
        with accel.autocast(device):
            logits = _full_precision(model(x))  # (B, classes)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
        correct += (logits.argmax(1) == y).sum()
        n += y.numel()
    # every rank ends with the same global totals: (correct, summed loss, images)
    totals = distributed.all_reduce_sum(torch.stack([correct.double(), loss_sum,
                                                     torch.tensor(float(n), dtype=torch.float64, device=device)]))
    correct, loss_sum, n = totals.tolist()
    return {"top1": 100.0 * correct / n, "loss": loss_sum / n}


def evaluate(model: nn.Module, loader: Iterable, device: torch.device, *, amp: str = "auto",
             channels_last: str | bool = "auto") -> dict:
    """Top-1 (percent) and mean cross-entropy over the whole loader, model in eval mode.

    amp, channels_last: as in fit. Under torchrun this is collective (call it on every rank):
    each rank evaluates its slice of every batch, and all get the totals over all ranks.
    """
    accel = Accel.resolve(device, amp, channels_last)
    if not accel.channels_last:
        return _evaluate(model, loader, device, accel)
    model.to(memory_format=torch.channels_last)
    try:
        return _evaluate(model, loader, device, accel)
    finally:
        model.to(memory_format=torch.contiguous_format)


def fit(model: nn.Module, train_loader, test_loader, recipe: Recipe, device: torch.device,
        on_epoch_end: Callable[[int, dict], None] | None = None, desc: str = "train",
        state: dict | None = None, save_state: Callable[[dict], None] | None = None, *,
        amp: str = "auto", channels_last: str | bool = "auto", compile: bool = False,
        sync_bn: bool = False) -> dict:
    """Train for recipe.epochs; returns the final epoch's test metrics.

    on_epoch_end(epoch, metrics) receives {train_loss, top1, loss, lr} after every epoch.
    save_state(state), when given, receives {epoch, step, model, optimizer, metrics} after every
    epoch; passing such a state back in resumes after its epoch. Batches depend only on (seed,
    epoch), so on the CPU a resumed run ends with the same weights as an uninterrupted one.

    amp: "auto" (bf16 autocast on CUDA, float32 on the CPU) | "bf16" | "off".
    channels_last: "auto" (on for CUDA, off on the CPU) | True | False; the model is returned
    in the default (contiguous) format either way.
    compile: torch.compile the training forward/backward (the first steps compile; the
    checkpointed state_dict keeps the module's own keys).
    sync_bn: under DDP, BatchNorm statistics over the global batch instead of each rank's slice
    (nn.SyncBatchNorm on CUDA, distributed.CPUSyncBatchNorm on the CPU); the model is returned
    with plain BatchNorm2d modules.

    Under torchrun (after distributed.init) the model trains as DistributedDataParallel, each
    rank on its slice of every global batch (global batch = the loader's batch size), and all
    ranks return the same metrics; only rank 0 calls on_epoch_end and save_state and shows
    progress. Pass the same `state` to every rank to resume.
    """
    if recipe.epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {recipe.epochs}")
    if distributed.launched() and not distributed.active():
        raise RuntimeError("launched by torchrun with WORLD_SIZE > 1 but no process group: call "
                           "prunelab.distributed.init(device) before training")
    accel = Accel.resolve(device, amp, channels_last)
    world = distributed.world_size()
    if accel.channels_last:
        model.to(device, memory_format=torch.channels_last)
    else:
        model.to(device)
    if state is not None:
        model.load_state_dict(state["model"])
    synced = sync_bn and world > 1
    if synced:
        distributed.convert_sync_batchnorm(model, device)
    opt = make_optimizer(model, recipe)
    if state is not None:
        opt.load_state_dict(state["optimizer"])
    net = model  # what trains: DDP and compile wrap `model`, whose own state_dict is saved
    if world > 1:
        ids = None  # CPU: DDP's module stays where it is
        if device.type == "cuda":  # distributed.init's device is cuda:LOCAL_RANK, and current
            ids = [torch.cuda.current_device() if device.index is None else device.index]
        net = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if compile:
        net = torch.compile(net)
    train_loader = distributed.shard_loader(train_loader, drop_small=True)
    steps_per_epoch = len(train_loader)
    total, warmup = recipe.epochs * steps_per_epoch, int(recipe.warmup_epochs * steps_per_epoch)
    step, metrics, start = 0, {}, 0
    if state is not None:
        step, metrics, start = state["step"], state["metrics"], state["epoch"] + 1
    main = distributed.is_main()
    bar = tqdm(range(start, recipe.epochs), desc=desc, unit="epoch", dynamic_ncols=True,
               initial=start, total=recipe.epochs, disable=not main)
    try:
        for epoch in bar:
            net.train()
            if hasattr(train_loader, "set_epoch"):
                train_loader.set_epoch(epoch)
            loss_sum, n = torch.zeros((), dtype=torch.float64, device=device), 0
            for x, y in train_loader:
                lr = lr_at(step, total, warmup, recipe.lr)
                loss_sum += train_step(net, opt, x, y, lr, accel, device, recipe.label_smoothing)
                n += len(y)
                step += 1
            # (summed loss, images) over all ranks; the one host sync of the epoch's training
            loss_sum, n = distributed.all_reduce_sum(
                torch.stack([loss_sum, torch.tensor(float(n), dtype=torch.float64, device=device)])).tolist()
            distributed.broadcast_buffers(model)  # every rank evaluates (and returns) rank 0's model
            metrics = {"train_loss": loss_sum / n, **_evaluate(model, test_loader, device, accel), "lr": lr}
            bar.set_postfix(loss=f"{metrics['train_loss']:.3f}", top1=f"{metrics['top1']:.2f}")
            if main and on_epoch_end:
                on_epoch_end(epoch, metrics)
            if main and save_state:
                save_state({"epoch": epoch, "step": step, "model": model.state_dict(),
                            "optimizer": opt.state_dict(), "metrics": metrics})
    finally:  # hand back a plain model: BatchNorm2d modules, default memory format
        if synced:
            distributed.revert_sync_batchnorm(model)
        if accel.channels_last:
            model.to(memory_format=torch.contiguous_format)
    return metrics
