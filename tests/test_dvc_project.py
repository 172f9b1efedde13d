"""DVC as its users know it, on a fresh clone of this repository (paper/ included) after
`dvc repro`: repo-wide commands concern the default pipeline only and print no warnings, plots
render offline, and a bad param stops `dvc repro` before any output is removed."""

import json
import re
import subprocess

import pytest

from helpers import ROOT, copy_of, dvc, edit_params, run
from test_pipeline import SMALL, small_clone

NOISE = re.compile(r"WARNING|ERROR|No file hash info|failed to load|paper/", re.IGNORECASE)


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """A copy of the fresh clone with SMALL reproduced (test_pipeline.small_clone), to change."""
    return copy_of(small_clone(tmp_path_factory), tmp_path_factory.mktemp("clone") / "clone")


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
    assert "evaluate@0-resnet110-r2-chip" in paper and "evaluate@0-chip-r1" not in paper


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
    """The README's `dvc exp show` command: the r2 networks' top-1 beside the baseline's and the
    fine-tuning epochs, nothing else."""
    command = re.search(r"^dvc exp show (--drop .*)$", (ROOT / "README.md").read_text(), re.MULTILINE)
    assert command, "README lacks its dvc exp show command"
    args = [a.strip("'") for a in re.findall(r"'[^']*'|\S+", command.group(1))]
    out = quiet(dvc(clone, "exp", "show", "--csv", *args, check=False))
    header = out.splitlines()[0].split(",")
    assert {"chip-r2.top1", "baseline.top1", "finetune.epochs"} <= set(header), header
    assert not {"chip-r1.top1", "chip-r2.top1_std", "chip-r2.top1_before_finetune"} & set(header), header


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
    # one line per seed (not a criterion's seeds joined into one zig-zag), seeds told apart by dash
    curves = facets["setting"]["spec"]["encoding"]
    assert {"field": "seed", "type": "nominal"} in curves["detail"] and curves["strokeDash"]["field"] == "seed"
    assert {"field": "baseline", "type": "nominal"} in curves["detail"]  # and one per baseline, told apart by shape
    assert curves["shape"]["field"] == "baseline" and curves["strokeDash"]["legend"] is None  # a dash legend draws dots
    # the scatter: a colour per criterion, a shape per setting (r2 and auto apart at the same MACs)
    scatter = next(s for s in specs if s.get("layer") and s["layer"][0].get("mark", {}).get("type") == "point")
    assert scatter["layer"][0]["encoding"]["shape"]["field"] == "setting"
    # a criterion has one colour in every plot (the scatter's baseline comes after the five)
    sweep_layers = facets["scheme"]["spec"]["layer"]
    domains = [curves["color"]["scale"]["domain"], scatter["layer"][0]["encoding"]["color"]["scale"]["domain"][:5],
               *(layer["encoding"]["color"]["scale"]["domain"] for layer in sweep_layers)]
    assert all(d == ["chip", "hrank", "l1", "random", "snpfi"] for d in domains), domains
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


def test_on_a_fresh_clone_dry_needs_the_outputs_and_status_answers(clone, tmp_path):
    """README: on a fresh clone (no models, no DVC cache) after a param change, `dvc repro --dry`
    stops at the first stage that reads a model, naming it; `dvc status` answers, naming the
    changed params section."""
    fresh = tmp_path / "fresh"
    run(["git", "clone", "-q", str(clone), str(fresh)], tmp_path)
    edit_params(fresh, **{"finetune.epochs": SMALL["finetune.epochs"] + 1})
    dry = dvc(fresh, "repro", "--dry", check=False)
    assert dry.returncode != 0 and "No such file or directory" in dry.stderr + dry.stdout
    assert "models/b0/baseline.pt" in dry.stderr + dry.stdout
    status = dvc(fresh, "status")
    assert status.returncode == 0 and re.search(r"params.yaml:\n\s+modified:\s+finetune", status.stdout), status.stdout


def test_exp_run_dry_lists_what_a_change_touches(clone):
    # the README's preview after a param change: the stages it touches directly, nothing run;
    # their downstream stages (evaluate, report) are not listed: --dry cannot know outputs change
    edit_params(clone, **{"finetune.epochs": SMALL["finetune.epochs"] + 1})
    dry = quiet(dvc(clone, "repro", "--dry", check=False))
    would_run = set(re.findall(r"Running stage '([^']+)'", dry))
    assert {"finetune@0-chip-r1", "finetune@0-chip-r2"} <= would_run, would_run
    assert not would_run & {"train_baseline@0", "score@0-chip", "prune@0-chip-r1", "evaluate@0-chip-r1"}, would_run
    assert (clone / "models" / "b0" / "finetuned" / "chip-r1").is_dir()  # nothing was run, nothing removed
    run(["git", "checkout", "params.yaml"], clone)


@pytest.mark.slow  # two experiments in DVC's background queue: about 4 minutes (make test-slow, CI)
def test_queued_experiments_log_into_the_workspace_s_store(clone):
    quiet(dvc(clone, "exp", "run", check=False))
    # two queued experiments, two workers: each runs in a copy of the repository under
    # .dvc/tmp/exps/, and both log into the workspace's MLflow store (tracking.uri is relative)
    for name, epochs in (("exp-a", 2), ("exp-b", 3)):
        quiet(dvc(clone, "exp", "run", "--queue", "-n", name, "-S", f"finetune.epochs={epochs}", check=False))
    quiet(dvc(clone, "queue", "start", "-j", "2", check=False))
    for _ in range(900):  # wait for the workers (background processes) to end
        status = dvc(clone, "queue", "status").stdout
        if "Queued" not in status and "Running" not in status:
            break
        subprocess.run(["sleep", "1"], check=True)
    dvc(clone, "queue", "stop", check=False)
    assert status.count("Success") == 2 and "Failed" not in status, status
    import mlflow

    client = mlflow.tracking.MlflowClient(f"sqlite:///{clone / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("prunelab").experiment_id], max_results=1000)
    for name, epochs in (("exp-a", 2), ("exp-b", 3)):
        finetuned = [r for r in runs if r.data.tags.get("dvc_exp_name") == name and r.info.run_name == "finetune@0-chip-r1"]
        assert len(finetuned) == len(SMALL["seeds"]), (name, [r.info.run_name for r in runs])
        assert all(r.info.status == "FINISHED" and r.data.params["finetune.epochs"] == str(epochs) for r in finetuned)
    assert not list((clone / ".dvc" / "tmp").rglob("mlflow.db"))  # no store of its own in a copy


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
    assert "Running stage 'train_baseline@0'" not in r.stdout
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
