"""The real DVC pipeline on a small configuration: caching, MLflow, byte-identical tables."""

import json
import re
import subprocess

import pytest

from helpers import BIN, copy_project, dvc, edit_params, env, run

SMALL = {
    "model.arch": "resnet20",
    "train.epochs": 2,
    "finetune.epochs": 1,
    "features.num_images": 64,
    "features.batch_size": 32,
    "prune.settings": {"r1": "[0.]+[0.15]*2+[0.4]*9", "r2": "[0.]+[0.4]*2+[0.5]*3+[0.6]*3+[0.7]*3"},
    "prune.criteria": ["chip"],
    "latency.repeats": 0,  # timings differ between runs; test_latency_is_measured_and_tabulated turns them on
}
ALL_STAGES = {"train_baseline", "extract_features", "score@chip", *(f"{s}@chip-{r}" for s in ("prune", "finetune", "evaluate")
                                                                        for r in ("r1", "r2")), "report"}


def ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def outputs(project):
    """Every tracked result file (metrics, curves, tables) -> bytes."""
    return {p.relative_to(project).as_posix(): p.read_bytes() for p in sorted((project / "results").rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def clean_runs(tmp_path_factory):
    """Two fresh copies with the same params, reproduced side by side (stages are import-bound)."""
    root = tmp_path_factory.mktemp("pipeline")
    copies = [copy_project(root / name, **SMALL) for name in ("a", "b")]
    procs = [subprocess.Popen([str(BIN / "dvc"), "repro"], cwd=c, env=env(c), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for c in copies]
    for proc in procs:
        out = proc.communicate()[0]
        assert proc.returncode == 0, out[-3000:]
        assert ran(out) == ALL_STAGES
    return copies


@pytest.fixture(scope="module")
def project(clean_runs):
    return clean_runs[0]


def test_two_clean_runs_give_identical_bytes(clean_runs):
    """Same seed, same machine: a fresh copy reproduces every metric file and table byte for byte."""
    a, b = (outputs(c) for c in clean_runs)
    assert a.keys() == b.keys() and len(a) >= 9
    assert [k for k in a if a[k] != b[k]] == []
    # checkpoints, features and scores too, so DVC records the same hashes
    for c in clean_runs[1:]:
        assert (c / "dvc.lock").read_text() == (clean_runs[0] / "dvc.lock").read_text()


def test_pipeline_writes_tables_and_metrics(project):
    for name in ("table.md", "table.tex", "table.csv"):
        assert (project / "results" / name).is_file()
    rows = (project / "results" / "table.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("model,criterion,setting,sparsity")
    rec = json.loads((project / "results/metrics/evaluate/chip-r2.json").read_text())
    assert rec["params"] < rec["baseline_params"] and rec["params_reduction_pct"] > 50
    assert not list(project.rglob("*.tmp"))


def test_second_repro_does_nothing(project):
    r = dvc(project, "repro")
    assert ran(r.stdout) == set(), r.stdout
    assert "up to date" in dvc(project, "status").stdout


def test_table_from_mlflow_is_byte_identical(project, tmp_path):
    results = project / "results"
    before = {n: (results / n).read_bytes() for n in ("table.md", "table.tex", "table.csv", "comparison.md",
                                                          "top1_vs_macs.csv", "top1_vs_macs.png")}
    for n in before:
        (results / n).unlink()
    run([str(BIN / "python"), "-m", "prunelab.cli", "table", "--from-mlflow"], project)
    assert {n: (results / n).read_bytes() for n in before} == before


def test_mlflow_has_a_run_per_stage_with_params_metrics_and_tags(project):
    import mlflow

    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    exp = client.get_experiment_by_name("prunelab")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    assert ALL_STAGES <= {r.info.run_name for r in runs}
    ev = next(r for r in runs if r.info.run_name == "evaluate@chip-r1")
    assert {"top1", "loss", "params", "macs", "flops_paper", "params_reduction_pct", "macs_reduction_pct",
            "flops_paper_reduction_pct"} <= set(ev.data.metrics)
    assert {"stage", "model", "criterion", "sparsity", "git_commit"} <= set(ev.data.tags)
    assert ev.data.tags["model"] == "resnet20" and ev.data.tags["sparsity"] == SMALL["prune.settings"]["r1"]
    tb = next(r for r in runs if r.info.run_name == "train_baseline")
    assert tb.data.params["train.epochs"] == "2"
    assert len(client.get_metric_history(tb.info.run_id, "top1")) == 2  # one point per epoch


def test_a_finetune_param_reruns_only_finetune_and_what_follows(project):
    edit_params(project, **{"finetune.epochs": 2})
    stale = set(json.loads(dvc(project, "status", "--json").stdout))
    assert stale == {"finetune@chip-r1", "finetune@chip-r2"}
    r = dvc(project, "repro")
    assert ran(r.stdout) == {"finetune@chip-r1", "finetune@chip-r2", "evaluate@chip-r1", "evaluate@chip-r2", "report"}



def test_latency_is_measured_and_tabulated(project):
    edit_params(project, **{"latency.repeats": 3, "latency.warmup": 1, "latency.batch_sizes": [1, 32]})
    r = dvc(project, "repro")
    assert ran(r.stdout) == {"evaluate@chip-r1", "evaluate@chip-r2", "report"}
    rec = json.loads((project / "results/metrics/evaluate/chip-r2.json").read_text())
    for b in (1, 32):
        base, pruned = rec[f"latency_cpu_b{b}_baseline_ms"], rec[f"latency_cpu_b{b}_pruned_ms"]
        assert 0 < base and 0 < pruned and rec[f"speedup_cpu_b{b}"] == base / pruned
    header = next(line for line in (project / "results/table.md").read_text().splitlines() if line.startswith("| Model"))
    assert header.endswith("| Speed-up, CPU (batch 1 / 32) |")
