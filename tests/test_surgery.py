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


def test_ties_go_to_the_lower_index_among_many_channels():
    """100 channels, score 1 on every third (0, 3, .., 99: 34 of them) and 0 elsewhere: keeping 40
    keeps the 34 and then the 6 lowest-indexed zeros, 1 2 4 5 7 8 (by hand), however the sort
    breaks ties internally."""
    scores = (torch.arange(100) % 3 == 0).double()
    expected = sorted(list(range(0, 100, 3)) + [1, 2, 4, 5, 7, 8])
    assert surgery.select_channels(scores, 40).tolist() == expected


def test_scores_are_compared_at_their_own_precision():
    """CHIP's scores are float64 differences of large norms: two that differ by 1e-12 are not a
    tie, the higher is kept (in float32 they would round to the same number and tie)."""
    scores = torch.tensor([1.0, 1.0 + 1e-12, 1.0 - 1e-12], dtype=torch.float64)
    assert surgery.select_channels(scores, 1).tolist() == [1]
    assert surgery.select_channels(scores, 2).tolist() == [0, 1]


def test_input_columns_are_each_kept_channel_s_flattened_positions():
    """A consumer of torch.flatten(x, 1) on (N, C, H, W) reads channel c at columns c*H*W ..
    c*H*W + H*W - 1: the kept columns select exactly the kept channels' features (checked against
    torch.flatten itself); a consumer with fewer inputs than channels, or a number of inputs
    that is not a multiple of them, is refused."""
    x = torch.randn(2, 3, 2, 2)
    keep = torch.tensor([0, 2])
    cols = surgery.input_columns(keep, 3, 12)
    assert cols.tolist() == [0, 1, 2, 3, 8, 9, 10, 11]
    assert torch.equal(torch.flatten(x, 1)[:, cols], torch.flatten(x[:, keep], 1))
    assert torch.equal(surgery.input_columns(keep, 3, 3), keep)  # a conv: P = 1
    for channels, in_features in ((8, 4), (3, 10), (3, 0)):
        with pytest.raises(ValueError, match=f"a consumer with {in_features} inputs cannot read {channels} channels"):
            surgery.input_columns(keep, channels, in_features)


def test_groups_left_out_of_keep_are_not_pruned():
    """keep may name some channel groups only (the sensitivity stage prunes one slot): those
    are pruned, every other group keeps its width, and the pruned network equals the unpruned
    one with the dropped channels zeroed (forward hooks, as above)."""
    arch = "resnet20"
    model = trained_like(arch)
    widths = models.default_widths(arch)
    group = next(g for g in models.channel_groups(arch) if g.name == "layer1.1.relu1")
    keep = {group.name: torch.tensor([0, 3, 4, 9, 15])}
    pruned, new_widths = surgery.prune(model, arch, widths, keep, 3, 10)
    expected_widths = models.default_widths(arch)
    models.set_width(expected_widths, group.width_key, 5)
    assert new_widths == expected_widths
    mask = torch.ones(16, dtype=torch.bool)
    mask[keep["layer1.1.relu1"]] = False

    def zero_dropped(_name, out):
        out[:, mask] = 0

    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad(), forward_hooks(model, list(group.carriers), zero_dropped):
        expected = model(x)
    assert torch.allclose(pruned.eval()(x), expected, atol=1e-5)


def test_more_scores_than_channels_are_refused():
    """One score per channel: 17 scores for a 16-channel layer are refused, as too few are."""
    arch = "resnet20"
    widths = models.default_widths(arch)
    scores = {g.name: torch.rand(models.get_width(widths, g.width_key) + 1) for g in models.channel_groups(arch)}
    with pytest.raises(ValueError, match="17 scores for 16 channels"):
        surgery.keep_indices(arch, widths, scores, [0.1] * 12)
