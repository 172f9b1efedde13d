"""prunelab.config's checks at their edges: each bound where params.yaml's comments and the
check's own phrase put it (the value at the bound accepted, the next refused, naming the key),
the cross-section rules, and an auto: setting's rates read back from sensitivity.json. The MACs
an auto: target can reach are counted with PyTorch's FlopCounterMode, not prunelab.counting."""

import copy
import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from helpers import ROOT
from test_hostile import params_with
from prunelab import config, models
from prunelab.errors import ConfigError

DEFAULT = yaml.safe_load((ROOT / "params.yaml").read_text())
PAPER = yaml.safe_load((ROOT / "paper" / "params.yaml").read_text())


def refused(params: dict, pattern: str) -> str:
    with pytest.raises(ConfigError, match=pattern) as e:
        config.validate(params)
    assert "\n" not in str(e.value)
    return str(e.value)


@pytest.mark.parametrize("launcher", ["python", "torchrun --standalone --nproc_per_node=4", "torchrun --nnodes=2"])
def test_the_launcher_python_or_torchrun_is_accepted(launcher):
    config.validate(params_with(**{"engine.launcher": launcher}))


@pytest.mark.parametrize("launcher", ["mpirun -np 4 python", "bash -c 'rm -rf /'", "", "   ", "pythonx"])
def test_any_other_launcher_is_refused(launcher):
    """params.yaml: the launcher is `python` or a torchrun command; anything else (another
    launcher, a shell line) is refused before a stage runs it."""
    refused(params_with(**{"engine.launcher": launcher}), "^engine.launcher: must be 'python' or a torchrun command")


def test_train_subset_takes_one_image_per_class_at_least_and_only_data_held_in_memory():
    """params.yaml: N images, equally many per class: the digits' 10 classes take 10 at least, 9
    are refused; a folder dataset (ImageNet) is not drawn from, null only."""
    few = {"features.num_images": 9, "snpfi.calibration_images": 9}  # within what 9 or 10 images allow
    config.validate(params_with(**{"data.train_subset": 10, **few}))
    refused(params_with(**{"data.train_subset": 9, **few}), r"^data.train_subset: digits has 10 classes; .* got 9$")
    refused(params_with(**{"data.name": "imagenet", "data.train_subset": 1000}),
            "^data.train_subset: only for .*; imagenet takes null")


def test_seeds_are_at_most_100():
    """The phrase's bound: at most 100 distinct seeds (each a full fine-tuning of every network)."""
    config.validate(params_with(seeds=list(range(100))))
    refused(params_with(seeds=list(range(101))), r"^seeds: must be a non-empty list of distinct integers .*at most 100")


def test_warm_up_may_last_every_epoch_there_can_be():
    """warmup_epochs is a number in [0, 10000], closed at the top (a warm-up as long as the
    longest schedule); past it is refused."""
    config.validate(params_with(**{"train.warmup_epochs": 10_000, "finetune.warmup_epochs": 10_000.0}))
    refused(params_with(**{"train.warmup_epochs": 10_000.5}), r"^train.warmup_epochs: must be a number in \[0, 10000\]")


def test_sweeping_an_auto_setting_is_refused_saying_what_the_sweep_scales():
    with_auto = {"r2": DEFAULT["prune"]["settings"]["r2"], "auto": "auto:r2"}
    message = refused(params_with(**{"prune.settings": with_auto, "sweep.schemes": ["inner", "auto"]}),
                      "^sweep.schemes: 'auto' is an auto: setting")
    assert "the sweep scales a setting's hand-set rates" in message


def test_a_paper_row_names_one_of_the_experiments():
    paper = copy.deepcopy(PAPER)
    row = next(iter(paper["rows"]))
    paper["rows"][row]["experiment"] = "resnet57"
    with pytest.raises(ConfigError, match=rf"^rows\.{row}\.experiment: 'resnet57' is not allowed; allowed: "):
        config.validate_paper(paper)


def test_an_output_folder_may_be_the_project_folder_itself(tmp_path):
    """Outputs resolve inside the project folder, which includes the folder itself (results: .),
    and never outside it."""
    for inside in (".", "sub/..", "./results"):
        config.check_outputs(params_with(**{"paths.results": inside}), tmp_path)
    with pytest.raises(ConfigError, match="^paths.results: .* outside the project"):
        config.check_outputs(params_with(**{"paths.results": "sub/../.."}), tmp_path)


def test_an_auto_setting_s_rates_are_read_back_only_for_its_own_spec(tmp_path):
    """The prune stage takes an auto: setting's rates from its baseline's sensitivity.json (in
    <metrics>/b<baseline>/), if it was written for the same spec; rates for another spec (params
    edited since) or no file at all are refused, saying to run that stage. A hand-set setting is
    its own rates."""
    with_auto = {"r2": DEFAULT["prune"]["settings"]["r2"], "auto": "auto:r2"}
    params = config.resolve(params_with(**{"paths.metrics": str(tmp_path.parent), "prune.settings": with_auto}), 0)
    assert Path(params["paths"]["metrics"]) == tmp_path.parent / "b0"
    tmp_path = tmp_path.parent / "b0"
    tmp_path.mkdir()
    with pytest.raises(ConfigError, match="^prune.settings.auto: 'auto:r2' has no rates in .*run the sensitivity stage"):
        config.setting_rates(params, "auto")
    picked = [0.0] + [0.5] * 29
    (tmp_path / "sensitivity.json").write_text(json.dumps({"auto": {"auto": {"spec": "auto:r2", "rates": picked}}}))
    assert config.setting_rates(params, "auto") == picked
    (tmp_path / "sensitivity.json").write_text(json.dumps({"auto": {"auto": {"spec": "auto:0.5", "rates": picked}}}))
    with pytest.raises(ConfigError, match="holds the rates of 'auto:0.5', not 'auto:r2': re-run the sensitivity stage"):
        config.setting_rates(params, "auto")
    assert config.setting_rates(params, "r2") == [0.0] + [0.4] * 2 + [0.5] * 9 + [0.6] * 9 + [0.7] * 9


def test_an_auto_target_up_to_what_the_largest_rates_remove_is_accepted():
    """auto:<T> must be reachable: every slot of the default ResNet-56 on the 1-channel 8x8 digits
    at the largest of sensitivity.rates (0.9) removes M% of the MACs (PyTorch's count); T = M/100
    itself is accepted, the next float above it refused."""
    arch, shape = DEFAULT["model"]["arch"], (1, 8, 8)
    assert DEFAULT["data"]["name"] == "digits" and arch == "resnet56"
    rate = max(DEFAULT["sensitivity"]["rates"])

    def torch_macs(widths):
        with FlopCounterMode(display=False) as fc:
            models.build_model(arch, widths, 1, 10).eval()(torch.zeros(1, *shape))
        return fc.get_total_flops() // 2

    base = torch_macs(models.default_widths(arch))
    most = 100.0 * (base - torch_macs(models.pruned_widths(arch, [rate] * 30))) / base
    target = most / 100
    assert 100 * target == most  # the boundary itself is representable
    config.validate(params_with(**{"prune.settings.auto": f"auto:{target!r}"}))
    above = math.nextafter(target, 1.0)
    refused(params_with(**{"prune.settings.auto": f"auto:{above!r}"}),
            rf"^prune.settings.auto: 'auto:{above!r}' asks for .*removes {most:.1f}%")


def test_a_baseline_trains_with_its_own_seed_and_only_a_listed_one_resolves():
    """resolve(params, b): seed becomes b (training, features, scores, draws), data_seed keeps the
    data's seed, files go under b<b>/; a baseline not in `baselines` is refused, naming the flag."""
    params = config.validate(params_with(seed=3, baselines=[0, 5]))
    five = config.resolve(params, 5)
    assert (five["seed"], five["data_seed"], five["baseline"]) == (5, 3, 5)
    assert Path(five["paths"]["baseline"]).parent.name == "b5"
    with pytest.raises(ConfigError, match=r"--baseline: 7 is not in baselines \(0, 5\)"):
        config.resolve(params, 7)


def test_a_declared_family_holds_at_most_ten_contrasts():
    """Ten distinct contrasts are accepted; an eleventh is refused, naming compare.family."""
    criteria, settings = DEFAULT["prune"]["criteria"], {"r2": DEFAULT["prune"]["settings"]["r2"], "r1": "[0.]+[0.15]*2+[0.4]*27"}
    pairs = [f"{a} - {b} @ {s}" for s in settings for i, a in enumerate(criteria) for b in criteria[i + 1:]]
    assert len(pairs) >= 11
    config.validate(params_with(**{"prune.settings": settings, "compare.family": pairs[:10]}))
    refused(params_with(**{"prune.settings": settings, "compare.family": pairs[:11]}), "compare.family")


def test_a_sensitivity_rate_must_prune_something():
    """sensitivity.rates are in (0, 1): a rate of 0 would measure the unpruned network 30 times."""
    config.validate(params_with(**{"sensitivity.rates": [0.1, 0.5]}))
    refused(params_with(**{"sensitivity.rates": [0.0, 0.5]}), "sensitivity.rates")
