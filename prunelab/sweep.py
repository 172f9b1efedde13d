"""Ratio sweeps: which channels each criterion keeps matters most where accuracy collapses, so
the sweep prunes the baseline at a grid of ratios with every criterion and measures top-1
against the MACs removed, without fine-tuning (ShrinkBench's curves, with real channel removal).

A scheme turns a ratio r into CHIP's compact rate list (models.group_rates reads it):

- "inner": a CIFAR ResNet's inner channels (each block's conv1 output) at r, the stem and the
  block outputs whole. The option-A shortcut adds the block's input to conv2's output, so the
  block outputs stay aligned with the shortcut, and only the inner channels are a free choice.
- a prune.settings name: that setting's rates scaled by r / (their largest rate), so the
  setting's own pattern (CHIP's r2: 0.4 on the stage outputs, 0.5/0.6/0.7 on the stages' inner
  channels) is swept from light to severe; r = the setting's largest rate is the setting itself.
"""

from __future__ import annotations

from pathlib import Path

from prunelab import models
from prunelab.checkpoint import atomic_write
from prunelab.sparsity import parse_sparsity

INNER = "inner"
FIELDS = ("scheme", "ratio", "criterion", "seed", "params", "macs", "macs_reduction_pct", "top1_pruned",
          "top1_bn_reestimated", "top1_finetuned")


def scheme_rates(arch: str, scheme: str, ratio: float, settings: dict[str, str]) -> list[float]:
    """CHIP's compact rate list for `scheme` at `ratio` (module docstring); ValueError naming
    what is allowed otherwise."""
    if not 0 <= ratio < 1:
        raise ValueError(f"ratio must be in [0, 1), got {ratio}")
    if scheme == INNER:
        if arch not in {f"resnet{d}" for d in models.CIFAR_RESNET_DEPTHS}:
            raise ValueError(f"'{INNER}' takes a CIFAR ResNet (resnet20 to resnet110), not {arch}")
        n = models.resnet_cifar.blocks_per_stage(int(arch.removeprefix("resnet")))
        return [0.0, 0.0, 0.0] + [ratio] * (3 * n)  # stem, stage-1 and stage-2 outputs, 3n blocks' inner
    if scheme not in settings:
        raise ValueError(f"{scheme!r} is neither '{INNER}' nor a prune.settings name ({', '.join(settings)})")
    rates = parse_sparsity(settings[scheme])
    top = max(rates)
    if top == 0:
        raise ValueError(f"prune.settings.{scheme} prunes nothing: there is no pattern to scale")
    return [r * ratio / top for r in rates]


def write_csv(path: str | Path, rows: list[dict]) -> None:
    """One row per (scheme, ratio, criterion, seed): FIELDS, top-1 in %, empty where not measured."""
    def cell(v) -> str:
        return "" if v is None else repr(float(v)) if isinstance(v, float) else str(v)

    text = ",".join(FIELDS) + "\n" + "".join(",".join(cell(r.get(k)) for k in FIELDS) + "\n" for r in rows)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def plot_png(rows: list[dict], path: str | Path, title: str, baseline_top1: float) -> None:
    """Top-1 against the MACs removed, a panel per (measurement, scheme), a line per criterion;
    a criterion drawn with several seeds (random) is its mean with a band from its lowest to its
    highest draw. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from prunelab.report import METHOD_NAMES, STYLE

    df = pd.DataFrame(rows)
    measures = [("top1_pruned", "straight after pruning"), ("top1_bn_reestimated", "BatchNorm re-estimated")]
    if "top1_finetuned" in df and df["top1_finetuned"].notna().any():
        measures.append(("top1_finetuned", "fine-tuned"))
    schemes = list(dict.fromkeys(df.scheme))
    fig, axes = plt.subplots(len(measures), len(schemes), figsize=(5.5 * len(schemes), 3.8 * len(measures)),
                             dpi=100, squeeze=False, sharey="row")
    for i, (column, label) in enumerate(measures):
        for j, scheme in enumerate(schemes):
            ax = axes[i][j]
            for criterion, rows_c in df[df.scheme == scheme].groupby("criterion", sort=False):
                colour, marker = STYLE.get(criterion, ("#7f7f7f", "o"))
                per_ratio = rows_c.groupby("ratio", sort=True)  # several rows per ratio: the seeds' draws
                x = per_ratio.macs_reduction_pct.mean()
                y = per_ratio[column]
                ax.plot(x, y.mean(), marker=marker, color=colour, markerfacecolor="none", markersize=6,
                        linewidth=1.3, label=METHOD_NAMES.get(criterion, criterion)
                        + (f" (mean of {per_ratio.size().max()} draws)" if per_ratio.size().max() > 1 else ""))
                if per_ratio.size().max() > 1:
                    ax.fill_between(x, y.min(), y.max(), color=colour, alpha=0.15, linewidth=0)
            ax.axhline(baseline_top1, color="#444444", linewidth=0.8, linestyle=":")
            ax.set_title(f"{scheme}: {label}", fontsize=10)
            ax.set_xlabel("MACs removed (%)")
            ax.set_ylabel("top-1 (%)")
            ax.grid(alpha=0.3)
    axes[-1][-1].legend(loc="upper right", fontsize=8)
    fig.suptitle(f"{title} (dotted: the baseline)")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", metadata={"Software": None}))
    plt.close(fig)
