"""MobileNetV1 (Howard et al. 2017, width multiplier 1.0) for 32x32 inputs, built from widths.

Layout: kuangliu/pytorch-cifar's models/mobilenet.py, the common CIFAR adaptation. Stem: 3x3 conv
to 32 channels at stride 1 (ImageNet's is stride 2: the one CIFAR change), BN, ReLU. Then 13
depthwise-separable blocks, each a 3x3 depthwise conv (groups = channels) - BN - ReLU - 1x1
pointwise conv - BN - ReLU, no conv biases, with pointwise widths 64, 128, 128, 256, 256, 512 x6,
1024, 1024 and stride 2 on the depthwise conv of blocks 2, 4, 6 and 12 (1-based), as on ImageNet.
Then a global average pool and Linear(1024, classes). kuangliu writes the pool as
avg_pool2d(x, 2) on the last 2x2 map; AdaptiveAvgPool2d(1) is the same on that map and keeps
the net defined for any input side (a stride-2 3x3 conv with padding 1 gives ceil(S/2)).

Shapes (C, H, W) after the stem | blocks 1, 2, 3, 4, 5, 6-11, 12, 13 | pool:
    3x32x32 -> 32x32x32 | 64x32x32, 128x16x16, 128x16x16, 256x8x8, 256x8x8, 512x4x4 (six),
               1024x2x2, 1024x2x2 | 1024 -> classes
    1x28x28 -> 32x28x28 | 64x28x28, 128x14x14, 128x14x14, 256x7x7, 256x7x7, 512x4x4 (six),
               1024x2x2, 1024x2x2 | 1024 -> classes (MNIST: the same final map as CIFAR-10)

Parameter names are kuangliu's (`conv1`, `bn1`, `layers.{b}.conv1|bn1|conv2|bn2`, `linear`), so
its checkpoints load as they are; the parameter-free ReLUs are modules of their own (`relu`,
`layers.{b}.relu1|relu2`) so they can be hooked by name, and the pool is `avgpool`.

Widths: {"stem": int, "pointwise": [13 ints]}. A depthwise conv has no width of its own: it
carries the channels of the layer before it, one to one.
"""

from __future__ import annotations

import torch
from torch import nn

from prunelab.models.spec import ChannelGroup

STEM = 32
POINTWISE = (64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)
STRIDE2_BLOCKS = (1, 3, 5, 11)  # 0-based indices of the stride-2 blocks
PRUNABLE_BLOCKS = len(POINTWISE) - 1  # the last pointwise output feeds the classifier, never pruned


def default_widths() -> dict:
    return {"stem": STEM, "pointwise": list(POINTWISE)}


def check_widths(widths: dict) -> None:
    if set(widths) != {"stem", "pointwise"} or len(widths["pointwise"]) != len(POINTWISE):
        raise ValueError(f"mobilenet_v1 widths need {{'stem': int, 'pointwise': [{len(POINTWISE)} ints]}}, got {widths}")
    if min([widths["stem"], *widths["pointwise"]]) < 1:
        raise ValueError("every width must be at least 1")


class Block(nn.Module):
    """Depthwise 3x3 conv (channels tied one to one to its input) then pointwise 1x1 conv."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, in_channels, 3, stride, 1, groups=in_channels, bias=False)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu2 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.conv1(x)))
        return self.relu2(self.bn2(self.conv2(x)))


class MobileNetV1(nn.Module):
    def __init__(self, widths: dict | None = None, in_channels: int = 3, num_classes: int = 10):
        super().__init__()
        widths = widths or default_widths()
        check_widths(widths)
        self.conv1 = nn.Conv2d(in_channels, widths["stem"], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths["stem"])
        self.relu = nn.ReLU(inplace=True)
        blocks, prev = [], widths["stem"]
        for b, w in enumerate(widths["pointwise"]):
            blocks.append(Block(prev, w, 2 if b in STRIDE2_BLOCKS else 1))
            prev = w
        self.layers = nn.Sequential(*blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.relu(self.bn1(self.conv1(x))))
        return self.linear(torch.flatten(self.avgpool(x), 1))  # (N, 1024, 1, 1) -> (N, 1024)

    def parts(self) -> list[nn.Module]:
        """forward() as a sequence: stem, every block, head; composing them equals forward()."""
        return [nn.Sequential(self.conv1, self.bn1, self.relu), *self.layers,
                nn.Sequential(self.avgpool, nn.Flatten(1), self.linear)]


def channel_groups() -> list[ChannelGroup]:
    """The stem and the pointwise outputs of blocks 1-12, each with the depthwise conv it feeds.

    Group = the producing conv's output channels and its BN, the next block's depthwise conv (dim 0
    of its weight; its groups and in/out channels follow) and depthwise BN, and the input
    channels of that block's pointwise conv, the only consumer. A depthwise conv's input and
    output channels are one set (Torch-Pruning's depthwise pruner ties them the same way), so it
    is a producer here, never a consumer. Dropping a channel removes it at
    both ReLUs that carry it, the producer's and the depthwise one (a zeroed input still leaves
    the depthwise BN's shift, so both are carriers). Scored at the producer's ReLU.
    """
    producers = ["conv1", *[f"layers.{b}.conv2" for b in range(PRUNABLE_BLOCKS)]]
    relus = ["relu", *[f"layers.{b}.relu2" for b in range(PRUNABLE_BLOCKS)]]
    keys = [("stem",), *[("pointwise", b) for b in range(PRUNABLE_BLOCKS)]]
    groups = []
    for b, (conv, relu, key) in enumerate(zip(producers, relus, keys)):
        bn = conv.rsplit(".", 1)[0] + ".bn2" if b else "bn1"
        nxt = f"layers.{b}"
        groups.append(ChannelGroup(relu, key, (conv, bn, f"{nxt}.conv1", f"{nxt}.bn1"), (f"{nxt}.conv2",),
                                   maps=(relu, f"{nxt}.relu1")))
    return groups


def group_rates(rates: list[float]) -> dict[str, float]:
    """One rate per group in forward order: the stem, then the pointwise outputs of blocks 1-12
    ("[0.]+[0.3]*5+[0.5]*7"); block 13's output feeds the classifier and is never pruned."""
    groups = channel_groups()
    if len(rates) != len(groups):
        raise ValueError(f"mobilenet_v1 takes {len(groups)} rates (1 stem + the pointwise outputs of blocks 1-12), "
                         f"got {len(rates)}")
    return {g.name: r for g, r in zip(groups, rates)}
