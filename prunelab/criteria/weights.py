"""Criteria that need no images: the L1 norm of a channel's filters, and seeded random scores."""

from __future__ import annotations

import zlib

import torch
from torch import nn

from prunelab.models.spec import ChannelGroup


def filter_l1(model: nn.Module, groups: list[ChannelGroup], seed: int = 0) -> dict[str, torch.Tensor]:
    """{group: (C,)} sum of |w| over each output channel's filter: (in, kh, kw) of a conv, (in,)
    of a linear layer (a hidden fully connected width).

    A group produced by several layers (a ResNet-50 stage output: every block's conv3 and the
    downsample; a MobileNet channel: the pointwise conv and the depthwise conv that carries it,
    whose filter is (1, kh, kw)) scores the sum over all of them. `seed` is unused (uniform signature).
    """
    modules = dict(model.named_modules())
    scores = {}
    for g in groups:
        layers = [modules[p] for p in g.producers if isinstance(modules[p], (nn.Conv2d, nn.Linear))]
        scores[g.name] = sum(m.weight.detach().abs().flatten(1).sum(1).double() for m in layers).cpu()
    return scores


def random_scores(model: nn.Module, groups: list[ChannelGroup], seed: int = 0) -> dict[str, torch.Tensor]:
    """{group: (C,)} uniform scores from a generator seeded by (seed, group name): the baseline of baselines."""
    modules = dict(model.named_modules())
    scores = {}
    for g in groups:
        width = modules[g.producers[0]].weight.shape[0]
        gen = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(g.name.encode()))
        scores[g.name] = torch.rand(width, generator=gen, dtype=torch.float64)
    return scores
