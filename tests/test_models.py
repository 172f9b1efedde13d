import pytest
import torch

from prunelab import models
from prunelab.models.resnet_cifar import OptionAShortcut


@pytest.mark.parametrize("arch", models.ARCHS)
@pytest.mark.parametrize("in_channels,size", [(3, 32), (1, 8)])
def test_every_depth_builds_and_runs(arch, in_channels, size):
    depth = int(arch[6:])
    m = models.build_model(arch, in_channels=in_channels, num_classes=7).eval()
    assert m(torch.randn(2, in_channels, size, size)).shape == (2, 7)
    convs = [n for n, x in m.named_modules() if isinstance(x, torch.nn.Conv2d)]
    assert len(convs) + 1 == depth  # 6n+2 = convs + fc
    groups = models.channel_groups(arch)
    n = (depth - 2) // 6
    assert len(groups) == 1 + 3 * n + 2 * n  # stem, every inner, stage 1-2 outputs
    names = dict(m.named_modules())
    assert all(isinstance(names[g.name], torch.nn.ReLU) for g in groups)


def test_option_a_shortcut_pads_and_crops_like_chip():
    x = torch.arange(16.0)[None, :, None, None].expand(1, 16, 4, 4)
    y = OptionAShortcut(16, 13, 1)(x)  # (13-16)//2 = -2 in front, -1 behind
    assert y[0, :, 0, 0].tolist() == list(range(2, 15))
    z = OptionAShortcut(13, 27, 2)(y)  # 7 zeros in front, 7 behind, subsampled
    assert z.shape == (1, 27, 2, 2)
    assert z[0, :, 0, 0].tolist() == [0] * 7 + list(range(2, 15)) + [0] * 7


def test_unknown_arch_lists_the_allowed():
    with pytest.raises(ValueError, match="allowed: resnet20"):
        models.build_model("resnet57")


def test_group_rates_follow_paper_layout():
    rates = [0.0, 0.1, 0.2] + [0.3 + 0.001 * i for i in range(27)]
    g = models.group_rates("resnet56", rates)
    assert g["relu"] == 0.0
    assert g["layer1.8.relu2"] == 0.1 and g["layer2.0.relu2"] == 0.2
    assert g["layer1.0.relu1"] == 0.3 and g["layer3.8.relu1"] == pytest.approx(0.326)
    assert "layer3.0.relu2" not in g
