"""Layer sensitivity and auto: settings: the knapsack against brute force, every measured row
against the unpruned network with the same channels zeroed, MACs against PyTorch's counter, and
the auto: rates through the prune stage."""

import csv
import itertools
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import oracles
import yaml
from helpers import ROOT, copy_project, edit_params, set_params, stage_in_process
from prunelab import checkpoint, config, data, models, pipeline, sensitivity, surgery
from prunelab.errors import PrunelabError
from prunelab.sparsity import compact, parse_sparsity

ROW1_R20 = "[0.]+[0.15]*2+[0.4]*9"
TINY = {"model.arch": "resnet20", "train.epochs": 1, "finetune.epochs": 1, "features.num_images": 16,
        "features.batch_size": 8, "latency.repeats": 0, "prune.criteria": ["chip"], "seeds": [0],
        "prune.settings": {"r1": ROW1_R20, "auto": "auto:r1", "light": "auto:0.2"},
        "sensitivity.rates": [0.15, 0.4, 0.7], "sensitivity.images": 96, "sensitivity.bn_images": 64,
        "sweep.schemes": ["inner"]}


def macs(model: nn.Module, shape) -> int:
    """PyTorch's own count (FlopCounterMode counts a multiply-add as 2 FLOPs)."""
    with FlopCounterMode(display=False) as counter:
        model.eval()(torch.zeros(1, *shape))
    return counter.get_total_flops() // 2


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """A tiny project (ResNet-20 on digits, one epoch) through baseline, features, CHIP's scores,
    the sensitivity stage and the prune stage of its auto: setting, each stage in this process."""
    project = copy_project(tmp_path_factory.mktemp("sensitivity") / "p", **TINY)
    for name, *args in [("train_baseline",), ("extract_features",), ("score", "--criterion", "chip"), ("sensitivity",),
                        ("prune", "--criterion", "chip", "--setting", "auto")]:
        code, err = stage_in_process(project, name, *args)
        assert code == 0, f"{name} {args}: exit {code}\n{err[-3000:]}"
    return project


def rows_of(project) -> list[dict]:
    with open(project / "results" / "metrics" / "b0" / "sensitivity.csv") as f:
        return list(csv.DictReader(f))


def data_of(project):
    params = config.resolve(config.load_params(project / "params.yaml"), 0)
    params = {**params, "paths": {**params["paths"], "data": str(project / "data")}}
    return params, pipeline.load_data(params)


def test_num_slots_is_the_length_of_each_arch_s_compact_list():
    assert {a: sensitivity.num_slots(a) for a in models.ARCHS} == {
        "resnet20": 12, "resnet32": 18, "resnet44": 24, "resnet56": 30, "resnet110": 57, "vgg16": 12,
        "resnet50": 20, "alexnet": 7, "mobilenet_v1": 13}
    assert len(parse_sparsity("[0.]+[0.4]*2+[0.5]*9+[0.6]*9+[0.7]*9")) == 30  # CHIP's ResNet-56 list
    labels = sensitivity.slot_labels("resnet56")
    assert labels[:4] == ["relu", "layer1.0.relu2 .. layer1.8.relu2 (9)", "layer2.0.relu2 .. layer2.8.relu2 (9)",
                          "layer1.0.relu1"]
    assert labels[-1] == "layer3.8.relu1"


@given(st.lists(st.sampled_from([0.0, 0.15, 0.4, 0.5, 0.7, 1e-3, 0.123456789]), min_size=1, max_size=91))
@settings(max_examples=200, deadline=None)
def test_compact_is_parse_sparsity_s_inverse(rates):
    text = compact(rates)
    assert parse_sparsity(text) == rates
    assert text.count("+") + 1 == 1 + sum(a != b for a, b in zip(rates, rates[1:]))  # one term per run


@pytest.mark.parametrize("seed", range(25))
def test_the_dynamic_programme_is_the_brute_force_optimum(seed):
    """Random instances of the additive problem (5 slots, 4 choices each, column 0 unpruned):
    the minimum over all 4**5 choices whose summed savings, on the knapsack's grid, reach T."""
    rng = np.random.default_rng(seed)
    cost = np.concatenate([np.zeros((5, 1)), rng.integers(-2, 20, (5, 3)) + rng.random((5, 3)) * 0.01], 1)
    saving = np.concatenate([np.zeros((5, 1)), np.sort(rng.random((5, 3)) * 30, 1)], 1)
    target = float(rng.uniform(1, 0.9 * saving.max(1).sum()))
    units = np.floor(saving / sensitivity.RESOLUTION + 1e-9)
    need = np.ceil(target / sensitivity.RESOLUTION - 1e-9)
    best = min(sum(cost[i, k] for i, k in enumerate(c)) for c in itertools.product(range(4), repeat=5)
               if sum(units[i, k] for i, k in enumerate(c)) >= need)
    chosen = sensitivity.solve_additive(cost, saving, target)
    assert cost[np.arange(5), chosen].sum() == pytest.approx(best, abs=1e-12)
    assert saving[np.arange(5), chosen].sum() >= target
    with pytest.raises(ValueError, match="out of reach"):
        sensitivity.solve_additive(cost, saving, saving.max(1).sum() + 1)


def test_every_row_is_the_unpruned_network_with_the_slot_s_channels_zeroed(measured):
    """Inner (conv1) slots: pruning them equals zeroing their dropped channels at the block's
    relu1 in the unpruned network (per-channel BatchNorm: the kept channels' statistics are the
    same). So each row's loss and top-1 are those of the baseline with a mask, BatchNorm
    re-estimated on the same batches, on the same images. Every row's MACs: PyTorch's count."""
    params, splits = data_of(measured)
    rows = rows_of(measured)
    base = checkpoint.load(measured / "models" / "b0" / "baseline.pt")
    scores = checkpoint.torch_load(measured / "models" / "b0" / "scores" / "chip.pt", ("scores", "meta"))["scores"]
    arch, widths, shape = base["arch"], base["widths"], pipeline.input_shape(splits)
    slots = sensitivity.num_slots(arch)
    assert [(int(r["slot"]), float(r["rate"])) for r in rows] == [(i, r) for i in range(slots) for r in TINY["sensitivity.rates"]]
    info = json.loads((measured / "results" / "metrics" / "b0" / "sensitivity.json").read_text())
    idx = data.balanced_subset(splits.y_train, 96, 10, 0)  # the stage's draw: 96 training images, by seed
    images = (splits.x_train[idx].float() / 255 - splits.mean[None, :, None, None]) / splits.std[None, :, None, None]
    labels = splits.y_train[idx]
    bn_batches = list(pipeline.FirstBatches(pipeline.train_loader(splits, 64, 0, params, "cpu"), 1))
    original = checkpoint.build(base).eval()
    assert info["images"] == 96 and info["baseline_top1"] == pytest.approx(oracles.top1(original, images, labels))
    base_macs = macs(original, shape)
    groups = models.channel_groups(arch)
    checked = 0
    for r in rows:
        slot, rate = int(r["slot"]), float(r["rate"])
        rates = sensitivity.slot_rates(slots, slot, rate)
        pruned = models.build_model(arch, models.pruned_widths(arch, rates, widths), 1, 10)
        assert int(r["macs"]) == macs(pruned, shape)
        assert float(r["macs_reduction_pct"]) == pytest.approx(100 * (base_macs - macs(pruned, shape)) / base_macs)
        named = [g for g, x in models.group_rates(arch, rates).items() if x]
        if len(named) != 1 or not named[0].endswith("relu1"):
            continue  # the stem and the stage outputs also move option-A shortcuts: no mask equals them
        group = next(g for g in groups if g.name == named[0])
        keep = surgery.keep_indices(arch, widths, scores, rates)[group.name]
        mask = torch.zeros(models.get_width(widths, group.width_key))
        mask[keep] = 1
        masked = checkpoint.build(base)
        hook = masked.get_submodule(group.name).register_forward_hook(lambda m, i, o: o * mask[None, :, None, None])
        with torch.no_grad():  # BatchNorm re-estimated by hand: a cumulative average over the batches
            norms = [m for m in masked.modules() if isinstance(m, nn.BatchNorm2d)]
            for m in norms:
                m.reset_running_stats()
                m.momentum = None
            masked.train()
            for x, _ in bn_batches:
                masked(x)
            masked.eval()
            logits = masked(images)
        hook.remove()
        loss = nn.functional.cross_entropy(logits, labels).item()
        assert float(r["loss"]) == pytest.approx(loss, rel=1e-4, abs=1e-6), (slot, rate)
        assert abs(float(r["top1"]) - 100 * (logits.argmax(1) == labels).float().mean().item()) <= 100 / 96 + 1e-9
        checked += 1
    assert checked == 9 * len(TINY["sensitivity.rates"])  # ResNet-20's nine blocks


def test_auto_rates_reach_the_macs_and_sum_the_least_sensitivity(measured):
    """auto:r1 and auto:0.2: the exact reduction (PyTorch's count) reaches the target; the summed
    sensitivity is recomputed from the CSV; r1's rates, measured on the grid and feasible for the
    additive problem, sum no less."""
    _, splits = data_of(measured)
    shape = pipeline.input_shape(splits)
    info = json.loads((measured / "results" / "metrics" / "b0" / "sensitivity.json").read_text())
    rows, n = rows_of(measured), info["images"]
    base = models.build_model("resnet20", models.default_widths("resnet20"), 1, 10)
    base_macs = macs(base, shape)

    def reduction(rates):
        return 100 * (base_macs - macs(models.build_model("resnet20", models.pruned_widths("resnet20", rates), 1, 10), shape)) / base_macs

    def summed(rates):
        cells = {(int(r["slot"]), float(r["rate"])): r for r in rows}
        picked = [cells[i, x] for i, x in enumerate(rates) if x]
        return (sum(round((info["baseline_top1"] - float(c["top1"])) * n / 100) for c in picked),
                sum(float(c["loss"]) - info["baseline_loss"] for c in picked))

    r1 = parse_sparsity(ROW1_R20)
    auto, light = info["auto"]["auto"], info["auto"]["light"]
    assert auto["spec"] == "auto:r1" and auto["hand_set"] == "r1" and light["spec"] == "auto:0.2"
    assert auto["target_macs_reduction_pct"] == pytest.approx(reduction(r1))
    assert light["target_macs_reduction_pct"] == pytest.approx(20.0)
    for entry in (auto, light):
        rates = parse_sparsity(entry["rates"])
        assert set(rates) <= {0.0, *TINY["sensitivity.rates"]}
        assert reduction(rates) == pytest.approx(entry["reached_macs_reduction_pct"])
        assert entry["reached_macs_reduction_pct"] >= entry["target_macs_reduction_pct"]
        drop, loss = summed(rates)
        assert entry["summed_drop_images"] == drop and entry["summed_loss_increase"] == pytest.approx(loss)
    assert (auto["hand_set_summed_drop_images"], auto["hand_set_summed_loss_increase"]) == pytest.approx(summed(r1))
    # r1's separate savings (from the CSV) add up to at least its exact reduction, which is the target
    r1_additive = sum(float(r["macs_reduction_pct"]) for r in rows
                      if float(r["rate"]) == r1[int(r["slot"])] and r1[int(r["slot"])] > 0)
    if r1_additive >= auto["additive_target_pct"]:  # then r1 was a candidate of the last round
        assert (auto["summed_drop_images"], auto["summed_loss_increase"]) <= (
            auto["hand_set_summed_drop_images"], auto["hand_set_summed_loss_increase"] + 1e-9)
    png = measured / "results" / "metrics" / "b0" / "sensitivity.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_auto_setting_prunes_at_the_rates_the_sensitivity_stage_picked(measured, tmp_path):
    info = json.loads((measured / "results" / "metrics" / "b0" / "sensitivity.json").read_text())
    rates = parse_sparsity(info["auto"]["auto"]["rates"])
    saved = checkpoint.load(measured / "models" / "b0" / "pruned" / "chip-auto" / "seed0.pt")
    assert saved["widths"] == models.pruned_widths("resnet20", rates)
    record = json.loads((measured / "results" / "metrics" / "b0" / "prune" / "chip-auto.json").read_text())
    assert record["rates"] == info["auto"]["auto"]["rates"]
    # a changed auto: spec whose rates were not picked yet: refused by name, nothing pruned
    edit_params(measured, **{"prune.settings": {**TINY["prune.settings"], "auto": "auto:0.3"}})
    try:
        code, err = stage_in_process(measured, "prune", "--criterion", "chip", "--setting", "auto")
    finally:
        edit_params(measured, **{"prune.settings": TINY["prune.settings"]})
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("error: prune.settings.auto") and "re-run the sensitivity stage" in err, err
    assert checkpoint.load(measured / "models" / "b0" / "pruned" / "chip-auto" / "seed0.pt")["widths"] == saved["widths"]


BAD = [
    ({"prune.settings.auto": "auto:1.5"}, "prune.settings.auto", "must be in (0, 1)"),
    ({"prune.settings.auto": "auto:r9"}, "prune.settings.auto", "auto:<a setting with rates: r2>"),
    ({"prune.settings.auto": "auto:auto"}, "prune.settings.auto", "itself an auto: setting"),
    ({"prune.settings.auto": "auto:0.99"}, "prune.settings.auto", "removes"),
    ({"sensitivity": None}, "prune.settings.auto", "needs the sensitivity: section"),
    ({"sensitivity.criterion": "snpfi"}, "sensitivity.criterion", "allowed: chip"),
    ({"prune.criteria": ["chip", "l1"], "sensitivity.criterion": "hrank"}, "sensitivity.criterion", "not in prune.criteria"),
    ({"sensitivity.rates": [0.0, 0.5]}, "sensitivity.rates", "(0, 1)"),
    ({"sensitivity.rates": [0.5, 0.5]}, "sensitivity.rates", "distinct"),
    ({"sensitivity.images": 0}, "sensitivity.images", "must be an integer"),
    ({"sweep.schemes": ["auto"]}, "sweep.schemes", "is an auto: setting"),
]


@pytest.mark.parametrize("overrides,key,allowed", BAD, ids=[c[1] + ":" + c[2][:16] for c in BAD])
def test_bad_sensitivity_and_auto_params_are_refused_by_name(overrides, key, allowed):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["prune"]["settings"]["auto"] = "auto:r2"  # the default pipeline's r2, and an auto: setting beside it
    set_params(params, overrides)
    with pytest.raises(PrunelabError) as e:
        config.validate(params)
    message = str(e.value)
    assert "\n" not in message and message.startswith(key) and allowed in message, message


def test_an_auto_spec_is_never_read_as_rates():
    with pytest.raises(PrunelabError, match="^prune.settings.auto: 'auto:r2' is an auto: setting"):
        parse_sparsity("auto:r2", "prune.settings.auto")


def test_measured_training_images_are_balanced_unaugmented_and_seeded(tmp_path):
    """What the stage measures on: on data held in memory, the balanced draw's images as they are;
    on an image folder, the same draw over its training files, each seen through the validation
    transform (centre crop, no flip), recomputed here from the files with torchvision by hand."""
    from PIL import Image
    from torchvision import transforms as T

    from prunelab import synthetic

    digits = data.load_dataset("digits", None, None, image_size=8)
    loader, n = pipeline.training_images_unaugmented(digits, 50, 3, 16, torch.device("cpu"))
    idx = data.balanced_subset(digits.y_train, 50, 10, 3)
    x, y = map(torch.cat, zip(*loader))
    assert n == 50 and torch.equal(y, digits.y_train[idx])
    plain = data.Loader(digits.x_train[idx], digits.y_train[idx], digits.mean, digits.std, 50)  # in order, unaugmented
    assert torch.equal(x, next(iter(plain))[0])
    assert pipeline.training_images_unaugmented(digits, 10**6, 3, 16, torch.device("cpu"))[1] == len(digits.y_train)

    synthetic.write_dataset("imagenet", tmp_path / "i")
    folder = data.FolderSplits(tmp_path / "i", image_size=24, resize=28, num_workers=0)
    loader, n = pipeline.training_images_unaugmented(folder, 6, 5, 4, torch.device("cpu"))
    x, y = map(torch.cat, zip(*loader))
    again = torch.cat([b for b, _ in loader])
    assert n == 6 and x.shape == (6, 3, 24, 24) and torch.equal(x, again)  # no random crop or flip
    assert sorted(np.bincount(y.numpy(), minlength=4).tolist()) == [1, 1, 2, 2]  # 4 classes, 6 images
    idx = data.balanced_subset(torch.tensor(folder.train.targets), 6, 4, 5)
    by_hand = T.Compose([T.Resize(28), T.CenterCrop(24), T.ToTensor(), T.Normalize(data.IMAGENET_MEAN, data.IMAGENET_STD)])
    expected = torch.stack([by_hand(Image.open(folder.train.samples[i][0]).convert("RGB")) for i in idx.tolist()])
    torch.testing.assert_close(x, expected)
    assert y.tolist() == [folder.train.samples[i][1] for i in idx.tolist()]


# --- The rule's parts on hand-made measurements (no stage run): tables, the knapsack's grid, the rounds.


def _csv_rows(table: dict) -> list[dict]:
    """{(slot, rate): (top1, loss, macs_reduction_pct)} -> rows as read_csv gives them (strings)."""
    return [{"slot": str(i), "groups": f"slot{i}", "rate": repr(r), "params": "0", "macs": "0",
             "macs_reduction_pct": repr(s), "top1": repr(t), "loss": repr(l)} for (i, r), (t, l, s) in table.items()]


MEASURED = {(0, 0.4): (91.0, 0.45, 10.0), (0, 0.7): (80.0, 1.0, 20.0),
            (1, 0.4): (87.5, 0.8, 12.5), (1, 0.7): (60.0, 2.5, 25.0)}


def test_tables_are_the_drops_in_images_the_loss_increases_and_the_savings():
    """200 images, baseline 90% and loss 0.5 (by hand): slot 1 at 0.4 gives 87.5%, 5 images
    fewer right, and loss 0.8, +0.3; slot 0 at 0.4 gives 91%, a drop of -2 (pruning helped);
    column 0 is the unpruned slot. A (slot, rate) never measured is refused. A hand-set list's
    summed sensitivity adds its slots' cells; a rate off the grid has none."""
    grid, drop, loss, saving = sensitivity.tables(_csv_rows(MEASURED), 2, 200, 90.0, 0.5)
    assert grid == [0.4, 0.7]
    assert drop.tolist() == [[0, -2, 20], [0, 5, 60]]
    assert loss == pytest.approx(np.array([[0, -0.05, 0.5], [0, 0.3, 2.0]]))
    assert saving.tolist() == [[0, 10.0, 20.0], [0, 12.5, 25.0]]
    with pytest.raises(ValueError, match=r"no measurement for \(slot, rate\) \[\((np\.int64\()?1\)?, 0\.7\)\]"):
        sensitivity.tables(_csv_rows({k: v for k, v in MEASURED.items() if k != (1, 0.7)}), 2, 200, 90.0, 0.5)
    summed = sensitivity.summed_sensitivity(_csv_rows(MEASURED), [0.4, 0.7], 200, 90.0, 0.5, 2)
    assert summed[0] == -2 + 60 and summed[1] == pytest.approx(-0.05 + 2.0)
    assert sensitivity.summed_sensitivity(_csv_rows(MEASURED), [0.0, 0.4], 200, 90.0, 0.5, 2) == (5, pytest.approx(0.3))
    assert sensitivity.summed_sensitivity(_csv_rows(MEASURED), [0.5, 0.0], 200, 90.0, 0.5, 2) is None


def test_the_knapsack_rounds_savings_down_and_the_target_up_and_breaks_ties_low():
    """The additive problem by its definition (summed saving >= T at least cost), on cases worked
    by hand: a saving of 0.996% does not reach 1% (though it rounds to it), 1.00% does, and does
    not reach 1.005%; two columns of equal cost go to the lower one (the lighter rate); a target
    past every saving names what they add up to (6.00%)."""
    cost = np.array([[0.0, 1.0], [0.0, 2.0]])
    assert sensitivity.solve_additive(cost, np.array([[0, 0.996], [0, 5.0]]), 1.0).tolist() == [0, 1]
    assert sensitivity.solve_additive(cost, np.array([[0, 1.0], [0, 5.0]]), 1.0).tolist() == [1, 0]
    assert sensitivity.solve_additive(cost, np.array([[0, 1.0], [0, 5.0]]), 1.005).tolist() == [0, 1]
    assert sensitivity.solve_additive(np.array([[0.0, 1.0, 1.0]]), np.array([[0.0, 2.0, 3.0]]), 1.0).tolist() == [1]
    with pytest.raises(ValueError, match=r"6.01% is out of reach: the largest measured rates save 6.00% added up"):
        sensitivity.solve_additive(cost, np.array([[0, 1.0], [0, 5.0]]), 6.01)


ARCH, SHAPE = "resnet20", (1, 8, 8)


def _reduction(rates: list[float]) -> float:
    """The exact MACs reduction (%) of pruning ResNet-20 on 8x8 digits at `rates`: PyTorch's count."""
    base = macs(models.build_model(ARCH, None, 1, 10), SHAPE)
    return 100.0 * (base - macs(models.build_model(ARCH, models.pruned_widths(ARCH, rates), 1, 10), SHAPE)) / base


def _auto(drops: dict[int, float], losses: dict[int, float], target: float) -> dict:
    """auto_rates on ResNet-20 rows at one rate (0.5): each slot's measured saving is its exact
    one-slot reduction, its drop drops.get(slot, 10) images of 100 and its loss increase
    losses.get(slot, 0.5) over a baseline of 90% and loss 0.2."""
    slots = sensitivity.num_slots(ARCH)
    table = {(i, 0.5): (90.0 - drops.get(i, 10), 0.2 + losses.get(i, 0.5), _reduction(sensitivity.slot_rates(slots, i, 0.5)))
             for i in range(slots)}
    return sensitivity.auto_rates(_csv_rows(table), 100, 90.0, 0.2, target, ARCH, models.default_widths(ARCH), SHAPE, 1, 10)


def test_auto_rates_accept_a_choice_that_reaches_the_target_exactly():
    """The stem (slot 0) and layer1.0's inner channels (slot 3) meet in layer1.0.conv1, so their
    added savings exceed what pruning both removes; with the target that exact reduction
    (PyTorch's count) and those two the cheapest slots (1 image each, every other 10), the aim's
    optimum is both at 0.5: found in the first round, its reduction the target itself."""
    slots = sensitivity.num_slots(ARCH)
    both = [0.5 if i in (0, 3) else 0.0 for i in range(slots)]
    target = _reduction(both)
    assert target < _reduction(sensitivity.slot_rates(slots, 0, 0.5)) + _reduction(sensitivity.slot_rates(slots, 3, 0.5))
    got = _auto({0: 1, 3: 1}, {}, target)
    assert got["rates"] == both and got["rounds"] == 1
    assert got["reached_macs_reduction_pct"] == target and got["summed_drop_images"] == 2


@pytest.mark.parametrize("lighter", [3, 4])
def test_auto_rates_break_a_tie_in_images_by_the_smaller_loss_increase(lighter):
    """layer1.0's and layer1.1's inner channels (slots 3 and 4) save the same MACs and cost no
    image each (every other slot 10): either alone reaches a target just under their saving,
    and the one whose loss rises less (0.1 against 0.3) is picked, whichever it is."""
    slots = sensitivity.num_slots(ARCH)
    heavier = 7 - lighter
    saving = _reduction(sensitivity.slot_rates(slots, 3, 0.5))
    assert saving == _reduction(sensitivity.slot_rates(slots, 4, 0.5))
    got = _auto({3: 0, 4: 0}, {lighter: 0.1, heavier: 0.3}, np.floor(saving * 100) / 100 - 0.01)
    assert got["rates"] == sensitivity.slot_rates(slots, lighter, 0.5)
    assert got["summed_drop_images"] == 0 and got["summed_loss_increase"] == pytest.approx(0.1)


def test_the_additive_target_grows_by_the_shortfall_of_the_last_choice():
    """T' grows by the shortfall (module docstring), not by one grid step: with the stem and
    layer1.0's inner channels (slots 0 and 3) the cheapest (1 image each, every other slot 10) and
    T just under their added savings, round 1 picks both, whose exact reduction (PyTorch's count)
    falls short by T - exact; round 2 asks T' = T + (T - exact) and reaches T."""
    slots = sensitivity.num_slots(ARCH)
    added = _reduction(sensitivity.slot_rates(slots, 0, 0.5)) + _reduction(sensitivity.slot_rates(slots, 3, 0.5))
    exact = _reduction([0.5 if i in (0, 3) else 0.0 for i in range(slots)])
    target = np.floor(added * 100) / 100 - 0.01
    assert target - exact > 1.0  # the two channel sets meet in layer1.0.conv1: far more than a grid step short
    got = _auto({0: 1, 3: 1}, {}, target)
    assert got["rounds"] == 2
    assert got["additive_target_pct"] == pytest.approx(target + (target - exact))
    assert got["reached_macs_reduction_pct"] >= target


def test_a_target_equal_to_every_largest_saving_added_up_is_reached():
    """The largest savings added up (1.00% + 5.00% = 6.00%, by hand) are within reach: a target
    of exactly 6.00% takes the largest rate in both slots, where 6.01% is refused (the knapsack
    test above)."""
    cost = np.array([[0.0, 1.0], [0.0, 2.0]])
    assert sensitivity.solve_additive(cost, np.array([[0, 1.0], [0, 5.0]]), 6.0).tolist() == [1, 1]
