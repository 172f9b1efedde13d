"""Architecture registry. Every builder takes per-layer widths: the architecture is data."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from types import ModuleType

from torch import nn

from prunelab.models import resnet50, resnet_cifar, vgg
from prunelab.models.spec import ChannelGroup

CIFAR_RESNET_DEPTHS = (20, 32, 44, 56, 110)


@dataclass(frozen=True)
class Arch:
    module: ModuleType
    depth: int | None  # CIFAR ResNets: 6n+2
    input_shape: tuple[int, int, int]  # the paper's input, (C, H, W)
    num_classes: int
    min_size: int = 1  # smallest input side the layout accepts


_ARCHS = {f"resnet{d}": Arch(resnet_cifar, d, (3, 32, 32), 10) for d in CIFAR_RESNET_DEPTHS}
_ARCHS["vgg16"] = Arch(vgg, None, (3, 32, 32), 10, min_size=32)  # 4 max-pools + AvgPool2d(2)
_ARCHS["resnet50"] = Arch(resnet50, None, (3, 224, 224), 1000)
ARCHS = tuple(_ARCHS)


def _arch(name: str) -> Arch:
    if name not in _ARCHS:
        raise ValueError(f"unknown model {name!r}; allowed: {', '.join(ARCHS)}")
    return _ARCHS[name]


def _depth_args(a: Arch) -> tuple:
    return () if a.depth is None else (a.depth,)


def build_model(arch: str, widths: dict | None = None, in_channels: int = 3, num_classes: int = 10) -> nn.Module:
    a = _arch(arch)
    cls = {resnet_cifar: resnet_cifar.CifarResNet, vgg: vgg.VGG16, resnet50: resnet50.ResNet50}[a.module]
    return cls(*_depth_args(a), widths, in_channels, num_classes)


def default_widths(arch: str) -> dict:
    a = _arch(arch)
    return a.module.default_widths(*_depth_args(a))


def channel_groups(arch: str) -> list[ChannelGroup]:
    a = _arch(arch)
    return a.module.channel_groups(*_depth_args(a))


def group_rates(arch: str, rates: list[float]) -> dict[str, float]:
    """One pruning rate per channel group, from the arch's compact (CHIP) rate list."""
    a = _arch(arch)
    return a.module.group_rates(*_depth_args(a), rates)


def paper_input(arch: str) -> tuple[tuple[int, int, int], int]:
    """((C, H, W), classes) of the dataset the paper uses with this arch."""
    a = _arch(arch)
    return a.input_shape, a.num_classes


def min_input_size(arch: str) -> int:
    return _arch(arch).min_size


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
