"""Reference implementations written from the definitions, for the tests (and the CHIP benchmark).

Each is the slow, literal reading of a definition (PAPER.md, the criterion's paper), written
without importing the module it checks, so one edit cannot move an implementation and its
reference together.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def channel_independence(fmaps: torch.Tensor) -> torch.Tensor:
    """CHIP (Sui et al. 2021), literally: (N, C, H, W) -> (N, C) float64, for image i and channel c
    ||A_i||_* - ||A_i with row c zeroed||_*, A_i the C x HW map; one nuclear norm per image and
    removed channel."""
    n, c = fmaps.shape[:2]
    a = fmaps.reshape(n, c, -1).double().cpu()  # (N, C, HW)
    out = torch.empty(n, c, dtype=torch.float64)
    for i in range(n):
        full = torch.linalg.matrix_norm(a[i], "nuc")
        for ch in range(c):
            masked = a[i].clone()
            masked[ch] = 0
            out[i, ch] = full - torch.linalg.matrix_norm(masked, "nuc")
    return out


def channel_rank(fmaps: torch.Tensor) -> torch.Tensor:
    """HRank (Lin et al. 2020): (N, C, H, W) -> (N, C) numpy's matrix_rank of every H x W map
    (its default tolerance, sigma_max * max(H, W) * eps of the maps' dtype)."""
    n, c = fmaps.shape[:2]
    maps = fmaps.detach().cpu().numpy()
    return torch.tensor([[float(np.linalg.matrix_rank(maps[i, ch])) for ch in range(c)] for i in range(n)])


def filter_l1(convs: list[nn.Conv2d]) -> torch.Tensor:
    """L1 criterion of one channel group: for every output channel, the sum of |w| over its
    filter in each conv that produces the group, one Python float at a time; (C,) float64."""
    return torch.tensor([sum(float(conv.weight.detach()[ch].abs().sum()) for conv in convs)
                         for ch in range(convs[0].out_channels)], dtype=torch.float64)


def random_scores(group_name: str, width: int, seed: int) -> torch.Tensor:
    """The random criterion's definition (README): uniform [0, 1) scores, float64, one
    torch.Generator per channel group seeded by seed * 1,000,003 + crc32(group name)."""
    gen = torch.Generator()
    gen.manual_seed(seed * 1_000_003 + zlib.crc32(bytes(group_name, "utf-8")))
    return torch.rand((width,), generator=gen, dtype=torch.float64)


def flops_paper(model: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """CHIP's thop convention (PAPER.md, "Counting conventions"): conv and linear MACs (half of
    torch's FlopCounterMode count), + one op per conv output element when the conv has a bias,
    + 2 ops per BatchNorm input element, + one op per average-pool input element."""
    extra = []

    def hook(m, inp, out):
        if isinstance(m, nn.Conv2d) and m.bias is not None:
            extra.append(out.numel())
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            extra.append(2 * inp[0].numel())
        elif isinstance(m, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
            extra.append(inp[0].numel())

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    was_training = model.training
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            model.eval()(torch.zeros(1, *input_shape))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return fc.get_total_flops() // 2 + sum(extra)


def top1(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Percentage of images whose highest logit is the label: the model in eval mode, float32."""
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(images[i:i + 256]).argmax(1) for i in range(0, len(images), 256)])
    return 100.0 * float((pred == labels).double().mean())
