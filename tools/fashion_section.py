"""Rewrite the ResNet-20 section of docs/results-fashion.md, and the README's paragraph on
fashion/, from fashion/'s tracked files.

fashion/ accumulates baselines across working sessions (each run adds one: `baselines:` gains
it, `dvc repro` runs only its stages and the report, and `tools/record_run.py fashion --name
run-b<b>.json` records that run). After each, this tool rewrites the section between its
heading and the next one, so that every figure and every claim in it follows the files:

    .venv/bin/python tools/fashion_section.py          # rewrite the section in place
    .venv/bin/python tools/fashion_section.py --check  # exit 1 if the page is stale

Tables are quoted from fashion/results/ as the report wrote them; the sentences are built from
the same rows (the declared contrasts' verdicts, the detectable differences) and from the metric
files (baselines, sweep, sensitivity). tests/test_readme.py checks the page against the files
independently of this tool, and runs --check.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import statistics
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "results-fashion.md"
HEADING = "## ResNet-20 (`fashion/`)"
PLANNED = 8  # baselines issue 25 asks of fashion/
ANCHOR = 95.6  # ResNet-20 on Fashion-MNIST, 300 epochs with Random Erasing (Zhong et al., AAAI 2020)
ABLATION_ROWS = ("SNPFI − CHIP, snpfi widths, refit+bn", "SNPFI − CHIP, rates widths, none",
                 "SNPFI − CHIP, snpfi widths, none", "CHIP, rates widths: refit − none",
                 "SNPFI, snpfi widths: refit+bn − none", "CHIP, refit+bn: SNPFI's widths − the rates")


def section(text: str, heading: str) -> str:
    """The part of a report file under '## <heading>…', to the next '## '."""
    return text.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]


def rows(text: str, pattern: str) -> list[str]:
    return [line for line in text.splitlines() if re.match(pattern, line)]


def render(project: Path = ROOT / "fashion") -> str:
    params = yaml.safe_load((project / "params.yaml").read_text())
    results = project / "results"
    baselines = params["baselines"]
    runs = {b: json.loads((results / f"run-b{b}.json").read_text()) for b in baselines
            if (results / f"run-b{b}.json").is_file()}
    tops = [json.loads((results / "metrics" / f"b{b}" / "train_baseline.json").read_text())["top1"] for b in baselines]
    table = (results / "table.md").read_text()
    comparison = (results / "comparison.md").read_text()
    ablation = (results / "ablation.md").read_text()
    declared = rows(section(comparison, "Declared contrasts"), r"\| \w+ − \w+ at ")
    cells = [[c.strip() for c in r.strip("|").split("|")] for r in declared]
    decided = [f"{c[0]} ({c[6]}: {c[1]} points, Holm p {c[5]})" for c in cells
               if c[6] != "not detected" and not c[6].startswith("no interval")]
    detectable = [float(c[7]) for c in cells if c[7] != "–"]
    r2 = section(comparison, "ResNet-20, setting r2")
    n = len(baselines)
    image_epochs = params["train"]["epochs"] * params["data"]["train_subset"]

    out = [HEADING, ""]
    out += [f"**{n} of the {PLANNED} planned baselines {'is' if n == 1 else 'are'} in** (`baselines: {baselines}` in `fashion/params.yaml`). "
            "Each was added by its own run: `baselines:` gained it, `dvc repro` ran only its stages and the report "
            "(the ratio sweep too, for baseline 0), and `tools/record_run.py fashion --name run-b<b>.json` recorded "
            "that run. The next one: append it to `baselines:`, run `dvc repro --allow-missing` (a clone has "
            "none of the earlier baselines' models, and needs none), then `tools/record_run.py` and "
            "`tools/fashion_section.py`, and commit `fashion/`.", ""]
    out += ["| baseline | ran on | machine | minutes | stages in that run |", "|---:|---|---|---:|---:|"]
    out += [f"| {b} | {r['date']} | {r['machine']} | {r['span_s'] / 60:.0f} | {len(r['stages_s'])} |" for b, r in runs.items()]
    out += ["", "What we chose, and why:", "",
            "- **Network:** ResNet-20 (CIFAR layout, one input channel), the smallest of CHIP's CIFAR",
            "  ResNets, so that one baseline with its five fine-tunings fits in about a quarter of an hour on 2 cores.",
            f"- **Training subset:** {params['data']['train_subset']:,} of the 60,000 training images, "
            f"{params['data']['train_subset'] // 10:,} per class, drawn by `seed` (the same for every baseline; "
            "`data.train_subset`). Testing is on all 10,000 test images.",
            f"- **Baselines:** {params['train']['epochs']} epochs, batch {params['train']['batch_size']}, lr "
            f"{params['train']['lr']} ({params['train']['warmup_epochs']} warm-up epoch, then cosine), weight decay "
            f"{params['train']['weight_decay']}, each with its own seed. **ResNet-20 baselines:** "
            f"{statistics.fmean(tops):.2f}% top-1 on the 10,000 test images on average "
            f"({min(tops):.2f}% to {max(tops):.2f}%), {ANCHOR - statistics.fmean(tops):.2f} points below the "
            f"{ANCHOR}% anchor, after 1/{300 * 60_000 / image_epochs:.0f} of its image-epochs. The anchor is a "
            "ResNet-20 trained 300 epochs on all 60,000 images with Random Erasing (Zhong et al., \"Random "
            "Erasing Data Augmentation\", AAAI 2020).",
            f"- **Setting:** one, CHIP's heavier ResNet-56 scheme with three blocks per stage instead of nine, "
            f"`r2 = {params['prune']['settings']['r2']}`: the time goes to baselines, the replicates, not to settings.",
            f"- **Fine-tuning:** CHIP's recipe (SGD, momentum {params['finetune']['momentum']}, lr "
            f"{params['finetune']['lr']}, weight decay {params['finetune']['weight_decay']}, cosine), "
            f"{params['finetune']['epochs']} epochs without warm-up, once per network. SNPFI: "
            f"{params['snpfi']['calibration_images']} calibration images, {params['snpfi']['permutations']} "
            "permutations per group, its game seeded by the baseline.", ""]
    out += rows(table, r"\|( Model|---)") + rows(table, r"\| ResNet-20 ") + [""]
    out += ["![Fashion-MNIST, top-1 against MACs](fashion/results/top1_vs_macs.png)", ""]
    out += ["**The declared contrasts** (`compare.family`, fixed before any baseline ran; top-1 after "
            "fine-tuning, paired by baseline, Holm-adjusted; `fashion/results/comparison.md`):", ""]
    out += rows(section(comparison, "Declared contrasts"), r"\|( Contrast|---)") + declared + [""]
    verb = "is" if len(decided) == 1 else "are"
    out += [f"- **{len(decided)} of the {len(declared)} declared contrasts {verb} decided** (Holm, 5% "
            f"family-wise): {'; '.join(decided) or 'none'}."]
    if detectable:
        out += [f"- **What this design could see.** With {n} baselines ({n - 1} degrees of freedom) and the spread "
                f"between them, a true difference smaller than {min(detectable):.2f} to {max(detectable):.2f} points "
                f"would be missed more than 1 time in 5 (80% power at 5%/{len(declared)}, Holm's first step). \"Not detected\" "
                "is not \"no difference\": more baselines narrow it."]
    else:
        out += ["- **One baseline so far.** The report then pairs over the 10,000 test images: those intervals "
                "hold which test images were drawn, not another training, and there is no spread between "
                "baselines to say what the design could detect. The second baseline gives both."]
    out += ["", "Per criterion, over the baselines, and per baseline (`fashion/results/comparison.md`):", ""]
    out += rows(r2, r"\|( Criterion|---)")[:2] + rows(r2, r"\| (CHIP|HRank|L1|Random|SNPFI) \| [\d.]+ ") + [""]
    if n > 1:
        per = r2.split("| Top-1 after (before) fine-tuning, per baseline |", 1)[1]
        head = "| Top-1 after (before) fine-tuning, per baseline |" + per.splitlines()[0]
        out += [head] + per.splitlines()[1:2] + rows(per, r"\| \w+ \| [\d.]+ \(") + [""]
    for when in ("after", "before"):
        block = r2.split(f"| Difference {when} fine-tuning |", 1)[1]
        out += [f"| Difference {when} fine-tuning |" + block.splitlines()[0]] + block.splitlines()[1:2]
        out += rows(block.split("\n\n", 1)[0], r"\| \w+ − \w+ \|") + [""]
    out += ["Every difference but the declared ones is an estimate: its interval, no verdict.", ""]

    quoted = [line for line in ablation.splitlines() if any(line.startswith(f"| {label} |") for label in ABLATION_ROWS)]
    out += ["**Before fine-tuning, criterion, widths and recovery apart** (the `ablation` stage on every "
            "baseline, no training; `fashion/results/ablation.md`, paired by baseline, estimates):", "",
            "| Difference | Points | 95% CI | Paired over |", "|---|---:|---:|---:|"] + quoted + [""]

    sweep = list(csv.DictReader((results / "sweep.csv").read_text().splitlines()))
    at = {r["criterion"]: r for r in sweep if (r["scheme"], float(r["ratio"])) == ("inner", 0.5)}
    r2_rows = [r for r in sweep if r["scheme"] == "r2"]
    out += ["- **Without fine-tuning** (the `sweep` stage on baseline 0, `fashion/results/sweep.png`): with the inner "
            f"channels alone at ratio 0.5 ({float(at['chip']['macs_reduction_pct']):.1f}% of the MACs removed), after "
            f"BatchNorm re-estimation, CHIP keeps {float(at['chip']['top1_bn_reestimated']):.2f}%, HRank "
            f"{float(at['hrank']['top1_bn_reestimated']):.2f}%, L1 {float(at['l1']['top1_bn_reestimated']):.2f}%, "
            f"random {float(at['random']['top1_bn_reestimated']):.2f}% (one draw) and SNPFI "
            f"{float(at['snpfi']['top1_bn_reestimated']):.2f}%. With the block outputs pruned too (r2's pattern), "
            "no rate-based criterion keeps more than "
            f"{max(float(r['top1_bn_reestimated']) for r in r2_rows if r['criterion'] != 'snpfi'):.2f}% at any ratio, "
            "even after the re-estimation, while SNPFI's refit keeps at least "
            f"{min(float(r['top1_bn_reestimated']) for r in r2_rows if r['criterion'] == 'snpfi'):.2f}%."]
    sens = results / "metrics" / "b0"
    top1 = {(int(r["slot"]), float(r["rate"])): float(r["top1"]) for r in csv.DictReader((sens / "sensitivity.csv").read_text().splitlines())}
    info = json.loads((sens / "sensitivity.json").read_text())
    out += ["- **Layer sensitivity** (the `sensitivity` stage on baseline 0, "
            "`fashion/results/metrics/b0/sensitivity.png`; CHIP's channels): pruned alone at rate 0.5, the stage-1 "
            f"block outputs keep {top1[1, 0.5]:.2f}% of {info['images']} training images and the stage-2 outputs "
            f"{top1[2, 0.5]:.2f}%, where every inner slot keeps at least "
            f"{min(v for (slot, rate), v in top1.items() if rate == 0.5 and slot >= 3):.2f}% (the baseline: "
            f"{info['baseline_top1']:.2f}%). The block outputs, which r2 prunes by 0.4, are where this network is fragile.",
            "", "![fashion/: top-1 against MACs removed, no fine-tuning](fashion/results/sweep.png)", ""]
    return "\n".join(out)


README = ROOT / "README.md"
README_START, README_END = "<!-- fashion/: written by tools/fashion_section.py -->", "<!-- /fashion/ -->"


def render_readme(project: Path = ROOT / "fashion") -> str:
    """The README's paragraph on fashion/: how many baselines are in, the declared contrasts as
    comparison.md has them, which are decided, and the difference the design could detect."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    comparison = (project / "results" / "comparison.md").read_text()
    declared = rows(section(comparison, "Declared contrasts"), r"\| \w+ − \w+ at ")
    cells = [[c.strip() for c in r.strip("|").split("|")] for r in declared]
    decided = [f"{c[0]} ({c[6]}, {c[1]} points, 95% CI {c[2]})" for c in cells
               if c[6] != "not detected" and not c[6].startswith("no interval")]
    detectable = [float(c[7]) for c in cells if c[7] != "–"]
    n = len(params["baselines"])
    out = [README_START, "",
           f"On Fashion-MNIST (`fashion/`: ResNet-20 at r2, 10,000 test images), **{n} of the {PLANNED} planned "
           f"baselines {'is' if n == 1 else 'are'} in**. Its declared contrasts, paired by baseline:", ""]
    out += rows(section(comparison, "Declared contrasts"), r"\|( Contrast|---)") + declared + [""]
    line = f"Decided there (Holm, 5% family-wise): {'; '.join(decided) or 'none'}."
    if any(d.startswith("SNPFI") for d in decided):
        line += (" SNPFI's row is its Shapley ranking, its own widths and its recovery without training together, "
                 "so the contrast credits the three at once ([the page](docs/results-fashion.md) takes them apart "
                 "before fine-tuning).")
    if detectable:
        line += (f" With {n} baselines, a true difference smaller than {min(detectable):.2f} to {max(detectable):.2f} "
                 "points would be missed more than 1 time in 5, so \"not detected\" says no more than that.")
    else:
        line += " With one baseline these intervals are over test images, not over trainings."
    return "\n".join(out + [line, "", README_END])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the page's section is not what the files give")
    args = parser.parse_args()
    page = PAGE.read_text()
    start = page.index(HEADING)
    end = page.index("\n## ", start + len(HEADING)) + 1
    new = page[:start] + render() + page[end:]
    readme = README.read_text()
    start, end = readme.index(README_START), readme.index(README_END) + len(README_END)
    new_readme = readme[:start] + render_readme() + readme[end:]
    if args.check:
        stale = [name for name, old, fresh in (("docs/results-fashion.md", page, new), ("README.md", readme, new_readme))
                 if old != fresh]
        if stale:
            sys.exit(f"{', '.join(stale)}: fashion/'s figures are stale: run tools/fashion_section.py")
        return
    PAGE.write_text(new)
    README.write_text(new_readme)
    print("rewrote the ResNet-20 section of docs/results-fashion.md and the README's paragraph on fashion/")


if __name__ == "__main__":
    main()
