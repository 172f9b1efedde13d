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
