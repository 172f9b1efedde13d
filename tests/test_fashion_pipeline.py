"""fashion/ and fashion-alexnet/: the default pipeline on Fashion-MNIST (a ResNet-20; AlexNet at
SNPFI's budget), each its own DVC project with the default params schema as it is. Here: their
generated files are current, and the whole of fashion/ runs on a few hundred synthetic images
written in the real idx format and read by the real loader."""

import json
import os
import shutil
import sqlite3
import subprocess
import sys

import pytest
import yaml

from helpers import fit_to_overrides, BIN, NUMERICS, ROOT, copy_project, env, set_params
from prunelab import config, synthetic

sys.path.insert(0, str(ROOT / "tools"))
from write_pipelines import PIPELINES, TEMPLATES, derived_dvc_yaml  # noqa: E402

# a few hundred images, one epoch each, its one setting: the wiring, not results. Three criteria,
# one of each kind (CHIP's scores from features, random's per-seed draws, SNPFI's game) and the
# comparison's two references; HRank and L1 run the same code paths as CHIP and random.
SMOKE = {
    "baselines": [0],  # fashion/ lists every baseline committed so far; one is the wiring
    "prune.criteria": ["chip", "random", "snpfi"],
    "data.train_subset": 200,
    "train.epochs": 1,
    "finetune.epochs": 1,
    "features.num_images": 64,
    "features.batch_size": 32,
    "snpfi.calibration_images": 16,
    "snpfi.permutations": 2,
    "latency.repeats": 0,
    # the sensitivity scan and the sweep at one rate on a few images: each stage's wiring, not its
    # curve (their own tests check the curves; at fashion/'s sizes they took 60 of the 170 s)
    "sensitivity.rates": [0.5],
    "sensitivity.images": 64,
    "sensitivity.bn_images": 64,
    "sweep.ratios": [0.5],
    "sweep.bn_images": 64,
}


def keys(d: dict, prefix: str = "") -> set[str]:
    """Every dotted key of a nested mapping."""
    out = set()
    for k, v in d.items():
        out.add(prefix + k)
        if isinstance(v, dict) and k != "settings":  # settings: names of the user's choosing
            out |= keys(v, f"{prefix}{k}.")
    return out


@pytest.mark.parametrize("folder", PIPELINES)
def test_generated_files_are_current(folder):
    assert (ROOT / folder / "dvc.yaml").read_text() == derived_dvc_yaml((ROOT / "dvc.yaml").read_text(), folder), \
        f"{folder}/dvc.yaml is stale: run tools/write_pipelines.py"
    for name in TEMPLATES:
        assert (ROOT / folder / ".dvc" / "plots" / name).read_bytes() == (ROOT / ".dvc" / "plots" / name).read_bytes()


@pytest.mark.parametrize("folder", PIPELINES)
def test_generated_stages_are_the_root_stages_one_folder_up(folder):
    root = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    fashion = yaml.safe_load((ROOT / folder / "dvc.yaml").read_text())["stages"]
    assert list(fashion) == list(root)
    for name, stage in root.items():
        deps = [d if d.startswith("${") else f"../{d}" for d in stage["deps"]]
        assert fashion[name]["deps"] == deps
        assert fashion[name]["cmd"].replace("../stages/", "stages/") == stage["cmd"]
        assert {k: v for k, v in fashion[name].items() if k not in ("cmd", "deps")} == \
               {k: v for k, v in stage.items() if k not in ("cmd", "deps")}


@pytest.mark.parametrize(("folder", "arch"), [("fashion", "resnet20"), ("fashion-alexnet", "alexnet")])
def test_params_are_the_default_schema_with_other_values(folder, arch):
    default = yaml.safe_load((ROOT / "params.yaml").read_text())
    params = yaml.safe_load((ROOT / folder / "params.yaml").read_text())
    assert keys(params) == keys(default)
    checked = config.validate(params)
    assert checked["data"]["name"] == "fashion_mnist" and checked["model"]["arch"] == arch
    assert checked["prune"]["criteria"] == default["prune"]["criteria"]  # every criterion
    assert checked["tracking"]["experiment"] == f"prunelab-{folder}"


def test_alexnet_setting_is_snpfis_budget():
    """fashion-alexnet's one setting removes 60% of the FLOPs (SNPFI's "nearly 60%"), counted."""
    from prunelab import counting, models
    from prunelab.sparsity import parse_sparsity

    params = config.validate(yaml.safe_load((ROOT / "fashion-alexnet" / "params.yaml").read_text()))
    (spec,) = params["prune"]["settings"].values()
    full = counting.count(models.build_model("alexnet", None, 1, 10), (1, 28, 28))
    widths = models.pruned_widths("alexnet", parse_sparsity(spec))
    pruned = counting.count(models.build_model("alexnet", widths, 1, 10), (1, 28, 28))
    reduction = 1 - pruned["flops_paper"] / full["flops_paper"]
    assert 0.60 <= reduction < 0.61, reduction


SHIM = """\
# The test's only change to the real code path: the synthetic files' md5s (recorded in their
# MD5SUMS when written) stand in for the release's, so the loader's md5 check runs on them.
import os
if os.environ.get("FASHION_SYNTHETIC_RAW"):
    import prunelab.data as data
    from pathlib import Path
    _raw = Path(os.environ["FASHION_SYNTHETIC_RAW"])
    data._fashion_release = lambda: {name: md5 for md5, name in
                                     (line.split("  ") for line in (_raw / "MD5SUMS").read_text().splitlines())}
"""


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    project = copy_project(tmp_path_factory.mktemp("fashion-smoke"))
    shutil.copytree(ROOT / "fashion", project / "fashion",
                    ignore=shutil.ignore_patterns("models", "features", "scores", "results", "tmp", "mlflow.db",
                                                  "dvc.lock", "dvc_plots"))
    params = yaml.safe_load((project / "fashion" / "params.yaml").read_text())
    params["tracking"]["uri"] = f"sqlite:///{project / 'fashion' / 'mlflow.db'}"
    set_params(params, {**NUMERICS, **SMOKE})
    fit_to_overrides(params, SMOKE)
    (project / "fashion" / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    raw = synthetic.write_fashion_mnist(project / "data", train=300, test=100)
    (project / "shim").mkdir()
    (project / "shim" / "sitecustomize.py").write_text(SHIM)
    e = env(project)
    e.update(PYTHONPATH=f"{project / 'shim'}{os.pathsep}{project}", FASHION_SYNTHETIC_RAW=str(raw))
    r = subprocess.run([str(BIN / "dvc"), "repro"], cwd=project / "fashion", env=e, capture_output=True, text=True)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    status = subprocess.run([str(BIN / "dvc"), "status"], cwd=project / "fashion", env=e, capture_output=True, text=True)
    return project / "fashion", r.stdout + r.stderr, status.stdout


def test_the_whole_pipeline_runs_on_synthetic_idx_files(smoke):
    fashion, log, status = smoke
    assert status.split() == ["mlflow_sync:", "always", "changed"], status
    record = json.loads((fashion / "results" / "metrics" / "b0" / "evaluate" / "chip-r2.json").read_text())
    assert record["input_shape"] == "1x28x28" and record["test_images"] == 100, record
    table = (fashion / "results" / "table.md").read_text()
    criteria = yaml.safe_load((fashion / "params.yaml").read_text())["prune"]["criteria"]
    assert sum(line.startswith("| ResNet-20 |") for line in table.splitlines()) == len(criteria)
    comparison = (fashion / "results" / "comparison.md").read_text()
    # its setting compared after fine-tuning and before it, over the 100 test images
    assert comparison.count("| CHIP − Random |") == 2 and "100 test images" in comparison
    assert comparison.count("| Difference before fine-tuning |") == 1
    for name in ("top1_vs_macs.png", "finetune_curves.csv", "summary.json"):
        assert (fashion / "results" / name).is_file()


def test_every_stage_is_in_its_own_mlflow_experiment(smoke):
    fashion, log, _ = smoke
    db = sqlite3.connect(fashion / "mlflow.db")
    names = {n for (n,) in db.execute("select r.name from runs r join experiments e on r.experiment_id = e.experiment_id "
                                      "where e.name = 'prunelab-fashion' and r.status = 'FINISHED'")}
    datasets = {n for (n,) in db.execute("select name from datasets")}
    assert {"train_baseline@0", "evaluate@0-chip-r2", "evaluate@0-snpfi-r2", "report"} <= names, names
    assert datasets == {"fashion_mnist-28px"}, datasets
