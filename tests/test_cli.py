"""The `prunelab` command's own surface: --version, and what `table` says it rewrites."""

import subprocess
import tomllib

from helpers import BIN, ROOT


def test_version_is_the_package_s():
    r = subprocess.run([str(BIN / "prunelab"), "--version"], capture_output=True, text=True, check=True)
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert r.stdout.strip() == f"prunelab {version}"


def test_table_help_names_every_file_it_rewrites():
    r = subprocess.run([str(BIN / "prunelab"), "table", "--help"], capture_output=True, text=True, check=True)
    text = " ".join(r.stdout.split())
    for name in ("table.{md,tex,csv}", "comparison.md", "summary.json", "finetune_curves.csv",
                 "top1_vs_macs.{csv,png}", "Overwrites", "dvc.lock"):
        assert name in text, name
