"""Layer sensitivity, and the `auto:<MACs reduction>` setting it gives (the sensitivity analysis
of Distiller and NNI, with real channel removal).

A rate slot is one entry of the arch's compact rate list, the unit a prune.settings string sets.
ResNet-56 has 30: the stem, the block outputs of stage 1 and of stage 2 (9 channel groups each,
one rate for the stage, as CHIP's lists have it), and each of the 27 blocks' inner channels.

Measured (stages/sensitivity.py): slot i alone pruned at rate r (every other slot at 0) with one
criterion, BatchNorm statistics re-estimated, gives top-1 t[i, r] and loss l[i, r] on a fixed set
of n training images (the test set is never looked at); the baseline gives t0, l0 on them. The
sensitivity is the drop in images right, d[i, r] = n (t0 - t[i, r]) / 100 (negative when pruning
helps), and m[i, r] the MACs reduction (% of the baseline's) of that one-slot network.

The aim of auto:T. One rate per slot from {0} and the measured grid, r = (r_1 .. r_S), with

    minimise  sum_i d[i, r_i]   (ties: the smaller sum_i (l[i, r_i] - l0))
    such that the MACs reduction of the network pruned at r, counted exactly, is at least T.

MACs do not add up over slots: a conv whose input and output channels both shrink, by a and b,
keeps (1-a)(1-b) of its MACs, where adding the two slots' separate savings counts the a*b part
twice. So the rule solves the additive problem instead,

    minimise  sum_i d[i, r_i]   such that   sum_i m[i, r_i] >= T',

a multiple-choice knapsack, exactly, by dynamic programming over the slots with the savings on a
grid of RESOLUTION points (each saving rounded down, so a choice the grid accepts truly reaches
T'). T' starts at T and grows by the shortfall (T minus the exact reduction of the last choice)
until the exact count reaches T. Where no two pruned slots meet in one conv that is the aim
itself; otherwise it is a close approximation that may remove a little more than T (a cheaper
choice meeting T exactly may exist below the last T', which is not searched downwards).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from prunelab import counting, models
from prunelab.checkpoint import atomic_write
from prunelab.sparsity import MAX_RATES

FIELDS = ("slot", "groups", "rate", "params", "macs", "macs_reduction_pct", "top1", "loss")
RESOLUTION = 0.01  # MACs-reduction points per step of the knapsack's grid
MAX_ROUNDS = 100  # T' increases; each adds at least RESOLUTION, and the shortfall shrinks fast


def num_slots(arch: str) -> int:
    """How many rates the arch's compact list takes. The arch modules state it only in their
    check (models/ is every baseline's DVC dependency, so it is probed here, not added there)."""
    for n in range(1, MAX_RATES + 1):
        try:
            models.group_rates(arch, [0.0] * n)
            return n
        except ValueError:
            continue
    raise ValueError(f"{arch}: no rate list of up to {MAX_RATES} rates fits")


def slot_rates(slots: int, slot: int, rate: float) -> list[float]:
    """The compact rate list that prunes `slot` alone at `rate`."""
    return [rate if i == slot else 0.0 for i in range(slots)]


def slot_labels(arch: str) -> list[str]:
    """A name per slot: its channel group ('layer1.0.relu1'), or the first and last of the groups
    it sets and their number ('layer1.0.relu2 .. layer1.8.relu2 (9)')."""
    slots = num_slots(arch)
    labels = []
    for i in range(slots):
        groups = [g for g, r in models.group_rates(arch, slot_rates(slots, i, 0.5)).items() if r]
        labels.append(groups[0] if len(groups) == 1 else f"{groups[0]} .. {groups[-1]} ({len(groups)})")
    return labels


def macs_reduction(arch: str, rates: list[float], widths: dict, input_shape: tuple[int, int, int],
                   in_channels: int, num_classes: int) -> float:
    """Exact MACs reduction (%) of pruning `widths` at `rates` (CHIP's kept-width rule)."""
    def macs(w: dict) -> int:
        return counting.count_ops(models.build_model(arch, w, in_channels, num_classes), input_shape)["macs"]

    return counting.reduction(macs(widths), macs(models.pruned_widths(arch, rates, widths)))


def tables(rows: list[dict], slots: int, images: int, baseline_top1: float, baseline_loss: float
           ) -> tuple[list[float], np.ndarray, np.ndarray, np.ndarray]:
    """From the measured rows: (grid, drop, loss increase, saving), the last three (S, 1 + R) with
    column 0 the unpruned slot (0, 0, 0) and column k the grid's k-th rate. drop: images right
    lost (an integer: top-1 is a count of `images`); saving: the one-slot MACs reduction in %."""
    grid = sorted({float(r["rate"]) for r in rows})
    shape = (slots, 1 + len(grid))
    drop, loss, saving = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    seen = np.zeros(shape, dtype=bool)
    seen[:, 0] = True
    for r in rows:
        i, k = int(r["slot"]), 1 + grid.index(float(r["rate"]))
        drop[i, k] = round((baseline_top1 - float(r["top1"])) * images / 100)
        loss[i, k] = float(r["loss"]) - baseline_loss
        saving[i, k] = float(r["macs_reduction_pct"])
        seen[i, k] = True
    if not seen.all():
        missing = [(i, grid[k - 1]) for i, k in zip(*np.nonzero(~seen))]
        raise ValueError(f"sensitivity: no measurement for (slot, rate) {missing[:3]}")
    return grid, drop, loss, saving


def solve_additive(cost: np.ndarray, saving: np.ndarray, target: float) -> np.ndarray:
    """argmin over one column per row of sum(cost) subject to sum(saving) >= target (the additive
    problem of the module docstring), exactly, by dynamic programming on a grid of RESOLUTION.

    cost, saving: (S, K); column 0 must be the unpruned choice (saving 0). Returns (S,) column
    indices; ties go to the lower column. ValueError when even the largest savings fall short."""
    units = np.floor(saving / RESOLUTION + 1e-9).astype(np.int64)  # (S, K), rounded down
    need = max(0, math.ceil(target / RESOLUTION - 1e-9))
    if units.max(1).sum() < need:
        raise ValueError(f"a MACs reduction of {target:.2f}% is out of reach: the largest measured rates "
                         f"save {units.max(1).sum() * RESOLUTION:.2f}% added up")
    S, K = cost.shape
    # best[j]: least cost of the slots so far with min(saved units, need) == j; from[i, j]: the
    # column slot i took and the state before it, for the walk back
    best = np.full(need + 1, np.inf)
    best[0] = 0.0
    column = np.zeros((S, need + 1), dtype=np.int64)
    before = np.zeros((S, need + 1), dtype=np.int64)
    states = np.arange(need + 1)
    for i in range(S):
        new = np.full(need + 1, np.inf)
        for k in range(K):
            to = np.minimum(states + units[i, k], need)  # (need + 1,) the state each state moves to
            candidate = best + cost[i, k]
            # scatter-min candidate into new at `to`: distinct targets below `need`, all the rest at `need`
            order = np.lexsort((states, candidate, to))  # per target, the cheapest first (lowest state on ties)
            first = np.ones(len(order), dtype=bool)
            first[1:] = to[order][1:] != to[order][:-1]
            targets, sources = to[order][first], order[first]
            better = candidate[sources] < new[targets]  # strict: an earlier (lower) column keeps a tie
            new[targets[better]] = candidate[sources[better]]
            column[i, targets[better]] = k
            before[i, targets[better]] = sources[better]
        best = new
    if not np.isfinite(best[need]):
        raise ValueError(f"a MACs reduction of {target:.2f}% is out of reach")
    chosen, j = np.zeros(S, dtype=np.int64), need
    for i in reversed(range(S)):
        chosen[i] = column[i, j]
        j = before[i, j]
    return chosen


def auto_rates(rows: list[dict], images: int, baseline_top1: float, baseline_loss: float, target_pct: float,
               arch: str, widths: dict, input_shape: tuple[int, int, int], in_channels: int,
               num_classes: int) -> dict:
    """The rates auto:T picks (module docstring) for T = target_pct (%), from the sensitivity rows.

    Returns {"rates": [S floats], "reached_macs_reduction_pct", "summed_drop_images",
    "summed_loss_increase", "additive_target_pct", "rounds"}. ValueError when T is out of reach."""
    slots = num_slots(arch)
    grid, drop, loss, saving = tables(rows, slots, images, baseline_top1, baseline_loss)
    rates_of = np.array([0.0, *grid])  # (1 + R,) column -> rate
    # ties in the summed drop (whole images) go to the smaller summed loss increase: scaled so
    # that all slots' loss terms together stay under one image
    cost = drop + loss / (1.0 + slots * np.abs(loss).max() + 1e-12)  # (S, 1 + R)
    additive = target_pct
    for rounds in range(1, MAX_ROUNDS + 1):
        chosen = solve_additive(cost, saving, additive)  # (S,)
        rates = [float(rates_of[k]) for k in chosen]
        reached = macs_reduction(arch, rates, widths, input_shape, in_channels, num_classes)
        if reached >= target_pct:
            rows_ = np.arange(slots)
            return {"rates": rates, "reached_macs_reduction_pct": reached,
                    "summed_drop_images": int(drop[rows_, chosen].sum()),
                    "summed_loss_increase": float(loss[rows_, chosen].sum()),
                    "additive_target_pct": additive, "rounds": rounds}
        additive += max(RESOLUTION, target_pct - reached)
    raise ValueError(f"a MACs reduction of {target_pct:.2f}% was not reached in {MAX_ROUNDS} rounds")


def summed_sensitivity(rows: list[dict], rates: list[float], images: int, baseline_top1: float,
                       baseline_loss: float, slots: int) -> tuple[int, float] | None:
    """(summed drop in images, summed loss increase) of a rate list whose every rate is 0 or on
    the measured grid (a hand-set setting's, to set beside auto's); None when one is not."""
    grid, drop, loss, _ = tables(rows, slots, images, baseline_top1, baseline_loss)
    columns = [0 if r == 0 else 1 + grid.index(r) if r in grid else None for r in rates]
    if None in columns:
        return None
    return int(sum(drop[i, k] for i, k in enumerate(columns))), float(sum(loss[i, k] for i, k in enumerate(columns)))


def write_csv(path: str | Path, rows: list[dict]) -> None:
    """One row per (slot, rate): FIELDS, top-1 in % of the sensitivity images."""
    text = ",".join(FIELDS) + "\n" + "".join(
        ",".join(repr(v) if isinstance(v, float) else str(v) for v in (r[k] for k in FIELDS)) + "\n" for r in rows)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def read_csv(path: str | Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def plot_heatmap(rows: list[dict], path: str | Path, title: str, baseline_top1: float,
                 marks: dict[str, list[float]]) -> None:
    """Top-1 per (slot, rate) as a heatmap, a row per slot; `marks` {label: rates} outlines the
    cell each rate list takes in every slot it prunes (auto's choice, a hand-set setting's).
    Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(dict.fromkeys(r["groups"] for r in sorted(rows, key=lambda r: int(r["slot"]))))
    grid = sorted({float(r["rate"]) for r in rows})
    top1 = np.full((len(labels), len(grid)), np.nan)  # (S, R)
    for r in rows:
        top1[int(r["slot"]), grid.index(float(r["rate"]))] = float(r["top1"])
    fig, ax = plt.subplots(figsize=(2.2 + 0.75 * len(grid), 1.6 + 0.26 * len(labels)), dpi=100)
    image = ax.imshow(top1, aspect="auto", cmap="viridis", vmin=0, vmax=max(100.0, np.nanmax(top1)))
    for (i, k), v in np.ndenumerate(top1):
        ax.text(k, i, f"{v:.0f}", ha="center", va="center", fontsize=6.5, color="white" if v < 60 else "black")
    styles = [("#e41a1c", "-"), ("#00a6ff", "--"), ("#ff7f00", ":")]  # visible on the colour map's ends and on white
    for (label, rates), (colour, line) in zip(marks.items(), styles):
        for i, rate in enumerate(rates):
            if rate in grid:
                ax.add_patch(plt.Rectangle((grid.index(rate) - 0.45, i - 0.42), 0.9, 0.84, fill=False,
                                           edgecolor=colour, linestyle=line, linewidth=1.6))
        ax.plot([], [], color=colour, linestyle=line, linewidth=1.6, label=label)
    ax.set_xticks(range(len(grid)), [f"{r:g}" for r in grid])
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xlabel("rate (this slot alone; every other slot unpruned)")
    fig.colorbar(image, ax=ax, label=f"top-1 (%), baseline {baseline_top1:.2f}")
    if marks:
        ax.legend(loc="upper left", bbox_to_anchor=(0, -0.06 - 3.0 / (1.6 + 0.26 * len(labels)) / 10), fontsize=8,
                  ncol=len(marks), frameon=False)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", metadata={"Software": None}))
    plt.close(fig)
