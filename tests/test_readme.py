"""Every number in the README comes from the code: its table from results/table.md, its counts
from `prunelab count`."""

import json
import math
import re
import shlex
from pathlib import Path

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
    assert table in (ROOT / "README.md").read_text()
    assert snpfi_counts_table() in (ROOT / "README.md").read_text()
    assert "| ResNet-56 | `[0.]+[0.15]*2+[0.4]*27` | 0.49M (43.1%) |" in table
    assert "65.94M" in table and "34.79M" in table  # CHIP's published flops of its ResNet-56 rows


def test_readme_count_examples_print_what_the_readme_says(capsys):
    readme = (ROOT / "README.md").read_text()
    examples = re.findall(r"^\$ (prunelab count .+)\n(\{.+\})$", readme, flags=re.M)
    assert len(examples) >= 3
    for command, expected in examples:
        cli.main(shlex.split(command)[1:])
        assert json.loads(capsys.readouterr().out) == json.loads(expected), command


def test_readme_states_chip_against_random_before_finetuning_at_r2_from_the_results():
    """Issue: at a high sparsity, top-1 before fine-tuning of CHIP against random, stated honestly."""
    readme = (ROOT / "README.md").read_text()
    m = re.search(r"At r2, before fine-tuning, CHIP keeps ([\d.]+)% top-1 and random ([\d.]+)%: (CHIP beats random|"
                  r"CHIP does not beat random)", readme)
    assert m, "README lacks the CHIP-vs-random statement"
    top1 = {c: json.loads((ROOT / "results" / "metrics" / "prune" / f"{c}-r2.json").read_text())["top1_before_finetune"]
            for c in ("chip", "random")}
    assert (float(m.group(1)), float(m.group(2))) == (round(top1["chip"], 2), round(top1["random"], 2))
    assert m.group(3) == ("CHIP beats random" if top1["chip"] > top1["random"] else "CHIP does not beat random")


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


def metric(kind: str, network: str, key: str) -> float:
    """results/metrics/<kind>/<network>.json[key], e.g. ('prune', 'chip-r1', 'top1_before_finetune')."""
    return json.loads((ROOT / "results" / "metrics" / kind / f"{network}.json").read_text())[key]


def readme_numbers(pattern: str) -> tuple[str, ...]:
    m = re.search(pattern, " ".join((ROOT / "README.md").read_text().split()))  # line breaks as spaces
    assert m, f"README lacks the sentence matching {pattern!r}"
    return m.groups()


def check(claims: list[tuple[str, str, float, int]]) -> None:
    """claims: (what, number as the README writes it, value from the metric files, decimals)."""
    drifted = [f"{what}: README says {said}, results/metrics give {value:.{decimals}f}"
               for what, said, value, decimals in claims if said != f"{value:.{decimals}f}"]
    assert not drifted, "README numbers drifted from results/metrics:\n" + "\n".join(drifted)


CRITERIA = ("chip", "hrank", "l1", "random")  # the rate-based ones


def test_readme_before_finetuning_figures_are_the_prune_metrics():
    for setting in ("r1", "r2"):
        said = readme_numbers(rf"\*\*{setting}:\*\* CHIP ([\d.]+)%, HRank ([\d.]+)%, L1 ([\d.]+)%, random ([\d.]+)%\.")
        check([(f"{c}-{setting} top-1 before fine-tuning", n, metric("prune", f"{c}-{setting}", "top1_before_finetune"), 2)
               for c, n in zip(CRITERIA, said)])


def test_readme_chip_against_random_after_finetuning_is_the_evaluate_metrics():
    from prunelab import config
    from prunelab.data import load_dataset

    gap, chip, random, n_test, images, ci, verdict = readme_numbers(
        r"After fine-tuning, CHIP − random at r2 is ([+-][\d.]+) points \(([\d.]+) against ([\d.]+)\)\. On (\d+) "
        r"test images that is\s+(\d+) images?; paired over them, its 95% CI is (\[[^]]+\]): ([^,.]+)")
    block = (ROOT / "results" / "comparison.md").read_text().split("setting r2:")[1]
    row = re.search(r"\| CHIP − Random \| \S+ \| (\[[^]]+\]) \| [^|]+ \| ([^|]+) \|", block)
    assert (ci, verdict) == (row.group(1), row.group(2).strip())
    top1 = {c: metric("evaluate", f"{c}-r2", "top1") for c in ("chip", "random")}
    p = config.load_any(ROOT / "params.yaml")
    assert p["data"]["name"] == "digits"
    test_images = len(load_dataset("digits", ROOT / "data", False, p["seed"], p["data"]["image_size"],
                                   p["data"]["test_fraction"]).y_test)
    difference = top1["chip"] - top1["random"]
    check([("chip-r2 top-1", chip, top1["chip"], 2), ("random-r2 top-1", random, top1["random"], 2),
           ("digits test images", n_test, test_images, 0),
           ("images between chip and random at r2", images, abs(difference) * test_images / 100, 0)])
    assert gap == f"{difference:+.2f}", f"CHIP - random at r2: README says {gap}, results/metrics give {difference:+.2f}"


def test_readme_snpfi_widths_and_recovery_figures_are_the_prune_metrics():
    reached1, reached2, target1, target2 = readme_numbers(
        r"for the same MACs reduction \(([\d.]+)% and ([\d.]+)%; the targets were ([\d.]+)% and ([\d.]+)%\)")
    check([("snpfi-r1 reached MACs reduction", reached1, metric("prune", "snpfi-r1", "reached_macs_reduction_pct"), 1),
           ("snpfi-r2 reached MACs reduction", reached2, metric("prune", "snpfi-r2", "reached_macs_reduction_pct"), 1),
           ("snpfi-r1 target MACs reduction", target1, metric("prune", "snpfi-r1", "target_macs_reduction_pct"), 1),
           ("snpfi-r2 target MACs reduction", target2, metric("prune", "snpfi-r2", "target_macs_reduction_pct"), 1)])
    stages = ("top1_before_recovery", "top1_after_refit", "top1_before_finetune")
    r1 = readme_numbers(r"- r1: ([\d.]+)% right after pruning, ([\d.]+)% after the least-squares refit, ([\d.]+)% "
                        r"after the BatchNorm re-estimation")
    r2 = readme_numbers(r"- r2: ([\d.]+)%, then ([\d.]+)%, then ([\d.]+)%\.")
    check([(f"snpfi-{s} {k}", said, metric("prune", f"snpfi-{s}", k), 2)
           for s, numbers in (("r1", r1), ("r2", r2)) for k, said in zip(stages, numbers)])
    # "above every rate-based criterion before fine-tuning": its lowest against their highest
    lowest, highest = readme_numbers(r"its lowest, ([\d.]+)%, against their highest, ([\d.]+)%")
    snpfi = min(metric("prune", f"snpfi-{s}", "top1_before_finetune") for s in ("r1", "r2"))
    others = max(metric("prune", f"{c}-{s}", "top1_before_finetune") for c in CRITERIA for s in ("r1", "r2"))
    check([("snpfi's lowest top-1 before fine-tuning", lowest, snpfi, 2),
           ("the rate-based criteria's highest top-1 before fine-tuning", highest, others, 2)])
    assert snpfi > others
    after1, after2 = readme_numbers(r"After fine-tuning, SNPFI ends at ([\d.]+)% at r1 and ([\d.]+)% at r2")
    check([("snpfi-r1 top-1", after1, metric("evaluate", "snpfi-r1", "top1"), 2),
           ("snpfi-r2 top-1", after2, metric("evaluate", "snpfi-r2", "top1"), 2)])


def test_readme_worst_drop_from_the_baseline_is_the_evaluate_metrics():
    (within,) = readme_numbers(r"Every criterion recovers to within ([\d.]+) points of the baseline")
    files = sorted((ROOT / "results" / "metrics" / "evaluate").glob("*.json"))
    drops = [json.loads(f.read_text()) for f in files]
    worst = max(r["baseline_top1"] - r["top1"] for r in drops)
    check([("largest drop from the baseline, rounded up to 0.1", within, math.ceil(worst * 10) / 10, 1)])


def test_readme_alexnet_and_mobilenet_counts_are_the_counter_s():
    """The counts quoted for SNPFI's networks are what `prunelab count` computes."""
    from prunelab import counting, models

    text = " ".join((ROOT / "README.md").read_text().split())
    quoted = re.findall(r"`prunelab count --model (\w+) --input (\d+)x(\d+)x(\d+)` gives ([\d,]+) params and "
                        r"([\d,]+) MACs", text)
    assert len(quoted) == 2, quoted
    for arch, c, h, w, params, macs in quoted:
        counts = counting.count(models.build_model(arch, None, int(c), 10), (int(c), int(h), int(w)))
        assert (counts["params"], counts["macs"]) == (int(params.replace(",", "")), int(macs.replace(",", ""))), arch


FASHION = ("fashion", "fashion-alexnet")


def test_readme_fashion_tables_are_the_committed_tables():
    """Every row of each Fashion-MNIST pipeline's table and of its criteria differences is in the
    README as committed in <pipeline>/results/."""
    readme = (ROOT / "README.md").read_text()
    for folder in FASHION:
        results = ROOT / folder / "results"
        rows = [line for line in (results / "table.md").read_text().splitlines() if line.startswith("| ")]
        differences = [line for line in (results / "comparison.md").read_text().splitlines()
                       if re.match(r"\| \w+ − \w+ \|", line)]
        assert rows and differences, folder
        missing = [line for line in rows + differences if line not in readme]
        assert not missing, f"README lacks {folder}'s rows: {missing}"


def test_readme_fashion_runs_are_dated_and_timed_from_their_run_records():
    text = " ".join((ROOT / "README.md").read_text().split())
    for folder in FASHION:
        run = json.loads((ROOT / folder / "results" / "run.json").read_text())
        m = re.search(rf"`{folder}/` ran on (\d{{4}}-\d\d-\d\d) on (.+?), in (\d+) minutes", text)
        assert m, f"README lacks the run sentence of {folder}/"
        assert m.groups() == (run["date"], run["machine"], f"{run['span_s'] / 60:.0f}"), folder


def fashion_metric(folder: str, kind: str, network: str, key: str):
    return json.loads((ROOT / folder / "results" / "metrics" / kind / f"{network}.json").read_text())[key]


def test_readme_fashion_baseline_and_its_anchor():
    from prunelab import config

    params = config.load_any(ROOT / "fashion" / "params.yaml")
    top1, gap, fraction = readme_numbers(
        r"\*\*ResNet-20 baseline:\*\* ([\d.]+)% top-1 on the 10,000 test images, ([\d.]+) points below the 95\.6% "
        r"anchor, after 1/(\d+) of its image-epochs")
    baseline = json.loads((ROOT / "fashion" / "results" / "metrics" / "train_baseline.json").read_text())["top1"]
    assert baseline >= 90.0, "the Fashion-MNIST baseline must reach 90% top-1"
    image_epochs = params["train"]["epochs"] * params["data"]["train_subset"]
    check([("fashion baseline top-1", top1, baseline, 2), ("gap to the 95.6% anchor", gap, 95.6 - baseline, 2),
           ("share of the anchor's 300 x 60,000 image-epochs", fraction, 300 * 60_000 / image_epochs, 0)])


def test_readme_fashion_chip_against_random_is_the_comparison():
    """The README's verdict on CHIP against random is the comparison's, word for word."""
    text = " ".join((ROOT / "README.md").read_text().split())
    comparison = (ROOT / "fashion" / "results" / "comparison.md").read_text()
    for setting, block in re.findall(r"## ResNet-20, setting (\w+):(.*?)(?=\n## |\Z)", comparison, re.S):
        row = re.search(r"\| CHIP − Random \| (\S+) \| (\[[^]]+\]) \| [^|]+ \| ([^|]+) \|", block)
        said = re.search(rf"At {setting}, CHIP − random is (\S+) points \(95% CI (\[[^]]+\])\): ([^.;]+)[.;]", text)
        assert row and said, setting
        assert said.groups() == (row.group(1), row.group(2), row.group(3).strip()), setting


def fashion_blocks(folder: str = "fashion") -> dict[str, str]:
    """{setting: its section of <folder>/results/comparison.md}"""
    text = (ROOT / folder / "results" / "comparison.md").read_text()
    return dict(re.findall(r"## [^,\n]+, setting (\w+):(.*?)(?=\n## |\Z)", text, re.S))


def verdict(block: str, label: str, before: bool = False) -> str:
    """The verdict of `label` in a setting's difference table after fine-tuning (or before)."""
    table = block.split("| Difference before fine-tuning |")[1 if before else 0]
    return re.search(rf"\| {label} \| \S+ \| \S+, \S+ \| [^|]+ \| ([^|]+) \|", table).group(1).strip()


def test_readme_fashion_prose_follows_the_verdicts():
    """The sentences that summarise fashion/'s comparison say what its verdicts say."""
    text = " ".join((ROOT / "README.md").read_text().split())
    blocks = fashion_blocks()
    chip_beats = [s for s, b in blocks.items() if verdict(b, "CHIP − Random") == "CHIP better"]
    assert ("CHIP does not beat random at these settings after fine-tuning" in text) == (not chip_beats)
    if "SNPFI, which picks its own widths" in text:
        ahead = re.search(r"stays ahead of random and CHIP at (\w+) after fine-tuning", text).group(1)
        assert verdict(blocks[ahead], "SNPFI − Random") == "SNPFI better"
        assert verdict(blocks[ahead], "SNPFI − CHIP") == "SNPFI better"
    if "before fine-tuning, HRank is ahead of random and of CHIP at both settings" in text:
        for b in blocks.values():
            assert verdict(b, "HRank − Random", before=True) == verdict(b, "HRank − CHIP", before=True) == "HRank better"
    if "the lead is gone after fine-tuning" in text:
        assert not any(verdict(b, "HRank − Random") == "HRank better" or verdict(b, "HRank − CHIP") == "HRank better"
                       for b in blocks.values())
    (n,) = readme_numbers(r"(\d+) intervals at 95% each")
    assert int(n) == sum(len(re.findall(r"^\| \w+ − \w+ \|", b, re.M)) for b in blocks.values())
    # before fine-tuning, r1, and SNPFI's two starting points
    said = readme_numbers(r"\(r1: CHIP ([\d.]+)%, HRank ([\d.]+)%, L1 ([\d.]+)%, random ([\d.]+)%\)")
    snpfi = readme_numbers(r"SNPFI, which picks its own widths and recovers without training, starts at ([\d.]+)% "
                           r"\(r1\) and ([\d.]+)% \(r2\)")
    check([(f"fashion {c}-r1 before fine-tuning", n, fashion_metric("fashion", "prune", f"{c}-r1", "top1_before_finetune"), 2)
           for c, n in zip(("chip", "hrank", "l1", "random"), said)]
          + [(f"fashion snpfi-{s} before fine-tuning", n, fashion_metric("fashion", "prune", f"snpfi-{s}", "top1_before_finetune"), 2)
             for s, n in zip(("r1", "r2"), snpfi)])


def test_readme_fashion_stage_times_are_the_run_record():
    run = json.loads((ROOT / "fashion" / "results" / "run.json").read_text())
    baseline, finetune = readme_numbers(r"the baseline (\d+), the ten fine-tunings (\d+),")
    check([("fashion baseline minutes", baseline, run["stages_s"]["train_baseline"] / 60, 0),
           ("fashion fine-tuning minutes", finetune,
            sum(v for k, v in run["stages_s"].items() if k.startswith("finetune@")) / 60, 0)])


def test_readme_alexnet_figures_are_its_committed_files():
    (setting, block), = fashion_blocks("fashion-alexnet").items()
    row = re.search(r"\| CHIP − Random \| (\S+) \| (\[[^]]+\]) \| [^|]+ \| ([^|]+) \|", block)
    text = " ".join((ROOT / "README.md").read_text().split())
    said = re.search(rf"At {setting}, AlexNet's CHIP − random is (\S+) points \(95% CI (\[[^]]+\])\): ([^.]+)\.", text)
    assert said and said.groups() == (row.group(1), row.group(2), row.group(3).strip())
    before = re.search(r"\| CHIP − Random \| (\S+) \| (\[[^]]+\]) \| [^|]+ \| ([^|]+) \|",
                       block.split("| Difference before fine-tuning |")[1])
    said = re.search(r"there, AlexNet's CHIP − random is (\S+) points \(95% CI (\[[^]]+\])\): ([^.]+)\.", text)
    assert said and said.groups() == (before.group(1), before.group(2), before.group(3).strip())
    (top1,) = readme_numbers(r"\*\*AlexNet baseline:\*\* ([\d.]+)% top-1 on the 10,000 test images")
    reached, target = readme_numbers(r"for the same MACs reduction \(([\d.]+)% reached, target ([\d.]+)%\)")
    before = readme_numbers(r"Before fine-tuning: CHIP ([\d.]+)%, HRank ([\d.]+)%, L1 ([\d.]+)%, random ([\d.]+)%, "
                            r"SNPFI ([\d.]+)%")
    baseline = json.loads((ROOT / "fashion-alexnet" / "results" / "metrics" / "train_baseline.json").read_text())["top1"]
    check([("AlexNet baseline top-1", top1, baseline, 2),
           ("AlexNet SNPFI reached MACs reduction", reached,
            fashion_metric("fashion-alexnet", "prune", f"snpfi-{setting}", "reached_macs_reduction_pct"), 1),
           ("AlexNet SNPFI target MACs reduction", target,
            fashion_metric("fashion-alexnet", "prune", f"snpfi-{setting}", "target_macs_reduction_pct"), 1)]
          + [(f"AlexNet {c} before fine-tuning", n,
              fashion_metric("fashion-alexnet", "prune", f"{c}-{setting}", "top1_before_finetune"), 2)
             for c, n in zip(("chip", "hrank", "l1", "random", "snpfi"), before)])
