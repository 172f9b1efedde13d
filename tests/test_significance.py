"""prunelab.significance against independent computations: the paired t interval written out by
hand (numpy + the t quantile), McNemar's discordant pairs, and a network evaluated by hand."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from torch import nn

from prunelab import report, significance


def hand_interval(d: np.ndarray, scale: float) -> tuple[float, float, float]:
    """mean(d) +- t_{0.975, n-1} * sd(d) / sqrt(n), the textbook paired t interval."""
    n = len(d)
    mean = d.mean()
    half = stats.t.ppf(0.975, n - 1) * d.std(ddof=1) / math.sqrt(n)
    return scale * mean, scale * (mean - half), scale * (mean + half)


def test_interval_over_images_is_the_paired_t_interval():
    rng = np.random.default_rng(0)
    a, b = rng.random(2000) < 0.91, rng.random(2000) < 0.89
    d = significance.over_images(a, b)
    mean, low, high = hand_interval(a.astype(float) - b.astype(float), 100.0)
    assert (d.mean, d.low, d.high) == pytest.approx((mean, low, high), abs=1e-9)
    assert d.n == 2000 and d.unit == "test images"
    # the difference is the top-1 difference itself, and only discordant images move it
    assert d.mean == pytest.approx(100 * a.mean() - 100 * b.mean())
    discordant = int((a != b).sum())
    assert d.mean == pytest.approx(100 * (int((a & ~b).sum()) - int((~a & b).sum())) / 2000) and discordant > 0


def test_interval_over_seeds_on_fixed_inputs():
    a, b = [91.2, 90.7, 91.5], [90.1, 90.9, 90.6]
    d = significance.over_seeds(a, b)
    mean, low, high = hand_interval(np.subtract(a, b), 1.0)
    assert (d.mean, d.low, d.high) == pytest.approx((mean, low, high), abs=1e-9)
    # by hand: differences 1.1, -0.2, 0.9; mean 0.6; sd 0.7; t(0.975, 2) = 4.3027
    assert d.mean == pytest.approx(0.6) and d.high - d.mean == pytest.approx(4.302653 * 0.7 / math.sqrt(3), abs=1e-5)
    assert d.verdict == "not distinguishable"


def test_verdicts():
    assert significance.over_seeds([92.0, 93.0, 92.5], [90.0, 90.4, 90.1]).verdict == "A better"
    assert significance.over_seeds([90.0, 90.4, 90.1], [92.0, 93.0, 92.5]).verdict == "B better"
    assert significance.over_seeds([90.0], [91.0]).verdict == "no interval (one pair)"
    same = significance.over_seeds([90.0, 91.0], [89.0, 90.0])  # a constant difference: no spread
    assert (same.mean, same.low, same.high) == (1.0, 1.0, 1.0)
    identical = significance.over_images(np.ones(50, bool), np.ones(50, bool))
    assert (identical.mean, identical.low, identical.high, identical.verdict) == (0.0, 0.0, 0.0, "not distinguishable")


def test_mismatched_pairs_are_refused():
    with pytest.raises(ValueError, match="not the same test set"):
        significance.over_images(np.ones(10, bool), np.ones(11, bool))
    with pytest.raises(ValueError, match="pair them by seed"):
        significance.over_seeds([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="does not hold 9 images"):
        significance.decode(significance.encode(np.ones(8, bool)), 9)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.booleans(), max_size=300))
def test_encode_decode_round_trip(bits):
    mask = np.array(bits, dtype=bool)
    text = significance.encode(mask)
    assert len(text) == 2 * math.ceil(len(bits) / 8)
    assert (significance.decode(text, len(bits)) == mask).all()


def test_evaluate_is_the_networks_own_answers_and_engines_totals():
    """One pass gives the per-image answers (against the model run by hand) and the top-1 and
    loss that engine.evaluate, the training loop's evaluation, gives."""
    from prunelab.engine import evaluate as engine_evaluate

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    x, y = torch.randn(37, 1, 3, 4), torch.randint(0, 3, (37,))
    loader = [(x[i:i + 10], y[i:i + 10]) for i in range(0, 37, 10)]
    metrics, got = significance.evaluate(model, loader, torch.device("cpu"))
    with torch.no_grad():
        expected = (model(x).argmax(1) == y).numpy()
    assert got.dtype == bool and got.shape == (37,) and (got == expected).all()
    assert metrics == engine_evaluate(model, loader, torch.device("cpu"))
    assert metrics["top1"] == pytest.approx(100 * expected.mean())


def _record(criterion: str, correct: np.ndarray, seeds: str = "0", per_seed: str | None = None) -> dict:
    top1 = 100.0 * correct.mean()
    return {"model": "resnet20", "criterion": criterion, "setting": "r1", "sparsity": "[0.4]*12",
            "input_shape": "1x28x28", "seeds": seeds, "top1_per_seed": per_seed or f"{top1:.2f}",
            "baseline_top1": 92.0, "top1_before_finetune": 50.0, "top1": top1, "top1_std": 0.0, "top1_best": top1,
            "params": 100, "macs": 1000, "flops_paper": 2000, "baseline_params": 200, "baseline_macs": 2000,
            "baseline_flops_paper": 4000, "test_images": len(correct),
            "test_correct_per_seed": significance.encode(correct), "test_correct_before_finetune": significance.encode(correct)}


def test_comparison_states_each_difference_with_its_interval():
    rng = np.random.default_rng(1)
    chip, random, l1 = (rng.random(1000) < p for p in (0.90, 0.80, 0.90))
    text = report.comparison(report.frame([_record("chip", chip), _record("random", random), _record("l1", l1)]))
    for name, a, b in (("CHIP − Random", chip, random), ("L1 − Random", l1, random), ("L1 − CHIP", l1, chip)):
        mean, low, high = hand_interval(a.astype(float) - b.astype(float), 100.0)
        row = next(line for line in text.splitlines() if line.startswith(f"| {name} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[1].replace("−", "-")) == pytest.approx(mean, abs=0.005)
        low_s, high_s = cells[2].strip("[]").split(", ")
        assert float(low_s.replace("−", "-")) == pytest.approx(low, abs=0.005)
        assert float(high_s.replace("−", "-")) == pytest.approx(high, abs=0.005)
        assert cells[3] == "1,000 test images"
        expected = "not distinguishable" if low <= 0 <= high else (f"{name.split(' − ')[0]} better" if low > 0
                                                                   else f"{name.split(' − ')[1]} better")
        assert cells[4] == expected
    assert "| Random − CHIP |" not in text  # the negation of CHIP − random is not repeated
    assert "CHIP better" in text  # 90% against 80% on 1,000 images is far outside the noise


def test_comparison_pairs_by_seed_when_there_are_several():
    ones = np.ones(10, bool)
    recs = [_record("chip", ones, "0 1 2", "91.20 90.70 91.50"), _record("random", ones, "0 1 2", "90.10 90.90 90.60")]
    for r in recs:
        r["top1"] = float(np.mean([float(t) for t in r["top1_per_seed"].split()]))
    text = report.comparison(report.frame(recs))
    row = next(line for line in text.splitlines() if line.startswith("| CHIP − Random |"))
    d = significance.over_seeds([91.2, 90.7, 91.5], [90.1, 90.9, 90.6])
    assert f"[{d.low:+.2f}, {d.high:+.2f}]".replace("-", "−") in row and "3 seeds" in row


def test_comparison_before_finetuning_pairs_the_pruned_networks_by_image():
    """Before fine-tuning each criterion has one pruned network: its own per-image answers,
    against the hand-written interval, also when the fine-tuned networks have several seeds."""
    rng = np.random.default_rng(2)
    chip, random = (rng.random(500) < p for p in (0.6, 0.3))
    recs = [_record("chip", np.ones(500, bool), "0 1 2", "91.20 90.70 91.50"),
            _record("random", np.ones(500, bool), "0 1 2", "90.10 90.90 90.60")]
    for r, before in zip(recs, (chip, random)):
        r["test_correct_before_finetune"] = significance.encode(before)
        r["top1_before_finetune"] = 100.0 * before.mean()
    text = report.comparison(report.frame(recs))
    table = text.split("| Difference before fine-tuning |")[1]
    row = next(line for line in table.splitlines() if line.startswith("| CHIP − Random |"))
    mean, low, high = hand_interval(chip.astype(float) - random.astype(float), 100.0)
    assert f"| {mean:+.2f} | [{low:+.2f}, {high:+.2f}] | 500 test images | CHIP better |".replace("-", "−") in row
    after = text.split("| Difference after fine-tuning |")[1].split("| Difference before")[0]
    assert "3 seeds" in after


def test_before_finetuning_random_s_draws_are_paired_by_seed():
    """With seeds, random prunes a network per seed (its own draw): before fine-tuning, a
    difference with random is paired by seed, its interval holding the draws (hand-written t
    interval over the seeds); two one-network criteria are still paired by image."""
    rng = np.random.default_rng(3)
    draws = [rng.random(400) < p for p in (0.30, 0.45, 0.20)]  # random's three pruned networks
    chip, l1 = rng.random(400) < 0.6, rng.random(400) < 0.5  # one network each, the same for every seed
    recs = []
    for name, per_seed in (("chip", [chip] * 3), ("l1", [l1] * 3), ("random", draws)):
        r = _record(name, np.ones(400, bool), "0 1 2", "91.20 90.70 91.50")
        tops = [100.0 * bits.mean() for bits in per_seed]
        r.update(test_correct_before_finetune=" ".join(significance.encode(b) for b in per_seed),
                 top1_before_finetune=float(np.mean(tops)),
                 top1_before_finetune_per_seed=" ".join(f"{t:.2f}" for t in tops))
        recs.append(r)
    text = report.comparison(report.frame(recs))
    before = text.split("| Difference before fine-tuning |")[1]
    row = next(line for line in before.splitlines() if line.startswith("| CHIP − Random |"))
    tops = [float(f"{100.0 * b.mean():.2f}") for b in draws]
    mean, low, high = hand_interval(100.0 * chip.mean() - np.array(tops), 1.0)
    assert f"| {mean:+.2f} | [{low:+.2f}, {high:+.2f}] | 3 seeds |".replace("-", "−") in row, row
    row = next(line for line in before.splitlines() if line.startswith("| L1 − CHIP |"))
    mean, low, high = hand_interval(l1.astype(float) - chip.astype(float), 100.0)
    assert f"| {mean:+.2f} | [{low:+.2f}, {high:+.2f}] | 400 test images |".replace("-", "−") in row, row
    # the side-by-side table: random's top-1 before fine-tuning is the draws' mean ± their spread
    cell = f"{np.mean(tops):.2f} ± {np.std(tops, ddof=1):.2f} (3 draws)"
    assert next(line for line in text.splitlines() if line.startswith("| Random |")).split(" | ")[1] == cell


def test_comparison_sets_an_auto_setting_against_the_hand_set_one_it_names():
    """auto:r1 beside r1: each criterion at the automatic rates minus itself at the hand-set ones,
    after fine-tuning paired by seed (the t interval written out), before it by test image."""
    rng = np.random.default_rng(3)
    recs = []
    for criterion in ("chip", "l1"):
        for setting, sparsity, per_seed in (("r1", "[0.4]*12", rng.uniform(88, 92, 3)),
                                            ("auto", "auto:r1", rng.uniform(88, 92, 3))):
            r = _record(criterion, rng.random(400) < 0.9, "0 1 2", " ".join(f"{t:.2f}" for t in per_seed))
            r.update(setting=setting, sparsity=sparsity, top1=float(np.mean(np.round(per_seed, 2))))
            recs.append(r)
    text = report.comparison(report.frame(recs))
    section = text.split("## ResNet-20: automatic rates (auto) against the hand-set r1")[1]
    by = {(r["criterion"], r["setting"]): r for r in recs}
    for criterion, name in (("chip", "CHIP"), ("l1", "L1")):
        a, b = ([float(t) for t in by[criterion, s]["top1_per_seed"].split()] for s in ("auto", "r1"))
        mean, low, high = hand_interval(np.array(a) - np.array(b), 1.0)
        row = next(line for line in section.splitlines() if line.startswith(f"| {name} |") and "after" in line)
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == "50.0% / 50.0%" and cells[2] == "after fine-tuning" and cells[5] == "3 seeds"
        assert float(cells[3].replace("−", "-")) == pytest.approx(mean, abs=0.005)
        assert [float(x.replace("−", "-")) for x in cells[4].strip("[]").split(", ")] == pytest.approx([low, high], abs=0.005)
        before = next(line for line in section.splitlines() if line.startswith(f"| {name} |") and "before" in line)
        assert "400 test images" in before
    assert "automatic rates" not in report.comparison(report.frame([r for r in recs if r["setting"] == "r1"]))


def test_two_pairs_give_the_t_interval_with_one_degree_of_freedom_and_one_pair_none():
    """Two pairs are enough for an interval: the paired t interval with n - 1 = 1 degree of
    freedom, mean +- t_{0.975, 1} * sd / sqrt(2), the quantile from scipy.stats.t (12.706 by
    the tables); its verdict is read off the interval. One pair gives none."""
    t1 = stats.t.ppf(0.975, df=1)
    assert t1 == pytest.approx(12.7062, abs=1e-4)
    # differences 1.0 and 1.1: mean 1.05, sd 0.1 / sqrt(2), half-width 12.706 * 0.05 = 0.635
    d = significance.over_seeds([91.0, 91.1], [90.0, 90.0])
    assert (d.n, d.unit) == (2, "seeds")
    assert (d.mean, d.low, d.high) == pytest.approx((1.05, 1.05 - t1 * 0.05, 1.05 + t1 * 0.05), abs=1e-9)
    assert d.verdict == "A better"  # [0.415, 1.685] lies above 0
    # differences 1.0 and -0.5: mean 0.25, sd 1.5 / sqrt(2), half-width 12.706 * 0.75
    wide = significance.over_seeds([91.0, 90.0], [90.0, 90.5])
    assert (wide.low, wide.high) == pytest.approx((0.25 - t1 * 0.75, 0.25 + t1 * 0.75), abs=1e-9)
    assert wide.verdict == "not distinguishable"
    # two test images, differences 1 and 0 (in points 100 and 0): mean 50, half-width 100 * 12.706 * 0.5
    images = significance.over_images(np.array([True, True]), np.array([False, True]))
    assert (images.n, images.mean, images.low, images.high) == pytest.approx((2, 50.0, 50.0 - 50 * t1, 50.0 + 50 * t1))
    one = significance.over_seeds([91.0], [90.0])
    assert one.n == 1 and one.mean == pytest.approx(1.0) and math.isnan(one.low) and math.isnan(one.high)
    assert one.verdict == "no interval (one pair)"


def test_fewer_seeds_on_either_side_are_refused():
    """Pairing by seed needs the same number of seeds on both sides, whichever side has fewer
    (numpy would otherwise broadcast one seed against all of the other's)."""
    for a, b in (([1.0, 2.0], [1.0]), ([1.0], [1.0, 2.0]), ([90.0, 91.0], [90.0, 91.0, 92.0])):
        with pytest.raises(ValueError, match="pair them by seed"):
            significance.over_seeds(a, b)


def test_a_correctness_string_with_padding_bits_set_is_refused():
    """encode packs 8 images a byte, the first image in the high bit, padding the last byte with
    zeros (by hand: 5 images all right = 0b11111000 = 'f8'; right, wrong, right = 0b10100000 =
    'a0'). A string with a padding bit set was not written by encode for that many images and is
    refused, as one too short is."""
    assert significance.encode(np.ones(5, bool)) == "f8"
    assert significance.encode(np.array([True, False, True])) == "a0"
    assert significance.decode("f8", 5).tolist() == [True] * 5
    assert significance.decode("a0", 3).tolist() == [True, False, True]
    assert significance.decode("0080", 9).tolist() == [False] * 8 + [True]
    for text, n in (("ff", 5), ("f9", 5), ("a1", 3), ("a010", 3), ("0001", 9), ("f8", 9)):
        with pytest.raises(ValueError, match=f"does not hold {n} images"):
            significance.decode(text, n)
