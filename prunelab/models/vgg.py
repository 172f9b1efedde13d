"""VGG-16 with BatchNorm for CIFAR (the HRank/CHIP layout), built from widths.

cfg [64, 64, M, 128, 128, M, 256, 256, 256, M, 512, 512, 512, M, 512, 512, 512]; every conv has a
bias, then BN, then ReLU; then AvgPool2d(2) and Linear(512, 512) - BatchNorm1d - ReLU - Linear.
Widths: {"convs": [13 ints]}. Conv 13 feeds the classifier and is never pruned.

Names: `features.conv{i}`, `features.bn{i}`, `features.relu{i}` (i = 1..13), `features.pool{i}`
for the max-pool after conv i (2, 4, 7, 10), `avgpool`, `classifier.linear1|norm1|relu1|linear2`.
"""

from __future__ import annotations

import torch
from torch import nn

from prunelab.models.spec import ChannelGroup

DEFAULT_WIDTHS = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
POOL_AFTER = (2, 4, 7, 10)
PRUNABLE = 12


def default_widths() -> dict:
    return {"convs": list(DEFAULT_WIDTHS)}


def check_widths(widths: dict) -> None:
    if set(widths) != {"convs"} or len(widths["convs"]) != len(DEFAULT_WIDTHS):
        raise ValueError(f"vgg16 widths need {{'convs': [{len(DEFAULT_WIDTHS)} ints]}}, got {widths}")
    if min(widths["convs"]) < 1:
        raise ValueError("every width must be at least 1")


class VGG16(nn.Module):
    def __init__(self, widths: dict | None = None, in_channels: int = 3, num_classes: int = 10):
        super().__init__()
        widths = widths or default_widths()
        check_widths(widths)
        layers, prev = [], in_channels
        for i, w in enumerate(widths["convs"], start=1):
            layers += [(f"conv{i}", nn.Conv2d(prev, w, 3, padding=1, bias=True)), (f"bn{i}", nn.BatchNorm2d(w)),
                       (f"relu{i}", nn.ReLU(inplace=True))]
            if i in POOL_AFTER:
                layers.append((f"pool{i}", nn.MaxPool2d(2, 2)))
            prev = w
        self.features = nn.Sequential()
        for name, module in layers:
            self.features.add_module(name, module)
        self.avgpool = nn.AvgPool2d(2)
        self.classifier = nn.Sequential()
        for name, module in [("linear1", nn.Linear(prev, 512)), ("norm1", nn.BatchNorm1d(512)),
                             ("relu1", nn.ReLU(inplace=True)), ("linear2", nn.Linear(512, num_classes))]:
            self.classifier.add_module(name, module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))  # (N, 512, 1, 1) for 32x32 inputs
        return self.classifier(torch.flatten(x, 1))

    def parts(self) -> list[nn.Module]:
        """forward() as a sequence: every feature layer, then the head; composing them equals forward()."""
        return [*self.features, nn.Sequential(self.avgpool, nn.Flatten(1), self.classifier)]


def channel_groups() -> list[ChannelGroup]:
    """Convs 1..12; scored at the ReLU, or after the max-pool that follows convs 2, 4, 7, 10."""
    return [ChannelGroup(f"features.pool{i}" if i in POOL_AFTER else f"features.relu{i}", ("convs", i - 1),
                         (f"features.conv{i}", f"features.bn{i}"), (f"features.conv{i + 1}",))
            for i in range(1, PRUNABLE + 1)]


def group_rates(rates: list[float]) -> dict[str, float]:
    if len(rates) != PRUNABLE:
        raise ValueError(f"vgg16 takes {PRUNABLE} rates (convs 1-12; conv 13 is never pruned), got {len(rates)}")
    return {g.name: r for g, r in zip(channel_groups(), rates)}
