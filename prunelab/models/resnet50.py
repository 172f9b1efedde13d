"""ResNet-50 for ImageNet in torchvision's layout, built from widths.

Parameter names equal torchvision's (a torchvision resnet50 state_dict loads as it is); only
parameter-free ReLUs are split per use (`relu1`, `relu2`, `relu3` in every block) so each map
can be hooked by name. Stride sits on conv2; the first block of every stage has a
`downsample` 1x1 conv + BN.

Widths: {"stem": int, "out": [4 stage output widths], "conv1": [16], "conv2": [16]} (blocks in
forward order). The stage-4 output (2048, feeding fc) is never pruned.
"""

from __future__ import annotations

import torch
from torch import nn

from prunelab.models.spec import ChannelGroup

STAGES = ((64, 256, 3, 1), (128, 512, 4, 2), (256, 1024, 6, 2), (512, 2048, 3, 2))  # (mid, out, blocks, stride)
BLOCKS = [(s, b) for s, (_, _, n, _) in enumerate(STAGES, start=1) for b in range(n)]


def default_widths() -> dict:
    mids = [STAGES[s - 1][0] for s, _ in BLOCKS]
    return {"stem": 64, "out": [o for _, o, _, _ in STAGES], "conv1": list(mids), "conv2": list(mids)}


def check_widths(widths: dict) -> None:
    if set(widths) != {"stem", "out", "conv1", "conv2"} or len(widths["out"]) != 4 or \
            len(widths["conv1"]) != len(BLOCKS) or len(widths["conv2"]) != len(BLOCKS):
        raise ValueError(f"resnet50 widths need stem, out [4], conv1 [16], conv2 [16]; got {sorted(widths)}")
    if min([widths["stem"], *widths["out"], *widths["conv1"], *widths["conv2"]]) < 1:
        raise ValueError("every width must be at least 1")


class Bottleneck(nn.Module):
    def __init__(self, in_channels: int, mid1: int, mid2: int, out: int, stride: int, downsample: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, mid1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid1)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(mid1, mid2, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid2)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(mid2, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu3 = nn.ReLU(inplace=True)
        self.downsample = nn.Sequential(nn.Conv2d(in_channels, out, 1, stride, bias=False), nn.BatchNorm2d(out)) \
            if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu1(self.bn1(self.conv1(x)))
        y = self.relu2(self.bn2(self.conv2(y)))
        return self.relu3(self.bn3(self.conv3(y)) + identity)


class ResNet50(nn.Module):
    def __init__(self, widths: dict | None = None, in_channels: int = 3, num_classes: int = 1000):
        super().__init__()
        widths = widths or default_widths()
        check_widths(widths)
        self.conv1 = nn.Conv2d(in_channels, widths["stem"], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths["stem"])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        prev, i = widths["stem"], 0
        for s, (_, _, n, stride) in enumerate(STAGES, start=1):
            out = widths["out"][s - 1]
            blocks = []
            for b in range(n):
                blocks.append(Bottleneck(prev, widths["conv1"][i], widths["conv2"][i], out,
                                         stride if b == 0 else 1, downsample=b == 0))
                prev, i = out, i + 1
            self.add_module(f"layer{s}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(prev, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))

    def parts(self) -> list[nn.Module]:
        """forward() as a sequence: stem, every bottleneck, head; composing them equals forward()."""
        blocks = [blk for stage in (self.layer1, self.layer2, self.layer3, self.layer4) for blk in stage]
        return [nn.Sequential(self.conv1, self.bn1, self.relu, self.maxpool), *blocks,
                nn.Sequential(self.avgpool, nn.Flatten(1), self.fc)]


def channel_groups() -> list[ChannelGroup]:
    """Stem; conv1 and conv2 of every bottleneck; the shared output channels of stages 1-3.

    A stage's output channels are one set for all its blocks (identity shortcuts add them up),
    scored at the first block's relu3; every conv3/bn3 of the stage and its downsample produce
    them, and every later block's conv1 and the next stage's first conv1/downsample consume them.
    """
    groups = [ChannelGroup("relu", ("stem",), ("conv1", "bn1"), ("layer1.0.conv1", "layer1.0.downsample.0"))]
    for s in range(1, 5):
        names = [f"layer{s}.{b}" for t, b in BLOCKS if t == s]
        for blk in names:
            i = BLOCKS.index((s, int(blk.rsplit(".", 1)[1])))
            groups.append(ChannelGroup(f"{blk}.relu1", ("conv1", i), (f"{blk}.conv1", f"{blk}.bn1"), (f"{blk}.conv2",)))
            groups.append(ChannelGroup(f"{blk}.relu2", ("conv2", i), (f"{blk}.conv2", f"{blk}.bn2"), (f"{blk}.conv3",)))
        if s < 4:
            producers = [m for blk in names for m in (f"{blk}.conv3", f"{blk}.bn3")]
            producers += [f"layer{s}.0.downsample.0", f"layer{s}.0.downsample.1"]
            consumers = [f"{blk}.conv1" for blk in names[1:]] + [f"layer{s + 1}.0.conv1", f"layer{s + 1}.0.downsample.0"]
            groups.append(ChannelGroup(f"layer{s}.0.relu3", ("out", s - 1), tuple(producers), tuple(consumers),
                                       maps=tuple(f"{blk}.relu3" for blk in names)))
    return groups


def group_rates(rates: list[float]) -> dict[str, float]:
    """rates[0]: stem; rates[1..3]: stage 1-3 outputs; rates[4..19]: one per bottleneck, for conv1 and conv2."""
    if len(rates) != 4 + len(BLOCKS):
        raise ValueError(f"resnet50 takes {4 + len(BLOCKS)} rates (1 stem + 3 stage outputs + 16 bottlenecks), "
                         f"got {len(rates)}")
    out = {}
    for g in channel_groups():
        kind = g.width_key[0]
        out[g.name] = rates[0] if kind == "stem" else rates[1 + g.width_key[1]] if kind == "out" else rates[4 + g.width_key[1]]
    return out
