"""The `prunelab` command's own surface: --version, and what `table` says it rewrites."""

import json
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


def test_every_command_and_stage_prints_its_help(capsys, tmp_path):
    """`prunelab -h`, each subcommand's and each stage script's --help: exit 0 and a usage line.
    (argparse formats help strings with %: a bare one, as in "at 60%", crashed `prunelab --help`.)"""
    import pytest

    from prunelab import cli

    for argv in (["-h"], ["--help"], ["count", "-h"], ["paper-table", "-h"], ["table", "-h"], ["check", "-h"]):
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        assert e.value.code == 0 and capsys.readouterr().out.startswith("usage: prunelab"), argv
    # each stage script as `python stages/<name>.py --help` runs it (as __main__, argv its own),
    # all in one fresh process: torch is imported once, not once per script (30 s of CPU). In a
    # folder without params.yaml: the numerics check, which can run once per process, is skipped
    scripts = sorted((ROOT / "stages").glob("*.py"))
    r = subprocess.run([str(BIN / "python"), "-c", HELP_OF_EACH, *map(str, scripts)], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    answers = json.loads(r.stdout.splitlines()[-1])
    assert list(answers) == [s.stem for s in scripts]
    for name, (code, out) in answers.items():
        assert code == 0 and out.startswith("usage:"), f"{name}: exit {code}: {out[-1000:]}"


HELP_OF_EACH = """
import contextlib, io, json, runpy, sys
answers = {}
for path in sys.argv[1:]:
    sys.argv, out = [path, "--help"], io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            runpy.run_path(path, run_name="__main__")
            code = 0
        except SystemExit as e:
            code = e.code
    answers[path.rsplit("/", 1)[-1][:-3]] = (code, out.getvalue())
print(json.dumps(answers))
"""


def test_check_names_the_key_dvcs_templating_would_choke_on(tmp_path):
    """prune.criteria: chip (a string, not a list) makes DVC's expansion of dvc.yaml fail with
    "'Value' object is not iterable", naming no key, before any stage runs; `prunelab check`
    (which `make repro` and `make pull` run before DVC) names the key and the culprit, exit 2.
    A misspelled criterion is singled out, and the allowed list is whole."""
    import re

    import yaml

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    cases = {"chip": "got 'chip' (a string, not a list)",
             "[chip, hrnak]": "got ['chip', 'hrnak'] ('hrnak' is not allowed)"}
    for value, culprit in cases.items():
        text = (ROOT / "params.yaml").read_text()
        text = re.sub(r"(?m)^  criteria: \[[^\]]*\]", f"  criteria: {value}", text, count=1)
        assert text != (ROOT / "params.yaml").read_text()
        (tmp_path / "params.yaml").write_text(text)
        r = subprocess.run([str(BIN / "prunelab"), "check", "--params", str(tmp_path / "params.yaml")],
                           capture_output=True, text=True)
        assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
        assert r.stderr == ("error: prune.criteria: must be a non-empty list of distinct criteria; allowed: "
                            f"chip, hrank, l1, random, snpfi, {culprit}\n"), r.stderr
    assert params["prune"]["criteria"]  # the default file itself passes
    ok = subprocess.run([str(BIN / "prunelab"), "check"], cwd=ROOT, capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout == "params.yaml: passed\n", ok.stderr
    makefile = (ROOT / "Makefile").read_text()
    for target in ("repro", "pull"):  # the check runs before the target's dvc command
        recipe = re.search(rf"(?m)^{target}:.*\n((?:\t.*\n)+)", makefile).group(1)
        assert recipe.index("prunelab check --params params.yaml") < recipe.index("dvc repro"), target
