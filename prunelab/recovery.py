"""Recovery without training (SNPFI, PAPER.md): least-squares refit of consumers, BN re-estimation.

After pruning, each consumer of a pruned group (the conv, or linear, reading those channels)
sees fewer input channels. Its weights are refit in closed form so that, on calibration images,
its output given the pruned network's input matches the original network's output of the same
layer (restricted to the consumer's kept output channels). Consumers are refit in forward order,
each on inputs that already pass through the earlier refits. Then every BatchNorm's running
statistics can be re-estimated on training batches. (That is not always a gain after a refit: a
least-squares fit shrinks its outputs towards their mean, the kept BN statistics expect exactly
that, and fresh statistics scale the shrunk outputs back up.)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from prunelab import models

MAX_ELEMENTS = 1 << 24  # rows x columns of one design-matrix chunk (128 MiB in float64)


def _design_rows(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The layer's input as rows of a linear map: conv (B, C_in, H, W) -> (B*L, C_in*kh*kw) im2col
    rows, one per output position; linear (B, in) -> (B, in). Columns follow weight.flatten(1)."""
    if isinstance(module, nn.Conv2d):
        if module.groups != 1 or module.padding_mode != "zeros" or isinstance(module.padding, str):
            raise ValueError(f"refit supports plain convolutions (groups=1, numeric zero padding), got {module}")
        cols = F.unfold(x, module.kernel_size, module.dilation, module.padding, module.stride)  # (B, D, L)
        return cols.transpose(1, 2).reshape(-1, cols.shape[1])
    if isinstance(module, nn.Linear):
        return x.reshape(-1, module.in_features)
    raise TypeError(f"cannot refit a {type(module).__name__}; consumers must be Conv2d or Linear")


def _target_rows(y: torch.Tensor) -> torch.Tensor:
    """conv output (B, C_out, Ho, Wo) -> (B*Ho*Wo, C_out); linear output (B, C_out) unchanged."""
    return y.movedim(1, -1).reshape(-1, y.shape[1])


def normal_equations(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Sufficient statistics of least squares for one batch, in float64.

    x: the layer's input, y: its wanted output. With X the design rows (plus a column of ones
    when the layer has a bias) and Y the target rows, returns X^T X (D, D), X^T Y (D, C_out) and
    ||Y||^2, accumulated over image chunks so that no design chunk exceeds MAX_ELEMENTS.
    """
    bias = module.bias is not None
    per_image = _design_rows(module, x[:1]).numel()
    chunk = max(1, MAX_ELEMENTS // max(1, per_image))
    xtx = xty = None
    yty = 0.0
    for s in range(0, x.shape[0], chunk):
        a = _design_rows(module, x[s:s + chunk]).double()  # (R, D)
        t = _target_rows(y[s:s + chunk]).double()  # (R, C_out)
        if bias:
            a = torch.cat([a, a.new_ones(a.shape[0], 1)], 1)
        xtx = a.T @ a if xtx is None else xtx + a.T @ a
        xty = a.T @ t if xty is None else xty + a.T @ t
        yty += t.square().sum().item()
    return xtx, xty, yty


def solve(xtx: torch.Tensor, xty: torch.Tensor, ridge: float, bias: bool) -> torch.Tensor:
    """argmin_W ||XW - Y||^2 + lam ||W_weights||^2 -> W (D, C_out), the bias row (if any) last.

    lam = ridge * trace(X^T X) / D over the weight columns (the bias is not penalised), so the
    ridge is relative to the inputs' scale.
    """
    d = xtx.shape[0] - int(bias)
    scale = xtx.diagonal()[:d].mean().item()
    a = xtx.clone()
    a.diagonal()[:d] += ridge * (scale if scale > 0 else 1.0)
    return torch.linalg.solve(a, xty)


def residual(xtx: torch.Tensor, xty: torch.Tensor, yty: float, w: torch.Tensor) -> float:
    """||XW - Y||^2 / ||Y||^2 from the sufficient statistics, W (D, C_out)."""
    sse = (w * (xtx @ w)).sum() - 2 * (w * xty).sum() + yty
    return max(sse.item(), 0.0) / yty if yty > 0 else 0.0


def as_matrix(module: nn.Module) -> torch.Tensor:
    """The layer's parameters as W (D, C_out), matching normal_equations' columns."""
    w = module.weight.detach().flatten(1).T.double()  # (C_in*kh*kw, C_out)
    return w if module.bias is None else torch.cat([w, module.bias.detach().double()[None]], 0)


@torch.no_grad()
def load_matrix(module: nn.Module, w: torch.Tensor) -> None:
    """Set the layer's weight (and bias, the last row) from W (D, C_out), the inverse of as_matrix."""
    weight = module.weight
    if module.bias is not None:
        module.bias.copy_(w[-1].to(module.bias.dtype))
        w = w[:-1]
    weight.copy_(w.T.reshape(weight.shape).to(weight.dtype))


@contextmanager
def _capture(module: nn.Module, into: dict, key: str, output: bool) -> Iterator[None]:
    """Store the module's output (or its input) of the next forward in into[key].

    The output is copied: a later layer of the same part may work on it in place (AlexNet's
    classifier part fc1 - ReLU(inplace) would otherwise hand back fc1's output after the ReLU).
    """
    if output:
        handle = module.register_forward_hook(lambda _m, _i, out: into.__setitem__(key, out.clone()))
    else:
        handle = module.register_forward_pre_hook(lambda _m, args: into.__setitem__(key, args[0]))
    try:
        yield
    finally:
        handle.remove()


@torch.no_grad()
def refit_consumers(original: nn.Module, pruned: nn.Module, arch: str, keep: dict[str, torch.Tensor],
                    images: torch.Tensor, ridge: float = 1e-3, batch_size: int = 256) -> dict[str, dict[str, float]]:
    """Refit, in place, every consumer of every group of `keep` that drops channels.

    original: the unpruned model; pruned: surgery.prune(original, arch, ..., keep) (same module
    names); keep: {group: kept indices}; images: (N, C_in, H, W) normalised calibration images.
    Both models run in eval mode on the pruned model's device. The networks are walked part by
    part (model.parts()), caching each part's input for all calibration images, so one refit
    costs one forward of the part holding the consumer.
    Returns {consumer: {"before": e0, "after": e1}}, the relative squared error
    ||X W - Y||^2 / ||Y||^2 on the calibration images of the weights before and after the refit,
    both given the same input (the pruned network's, after the earlier refits).
    """
    groups = [g for g in models.channel_groups(arch) if g.name in keep]
    orig_modules, pruned_modules = dict(original.named_modules()), dict(pruned.named_modules())
    out_keep = {p: keep[g.name] for g in groups for p in g.producers}  # producer -> kept output channels
    order = {name: i for i, (name, _) in enumerate(original.named_modules())}  # registration = forward order
    consumers = sorted({c for g in groups if keep[g.name].numel() < orig_modules[g.producers[0]].weight.shape[0]
                        for c in g.consumers}, key=order.__getitem__)
    original.eval()
    pruned.eval()
    param = next(pruned.parameters())
    original.to(param.device)
    xs_orig = [images[s:s + batch_size].to(param.device, param.dtype) for s in range(0, images.shape[0], batch_size)]
    xs_pruned = [x.clone() for x in xs_orig]  # the two caches never share storage
    report = {}
    for part_o, part_p in zip(original.parts(), pruned.parts()):
        inside = {id(m) for m in part_p.modules()}
        for name in [c for c in consumers if id(pruned_modules[c]) in inside]:
            layer = pruned_modules[name]
            stats, seen = None, {}
            for xo, xp in zip(xs_orig, xs_pruned):
                with _capture(orig_modules[name], seen, "y", output=True):
                    part_o(xo)  # the original layer's output (B, C_out, Ho, Wo)
                with _capture(layer, seen, "x", output=False):
                    part_p(xp)  # the pruned layer's input (B, C_in_kept, H, W)
                y = seen["y"] if name not in out_keep else seen["y"].index_select(1, out_keep[name].to(param.device))
                batch = normal_equations(layer, seen["x"], y)
                stats = batch if stats is None else tuple(s + b for s, b in zip(stats, batch))
            xtx, xty, yty = stats
            w = solve(xtx, xty, ridge, layer.bias is not None)
            report[name] = {"before": residual(xtx, xty, yty, as_matrix(layer)), "after": residual(xtx, xty, yty, w)}
            load_matrix(layer, w)
        xs_orig = [part_o(x) for x in xs_orig]
        xs_pruned = [part_p(x) for x in xs_pruned]
    return report


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Iterable, device: torch.device | str) -> nn.Module:
    """Re-estimate every BatchNorm's running mean and variance on `batches`; returns the model in eval mode.

    batches: (images, labels) pairs or image tensors. Statistics are reset and momentum set to
    None (a cumulative average over the batches), then restored; parameters are not changed.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.to(device).train()
    seen = 0
    try:
        for batch in batches:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            model(x.to(device))
            seen += 1
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.eval()
    if not seen:
        raise ValueError("recalibrate_batchnorm: no batches")
    return model
