"""The ablation's table and its differences (prunelab/ablation.py) on hand-written rows: the
cells are means and sample standard deviations over baselines, and each difference is the paired
t interval over baselines as scipy computes it. The stage itself: tests/test_stages.py."""

import statistics

import pytest
from scipy import stats

from prunelab import ablation


def rows(tops: dict[tuple[str, str, str], float]) -> list[dict]:
    return [{"ranking": r, "widths": w, "recovery": rec, "params": 100, "macs": 1000, "macs_reduction_pct": 50.0,
             "top1": t} for (r, w, rec), t in tops.items()]


def per_baseline() -> dict[str, list[dict]]:
    """Three baselines; SNPFI's ranking ahead of CHIP's by 1, 3 and 2 points at SNPFI's widths with
    its recovery, and every recovery lifting CHIP's network."""
    out = {}
    for b, (lead, lift) in enumerate(((1.0, 40.0), (3.0, 42.0), (2.0, 44.0))):
        tops = {}
        for kind in ablation.WIDTHS:
            for i, rec in enumerate(ablation.RECOVERIES):
                tops["chip", kind, rec] = 10.0 + (lift if rec != "none" else 0.0) + i
                tops["snpfi", kind, rec] = tops["chip", kind, rec] + lead
        out[str(b)] = rows(tops)
    return out


def cells(text: str, label: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(f"| {label} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_cells_are_means_and_spreads_over_baselines():
    text = ablation.markdown(per_baseline(), "ResNet-20 on digits", "r2")
    row = cells(text, "SNPFI")
    # SNPFI, rates widths, refit+bn (the 4th recovery, i = 3): 10 + lift + 3 + lead over the baselines
    values = [10 + 40 + 3 + 1, 10 + 42 + 3 + 3, 10 + 44 + 3 + 2]
    assert row[4] == f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}"
    assert "3 baselines (b0, b1, b2)" in text and "Setting r2" in text


def test_each_difference_is_the_paired_t_interval_over_baselines():
    text = ablation.markdown(per_baseline(), "ResNet-20 on digits", "r2")
    lead = [1.0, 3.0, 2.0]  # SNPFI − CHIP per baseline, the same at every widths and recovery
    ci = stats.ttest_rel(lead, [0.0, 0.0, 0.0]).confidence_interval(0.95)
    row = cells(text, "SNPFI − CHIP, snpfi widths, refit+bn")
    assert row[1] == "+2.00" and row[3] == "3 baselines"
    assert row[2] == f"[{ci.low:+.2f}, {ci.high:+.2f}]".replace("-", "−")
    # the recovery apart: CHIP's bn − none is 40, 42 and 44 points plus the recovery's index 1
    row = cells(text, "CHIP, rates widths: bn − none")
    assert row[1] == "+43.00"
    # the widths apart: the same numbers at both widths give no spread, so no interval
    row = cells(text, "CHIP, refit+bn: SNPFI's widths − the rates")
    assert row[1:] == ["+0.00", "–", "3 baselines (no interval: no spread)"]


def test_one_baseline_has_no_spread_and_no_interval():
    one = {"0": per_baseline()["0"]}
    text = ablation.markdown(one, "t", "r2")
    assert "± " not in text.split("## ")[0]
    assert cells(text, "SNPFI − CHIP, snpfi widths, none")[2:] == ["–", "1 baselines (no interval: one pair)"]


def test_the_csv_round_trips(tmp_path):
    original = per_baseline()["1"]
    ablation.write_csv(tmp_path / "a.csv", original)
    assert ablation.read_csv(tmp_path / "a.csv") == [dict(r, top1=pytest.approx(r["top1"])) for r in original]
