"""CIFAR ResNet of depth 6n+2 (He et al. 2016) with the option-A shortcut, built from widths.

Widths are data: {"stem": int, "inner": [3n ints], "out": [3n ints]}, one inner (conv1) and one
output (conv2) width per block, blocks in forward order. The unpruned net has stem 16, and both
widths of every block of stage s equal 16 * 2**s.

Module names are the layer names used everywhere else (hooks, scores, surgery):
`conv1`/`bn1`/`relu` for the stem, `layer{s}.{b}.conv1|bn1|relu1|conv2|bn2|relu2` per block,
`avgpool`, `fc`. Every ReLU is its own module so it can be hooked by name.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from prunelab.models.spec import ChannelGroup

STAGE_WIDTHS = (16, 32, 64)


def blocks_per_stage(depth: int) -> int:
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n+2 with n >= 1 (20, 32, 44, 56, 110, ...), got {depth}")
    return (depth - 2) // 6


def default_widths(depth: int) -> dict:
    n = blocks_per_stage(depth)
    per_block = [w for w in STAGE_WIDTHS for _ in range(n)]
    return {"stem": STAGE_WIDTHS[0], "inner": list(per_block), "out": list(per_block)}


class OptionAShortcut(nn.Module):
    """Parameter-free shortcut: stride-s subsampling, then zero-pad channels (crop when negative).

    Channels are padded (or cropped) by (out - in) // 2 in front and the rest behind, as in the
    CHIP/HRank code, so a narrower output keeps the middle channels of its input.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.stride = stride
        diff = out_channels - in_channels
        self.front, self.back = diff // 2, diff - diff // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        # F.pad pads dims from the last: (W_left, W_right, H_top, H_bottom, C_front, C_back)
        return F.pad(x, (0, 0, 0, 0, self.front, self.back))


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, inner: int, out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, inner, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(inner)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(inner, out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out)
        self.relu2 = nn.ReLU(inplace=True)
        if stride != 1 or in_channels != out:
            self.shortcut = OptionAShortcut(in_channels, out, stride)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu1(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu2(y + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, depth: int, widths: dict | None = None, in_channels: int = 3, num_classes: int = 10):
        super().__init__()
        n = blocks_per_stage(depth)
        widths = widths or default_widths(depth)
        check_widths(depth, widths)
        self.conv1 = nn.Conv2d(in_channels, widths["stem"], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths["stem"])
        self.relu = nn.ReLU(inplace=True)
        prev, i = widths["stem"], 0
        for s in range(3):
            blocks = []
            for b in range(n):
                stride = 2 if s > 0 and b == 0 else 1
                blocks.append(BasicBlock(prev, widths["inner"][i], widths["out"][i], stride))
                prev, i = widths["out"][i], i + 1
            self.add_module(f"layer{s + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(prev, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))

    def parts(self) -> list[nn.Module]:
        """forward() as a sequence: stem, every block, head; composing them equals forward()."""
        blocks = [blk for stage in (self.layer1, self.layer2, self.layer3) for blk in stage]
        return [nn.Sequential(self.conv1, self.bn1, self.relu), *blocks,
                nn.Sequential(self.avgpool, nn.Flatten(1), self.fc)]


def check_widths(depth: int, widths: dict) -> None:
    n3 = 3 * blocks_per_stage(depth)
    if set(widths) != {"stem", "inner", "out"}:
        raise ValueError(f"CIFAR ResNet widths need keys stem, inner, out; got {sorted(widths)}")
    if len(widths["inner"]) != n3 or len(widths["out"]) != n3:
        raise ValueError(f"resnet{depth} needs {n3} inner and {n3} out widths")
    if min([widths["stem"], *widths["inner"], *widths["out"]]) < 1:
        raise ValueError("every width must be at least 1")


def channel_groups(depth: int) -> list[ChannelGroup]:
    """The prunable channel sets, each scored at one ReLU, in forward order.

    The output channels of a block's conv2 feed the next block's conv1 by index, and the next
    block's shortcut by position (option A), so stage outputs can be pruned without a shared
    mask. Stage 3's outputs feed the classifier and are never pruned.
    """
    n = blocks_per_stage(depth)
    names = [f"layer{s + 1}.{b}" for s in range(3) for b in range(n)]
    groups = [ChannelGroup("relu", ("stem",), ("conv1", "bn1"), (f"{names[0]}.conv1",))]
    for i, blk in enumerate(names):
        groups.append(ChannelGroup(f"{blk}.relu1", ("inner", i), (f"{blk}.conv1", f"{blk}.bn1"), (f"{blk}.conv2",)))
        if i < 2 * n:  # stages 1 and 2
            groups.append(ChannelGroup(f"{blk}.relu2", ("out", i), (f"{blk}.conv2", f"{blk}.bn2"), (f"{names[i + 1]}.conv1",)))
    return groups


def group_rates(depth: int, rates: list[float]) -> dict[str, float]:
    """CHIP's compact rates -> one rate per channel group (PAPER.md).

    rates[0]: stem; rates[1], rates[2]: every block output of stages 1, 2; rates[3:]: one per
    block (3n), for its inner channels.
    """
    n = blocks_per_stage(depth)
    expected = 3 + 3 * n
    if len(rates) != expected:
        raise ValueError(f"resnet{depth} takes {expected} rates (1 stem + 2 stage outputs + {3 * n} blocks), got {len(rates)}")
    out = {"relu": rates[0]}
    for g in channel_groups(depth)[1:]:
        kind, i = g.width_key
        out[g.name] = rates[3 + i] if kind == "inner" else rates[1 + i // n]
    return out
