"""The ratio sweep's schemes: a ratio -> CHIP's compact rate list (prunelab/sweep.py)."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from prunelab import models, sweep
from prunelab.sparsity import parse_sparsity

R2 = "[0.]+[0.4]*2+[0.5]*9+[0.6]*9+[0.7]*9"


def macs(arch: str, rates: list[float]) -> int:
    model = models.build_model(arch, models.pruned_widths(arch, rates), 1, 10).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(torch.zeros(1, 1, 8, 8))
    return fc.get_total_flops() // 2


@pytest.mark.parametrize("arch", ["resnet20", "resnet56"])
def test_inner_prunes_each_block_s_conv1_channels_and_nothing_else(arch):
    per_group = models.group_rates(arch, sweep.scheme_rates(arch, "inner", 0.6, {}))
    for g in models.channel_groups(arch):
        assert per_group[g.name] == (0.6 if g.width_key[0] == "inner" else 0.0), g.name
    widths = models.pruned_widths(arch, sweep.scheme_rates(arch, "inner", 0.6, {}))
    full = models.default_widths(arch)
    assert widths["stem"] == full["stem"] and widths != full
    # more of the ratio, fewer MACs, down to the blocks' conv2 and shortcut work that stays
    counts = [macs(arch, sweep.scheme_rates(arch, "inner", r, {})) for r in (0.0, 0.3, 0.6, 0.9)]
    assert counts == sorted(counts, reverse=True) and counts[-1] < counts[0]


def test_a_setting_is_scaled_to_the_ratio_and_is_itself_at_its_largest_rate():
    settings = {"r2": R2}
    assert sweep.scheme_rates("resnet56", "r2", 0.7, settings) == pytest.approx(parse_sparsity(R2))
    assert sweep.scheme_rates("resnet56", "r2", 0.35, settings) == pytest.approx([r / 2 for r in parse_sparsity(R2)])
    assert sweep.scheme_rates("resnet56", "r2", 0.0, settings) == [0.0] * 30


@pytest.mark.parametrize("arch,scheme,ratio,settings,message", [
    ("vgg16", "inner", 0.5, {}, "takes a CIFAR ResNet"),
    ("resnet56", "r9", 0.5, {"r2": R2}, "neither 'inner' nor a prune.settings name (r2)"),
    ("resnet56", "inner", 1.0, {}, "ratio must be in [0, 1)"),
    ("resnet56", "r0", 0.5, {"r0": "[0.]*30"}, "prunes nothing"),
])
def test_what_cannot_be_swept_is_refused_by_name(arch, scheme, ratio, settings, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        sweep.scheme_rates(arch, scheme, ratio, settings)


def test_csv_rows_leave_unmeasured_cells_empty(tmp_path):
    row = {"scheme": "inner", "ratio": 0.5, "criterion": "chip", "seed": 0, "params": 10, "macs": 20,
           "macs_reduction_pct": 12.5, "top1_pruned": 50.0, "top1_bn_reestimated": 75.0}
    sweep.write_csv(tmp_path / "s.csv", [row])
    header, line = (tmp_path / "s.csv").read_text().splitlines()
    assert header.split(",") == list(sweep.FIELDS)
    assert line == "inner,0.5,chip,0,10,20,12.5,50.0,75.0,"
