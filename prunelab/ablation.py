"""Criterion, widths and recovery apart: what a pruned network's top-1 before fine-tuning owes
to each.

SNPFI differs from the rate-based criteria in three ways at once: its ranking (Shapley values),
its widths (each group's from its utilization curve, for the same MACs) and its recovery
without training (a least-squares refit of every consumer, then BatchNorm statistics
re-estimated). The prune stage sets SNPFI-with-all-three against the others with none, so its
lead before fine-tuning says nothing of its criterion. The ablation crosses the three factors
on one baseline, with no training:

- ranking: each criterion's channel scores (random: its first draw);
- widths: "rates", the setting's rates for every group; "snpfi", SNPFI's allocation for the MACs
  reduction those rates give (each group keeps its count of the ranking's highest scores);
- recovery: "none"; "bn", BatchNorm statistics re-estimated; "refit", the least-squares refit;
  "refit+bn", the refit then the re-estimation (SNPFI's order).

A row per (ranking, widths, recovery): its counts and its top-1 on the test set. Across
baselines the report pairs rows by baseline (prunelab.significance.over_replicates).
"""

from __future__ import annotations

import csv
from pathlib import Path

from prunelab.checkpoint import atomic_write

WIDTHS = ("rates", "snpfi")
RECOVERIES = ("none", "bn", "refit", "refit+bn")
FIELDS = ("ranking", "widths", "recovery", "params", "macs", "macs_reduction_pct", "top1")


def write_csv(path: str | Path, rows: list[dict]) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=FIELDS, lineterminator="\n")
            w.writeheader()
            for row in rows:
                w.writerow({k: f"{v:.6f}" if isinstance(v, float) else v for k, v in row.items()})

    atomic_write(path, write)


def read_csv(path: str | Path) -> list[dict]:
    """write_csv's rows, counts as int and percentages as float."""
    with open(path, newline="") as f:
        return [{**r, "params": int(r["params"]), "macs": int(r["macs"]), "macs_reduction_pct": float(r["macs_reduction_pct"]),
                 "top1": float(r["top1"])} for r in csv.DictReader(f)]


def _label(ranking: str) -> str:
    from prunelab.report import METHOD_NAMES

    return METHOD_NAMES.get(ranking, ranking)


def _per_baseline(per_baseline: dict[str, list[dict]], ranking: str, widths: str, recovery: str) -> list[float] | None:
    """Top-1 of one cell of the ablation in every baseline (their order), or None where a baseline lacks it."""
    tops = []
    for rows in per_baseline.values():
        hit = [r["top1"] for r in rows if (r["ranking"], r["widths"], r["recovery"]) == (ranking, widths, recovery)]
        if not hit:
            return None
        tops.append(hit[0])
    return tops


def markdown(per_baseline: dict[str, list[dict]], title: str, setting: str) -> str:
    """ablation.md: top-1 before fine-tuning of every ranking x widths x recovery, the mean over
    the baselines (± their sample standard deviation); then the three factors apart, each a
    difference paired by baseline with its 95% interval (estimates: no verdicts)."""
    import statistics

    from prunelab import significance
    from prunelab.report import UNIT_NAMES, _signed

    rankings = list(dict.fromkeys(r["ranking"] for rows in per_baseline.values() for r in rows))
    kinds = [k for k in WIDTHS if any(r["widths"] == k for rows in per_baseline.values() for r in rows)]
    b = len(per_baseline)
    lines = [f"# Criterion, widths and recovery apart: {title}", "",
             f"Setting {setting}, before fine-tuning, top-1 (%) on the test set; {b} baseline{'s' if b > 1 else ''} "
             f"(b{', b'.join(per_baseline)}): the mean" + (" ± the sample standard deviation over them" if b > 1 else "")
             + ". Ranking: whose channel scores choose the channels (random: its first draw). Widths: the setting's "
             "rates, or SNPFI's allocation for the same MACs. Recovery, without training: none; BatchNorm statistics "
             "re-estimated (bn); the least-squares refit of every consumer (refit); the refit then the re-estimation "
             "(refit+bn, SNPFI's order: the prune stage's SNPFI row). Differences are paired by baseline (prunelab/"
             "significance.py), estimates without verdicts.", ""]

    def cell(tops: list[float] | None) -> str:
        if tops is None:
            return "–"
        return f"{statistics.fmean(tops):.2f}" + (f" ± {statistics.stdev(tops):.2f}" if len(tops) > 1 else "")

    head = [f"{kind} widths, {rec}" for kind in kinds for rec in RECOVERIES]
    lines += ["| Ranking | " + " | ".join(head) + " |", "|---|" + "---:|" * len(head)]
    for ranking in rankings:
        lines.append(f"| {_label(ranking)} | " + " | ".join(cell(_per_baseline(per_baseline, ranking, k, rec))
                                                              for k in kinds for rec in RECOVERIES) + " |")

    def difference(label: str, a: tuple, b: tuple) -> str | None:
        ta, tb = _per_baseline(per_baseline, *a), _per_baseline(per_baseline, *b)
        if ta is None or tb is None:
            return None
        d = significance.over_replicates(ta, tb, "baselines")
        ci = "–" if d.missing else f"[{_signed(d.low)}, {_signed(d.high)}]"
        return f"| {label} | {_signed(d.mean)} | {ci} | {d.n} {UNIT_NAMES['baselines']}{'' if not d.missing else f' ({d.missing})'} |"

    sections = []
    if "chip" in rankings:  # the criterion apart: each ranking against CHIP's, the rest the same
        rows = [difference(f"{_label(r)} − CHIP, {k} widths, {rec}", (r, k, rec), ("chip", k, rec))
                for k in kinds for rec in ("none", "refit+bn") for r in rankings if r != "chip"]
        sections.append(("The criterion apart: each ranking minus CHIP's, the same widths and recovery", rows))
    rows = [difference(f"{_label(r)}, {k} widths: {rec} − none", (r, k, rec), (r, k, "none"))
            for r in rankings for k in kinds for rec in RECOVERIES[1:]]
    sections.append(("The recovery apart: each recovery minus none, the same ranking and widths", rows))
    if len(kinds) == 2:
        rows = [difference(f"{_label(r)}, {rec}: SNPFI's widths − the rates", (r, "snpfi", rec), (r, "rates", rec))
                for r in rankings for rec in ("none", "refit+bn")]
        sections.append(("The widths apart: SNPFI's allocation minus the setting's rates, the same ranking and recovery",
                         rows))
    for heading, rows in sections:
        rows = [r for r in rows if r]
        if rows:
            lines += ["", f"## {heading}", "", "| Difference | Points | 95% CI | Paired over |", "|---|---:|---:|---:|", *rows]
    return "\n".join(lines) + "\n"


def plot_png(per_baseline: dict[str, list[dict]], path: str | Path, title: str) -> None:
    """Top-1 before fine-tuning per recovery (x), a bar per ranking (its colour), one panel per
    widths; bars are the means over baselines, whiskers their range."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from prunelab.report import STYLE

    rankings = list(dict.fromkeys(r["ranking"] for rows in per_baseline.values() for r in rows))
    kinds = [k for k in WIDTHS if any(r["widths"] == k for rows in per_baseline.values() for r in rows)]
    fig, axes = plt.subplots(1, len(kinds), figsize=(6 * len(kinds), 4), sharey=True, squeeze=False)
    width = 0.8 / len(rankings)
    for ax, kind in zip(axes[0], kinds):
        for i, ranking in enumerate(rankings):
            tops = [_per_baseline(per_baseline, ranking, kind, rec) or [np.nan] for rec in RECOVERIES]
            mean = np.array([np.mean(t) for t in tops])
            err = np.array([[m - np.min(t) for m, t in zip(mean, tops)], [np.max(t) - m for m, t in zip(mean, tops)]])
            x = np.arange(len(RECOVERIES)) + (i - (len(rankings) - 1) / 2) * width
            ax.bar(x, mean, width, yerr=err, capsize=2, color=STYLE.get(ranking, ("#7f7f7f",))[0], label=_label(ranking))
        ax.set_xticks(np.arange(len(RECOVERIES)), RECOVERIES)
        ax.set_title(f"{kind} widths")
        ax.set_xlabel("recovery (no training)")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("top-1 before fine-tuning (%)")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", metadata={"Software": None}))
    plt.close(fig)
