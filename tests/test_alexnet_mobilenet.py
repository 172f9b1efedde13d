"""SNPFI's own networks: AlexNet (small-image form) and MobileNetV1 (CIFAR), with depthwise convs.

References are written here from the layouts' descriptions (models/alexnet.py,
models/mobilenet_v1.py), not imported from the code under test.
"""

import copy
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from prunelab import cli, config, counting, models, recovery, surgery
from prunelab.criteria import FEATURE_STATISTICS, filter_l1, random_scores, snpfi
from prunelab.features import channel_statistics, forward_hooks
from prunelab.sparsity import parse_sparsity

ROOT = Path(__file__).resolve().parents[1]
ARCHS = ("alexnet", "mobilenet_v1")
SHAPES = ((1, 28, 28), (3, 32, 32))
RATES = {"alexnet": "[0.3]*5+[0.5]*2", "mobilenet_v1": "[0.]+[0.3]*5+[0.5]*7"}
# narrow versions for the criteria and recovery tests (widths are data), so games stay cheap
SMALL = {"alexnet": {"convs": [6, 8, 10, 8, 6], "fcs": [12, 10]},
         "mobilenet_v1": {"stem": 4, "pointwise": [6, 8, 8, 10, 10, 12, 12, 12, 12, 12, 12, 16, 16]}}


def trained_like(arch: str, widths: dict | None = None, in_channels: int = 3, size: int = 32) -> nn.Module:
    """A model with non-trivial BN statistics and affine parameters and non-zero biases, in eval mode.

    The running statistics are the plain average over the batches (momentum None): estimates
    that lag behind, over MobileNet's 27 BatchNorms, leave every image with the same logits.
    """
    torch.manual_seed(0)
    m = models.build_model(arch, widths, in_channels=in_channels)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            nn.init.uniform_(mod.weight, 0.5, 1.5)
            nn.init.uniform_(mod.bias, -0.2, 0.2)
            mod.momentum = None
        elif isinstance(mod, (nn.Conv2d, nn.Linear)) and mod.bias is not None:  # AlexNet's start at zero
            nn.init.uniform_(mod.bias, -0.1, 0.1)
    m.train()
    with torch.no_grad():
        for _ in range(3):
            m(torch.randn(16, in_channels, size, size))
    return m.eval()


def carriers(arch: str, group_name: str) -> list[str]:
    """Where the group's channels live, from the layout: the ReLU after the producer, and for
    MobileNet also the ReLU after the depthwise conv that carries them into the next block."""
    if arch == "alexnet":
        return [group_name]
    block = 0 if group_name == "relu" else int(group_name.split(".")[1]) + 1
    return [group_name, f"layers.{block}.relu1"]


# ---------------------------------------------------------------- layouts


def shapes_after(model: nn.Module, names: list[str], shape) -> list[tuple]:
    seen = {}
    with torch.no_grad(), forward_hooks(model, names, lambda n, out: seen.__setitem__(n, tuple(out.shape[1:]))):
        model.eval()(torch.zeros(2, *shape))
    return [seen[n] for n in names]


def test_alexnet_shapes_for_mnist_and_cifar():
    names = ["features.relu1", "features.pool1", "features.relu2", "features.pool2", "features.relu3",
             "features.relu4", "features.relu5", "features.pool5", "classifier.relu1", "classifier.relu2",
             "classifier.fc3"]
    cifar = [(64, 16, 16), (64, 8, 8), (192, 8, 8), (192, 4, 4), (384, 4, 4), (256, 4, 4), (256, 4, 4),
             (256, 2, 2), (4096,), (4096,), (10,)]
    mnist = [(64, 14, 14), (64, 7, 7), (192, 7, 7), (192, 4, 4)] + cifar[4:]
    assert shapes_after(models.build_model("alexnet", in_channels=3), names, (3, 32, 32)) == cifar
    assert shapes_after(models.build_model("alexnet", in_channels=1), names, (1, 28, 28)) == mnist
    m = models.build_model("alexnet")
    assert sum(isinstance(x, nn.Conv2d) for x in m.modules()) == 5
    assert sum(isinstance(x, nn.Linear) for x in m.modules()) == 3


def test_alexnet_starts_from_he_init():
    """std sqrt(2 / fan_in) and zero biases: the BatchNorm-free net does not train from PyTorch's default."""
    torch.manual_seed(0)
    m = models.build_model("alexnet")
    for layer in (m.features.conv4, m.classifier.fc2):
        fan_in = layer.weight[0].numel()
        assert layer.weight.std().item() == pytest.approx((2 / fan_in) ** 0.5, rel=0.02)
        assert not layer.bias.any()


def test_alexnet_on_32x32_is_the_common_cifar_alexnet():
    """icpm/pytorch-cifar10's layout (floor pools), weights loaded in order: the same function."""
    ref = nn.Sequential(
        nn.Conv2d(3, 64, 3, 2, 1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(64, 192, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(), nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(),
        nn.Linear(256 * 2 * 2, 4096), nn.ReLU(), nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 10))
    ours = models.build_model("alexnet").eval()
    ref.load_state_dict(dict(zip(ref.state_dict(), ours.state_dict().values())))
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref.eval()(x), atol=1e-6)


class RefBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False)
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv2 = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


class RefMobileNet(nn.Module):
    """kuangliu/pytorch-cifar's MobileNet as its README layout reads: cfg with (planes, stride)."""

    cfg = [64, (128, 2), 128, (256, 2), 256, (512, 2), 512, 512, 512, 512, 512, (1024, 2), 1024]

    def __init__(self, in_channels=3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 32, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        blocks, cin = [], 32
        for c in self.cfg:
            cout, stride = (c, 1) if isinstance(c, int) else c
            blocks.append(RefBlock(cin, cout, stride))
            cin = cout
        self.layers = nn.Sequential(*blocks)
        self.linear = nn.Linear(1024, 10)

    def forward(self, x):
        out = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.linear(F.avg_pool2d(out, 2).flatten(1))


@pytest.mark.parametrize("shape", SHAPES, ids=["1x28x28", "3x32x32"])
def test_mobilenet_is_kuangliu_s_with_the_same_parameter_names(shape):
    ours = trained_like("mobilenet_v1", in_channels=shape[0], size=shape[1])
    ref = RefMobileNet(shape[0])
    ref.load_state_dict(ours.state_dict(), strict=True)  # same names and shapes
    x = torch.randn(3, *shape)
    with torch.no_grad():
        got, want = ours(x), ref.eval()(x)
    assert torch.allclose(got, want, atol=1e-5), f"{(got - want).abs().max()}"
    dw = [m for n, m in ours.named_modules() if n.endswith(".conv1") and n.startswith("layers.")]
    assert len(dw) == 13 and all(m.groups == m.in_channels == m.out_channels for m in dw)


def runs(arch: str, side: int, in_channels: int = 1) -> bool:
    try:
        with torch.no_grad():
            models.build_model(arch, in_channels=in_channels).eval()(torch.zeros(1, in_channels, side, side))
        return True
    except RuntimeError:
        return False


def test_input_sizes_are_the_layouts_own_limits():
    lo, hi = models.input_sizes("alexnet")
    assert runs("alexnet", lo) and runs("alexnet", hi) and runs("alexnet", 28)
    assert not runs("alexnet", lo - 1) and not runs("alexnet", hi + 1) and not runs("alexnet", 8)
    assert models.input_sizes("mobilenet_v1") == (1, None)
    assert all(runs("mobilenet_v1", s) for s in (1, 8, 28, 32, 64))
    assert models.paper_input("alexnet") == ((1, 28, 28), 10) and models.paper_input("mobilenet_v1") == ((3, 32, 32), 10)


def test_rate_lists_one_rate_per_group_in_forward_order():
    alex = models.group_rates("alexnet", parse_sparsity("[0.1]*5+[0.5]*2"))
    assert list(alex) == [f"features.relu{i}" for i in range(1, 6)] + ["classifier.relu1", "classifier.relu2"]
    assert list(alex.values()) == [0.1] * 5 + [0.5] * 2
    assert models.pruned_widths("alexnet", parse_sparsity("[0.1]*5+[0.5]*2")) == {
        "convs": [int(64 * 0.9), int(192 * 0.9), int(384 * 0.9), int(256 * 0.9), int(256 * 0.9)], "fcs": [2048, 2048]}
    mob = models.group_rates("mobilenet_v1", parse_sparsity("[0.]+[0.25]*12"))
    assert list(mob) == ["relu"] + [f"layers.{b}.relu2" for b in range(12)]
    w = models.pruned_widths("mobilenet_v1", parse_sparsity("[0.]+[0.25]*12"))
    assert w["stem"] == 32 and w["pointwise"] == [48, 96, 96, 192, 192] + [384] * 6 + [768, 1024]
    with pytest.raises(ValueError, match="alexnet takes 7 rates"):
        models.group_rates("alexnet", [0.1] * 8)
    with pytest.raises(ValueError, match="mobilenet_v1 takes 13 rates"):
        models.group_rates("mobilenet_v1", [0.1] * 14)


# ---------------------------------------------------------------- surgery


def random_keep(arch, widths, rates, seed=1):
    torch.manual_seed(seed)
    scores = {g.name: torch.rand(models.get_width(widths, g.width_key)) for g in models.channel_groups(arch)}
    return surgery.keep_indices(arch, widths, scores, parse_sparsity(rates))


def assert_pruned_equals_zeroed(arch, model, pruned, keep, widths, shape):
    dropped = {}  # carrier -> bool mask of the channels to zero
    for g in models.channel_groups(arch):
        if g.name in keep:
            mask = torch.ones(models.get_width(widths, g.width_key), dtype=torch.bool)
            mask[keep[g.name]] = False
            dropped.update({name: mask for name in carriers(arch, g.name)})

    def zero(name, out):
        out[:, dropped[name]] = 0

    x = torch.randn(4, *shape)
    with torch.no_grad():
        with forward_hooks(model, list(dropped), zero):
            expected = model(x)
        got = pruned.eval()(x)
        unpruned = model(x)
    assert torch.allclose(got, expected, atol=1e-5), f"{(got - expected).abs().max()}"
    assert not torch.allclose(expected, unpruned, atol=1e-4), "zeroing changed nothing: a vacuous comparison"


CASES = [("alexnet", (1, 28, 28)), ("alexnet", (3, 32, 32)), ("mobilenet_v1", (3, 32, 32)), ("mobilenet_v1", (1, 28, 28))]


@pytest.mark.parametrize("arch,shape", CASES, ids=[f"{a}-{s[1]}" for a, s in CASES])
def test_pruning_every_group_at_once_equals_zeroing_them(arch, shape):
    model = trained_like(arch, in_channels=shape[0], size=shape[1])
    widths = models.default_widths(arch)
    keep = random_keep(arch, widths, RATES[arch])
    pruned, new_widths = surgery.prune(model, arch, widths, keep, shape[0], 10)
    assert new_widths == models.pruned_widths(arch, parse_sparsity(RATES[arch]))
    assert_pruned_equals_zeroed(arch, model, pruned, keep, widths, shape)
    assert counting.count_params(pruned) < counting.count_params(model)


GROUPS = [(a, g.name) for a in ARCHS for g in models.channel_groups(a)]


@pytest.mark.parametrize("arch,name", GROUPS, ids=[f"{a}:{n}" for a, n in GROUPS])
def test_pruning_each_group_alone_equals_zeroing_it(arch, name):
    shape = (3, 32, 32)
    model = trained_like(arch)
    widths = models.default_widths(arch)
    width = models.get_width(widths, next(g for g in models.channel_groups(arch) if g.name == name).width_key)
    torch.manual_seed(2)
    keep = {name: torch.randperm(width)[: width // 2].sort().values}
    pruned, _ = surgery.prune(model, arch, widths, keep, 3, 10)
    assert_pruned_equals_zeroed(arch, model, pruned, keep, widths, shape)


def test_alexnet_conv5_pruning_selects_fc1_columns_channel_major():
    model = trained_like("alexnet")
    widths = models.default_widths("alexnet")
    k = torch.tensor([0, 3, 100, 255])
    pruned, new_widths = surgery.prune(model, "alexnet", widths, {"features.relu5": k}, 3, 10)
    old, new = model.state_dict(), pruned.state_dict()
    columns = [4 * c + p for c in k.tolist() for p in range(4)]  # flatten of (C, 2, 2): channel c -> 4c..4c+3
    assert torch.equal(new["classifier.fc1.weight"], old["classifier.fc1.weight"][:, columns])
    assert torch.equal(new["features.conv5.weight"], old["features.conv5.weight"][k])
    assert torch.equal(new["features.conv5.bias"], old["features.conv5.bias"][k])
    assert new_widths["convs"][4] == 4


def test_mobilenet_pruning_shrinks_the_depthwise_conv_and_its_groups():
    model = trained_like("mobilenet_v1")
    widths = models.default_widths("mobilenet_v1")
    k = torch.tensor([1, 5, 6, 60, 127])  # block 2's pointwise output, fed to block 3's depthwise conv
    pruned, _ = surgery.prune(model, "mobilenet_v1", widths, {"layers.1.relu2": k}, 3, 10)
    old, new, mods = model.state_dict(), pruned.state_dict(), dict(pruned.named_modules())
    assert torch.equal(new["layers.1.conv2.weight"], old["layers.1.conv2.weight"][k])
    for leaf in ("weight", "bias", "running_mean", "running_var"):
        assert torch.equal(new[f"layers.1.bn2.{leaf}"], old[f"layers.1.bn2.{leaf}"][k])
        assert torch.equal(new[f"layers.2.bn1.{leaf}"], old[f"layers.2.bn1.{leaf}"][k])
    assert torch.equal(new["layers.2.conv1.weight"], old["layers.2.conv1.weight"][k])  # (5, 1, 3, 3)
    dw = mods["layers.2.conv1"]
    assert dw.groups == dw.in_channels == dw.out_channels == 5 and dw.weight.shape == (5, 1, 3, 3)
    assert torch.equal(new["layers.2.conv2.weight"], old["layers.2.conv2.weight"][:, k])


# ---------------------------------------------------------------- counting


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("pruned", [False, True])
def test_macs_are_half_of_torch_flop_counter(arch, pruned):
    widths = models.pruned_widths(arch, parse_sparsity(RATES[arch])) if pruned else None
    for shape in SHAPES:
        m = models.build_model(arch, widths, in_channels=shape[0]).eval()
        with FlopCounterMode(display=False) as fc:
            m(torch.zeros(1, *shape))
        c = counting.count(m, shape)
        assert 2 * c["macs"] == fc.get_total_flops()
        assert c["params"] == sum(p.numel() for p in m.parameters())


def test_depthwise_convs_count_one_input_channel_per_output():
    """Block 1's depthwise conv of MobileNet on 32x32: 32 channels x 9 taps x 32x32 positions."""
    m = models.build_model("mobilenet_v1")
    dw = m.layers[0].conv1
    whole = counting.count_ops(m, (3, 32, 32))["macs"]
    m.layers[0].conv1 = nn.Identity()  # same shapes downstream: a depthwise conv keeps C, H, W at stride 1
    assert whole - counting.count_ops(m, (3, 32, 32))["macs"] == 32 * 9 * 32 * 32
    assert dw.groups == 32


def test_flops_paper_adds_conv_bias_bn_and_pool_terms():
    """alexnet: conv biases only (no BN); mobilenet: no biases, 2 ops per BN input, 1 per pool input."""
    alex = counting.count(models.build_model("alexnet"), (3, 32, 32))
    conv_outputs = 64 * 16 * 16 + 192 * 8 * 8 + 384 * 16 + 256 * 16 + 256 * 16
    assert alex["flops_paper"] - alex["macs"] == conv_outputs
    mob = counting.count(models.build_model("mobilenet_v1"), (3, 32, 32))
    outs = [64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024]
    ins = [32] + outs[:-1]  # each depthwise conv's (and its BN's) channels
    sides = [32, 16, 16, 8, 8, 4, 4, 4, 4, 4, 4, 2, 2]  # each block's output side: stride 2 in blocks 2, 4, 6, 12
    bn_inputs = 32 * 32 * 32 + sum((i + o) * s * s for i, o, s in zip(ins, outs, sides))  # stem, depthwise, pointwise
    assert mob["flops_paper"] - mob["macs"] == 2 * bn_inputs + 1024 * 2 * 2  # + the pool's 1024x2x2 inputs


def test_cli_count_alexnet_and_mobilenet(capsys):
    cli.main(["count", "--model", "alexnet", "--input", "1x28x28", "--sparsity", RATES["alexnet"], "--json"])
    got = json.loads(capsys.readouterr().out)
    w = models.pruned_widths("alexnet", parse_sparsity(RATES["alexnet"]))
    assert got == counting.count(models.build_model("alexnet", w, 1), (1, 28, 28))
    cli.main(["count", "--model", "alexnet", "--json"])  # the paper's input: MNIST, 1x28x28
    assert json.loads(capsys.readouterr().out) == counting.count(models.build_model("alexnet", None, 1), (1, 28, 28))
    cli.main(["count", "--model", "mobilenet_v1", "--json"])
    assert json.loads(capsys.readouterr().out) == counting.count(models.build_model("mobilenet_v1"), (3, 32, 32))


# ---------------------------------------------------------------- criteria


def small(arch: str, shape=(3, 32, 32)) -> nn.Module:
    return trained_like(arch, SMALL[arch], shape[0], shape[1])


@pytest.mark.parametrize("arch", ARCHS)
def test_chip_and_hrank_score_every_group_at_its_relu(arch):
    shape = (1, 28, 28) if arch == "alexnet" else (3, 32, 32)
    model = small(arch, shape)
    groups = models.channel_groups(arch)
    torch.manual_seed(4)
    batches = [(torch.randn(5, *shape), torch.zeros(5)) for _ in range(2)]
    maps = {}
    stats = channel_statistics(model, batches, [g.name for g in groups], FEATURE_STATISTICS, 10, torch.device("cpu"),
                               progress=False, maps=maps)
    for g in groups:
        width = models.get_width(SMALL[arch], g.width_key)
        a = maps[g.name].double()  # (10, C, H, W); a fully connected layer's (10, C) as 1x1 maps
        assert a.shape[:2] == (10, width) and a.ndim == 4
        assert stats[g.name]["chip"].shape == stats[g.name]["hrank"].shape == (width,)
        flat = a.flatten(2)  # (N, C, HW)
        ci = torch.stack([torch.stack([torch.linalg.matrix_norm(flat[i], "nuc") - torch.linalg.matrix_norm(
            flat[i] * (torch.arange(width) != c)[:, None], "nuc") for c in range(width)]) for i in range(10)])
        assert torch.allclose(stats[g.name]["chip"], ci.mean(0), atol=1e-6 * max(1.0, ci.abs().max().item())), g.name
        if a.shape[-1] == 1:  # a vector: the rank of a 1x1 map is 1 where the unit is active
            assert torch.equal(stats[g.name]["hrank"], (a[:, :, 0, 0] > 0).double().mean(0)), g.name


@pytest.mark.parametrize("arch", ARCHS)
def test_l1_and_random_score_every_group(arch):
    model = small(arch)
    groups = models.channel_groups(arch)
    modules = dict(model.named_modules())
    l1, rnd = filter_l1(model, groups), random_scores(model, groups, seed=3)
    for g in groups:
        width = models.get_width(SMALL[arch], g.width_key)
        weights = [modules[p].weight.detach() for p in g.producers if not isinstance(modules[p], nn.BatchNorm2d)]
        want = sum(w.abs().reshape(width, -1).sum(1).double() for w in weights)  # every producing conv / linear
        assert torch.allclose(l1[g.name], want), g.name
        assert rnd[g.name].shape == (width,)
    if arch == "mobilenet_v1":  # a MobileNet channel's filters: the pointwise (C_in) and the depthwise (3x3)
        assert [len([p for p in g.producers if "conv" in p]) for g in groups] == [2] * len(groups)


@pytest.mark.parametrize("arch", ARCHS)
def test_snpfi_plays_every_group_and_its_end_values_are_the_zeroed_networks(arch):
    shape = (1, 28, 28) if arch == "alexnet" else (3, 32, 32)
    model = small(arch, shape)
    groups = models.channel_groups(arch)
    torch.manual_seed(5)
    x, y = torch.randn(6, *shape), torch.randint(0, 10, (6,))
    res = snpfi.analyse(model, groups, x, y, permutations=2, progress=False)

    def value(zero: dict) -> float:  # mean log p(true class) with `zero` {carrier: mask} channels zeroed
        def hook(name, out):
            out[:, zero[name]] = 0
        with torch.no_grad(), forward_hooks(model, list(zero), hook):
            return model(x).double().log_softmax(1).gather(1, y[:, None]).mean().item()

    for g in groups:
        width = models.get_width(SMALL[arch], g.width_key)
        r = res[g.name]
        assert r["importance"].shape == (width,) and r["utilization"].shape == (width + 1,)
        everything = torch.ones(width, dtype=torch.bool)
        assert r["values"][:, -1].tolist() == pytest.approx([value({})] * 2, abs=1e-5), g.name
        empty = value({c: everything for c in carriers(arch, g.name)})
        assert r["values"][:, 0].tolist() == pytest.approx([empty] * 2, abs=1e-5), g.name
    counts, _, reached = snpfi.allocate(arch, SMALL[arch], {k: v["utilization"] for k, v in res.items()}, 0.6, shape)
    assert set(counts) == {g.name for g in groups} and reached > 0
    keep = snpfi.keep_indices({k: v["importance"] for k, v in res.items()}, counts)
    pruned, widths = surgery.prune(model, arch, SMALL[arch], keep, shape[0], 10)
    assert 1 - counting.count_ops(pruned, shape)["macs"] / counting.count_ops(model, shape)["macs"] == pytest.approx(reached)


# ---------------------------------------------------------------- recovery


@pytest.mark.parametrize("arch", ARCHS)
def test_refit_lowers_every_consumers_reconstruction_error(arch):
    """Consumers: conv inputs, AlexNet's fc1 (conv 5's columns) and fc2/fc3, MobileNet's pointwise
    convs. A depthwise conv is never refit: its channels are the group's own (it is a producer),
    so pruning removes whole filters of it and leaves the kept ones exact."""
    shape = (1, 28, 28) if arch == "alexnet" else (3, 32, 32)
    model = small(arch, shape)
    widths = SMALL[arch]
    keep = random_keep(arch, widths, RATES[arch], seed=6)
    plain, _ = surgery.prune(model, arch, widths, keep, shape[0], 10)
    refit = copy.deepcopy(plain)
    torch.manual_seed(7)
    x = torch.randn(48, *shape)
    report = recovery.refit_consumers(model, refit, arch, keep, x)
    groups = models.channel_groups(arch)
    pruned_groups = [g for g in groups if len(keep[g.name]) < models.get_width(widths, g.width_key)]
    assert set(report) == {c for g in pruned_groups for c in g.consumers}
    modules = dict(refit.named_modules())
    assert all(modules[c].groups == 1 for c in report if isinstance(modules[c], nn.Conv2d))
    if arch == "alexnet":
        assert "classifier.fc1" in report
    out_keep = {p: keep[g.name] for g in groups for p in g.producers}

    seen = {}
    handles = [modules[c].register_forward_pre_hook(lambda _m, args, c=c: seen.__setitem__(("in", c), args[0]))
               for c in report]
    orig = dict(model.named_modules())
    # a copy: AlexNet's ReLUs work in place on the layer's output
    handles += [orig[c].register_forward_hook(lambda _m, _i, out, c=c: seen.__setitem__(("out", c), out.clone()))
                for c in report]
    with torch.no_grad():
        refit(x)
        model(x)
    for h in handles:
        h.remove()
    plain_modules = dict(plain.named_modules())
    for c in report:
        target = seen[("out", c)] if c not in out_keep else seen[("out", c)][:, out_keep[c]]
        errors = {}
        for label, layer in (("before", plain_modules[c]), ("after", modules[c])):
            with torch.no_grad():
                errors[label] = ((layer(seen[("in", c)]) - target).square().sum() / target.square().sum()).item()
        assert errors["after"] < errors["before"], f"{c}: {errors}"
        assert report[c]["after"] == pytest.approx(errors["after"], rel=1e-3, abs=1e-9), c


# ---------------------------------------------------------------- config


def params_for(arch: str, data: str, image_size: int) -> dict:
    p = copy.deepcopy(config.read(ROOT / "params.yaml"))
    p["model"]["arch"] = arch
    p["data"]["name"], p["data"]["image_size"] = data, image_size
    p["prune"]["settings"] = {"r1": RATES[arch]}
    p["sweep"]["schemes"] = ["r1"]  # "inner" is a CIFAR ResNet's
    p["ablation"]["setting"] = "r1"
    p["compare"]["family"] = ["chip - random @ r1"]
    return p


@pytest.mark.parametrize("arch,data,size,accepts", [
    ("alexnet", "digits", 8, "17x17 to 32x32"),
    ("alexnet", "digits", 16, "17x17 to 32x32"),
    ("alexnet", "imagenet", 224, "17x17 to 32x32"),
])
def test_an_arch_that_cannot_take_the_data_is_refused_naming_model_arch(arch, data, size, accepts):
    with pytest.raises(config.ConfigError) as e:
        config.validate(params_for(arch, data, size))
    msg = str(e.value)
    assert msg.startswith("model.arch: ") and accepts in msg and f"{size}x{size}" in msg and "\n" not in msg


@pytest.mark.parametrize("arch,data,size", [("alexnet", "mnist", 28), ("alexnet", "cifar10", 32), ("alexnet", "digits", 17),
                                            ("mobilenet_v1", "digits", 8), ("mobilenet_v1", "mnist", 28),
                                            ("mobilenet_v1", "cifar10", 32)])
def test_an_arch_that_takes_the_data_is_accepted(arch, data, size):
    assert runs(arch, size, 1 if data in ("digits", "mnist") else 3)
    config.validate(params_for(arch, data, size))


def test_cli_count_refuses_an_input_the_arch_cannot_take(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["count", "--model", "alexnet", "--input", "1x8x8", "--json"])
    captured = capsys.readouterr()
    assert e.value.code == 2 and captured.out == ""
    assert captured.err.count("\n") == 1 and "--input: alexnet takes inputs of 17x17 to 32x32 pixels" in captured.err
