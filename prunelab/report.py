"""Results tables (Markdown, LaTeX, CSV) from evaluate records, byte-for-byte deterministic.

A record is what the evaluate stage writes to its metrics JSON and logs to MLflow. `normalize`
gives both sources identical Python values, so the tables do not depend on where they came from.
Measured latencies (the evaluate stage's latency files) get a table of their own, latency.md:
they differ between runs and machines, and every other table is the same bytes on any x86-64
CPU with AVX2 (prunelab.numerics).
"""

from __future__ import annotations

import io
import json
import re
import statistics
from pathlib import Path

import pandas as pd

from prunelab import correctness, significance
from prunelab.counting import reduction
from prunelab.checkpoint import atomic_write
from prunelab.errors import PrunelabError

STR_FIELDS = ("model", "criterion", "setting", "sparsity", "input_shape", "seeds", "top1_per_seed")
FLOAT_FIELDS = ("baseline_top1", "top1_before_finetune", "top1", "top1_std", "top1_best")
INT_FIELDS = ("params", "macs", "flops_paper", "baseline_params", "baseline_macs", "baseline_flops_paper")
PER_IMAGE_FIELDS = correctness.PER_IMAGE_FIELDS
COUNTS = (("params", "Params"), ("macs", "MACs"), ("flops_paper", "FLOPs (paper)"))
METHOD_NAMES = {"chip": "CHIP", "hrank": "HRank", "l1": "L1", "random": "Random", "snpfi": "SNPFI", "baseline": "Baseline"}
MODEL_NAMES = {**{f"resnet{d}": f"ResNet-{d}" for d in (20, 32, 44, 56, 110)}, "vgg16": "VGG-16", "resnet50": "ResNet-50",
               "alexnet": "AlexNet", "mobilenet_v1": "MobileNetV1"}
DATA_NAMES = {"digits": "scikit-learn's digits", "cifar10": "CIFAR-10", "mnist": "MNIST", "fashion_mnist": "Fashion-MNIST",
              "imagenet": "ImageNet"}


SPEEDUP = re.compile(r"speedup_(\w+)_b(\d+)")  # measured: baseline / pruned median latency
LATENCY = re.compile(r"latency_(\w+)_b(\d+)_(baseline|pruned)_ms")


def normalize(record: dict) -> dict:
    """A record with exactly the report's fields, typed: str, float (top-1 in %), int (counts)."""
    missing = [k for k in (*STR_FIELDS, *FLOAT_FIELDS, *INT_FIELDS) if k not in record]
    if missing:
        raise PrunelabError(f"result record lacks {', '.join(missing)}")
    out = {k: str(record[k]) for k in STR_FIELDS}
    out["baseline"] = str(record.get("baseline", ""))  # which baseline it was pruned from ("": the paper's one)
    out.update({k: float(record[k]) for k in FLOAT_FIELDS})
    out.update({k: int(round(float(record[k]))) for k in INT_FIELDS})
    if "top1_before_finetune_per_seed" in record:  # several seeds: each seed's pruned network
        out["top1_before_finetune_per_seed"] = str(record["top1_before_finetune_per_seed"])
    if "test_images" in record and any(k in record for k in PER_IMAGE_FIELDS):
        out.update({k: str(record[k]) for k in PER_IMAGE_FIELDS if k in record},
                   test_images=int(float(record["test_images"])))
    return out


def speedup_columns(df: pd.DataFrame) -> list[tuple[str, list[str]]]:
    """[(device, [speedup column per batch size, ascending])] of the measured speed-ups in df."""
    found: dict[str, list[tuple[int, str]]] = {}
    for col in df.columns:
        m = SPEEDUP.fullmatch(col)
        if m:
            found.setdefault(m.group(1), []).append((int(m.group(2)), col))
    return [(device, [c for _, c in sorted(cols)]) for device, cols in sorted(found.items())]


def _speedup_header(device: str, cols: list[str]) -> str:
    batches = " / ".join(SPEEDUP.fullmatch(c).group(2) for c in cols)
    return f"Speed-up, {device.upper() if device == 'cpu' else device} (batch {batches})"


def _speedup_cell(r, cols: list[str]) -> str:
    values = [getattr(r, c) for c in cols]
    return " / ".join("–" if pd.isna(v) else f"{v:.2f}×" for v in values)


def latency_frame(records: list[dict]) -> pd.DataFrame:
    """One row per pruned network: its name and what the evaluate stage measured, from its
    latency file or its MLflow run (latency_<device>_b<batch>_{baseline,pruned}_ms and
    speedup_<device>_b<batch>; NaN where not measured) and the CPU it was measured on; a network
    pruned from several baselines gets the mean of their measurements."""
    rows = []
    for rec in records:
        machine = rec.get("machine") if isinstance(rec.get("machine"), dict) else {}  # a file's; a run's: tags
        row = {k: str(rec[k]) for k in ("model", "criterion", "setting", "sparsity")}
        row.update({k: float(v) for k, v in sorted(rec.items()) if SPEEDUP.fullmatch(k) or LATENCY.fullmatch(k)})
        row["cpu"] = str(machine.get("cpu_model", rec.get("machine.cpu_model", "")))
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.duplicated(["model", "criterion", "setting"]).any():  # several baselines: their mean per network
        keys = ["model", "criterion", "setting", "sparsity"]
        df = df.groupby(keys, sort=False, as_index=False).agg(
            {**{c: "mean" for c in df.columns if c not in (*keys, "cpu")}, "cpu": lambda cpus: ", ".join(sorted(set(cpus)))})
    return df


def latency_markdown(df: pd.DataFrame, title: str) -> str:
    """latency.md: per network and device, the speed-up and the two median latencies per batch size."""
    lines = [f"# Inference latency: {title}", ""]
    cols = speedup_columns(df)
    if not cols:
        return "\n".join(lines + ["Not measured (latency.repeats: 0).", ""])
    cpus = sorted({c for c in df["cpu"] if c})
    lines += [LATENCY_NOTE + (f" Measured on: {', '.join(cpus)}." if cpus else "") + " Latency cells: the baseline's "
              "median → the pruned network's, in ms, per batch size.", ""]
    head = ["Model", "Method", "Sparsity"]
    for device, speedups in cols:
        batches = " / ".join(SPEEDUP.fullmatch(c).group(2) for c in speedups)
        head += [_speedup_header(device, speedups), f"Latency, {device.upper() if device == 'cpu' else device} "
                 f"(ms, batch {batches})"]
    lines += ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * (len(head) - 3)) + "|"]
    for r in df.itertuples(index=False):
        cells = [MODEL_NAMES.get(r.model, r.model), METHOD_NAMES.get(r.criterion, r.criterion), f"`{r.sparsity}`"]
        for device, speedups in cols:
            cells.append(_speedup_cell(r, speedups))
            ms = []
            for c in speedups:
                b = SPEEDUP.fullmatch(c).group(2)
                base, pruned = (getattr(r, f"latency_{device}_b{b}_{k}_ms", float("nan")) for k in ("baseline", "pruned"))
                ms.append("–" if pd.isna(base) else f"{base:.2f} → {pruned:.2f}")
            cells.append(" / ".join(ms))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def latency_texts(records: list[dict], title: str) -> dict[str, str]:
    """latency.md and latency.csv: the one output of the report that differs between runs."""
    df = latency_frame(records)
    buf = io.StringIO()
    df.to_csv(buf, index=False, float_format="%.6f", lineterminator="\n")
    return {"latency.md": latency_markdown(df, title), "latency.csv": buf.getvalue()}


def frame(records: list[dict]) -> pd.DataFrame:
    """One row per pruned network, machine-readable columns, in the order the networks first
    appear. A network pruned from several baselines (one record each) gets one row over them:
    its top-1 and counts are the baselines' means, pruned_top1_std their sample standard
    deviation, pruned_top1_per_baseline and top1_before_finetune_per_baseline each baseline's
    value (its mean over fine-tuning seeds and draws first); per-image results, which hold one
    baseline's networks, are left out."""
    per_network: dict[tuple, list[dict]] = {}
    for r in map(normalize, records):
        per_network.setdefault((r["model"], r["criterion"], r["setting"]), []).append(r)
    rows = [_network_row(rs[0]) if len(rs) == 1 else _over_baselines([_network_row(r) for r in rs])
            for rs in per_network.values()]
    return pd.DataFrame(rows)


def _network_row(r: dict) -> dict:
    """The frame's row of one record: one network pruned from one baseline."""
    row = {k: r[k] for k in ("model", "criterion", "setting", "sparsity", "input_shape")}
    row.update(baselines=r["baseline"], baseline_top1=r["baseline_top1"], top1_before_finetune=r["top1_before_finetune"],
               pruned_top1=r["top1"], delta_top1=r["top1"] - r["baseline_top1"], pruned_top1_std=r["top1_std"],
               pruned_top1_best=r["top1_best"], seeds=r["seeds"], pruned_top1_per_seed=r["top1_per_seed"])
    for key, _ in COUNTS:
        row.update({key: r[key], f"baseline_{key}": r[f"baseline_{key}"],
                    f"{key}_reduction_pct": reduction(r[f"baseline_{key}"], r[key])})
    row.update({k: r[k] for k in (*PER_IMAGE_FIELDS, "test_images", "top1_before_finetune_per_seed") if k in r})
    return row


def _over_baselines(rows: list[dict]) -> dict:
    """One network's rows, one per baseline, as one row: means over the baselines, and the spread."""
    first, mean = rows[0], lambda key: statistics.fmean(r[key] for r in rows)
    if len({r["seeds"] for r in rows}) > 1:
        raise PrunelabError(f"{first['criterion']}-{first['setting']}: its baselines were fine-tuned with different seeds")
    tops = [r["pruned_top1"] for r in rows]  # (B,) each the mean over its fine-tuning seeds
    befores = [statistics.fmean(_before_values(r)) for r in rows]  # (B,) random: the mean over its draws
    row = {k: first[k] for k in ("model", "criterion", "setting", "sparsity", "input_shape", "seeds")}
    row.update(baselines=" ".join(r["baselines"] for r in rows), baseline_top1=mean("baseline_top1"),
               top1_before_finetune=statistics.fmean(befores), pruned_top1=statistics.fmean(tops),
               delta_top1=statistics.fmean(tops) - mean("baseline_top1"), pruned_top1_std=statistics.stdev(tops),
               pruned_top1_best=mean("pruned_top1_best"),
               pruned_top1_per_baseline=" ".join(f"{t:.4f}" for t in tops),
               top1_before_finetune_per_baseline=" ".join(f"{t:.4f}" for t in befores))
    for key, _ in COUNTS:  # SNPFI's widths, and so its counts, differ between baselines
        row.update({key: int(round(mean(key))), f"baseline_{key}": int(round(mean(f"baseline_{key}"))),
                    f"{key}_reduction_pct": mean(f"{key}_reduction_pct")})
    return row


def _before_values(r: dict) -> list[float]:
    """Top-1 before fine-tuning of each seed's pruned network of a one-baseline row."""
    per_seed = r.get("top1_before_finetune_per_seed")
    return [float(t) for t in per_seed.split()] if isinstance(per_seed, str) else [r["top1_before_finetune"]]


def _baselines(r) -> int:
    """How many baselines a frame row holds."""
    return len(str(r.baselines).split())


def _millions(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.2f}M"


def _top1(r, pm: str = "±") -> str:
    """Pruned top-1: the mean, with the spread and count over baselines, or over seeds when one
    baseline was run with several."""
    if _baselines(r) > 1:
        return f"{r.pruned_top1:.2f} {pm} {r.pruned_top1_std:.2f} ({_baselines(r)} baselines)"
    n = len(r.seeds.split())
    return f"{r.pruned_top1:.2f}" if n == 1 else f"{r.pruned_top1:.2f} {pm} {r.pruned_top1_std:.2f} ({n} seeds)"


def _before(r) -> str:
    """Top-1 before fine-tuning: the mean, with the spread and count over baselines, or where the
    seeds of one baseline pruned different networks (random's draws)."""
    if _baselines(r) > 1:
        per_baseline = [float(t) for t in r.top1_before_finetune_per_baseline.split()]
        return f"{r.top1_before_finetune:.2f} ± {statistics.stdev(per_baseline):.2f} ({len(per_baseline)} baselines)"
    if not _drawn_per_seed(r):
        return f"{r.top1_before_finetune:.2f}"
    per_seed = _before_per_seed(r)
    return f"{statistics.fmean(per_seed):.2f} ± {statistics.stdev(per_seed):.2f} ({len(per_seed)} draws)"


LATENCY_NOTE = ("Speed-up: the baseline's median inference latency over the pruned network's, measured by the "
                "evaluate stage (eval mode, warm-up excluded, the two networks' passes interleaved). A "
                "measurement: it varies between runs and machines, and it is the only tracked result that does "
                "(every other table is the same bytes on any x86-64 CPU with AVX2).")
SEEDS_NOTE = ("Where several baselines were trained, pruned top-1 is the mean over them ± their sample standard "
              "deviation (each baseline's own top-1 first averaged over its fine-tuning seeds); where one baseline "
              "was fine-tuned with several seeds, the mean over the seeds ± theirs (each seed fine-tunes the same "
              "pruned network, except random's: each seed draws its own channels); the paper reports the best "
              "run and its best epoch.")


SNPFI_NOTE = ("SNPFI's row is three things at once: its ranking (Shapley values), its own widths for the "
              "setting's MACs, and recovery without training before fine-tuning (a least-squares refit of every "
              "consumer, then BatchNorm statistics re-estimated); the other rows prune at the setting's rates and "
              "recover only by fine-tuning. ablation.md takes the three apart.")


def _display_rows(df: pd.DataFrame, pct: str, pm: str = "±") -> list[list[str]]:
    rows = []
    for r in df.itertuples(index=False):
        cells = [MODEL_NAMES.get(r.model, r.model), METHOD_NAMES.get(r.criterion, r.criterion), r.sparsity,
                 f"{r.baseline_top1:.2f}", _top1(r, pm), f"{r.delta_top1:+.2f}"]
        for key, _ in COUNTS:
            cells.append(f"{_millions(getattr(r, key))} ({getattr(r, f'{key}_reduction_pct'):.1f}{pct})")
        rows.append(cells)
    return rows


HEADER = ["Model", "Method", "Sparsity", "Baseline top-1 (%)", "Pruned top-1 (%)", "Δ top-1"] + [
    f"{label} (↓%)" for _, label in COUNTS]


def _several_seeds(df: pd.DataFrame) -> bool:
    """Whether a row's top-1 is a mean over several runs (baselines, or seeds of one baseline)."""
    return any(len(seeds.split()) > 1 or len(str(b).split()) > 1 for seeds, b in zip(df["seeds"], df["baselines"]))


def markdown(df: pd.DataFrame, title: str) -> str:
    shapes = ", ".join(sorted(set(df["input_shape"])))
    lines = [f"# {title}", "",
             f"Input {shapes}. MACs: conv + linear multiply-accumulates. FLOPs (paper): CHIP's thop convention "
             "(MACs + conv bias + 2 per BatchNorm element + average pool). Top-1 of the final epoch."
             + (f" {SEEDS_NOTE}" if _several_seeds(df) else "")
             + (f" {SNPFI_NOTE}" if "snpfi" in set(df["criterion"]) else "") + " Inference latency: latency.md.", "",
             "| " + " | ".join(HEADER) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * (len(HEADER) - 3)) + "|"]
    for cells in _display_rows(df, "%"):
        cells[2] = f"`{cells[2]}`"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _tex_escape(s: str) -> str:
    return s.replace("\\", r"\textbackslash{}").replace("%", r"\%").replace("_", r"\_").replace("&", r"\&")


def latex(df: pd.DataFrame, title: str) -> str:
    cols = [h.replace("Δ", r"$\Delta$").replace("↓", r"$\downarrow$").replace("%", r"\%") for h in HEADER]
    lines = [f"% {title}", r"\begin{tabular}{lll" + "r" * (len(cols) - 3) + "}", r"\toprule",
             " & ".join(cols) + r" \\", r"\midrule"]
    for cells in _display_rows(df, r"\%", r"$\pm$"):
        cells[2] = r"\texttt{" + _tex_escape(cells[2]) + "}"
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def csv(df: pd.DataFrame) -> str:
    buf = io.StringIO()
    df.drop(columns=[c for c in PER_IMAGE_FIELDS if c in df]).to_csv(buf, index=False, float_format="%.6f", lineterminator="\n")
    return buf.getvalue()


REFERENCES = ("random", "chip")  # every criterion is compared with these two


def _per_seed(row) -> list[float]:
    return [float(t) for t in row.pruned_top1_per_seed.split()]


def _drawn_per_seed(row) -> bool:
    """Whether the row's seeds pruned different networks (a seed-drawn criterion: random)."""
    return len(set(str(getattr(row, "test_correct_before_finetune", "")).split())) > 1


def _before_per_seed(row) -> list[float]:
    """Top-1 before fine-tuning of each seed's pruned network (the one network's, once per seed)."""
    per_seed = getattr(row, "top1_before_finetune_per_seed", None)
    if isinstance(per_seed, str):
        return [float(t) for t in per_seed.split()]
    return [row.top1_before_finetune] * len(row.seeds.split())


def difference(a, b, before: bool = False) -> significance.Difference | None:
    """Top-1 of network a minus b (frame rows), with its 95% interval, or None when there is
    nothing to pair.

    Several baselines: paired by baseline (each side's per-baseline top-1, before or after
    fine-tuning), the same baselines on both sides. One baseline, after fine-tuning: paired by
    seed when both have several (the same seeds), else by test image when both carry per-image
    correctness. One baseline, before fine-tuning: paired by seed when either side pruned a
    different network per seed (random's draws: the interval then holds the draw), else by test
    image (each side is one network)."""
    if _baselines(a) > 1 or _baselines(b) > 1:  # the replicates: baselines, paired by baseline
        if a.baselines != b.baselines:
            return None
        per = "top1_before_finetune_per_baseline" if before else "pruned_top1_per_baseline"
        return significance.over_replicates([float(t) for t in getattr(a, per).split()],
                                            [float(t) for t in getattr(b, per).split()], "baselines")
    several = len(a.seeds.split()) > 1 and a.seeds == b.seeds
    if before:
        if several and (_drawn_per_seed(a) or _drawn_per_seed(b)):
            return significance.over_seeds(_before_per_seed(a), _before_per_seed(b))
        if all(isinstance(getattr(r, "test_correct_before_finetune", None), str) for r in (a, b)):
            if _drawn_per_seed(a) or _drawn_per_seed(b):
                return None  # draws on one side, and no seeds to pair them with
            return significance.over_images(
                *(correctness.decode(r.test_correct_before_finetune.split()[0], r.test_images) for r in (a, b)))
        return None
    if several:
        return significance.over_seeds(_per_seed(a), _per_seed(b))
    if all(isinstance(getattr(r, "test_correct_per_seed", None), str) for r in (a, b)):
        if len(a.seeds.split()) != 1 or len(b.seeds.split()) != 1:
            return None  # several seeds on one side only: nothing to pair them with
        return significance.over_images(correctness.decode(a.test_correct_per_seed, a.test_images),
                                        correctness.decode(b.test_correct_per_seed, b.test_images))
    return None


def _signed(x: float) -> str:
    """+1.25, −0.40 (a minus sign, not a hyphen); a value that rounds to zero is +0.00."""
    text = f"{x:+.2f}"
    return "+0.00" if float(text) == 0 else text.replace("-", "−")


UNIT_NAMES = {"seeds": "fine-tuning seeds of one baseline", "baselines": "baselines", "test images": "test images"}


def _interval(d: significance.Difference) -> str:
    return "–" if d.missing else f"[{_signed(d.low)}, {_signed(d.high)}]"


def _paired_over(d: significance.Difference) -> str:
    return f"{d.n:,} {UNIT_NAMES.get(d.unit, d.unit)}"


def _name(criterion: str) -> str:
    return METHOD_NAMES.get(criterion, criterion)


def _p(p: float) -> str:
    return "–" if p != p else ("< 0.001" if p < 0.001 else f"{p:.3f}")


def _family_section(df: pd.DataFrame, family: list[tuple[str, str, str]]) -> list[str]:
    """Markdown: the declared contrasts (A, B, setting), top-1 after fine-tuning of A minus B, each
    with its interval, p-value, Holm's adjusted p-value, a verdict at 5% family-wise, and the
    smallest difference the design could detect with 80% power."""
    rows = []
    for a, b, setting in family:
        at = {r.criterion: r for r in df[df.setting == setting].itertuples(index=False)}
        if a in at and b in at:
            rows.append((a, b, setting, difference(at[a], at[b])))
    if not rows:
        return []
    m = sum(1 for *_, d in rows if d is not None and d.p == d.p)
    adjusted = significance.holm([float("nan") if d is None else d.p for *_, d in rows])
    alpha = 1 - significance.CONFIDENCE
    lines = ["## Declared contrasts", "",
             f"The {len(rows)} contrasts `compare.family` in params.yaml names, fixed before anything ran: top-1 after "
             "fine-tuning of A minus B. Only these get verdicts: p-values (the paired t test over replicates, McNemar's "
             "exact test over test images) are adjusted by Holm's method over the "
             f"{m} that have one, so that the chance of any false verdict among them stays at {alpha:.0%}; "
             f"the intervals are the unadjusted {significance.CONFIDENCE:.0%} ones. \"Not detected\" is a result: "
             "the design saw no difference, which is not evidence of none. Detectable: the smallest true difference "
             f"the paired t test over these replicates would find with 80% power at {alpha:.0%}/{m} (the level "
             "Holm's first step needs), given the spread the replicates showed; none where the pairing is by test "
             "image (one network a side: no spread between trainings to size it on).", "",
             "| Contrast | Points | 95% CI | Paired over | p | Holm p | Verdict | Detectable (80% power) |",
             "|---|---:|---:|---:|---:|---:|---|---:|"]
    for (a, b, setting, d), p_holm in zip(rows, adjusted):
        label = f"{_name(a)} − {_name(b)} at {setting}"
        if d is None:
            lines.append(f"| {label} | – | – | – | – | – | no interval: nothing to pair | – |")
            continue
        verdict = d.verdict(None if p_holm != p_holm else p_holm, alpha)
        verdict = {"A better": f"{_name(a)} better", "B better": f"{_name(b)} better"}.get(verdict, verdict)
        detectable = (significance.detectable(d.sd, d.n, alpha / max(m, 1)) if d.unit != "test images"
                      else float("nan"))
        lines.append(f"| {label} | {_signed(d.mean)} | {_interval(d)} | {_paired_over(d)} | {_p(d.p)} | {_p(p_holm)} | "
                     f"{verdict} | {'–' if detectable != detectable else f'{detectable:.2f}'} |")
    return lines + [""]


def _difference_rows(rows: pd.DataFrame, before: bool = False) -> list[str]:
    """Markdown rows: each criterion minus random and minus CHIP, with the 95% interval; after
    fine-tuning, or before (the pruned networks). Estimates: no verdict."""
    by_name = {r.criterion: r for r in rows.itertuples(index=False)}
    top1 = "top1_before_finetune" if before else "pruned_top1"
    out = []
    for ref in (c for c in REFERENCES if c in by_name):
        for name, r in by_name.items():
            if name == ref or (ref == "chip" and name == "random"):  # random − CHIP is CHIP − random negated
                continue
            d = difference(r, by_name[ref], before)
            label = f"{_name(name)} − {_name(ref)}"
            if d is None:
                out.append(f"| {label} | {_signed(getattr(r, top1) - getattr(by_name[ref], top1))} | – | "
                           "no interval: nothing to pair |")
            else:
                out.append(f"| {label} | {_signed(d.mean)} | {_interval(d)} | "
                           f"{_paired_over(d)}{'' if not d.missing else f' ({d.missing})'} |")
    return out


def comparison(df: pd.DataFrame, family: list[tuple[str, str, str]] = ()) -> str:
    """Markdown: the declared contrasts (family: (criterion A, criterion B, setting)) with Holm's
    verdicts, then the criteria side by side at each setting, top-1 before and after fine-tuning,
    and each criterion's top-1 difference from random and from CHIP with its 95% interval
    (prunelab.significance), estimates without verdicts."""
    lines = ["# Criteria compared", "",
             "Same baseline, same images, same widths and same fine-tuning for every criterion; "
             "top-1 in %, counts with their reduction.", "",
             "Differences are in top-1 points with a 95% confidence interval, over one of three units. Over "
             "baselines (independently trained: each its own training, feature images, scores, random draws and "
             "SNPFI game), the interval holds everything a rerun of the whole protocol would change: the paired t "
             "interval over the per-baseline differences, with one degree of freedom fewer than baselines. Over "
             "fine-tuning seeds of one baseline, it holds fine-tuning noise but not the baseline's: "
             "another baseline can move every difference. Over test images (one network a side), it holds only "
             "which test images were drawn: Newcombe's interval for paired proportions. Before fine-tuning a "
             "criterion has one pruned network, except where a side draws its channels per seed (random, with "
             "several seeds): the pairing is then by seed, and the interval holds the draws. "
             "Fewer than two pairs, or the same difference in every pair, give no interval. "
             "Top-1 is the mean over baselines (or over the seeds of one baseline) ± their sample standard "
             "deviation where there are several. "
             "Only the declared contrasts get verdicts; the rest are estimates. "
             "Top-1 after fine-tuning is the final epoch's; the best epoch's is shown apart because that "
             "epoch is chosen on the test set itself (as CHIP reports its numbers), which flatters it.", "",
             *_family_section(df, list(family))]
    for (model, setting), rows in df.groupby(["model", "setting"], sort=False):
        best = "best_epoch_top1" in rows
        lines += [f"## {MODEL_NAMES.get(model, model)}, setting {setting}: `{rows.sparsity.iloc[0]}`", "",
                  "| Criterion | Top-1 before fine-tuning | Top-1 after fine-tuning | Params | MACs | FLOPs (paper) |"
                  + (" Best epoch's top-1 (test-selected) |" if best else ""),
                  "|---|---:|---:|---:|---:|---:|" + ("---:|" if best else "")]
        for r in rows.itertuples(index=False):
            counts = [f"{_millions(getattr(r, k))} ({getattr(r, f'{k}_reduction_pct'):.1f}%)" for k, _ in COUNTS]
            lines.append(f"| {_name(r.criterion)} | {_before(r)} | "
                         f"{_top1(r)} | " + " | ".join(counts) + " |"
                         + (f" {r.best_epoch_top1:.2f} (epoch {r.best_epoch}) |" if best else ""))
        lines += _per_baseline(rows)
        for before, when in ((False, "after fine-tuning"), (True, "before fine-tuning")):
            differences = _difference_rows(rows, before)
            if differences:
                lines += ["", f"| Difference {when} | Points | 95% CI | Paired over |",
                          "|---|---:|---:|---:|", *differences]
        lines.append("")
    return "\n".join(lines + _auto_against_hand_set(df))


def _per_baseline(rows: pd.DataFrame) -> list[str]:
    """Markdown: each baseline's top-1 after fine-tuning (and before it) per criterion, the pairs
    every interval over baselines is computed from; nothing for one baseline."""
    if not len(rows) or _baselines(rows.iloc[0]) < 2:
        return []
    baselines = str(rows.iloc[0].baselines).split()
    lines = ["", "| Top-1 after (before) fine-tuning, per baseline | " + " | ".join(f"b{b}" for b in baselines) + " |",
             "|---|" + "---:|" * len(baselines)]
    for r in rows.itertuples(index=False):
        after, before = (str(getattr(r, f)).split() for f in ("pruned_top1_per_baseline", "top1_before_finetune_per_baseline"))
        lines.append(f"| {_name(r.criterion)} | " + " | ".join(f"{float(a):.2f} ({float(b):.2f})" for a, b in zip(after, before))
                     + " |")
    return lines


AUTO = re.compile(r"\s*auto:\s*(\S+)\s*")  # an auto: setting naming the hand-set one it matches: auto:r2


def _auto_against_hand_set(df: pd.DataFrame) -> list[str]:
    """Markdown: for every auto:<setting> setting, each criterion at the automatic rates minus the
    same criterion at the hand-set rates it matches in MACs, after and before fine-tuning
    (estimates: no verdict)."""
    lines = []
    for (model, setting), rows in df.groupby(["model", "setting"], sort=False):
        m = AUTO.fullmatch(rows.sparsity.iloc[0])
        hand = df[(df.model == model) & (df.setting == m.group(1))] if m else None
        if hand is None or not len(hand):
            continue
        by_name = {r.criterion: r for r in hand.itertuples(index=False)}
        lines += [f"## {MODEL_NAMES.get(model, model)}: automatic rates ({setting}) against the hand-set {m.group(1)}", "",
                  f"The sensitivity stage picked {setting}'s rates for {m.group(1)}'s MACs reduction "
                  "(README, \"Layer sensitivity\"); every criterion then prunes, and is fine-tuned, at both.", "",
                  f"| {setting} − {m.group(1)} | MACs removed ({setting} / {m.group(1)}) | When | Points | 95% CI | "
                  "Paired over |", "|---|---:|---|---:|---:|---:|"]
        for r in rows.itertuples(index=False):
            if r.criterion not in by_name:
                continue
            h = by_name[r.criterion]
            macs = f"{r.macs_reduction_pct:.1f}% / {h.macs_reduction_pct:.1f}%"
            for before, when in ((False, "after fine-tuning"), (True, "before fine-tuning")):
                d = difference(r, h, before)
                if d is None:
                    continue
                lines.append(f"| {_name(r.criterion)} | {macs} | {when} | {_signed(d.mean)} | "
                             f"{_interval(d)} | {_paired_over(d)} |")
        lines.append("")
    return lines


def points(df: pd.DataFrame) -> pd.DataFrame:
    """Top-1 against MACs, one row per network and one per baseline (the data of the plot)."""
    base = df.drop_duplicates("model")[["model", "baseline_macs", "baseline_top1"]]
    rows = [{"model": r.model, "criterion": "baseline", "setting": "", "macs": r.baseline_macs, "top1": r.baseline_top1,
             "top1_before_finetune": r.baseline_top1} for r in base.itertuples(index=False)]
    rows += [{"model": r.model, "criterion": r.criterion, "setting": r.setting, "macs": r.macs, "top1": r.pruned_top1,
              "top1_before_finetune": r.top1_before_finetune} for r in df.itertuples(index=False)]
    return pd.DataFrame(rows)


# one colour and one marker shape per criterion, hollow, so that networks at the same point stay visible
STYLE = {"baseline": ("#000000", "*"), "chip": ("#1f77b4", "o"), "hrank": ("#ff7f0e", "s"), "l1": ("#2ca02c", "^"),
         "random": ("#d62728", "D"), "snpfi": ("#9467bd", "v")}


def plot_png(pts: pd.DataFrame, path: str | Path, title: str, spread: pd.Series | None = None) -> None:
    """Top-1 against MACs before and after fine-tuning (two panels), a colour and marker per
    criterion; written atomically. Networks at the same MACs (every rate-based criterion at a
    setting) are spread sideways by a few pixels' worth of MACs, in the legend's order, so none
    hides another; spread (the seeds' standard deviation per point, after fine-tuning) draws
    error bars. Each panel's axes fit its points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), dpi=100)
    criteria = list(dict.fromkeys(pts.criterion))
    settings = [s for s in dict.fromkeys(pts.setting) if s]  # each setting's label on its own line
    span = (pts.macs.max() - pts.macs.min()) / 1e6 or pts.macs.max() / 1e6
    dodge = {c: (k - (len(criteria) - 1) / 2) * 0.018 * span for k, c in enumerate(criteria)}
    for ax, column, label in ((axes[0], "top1_before_finetune", "top-1 before fine-tuning (%)"),
                              (axes[1], "top1", "top-1 after fine-tuning (%)")):
        for criterion in criteria:
            rows = pts[pts.criterion == criterion]
            colour, marker = STYLE.get(criterion, ("#7f7f7f", "o"))
            x = rows.macs / 1e6 + (0 if criterion == "baseline" else dodge[criterion])
            err = spread[rows.index] if spread is not None and column == "top1" else None
            ax.errorbar(x, rows[column], yerr=err, fmt=marker, markersize=11 if marker == "*" else 7,
                        markerfacecolor="none" if marker != "*" else colour, markeredgecolor=colour,
                        markeredgewidth=1.5, ecolor=colour, capsize=3, linestyle="none",
                        label=METHOD_NAMES.get(criterion, criterion))
            for r, xi in zip(rows.itertuples(index=False), x):
                if r.setting and criterion == criteria[-1]:  # a setting's name once, beside its last network,
                    k = settings.index(r.setting)  # above it or below, by setting: two at one point stay apart
                    ax.annotate(r.setting, (xi, getattr(r, column)), textcoords="offset points",
                                xytext=(6, 5 if k % 2 == 0 else -13), fontsize=8)
        ax.set_xlabel("MACs (M)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.margins(x=0.08, y=0.08)
    axes[1].legend(loc="best", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", metadata={"Software": None}))
    plt.close(fig)


def _spread(df: pd.DataFrame, pts: pd.DataFrame) -> pd.Series:
    """The seeds' standard deviation of top-1 after fine-tuning for each row of points(df) (0 for a baseline)."""
    std = {(r.criterion, r.setting): r.pruned_top1_std for r in df.itertuples(index=False)}
    return pd.Series([std.get((c, s), 0.0) for c, s in zip(pts.criterion, pts.setting)], index=pts.index)


def summary(df: pd.DataFrame) -> str:
    """JSON: per network, top-1 after and before fine-tuning and the MACs reduction, and the
    baseline's top-1; the few numbers `dvc metrics show` and `dvc exp show` list (the evaluate
    files hold the rest)."""
    out = {f"{r.criterion}-{r.setting}": {"top1": r.pruned_top1, "top1_std": r.pruned_top1_std,
                                          "top1_before_finetune": r.top1_before_finetune,
                                          "macs_reduction_pct": r.macs_reduction_pct} for r in df.itertuples(index=False)}
    out["baseline"] = {"top1": float(df.baseline_top1.iloc[0])}  # the unpruned network's (mean over the baselines)
    return json.dumps(out, indent=2, sort_keys=True) + "\n"


CURVE_FIELDS = ("setting", "criterion", "baseline", "seed", "epoch", "top1")


def curves_csv(curves: list[dict]) -> str:
    """Fine-tuning top-1 per epoch of every network and seed, one row each (CURVE_FIELDS): the
    DVC plot that puts a setting's networks on one axis."""
    buf = io.StringIO()
    pd.DataFrame(curves, columns=list(CURVE_FIELDS)).to_csv(buf, index=False, float_format="%.6f", lineterminator="\n")
    return buf.getvalue()


def with_best_epoch(df: pd.DataFrame, curves: list[dict]) -> pd.DataFrame:
    """df plus, per network, the top-1 of its best fine-tuning epoch (mean over baselines and
    seeds) and which epoch that was (1-based, per baseline and seed): the epoch is chosen on the test set itself, which is how
    CHIP reports its numbers, so it is shown apart from the final epoch's top-1."""
    c = pd.DataFrame(curves, columns=list(CURVE_FIELDS))
    best = c.loc[c.groupby(["setting", "criterion", "baseline", "seed"], sort=False, dropna=False)["top1"].idxmax()]
    per_net = {key: rows for key, rows in best.groupby(["setting", "criterion"], sort=False)}
    missing = [f"{cr}-{se}" for se, cr in zip(df.setting, df.criterion) if (se, cr) not in per_net]
    if missing:
        raise PrunelabError(f"no fine-tuning curve for {', '.join(missing)}")
    df = df.copy()
    df["best_epoch_top1"] = [per_net[(se, cr)]["top1"].mean() for se, cr in zip(df.setting, df.criterion)]
    df["best_epoch"] = [" ".join(str(int(e) + 1) for e in per_net[(se, cr)]["epoch"]) for se, cr in zip(df.setting, df.criterion)]
    return df


def write_tables(records: list[dict], out_dir: str | Path, title: str = "Results",
                 curves: list[dict] | None = None, family: list[tuple[str, str, str]] = ()) -> dict[str, Path]:
    """Write table.{md,tex,csv}, comparison.md, summary.json, the fine-tuning curves (when given)
    and the top-1-vs-MACs plot (CSV for DVC, PNG) into out_dir, each atomically; returns their
    paths."""
    if not records:
        raise PrunelabError("no results to tabulate")
    df = frame(records)
    if curves is not None:
        df = with_best_epoch(df, curves)
    texts = {"table.md": markdown(df, title), "table.tex": latex(df, title), "table.csv": csv(df),
             "comparison.md": comparison(df, family), "summary.json": summary(df), "top1_vs_macs.csv": csv(points(df)),
             **({"finetune_curves.csv": curves_csv(curves)} if curves is not None else {}),
             **latency_texts(records, title)}
    out = {}
    for name, text in texts.items():
        path = Path(out_dir) / name
        atomic_write(path, lambda tmp, text=text: Path(tmp).write_text(text, encoding="utf-8"))
        out[name] = path
    out["top1_vs_macs.png"] = Path(out_dir) / "top1_vs_macs.png"
    pts = points(df)
    plot_png(pts, out["top1_vs_macs.png"], title, _spread(df, pts) if _several_seeds(df) else None)
    return out


def records_from_files(files: list[Path]) -> list[dict]:
    """Evaluate records from the DVC-tracked metric files, in the given order."""
    records = []
    for f in files:
        if not Path(f).is_file():
            raise PrunelabError(f"{f}: no such metrics file; run `dvc repro` first")
        records.append(json.loads(Path(f).read_text()))
    return records


# --- The paper pipeline's table: CHIP's layout, our numbers beside the paper's reported top-1.

PAPER_HEADER = ["Model", "Method", "Sparsity", "Baseline top-1 (%)", "Pruned top-1 (%)", "Δ top-1",
                "Paper: baseline → pruned top-1", "Params (↓%)", "MACs (↓%)", "FLOPs, paper convention (↓%)"]


def paper_frame(records: list[dict]) -> pd.DataFrame:
    """frame() plus, per row, the top-1 CHIP's paper reports for CHIP at the same model and
    sparsity (NaN for another criterion, or where the paper has no such row: SNPFI's abstract
    gives no per-network top-1)."""
    from prunelab.paper import reported_top1

    df = frame(records)
    reported = [reported_top1(m, s) if c == "chip" else None for m, s, c in zip(df["model"], df["sparsity"], df["criterion"])]
    df["paper_baseline_top1"] = [r[0] if r else float("nan") for r in reported]
    df["paper_pruned_top1"] = [r[1] if r else float("nan") for r in reported]
    return df


def _paper_rows(df: pd.DataFrame, pct: str, pm: str, arrow: str) -> list[list[str]]:
    rows = []
    for r in df.itertuples(index=False):
        paper = "–" if pd.isna(r.paper_pruned_top1) else f"{r.paper_baseline_top1:.2f} {arrow} {r.paper_pruned_top1:.2f}"
        cells = [MODEL_NAMES.get(r.model, r.model), METHOD_NAMES.get(r.criterion, r.criterion), r.sparsity,
                 f"{r.baseline_top1:.2f}", _top1(r, pm), f"{r.delta_top1:+.2f}", paper]
        cells += [f"{_millions(getattr(r, k))} ({getattr(r, f'{k}_reduction_pct'):.1f}{pct})" for k, _ in COUNTS]
        rows.append(cells)
    return rows


def paper_markdown(df: pd.DataFrame, title: str) -> str:
    shapes = ", ".join(sorted(set(df["input_shape"])))
    lines = [f"# {title}", "",
             f"Inputs {shapes}. Every configuration of CHIP's results table and SNPFI's systems at its 60% FLOPs "
             "budget, each pruned by the criteria params.yaml gives it (comparison.md sets a row's criteria side by "
             "side, with their differences): our baselines, pruned "
             "and fine-tuned networks, top-1 of the final epoch; CHIP's reported top-1 beside ours (CHIP reports "
             "the best of several runs and the best epoch; SNPFI's abstract reports no per-network top-1). Counts are computed from the architectures: MACs (conv + "
             "linear multiply-accumulates) and CHIP's thop convention (MACs + conv bias + 2 per BatchNorm element + "
             "average pool), each against its own baseline." + (f" {SEEDS_NOTE}" if _several_seeds(df) else "")
             + " Inference latency: latency.md.", "",
             "| " + " | ".join(PAPER_HEADER) + " |",
             "|" + "|".join(["---"] * 3 + ["---:"] * (len(PAPER_HEADER) - 3)) + "|"]
    for cells in _paper_rows(df, "%", "±", "→"):
        cells[2] = f"`{cells[2]}`"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def paper_latex(df: pd.DataFrame, title: str) -> str:
    header = [h.replace("Δ", r"$\Delta$").replace("↓", r"$\downarrow$").replace("→", r"$\to$").replace("%", r"\%")
              for h in PAPER_HEADER]
    lines = [f"% {title}", r"\begin{tabular}{lll" + "r" * (len(header) - 3) + "}", r"\toprule",
             " & ".join(header) + r" \\", r"\midrule"]
    for cells in _paper_rows(df, r"\%", r"$\pm$", r"$\to$"):
        cells[2] = r"\texttt{" + _tex_escape(cells[2]) + "}"
        cells[6] = cells[6].replace("–", "--")
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def paper_summary(df: pd.DataFrame) -> str:
    """JSON: per pruned network (<row>-<criterion>), top-1 after and before fine-tuning and the
    FLOPs reduction; the numbers `dvc metrics show` lists for the paper pipeline (the evaluate
    files hold the rest)."""
    out = {f"{r.setting}-{r.criterion}": {"top1": r.pruned_top1, "top1_std": r.pruned_top1_std, "top1_before_finetune": r.top1_before_finetune,
                       "flops_paper_reduction_pct": r.flops_paper_reduction_pct} for r in df.itertuples(index=False)}
    return json.dumps(out, indent=2, sort_keys=True) + "\n"


def budgets(df: pd.DataFrame) -> pd.DataFrame:
    """The paper's rows pruned by more than one criterion (SNPFI's systems at 60%; every row when
    params.yaml's criteria lists several), which comparison() sets side by side; a row pruned by
    one criterion alone is left out."""
    return df[df.groupby(["model", "setting"], sort=False)["criterion"].transform("size") > 1]


def write_paper_tables(records: list[dict], out_dir: str | Path, title: str = "CHIP, reproduced") -> dict[str, Path]:
    """table.{md,tex,csv} in the paper's layout, the criteria compared at each shared budget
    (comparison.md) and summary.json, each written atomically; returns their paths."""
    if not records:
        raise PrunelabError("no results to tabulate")
    df = paper_frame(records)
    shared = budgets(df)
    texts = {"table.md": paper_markdown(df, title), "table.tex": paper_latex(df, title), "table.csv": csv(df),
             "comparison.md": comparison(shared) if len(shared) else
             "# Criteria compared\n\nEvery row is pruned by one criterion: nothing to compare. List several in "
             "params.yaml's criteria (README, \"Reproducing the paper\").\n",
             "summary.json": paper_summary(df), **latency_texts(records, title)}
    out = {}
    for name, text in texts.items():
        out[name] = Path(out_dir) / name
        atomic_write(out[name], lambda tmp, text=text: Path(tmp).write_text(text, encoding="utf-8"))
    return out
