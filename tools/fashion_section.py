"""Rewrite the two sections of docs/results-fashion.md (ResNet-20, `fashion/`; AlexNet,
`fashion-alexnet/`) and the README's paragraph on them, from the projects' tracked files.

Both projects accumulate baselines across working sessions (each run adds one: `baselines:`
gains it, `dvc repro` runs only its stages and the report, and `tools/record_run.py <project>
--name run-b<b>.json` records that run). After each, this tool rewrites each section between
its heading and the next one, so that every figure and every claim in it follows the files:

    .venv/bin/python tools/fashion_section.py          # rewrite the sections in place
    .venv/bin/python tools/fashion_section.py --check  # exit 1 if the page is stale

Tables are quoted from each project's results/ as its report wrote them; the sentences are built from
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
RESNET20 = ROOT / "fashion"
ALEXNET = ROOT / "fashion-alexnet"
HEADINGS = {"fashion": "## ResNet-20 (`fashion/`)", "fashion-alexnet": "## AlexNet at SNPFI's budget (`fashion-alexnet/`)"}
PLANNED = {"fashion": 8, "fashion-alexnet": 5}  # baselines issue 25 asks of each project
ANCHOR = 95.6  # ResNet-20 on Fashion-MNIST, 300 epochs with Random Erasing (Zhong et al., AAAI 2020)
ABLATION_ROWS = ("SNPFI − CHIP, snpfi widths, refit+bn", "SNPFI − CHIP, rates widths, none",
                 "SNPFI − CHIP, snpfi widths, none", "CHIP, rates widths: refit − none",
                 "SNPFI, snpfi widths: refit+bn − none", "CHIP, refit+bn: SNPFI's widths − the rates")
CRITERIA = ("chip", "hrank", "l1", "random", "snpfi")


def section(text: str, heading: str) -> str:
    """The part of a report file under '## <heading>…', to the next '## '."""
    return text.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]


def rows(text: str, pattern: str) -> list[str]:
    return [line for line in text.splitlines() if re.match(pattern, line)]


def plural(n: int) -> str:
    return "is" if n == 1 else "are"


def declared_contrasts(comparison: str) -> tuple[list[str], list[str], list[float]]:
    """comparison.md's declared contrasts: (their table rows, the decided ones as
    'CHIP − Random at r2 (verdict: +x points, Holm p y)', their detectable differences)."""
    declared = rows(section(comparison, "Declared contrasts"), r"\| \w+ − \w+ at ")
    cells = [[c.strip() for c in r.strip("|").split("|")] for r in declared]
    decided = [f"{c[0]} ({c[6]}: {c[1]} points, Holm p {c[5]})" for c in cells
               if c[6] != "not detected" and not c[6].startswith("no interval")]
    return declared, decided, [float(c[7]) for c in cells if c[7] != "–"]


def baselines_and_runs(project: Path, params: dict) -> list[str]:
    """How many baselines are in, how the next is added, and a row per run that added one."""
    folder, baselines = project.name, params["baselines"]
    runs = {b: json.loads((project / "results" / f"run-b{b}.json").read_text()) for b in baselines
            if (project / "results" / f"run-b{b}.json").is_file()}
    n = len(baselines)
    out = [f"**{n} of the {PLANNED[project.name]} planned baselines {plural(n)} in** (`baselines: {baselines}` in `{folder}/params.yaml`). "
           "Each was added by its own run: `baselines:` gained it, `dvc repro` ran only its stages and the report "
           f"(the ratio sweep too, for baseline 0), and `tools/record_run.py {folder} --name run-b<b>.json` recorded "
           "that run. The next one: append it to `baselines:`, run `dvc repro --allow-missing` (a clone has "
           "none of the earlier baselines' models, and needs none), then `tools/record_run.py` and "
           f"`tools/fashion_section.py`, and commit `{folder}/`.", ""]
    out += ["| baseline | ran on | machine | minutes | stages in that run |", "|---:|---|---|---:|---:|"]
    out += [f"| {b} | {r['date']} | {r['machine']} | {r['span_s'] / 60:.0f} | {len(r['stages_s'])} |" for b, r in runs.items()]
    return out + [""]


def comparison_blocks(project: Path, params: dict, model: str, setting: str) -> list[str]:
    """The table's rows and plot, the declared contrasts with their verdicts and what the design
    could detect, each criterion over and per baseline, every difference, the ablation's rows."""
    folder, results, n = project.name, project / "results", len(params["baselines"])
    table = (results / "table.md").read_text()
    comparison = (results / "comparison.md").read_text()
    declared, decided, detectable = declared_contrasts(comparison)
    block = section(comparison, f"{model}, setting {setting}")
    out = rows(table, r"\|( Model|---)") + rows(table, rf"\| {model} ") + [""]
    out += [f"![Fashion-MNIST, top-1 against MACs]({folder}/results/top1_vs_macs.png)", ""]
    out += ["**The declared contrasts** (`compare.family`, fixed before any baseline ran; top-1 after "
            f"fine-tuning, paired by baseline, Holm-adjusted; `{folder}/results/comparison.md`):", ""]
    out += rows(section(comparison, "Declared contrasts"), r"\|( Contrast|---)") + declared + [""]
    out += [f"- **{len(decided)} of the {len(declared)} declared contrasts {plural(len(decided))} decided** (Holm, 5% "
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
    out += ["", f"Per criterion, over the baselines, and per baseline (`{folder}/results/comparison.md`):", ""]
    overall = block.split("| Top-1 after (before) fine-tuning, per baseline |", 1)[0]  # not the per-baseline table
    out += rows(overall, r"\|( Criterion|---)")[:2] + rows(overall, r"\| (CHIP|HRank|L1|Random|SNPFI) \| [\d.]+ ") + [""]
    if n > 1:
        per = block.split("| Top-1 after (before) fine-tuning, per baseline |", 1)[1]
        head = "| Top-1 after (before) fine-tuning, per baseline |" + per.splitlines()[0]
        out += [head] + per.splitlines()[1:2] + rows(per, r"\| \w+ \| [\d.]+ \(") + [""]
    for when in ("after", "before"):
        part = block.split(f"| Difference {when} fine-tuning |", 1)[1]
        out += [f"| Difference {when} fine-tuning |" + part.splitlines()[0]] + part.splitlines()[1:2]
        out += rows(part.split("\n\n", 1)[0], r"\| \w+ − \w+ \|") + [""]
    out += ["Every difference but the declared ones is an estimate: its interval, no verdict.", ""]

    ablation = (results / "ablation.md").read_text()
    quoted = [line for line in ablation.splitlines() if any(line.startswith(f"| {label} |") for label in ABLATION_ROWS)]
    return out + ["**Before fine-tuning, criterion, widths and recovery apart** (the `ablation` stage on every "
                  f"baseline, no training; `{folder}/results/ablation.md`, paired by baseline, estimates):", "",
                  "| Difference | Points | 95% CI | Paired over |", "|---|---:|---:|---:|"] + quoted + [""] \
        + ablation_reading(ablation) + [""]


# What each quoted ablation row isolates, in words: (row label, what it sets apart).
ABLATION_READING = (
    ("SNPFI − CHIP, rates widths, none", "SNPFI's ranking against CHIP's, both at the rates' widths and neither recovered"),
    ("SNPFI − CHIP, snpfi widths, refit+bn", "the same two rankings at SNPFI's widths, both with SNPFI's recovery"),
    ("CHIP, rates widths: refit − none", "the least-squares refit, under CHIP's ranking at the rates"),
    ("SNPFI, snpfi widths: refit+bn − none", "SNPFI's recovery, under its own ranking and widths"),
    ("CHIP, refit+bn: SNPFI's widths − the rates", "SNPFI's widths against the rates, under CHIP's ranking with that recovery"),
)


def ablation_reading(ablation: str) -> list[str]:
    """One bullet per part of SNPFI's row (ranking, recovery, widths): each ablation difference
    that isolates it, with its interval and whether that interval holds 0. Estimates, not
    verdicts: the ablation is not in the declared family."""
    said = []
    for label, what in ABLATION_READING:
        points, interval = re.search(rf"^\| {re.escape(label)} \| (\S+) \| (\[[^]]+\]) \|", ablation, re.M).groups()
        low, high = (float(x.replace("−", "-")) for x in interval.strip("[]").split(", "))
        side = "holds 0" if low <= 0 <= high else "lies above 0" if low > 0 else "lies below 0"
        said.append(f"  - {what}: {points} points, {interval}; the interval {side}.")
    return ["- **Reading it** (estimates over the baselines, no verdicts):"] + said


def baseline_tops(project: Path, params: dict) -> list[float]:
    return [json.loads((project / "results" / "metrics" / f"b{b}" / "train_baseline.json").read_text())["top1"]
            for b in params["baselines"]]


def render_resnet20(project: Path = RESNET20) -> str:
    params = yaml.safe_load((project / "params.yaml").read_text())
    results = project / "results"
    tops = baseline_tops(project, params)
    image_epochs = params["train"]["epochs"] * params["data"]["train_subset"]

    out = [HEADINGS[project.name], ""] + baselines_and_runs(project, params)
    out += ["What we chose, and why:", "",
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
    out += comparison_blocks(project, params, "ResNet-20", "r2")

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
            "", "![fashion/: top-1 against MACs removed, no fine-tuning](fashion/results/sweep.png)", "", ""]
    return "\n".join(out)


def render_alexnet(project: Path = ALEXNET) -> str:
    params = yaml.safe_load((project / "params.yaml").read_text())
    results = project / "results"
    (setting, rates), = params["prune"]["settings"].items()
    tops = baseline_tops(project, params)
    snpfi = [json.loads((results / "metrics" / f"b{b}" / "prune" / f"snpfi-{setting}.json").read_text())
             for b in params["baselines"]]
    reached = [m["reached_macs_reduction_pct"] for m in snpfi]

    out = [HEADINGS[project.name], "",
           "SNPFI reports \"nearly 60% of computation removed while accuracy remains\" on AlexNet with MNIST. "
           "MNIST cannot be reached from our machines; Fashion-MNIST has the same format and is harder, so "
           "this is AlexNet on **Fashion-MNIST, not MNIST**.", ""] + baselines_and_runs(project, params)
    out += ["What we chose, and why:", "",
            "- **Network:** AlexNet in its small-image form (\"AlexNet and MobileNetV1\" above), 1×28×28 input.",
            "- **Budget:** SNPFI's 60% FLOPs reduction. The rate-based criteria (CHIP, HRank, L1, random) get "
            f"uniform rates that reach it, `{setting} = {rates}`: the FLOPs share in the table below. SNPFI picks its "
            f"own widths for the same MACs reduction (target {snpfi[0]['target_macs_reduction_pct']:.1f}%; reached "
            f"{min(reached):.1f}% to {max(reached):.1f}% over the baselines). We give the others uniform rates rather "
            "than SNPFI's widths because the allocation is part of what SNPFI contributes; the ablation below "
            "gives every ranking SNPFI's widths too.",
            f"- **Baselines:** the same {params['data']['train_subset']:,} training images as `fashion/`; "
            f"{params['train']['epochs']} epochs, batch {params['train']['batch_size']}, lr {params['train']['lr']} "
            f"(AlexNet has no BatchNorm), {params['train']['warmup_epochs']} warm-up epoch, then cosine, each with its "
            f"own seed. **AlexNet baselines:** {statistics.fmean(tops):.2f}% top-1 on the 10,000 test images on "
            f"average ({min(tops):.2f}% to {max(tops):.2f}%).",
            f"- **Fine-tuning:** as `fashion/` ({params['finetune']['epochs']} epochs, CHIP's recipe), once per "
            f"network. SNPFI plays its game on {params['snpfi']['calibration_images']} calibration images with "
            f"{params['snpfi']['permutations']} permutations per group, seeded by the baseline: AlexNet's groups "
            "hold up to 4,096 channels. Having no BatchNorm, AlexNet gets nothing from its re-estimation: SNPFI's "
            "recovery is its refit alone, and the ablation's \"bn\" columns equal \"none\".", ""]
    out += comparison_blocks(project, params, "AlexNet", setting)

    sweep = list(csv.DictReader((results / "sweep.csv").read_text().splitlines()))
    grid = sorted({float(r["ratio"]) for r in sweep})
    at = {(float(r["ratio"]), r["criterion"]): r for r in sweep}
    said = []
    for ratio in grid:
        kept = ", ".join(f"{name} {float(at[ratio, c]['top1_pruned']):.2f}%" for c, name in
                         zip(CRITERIA, ("CHIP", "HRank", "L1", "random", "SNPFI (refit)")))
        said.append(f"{ratio:g} of every group ({float(at[ratio, 'chip']['macs_reduction_pct']):.1f}% of the MACs "
                    f"removed): {kept}")
    out += [f"- **Without fine-tuning** (the `sweep` stage on baseline 0, `{project.name}/results/sweep.png`; "
            "random: one draw): at " + "; at ".join(said) + "."]
    sens = results / "metrics" / "b0"
    at_half = {r["groups"]: float(r["top1"]) for r in csv.DictReader((sens / "sensitivity.csv").read_text().splitlines())
               if float(r["rate"]) == 0.5}
    info = json.loads((sens / "sensitivity.json").read_text())
    weakest, strongest = min(at_half, key=at_half.get), max(at_half, key=at_half.get)
    out += ["- **Layer sensitivity** (the `sensitivity` stage on baseline 0, "
            f"`{project.name}/results/metrics/b0/sensitivity.png`; CHIP's channels): pruned alone at rate 0.5, "
            f"`{weakest}` keeps the least, {at_half[weakest]:.2f}% of {info['images']} training images, and "
            f"`{strongest}` the most, {at_half[strongest]:.2f}% (the baseline: {info['baseline_top1']:.2f}%).", "",
            f"The baselines are undertrained ({params['train']['epochs']} epochs at lr {params['train']['lr']} on a "
            f"third of the data), so the {params['finetune']['epochs']} fine-tuning epochs are also more training: a "
            "pruned network can end above its baseline. Unlike the ResNets, AlexNet has no shortcut that pruned "
            "channels must stay aligned with.", ""]
    return "\n".join(out)


README = ROOT / "README.md"
README_START, README_END = "<!-- fashion/, fashion-alexnet/: written by tools/fashion_section.py -->", "<!-- /fashion -->"


def render_readme() -> str:
    """The README's paragraph on the two Fashion-MNIST projects: how many baselines are in, the
    declared contrasts as comparison.md has them, which are decided, and the difference the
    design could detect."""
    out = [README_START, ""]
    for project, what in ((RESNET20, "ResNet-20 at r2"), (ALEXNET, "AlexNet at SNPFI's budget, f60")):
        n = len(yaml.safe_load((project / "params.yaml").read_text())["baselines"])
        comparison = (project / "results" / "comparison.md").read_text()
        declared, decided, detectable = declared_contrasts(comparison)
        out += [f"On Fashion-MNIST (`{project.name}/`: {what}, 10,000 test images), **{n} of the "
                f"{PLANNED[project.name]} planned baselines {plural(n)} in**. Its declared contrasts, paired by baseline:", ""]
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
        out += [line, ""]
    return "\n".join(out + [README_END])


def replace(text: str, start: int, end: int, new: str) -> str:
    return text[:start] + new + text[end:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a section is not what the files give")
    args = parser.parse_args()
    page = new = PAGE.read_text()
    for project, render in ((RESNET20, render_resnet20), (ALEXNET, render_alexnet)):
        start = new.index(HEADINGS[project.name])
        end = new.find("\n## ", start + len(HEADINGS[project.name])) + 1 or len(new)  # the next section, or the page's end
        new = replace(new, start, end, render())
    readme = README.read_text()
    new_readme = replace(readme, readme.index(README_START), readme.index(README_END) + len(README_END), render_readme())
    if args.check:
        stale = [name for name, old, fresh in (("docs/results-fashion.md", page, new), ("README.md", readme, new_readme))
                 if old != fresh]
        if stale:
            sys.exit(f"{', '.join(stale)}: the Fashion-MNIST figures are stale: run tools/fashion_section.py")
        return
    PAGE.write_text(new)
    README.write_text(new_readme)
    print("rewrote both sections of docs/results-fashion.md and the README's paragraph on fashion/ and fashion-alexnet/")


if __name__ == "__main__":
    main()
