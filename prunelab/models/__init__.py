"""Architecture registry. Every builder takes per-layer widths: the architecture is data."""

from __future__ import annotations

import copy

from torch import nn

from prunelab.models import resnet_cifar
from prunelab.models.spec import ChannelGroup

CIFAR_RESNET_DEPTHS = (20, 32, 44, 56, 110)
ARCHS = tuple(f"resnet{d}" for d in CIFAR_RESNET_DEPTHS)


def _depth(arch: str) -> int:
    if arch not in ARCHS:
        raise ValueError(f"unknown model {arch!r}; allowed: {', '.join(ARCHS)}")
    return int(arch.removeprefix("resnet"))


def build_model(arch: str, widths: dict | None = None, in_channels: int = 3, num_classes: int = 10) -> nn.Module:
    return resnet_cifar.CifarResNet(_depth(arch), widths, in_channels, num_classes)


def default_widths(arch: str) -> dict:
    return resnet_cifar.default_widths(_depth(arch))


def channel_groups(arch: str) -> list[ChannelGroup]:
    return resnet_cifar.channel_groups(_depth(arch))


def group_rates(arch: str, rates: list[float]) -> dict[str, float]:
    """One pruning rate per channel group, from the arch's compact (CHIP) rate list."""
    return resnet_cifar.group_rates(_depth(arch), rates)


def get_width(widths: dict, key: tuple) -> int:
    return widths[key[0]] if len(key) == 1 else widths[key[0]][key[1]]


def set_width(widths: dict, key: tuple, value: int) -> None:
    if len(key) == 1:
        widths[key[0]] = value
    else:
        widths[key[0]][key[1]] = value


def kept_width(channels: int, rate: float) -> int:
    """CHIP's rule: int(C * (1 - rate)), never below one channel."""
    return max(1, int(channels * (1 - rate)))


def pruned_widths(arch: str, rates: list[float], widths: dict | None = None) -> dict:
    """Widths after pruning each group of `widths` (default: the unpruned arch) at its rate."""
    widths = copy.deepcopy(widths or default_widths(arch))
    per_group = group_rates(arch, rates)
    for group in channel_groups(arch):
        set_width(widths, group.width_key, kept_width(get_width(widths, group.width_key), per_group[group.name]))
    return widths
