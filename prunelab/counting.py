"""Parameter and operation counts under named conventions (PAPER.md, "Counting conventions").

- macs: multiply-accumulates of convolutions and linear layers only (what papers call FLOPs).
- flops_paper: CHIP's thop count: macs, plus one op per output element of a conv bias, plus
  two ops per BatchNorm input element, plus one op per input element of an average pool.
  (PAPER.md lists the first three; without the pool term CHIP's ResNet-56 rows come out exactly
  64 x 8 x 8 = 4,096 low, the size of the pooled map, so thop counted the pool's additions.)
Counted by forward hooks on one input of the given shape, so any architecture is covered.
"""

from __future__ import annotations

import torch
from torch import nn

def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_ops(model: nn.Module, input_shape: tuple[int, int, int]) -> dict[str, int]:
    """{'macs': int, 'flops_paper': int} for one image of input_shape (C, H, W)."""
    totals = {"macs": 0, "flops_paper": 0}

    def conv(m: nn.Conv2d, _inp, out):
        macs = out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        totals["macs"] += macs
        totals["flops_paper"] += macs + (out.numel() if m.bias is not None else 0)

    def linear(m: nn.Linear, inp, _out):
        macs = inp[0].numel() // m.in_features * m.in_features * m.out_features
        totals["macs"] += macs
        totals["flops_paper"] += macs

    def batchnorm(_m, inp, _out):
        totals["flops_paper"] += 2 * inp[0].numel()

    def avgpool(_m, inp, _out):
        totals["flops_paper"] += inp[0].numel()

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear))
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            hooks.append(m.register_forward_hook(batchnorm))
        elif isinstance(m, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
            hooks.append(m.register_forward_hook(avgpool))
    was_training = model.training
    try:
        model.eval()
        param = next(model.parameters())
        model(torch.zeros(1, *input_shape, dtype=param.dtype, device=param.device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return totals


def count(model: nn.Module, input_shape: tuple[int, int, int]) -> dict[str, int]:
    """{'params', 'macs', 'flops_paper'} of a model."""
    return {"params": count_params(model), **count_ops(model, input_shape)}


def reduction(base: int, pruned: int) -> float:
    """Percent removed, e.g. 43.09 for 853,018 -> 485,413 params."""
    return 100.0 * (base - pruned) / base
