"""prunelab.significance against independent references: the paired t interval written out by
hand (numpy + the t quantile), Newcombe's paired interval against a published worked example,
McNemar's exact test against scipy's binomial test, Holm's adjustment on hand-computed cases,
the detectable difference against a simulation of the t test it describes, and a network
evaluated by hand."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from torch import nn

from prunelab import correctness, report, significance


def hand_interval(d: np.ndarray, scale: float) -> tuple[float, float, float]:
    """mean(d) +- t_{0.975, n-1} * sd(d) / sqrt(n), the textbook paired t interval."""
    n = len(d)
    mean = d.mean()
    half = stats.t.ppf(0.975, n - 1) * d.std(ddof=1) / math.sqrt(n)
    return scale * mean, scale * (mean - half), scale * (mean + half)


def table(n11: int, n10: int, n01: int, n00: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-image correctness of A and B with the given 2x2 counts (n10: A right, B wrong)."""
    a = np.array([1] * n11 + [1] * n10 + [0] * n01 + [0] * n00, bool)
    b = np.array([1] * n11 + [0] * n10 + [1] * n01 + [0] * n00, bool)
    return a, b


def test_interval_over_images_is_newcombes_paired_interval():
    """Fagerland, Lydersen & Laake, Statistical Analysis of Contingency Tables (2017), chapter 8,
    as their R package contingencytables tests it: the paired table [[59, 6], [16, 80]] gives
    the Newcombe square-and-add estimate -0.0621, 95% CI -0.1186 to -0.0046."""
    d = significance.over_images(*table(59, 6, 16, 80))
    assert (d.n, d.unit) == (161, "test images")
    assert d.mean == pytest.approx(-6.21, abs=0.005)
    assert (d.low, d.high) == pytest.approx((-11.86, -0.46), abs=0.005)
    # McNemar's exact p: the 6 of 22 discordant images A wins, against a fair coin (scipy)
    assert d.p == pytest.approx(stats.binomtest(6, 22, 0.5).pvalue) and 0.05 < d.p < 0.06
    # the difference is the top-1 difference itself, and only discordant images move it
    rng = np.random.default_rng(0)
    a, b = rng.random(2000) < 0.91, rng.random(2000) < 0.89
    d = significance.over_images(a, b)
    assert d.mean == pytest.approx(100 * a.mean() - 100 * b.mean())
    assert d.mean == pytest.approx(100 * (int((a & ~b).sum()) - int((~a & b).sum())) / 2000)
    # at 2,000 images it is close to the large-sample t interval over images
    _, low, high = hand_interval(a.astype(float) - b.astype(float), 100.0)
    assert (d.low, d.high) == pytest.approx((low, high), abs=0.1)


def test_networks_that_agree_on_every_image_get_a_real_interval():
    """The t interval over images is [0, 0] when the networks agree on every image; Newcombe's is
    not: 10,000 agreeing images bound the difference to about +-0.04 points, 50 to +-7 points
    (the Wilson bound for 0 discordant pairs), and McNemar's p is 1."""
    many = significance.over_images(np.ones(10_000, bool), np.ones(10_000, bool))
    few = significance.over_images(*table(45, 0, 0, 5))
    assert many.mean == 0.0 and 0.02 < many.high == -many.low < 0.06 and many.p == 1.0
    assert few.mean == 0.0 and 3 < few.high == -few.low < 10
    assert many.verdict() == few.verdict() == "not detected"


def test_interval_over_seeds_on_fixed_inputs():
    a, b = [91.2, 90.7, 91.5], [90.1, 90.9, 90.6]
    d = significance.over_seeds(a, b)
    mean, low, high = hand_interval(np.subtract(a, b), 1.0)
    assert (d.mean, d.low, d.high) == pytest.approx((mean, low, high), abs=1e-9)
    # by hand: differences 1.1, -0.2, 0.9; mean 0.6; sd 0.7; t(0.975, 2) = 4.3027
    assert d.mean == pytest.approx(0.6) and d.high - d.mean == pytest.approx(4.302653 * 0.7 / math.sqrt(3), abs=1e-5)
    assert d.sd == pytest.approx(0.7)
    # p: t = 0.6 / (0.7 / sqrt 3) = 1.4846 on 2 degrees of freedom, two-sided
    assert d.p == pytest.approx(2 * stats.t.sf(0.6 / (0.7 / math.sqrt(3)), 2))
    assert d.verdict() == "not detected"


def test_verdicts():
    assert significance.over_seeds([92.0, 93.0, 92.5], [90.0, 90.4, 90.1]).verdict() == "A better"
    assert significance.over_seeds([90.0, 90.4, 90.1], [92.0, 93.0, 92.5]).verdict() == "B better"
    assert significance.over_seeds([90.0], [91.0]).verdict() == "no interval: one pair"
    # the same difference in every pair: no spread, no interval, no verdict (not a zero-width "A better")
    same = significance.over_seeds([90.0, 91.0, 92.0], [89.0, 90.0, 91.0])
    assert same.mean == 1.0 and math.isnan(same.low) and math.isnan(same.high) and math.isnan(same.p)
    assert same.verdict() == same.verdict(0.001) == "no interval: no spread"
    # with an adjusted p-value the verdict follows it, not the unadjusted interval
    d = significance.over_seeds([92.0, 93.0, 92.5], [90.0, 90.4, 90.1])
    assert d.low > 0 and d.verdict(0.2) == "not detected" and d.verdict(0.01) == "A better"


def test_holm_on_hand_computed_cases():
    """Holm (1979): sort the m p-values; the i-th smallest (from 0) times m - i, running maximum,
    capped at 1. [0.01, 0.04, 0.03]: 0.01 * 3 = 0.03; 0.03 * 2 = 0.06; max(0.04 * 1, 0.06) = 0.06.
    A contrast without a p-value (nan) is not tested: it stays nan and does not count in m."""
    assert significance.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert significance.holm([0.5, 0.001, 0.9, 0.02]) == pytest.approx([1.0, 0.004, 1.0, 0.06])
    out = significance.holm([0.01, float("nan"), 0.04])
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.04)
    assert significance.holm([]) == [] and significance.holm([0.2]) == [0.2]


def test_detectable_difference_is_what_the_t_test_finds_80_percent_of_the_time():
    """The definition, simulated: normal per-pair differences with the returned mean and the
    given sd, k pairs, the two-sided paired t test (scipy) at alpha rejects in 80% of 20,000
    designs. With many pairs it nears the normal approximation (z_{1-alpha/2} + z_{0.8}) sd /
    sqrt(k), from above (the t test pays for estimating sd)."""
    normal = (stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) / math.sqrt(200)
    assert normal < significance.detectable(1.0, 200) < 1.01 * normal
    assert significance.detectable(2.0, 10) == pytest.approx(2 * significance.detectable(1.0, 10))  # in sd's units
    rng = np.random.default_rng(0)
    for k, alpha in ((3, 0.05), (8, 0.05 / 3)):
        delta = significance.detectable(1.0, k, alpha)
        d = rng.normal(delta, 1.0, size=(20_000, k))
        p = stats.ttest_1samp(d, 0.0, axis=1).pvalue
        assert (p < alpha).mean() == pytest.approx(0.8, abs=0.01), (k, alpha)
    assert math.isnan(significance.detectable(1.0, 1)) and math.isnan(significance.detectable(0.0, 5))



def test_detectable_difference_counts_both_tails_of_the_two_sided_test():
    """Near alpha the test's other tail carries much of its power: for a power of 0.08 at 5%
    about a third of the rejections fall on the wrong side. The returned difference solves the
    two-sided power equation 1 - P(-t* < T < t*) = power (scipy's noncentral t cdf), at every power."""
    for k, power in ((3, 0.08), (3, 0.5), (5, 0.8)):
        delta = significance.detectable(1.0, k, 0.05, power)
        crit, nc = stats.t.ppf(0.975, k - 1), delta * math.sqrt(k)
        assert 1 - (stats.nct.cdf(crit, k - 1, nc) - stats.nct.cdf(-crit, k - 1, nc)) == pytest.approx(power, abs=1e-6)

def test_mismatched_pairs_are_refused():
    with pytest.raises(ValueError, match="not the same test set"):
        significance.over_images(np.ones(10, bool), np.ones(11, bool))
    with pytest.raises(ValueError, match="pair them by seed"):
        significance.over_seeds([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="does not hold 9 images"):
        correctness.decode(correctness.encode(np.ones(8, bool)), 9)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.booleans(), max_size=300))
def test_encode_decode_round_trip(bits):
    mask = np.array(bits, dtype=bool)
    text = correctness.encode(mask)
    assert len(text) == 2 * math.ceil(len(bits) / 8)
    assert (correctness.decode(text, len(bits)) == mask).all()


def test_evaluate_is_the_networks_own_answers_and_engines_totals():
    """One pass gives the per-image answers (against the model run by hand) and the top-1 and
    loss that engine.evaluate, the training loop's evaluation, gives."""
    from prunelab.engine import evaluate as engine_evaluate

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    x, y = torch.randn(37, 1, 3, 4), torch.randint(0, 3, (37,))
    loader = [(x[i:i + 10], y[i:i + 10]) for i in range(0, 37, 10)]
    metrics, got = correctness.evaluate(model, loader, torch.device("cpu"))
    with torch.no_grad():
        expected = (model(x).argmax(1) == y).numpy()
    assert got.dtype == bool and got.shape == (37,) and (got == expected).all()
    assert metrics == engine_evaluate(model, loader, torch.device("cpu"))
    assert metrics["top1"] == pytest.approx(100 * expected.mean())


def _record(criterion: str, correct: np.ndarray, seeds: str = "0", per_seed: str | None = None,
            top1: float | None = None) -> dict:
    top1 = 100.0 * correct.mean() if top1 is None else top1
    return {"model": "resnet20", "criterion": criterion, "setting": "r1", "sparsity": "[0.4]*12",
            "input_shape": "1x28x28", "seeds": seeds, "top1_per_seed": per_seed or f"{top1:.2f}",
            "baseline_top1": 92.0, "top1_before_finetune": 50.0, "top1": top1, "top1_std": 0.0, "top1_best": top1,
            "params": 100, "macs": 1000, "flops_paper": 2000, "baseline_params": 200, "baseline_macs": 2000,
            "baseline_flops_paper": 4000, "test_images": len(correct),
            "test_correct_per_seed": correctness.encode(correct), "test_correct_before_finetune": correctness.encode(correct)}


def test_comparison_states_each_difference_with_its_interval():
    rng = np.random.default_rng(1)
    chip, random, l1 = (rng.random(1000) < p for p in (0.90, 0.80, 0.90))
    text = report.comparison(report.frame([_record("chip", chip), _record("random", random), _record("l1", l1)]))
    for name, a, b in (("CHIP − Random", chip, random), ("L1 − Random", l1, random), ("L1 − CHIP", l1, chip)):
        d = significance.over_images(a, b)
        row = next(line for line in text.splitlines() if line.startswith(f"| {name} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[1].replace("−", "-")) == pytest.approx(100 * (a.mean() - b.mean()), abs=0.005)
        low_s, high_s = cells[2].strip("[]").split(", ")
        assert float(low_s.replace("−", "-")) == pytest.approx(d.low, abs=0.005)
        assert float(high_s.replace("−", "-")) == pytest.approx(d.high, abs=0.005)
        assert cells[3:] == ["1,000 test images"]  # an estimate: no verdict column
    assert "| Random − CHIP |" not in text  # the negation of CHIP − random is not repeated
    assert "better" not in text and "Declared contrasts" not in text  # no family declared: no verdicts at all


def test_only_the_declared_family_gets_verdicts_holm_adjusted():
    """Three declared contrasts over seeds: CHIP − random p = 0.0040, L1 − random 0.0197, CHIP − L1
    0.3486 (scipy's paired t test); Holm: 0.0040 * 3 = 0.012, max(0.0197 * 2, 0.012) = 0.0394,
    max(0.3486, 0.0394): CHIP and L1 better than random, CHIP − L1 not detected. Unadjusted, L1
    − random's interval would not decide anything different; an undeclared contrast (HRank −
    random) gets its interval and no verdict."""
    ones = np.ones(10, bool)
    tops = {"chip": [92.0, 93.0, 92.5], "l1": [91.5, 92.7, 91.6], "random": [90.0, 90.4, 90.1],
            "hrank": [95.0, 96.0, 97.0]}
    recs = [_record(c, ones, "0 1 2", " ".join(f"{t:.2f}" for t in v), top1=float(np.mean(v))) for c, v in tops.items()]
    family = [("chip", "random", "r1"), ("l1", "random", "r1"), ("chip", "l1", "r1")]
    text = report.comparison(report.frame(recs), family)
    p = [stats.ttest_rel(tops[a], tops[b]).pvalue for a, b, _ in family]
    holm = [min(1, 3 * min(p)), max(min(1, 3 * min(p)), 2 * sorted(p)[1]), max(p)]
    order = np.argsort(p)
    expected = dict(zip([family[i] for i in order], holm))
    section = text.split("## Declared contrasts")[1].split("\n## ")[0]
    for (a, b, _), verdict in zip(family, ("CHIP better", "L1 better", "not detected")):
        label = f"{report.METHOD_NAMES[a]} − {report.METHOD_NAMES[b]} at r1"
        cells = [c.strip() for c in next(line for line in section.splitlines() if line.startswith(f"| {label} |"))
                 .strip("|").split("|")]
        d = significance.over_seeds(tops[a], tops[b])
        assert cells[3] == "3 fine-tuning seeds of one baseline"
        assert float(cells[4]) == pytest.approx(d.p, abs=5e-4) and float(cells[5]) == pytest.approx(expected[a, b, "r1"], abs=5e-4)
        assert cells[6] == verdict
        assert float(cells[7]) == pytest.approx(significance.detectable(d.sd, 3, 0.05 / 3), abs=0.005)
    assert "over the 3 that have one" in section and "| HRank − Random at r1 |" not in section
    assert "| HRank − Random | +" in text and "HRank better" not in text


def test_comparison_pairs_by_seed_when_there_are_several():
    ones = np.ones(10, bool)
    recs = [_record("chip", ones, "0 1 2", "91.20 90.70 91.50"), _record("random", ones, "0 1 2", "90.10 90.90 90.60")]
    for r in recs:
        r["top1"] = float(np.mean([float(t) for t in r["top1_per_seed"].split()]))
    text = report.comparison(report.frame(recs))
    row = next(line for line in text.splitlines() if line.startswith("| CHIP − Random |"))
    d = significance.over_seeds([91.2, 90.7, 91.5], [90.1, 90.9, 90.6])
    assert f"[{d.low:+.2f}, {d.high:+.2f}]".replace("-", "−") in row and "3 fine-tuning seeds" in row


def test_comparison_before_finetuning_pairs_the_pruned_networks_by_image():
    """Before fine-tuning each criterion has one pruned network: its own per-image answers,
    against the hand-written interval, also when the fine-tuned networks have several seeds."""
    rng = np.random.default_rng(2)
    chip, random = (rng.random(500) < p for p in (0.6, 0.3))
    recs = [_record("chip", np.ones(500, bool), "0 1 2", "91.20 90.70 91.50"),
            _record("random", np.ones(500, bool), "0 1 2", "90.10 90.90 90.60")]
    for r, before in zip(recs, (chip, random)):
        r["test_correct_before_finetune"] = correctness.encode(before)
        r["top1_before_finetune"] = 100.0 * before.mean()
    text = report.comparison(report.frame(recs))
    table = text.split("| Difference before fine-tuning |")[1]
    row = next(line for line in table.splitlines() if line.startswith("| CHIP − Random |"))
    d = significance.over_images(chip, random)
    assert f"| {d.mean:+.2f} | [{d.low:+.2f}, {d.high:+.2f}] | 500 test images |".replace("-", "−") in row
    after = text.split("| Difference after fine-tuning |")[1].split("| Difference before")[0]
    assert "3 fine-tuning seeds" in after


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
        r.update(test_correct_before_finetune=" ".join(correctness.encode(b) for b in per_seed),
                 top1_before_finetune=float(np.mean(tops)),
                 top1_before_finetune_per_seed=" ".join(f"{t:.2f}" for t in tops))
        recs.append(r)
    text = report.comparison(report.frame(recs))
    before = text.split("| Difference before fine-tuning |")[1]
    row = next(line for line in before.splitlines() if line.startswith("| CHIP − Random |"))
    tops = [float(f"{100.0 * b.mean():.2f}") for b in draws]
    mean, low, high = hand_interval(100.0 * chip.mean() - np.array(tops), 1.0)
    assert f"| {mean:+.2f} | [{low:+.2f}, {high:+.2f}] |".replace("-", "−") + " 3 fine-tuning seeds of one baseline |" in row, row
    row = next(line for line in before.splitlines() if line.startswith("| L1 − CHIP |"))
    d = significance.over_images(l1, chip)
    assert f"| {d.mean:+.2f} | [{d.low:+.2f}, {d.high:+.2f}] | 400 test images |".replace("-", "−") in row, row
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
        assert cells[1] == "50.0% / 50.0%" and cells[2] == "after fine-tuning"
        assert cells[5:] == ["3 fine-tuning seeds of one baseline"]
        assert float(cells[3].replace("−", "-")) == pytest.approx(mean, abs=0.005)
        assert [float(x.replace("−", "-")) for x in cells[4].strip("[]").split(", ")] == pytest.approx([low, high], abs=0.005)
        before = next(line for line in section.splitlines() if line.startswith(f"| {name} |") and "before" in line)
        assert "400 test images" in before
    assert "automatic rates" not in report.comparison(report.frame([r for r in recs if r["setting"] == "r1"]))


def test_two_pairs_give_the_t_interval_with_one_degree_of_freedom_and_one_pair_none():
    """Two pairs are enough for an interval: the paired t interval with n - 1 = 1 degree of
    freedom, mean +- t_{0.975, 1} * sd / sqrt(2), the quantile from scipy.stats.t (12.706 by
    the tables); its verdict, without an adjusted p-value, is read off the interval. One pair
    gives none."""
    t1 = stats.t.ppf(0.975, df=1)
    assert t1 == pytest.approx(12.7062, abs=1e-4)
    # differences 1.0 and 1.1: mean 1.05, sd 0.1 / sqrt(2), half-width 12.706 * 0.05 = 0.635
    d = significance.over_seeds([91.0, 91.1], [90.0, 90.0])
    assert (d.n, d.unit) == (2, "seeds")
    assert (d.mean, d.low, d.high) == pytest.approx((1.05, 1.05 - t1 * 0.05, 1.05 + t1 * 0.05), abs=1e-9)
    assert d.verdict() == "A better"  # [0.415, 1.685] lies above 0
    # differences 1.0 and -0.5: mean 0.25, sd 1.5 / sqrt(2), half-width 12.706 * 0.75
    wide = significance.over_seeds([91.0, 90.0], [90.0, 90.5])
    assert (wide.low, wide.high) == pytest.approx((0.25 - t1 * 0.75, 0.25 + t1 * 0.75), abs=1e-9)
    assert wide.verdict() == "not detected"
    one = significance.over_seeds([91.0], [90.0])
    assert one.n == 1 and one.mean == pytest.approx(1.0) and math.isnan(one.low) and math.isnan(one.high)
    assert one.verdict() == "no interval: one pair"


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
    assert correctness.encode(np.ones(5, bool)) == "f8"
    assert correctness.encode(np.array([True, False, True])) == "a0"
    assert correctness.decode("f8", 5).tolist() == [True] * 5
    assert correctness.decode("a0", 3).tolist() == [True, False, True]
    assert correctness.decode("0080", 9).tolist() == [False] * 8 + [True]
    for text, n in (("ff", 5), ("f9", 5), ("a1", 3), ("a010", 3), ("0001", 9), ("f8", 9)):
        with pytest.raises(ValueError, match=f"does not hold {n} images"):
            correctness.decode(text, n)
