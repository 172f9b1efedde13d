"""Every number in the README and the documentation pages (docs/) comes from the code: its tables
from the tracked results, its counts from `prunelab count`. Each check reads the page that holds
the text it checks."""

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from prunelab import cli

ROOT = Path(__file__).resolve().parents[1]


def test_readme_table_is_the_pipelines_table():
    readme = (ROOT / "README.md").read_text()
    rows = [line for line in (ROOT / "results" / "table.md").read_text().splitlines() if line.startswith("|")]
    assert len(rows) >= 4
    for row in rows:
        assert row in readme, f"README lacks the pipeline's row {row!r}"


def test_readme_paper_table_is_computed_by_the_code():
    from prunelab.paper import counts_table, snpfi_counts_table

    table = counts_table()
    assert table in page("docs/counting.md")
    assert snpfi_counts_table() in page("docs/counting.md")
    assert "| ResNet-56 | `[0.]+[0.15]*2+[0.4]*27` | 0.49M (43.1%) |" in table
    assert "65.94M" in table and "34.79M" in table  # CHIP's published flops of its ResNet-56 rows


def test_readme_count_examples_print_what_the_readme_says(capsys):
    readme = page("docs/counting.md")
    examples = re.findall(r"^\$ (prunelab count .+)\n(\{.+\})$", readme, flags=re.M)
    assert len(examples) >= 3
    for command, expected in examples:
        cli.main(shlex.split(command)[1:])
        assert json.loads(capsys.readouterr().out) == json.loads(expected), command


def test_tracked_tables_are_rebuilt_byte_for_byte_from_the_tracked_metric_files(tmp_path):
    """What `prunelab table` builds from results/metrics (into a temp dir) is what results/ holds,
    so the README's table, drawn from results/table.md, cannot drift from the metric files."""
    from prunelab import config

    params = config.load_any(ROOT / "params.yaml")
    params["paths"] = {**params["paths"], "metrics": str(ROOT / "results" / "metrics"), "results": str(tmp_path)}
    written = cli.write_table(params)
    assert {"table.md", "table.csv", "comparison.md"} <= set(written)
    compared = []
    for name, path in written.items():
        tracked = ROOT / "results" / name
        if name.endswith(".png") or not tracked.is_file():  # PNG bytes depend on the fonts installed
            continue
        assert path.read_bytes() == tracked.read_bytes(), f"results/{name} differs from what results/metrics gives"
        compared.append(name)
    assert {"table.md", "table.csv", "comparison.md"} <= set(compared)


def metric(kind: str, network: str, key: str, baseline: int = 0) -> float:
    """results/metrics/b<baseline>/<kind>/<network>.json[key], e.g. ('prune', 'chip-r2', 'top1_before_finetune')."""
    return json.loads((ROOT / "results" / "metrics" / f"b{baseline}" / kind / f"{network}.json").read_text())[key]


def page(name: str = "README.md") -> str:
    """The text of README.md or of a documentation page (docs/<page>.md)."""
    return (ROOT / name).read_text()


def numbers(text: str, pattern: str, where: str = "the section") -> tuple[str, ...]:
    """The groups of pattern's match in a text, its line breaks read as spaces."""
    m = re.search(pattern, " ".join(text.split()))
    assert m, f"{where} lacks the sentence matching {pattern!r}"
    return m.groups()


def page_numbers(name: str, pattern: str) -> tuple[str, ...]:
    return numbers(page(name), pattern, name)


def readme_numbers(pattern: str) -> tuple[str, ...]:
    return page_numbers("README.md", pattern)


def check(claims: list[tuple[str, str, float, int]]) -> None:
    """claims: (what, number as the README writes it, value from the metric files, decimals)."""
    drifted = [f"{what}: README says {said}, results/metrics give {value:.{decimals}f}"
               for what, said, value, decimals in claims if said != f"{value:.{decimals}f}"]
    assert not drifted, "README numbers drifted from results/metrics:\n" + "\n".join(drifted)


CRITERIA = ("chip", "hrank", "l1", "random")  # the rate-based ones


def comparison_section(heading: str, folder: str = ".") -> str:
    """The section of <folder>/results/comparison.md under '## <heading>', to the next section."""
    return (ROOT / folder / "results" / "comparison.md").read_text().split(f"## {heading}")[1].split("\n## ")[0]


FASHION = {"fashion": "## ResNet-20 (`fashion/`)", "fashion-alexnet": "## AlexNet at SNPFI's budget (`fashion-alexnet/`)"}


def page_text(name: str, folder: str = ".") -> str:
    """A page's text; on docs/results-fashion.md, only the section of that project."""
    text = page(name)
    if folder in FASHION and name == "docs/results-fashion.md":
        text = text.split(FASHION[folder], 1)[1].split("\n## ", 1)[0]
    return text


@pytest.mark.parametrize("name, folder", [("README.md", "."), ("docs/results-digits.md", "."),
                                          ("docs/results-fashion.md", "fashion"),
                                          ("docs/results-fashion.md", "fashion-alexnet")])
def test_readme_declared_contrasts_are_the_comparison_s(name, folder):
    """The declared contrasts' table is on the page as comparison.md has it; the sentence that
    counts the decided ones names exactly the rows whose verdict is not "not detected" or "no
    interval", and the detectable differences it quotes are the table's smallest and largest."""
    text = page_text(name, folder)
    rows = [line for line in comparison_section("Declared contrasts", folder).splitlines() if re.match(r"\| \w+ − \w+ at ", line)]
    params = yaml.safe_load((ROOT / folder / "params.yaml").read_text())
    assert len(rows) == len(params["compare"]["family"]) == 3
    assert not [r for r in rows if r not in text]
    cells = [[c.strip() for c in r.strip("|").split("|")] for r in rows]
    decided = [f"{c[0]} ({c[6]}: {c[1]} points, Holm p {c[5]})" for c in cells
               if c[6] != "not detected" and not c[6].startswith("no interval")]
    k, n, listed = numbers(text, r"\*\*(\d+) of the (\d+) declared contrasts (?:is|are) decided\*\* \(Holm, 5% family-wise\): ((?:[^.]|\.\d)+)\.")
    assert (int(k), int(n)) == (len(decided), len(rows)) and listed == ("; ".join(decided) or "none")
    detectable = [float(c[7]) for c in cells if c[7] != "–"]
    if len(params["baselines"]) < 2:  # no spread between baselines: no interval, nothing detectable
        assert not detectable and "**One baseline so far.**" in text
        return
    low, high = numbers(text, r"a true difference smaller than ([\d.]+) to ([\d.]+) points")
    check([("smallest detectable difference", low, min(detectable), 2),
           ("largest detectable difference", high, max(detectable), 2)])
    (b,) = numbers(text, r"With (\d+) baselines \(")
    assert int(b) == len(params["baselines"]) and all(c[3] == f"{b} baselines" for c in cells)


def test_readme_side_by_side_rows_are_the_comparison_s():
    """The r2 side-by-side table (top-1 before and after fine-tuning, means over the baselines) and
    the ablation's rows the README quotes are the tracked files' lines."""
    readme = page("docs/results-digits.md")
    block = comparison_section("ResNet-56, setting r2")
    rows = [line for line in block.splitlines() if re.match(r"\| (CHIP|HRank|L1|Random|SNPFI) \| [\d.]+ ± ", line)]
    assert len(rows) == 5 and not [r for r in rows if r not in readme]
    # "Every rate-based criterion ends lowest on baseline 2, whose own top-1 is also the lowest of
    # the three, and SNPFI does not"
    per_baseline = [line for line in block.split("per baseline |")[1].splitlines() if re.match(r"\| \w+ \| [\d.]+ \(", line)]
    assert len(per_baseline) == 5 and not [r for r in per_baseline if r not in readme]
    if "Every rate-based criterion ends lowest on baseline 2" in " ".join(readme.split()):
        after = {r.split(" | ")[0].strip("| "): [float(x) for x in re.findall(r"\| ([\d.]+) \(", r)] for r in per_baseline}
        assert all(after[c][2] == min(after[c]) for c in ("CHIP", "HRank", "L1", "Random"))
        assert after["SNPFI"][2] != min(after["SNPFI"])
        tops = [json.loads((ROOT / "results" / "metrics" / f"b{b}" / "train_baseline.json").read_text())["top1"] for b in range(3)]
        assert tops[2] == min(tops)
    ablation = (ROOT / "results" / "ablation.md").read_text().splitlines()
    quoted = [line for line in readme.splitlines() if re.match(r"\| (\w+ − CHIP, |\w+, (rates|snpfi) widths: |\w+, refit\+bn: )", line)]
    assert len(quoted) >= 4 and not [q for q in quoted if q not in ablation]


def test_readme_ablation_prose_follows_the_ablation():
    """'the refit lifts every ranking from chance to tens of points': every ranking's refit − none,
    at both widths, is at least 20 points; 'SNPFI's Shapley ranking is no better than CHIP's' with
    the same widths and recovery: SNPFI − CHIP is at most 0 at SNPFI's widths and full recovery."""
    text = " ".join(page("docs/results-digits.md").split())
    ablation = (ROOT / "results" / "ablation.md").read_text()

    def points(label: str) -> float:
        return float(re.search(rf"^\| {re.escape(label)} \| (\S+) \|", ablation, re.M).group(1).replace("−", "-"))

    assert "the refit lifts every ranking from chance to tens of points" in text
    assert all(points(f"{name}, {w} widths: refit − none") >= 20 for name in ("CHIP", "HRank", "L1", "Random", "SNPFI")
               for w in ("rates", "snpfi"))
    assert "SNPFI's Shapley ranking is no better than CHIP's" in text
    assert points("SNPFI − CHIP, snpfi widths, refit+bn") <= 0



def test_readme_default_run_and_its_stage_times_are_the_run_record():
    import sys

    sys.path.insert(0, str(ROOT / "tools"))
    from record_run import breakdown

    run = json.loads((ROOT / "results" / "run.json").read_text())
    date, machine, minutes = page_numbers("docs/results-digits.md", r"A full `dvc repro` \(every stage run, as on a fresh clone: `dvc repro "
                                            r"--force`\) ran on (\S+) on (.+?): ([\d.]+) minutes from")
    assert (date, machine, minutes) == (run["date"], run["machine"], f"{run['span_s'] / 60:.1f}")
    assert breakdown(run) in page("docs/results-digits.md")
    (about,) = readme_numbers(r"On a 2-core CPU the pipeline takes about (\d+) minutes once the packages")
    assert about == f"{run['span_s'] / 60:.0f}"


def test_readme_sweep_figures_are_the_sweep_s():
    import csv
    import statistics

    with open(ROOT / "results" / "sweep.csv") as f:
        rows = list(csv.DictReader(f))

    def at(scheme: str, ratio: float, criterion: str) -> list[float]:
        return [float(r["top1_bn_reestimated"]) for r in rows
                if (r["scheme"], float(r["ratio"]), r["criterion"]) == (scheme, ratio, criterion)]

    macs, chip, hrank, l1, random, snpfi = page_numbers("docs/results-digits.md", 
        r"With the inner channels alone at ratio 0\.5 \(([\d.]+)% of the MACs removed\), after BatchNorm re-estimation: "
        r"CHIP ([\d.]+)%, HRank ([\d.]+)%, L1 ([\d.]+)%, random ([\d.]+)% \(one draw\), SNPFI ([\d.]+)%\.")
    draws = at("inner", 0.5, "random")
    assert len(draws) == 1
    chip_macs = next(float(r["macs_reduction_pct"]) for r in rows
                     if (r["scheme"], float(r["ratio"]), r["criterion"]) == ("inner", 0.5, "chip"))
    check([("inner 0.5 MACs removed", macs, chip_macs, 1), ("chip", chip, at("inner", 0.5, "chip")[0], 2),
           ("hrank", hrank, at("inner", 0.5, "hrank")[0], 2), ("l1", l1, at("inner", 0.5, "l1")[0], 2),
           ("random", random, draws[0], 2), ("snpfi", snpfi, at("inner", 0.5, "snpfi")[0], 2)])
    best, snpfi = page_numbers("docs/results-digits.md", r"the best rate-based criterion keeps ([\d.]+)% after BatchNorm re-estimation and "
                                 r"SNPFI ([\d.]+)%")
    check([("r2 best rate-based", best, max(statistics.fmean(at("r2", 0.7, c)) for c in ("chip", "hrank", "l1", "random")), 2),
           ("r2 snpfi", snpfi, at("r2", 0.7, "snpfi")[0], 2)])
    run = json.loads((ROOT / "results" / "run.json").read_text())
    n, seconds, finetune = page_numbers("docs/results-digits.md", r"\*\*Cost:\*\* (\d+) pruned networks, each evaluated twice, no training: "
                                          r"(\d+) s of the run, where one fine-tuning stage \(1 seed × 5 epochs\) takes (\d+) s")
    check([("swept networks", n, len(rows), 0), ("sweep seconds", seconds, run["stages_s"]["sweep"], 0),
           ("mean fine-tuning stage seconds", finetune,
            statistics.fmean(v for k, v in run["stages_s"].items() if k.startswith("finetune@")), 0)])


def test_readme_sensitivity_figures_are_the_sensitivity_stage_s():
    """Baseline 0's sensitivity stage: the slots and rates it measured, the baseline's top-1 on
    the same training images, the rates r2 gives each kind of slot, and the stage's cost per
    baseline."""
    import csv
    import statistics

    info = json.loads((ROOT / "results" / "metrics" / "b0" / "sensitivity.json").read_text())
    with open(ROOT / "results" / "metrics" / "b0" / "sensitivity.csv") as f:
        measured = list(csv.DictReader(f))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert info["auto"] == {} and not [s for s in params["prune"]["settings"].values() if s.startswith("auto:")]
    slots, rates = page_numbers("docs/results-digits.md", r"(\d+) slots\. Each slot is pruned alone at each of "
                                r"`sensitivity.rates` \(([\d., ]+)\) with CHIP's scores")
    assert int(slots) == len({r["slot"] for r in measured})
    assert [float(r) for r in rates.split(", ")] == sorted({float(r["rate"]) for r in measured}) == params["sensitivity"]["rates"]
    (top1,) = page_numbers("docs/results-digits.md", r"The baseline gets ([\d.]+)% of these images right")
    check([("baseline top-1 on the sensitivity images", top1, info["baseline_top1"], 2)])
    run = json.loads((ROOT / "results" / "run.json").read_text())
    n, seconds = page_numbers("docs/results-digits.md", r"\*\*Cost:\*\* (\d+) pruned networks per baseline, each BatchNorm-re-estimated and "
                                r"evaluated once: (\d+) s of the run per baseline")
    check([("sensitivity networks", n, len(measured), 0),
           ("sensitivity seconds", seconds, statistics.fmean(v for k, v in run["stages_s"].items() if k.startswith("sensitivity@")), 0)])


def test_readme_alexnet_and_mobilenet_counts_are_the_counter_s():
    """The counts quoted for SNPFI's networks are what `prunelab count` computes."""
    from prunelab import counting, models

    text = " ".join(page("docs/changing.md").split())
    quoted = re.findall(r"`prunelab count --model (\w+) --input (\d+)x(\d+)x(\d+)` gives ([\d,]+) params and "
                        r"([\d,]+) MACs", text)
    assert len(quoted) == 2, quoted
    for arch, c, h, w, params, macs in quoted:
        counts = counting.count(models.build_model(arch, None, int(c), 10), (int(c), int(h), int(w)))
        assert (counts["params"], counts["macs"]) == (int(params.replace(",", "")), int(macs.replace(",", ""))), arch


def fashion_metric(folder: str, kind: str, network: str, key: str, baseline: int = 0):
    """<folder>/results/metrics/b<baseline>/<kind>/<network>.json[key]"""
    return json.loads((ROOT / folder / "results" / "metrics" / f"b{baseline}" / kind / f"{network}.json").read_text())[key]


def fashion_params(folder: str = "fashion") -> dict:
    return yaml.safe_load((ROOT / folder / "params.yaml").read_text())


def test_readme_fashion_section_is_what_the_files_give():
    """tools/fashion_section.py --check: both sections and the README paragraph were rewritten after the last run."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, str(ROOT / "tools" / "fashion_section.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize(("folder", "model", "setting"), [("fashion", "ResNet-20", "r2"), ("fashion-alexnet", "AlexNet", "f60")])
def test_readme_fashion_tables_are_the_committed_tables(folder, model, setting):
    """Every row of the project's table and of its comparison (declared contrasts, each criterion
    over the baselines and per baseline, every difference) is in its section as committed, the
    declared contrasts in the README too; both say how many baselines are in."""
    text = page_text("docs/results-fashion.md", folder)
    results = ROOT / folder / "results"
    table = [line for line in (results / "table.md").read_text().splitlines() if line.startswith(f"| {model} ")]
    block = comparison_section(f"{model}, setting {setting}", folder)
    compared = [line for line in comparison_section("Declared contrasts", folder).splitlines() + block.splitlines()
                if re.match(rf"\| (CHIP|HRank|L1|Random|SNPFI)( − \w+)?( at {setting})? \|", line)]
    n = len(fashion_params(folder)["baselines"])
    assert len(table) == 5 and len(compared) >= 3 + 5 + 14 + (5 if n > 1 else 0)
    assert not [line for line in table + compared if line not in text]
    assert not [line for line in compared if text.count(line) > 1], "a row is quoted twice"
    declared = [line for line in compared if re.match(r"\| \w+ − \w+ at ", line)]
    assert len(declared) == 3 and not [line for line in declared if line not in page("README.md")]
    (said, planned) = numbers(text, r"\*\*(\d+) of the (\d+) planned baselines (?:is|are) in\*\*")
    assert int(said) == n and int(planned) >= {"fashion": 8, "fashion-alexnet": 5}[folder]
    assert re.search(rf"`{folder}/`: [^*]+\*\*{n} of the {planned} planned baselines (is|are) in\*\*", " ".join(page("README.md").split()))


@pytest.mark.parametrize("folder", ["fashion", "fashion-alexnet"])
def test_readme_fashion_runs_are_dated_and_timed_from_their_run_records(folder):
    """A row per baseline, from the record of the run that added it; every baseline has one."""
    text = page_text("docs/results-fashion.md", folder)
    for b in fashion_params(folder)["baselines"]:
        run = json.loads((ROOT / folder / "results" / f"run-b{b}.json").read_text())
        row = f"| {b} | {run['date']} | {run['machine']} | {run['span_s'] / 60:.0f} | {len(run['stages_s'])} |"
        assert row in text, row
        assert any(k.endswith(f"@{b}") or f"@{b}-" in k for k in run["stages_s"]), f"run-b{b}.json did not run baseline {b}"


def test_readme_fashion_baselines_and_their_anchor():
    import statistics

    params = fashion_params()
    mean, low, high, gap, fraction = page_numbers("docs/results-fashion.md",
        r"\*\*ResNet-20 baselines:\*\* ([\d.]+)% top-1 on the 10,000 test images on average \(([\d.]+)% to ([\d.]+)%\), "
        r"([\d.]+) points below the 95\.6% anchor, after 1/(\d+) of its image-epochs")
    tops = [fashion_metric("fashion", "", "train_baseline", "top1", b) for b in params["baselines"]]
    assert statistics.fmean(tops) >= 90.0, "the Fashion-MNIST baselines must reach 90% top-1 on average"
    image_epochs = params["train"]["epochs"] * params["data"]["train_subset"]
    check([("fashion baselines' mean top-1", mean, statistics.fmean(tops), 2), ("lowest", low, min(tops), 2),
           ("highest", high, max(tops), 2), ("gap to the 95.6% anchor", gap, 95.6 - statistics.fmean(tops), 2),
           ("share of the anchor's 300 x 60,000 image-epochs", fraction, 300 * 60_000 / image_epochs, 0)])


@pytest.mark.parametrize("folder", ["fashion", "fashion-alexnet"])
def test_readme_fashion_ablation_rows_are_the_ablation_s(folder):
    text = page_text("docs/results-fashion.md", folder)
    ablation = (ROOT / folder / "results" / "ablation.md").read_text().splitlines()
    quoted = [line for line in text.splitlines() if re.match(r"\| (\w+ − CHIP, |\w+, (rates|snpfi) widths: |\w+, refit\+bn: )", line)]
    assert len(quoted) >= 4 and not [q for q in quoted if q not in ablation]


@pytest.mark.parametrize("folder", ["fashion", "fashion-alexnet"])
def test_fashion_ablation_reading_follows_the_ablation(folder):
    """'Reading it': each line quotes an ablation row's points and interval, and says 'holds 0',
    'lies above 0' or 'lies below 0' as that interval does."""
    text = page_text("docs/results-fashion.md", folder)
    ablation = {cells[0]: cells[1:3] for line in (ROOT / folder / "results" / "ablation.md").read_text().splitlines()
                if line.startswith("| ") and len(cells := [c.strip() for c in line.strip("|").split("|")]) >= 3}
    read = re.findall(r"^  - (.+): (\S+) points, (\[[^]]+\]); the interval (holds 0|lies above 0|lies below 0)\.$", text, re.M)
    assert len(read) == 5
    labels = {"SNPFI's ranking against CHIP's": "SNPFI − CHIP, rates widths, none",
              "the same two rankings at SNPFI's widths": "SNPFI − CHIP, snpfi widths, refit+bn",
              "the least-squares refit": "CHIP, rates widths: refit − none",
              "SNPFI's recovery": "SNPFI, snpfi widths: refit+bn − none",
              "SNPFI's widths against the rates": "CHIP, refit+bn: SNPFI's widths − the rates"}
    for what, points, interval, side in read:
        (label,) = [row for start, row in labels.items() if what.startswith(start)]
        assert [points, interval] == ablation[label], label
        low, high = (float(x.replace("−", "-")) for x in interval.strip("[]").split(", "))
        assert side == ("holds 0" if low <= 0 <= high else "lies above 0" if low > 0 else "lies below 0"), label


def test_readme_alexnet_figures_are_its_committed_files():
    """The AlexNet section's baselines, SNPFI's widths, sweep and sensitivity figures, each from its file."""
    import csv
    import statistics

    folder, params = "fashion-alexnet", fashion_params("fashion-alexnet")
    text = page_text("docs/results-fashion.md", folder)
    (setting,) = params["prune"]["settings"]
    baselines = params["baselines"]
    tops = [fashion_metric(folder, "", "train_baseline", "top1", b) for b in baselines]
    mean, low, high = numbers(text, r"\*\*AlexNet baselines:\*\* ([\d.]+)% top-1 on the 10,000 test images on average "
                                    r"\(([\d.]+)% to ([\d.]+)%\)")
    reached = [fashion_metric(folder, "prune", f"snpfi-{setting}", "reached_macs_reduction_pct", b) for b in baselines]
    target, least, most = numbers(text, r"for the same MACs reduction \(target ([\d.]+)%; reached ([\d.]+)% to ([\d.]+)% over the baselines\)")
    check([("AlexNet baselines' mean top-1", mean, statistics.fmean(tops), 2), ("lowest", low, min(tops), 2),
           ("highest", high, max(tops), 2),
           ("SNPFI target MACs reduction", target, fashion_metric(folder, "prune", f"snpfi-{setting}", "target_macs_reduction_pct"), 1),
           ("SNPFI least reached", least, min(reached), 1), ("SNPFI most reached", most, max(reached), 1)])
    with open(ROOT / folder / "results" / "sweep.csv") as f:
        sweep = {(float(r["ratio"]), r["criterion"]): r for r in csv.DictReader(f)}
    for ratio in sorted({r for r, _ in sweep}):
        said = numbers(text, rf"at {ratio:g} of every group \(([\d.]+)% of the MACs removed\): CHIP ([\d.]+)%, HRank ([\d.]+)%, "
                             r"L1 ([\d.]+)%, random ([\d.]+)%, SNPFI \(refit\) ([\d.]+)%")
        check([(f"sweep {ratio} MACs removed", said[0], float(sweep[ratio, "chip"]["macs_reduction_pct"]), 1)]
              + [(f"sweep {ratio} {c}", n, float(sweep[ratio, c]["top1_pruned"]), 2)
                 for c, n in zip(("chip", "hrank", "l1", "random", "snpfi"), said[1:])])
    # "the ablation's "bn" columns equal "none"": AlexNet has no BatchNorm to re-estimate
    assert "the ablation's \"bn\" columns equal \"none\"" in text
    for b in baselines:
        with open(ROOT / folder / "results" / "metrics" / f"b{b}" / "ablation.csv") as f:
            top1 = {(r["ranking"], r["widths"], r["recovery"]): r["top1"] for r in csv.DictReader(f)}
        assert all(top1[k, w, "bn"] == top1[k, w, "none"] and top1[k, w, "refit+bn"] == top1[k, w, "refit"]
                   for k, w, _ in top1), b
    with open(ROOT / folder / "results" / "metrics" / "b0" / "sensitivity.csv") as f:
        at_half = {r["groups"]: float(r["top1"]) for r in csv.DictReader(f) if float(r["rate"]) == 0.5}
    weakest, low, strongest, high = numbers(text, r"pruned alone at rate 0\.5, `([^`]+)` keeps the least, ([\d.]+)% of \d+ training "
                                                  r"images, and `([^`]+)` the most, ([\d.]+)%")
    assert at_half[weakest] == min(at_half.values()) and at_half[strongest] == max(at_half.values())
    check([("least kept at 0.5", low, at_half[weakest], 2), ("most kept at 0.5", high, at_half[strongest], 2)])


def test_readme_fashion_sweep_figures_are_its_sweep_s():
    import csv

    with open(ROOT / "fashion" / "results" / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    at = {r["criterion"]: r for r in rows if (r["scheme"], float(r["ratio"])) == ("inner", 0.5)}
    macs, chip, hrank, l1, random, snpfi = page_numbers("docs/results-fashion.md",
        r"with the inner channels alone at ratio 0\.5 \(([\d.]+)% of the MACs removed\), after BatchNorm re-estimation, "
        r"CHIP keeps ([\d.]+)%, HRank ([\d.]+)%, L1 ([\d.]+)%, random ([\d.]+)% \(one draw\) and SNPFI ([\d.]+)%\.")
    check([("fashion inner 0.5 MACs removed", macs, float(at["chip"]["macs_reduction_pct"]), 1)]
          + [(f"fashion inner 0.5 {c}", said, float(at[c]["top1_bn_reestimated"]), 2)
             for c, said in zip(("chip", "hrank", "l1", "random", "snpfi"), (chip, hrank, l1, random, snpfi))])
    most, least = page_numbers("docs/results-fashion.md", r"no rate-based criterion keeps more than ([\d.]+)% at any ratio, even after the "
                                 r"re-estimation, while SNPFI's refit keeps at least ([\d.]+)%")
    r2 = [r for r in rows if r["scheme"] == "r2"]
    check([("fashion r2 best rate-based", most, max(float(r["top1_bn_reestimated"]) for r in r2 if r["criterion"] != "snpfi"), 2),
           ("fashion r2 snpfi lowest", least, min(float(r["top1_bn_reestimated"]) for r in r2 if r["criterion"] == "snpfi"), 2)])


def test_readme_fashion_sensitivity_figures_are_its_sensitivity_s():
    import csv

    with open(ROOT / "fashion" / "results" / "metrics" / "b0" / "sensitivity.csv") as f:
        top1 = {(int(r["slot"]), float(r["rate"])): float(r["top1"]) for r in csv.DictReader(f)}
    info = json.loads((ROOT / "fashion" / "results" / "metrics" / "b0" / "sensitivity.json").read_text())
    stage1, images, stage2, inner, baseline = page_numbers("docs/results-fashion.md",
        r"pruned alone at rate 0\.5, the stage-1 block outputs keep ([\d.]+)% of (\d+) training images and the stage-2 "
        r"outputs ([\d.]+)%, where every inner slot keeps at least ([\d.]+)% \(the baseline: ([\d.]+)%\)")
    check([("stage-1 outputs at 0.5", stage1, top1[1, 0.5], 2), ("images", images, info["images"], 0),
           ("stage-2 outputs at 0.5", stage2, top1[2, 0.5], 2),
           ("lowest inner slot at 0.5", inner, min(v for (slot, rate), v in top1.items() if rate == 0.5 and slot >= 3), 2),
           ("baseline on those images", baseline, info["baseline_top1"], 2)])


def test_readme_numerics_cost_is_the_benchmark_s():
    """The portable numerics' cost, as benchmarks/numerics_cost.py --out results/numerics_cost.json
    measured it."""
    cost = json.loads((ROOT / "results" / "numerics_cost.json").read_text())
    ips = cost["images_per_s"]
    cpu, rounds, steps, native, portable, ratio, onednn, aten, mkl = page_numbers("docs/numerics.md", 
        r"writes `results/numerics_cost.json`\. On ([^.(]+?) \(median of (\d+) rounds of (\d+) steps, 2 threads each\): native (\d+) images/s, portable (\d+), a "
        r"ratio of ([\d.]+)\. Each cap alone: oneDNN's ([\d.]+), ATen's ([\d.]+), MKL's compatible mode ([\d.]+)")
    assert (cpu, int(rounds), int(steps), cost["threads"]) == (cost["cpu"], cost["rounds"], cost["steps"], 2)
    check([("native images/s", native, ips["native"], 0), ("portable images/s", portable, ips["portable"], 0),
           ("portable / native", ratio, cost["portable_over_native"], 2),
           ("oneDNN cap alone", onednn, ips["onednn"] / ips["native"], 2),
           ("ATen cap alone", aten, ips["aten"] / ips["native"], 2),
           ("MKL_CBWR alone", mkl, ips["mkl"] / ips["native"], 2)])


def test_gpu_figures_are_the_benchmark_s():
    """docs/changing.md's GPU paragraph: benchmarks/gpu.sh's figures as results/gpu/ holds them."""
    gpu = ROOT / "results" / "gpu"
    text = " ".join(page("docs/changing.md").split())
    machine = json.loads((gpu / "machine.json").read_text())
    date, name, version = numbers(text, r"\*\*Measured on a GPU once\*\* \((\S+), one (.+?), torch (\S+);")
    assert (date, name, version) == (machine["date"].split()[0], machine["gpu"], machine["torch"])
    plain, compiled = (json.loads((gpu / f).read_text()) for f in ("train_speed.json", "train_speed_compiled.json"))
    assert plain["batch_size"] == compiled["batch_size"] == 256 and compiled["fast"]["compile"] and not plain["fast"]["compile"]
    ips, fast, slow, fast_c, slow_c = numbers(text, r"At batch 256 the fast path trains ResNet-56 at (\d+) images/s, ([\d.]+) s per "
                                                   r"50,000-image epoch, against ([\d.]+) s for the plain path; with `--compile`, "
                                                   r"([\d.]+) s \(plain ([\d.]+) s\)")
    check([("images/s", ips, plain["fast"]["images_per_s"], 0), ("fast epoch", fast, plain["fast"]["epoch_s"], 2),
           ("plain epoch", slow, plain["plain"]["epoch_s"], 2), ("compiled epoch", fast_c, compiled["fast"]["epoch_s"], 2),
           ("plain epoch, second run", slow_c, compiled["plain"]["epoch_s"], 2)])
    graphs = json.loads((gpu / "train_speed_cudagraphs.json").read_text())
    assert graphs["fast"]["compile"] == "reduce-overhead" and graphs["batch_size"] == 256
    epoch_g, ips_g = numbers(text, r"reduce-overhead`, \*\*([\d.]+) s per epoch\*\*, (\d+) images/s")
    check([("CUDA graphs epoch", epoch_g, graphs["fast"]["epoch_s"], 2), ("CUDA graphs images/s", ips_g, graphs["fast"]["images_per_s"], 0)])
    assert (graphs["fast"]["epoch_s"] <= 2) == ("within the target of 2 s" in text)

    def fast_row(name: str) -> tuple[int, float]:
        """(batch, images/s) of a train_speed log's fast row"""
        log = (gpu / name).read_text()
        batch = int(re.search(r", batch (\d+),", log).group(1))
        return batch, float(re.search(r"^fast\s+\S+\s+\S+\s+\S+\s+(\d+)\s", log, re.M).group(1))

    rows = {256: (256, plain["fast"]["images_per_s"]), **{b: fast_row(f"train_speed_bs{b}.txt") for b in (64, 1024)}}
    at256, at64, at1024 = numbers(text, r"A step takes about the same time at any batch size: ([\d.]+) ms at batch 256, "
                                        r"([\d.]+) ms at 64 and ([\d.]+) ms at 1024")
    step_ms = {b: 1000 * batch / ips for b, (batch, ips) in rows.items()}
    check([("step at 256", at256, step_ms[256], 1), ("step at 64", at64, step_ms[64], 1), ("step at 1024", at1024, step_ms[1024], 1)])
    assert max(step_ms.values()) < 1.25 * min(step_ms.values()), "the step time is no longer flat in the batch size"
    profile = (gpu / "step_profile.txt").read_text()
    step = float(re.search(r"train_step, fixed batch: ([\d.]+) ms", profile).group(1))
    gpu_ms = float(re.search(r"Self CUDA time total: ([\d.]+)ms", profile).group(1)) / 10  # 10 profiled steps
    kernels = float(re.search(r"kernels launched per step: ([\d.]+)", profile).group(1))
    said_kernels, busy, wall, epoch = numbers(text, r"a step launches (\d+) kernels and the GPU works ([\d.]+) ms of its ([\d.]+) ms, "
                                                    r"about ([\d.]+) s per epoch at the GPU's own pace")
    check([("kernels per step", said_kernels, kernels, 0), ("GPU ms per step", busy, gpu_ms, 1), ("step ms", wall, step, 1),
           ("epoch at the GPU's own pace", epoch, gpu_ms * (50_000 // 256) / 1000, 1)])
    assert gpu_ms < step / 2, "the host is no longer the limit"
    scoring = (gpu / "ci_speed.txt").read_text()
    ours, faster = re.search(r"ours ([\d.]+) s: (\d+)x faster than naive", scoring).groups()
    assert numbers(text, r"55 layers on 640 images in ([\d.]+) s \(extrapolated\), (\d+)x faster") == (ours, faster)
    passed = re.search(r"(\d+) passed", (gpu / "tests.txt").read_text()).group(1)
    assert "failed" not in (gpu / "tests.txt").read_text() and f"On the H200 all {passed} passed" in text


GENERATED = (".dvc/tmp/", "site/", "models/", "features/", "scores/", "data/", "dvc_plots/", "mlflow.db", ".venv/", ".tools/", "gpu-results/",
             "runs/", "paper/results/", "/mnt/", "s3://", "ssh://", "gs://")
# named in the README but not files of the repository: datasets' own layouts, Debian's copy of
# Fashion-MNIST, an example of a refused value
NOT_FILES = {"MNIST/raw/", "cifar-10-batches-py/", "FashionMNIST/raw/", "/usr/share/datasets/fashion-mnist/", "../x"}


def readme_paths() -> list[str]:
    """The repository files the README and the documentation pages name in backticks: a token with a '/' or a file name's
    extension, braces expanded (`results/table.{md,csv}`), placeholders (<...>, *) skipped."""
    text = "\n".join(page(p.relative_to(ROOT).as_posix()) for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])
    names = set()
    for token in re.findall(r"`([^`\s]+)`", text):
        token = token.rstrip(".,:;)").lstrip("(")
        if "<" in token or "*" in token or "$" in token or "=" in token or token.startswith(("-", "http")):
            continue
        if not ("/" in token or re.search(r"\.(py|md|json|csv|yaml|png|tex|txt|toml|lock|sh)$", token)):
            continue
        m = re.fullmatch(r"(.*)\{([^}]+)\}(.*)", token)
        for part in (m.group(2).split(",") if m else [None]):
            names.add(f"{m.group(1)}{part}{m.group(3)}" if m else token)
    return sorted(n for n in names if not any(g in n for g in GENERATED) and "@" not in n and ":" not in n
                  and n not in NOT_FILES)


def test_every_file_the_readme_names_exists():
    """A path the README gives a reader (a script, a results file, a doc) is in the repository:
    found at the root, or by its name in stages/, prunelab/, tests/, paper/ or results/."""
    missing = []
    for name in readme_paths():
        candidates = [ROOT / name, *(ROOT / d / name for d in ("stages", "prunelab", "tests", "paper", "results"))]
        if not any(c.exists() for c in candidates):
            missing.append(name)
    assert len(readme_paths()) > 40 and not missing, missing


def test_readme_compact_views_fit_120_columns():
    """The README's `dvc exp show` line and its `dvc metrics show` line, run on the tracked
    results as a user's terminal would show them (rich's table, not CSV): no line of either
    wider than 120 columns, and each shows what the README says it shows."""
    import os
    import subprocess

    from helpers import BIN

    readme = (ROOT / "README.md").read_text()
    exp = re.search(r"(?m)^(dvc exp show --drop .*)$", readme).group(1)
    metrics = re.search(r"(?m)^(dvc metrics show \S+)", readme).group(1)
    wide = {**os.environ, "COLUMNS": "1000"}  # rich would otherwise fit (and cut) the table to 80
    for command, expected in ((exp, ["Experiment", "baseline.top1", "chip-r2.top1", "snpfi-r2.top1", "finetune.epochs"]),
                              (metrics, ["Path", "top1", "results/metrics/b0/train_baseline.json"])):
        argv = shlex.split(command)
        r = subprocess.run([str(BIN / argv[0]), *argv[1:], *(["--no-pager"] if "exp" in argv else [])], cwd=ROOT,
                           env=wide, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-1000:]
        widths = [len(line.rstrip()) for line in r.stdout.splitlines()]
        assert widths and max(widths) <= 120, (command, max(widths), r.stdout)
        assert all(word in r.stdout.split() for word in expected), (command, r.stdout)
