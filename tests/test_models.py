import pytest
import torch

from prunelab import models
from prunelab.models.resnet_cifar import OptionAShortcut


CIFAR_RESNETS = [a for a in models.ARCHS if a.startswith("resnet") and a != "resnet50"]


@pytest.mark.parametrize("arch", CIFAR_RESNETS)
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


def test_resnet50_is_torchvisions_resnet50():
    """Same parameter names and shapes, and the same function once torchvision's weights are loaded."""
    import torchvision

    torch.manual_seed(0)
    ours, theirs = models.build_model("resnet50", num_classes=1000), torchvision.models.resnet50()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(ours.eval()(x), theirs.eval()(x))


def test_vgg16_layout_and_groups():
    m = models.build_model("vgg16").eval()
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert sum(isinstance(x, torch.nn.Conv2d) for x in m.modules()) == 13
    assert all(x.bias is not None for x in m.modules() if isinstance(x, torch.nn.Conv2d))
    names = [g.name for g in models.channel_groups("vgg16")]
    assert len(names) == 12 and names[1] == "features.pool2" and names[9] == "features.pool10"
    assert names[2] == "features.relu3" and "features.relu13" not in names
    with pytest.raises(ValueError, match="takes 12 rates"):
        models.group_rates("vgg16", [0.1] * 13)


def test_resnet50_groups_follow_the_paper():
    groups = models.channel_groups("resnet50")
    assert len(groups) == 1 + 2 * 16 + 3
    rates = [0.0, 0.1, 0.2, 0.3] + [0.5 + 0.01 * i for i in range(16)]
    per_group = models.group_rates("resnet50", rates)
    assert per_group["layer1.0.relu3"] == 0.1 and per_group["layer3.0.relu3"] == 0.3
    assert per_group["layer1.0.relu1"] == per_group["layer1.0.relu2"] == 0.5
    assert per_group["layer4.2.relu2"] == pytest.approx(0.65)
    w = models.pruned_widths("resnet50", rates)
    assert w["out"] == [230, 409, 716, 2048] and w["conv1"][0] == int(64 * 0.5) and w["conv2"][-1] == int(512 * 0.35)
    stage2 = next(g for g in groups if g.name == "layer2.0.relu3")
    assert set(stage2.carriers) == {f"layer2.{b}.relu3" for b in range(4)}
    assert "layer2.0.downsample.0" in stage2.producers and "layer3.0.downsample.0" in stage2.consumers
