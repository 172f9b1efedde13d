"""Every number in the README comes from the code: its table from results/table.md, its counts
from `prunelab count`."""

import json
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
    from prunelab.paper import counts_table

    table = counts_table()
    assert table in (ROOT / "README.md").read_text()
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
