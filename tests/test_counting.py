import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from prunelab import cli, counting, models
from prunelab.sparsity import parse_sparsity

ROW1 = "[0.]+[0.15]*2+[0.4]*27"
ROW2 = "[0.]+[0.4]*2+[0.5]*9+[0.6]*9+[0.7]*9"


def test_resnet56_matches_the_paper():
    assert counting.count(models.build_model("resnet56"), (3, 32, 32))["params"] == 853_018
    assert counting.count(models.build_model("resnet56"), (3, 32, 32))["macs"] == 125_485_696


@pytest.mark.parametrize("spec,params,flops", [(ROW1, 485_413, 65_939_968), (ROW2, 240_793, 34_785_856)])
def test_chip_rows_match_the_paper(spec, params, flops):
    m = models.build_model("resnet56", models.pruned_widths("resnet56", parse_sparsity(spec)))
    c = counting.count(m, (3, 32, 32))
    assert (c["params"], c["flops_paper"]) == (params, flops)


def example_rates(arch: str) -> list[float]:
    """Some valid rates for any arch: the first list length its group_rates accepts."""
    for length in range(1, 64):
        try:
            models.group_rates(arch, [0.3] * length)
            return [0.1, 0.3, 0.2] + [0.5] * (length - 3)
        except ValueError:
            continue
    raise AssertionError(arch)


@pytest.mark.parametrize("arch", models.ARCHS)
@pytest.mark.parametrize("pruned", [False, True])
def test_macs_are_half_of_torch_flop_counter(arch, pruned):
    widths = models.pruned_widths(arch, example_rates(arch)) if pruned else None
    shapes = {"vgg16": [(3, 32, 32)], "resnet50": [(3, 224, 224), (1, 64, 64)], "alexnet": [(3, 32, 32), (1, 28, 28)]}.get(arch, [(3, 32, 32), (1, 8, 8)])
    for shape in shapes:
        m = models.build_model(arch, widths, in_channels=shape[0]).eval()
        with FlopCounterMode(display=False) as fc:
            m(torch.zeros(1, *shape))
        assert 2 * counting.count_ops(m, shape)["macs"] == fc.get_total_flops()


def test_resnet50_matches_torchvisions_published_size():
    # torchvision's ResNet-50 documentation: 25,557,032 params, 4.09 GFLOPS (= GMACs)
    c = counting.count(models.build_model("resnet50", num_classes=1000), (3, 224, 224))
    assert c["params"] == 25_557_032 and round(c["macs"] / 1e9, 2) == 4.09


def test_params_count_every_parameter_including_bn():
    m = models.build_model("resnet20")
    bn = sum(p.numel() for x in m.modules() if isinstance(x, torch.nn.BatchNorm2d) for p in x.parameters())
    assert bn > 0
    assert counting.count_params(m) == sum(p.numel() for p in m.parameters())


def test_cli_count_json(capsys):
    cli.main(["count", "--model", "resnet56", "--sparsity", ROW2, "--json"])
    assert json.loads(capsys.readouterr().out) == {"params": 240_793, "macs": 34_197_184, "flops_paper": 34_785_856}
    cli.main(["count", "--model", "resnet56", "--json"])
    assert json.loads(capsys.readouterr().out)["macs"] == 125_485_696


def test_cli_count_uses_each_arch_s_paper_input(capsys):
    cli.main(["count", "--model", "resnet50", "--json"])
    assert json.loads(capsys.readouterr().out)["params"] == 25_557_032  # 3x224x224, 1000 classes
    cli.main(["count", "--model", "vgg16", "--sparsity", "[0.21]*7+[0.75]*5", "--json"])
    vgg = json.loads(capsys.readouterr().out)
    m = models.build_model("vgg16", models.pruned_widths("vgg16", parse_sparsity("[0.21]*7+[0.75]*5")))
    assert vgg == counting.count(m, (3, 32, 32))


@pytest.mark.parametrize("argv,culprit", [
    (["--model", "resnet57"], "--model"),
    (["--model", "resnet56", "--sparsity", "[0.]+[1.0]*2+[0.4]*27"], "--sparsity"),
    (["--model", "resnet56", "--sparsity", "[0.]+[0.4]*2"], "--sparsity"),
])
def test_cli_count_bad_input_exits_2(argv, culprit, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["count", *argv, "--json"])
    assert e.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and culprit in captured.err


@pytest.mark.parametrize("arch", ["resnet20", "vgg16", "resnet50"])  # every kind of module the counter sees
@pytest.mark.parametrize("pruned", [False, True])
def test_flops_paper_is_the_thop_convention_s_definition(arch, pruned):
    """flops_paper against tests/oracles.py's reading of PAPER.md's convention (torch's FLOP counter
    for the MACs, plus the bias, BatchNorm and average-pool terms), on every architecture: VGG's
    conv biases and classifier BatchNorm1d included."""
    import oracles

    widths = models.pruned_widths(arch, example_rates(arch)) if pruned else None
    shape = (3, 64, 64) if arch == "resnet50" else (3, 32, 32)
    m = models.build_model(arch, widths, in_channels=shape[0])
    assert counting.count_ops(m, shape)["flops_paper"] == oracles.flops_paper(m, shape)


def test_reduction_is_the_percent_of_the_baseline_removed():
    """By hand: 853,018 -> 485,413 params removes 367,605 of 853,018, 43.0946% (CHIP's 43.1% for
    ResNet-56 row 1); nothing removed is 0, half removed 50."""
    assert counting.reduction(853_018, 485_413) == pytest.approx(100 * 367_605 / 853_018)
    assert round(counting.reduction(853_018, 485_413), 2) == 43.09
    assert counting.reduction(200, 200) == 0.0 and counting.reduction(200, 100) == 50.0


@pytest.mark.parametrize("training", [False, True])
def test_counting_leaves_the_model_as_it_found_it(training):
    """Counting runs one forward in eval mode through hooks: afterwards the model is in the mode
    it was in, no hook is left on any module (a later forward runs no counting code), the
    BatchNorm statistics are untouched, and counting it again gives the same numbers."""
    m = models.build_model("resnet20").train(training)
    stats = {k: v.clone() for k, v in m.state_dict().items()}
    first = counting.count(m, (3, 32, 32))
    assert all(mod.training == training for mod in m.modules())
    assert all(not mod._forward_hooks for mod in m.modules())
    assert all(torch.equal(v, stats[k]) for k, v in m.state_dict().items())
    assert counting.count(m, (3, 32, 32)) == first


def test_frozen_parameters_are_counted():
    """Params counts every parameter, trainable or not: a frozen ResNet-56 still has the paper's
    853,018."""
    m = models.build_model("resnet56").requires_grad_(False)
    assert counting.count_params(m) == 853_018


class _PositionwiseHead(torch.nn.Module):
    """A linear layer applied at every spatial position, on (N, H, W, C) features."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4, 5)

    def forward(self, x):
        return self.fc(self.conv(x).permute(0, 2, 3, 1))  # (N, H, W, 5)


def test_a_linear_layer_on_every_position_counts_its_macs_at_every_position():
    """MACs of a linear layer are in * out per input row: applied at each of the 6 x 7 positions
    that is 42 * 4 * 5 = 840 (by hand), plus the conv's 42 * 4 * 3 * 3 * 3 = 4,536; torch's FLOP
    counter (two per multiply-add) agrees."""
    m = _PositionwiseHead().eval()
    with FlopCounterMode(display=False) as fc:
        m(torch.zeros(1, 3, 6, 7))
    assert counting.count_ops(m, (3, 6, 7))["macs"] == 840 + 4536 == fc.get_total_flops() // 2


@pytest.mark.parametrize("kernel", [(1, 3), (3, 1)])
def test_a_rectangular_kernel_counts_both_of_its_sides(kernel):
    """A conv's MACs are output elements x in-channels x kh x kw for any kernel, square or not:
    Conv2d(2, 4, 1x3) on a 2x5x6 input gives 4x5x4 = 80 outputs, 80 * 2 * 1 * 3 = 480 MACs
    (3x1: 4x3x6 = 72 outputs, 432 MACs), by hand; flops_paper adds one op per output for the
    bias (560, 504). count() is for any architecture, not only the square kernels of ours."""
    m = torch.nn.Conv2d(2, 4, kernel).eval()
    outputs = 80 if kernel == (1, 3) else 72
    assert counting.count_ops(m, (2, 5, 6)) == {"macs": outputs * 2 * 3, "flops_paper": outputs * 2 * 3 + outputs}
