"""The real DVC pipeline on a small configuration: caching, MLflow, byte-identical tables."""

import json
import os
import re
import subprocess

import numpy as np
import pytest

from helpers import BIN, ROOT, built_once, copy_of, copy_project, dvc, edit_params, env, fresh_clone, run

SMALL = {
    # the mode users get (params.yaml's default), which the reproductions below then check
    "engine.cpu_numerics": "portable",
    "model.arch": "resnet20",
    "train.epochs": 2,
    "finetune.epochs": 1,
    "features.num_images": 64,
    "features.batch_size": 32,
    "prune.settings": {"r1": "[0.]+[0.15]*2+[0.4]*9", "r2": "[0.]+[0.4]*2+[0.5]*3+[0.6]*3+[0.7]*3"},
    "prune.criteria": ["chip"],
    "latency.repeats": 0,  # timings differ between runs; test_latency_is_measured_and_tabulated turns them on
    "baselines": [0],  # one baseline (test_a_baseline_added_later_runs_only_its_own_stages adds one)
    "seeds": [0, 1],  # two fine-tuning runs per network
    "sweep.schemes": ["inner", "r2"],
    "sweep.ratios": [0.5, 0.9],
    "sweep.bn_images": 64,
    "sensitivity.rates": [0.4, 0.7],
    "sensitivity.images": 64,
    "sensitivity.bn_images": 64,
}
ALL_STAGES = {"check_params", "train_baseline@0", "extract_features@0", "score@0-chip", "sensitivity@0", "ablation@0",
              *(f"{s}@0-chip-{r}" for s in ("prune", "finetune", "evaluate") for r in ("r1", "r2")), "sweep", "report",
              "mlflow_sync"}
LIVE = ("train_baseline", "finetune")  # the training stages log their own runs; mlflow_sync builds the others


def ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def outputs(project):
    """Every tracked result file (metrics, curves, tables) -> bytes."""
    return {p.relative_to(project).as_posix(): p.read_bytes() for p in sorted((project / "results").rglob("*"))
            if p.is_file()}


def reproduced(path, make) -> None:
    """make(path), then `dvc repro` there: every stage runs."""
    make(path)
    r = dvc(path, "repro")
    assert ran(r.stdout) == ALL_STAGES, r.stdout[-3000:]


def small_project(tmp_path_factory):
    """SMALL reproduced in a copy of the project's code (built once per session; read only)."""
    return built_once(tmp_path_factory, "small", lambda p: reproduced(p, lambda p: copy_project(p, **SMALL)))


def small_clone(tmp_path_factory):
    """SMALL reproduced in a fresh clone of the whole repository (paper/ and fashion/ included),
    committed: what tests/test_dvc_project.py runs DVC's own commands on (built once; read only)."""
    def make(p):
        reproduced(p, lambda p: fresh_clone(p, **SMALL))
        run(["git", "add", "-A"], p)
        run(["git", "commit", "-qm", "reproduced"], p)
    return built_once(tmp_path_factory, "small-clone", make)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A copy of the reproduced SMALL project for this module's tests to change."""
    return copy_of(small_project(tmp_path_factory), tmp_path_factory.mktemp("pipeline") / "project")


def test_two_clean_runs_give_identical_bytes(tmp_path_factory):
    """Same seed, same machine: two fresh reproductions (a copy of the code, a clone of the
    repository) give every metric file and table byte for byte, and the same dvc.lock file hashes:
    the same checkpoints, features and scores."""
    import yaml

    a, b = small_project(tmp_path_factory), small_clone(tmp_path_factory)
    ours, theirs = outputs(a), outputs(b)  # the clone's results/ also holds the repository's own files
    assert len(ours) >= 9 and [k for k in ours if theirs.get(k) != ours[k]] == []

    def lock(c) -> dict:
        """Each stage's file deps and outs with their md5s, and its params. A folder's hash is left
        out: it also counts what else the folder holds (DVC's own .gitignore in a copy's scores/,
        the repository's committed records in a clone's results/), whose files are compared above."""
        stages = yaml.safe_load((c / "dvc.lock").read_text())["stages"]
        return {name: {"params": entry.get("params"),
                       **{part: {d["path"]: d["md5"] for d in entry.get(part, []) if not d["md5"].endswith(".dir")}
                          for part in ("deps", "outs")}}
                for name, entry in stages.items()}

    lock_a, lock_b = lock(a), lock(b)  # the clone's lock also keeps the repository's entries of other networks
    assert len(lock_a) >= 10 and lock_a == {name: lock_b.get(name) for name in lock_a}


def test_pipeline_writes_tables_and_metrics(project):
    for name in ("table.md", "table.tex", "table.csv"):
        assert (project / "results" / name).is_file()
    rows = (project / "results" / "table.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("model,criterion,setting,sparsity")
    rec = json.loads((project / "results/metrics/b0/evaluate/chip-r2.json").read_text())
    assert rec["params"] < rec["baseline_params"] and rec["params_reduction_pct"] > 50
    assert not list(project.rglob("*.tmp"))


def test_evaluate_records_which_test_images_each_network_gets_right(project):
    """The per-image bits the comparison pairs networks by: as many as test images, and their
    share of ones is the network's top-1."""
    from prunelab import correctness

    for net in ("chip-r1", "chip-r2"):
        rec = json.loads((project / f"results/metrics/b0/evaluate/{net}.json").read_text())
        assert rec["test_images"] == 360  # digits' stratified 20% hold-out
        per_seed = rec["test_correct_per_seed"].split()
        assert rec["seeds"] == "0 1" and len(per_seed) == 2
        for bits, top1 in zip(per_seed, rec["top1_per_seed"].split()):
            assert 100 * correctness.decode(bits, 360).mean() == pytest.approx(float(top1), abs=0.005)
        assert 100 * np.mean([correctness.decode(b, 360).mean() for b in per_seed]) == pytest.approx(rec["top1"])
        # before fine-tuning: the prune stage's bits (chip: one network, once per seed), carried on
        pruned = json.loads((project / f"results/metrics/b0/prune/{net}.json").read_text())
        a, b = pruned["test_correct_before_finetune"].split()
        assert a == b and rec["test_correct_before_finetune"] == pruned["test_correct_before_finetune"]
        assert 100 * correctness.decode(a, 360).mean() == pytest.approx(pruned["top1_before_finetune"], abs=1e-9)
    table = (project / "results" / "table.csv").read_text()
    assert "test_correct_per_seed" not in table and "test_correct_before_finetune" not in table


def test_record_run_gives_each_stage_its_time(project):
    """tools/record_run.py: date, machine and per-stage times from when each stage wrote its
    outputs; the stages' times add up to the span, and each is at least what its MLflow run took."""
    r = run([str(BIN / "python"), str(ROOT / "tools" / "record_run.py"), str(project)], project)
    record_file = project / "results" / "run.json"
    try:
        record = json.loads(record_file.read_text())
    finally:
        record_file.unlink()
    assert "min from" in r.stdout
    assert set(record["stages_s"]) == ALL_STAGES - {"check_params", "mlflow_sync"}
    assert sum(record["stages_s"].values()) == pytest.approx(record["span_s"], abs=0.1 * len(record["stages_s"]))
    assert record["stages_s"]["train_baseline@0"] > 0 and re.fullmatch(r"\d{4}-\d\d-\d\d", record["date"])
    tb = next(r for r in _runs_by_stage(project)["train_baseline@0"] if "restored_from" not in r.data.tags)
    assert record["stages_s"]["train_baseline@0"] >= (tb.info.end_time - tb.info.start_time) / 1000 - 0.5
    assert "CPUs" in record["machine"]

    # a later run (one that added a baseline) re-runs check_params and only some stages: the
    # record holds those that ended after check_params, the rest belong to an earlier run
    check = project / "results" / "params_check.txt"
    stamp = check.stat().st_mtime
    later = (project / "results" / "table.md").stat().st_mtime - 0.001  # the report and what followed it
    os.utime(check, (later, later))
    try:
        r = run([str(BIN / "python"), str(ROOT / "tools" / "record_run.py"), str(project), "--name", "run-b9.json"], project)
        part = json.loads((project / "results" / "run-b9.json").read_text())
    finally:
        os.utime(check, (stamp, stamp))
        (project / "results" / "run-b9.json").unlink(missing_ok=True)
    assert "report" in part["stages_s"] and "train_baseline@0" not in part["stages_s"]
    assert len(part["stages_s"]) < len(record["stages_s"]) and f"{len(part['stages_s'])} stages" in r.stdout
    assert part["span_s"] == pytest.approx(sum(part["stages_s"].values()), abs=0.1 * len(part["stages_s"]))


def test_second_repro_does_nothing(project):
    """Nothing re-runs but mlflow_sync, which always runs and finds every run in place."""
    r = dvc(project, "repro")
    assert ran(r.stdout) == {"mlflow_sync"}, r.stdout
    assert "runs kept" in r.stdout and " 0 linked" in r.stdout and " 0 restored" in r.stdout, r.stdout
    assert dvc(project, "status").stdout.split() == ["mlflow_sync:", "always", "changed"]


def test_table_from_mlflow_is_byte_identical(project, tmp_path):
    results = project / "results"
    before = {n: (results / n).read_bytes() for n in ("table.md", "table.tex", "table.csv", "comparison.md",
                                                          "summary.json", "finetune_curves.csv", "top1_vs_macs.csv",
                                                          "top1_vs_macs.png", "latency.md", "latency.csv")}
    for n in before:
        (results / n).unlink()
    run([str(BIN / "python"), "-m", "prunelab.cli", "table", "--from-mlflow"], project)
    assert {n: (results / n).read_bytes() for n in before} == before


def test_mlflow_has_a_run_per_stage_with_params_metrics_and_tags(project):
    import mlflow

    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    exp = client.get_experiment_by_name("prunelab")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    assert ALL_STAGES - {"mlflow_sync"} <= {r.info.run_name for r in runs}  # mlflow_sync writes no result
    ev = next(r for r in runs if r.info.run_name == "evaluate@0-chip-r1")
    assert {"top1", "loss", "params", "macs", "flops_paper", "params_reduction_pct", "macs_reduction_pct",
            "flops_paper_reduction_pct"} <= set(ev.data.metrics)
    assert {"stage", "model", "criterion", "sparsity", "git_commit"} <= set(ev.data.tags)
    assert ev.data.tags["model"] == "resnet20" and ev.data.tags["sparsity"] == SMALL["prune.settings"]["r1"]
    tb = next(r for r in runs if r.info.run_name == "train_baseline@0")
    assert tb.data.params["train.epochs"] == "2"
    assert len(client.get_metric_history(tb.info.run_id, "top1")) == 2  # one point per epoch
    # every run says which CPU numerics made its results (here portable: SMALL); a run the stage
    # logged, also on what CPU
    for r in runs:
        assert r.data.tags["numerics.cpu_numerics"] == "portable", r.info.run_name
        assert r.data.tags["numerics.cpu_capability"] == "AVX2"
        assert r.data.tags["numerics.threads"] == "2" and r.data.tags["numerics.variables.OMP_NUM_THREADS"] == "2"
    assert tb.data.tags["machine.cpu_vendor"] in ("GenuineIntel", "AuthenticAMD") and tb.data.tags["machine.cpu_model"]


def test_a_finetune_param_reruns_only_finetune_and_what_follows(project):
    edit_params(project, **{"finetune.epochs": 2})  # the one fine-tuning key the sweep does not read
    stale = set(json.loads(dvc(project, "status", "--json").stdout))
    assert stale == {"check_params", "finetune@0-chip-r1", "finetune@0-chip-r2", "mlflow_sync"}
    r = dvc(project, "repro")
    assert ran(r.stdout) == {"check_params", "finetune@0-chip-r1", "finetune@0-chip-r2", "evaluate@0-chip-r1",
                             "evaluate@0-chip-r2", "report", "mlflow_sync"}


def test_a_baseline_added_later_runs_only_its_own_stages(tmp_path_factory, tmp_path):
    """Baselines are the replicates: a second one trains, extracts, scores, prunes, fine-tunes and
    evaluates its own networks (stages named after it, files in its own folders); nothing of the
    first re-runs, the table gives each network's mean ± standard deviation over the two
    baselines (each baseline's top-1 the mean over its fine-tuning seeds), and MLflow names the
    baseline of every run."""
    project = copy_of(small_project(tmp_path_factory), tmp_path / "project")
    first = {k: v for k, v in outputs(project).items() if "/b0/" in k}
    edit_params(project, baselines=[0, 1])
    r = dvc(project, "repro")
    assert ran(r.stdout) == {"check_params", "train_baseline@1", "extract_features@1", "score@1-chip", "sensitivity@1",
                             "ablation@1",
                             *(f"{s}@1-chip-{t}" for s in ("prune", "finetune", "evaluate") for t in ("r1", "r2")),
                             "report", "mlflow_sync"}, r.stdout
    assert {k: v for k, v in outputs(project).items() if k in first} == first and len(first) > 10
    per_baseline = [json.loads((project / f"results/metrics/b{b}/evaluate/chip-r2.json").read_text()) for b in (0, 1)]
    assert [rec["baseline"] for rec in per_baseline] == ["0", "1"]
    assert per_baseline[0]["top1_per_seed"] != per_baseline[1]["top1_per_seed"]  # another training, not a copy
    tops = [rec["top1"] for rec in per_baseline]  # each the mean over seeds 0 and 1
    assert f"{np.mean(tops):.2f} ± {np.std(tops, ddof=1):.2f} (2 baselines)" in (project / "results/table.md").read_text()
    runs = _runs_by_stage(project)
    assert len(runs["finetune@1-chip-r2"]) == 2 and all(run.data.tags["baseline"] == "1" for run in runs["finetune@1-chip-r2"])
    assert runs["evaluate@0-chip-r2"] and all(run.data.tags["baseline"] == "0" for run in runs["evaluate@0-chip-r2"])


def test_latency_is_measured_and_tabulated_apart(project):
    """Latencies go to files of their own (metrics/latency/, results/latency.md): measuring them
    changes no other tracked file, so those stay the same bytes on any machine."""
    deterministic = {k: v for k, v in outputs(project).items() if "latency" not in k}
    edit_params(project, **{"latency.repeats": 3, "latency.warmup": 1, "latency.batch_sizes": [1, 32]})
    r = dvc(project, "repro")
    assert ran(r.stdout) == {"check_params", "evaluate@0-chip-r1", "evaluate@0-chip-r2", "report", "mlflow_sync"}
    rec = json.loads((project / "results/metrics/b0/latency/chip-r2.json").read_text())
    for b in (1, 32):
        base, pruned = rec[f"latency_cpu_b{b}_baseline_ms"], rec[f"latency_cpu_b{b}_pruned_ms"]
        assert 0 < base and 0 < pruned and rec[f"speedup_cpu_b{b}"] == base / pruned
    assert rec["machine"]["cpu_model"]
    header = next(line for line in (project / "results/latency.md").read_text().splitlines() if line.startswith("| Model"))
    assert header.endswith("| Speed-up, CPU (batch 1 / 32) | Latency, CPU (ms, batch 1 / 32) |")
    assert {k: v for k, v in outputs(project).items() if "latency" not in k} == deterministic


def test_a_clone_pulls_from_the_remote_instead_of_retraining(project, tmp_path):
    """README, "Pull instead of retraining": a run pushed to a DVC remote (here a local folder,
    as any of DVC's storage kinds); a clone of the repository runs `make pull`'s command and gets
    every output from the remote: no stage but mlflow_sync runs, every file as dvc.lock says."""
    remote, clone = tmp_path / "remote", tmp_path / "clone"
    (project / ".gitignore").write_text("mlflow.db\n*.db\nmlruns/\ndownloaded/\n")  # as the root's
    dvc(project, "remote", "add", "-d", "storage", str(remote))
    dvc(project, "push", "--run-cache")
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-q", "-m", "results"], project)
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    assert not [p for p in clone.rglob("*") if p.is_file() and p.suffix in (".pt", ".pth")]  # weights never in git
    pull = re.search(r"(?m)^pull:.*\n(?:\t.*\n)*?\t.*\$\(VENV\)/bin/(dvc repro --pull)$", (ROOT / "Makefile").read_text())
    assert pull, "Makefile's pull target no longer runs dvc repro --pull"
    fresh = {**env(clone), "MLFLOW_TRACKING_URI": f"sqlite:///{clone / 'mlflow.db'}"}
    r = subprocess.run([str(BIN / "dvc"), *pull.group(1).split()[1:]], cwd=clone, env=fresh, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert ran(r.stdout) == {"mlflow_sync"}, r.stdout
    for entry in _lock(clone).values():
        for out in entry.get("outs", []):
            assert (clone / out["path"]).exists(), out["path"]
    assert run(["git", "status", "--porcelain"], clone).stdout == ""


# --- MLflow holds every result the workspace holds, tied to dvc.lock


def _client(project, db: str = "mlflow.db"):
    import mlflow

    return mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{project / db}")


def _lock(project) -> dict:
    import yaml

    return yaml.safe_load((project / "dvc.lock").read_text())["stages"]


def _lock_hash(entry: dict) -> str:
    """The hash mlflow_sync tags a run with, computed here from its definition: sha256 of the
    lock entry as sorted JSON, first 16 hex digits."""
    import hashlib

    return hashlib.sha256(json.dumps(entry, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _runs_by_stage(project, db: str = "mlflow.db") -> dict:
    client = _client(project, db)
    exp = client.get_experiment_by_name("prunelab")
    runs = {}
    for r in client.search_runs([exp.experiment_id], max_results=5000):
        runs.setdefault(r.data.tags.get("dvc_stage"), []).append(r)
    return runs


def test_every_stage_s_run_is_linked_to_its_dvc_lock_entry(project):
    """The runs the stages logged themselves carry their lock entry's hash and dependency md5s."""
    lock, runs = _lock(project), _runs_by_stage(project)
    for name, entry in lock.items():
        if name == "mlflow_sync":
            continue
        linked = [r for r in runs.get(name, []) if r.data.tags.get("dvc_lock_hash") == _lock_hash(entry)]
        assert linked, name
        assert all(r.info.status == "FINISHED" for r in linked)
        for dep in entry["deps"]:
            assert linked[0].data.tags[f"dvc.deps.{dep['path']}"] == dep["md5"], (name, dep["path"])
        # the training stages' runs are their own; the others' are built by mlflow_sync
        assert ("restored_from" in linked[0].data.tags) == (name.partition("@")[0] not in LIVE), name


def test_experiment_opens_on_runs_and_runs_carry_data_and_checkpoints(project):
    import torch

    client = _client(project)
    exp = client.get_experiment_by_name("prunelab")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = _runs_by_stage(project)
    ev = runs["evaluate@0-chip-r1"][0]
    (dataset,) = [d.dataset for d in ev.inputs.dataset_inputs]
    assert dataset.name == "digits-8px" and len(dataset.digest) > 8
    # the evaluate run records what made its network: pruning and fine-tuning params
    assert ev.data.params["prune.settings.r1"] == SMALL["prune.settings"]["r1"] and ev.data.params["seeds"] == "[0, 1]"
    import yaml

    assert ev.data.params["finetune.epochs"] == str(yaml.safe_load((project / "params.yaml").read_text())["finetune"]["epochs"])
    for stage in ("prune@0-chip-r1", "finetune@0-chip-r1"):
        run = next(r for r in runs[stage] if r.data.tags.get("seed", "0") == "0")
        run_id = run.info.run_id
        artifacts = [a.path for a in client.list_artifacts(run_id)]
        # prune: a network per seed and its record (per-image results included); finetune: a run per seed, its checkpoint
        assert sorted(artifacts) == (["chip-r1.json", "seed0.pt", "seed1.pt"] if stage.startswith("prune")
                                     else ["seed0.pt"]), artifacts
        artifact = next(a for a in artifacts if a.endswith(".pt"))
        local = client.download_artifacts(run_id, artifact, str(project / "downloaded"))
        ckpt = torch.load(local, weights_only=True)  # data only: no pickled module
        assert set(ckpt) >= {"arch", "widths", "state_dict"} and ckpt["arch"] == "resnet20"


def test_a_run_left_running_by_a_killed_stage_is_closed(project):
    import socket

    client = _client(project)
    exp = client.get_experiment_by_name("prunelab")
    dead = subprocess.Popen(["true"])
    dead.wait()
    orphan = client.create_run(exp.experiment_id, tags={"host": socket.gethostname(), "pid": str(dead.pid)},
                               run_name="finetune@0-chip-r1")
    assert client.get_run(orphan.info.run_id).info.status == "RUNNING"
    dvc(project, "repro")  # mlflow_sync, as any stage, closes it
    assert client.get_run(orphan.info.run_id).info.status == "KILLED"


def test_table_from_mlflow_refuses_without_a_run_matching_dvc_lock(project):
    client = _client(project)
    results = project / "results"
    before = {p.name: p.read_bytes() for p in results.iterdir() if p.is_file()}
    for r in _runs_by_stage(project)["evaluate@0-chip-r2"]:
        client.delete_run(r.info.run_id)
    r = run([str(BIN / "python"), "-m", "prunelab.cli", "table", "--from-mlflow"], project, check=False)
    assert r.returncode == 2
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("error: evaluate@0-chip-r2: no finished MLflow run matches dvc.lock"), r.stderr
    assert {p.name: p.read_bytes() for p in results.iterdir() if p.is_file()} == before
    dvc(project, "repro")  # restores the deleted stage's run from the tracked files
    assert any(r.data.tags.get("restored_from") == "dvc.lock" for r in _runs_by_stage(project)["evaluate@0-chip-r2"])


def test_a_fresh_store_gets_every_skipped_stage_restored(project):
    """A fresh clone: DVC skips every stage (the outputs are here); MLflow still gets their runs,
    rebuilt from dvc.lock and the tracked files, and the tables rebuild from them byte for byte."""
    fresh = {**env(project), "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'fresh.db'}"}  # overrides tracking.uri
    r = subprocess.run([str(BIN / "dvc"), "repro"], cwd=project, env=fresh, capture_output=True, text=True, check=True)
    assert ran(r.stdout) == {"mlflow_sync"}
    lock, runs = _lock(project), _runs_by_stage(project, "fresh.db")
    for name, entry in lock.items():
        if name == "mlflow_sync":
            continue
        restored_runs = [x for x in runs[name] if x.data.tags.get("restored_from") == "dvc.lock"]
        assert len(restored_runs) == (2 if name.startswith("finetune@") else 1), name  # finetune: a run per seed
        for restored in restored_runs:
            assert restored.data.tags["dvc_lock_hash"] == _lock_hash(entry)
            assert restored.info.status == "FINISHED" and restored.data.tags["git_commit"]
            assert {k: str(v) for k, v in _flat(next(iter(entry.get("params", {}).values()), {})).items()} \
                .items() <= restored.data.params.items()
    ev = json.loads((project / "results/metrics/b0/evaluate/chip-r1.json").read_text())
    restored_ev = runs["evaluate@0-chip-r1"][0]
    assert restored_ev.data.metrics["top1"] == ev["top1"] and restored_ev.data.tags["sparsity"] == ev["sparsity"]
    curve = (project / "results/metrics/b0/finetune/chip-r1/seed1.csv").read_text().splitlines()[1:]
    seed1 = next(r for r in runs["finetune@0-chip-r1"] if r.data.tags["seed"] == "1")
    history = _client(project, "fresh.db").get_metric_history(seed1.info.run_id, "top1")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == \
        [(int(line.split(",")[0]), float(line.split(",")[2])) for line in curve]
    results = project / "results"
    before = {p.name: p.read_bytes() for p in results.iterdir() if p.is_file()}
    r = subprocess.run([str(BIN / "python"), "-m", "prunelab.cli", "table", "--from-mlflow"], cwd=project, env=fresh,
                       capture_output=True, text=True, check=True)
    assert {p.name: p.read_bytes() for p in results.iterdir() if p.is_file()} == before


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def test_table_from_mlflow_creates_no_store(tmp_path):
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    r = run([str(BIN / "python"), "-m", "prunelab.cli", "table", "--from-mlflow"], tmp_path, check=False)
    assert r.returncode == 2 and "tracking.uri" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "mlflow.db").exists()


def test_the_sweep_measures_each_criterion_at_each_ratio_and_scheme(project):
    """One row per (scheme, ratio, criterion, draw), its MACs those of the scheme's widths by
    PyTorch's own counter; nothing fine-tuned (sweep.finetune_epochs: 0); the plot is written."""
    import csv

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from prunelab import models, sweep

    with open(project / "results" / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["scheme"], float(r["ratio"]), r["criterion"]) for r in rows] == \
        [(s, x, "chip") for s in SMALL["sweep.schemes"] for x in SMALL["sweep.ratios"]]
    base = models.build_model("resnet20", None, 1, 10).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        base(torch.zeros(1, 1, 8, 8))
    full = fc.get_total_flops() // 2
    for r in rows:
        rates = sweep.scheme_rates("resnet20", r["scheme"], float(r["ratio"]), SMALL["prune.settings"])
        model = models.build_model("resnet20", models.pruned_widths("resnet20", rates), 1, 10).eval()
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            model(torch.zeros(1, 1, 8, 8))
        assert int(r["macs"]) == fc.get_total_flops() // 2, r
        assert float(r["macs_reduction_pct"]) == pytest.approx(100 * (1 - int(r["macs"]) / full))
        assert 0 <= float(r["top1_pruned"]) <= 100 and 0 <= float(r["top1_bn_reestimated"]) <= 100
        assert r["top1_finetuned"] == ""
    assert (project / "results" / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
