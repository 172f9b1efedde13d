"""Architecture registry. Every builder takes per-layer widths: the architecture is data."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from types import ModuleType

from torch import nn

from prunelab.models import alexnet, mobilenet_v1, resnet50, resnet_cifar, vgg
from prunelab.models.spec import ChannelGroup

CIFAR_RESNET_DEPTHS = (20, 32, 44, 56, 110)


@dataclass(frozen=True)
class Arch:
    module: ModuleType
    depth: int | None  # CIFAR ResNets: 6n+2
    input_shape: tuple[int, int, int]  # the paper's input, (C, H, W)
    num_classes: int
    min_size: int = 1  # smallest input side the layout accepts
    max_size: int | None = None  # largest, where a fixed-size classifier input sets one


_ARCHS = {f"resnet{d}": Arch(resnet_cifar, d, (3, 32, 32), 10) for d in CIFAR_RESNET_DEPTHS}
_ARCHS["vgg16"] = Arch(vgg, None, (3, 32, 32), 10, min_size=32)  # 4 max-pools + AvgPool2d(2)
_ARCHS["resnet50"] = Arch(resnet50, None, (3, 224, 224), 1000)
# fc1 reads conv 5's 2x2 map, which sides 17-32 give (ceil(S/16) == 2, models/alexnet.py)
_ARCHS["alexnet"] = Arch(alexnet, None, (1, 28, 28), 10, min_size=alexnet.MIN_SIDE, max_size=alexnet.MAX_SIDE)
_ARCHS["mobilenet_v1"] = Arch(mobilenet_v1, None, (3, 32, 32), 10)  # global average pool: any side
ARCHS = tuple(_ARCHS)


def _arch(name: str) -> Arch:
    if name not in _ARCHS:
        raise ValueError(f"unknown model {name!r}; allowed: {', '.join(ARCHS)}")
    return _ARCHS[name]


def _depth_args(a: Arch) -> tuple:
    return () if a.depth is None else (a.depth,)


def build_model(arch: str, widths: dict | None = None, in_channels: int = 3, num_classes: int = 10) -> nn.Module:
    a = _arch(arch)
    cls = {resnet_cifar: resnet_cifar.CifarResNet, vgg: vgg.VGG16, resnet50: resnet50.ResNet50,
           alexnet: alexnet.AlexNet, mobilenet_v1: mobilenet_v1.MobileNetV1}[a.module]
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


def input_sizes(arch: str) -> tuple[int, int | None]:
    """(smallest, largest or None) input side the arch's layout accepts."""
    a = _arch(arch)
    return a.min_size, a.max_size


def check_input(arch: str, height: int, width: int) -> None:
    """ValueError naming the sides the arch takes unless it takes a height x width input."""
    lo, hi = input_sizes(arch)
    if min(height, width) < lo or (hi is not None and max(height, width) > hi):
        accepts = f"at least {lo}x{lo}" if hi is None else f"{lo}x{lo} to {hi}x{hi}"
        raise ValueError(f"{arch} takes inputs of {accepts} pixels, got {height}x{width}")


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
