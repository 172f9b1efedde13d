"""AlexNet in its small-image form (5 convs, 3 fully connected layers), built from widths.

Layout: the CIFAR-10 AlexNet of icpm/pytorch-cifar10 (models/AlexNet.py, copied widely): convs
3x3 of 64 (stride 2), 192, 384, 256, 256 channels with bias and ReLU, no BatchNorm; a 2x2 max-pool
after convs 1, 2 and 5; then Dropout - Linear(256*2*2, 4096) - ReLU - Dropout - Linear(4096,
4096) - ReLU - Linear(4096, classes). One change: the max-pools round up (ceil_mode=True), so a
28x28 input ends at the same 2x2 map as a 32x32 one (on even sides both roundings agree, so on
3x32x32 this is that network exactly). Conv 1 gives ceil(S/2), each pool halves rounding up, so
the last map is ceil(S/16) a side: 2x2, the classifier's input, for every side S from 17 to 32.

Shapes, (C, H, W) after each layer:
    3x32x32 -> conv1 64x16x16 -> pool1 64x8x8 -> conv2 192x8x8 -> pool2 192x4x4 -> conv3 384x4x4
            -> conv4 256x4x4 -> conv5 256x4x4 -> pool5 256x2x2 -> flatten 1024 -> 4096 -> 4096 -> 10
    1x28x28 -> conv1 64x14x14 -> pool1 64x7x7 -> conv2 192x7x7 -> pool2 192x4x4 (ceil) -> conv3..5
            as above at 4x4 -> pool5 256x2x2 -> 1024 -> 4096 -> 4096 -> 10

Widths: {"convs": [5 ints], "fcs": [2 ints]} (the two hidden fully connected widths). Every width
is prunable; fc1 reads conv 5's channels x 4 positions, flattened channel-major (column c*4 + p).

Names: `features.conv{i}`, `features.relu{i}` (i = 1..5), `features.pool{i}` (i = 1, 2, 5),
`classifier.drop1|fc1|relu1|drop2|fc2|relu2|fc3`.
"""

from __future__ import annotations

import torch
from torch import nn

from prunelab.models.spec import ChannelGroup

DEFAULT_CONVS = (64, 192, 384, 256, 256)
DEFAULT_FCS = (4096, 4096)
POOL_AFTER = (1, 2, 5)
FINAL_SIDE = 2  # the last map is FINAL_SIDE x FINAL_SIDE for every accepted input
MIN_SIDE, MAX_SIDE = 17, 32  # ceil(S/16) == FINAL_SIDE


def default_widths() -> dict:
    return {"convs": list(DEFAULT_CONVS), "fcs": list(DEFAULT_FCS)}


def check_widths(widths: dict) -> None:
    if set(widths) != {"convs", "fcs"} or len(widths["convs"]) != 5 or len(widths["fcs"]) != 2:
        raise ValueError(f"alexnet widths need {{'convs': [5 ints], 'fcs': [2 ints]}}, got {widths}")
    if min([*widths["convs"], *widths["fcs"]]) < 1:
        raise ValueError("every width must be at least 1")


class AlexNet(nn.Module):
    def __init__(self, widths: dict | None = None, in_channels: int = 3, num_classes: int = 10):
        super().__init__()
        widths = widths or default_widths()
        check_widths(widths)
        self.features = nn.Sequential()
        prev = in_channels
        for i, w in enumerate(widths["convs"], start=1):
            self.features.add_module(f"conv{i}", nn.Conv2d(prev, w, 3, 2 if i == 1 else 1, 1))
            self.features.add_module(f"relu{i}", nn.ReLU(inplace=True))
            if i in POOL_AFTER:
                self.features.add_module(f"pool{i}", nn.MaxPool2d(2, 2, ceil_mode=True))
            prev = w
        fc1, fc2 = widths["fcs"]
        self.classifier = nn.Sequential()
        for name, module in [("drop1", nn.Dropout()), ("fc1", nn.Linear(prev * FINAL_SIDE ** 2, fc1)),
                             ("relu1", nn.ReLU(inplace=True)), ("drop2", nn.Dropout()), ("fc2", nn.Linear(fc1, fc2)),
                             ("relu2", nn.ReLU(inplace=True)), ("fc3", nn.Linear(fc2, num_classes))]:
            self.classifier.add_module(name, module)
        # He init, zero biases: with PyTorch's default init this BatchNorm-free stack of 8 layers
        # stayed at chance (10% top-1) after 4 epochs on the digits at 28x28, lr 0.01; He: 92%
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (N, C5, 2, 2)
        return self.classifier(torch.flatten(x, 1))  # channel-major: column c*4 + position

    def parts(self) -> list[nn.Module]:
        """forward() as a sequence: every feature layer, then the classifier cut after each hidden ReLU."""
        c = self.classifier
        return [*self.features, nn.Sequential(nn.Flatten(1), c.drop1, c.fc1, c.relu1),
                nn.Sequential(c.drop2, c.fc2, c.relu2), c.fc3]


def channel_groups() -> list[ChannelGroup]:
    """Convs 1-5 and the two hidden fully connected layers, each scored at its ReLU.

    A group's channels are dropped where its ReLU writes them; a max-pool keeps a zeroed channel
    zero, so the ReLU is the only carrier. Conv 5's consumer is fc1 (its input columns c*4..c*4+3).
    """
    groups = [ChannelGroup(f"features.relu{i}", ("convs", i - 1), (f"features.conv{i}",),
                           (f"features.conv{i + 1}" if i < 5 else "classifier.fc1",)) for i in range(1, 6)]
    groups += [ChannelGroup(f"classifier.relu{j}", ("fcs", j - 1), (f"classifier.fc{j}",), (f"classifier.fc{j + 1}",))
               for j in (1, 2)]
    return groups


def group_rates(rates: list[float]) -> dict[str, float]:
    """One rate per group in forward order: convs 1-5, then fc1 and fc2 ("[0.3]*5+[0.5]*2")."""
    groups = channel_groups()
    if len(rates) != len(groups):
        raise ValueError(f"alexnet takes {len(groups)} rates (convs 1-5, then the 2 hidden fully connected "
                         f"layers), got {len(rates)}")
    return {g.name: r for g, r in zip(groups, rates)}
