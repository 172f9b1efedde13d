"""Data-parallel training when launched by torchrun: process group, rank queries, batch shards,
and BatchNorm synchronised across ranks.

A stage launched as `torchrun --nproc_per_node=G stages/<stage>.py` calls `init(device)` first
(it returns this rank's device), guards every write with `is_main()`, and calls `cleanup()` at
the end. Launched plainly (no WORLD_SIZE > 1 in the environment) every function here is a no-op
and the world is one process.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn


def launched() -> bool:
    """True when torchrun started more than one process (WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device: torch.device) -> torch.device:
    """Join torchrun's process group (NCCL on CUDA, Gloo on the CPU); return this rank's device.

    device: the resolved device type to train on; on CUDA each rank takes cuda:LOCAL_RANK.
    Without torchrun (or with one process) it returns `device` unchanged and starts nothing.
    """
    if not launched():
        return device
    if device.type == "cuda":
        local_rank = int(os.environ["LOCAL_RANK"])
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA device(s) are "
                             "visible; start at most that many processes per node")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        # env:// rendezvous: torchrun sets MASTER_ADDR, MASTER_PORT, RANK and WORLD_SIZE
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def active() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0, or the only process: the one that writes files, logs and shows progress.
    (Before init, torchrun's RANK decides, so no rank but 0 writes even then.)"""
    if launched() and not active():
        return int(os.environ.get("RANK", "0")) == 0
    return rank() == 0


def barrier() -> None:
    """Wait until every rank gets here (e.g. rank 0 has written a file the others will read)."""
    if not active():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def cleanup() -> None:
    """Leave the process group (at the end of a stage, on every rank)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """In place: the sum of `t` over all ranks (unchanged in a single process)."""
    if active():
        dist.all_reduce(t)
    return t


def broadcast_buffers(model: nn.Module) -> None:
    """Rank 0's buffers (BatchNorm running statistics) to every rank.

    DDP sends them at the start of every forward, so after the last step each rank holds its
    own update; this makes every rank hold rank 0's model, the one it saves.
    """
    if active():
        for b in model.buffers():
            dist.broadcast(b, src=0)


def shard_loader(loader, drop_small: bool):
    """This rank's part of every global batch of `loader` (the loader itself in one process).

    The ranks must see the same global batches, which the project's loaders guarantee by seeding
    shuffles and augmentations with seed + epoch. A loader with a shard(rank, world_size,
    drop_small) method (data.Loader) cuts its batches before gathering images; any other is
    wrapped in SlicedLoader. drop_small: skip a global batch smaller than the world on every
    rank (training: no rank may be left without images); else such a batch leaves some ranks
    an empty slice (evaluation, which skips them, counts every image).
    """
    if not active():
        return loader
    if hasattr(loader, "shard"):
        return loader.shard(rank(), world_size(), drop_small)
    return SlicedLoader(loader, rank(), world_size(), drop_small)


class SlicedLoader:
    """Any loader's global batches cut to one rank's slice after loading: each rank loads every
    image (e.g. decodes it), so it scales the model's work, not the loading."""

    def __init__(self, loader, rank: int, world: int, drop_small: bool):
        self.loader, self.rank, self.world, self.drop_small = loader, rank, world, drop_small

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.loader, "set_epoch"):
            self.loader.set_epoch(epoch)

    def __iter__(self):
        for x, y in self.loader:
            if self.drop_small and len(y) < self.world:
                continue
            lo, hi = shard_bounds(len(y), self.rank, self.world)
            yield x[lo:hi], y[lo:hi]


def shard_bounds(batch: int, rank: int, world: int) -> tuple[int, int]:
    """[lo, hi) of this rank's contiguous slice of a global batch of `batch` images.

    Sizes differ by at most one (earlier ranks get the extra images): 37 over 2 ranks -> 19, 18.
    """
    return rank * batch // world, (rank + 1) * batch // world


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks, differentiable: every rank's output is the same sum, so the gradient of
    each rank's input is the sum of all ranks' output gradients (another all_reduce).
    (torch.distributed.nn.functional.all_reduce does this too, but recent torch deprecates it.)"""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        t = t.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(t)
        return t

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad)
        return grad


class CPUSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training-mode statistics are over the global batch of all ranks.

    torch's nn.SyncBatchNorm only runs on CUDA; this one runs anywhere (Gloo on the CPU). Same
    parameters and buffers as nn.BatchNorm2d (so the same state_dict); the mean and variance
    are summed across ranks by a differentiable all_reduce, so gradients flow through the
    global statistics as in one process on the whole batch. Running statistics are updated as
    nn.BatchNorm2d does (momentum, unbiased running variance). In eval mode, or alone, it is
    plain BatchNorm2d.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and active()):
            return super().forward(x)
        self._check_input_dim(x)
        c = x.shape[1]
        xf = x if x.dtype in (torch.float32, torch.float64) else x.float()  # bf16 under autocast: float32
        # two passes (mean, then squared deviations): E[x^2] - E[x]^2 loses digits in float32
        count = torch.full((1,), xf.numel() // c, dtype=xf.dtype, device=xf.device)
        sums = _AllReduceSum.apply(torch.cat([xf.sum((0, 2, 3)), count]))  # (C + 1,): per-channel sums, N*H*W
        n = sums[c]
        mean = sums[:c] / n  # (C,)
        centred = xf - mean[None, :, None, None]  # (N, C, H, W)
        var = _AllReduceSum.apply(centred.square().sum((0, 2, 3))) / n  # (C,) biased, as used to normalise
        y = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach() * n / (n - 1))
        return y.to(x.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, unbiased_var: torch.Tensor) -> None:
        self.num_batches_tracked.add_(1)
        # nn.BatchNorm2d's rule: momentum None means a cumulative average over batches
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
        self.running_var.lerp_(unbiased_var.to(self.running_var.dtype), factor)


def _swap_batchnorm(model: nn.Module, sources: tuple[type, ...], target: type) -> int:
    """Replace every module whose type is one of `sources` by a `target` sharing its parameters
    and buffers (same objects: optimizers and state_dict keys are unaffected); returns the count."""
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) not in sources:
                continue
            new = target(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats)
            for key in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
                setattr(new, key, getattr(child, key))
            new.train(child.training)
            setattr(parent, name, new)
            swapped += 1
    return swapped


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """In place: every nn.BatchNorm2d -> nn.SyncBatchNorm on CUDA, CPUSyncBatchNorm on the CPU.

    Unlike nn.SyncBatchNorm.convert_sync_batchnorm (which converts every _BatchNorm and forgets
    the original class), only BatchNorm2d is converted, so revert_sync_batchnorm restores it.
    """
    _swap_batchnorm(model, (nn.BatchNorm2d,), nn.SyncBatchNorm if device.type == "cuda" else CPUSyncBatchNorm)
    return model


def revert_sync_batchnorm(model: nn.Module) -> nn.Module:
    """In place: every synchronised BatchNorm back to a plain nn.BatchNorm2d (same tensors)."""
    _swap_batchnorm(model, (nn.SyncBatchNorm, CPUSyncBatchNorm), nn.BatchNorm2d)
    return model
