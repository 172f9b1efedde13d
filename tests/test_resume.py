"""A training stage killed mid-way resumes from its last epoch and ends exactly where an
uninterrupted run ends (CPU)."""

import os
import signal
import subprocess
import time

from helpers import BIN, copy_project, dvc, env, stage
from prunelab import checkpoint

EPOCHS = 4
SMALL = {"model.arch": "resnet20", "train.epochs": EPOCHS, "prune.settings": {"r1": "[0.]+[0.15]*2+[0.4]*9"}}
OUTPUTS = ("models/baseline.pt", "results/metrics/train_baseline.json", "results/metrics/train_baseline.csv")


def test_killed_baseline_training_resumes_to_identical_outputs(tmp_path):
    straight, killed = copy_project(tmp_path / "straight", **SMALL), copy_project(tmp_path / "killed", **SMALL)
    reference = subprocess.Popen([str(BIN / "python"), "stages/train_baseline.py"], cwd=straight, env=env(straight),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc = subprocess.Popen([str(BIN / "python"), "stages/train_baseline.py"], cwd=killed, env=env(killed),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    # the event: the stage writes its resume state after its first epoch; killed then, it has
    # EPOCHS - 1 epochs left, however fast or loaded the machine is
    resume = killed / "models" / ".baseline.pt.resume"
    while not resume.is_file():
        assert proc.poll() is None, "the stage exited without writing its resume state"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    epoch = checkpoint.torch_load(resume, ("train",))["train"]["epoch"]
    assert 0 <= epoch < EPOCHS - 1 and not (killed / "models" / "baseline.pt").exists()

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
            "latency.repeats": 0, "seeds": [0]}  # one fine-tuning seed


def test_finetune_killed_under_dvc_repro_resumes_there_to_identical_outputs(tmp_path):
    """`dvc repro` killed (SIGKILL, DVC and the stage) during finetune@chip-r1; the next `dvc repro`
    continues the fine-tuning from its saved epoch in the same MLflow run, and ends with the bytes
    an uninterrupted fine-tuning (the stage forced to run again from scratch) gives."""
    project = copy_project(tmp_path / "p", **FINETUNE)
    proc = subprocess.Popen([str(BIN / "dvc"), "repro"], cwd=project, env=env(project), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    # written after finetune's first epoch, beside the network's output folder (DVC deletes that folder)
    resume = project / "models" / "finetuned" / ".chip-r1.seed0.pt.resume"
    while not resume.is_file():
        assert proc.poll() is None, "dvc repro exited before finetune wrote its resume state"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    epoch = checkpoint.torch_load(resume, ("train",))["train"]["epoch"]
    assert 0 <= epoch < EPOCHS - 1 and not (project / "models" / "finetuned" / "chip-r1" / "seed0.pt").exists()

    r = dvc(project, "repro")
    assert "Running stage 'finetune@chip-r1'" in r.stdout, r.stdout
    assert not resume.exists()
    outputs = ("models/finetuned/chip-r1/seed0.pt", "results/metrics/finetune/chip-r1/seed0.csv")
    resumed = {out: (project / out).read_bytes() for out in outputs}

    import mlflow

    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    runs = [r for r in client.search_runs([client.get_experiment_by_name("prunelab").experiment_id])
            if r.info.run_name == "finetune@chip-r1" and "restored_from" not in r.data.tags]
    assert len(runs) == 1, [(r.info.run_id, r.info.status) for r in runs]  # the resumed run continues the killed one
    assert [m.step for m in client.get_metric_history(runs[0].info.run_id, "top1")] == list(range(EPOCHS))

    dvc(project, "repro", "--force", "--single-item", "finetune@chip-r1")  # uninterrupted, from the pruned network
    for out in outputs:
        assert (project / out).read_bytes() == resumed[out], out
