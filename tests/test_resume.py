"""A training stage killed mid-way resumes from its last epoch and ends exactly where an
uninterrupted run ends (CPU)."""

import os
import signal
import subprocess
import time

import pytest

from helpers import BIN, copy_project, dvc, env, stage
from prunelab import checkpoint

EPOCHS = 4
SMALL = {"model.arch": "resnet20", "train.epochs": EPOCHS, "prune.settings": {"r1": "[0.]+[0.15]*2+[0.4]*9"}}
OUTPUTS = ("models/b0/baseline.pt", "results/metrics/b0/train_baseline.json", "results/metrics/b0/train_baseline.csv")


def test_killed_baseline_training_resumes_to_identical_outputs(tmp_path):
    straight, killed = copy_project(tmp_path / "straight", **SMALL), copy_project(tmp_path / "killed", **SMALL)
    reference = subprocess.Popen([str(BIN / "python"), "stages/train_baseline.py"], cwd=straight, env=env(straight),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc = subprocess.Popen([str(BIN / "python"), "stages/train_baseline.py"], cwd=killed, env=env(killed),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    # the event: the stage writes its resume state after its first epoch; killed then, it has
    # EPOCHS - 1 epochs left, however fast or loaded the machine is
    resume = killed / "models" / "b0" / ".baseline.pt.resume"
    while not resume.is_file():
        assert proc.poll() is None, "the stage exited without writing its resume state"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    epoch = checkpoint.torch_load(resume, ("train",))["train"]["epoch"]
    assert 0 <= epoch < EPOCHS - 1 and not (killed / "models" / "b0" / "baseline.pt").exists()

    r = stage(killed, "train_baseline")
    assert r.returncode == 0, r.stderr
    assert reference.wait() == 0
    for out in OUTPUTS:
        assert (killed / out).read_bytes() == (straight / out).read_bytes(), out
    assert not resume.exists()

    import mlflow

    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{killed / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("prunelab").experiment_id])
    assert len(runs) == 1  # the resumed run continues the killed one
    assert {m.step for m in client.get_metric_history(runs[0].info.run_id, "top1")} == set(range(EPOCHS))


def test_a_resume_file_from_other_params_is_ignored(tmp_path):
    out = tmp_path / "m.pt"
    checkpoint.ResumeFile(out, "fingerprint-a").save({"epoch": 3}, curve=[])
    assert checkpoint.ResumeFile(out, "fingerprint-a").load()["train"] == {"epoch": 3}
    assert checkpoint.ResumeFile(out, "fingerprint-b").load() is None
    (tmp_path / ".m.pt.resume").write_bytes(b"junk")
    assert checkpoint.ResumeFile(out, "fingerprint-a").load() is None


FINETUNE = {"model.arch": "resnet20", "train.epochs": 1, "finetune.epochs": EPOCHS, "features.num_images": 16,
            "features.batch_size": 8, "prune.criteria": ["chip"], "prune.settings": {"r1": "[0.]+[0.15]*2+[0.4]*9"},
            "sensitivity.rates": [0.5], "sensitivity.images": 16, "sensitivity.bn_images": 16,
            "latency.repeats": 0, "seeds": [0, 1]}  # two fine-tuning seeds


@pytest.mark.slow  # two dvc repro runs with a kill between: minutes (make test-slow, CI)
def test_finetune_killed_under_dvc_repro_keeps_its_finished_seed_and_resumes_the_other(tmp_path):
    """`dvc repro` killed (SIGKILL, DVC and the stage) while finetune@0-chip-r1 trains its second
    seed, the first one written. The next `dvc repro` (DVC deletes the network's outputs first)
    gets seed 0 back from its final state, without training it or logging a second run, continues
    seed 1 from its saved epoch in the same MLflow run, and ends with the bytes an uninterrupted
    fine-tuning (the stage forced to run again from scratch) gives."""
    project = copy_project(tmp_path / "p", **FINETUNE)
    target = "finetune@0-chip-r1"  # and what it needs: the sweep, evaluate and report are not waited for
    proc = subprocess.Popen([str(BIN / "dvc"), "repro", target], cwd=project, env=env(project),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    # written after each of its epochs, beside the network's output folder (DVC deletes that folder)
    states = project / "models" / "b0" / "finetuned"
    resume = [states / f".chip-r1.seed{s}.pt.resume" for s in (0, 1)]
    while not resume[1].is_file():
        assert proc.poll() is None, "dvc repro exited before finetune's second seed wrote its resume state"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert checkpoint.torch_load(resume[0], ("train",))["train"]["epoch"] == EPOCHS - 1  # seed 0: finished
    assert 0 <= checkpoint.torch_load(resume[1], ("train",))["train"]["epoch"] < EPOCHS - 1

    r = dvc(project, "repro", target)
    assert f"Running stage '{target}'" in r.stdout, r.stdout
    assert not [p for p in resume if p.exists()]  # gone once the network's last seed is written
    outputs = [f"{d}/chip-r1/seed{s}.{x}" for s in (0, 1) for d, x in (("models/b0/finetuned", "pt"),
                                                                      ("results/metrics/b0/finetune", "csv"))]
    resumed = {out: (project / out).read_bytes() for out in outputs}

    import mlflow

    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    runs = [r for r in client.search_runs([client.get_experiment_by_name("prunelab").experiment_id])
            if r.info.run_name == target and "restored_from" not in r.data.tags]
    # one run per seed: seed 0's was not logged again, seed 1's continued the killed one
    assert sorted(r.data.tags["seed"] for r in runs) == ["0", "1"], [(r.info.run_id, r.info.status) for r in runs]
    for run in runs:
        assert run.info.status == "FINISHED"
        assert [m.step for m in client.get_metric_history(run.info.run_id, "top1")] == list(range(EPOCHS))

    dvc(project, "repro", "--force", "--single-item", target)  # uninterrupted, from the pruned network
    for out in outputs:
        assert (project / out).read_bytes() == resumed[out], out


def test_ctrl_c_stops_a_stage_with_one_line(tmp_path):
    """SIGINT (Ctrl-C) during training: exit 130 and one line on stderr, not a traceback through
    PyTorch; the resume state is there for the next run. 50 epochs: on a loaded machine the signal
    may come seconds after the first epoch, and the stage must still be training then (it is
    interrupted long before the end, so they cost nothing)."""
    project = copy_project(tmp_path / "p", **{**SMALL, "train.epochs": 50})
    proc = subprocess.Popen([str(BIN / "python"), "stages/train_baseline.py"], cwd=project, env=env(project),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    resume = project / "models" / "b0" / ".baseline.pt.resume"
    while not resume.is_file():
        assert proc.poll() is None, "the stage exited without writing its resume state"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)
    err = proc.communicate(timeout=120)[1]
    lines = [line for line in err.splitlines() if line.strip() and "epoch/s" not in line and "it/s" not in line]
    assert proc.returncode == 130, err[-2000:]
    assert lines[-1].startswith("interrupted: ") and "Traceback" not in err, err[-2000:]
    assert resume.is_file()
