import pytest
import torch

from prunelab import counting, models, surgery
from prunelab.features import forward_hooks


def trained_like(arch: str, in_channels: int = 3, size: int = 16) -> torch.nn.Module:
    """A model with non-trivial BN statistics and affine parameters, in eval mode."""
    torch.manual_seed(0)
    m = models.build_model(arch, in_channels=in_channels)
    for mod in m.modules():
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
            torch.nn.init.uniform_(mod.weight, 0.5, 1.5)
            torch.nn.init.uniform_(mod.bias, -0.2, 0.2)
    m.train()
    with torch.no_grad():
        for _ in range(3):
            m(torch.randn(16, in_channels, size, size))
    return m.eval()


def test_select_channels_keeps_highest_ascending_ties_to_lower_index():
    s = torch.tensor([0.5, 2.0, 0.5, 3.0, 0.5])
    assert surgery.select_channels(s, 2).tolist() == [1, 3]
    assert surgery.select_channels(s, 3).tolist() == [0, 1, 3]
    assert surgery.select_channels(s, 4).tolist() == [0, 1, 2, 3]


# (arch, rates, input size, groups whose pruning equals zeroing them). CIFAR ResNets' option-A
# shortcuts add block outputs by position, so only their inner channels are tested that way.
EQUIVALENCE = [
    ("resnet20", [0.0, 0.0, 0.0] + [0.5, 0.25, 0.75] * 3, 32, lambda g: g.name.endswith("relu1")),
    ("resnet56", [0.0, 0.0, 0.0] + [0.4] * 27, 16, lambda g: g.name.endswith("relu1")),
    ("vgg16", [0.3] * 6 + [0.6] * 6, 32, lambda g: True),
    ("resnet50", [0.25] + [0.3, 0.5, 0.4] + [0.5, 0.6] * 8, 64, lambda g: True),
]


@pytest.mark.parametrize("arch,rates,size,zeroable", EQUIVALENCE, ids=[e[0] for e in EQUIVALENCE])
def test_pruning_equals_zeroing_the_same_channels(arch, rates, size, zeroable):
    model = trained_like(arch, size=size)
    widths = models.default_widths(arch)
    groups = models.channel_groups(arch)
    torch.manual_seed(1)
    scores = {g.name: torch.rand(models.get_width(widths, g.width_key)) for g in groups}
    keep = surgery.keep_indices(arch, widths, scores, rates)
    pruned, new_widths = surgery.prune(model, arch, widths, keep, 3, 10)
    assert new_widths == models.pruned_widths(arch, rates)

    dropped = {}  # carrier module -> bool mask of the channels to zero
    for g in groups:
        if zeroable(g) and len(keep[g.name]) < models.get_width(widths, g.width_key):
            mask = torch.ones(models.get_width(widths, g.width_key), dtype=torch.bool)
            mask[keep[g.name]] = False
            dropped.update({name: mask for name in g.carriers})
    assert dropped, "nothing pruned"

    def zero_dropped(name, out):
        out[:, dropped[name]] = 0

    x = torch.randn(4, 3, size, size)
    with torch.no_grad(), forward_hooks(model, list(dropped), zero_dropped):
        expected = model(x)
    got = pruned.eval()(x)
    assert torch.allclose(got, expected, atol=1e-5), f"{(got - expected).abs().max()}"
    assert counting.count_params(pruned) < counting.count_params(model)


def test_every_tensor_is_transferred_by_index():
    arch = "resnet20"
    model = trained_like(arch)
    widths = models.default_widths(arch)
    rates = [0.25, 0.5, 0.25] + [0.5] * 9
    torch.manual_seed(3)
    scores = {g.name: torch.rand(models.get_width(widths, g.width_key)) for g in models.channel_groups(arch)}
    keep = surgery.keep_indices(arch, widths, scores, rates)
    pruned, _ = surgery.prune(model, arch, widths, keep, 3, 10)
    old, new = model.state_dict(), pruned.state_dict()
    k_stem, k_out0, k_in0 = keep["relu"], keep["layer1.0.relu2"], keep["layer1.0.relu1"]
    for leaf in ("weight", "bias", "running_mean", "running_var"):
        assert torch.equal(new[f"bn1.{leaf}"], old[f"bn1.{leaf}"][k_stem])
        assert torch.equal(new[f"layer1.0.bn2.{leaf}"], old[f"layer1.0.bn2.{leaf}"][k_out0])
    assert torch.equal(new["layer1.0.conv1.weight"], old["layer1.0.conv1.weight"][k_in0][:, k_stem])
    assert torch.equal(new["layer1.0.conv2.weight"], old["layer1.0.conv2.weight"][k_out0][:, k_in0])
    assert torch.equal(new["layer1.1.conv1.weight"][:, :], old["layer1.1.conv1.weight"][keep["layer1.1.relu1"]][:, k_out0])
    assert torch.equal(new["fc.weight"], old["fc.weight"])  # stage 3 output is never pruned
    assert pruned(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_scores_of_the_wrong_length_are_refused():
    arch = "resnet20"
    widths = models.default_widths(arch)
    scores = {g.name: torch.rand(3) for g in models.channel_groups(arch)}
    with pytest.raises(ValueError, match="3 scores for 16 channels"):
        surgery.keep_indices(arch, widths, scores, [0.1] * 12)


@pytest.mark.parametrize("keep", [0, -1, 6])
def test_select_channels_refuses_to_keep_none_or_more_than_there_are(keep):
    """A layer keeps at least one channel and at most all of its 5: keeping 0 would leave a
    zero-width layer, keeping 6 of 5 cannot be done."""
    with pytest.raises(ValueError, match=f"cannot keep {keep} of 5 channels"):
        surgery.select_channels(torch.tensor([0.5, 2.0, 0.5, 3.0, 0.5]), keep)
    assert surgery.select_channels(torch.tensor([0.5, 2.0, 0.5, 3.0, 0.5]), 5).tolist() == [0, 1, 2, 3, 4]
    assert surgery.select_channels(torch.tensor([0.5, 2.0, 0.5, 3.0, 0.5]), 1).tolist() == [3]
