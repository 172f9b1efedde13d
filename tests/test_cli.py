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


def test_every_command_and_stage_prints_its_help(capsys):
    """`prunelab -h`, each subcommand's and each stage script's --help: exit 0 and a usage line.
    (argparse formats help strings with %: a bare one, as in "at 60%", crashed `prunelab --help`.)"""
    import pytest

    from prunelab import cli

    for argv in (["-h"], ["--help"], ["count", "-h"], ["paper-table", "-h"], ["table", "-h"]):
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        assert e.value.code == 0 and capsys.readouterr().out.startswith("usage: prunelab"), argv
    scripts = sorted((ROOT / "stages").glob("*.py"))
    procs = {s.stem: subprocess.Popen([str(BIN / "python"), str(s), "--help"], cwd=ROOT, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True) for s in scripts}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0 and out.startswith("usage:"), f"{name}: {err[-1000:]}"
