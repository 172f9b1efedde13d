import matplotlib.image
import pytest

from prunelab import report
from prunelab.errors import PrunelabError


def record(**kw):
    r = {"model": "resnet56", "criterion": "chip", "setting": "r1", "sparsity": "[0.]+[0.15]*2+[0.4]*27",
         "input_shape": "3x32x32", "baseline_top1": 93.26, "top1_before_finetune": 10.0, "top1": 94.16,
         "params": 485413, "macs": 65168128, "flops_paper": 65939968, "baseline_params": 853018,
         "baseline_macs": 125485696, "baseline_flops_paper": 126554752, "loss": 0.2,
         "seeds": "0", "top1_per_seed": "94.16", "top1_std": 0.0, "top1_best": 94.16}
    r.update(kw)
    return r


def test_tables_are_identical_whatever_the_number_types(tmp_path):
    # MLflow hands back every metric as float and every tag as str
    as_mlflow = {k: (float(v) if isinstance(v, (int, float)) else v) for k, v in record().items()}
    a = report.write_tables([record()], tmp_path / "a")
    b = report.write_tables([as_mlflow], tmp_path / "b")
    for name in a:
        assert a[name].read_bytes() == b[name].read_bytes()


def test_table_values_are_computed_from_the_record(tmp_path):
    out = report.write_tables([record(), record(setting="r2", top1=92.0)], tmp_path)
    md = out["table.md"].read_text()
    assert "| ResNet-56 | CHIP | `[0.]+[0.15]*2+[0.4]*27` | 93.26 | 94.16 | +0.90 | 0.49M (43.1%) |" in md
    csv = out["table.csv"].read_text().splitlines()
    assert len(csv) == 3 and "baseline_top1" in csv[0] and "pruned_top1" in csv[0]
    df = report.frame([record()])
    assert df.params_reduction_pct[0] == pytest.approx(100 * (853018 - 485413) / 853018)
    assert "\\toprule" in out["table.tex"].read_text()


def test_incomplete_records_are_refused(tmp_path):
    r = record()
    del r["top1"]
    with pytest.raises(PrunelabError, match="top1"):
        report.write_tables([r], tmp_path)
    assert not any(tmp_path.iterdir())


def test_comparison_and_plot_put_criteria_side_by_side(tmp_path):
    records = [record(criterion=c, setting=s, top1=t, top1_before_finetune=b, macs=m)
               for c, s, t, b, m in [("chip", "r1", 94.0, 30.0, 65_000_000), ("random", "r1", 93.0, 12.5, 65_000_000),
                                     ("chip", "r2", 92.0, 10.0, 34_000_000), ("random", "r2", 91.5, 9.0, 34_000_000)]]
    out = report.write_tables(records, tmp_path)
    md = out["comparison.md"].read_text()
    assert md.count("## ResNet-56, setting") == 2
    assert "| CHIP | 30.00 | 94.00 |" in md and "| Random | 12.50 | 93.00 |" in md
    pts = out["top1_vs_macs.csv"].read_text().splitlines()
    assert pts[0] == "model,criterion,setting,macs,top1,top1_before_finetune" and len(pts) == 1 + 1 + 4
    assert pts[1].startswith("resnet56,baseline,,125485696,93.26")
    png = out["top1_vs_macs.png"].read_bytes()
    image = matplotlib.image.imread(out["top1_vs_macs.png"])  # (H, W, RGBA) floats in [0, 1]
    assert image.shape == (420, 1100, 4)  # two panels, 11 x 4.2 inches at 100 dpi
    # each criterion in its own colour (report.STYLE), in both panels: baseline, CHIP, random
    rgb = (image[..., :3] * 255).round().astype(int)

    def pixels(colour: str, half: slice) -> int:
        want = [int(colour[i:i + 2], 16) for i in (1, 3, 5)]
        return int((rgb[:, half] == want).all(-1).sum())

    for criterion in ("baseline", "chip", "random"):
        colour = report.STYLE[criterion][0]
        for half in (slice(0, 550), slice(550, 1100)):  # before and after fine-tuning
            assert pixels(colour, half) >= 10, f"no {criterion} markers in a panel"
    assert pixels(report.STYLE["hrank"][0], slice(0, 1100)) == 0  # no HRank network, no HRank colour
    again = report.write_tables(records, tmp_path / "again")
    assert again["top1_vs_macs.png"].read_bytes() == png  # deterministic, no timestamp


def test_several_seeds_show_mean_and_spread_and_say_the_paper_reports_its_best(tmp_path):
    r = record(seeds="0 1 2", top1_per_seed="94.00 94.20 94.60", top1=94.26666, top1_std=0.30551, top1_best=94.6)
    md = report.write_tables([r], tmp_path)["table.md"].read_text()
    assert "| 94.27 ± 0.31 (3 seeds) |" in md and "the paper reports the best run" in md
    assert "94.27 ± 0.31" not in report.write_tables([record()], tmp_path / "one")["table.md"].read_text()


def test_paper_table_puts_the_papers_top1_beside_ours(tmp_path):
    rows = [record(setting="resnet56-r1"), record(model="vgg16", setting="vgg16-r9", sparsity="[0.5]*12"),
            record(criterion="hrank", setting="resnet56-r1")]
    out = report.write_paper_tables(rows, tmp_path)
    md = out["table.md"].read_text()
    assert "| ResNet-56 | CHIP | `[0.]+[0.15]*2+[0.4]*27` | 93.26 | 94.16 | +0.90 | 93.26 → 94.16 | 0.49M (43.1%) |" in md
    assert "| VGG-16 | CHIP | `[0.5]*12` | 93.26 | 94.16 | +0.90 | – |" in md  # no such row in the paper
    # CHIP's reported top-1 is CHIP's, not another criterion's at the same rates
    assert "| ResNet-56 | HRank | `[0.]+[0.15]*2+[0.4]*27` | 93.26 | 94.16 | +0.90 | – |" in md
    # the two criteria of one row are compared, under the row's name
    comparison = out["comparison.md"].read_text()
    assert "## ResNet-56, setting resnet56-r1: `[0.]+[0.15]*2+[0.4]*27`" in comparison and "VGG-16" not in comparison
    assert r"93.26 $\to$ 94.16" in out["table.tex"].read_text()
    assert out["table.csv"].read_text().splitlines()[0].endswith("paper_baseline_top1,paper_pruned_top1")


def test_measured_latency_has_a_table_of_its_own_and_the_results_tables_none(tmp_path):
    """A measurement differs between runs: the results tables (which must be the same bytes on any
    CPU) never show one; latency.md gives, per network, the speed-up and both medians."""
    timed = dict(speedup_cpu_b1=1.5, speedup_cpu_b256=1.8234, latency_cpu_b1_baseline_ms=3.0,
                 latency_cpu_b1_pruned_ms=2.0, latency_cpu_b256_baseline_ms=91.17, latency_cpu_b256_pruned_ms=50.0)
    out = report.write_tables([record(**timed, machine={"cpu_model": "AMD EPYC"}), record(setting="r2")], tmp_path)
    untimed = report.write_tables([record(), record(setting="r2")], tmp_path / "untimed")
    for name in ("table.md", "table.tex", "table.csv", "comparison.md", "summary.json"):
        assert out[name].read_bytes() == untimed[name].read_bytes(), f"{name} depends on a measured latency"
    md = out["latency.md"].read_text()
    header = next(line for line in md.splitlines() if line.startswith("| Model"))
    assert header == ("| Model | Method | Sparsity | Speed-up, CPU (batch 1 / 256) | Latency, CPU (ms, batch 1 / 256) |")
    # 3.0 / 2.0 = 1.50; 91.17 / 50.0 = 1.8234 -> 1.82; the unmeasured network: dashes
    assert "| ResNet-56 | CHIP | `[0.]+[0.15]*2+[0.4]*27` | 1.50× / 1.82× | 3.00 → 2.00 / 91.17 → 50.00 |" in md
    assert "| – / – | – / – |" in md and "Measured on: AMD EPYC." in md
    assert out["latency.csv"].read_text().splitlines()[0].split(",")[:4] == ["model", "criterion", "setting", "sparsity"]
    # from MLflow: every metric a float, the machine a flattened tag; the same bytes
    as_mlflow = {k: (float(v) if isinstance(v, (int, float)) else v) for k, v in record(**timed).items()}
    again = report.write_tables([{**as_mlflow, "machine.cpu_model": "AMD EPYC"}, record(setting="r2")], tmp_path / "again")
    assert again["latency.md"].read_bytes() == out["latency.md"].read_bytes()
    assert "Not measured" in untimed["latency.md"].read_text()


def test_networks_at_the_same_point_stay_visible(tmp_path):
    """CHIP and HRank at the same MACs and top-1 (as at r2 on digits): both markers are seen."""
    records = [record(criterion=c, top1=97.78, top1_before_finetune=9.72) for c in ("chip", "hrank", "l1", "random")]
    image = matplotlib.image.imread(report.write_tables(records, tmp_path)["top1_vs_macs.png"])
    rgb = (image[..., :3] * 255).round().astype(int)
    for criterion in ("chip", "hrank", "l1", "random"):
        want = [int(report.STYLE[criterion][0][i:i + 2], 16) for i in (1, 3, 5)]
        for half in (slice(0, 550), slice(550, 1100)):
            assert (rgb[:, half] == want).all(-1).sum() >= 10, f"{criterion}'s marker is hidden"


# --- Pairing, signs and the side outputs, against hand-computed values (scipy.stats.t for the quantiles).


def _bits(text: str):
    """'11110000' -> (8,) bool correctness, image by image."""
    import numpy as np

    return np.array([c == "1" for c in text])


def _with_images(rec: dict, after: list[str], before: list[str], before_per_seed: list[float] | None = None) -> dict:
    """rec plus per-image correctness: `after` one bit string per fine-tuning seed, `before` one
    per seed's pruned network (the same string repeated for a criterion with one network)."""
    from prunelab import correctness

    rec = dict(rec, test_images=len(after[0]),
               test_correct_per_seed=" ".join(correctness.encode(_bits(b)) for b in after),
               test_correct_before_finetune=" ".join(correctness.encode(_bits(b)) for b in before))
    if before_per_seed is not None:
        rec["top1_before_finetune_per_seed"] = " ".join(f"{t:.2f}" for t in before_per_seed)
    return rec


def _row(text: str, table: str, label: str) -> list[str]:
    """The cells of comparison.md's row `label` in the table 'Difference <table> fine-tuning'."""
    section = text.split(f"| Difference {table} fine-tuning |")[1].split("| Difference ")[0]
    line = next(line for line in section.splitlines() if line.startswith(f"| {label} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_rows_fine_tuned_with_different_seeds_are_not_paired_by_seed():
    """Pairing by seed pairs the same seed (the same data order) on both sides: CHIP fine-tuned
    with seeds 0 1 2 and random with 3 4 5 are not paired, after fine-tuning (no interval; the
    difference of the means, 94.26667 - 93.46667 = +0.80 by hand) nor, before it, against
    random's draws; CHIP's one pruned network and L1's are still paired image by image. Several
    seeds on one side and one on the other: nothing to pair either."""
    after = ["11110000"] * 3
    chip = _with_images(record(seeds="0 1 2", top1_per_seed="94.00 94.20 94.60", top1=94.26667, top1_std=0.30551,
                               top1_before_finetune=75.0), after, ["11111100"] * 3, [75.0] * 3)
    l1 = _with_images(record(criterion="l1", seeds="3 4 5", top1_per_seed="93.00 93.20 93.10", top1=93.1, top1_std=0.1,
                             top1_before_finetune=25.0), after, ["11000000"] * 3, [25.0] * 3)
    rand = _with_images(record(criterion="random", seeds="3 4 5", top1_per_seed="93.10 93.90 93.40", top1=93.46667,
                               top1_std=0.40415, top1_before_finetune=87.5 / 3),
                        after, ["10100000", "11100000", "11000000"], [25.0, 37.5, 25.0])
    df = report.frame([chip, l1, rand])
    c, l, r = df.itertuples(index=False)
    assert report.difference(c, r) is None and report.difference(c, r, before=True) is None
    assert report.difference(c, l) is None
    by_image = report.difference(l, c, before=True)  # one network each: 2 of 8 right against 6 of 8
    assert (by_image.n, by_image.unit, by_image.mean) == (8, "test images", pytest.approx(-50.0))
    text = report.comparison(df)
    assert _row(text, "after", "CHIP − Random")[1:] == ["+0.80", "–", "no interval: nothing to pair"]
    assert _row(text, "before", "CHIP − Random")[1:] == ["+45.83", "–", "no interval: nothing to pair"]  # 75 - mean(25, 37.5, 25)
    assert _row(text, "before", "L1 − CHIP")[3] == "8 test images"
    # the same seeds on both sides: paired, the t interval over the three seeds (2 degrees of freedom)
    same = report.frame([chip, dict(rand, seeds="0 1 2")])
    d = report.difference(*same.itertuples(index=False))
    diffs = [0.9, 0.3, 1.2]
    half = significance_half(diffs)
    assert (d.n, d.unit) == (3, "seeds") and (d.mean, d.low, d.high) == pytest.approx((0.8, 0.8 - half, 0.8 + half))
    # several seeds against one: no pairing, by seed or by image
    one = _with_images(record(criterion="random", seeds="0", top1_per_seed="93.00", top1=93.0), ["10000000"],
                       ["10000000"])
    assert report.difference(*report.frame([chip, one]).itertuples(index=False)) is None


def significance_half(diffs: list[float]) -> float:
    """t_{0.975, n-1} * sd(diffs) / sqrt(n): the half-width of the paired t interval."""
    import statistics

    from scipy import stats

    n = len(diffs)
    return float(stats.t.ppf(0.975, n - 1)) * statistics.stdev(diffs) / n ** 0.5


@pytest.mark.parametrize("draws", [[25.0, 37.5, 25.0], [25.0, 37.5]], ids=["3 seeds", "2 seeds"])
@pytest.mark.parametrize("chip_per_seed", [True, False], ids=["chip per seed", "chip once"])
def test_before_fine_tuning_random_s_draws_are_paired_by_seed_not_by_its_first_draw(draws, chip_per_seed):
    """Random prunes one network per seed (its draws: 2, 3, 2 of 8 test images right), CHIP one
    network (6 of 8). Before fine-tuning CHIP − random is paired by seed: CHIP's 75% against each
    draw's top-1, the t interval over the seeds (scipy.stats.t, n - 1 degrees of freedom); not
    CHIP's images against the first draw's (that would be 8 test images, a mean of +50). CHIP's
    top-1 is its one network's, once per seed, whether or not the record lists it per seed."""
    bits = {25.0: "10100000", 37.5: "11100000"}
    n = len(draws)
    seeds = " ".join(map(str, range(n)))
    per_seed = " ".join(["94.00", "94.20", "94.60"][:n])
    chip = _with_images(record(seeds=seeds, top1_per_seed=per_seed, top1_before_finetune=75.0),
                        ["11110000"] * n, ["11111100"] * n, [75.0] * n if chip_per_seed else None)
    rand = _with_images(record(criterion="random", seeds=seeds, top1_per_seed=per_seed,
                               top1_before_finetune=sum(draws) / n),
                        ["11110000"] * n, [bits[t] for t in draws], draws)
    df = report.frame([chip, rand])
    d = report.difference(*df.itertuples(index=False), before=True)
    diffs = [75.0 - t for t in draws]  # 50, 37.5(, 50)
    mean, half = sum(diffs) / n, significance_half(diffs)
    assert (d.n, d.unit) == (n, "seeds")
    assert (d.mean, d.low, d.high) == pytest.approx((mean, mean - half, mean + half))
    cells = _row(report.comparison(df), "before", "CHIP − Random")
    assert cells[1] == f"{mean:+.2f}" and cells[3] == f"{n} fine-tuning seeds of one baseline"
    assert cells[2] == f"[{mean - half:+.2f}, {mean + half:+.2f}]".replace("-", "−")


def test_a_difference_that_rounds_to_zero_is_printed_plus_zero():
    """−0.003 points is 0.00 at two decimals, printed +0.00 (never −0.00), whether the difference
    has no interval (one seed, no per-image results: 94.160 − 94.163) or is paired by seed (seeds
    0 1: differences −0.005 and −0.001, mean −0.003)."""
    one_seed = report.frame([record(top1=94.16), record(criterion="random", top1=94.163)])
    text = report.comparison(one_seed)
    assert _row(text, "after", "CHIP − Random")[1] == "+0.00"
    assert "−0.00" not in text and "-0.00" not in text
    seeds = report.frame([record(seeds="0 1", top1_per_seed="94.000 94.010", top1=94.005),
                          record(criterion="random", seeds="0 1", top1_per_seed="94.005 94.011", top1=94.008)])
    d = report.difference(*seeds.itertuples(index=False))
    assert d.mean == pytest.approx(-0.003) and d.n == 2
    cells = _row(report.comparison(seeds), "after", "CHIP − Random")
    assert cells[1] == "+0.00" and cells[3] == "2 fine-tuning seeds of one baseline"


def test_two_seeds_are_paired_by_seed_and_shown_with_their_spread(tmp_path):
    """Two seeds are several: the table shows their mean ± sample standard deviation (94.00 and
    94.20: 94.10 ± 0.14), and the comparison the t interval over the two seeds with 1 degree of
    freedom (differences 0.9 and 0.7: +0.80, half-width 12.706 * 0.1 = 1.27)."""
    from scipy import stats

    chip = record(seeds="0 1", top1_per_seed="94.00 94.20", top1=94.1, top1_std=0.141421)
    rand = record(criterion="random", seeds="0 1", top1_per_seed="93.10 93.50", top1=93.3, top1_std=0.282843)
    out = report.write_tables([chip, rand], tmp_path)
    assert "| 94.10 ± 0.14 (2 seeds) |" in out["table.md"].read_text()
    half = stats.t.ppf(0.975, 1) * 0.1
    assert half == pytest.approx(1.27062, abs=1e-5)
    cells = _row(out["comparison.md"].read_text(), "after", "CHIP − Random")
    assert cells[1:] == ["+0.80", f"[{0.8 - half:+.2f}, {0.8 + half:+.2f}]".replace("-", "−"),
                         "2 fine-tuning seeds of one baseline"]


def test_table_csv_leaves_out_the_per_image_bit_strings(tmp_path):
    """table.csv is the table's numbers, one line per network: the per-image correctness strings
    (correctness.PER_IMAGE_FIELDS, thousands of hex digits on a real test set) stay in the
    evaluate records; the number of test images is kept."""
    import csv as csv_module

    rec = _with_images(record(), ["1" * 400], ["10" * 200])
    out = report.write_tables([rec, dict(rec, criterion="random")], tmp_path)
    rows = list(csv_module.DictReader(out["table.csv"].read_text().splitlines()))
    assert len(rows) == 2 and rows[0]["test_images"] == "400"
    assert not {"test_correct_per_seed", "test_correct_before_finetune"} & set(rows[0])
    assert max(len(line) for line in out["table.csv"].read_text().splitlines()) < 1000


def test_best_epoch_is_counted_from_one_and_its_top1_is_the_mean_over_seeds():
    """Per network and seed the best fine-tuning epoch (curves give 0-based epochs): seed 0 peaks
    at 92.0 in its 2nd epoch, seed 1 at 93.0 in its 3rd; the best epoch's top-1 is 92.50, shown
    as '92.50 (epoch 2 3)' beside the final epoch's."""
    from prunelab.errors import PrunelabError

    df = report.frame([record(seeds="0 1", top1_per_seed="91.00 93.00", top1=92.0, top1_std=1.414214)])
    curves = [{"setting": "r1", "criterion": "chip", "seed": s, "epoch": e, "top1": t}
              for s, tops in ((0, [90.0, 92.0, 91.0]), (1, [89.0, 90.0, 93.0])) for e, t in enumerate(tops)]
    best = report.with_best_epoch(df, curves)
    assert best.best_epoch.tolist() == ["2 3"] and best.best_epoch_top1.tolist() == [pytest.approx(92.5)]
    assert "| 92.50 (epoch 2 3) |" in report.comparison(best)
    with pytest.raises(PrunelabError, match="no fine-tuning curve for chip-r1"):
        report.with_best_epoch(df, [dict(c, criterion="l1") for c in curves])


def test_summary_json_holds_each_network_s_top1_before_and_after_fine_tuning():
    """summary.json, what `dvc metrics show` lists: per network its top-1 after fine-tuning, the
    seeds' spread, top-1 before fine-tuning and the MACs removed (by hand: 125,485,696 ->
    65,168,128 is 48.067%); and the baseline's top-1."""
    import json

    df = report.frame([record(), record(criterion="random", top1=93.0, top1_before_finetune=12.5, top1_std=0.25)])
    got = json.loads(report.summary(df))
    assert set(got) == {"chip-r1", "random-r1", "baseline"} and got["baseline"] == {"top1": 93.26}
    assert got["chip-r1"] == {"top1": 94.16, "top1_std": 0.0, "top1_before_finetune": 10.0,
                              "macs_reduction_pct": pytest.approx(48.0672, abs=1e-4)}
    assert got["random-r1"]["top1_before_finetune"] == 12.5 and got["random-r1"]["top1"] == 93.0
    assert got["random-r1"]["top1_std"] == 0.25


def test_a_count_of_exactly_one_billion_is_written_in_billions(tmp_path):
    """Counts of a billion or more are written in billions: 10**9 MACs is '1.00B', not
    '1000.00M' (hand-written expectations; the MACs cell of a network at 2 * 10**9 -> 10**9 is
    '1.00B (50.0%)', one just below a billion stays in millions)."""
    big = record(macs=1_000_000_000, baseline_macs=2_000_000_000)
    md = report.write_tables([big], tmp_path)["table.md"].read_text()
    assert "| 1.00B (50.0%) |" in md and "1000.00M" not in md
    below = report.frame([record(macs=999_994_999, baseline_macs=2_000_000_000)])
    assert "999.99M (50.0%)" in report.markdown(below, "t")


def test_the_spread_over_baselines_is_the_sample_standard_deviation_and_pairs_need_the_same_baselines(tmp_path):
    """Three baselines at 80, 90 and 100: mean 90, sample sd 10 (the population sd would be 8.16).
    A criterion run on other baselines (0, 1, 3) has nothing to pair with CHIP's (0, 1, 2)."""
    chip = [record(baseline=b, top1=t, top1_per_seed=f"{t:.2f}") for b, t in ((0, 80.0), (1, 90.0), (2, 100.0))]
    other = [record(criterion="random", baseline=b, top1=t, top1_per_seed=f"{t:.2f}")
             for b, t in ((0, 70.0), (1, 85.0), (3, 90.0))]
    md = report.write_tables(chip, tmp_path)["table.md"].read_text()
    assert "| 90.00 ± 10.00 (3 baselines) |" in md
    df = report.frame(chip + other)
    a, b = (next(df[df.criterion == c].itertuples(index=False)) for c in ("chip", "random"))
    assert report.difference(a, b) is None


def test_a_p_value_below_one_in_a_thousand_is_printed_as_such():
    """Declared CHIP − random over three seeds whose differences are 42.0, 42.0 and 41.9 points:
    scipy's paired t test gives p of about 1e-5, printed "< 0.001", not "0.000"; a p of 0.012 keeps
    its three decimals."""
    import numpy as np
    from scipy import stats

    tops = {"chip": [92.0, 93.0, 92.5], "random": [50.0, 51.0, 50.6]}
    recs = [record(criterion=c, seeds="0 1 2", top1_per_seed=" ".join(f"{t:.2f}" for t in v), top1=float(np.mean(v)))
            for c, v in tops.items()]
    assert stats.ttest_rel(tops["chip"], tops["random"]).pvalue < 0.001
    section = report.comparison(report.frame(recs), [("chip", "random", "r1")]).split("## Declared contrasts")[1]
    row = next(line for line in section.splitlines() if line.startswith("| CHIP − Random at r1 |"))
    assert [c.strip() for c in row.strip("|").split("|")][4:6] == ["< 0.001", "< 0.001"], row
    assert report._p(0.0123) == "0.012"
