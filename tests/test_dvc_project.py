"""DVC as its users know it, on a fresh clone of this repository (paper/ included) after
`dvc repro`: repo-wide commands concern the default pipeline only and print no warnings, plots
render offline, and a bad param stops `dvc repro` before any output is removed."""

import json
import re
import shutil
import subprocess

import pytest
import yaml

from helpers import ROOT, dvc, edit_params, run
from test_pipeline import SMALL

NOISE = re.compile(r"WARNING|ERROR|No file hash info|failed to load|paper/", re.IGNORECASE)


def fresh_clone(dst):
    """The repository's files as a clone has them (tracked, and new files not yet committed),
    committed in a new git repo; params shrunk to SMALL and committed, as a user's edit."""
    files = run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], ROOT).stdout.split()
    for f in files:
        if (ROOT / f).is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dst / f)
    run(["git", "init", "-q"], dst)
    run(["git", "add", "-A"], dst)
    run(["git", "commit", "-qm", "clone"], dst)
    params = yaml.safe_load((dst / "params.yaml").read_text())
    params["tracking"]["uri"] = f"sqlite:///{dst / 'mlflow.db'}"
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    edit_params(dst, **SMALL)
    run(["git", "commit", "-qam", "small"], dst)
    return dst


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    project = fresh_clone(tmp_path_factory.mktemp("clone"))
    dvc(project, "repro")
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "reproduced"], project)
    return project


def quiet(r: subprocess.CompletedProcess) -> str:
    """stdout + stderr of a command that must succeed without a warning or a word on paper/."""
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert not NOISE.search(out), out[-3000:]
    return out


def test_paper_is_its_own_dvc_project(clone):
    assert (clone / "paper" / ".dvc" / "config").is_file()
    stages = dvc(clone, "stage", "list", "--name-only").stdout.split()
    assert "check_params" in stages and "mlflow_sync" in stages
    assert not [s for s in stages if "resnet110" in s or "vgg16" in s]  # no paper stage in the root project
    paper = dvc(clone / "paper", "stage", "list", "--name-only").stdout.split()
    assert "evaluate@resnet110-r2-chip" in paper and "evaluate@chip-r1" not in paper


def test_repo_wide_commands_are_clean(clone):
    status = quiet(dvc(clone, "status", check=False))
    # nothing is stale but the stage that always runs
    assert status.split() == ["mlflow_sync:", "always", "changed"], status
    metrics = quiet(dvc(clone, "metrics", "show", check=False))
    assert "summary.json" in metrics and "chip-r1.top1" in metrics
    quiet(dvc(clone, "checkout", check=False))
    shown = quiet(dvc(clone, "exp", "show", "--csv", check=False))
    header = shown.splitlines()[0].split(",")
    # 636 before summary.json and paper/ moved out; now params.yaml's keys (the sensitivity
    # section's among them) and the top-1 per network: a table one can still read
    assert len(header) < 140, len(header)


def test_compact_exp_show_from_the_readme(clone):
    """The README's `dvc exp show` command: top-1 per network beside the params that matter."""
    command = re.search(r"^dvc exp show (--drop .*)$", (ROOT / "README.md").read_text(), re.MULTILINE)
    assert command, "README lacks its dvc exp show command"
    args = [a.strip("'") for a in re.findall(r"'[^']*'|\S+", command.group(1))]
    out = quiet(dvc(clone, "exp", "show", "--csv", *args, check=False))
    header = out.splitlines()[0].split(",")
    assert {"chip-r1.top1", "chip-r2.top1", "top1", "model.arch"} <= set(header), header
    assert len(header) <= 15, header


def test_plots_render_offline(clone):
    quiet(dvc(clone, "plots", "show", check=False))
    page = (clone / "dvc_plots" / "index.html").read_text()
    assert not re.search(r"<script[^>]+src=", page)  # every library inlined: nothing to fetch
    for library in ("vega@5.20.2", "vega-lite@5.2.0", "vega-embed@6.18.2"):
        assert f"<!-- {library}" in page
    # the fine-tuning curves of a setting share one plot: its data holds every network's points
    specs = [json.loads(m) for m in re.findall(r"var spec = (\{.*?\});\s*vegaEmbed\(", page, re.DOTALL)]
    assert len(specs) == 5  # baseline curve, fine-tuning curves, top-1 vs MACs, the sweep, the sensitivity heatmap
    facets = {s["facet"]["column"]["field"]: s for s in specs if s.get("facet")}
    values = facets["setting"]["data"]["values"]  # the fine-tuning curves: every network and seed
    assert {(v["setting"], v["criterion"], v["seed"]) for v in values} == {
        (s, "chip", str(seed)) for s in ("r1", "r2") for seed in SMALL["seeds"]}
    assert len(values) == 2 * len(SMALL["seeds"]) * SMALL["finetune.epochs"]
    sweep = facets["scheme"]["data"]["values"]  # a panel per scheme: every swept network
    assert len(sweep) == len(SMALL["sweep.schemes"]) * len(SMALL["sweep.ratios"])
    heatmap = next(s for s in specs if any(layer.get("mark", {}).get("type") == "rect" for layer in s.get("layer", [])))
    cells = heatmap["data"]["values"]  # a cell per (slot, rate): ResNet-20 has 12 slots
    assert {(c["slot"], c["rate"]) for c in cells} == {(str(i), str(r)) for i in range(12) for r in SMALL["sensitivity.rates"]}
    assert "dvc_plots/" in (ROOT / ".gitignore").read_text().split()


def test_exp_run_dry_and_queued(clone):
    # --dry implies --temp, and a dry run checks out no outputs into the temporary copy: DVC's
    # documented way to list what would run there is --allow-missing (README)
    quiet(dvc(clone, "exp", "run", "--dry", "--allow-missing", check=False))
    quiet(dvc(clone, "exp", "run", check=False))
    quiet(dvc(clone, "exp", "run", "--queue", check=False))
    quiet(dvc(clone, "queue", "start", check=False))
    # wait for the queued experiment (a worker process in the background) to end
    for _ in range(600):
        status = dvc(clone, "queue", "status").stdout
        if "Queued" not in status and "Running" not in status:
            break
        subprocess.run(["sleep", "1"], check=True)
    dvc(clone, "queue", "stop", check=False)
    assert "Success" in status and "Failed" not in status, status


# --- a bad param loses nothing: the check_params stage stops `dvc repro` before any output goes

BAD = {
    "an unknown arch": ({"model.arch": "resnet57"}, "model.arch"),
    "a rate outside [0, 1)": ({"prune.settings.r1": "[0.]+[1.5]*2+[0.4]*9"}, "prune.settings.r1"),
    "a wrong type": ({"train.epochs": "ten"}, "train.epochs"),
    "an unknown key": ({"train.epoch": 3}, "train.epoch"),
    "a missing section": ({"train": None}, "train"),
    "a wrong launcher": ({"engine.launcher": "mpirun -n 2"}, "engine.launcher"),
    "an unknown criterion": ({"prune.criteria": ["chip", "chipp"]}, "prune.criteria"),
    "a tracking server that does not answer": ({"tracking.uri": "http://127.0.0.1:9/"}, "tracking.uri"),
}


def _workspace(project) -> dict:
    """Every output and tracked result of the project: path -> bytes."""
    return {p.relative_to(project).as_posix(): p.read_bytes() for d in ("models", "features", "scores", "results")
            for p in sorted((project / d).rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_param_stops_dvc_repro_and_loses_nothing(clone, case):
    overrides, key = BAD[case]
    before = _workspace(clone)
    original = (clone / "params.yaml").read_text()
    # change a key that re-runs the training too, so without the check its outputs would go first
    edit_params(clone, **{"train.epochs": 1, **overrides})
    try:
        r = dvc(clone, "repro", check=False)
    finally:
        (clone / "params.yaml").write_text(original)
    assert r.returncode != 0
    errors = [line for line in (r.stdout + r.stderr).splitlines() if line.startswith("error: ")]
    if case != "a missing section":  # DVC itself refuses the file first (nothing runs)
        assert len(errors) == 1 and key in errors[0], r.stdout[-2000:] + r.stderr[-2000:]
    assert "Running stage 'train_baseline'" not in r.stdout
    assert _workspace(clone) == before


def test_offline_page_is_built_from_the_npm_packages_dvc_names():
    """The vendored page carries the versions DVC's own renderer loads from its CDN."""
    from dvc_render.vega import VegaRenderer

    page = (ROOT / ".dvc" / "plots" / "offline.html").read_text()
    wanted = re.findall(r"npm/(vega(?:-lite|-embed)?)@([\d.]+)", VegaRenderer.SCRIPTS)
    assert len(wanted) == 3, VegaRenderer.SCRIPTS
    for name, version in wanted:
        assert f"<!-- {name}@{version} " in page
    assert "{plot_divs}" in page and "{scripts}" not in page
