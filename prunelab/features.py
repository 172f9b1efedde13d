"""Forward hooks by module name, and streamed per-channel statistics of feature maps."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn
from tqdm.auto import tqdm

from prunelab.errors import PrunelabError

Statistic = Callable[[torch.Tensor], torch.Tensor]  # (N, C, H, W) -> (N, C)


@contextmanager
def forward_hooks(model: nn.Module, names: Iterable[str], fn: Callable[[str, torch.Tensor], None]) -> Iterator[None]:
    """Call fn(name, output) after each named module's forward; hooks are always removed."""
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        raise KeyError(f"no module named {missing[0]!r} in {type(model).__name__}")
    handles = [modules[n].register_forward_hook(lambda _m, _i, out, n=n: fn(n, out)) for n in names]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def channel_statistics(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                       layers: list[str], statistics: dict[str, Statistic], num_images: int,
                       device: torch.device, progress: bool = True,
                       maps: dict[str, torch.Tensor] | None = None) -> dict[str, dict[str, torch.Tensor]]:
    """Mean over the first `num_images` images of each statistic at each hooked layer.

    One forward pass per batch feeds every layer; each map is reduced inside its hook, so memory
    holds one batch of one layer's map at a time, whatever num_images is. The model runs in eval
    mode. Returns {layer: {statistic: (C,) float64 tensor on the CPU}}. A fully connected
    layer's output (N, C) is read as C maps of 1 x 1: CHIP's nuclear norm is then the length of
    the C-vector, HRank's rank is 1 where the unit is active and 0 where it is not.
    If a `maps` dict is given, it also receives every raw map, {layer: (num_images, C, H, W)}
    on the CPU (memory then grows with num_images: only when asked for).
    """
    model.eval().to(device)
    sums: dict[str, dict[str, torch.Tensor]] = {layer: {} for layer in layers}

    batches_of_maps: dict[str, list[torch.Tensor]] = {layer: [] for layer in layers}

    def reduce(name: str, out: torch.Tensor) -> None:
        if out.ndim == 2:
            out = out[:, :, None, None]  # (N, C) -> (N, C, 1, 1)
        if maps is not None:
            batches_of_maps[name].append(out.detach().cpu())
        for stat, fn in statistics.items():
            s = fn(out).double().sum(0)  # (C,)
            sums[name][stat] = sums[name][stat] + s if stat in sums[name] else s

    seen = 0
    bar = tqdm(total=num_images, desc="features", unit="img", disable=not progress, dynamic_ncols=True)
    with forward_hooks(model, layers, reduce):
        for x, _ in batches:
            x = x[: num_images - seen].to(device)
            model(x)
            seen += x.shape[0]
            bar.update(x.shape[0])
            if seen >= num_images:
                break
    bar.close()
    if seen < num_images:
        raise PrunelabError(f"features.num_images: asked for {num_images} images, the training split has {seen}")
    if maps is not None:
        maps.update({layer: torch.cat(chunks) for layer, chunks in batches_of_maps.items()})
    return {layer: {k: (v / seen).cpu() for k, v in stats.items()} for layer, stats in sums.items()}
