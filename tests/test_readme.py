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
