"""A training stage killed mid-way resumes from its last epoch and ends exactly where an
uninterrupted run ends (CPU)."""

import os
import signal
import subprocess
import time

from helpers import BIN, copy_project, env, stage
from prunelab import checkpoint

SMALL = {"model.arch": "resnet20", "train.epochs": 12, "prune.settings": {"r1": "[0.]+[0.15]*2+[0.4]*9"}}
OUTPUTS = ("models/baseline.pt", "results/metrics/train_baseline.json", "results/metrics/train_baseline.csv")


def test_killed_baseline_training_resumes_to_identical_outputs(tmp_path):
    straight, killed = copy_project(tmp_path / "straight", **SMALL), copy_project(tmp_path / "killed", **SMALL)
    reference = subprocess.Popen([str(BIN / "python"), "stages/train_baseline.py"], cwd=straight, env=env(straight),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc = subprocess.Popen([str(BIN / "python"), "stages/train_baseline.py"], cwd=killed, env=env(killed),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    resume = killed / "models" / ".baseline.pt.resume"
    epoch, deadline = -1, time.time() + 300
    while epoch < 3 and time.time() < deadline:
        assert proc.poll() is None, "training finished before it could be killed"
        if resume.is_file():
            epoch = checkpoint.torch_load(resume, ("train",))["train"]["epoch"]
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 3 <= epoch < 11 and not (killed / "models" / "baseline.pt").exists()

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
    assert {m.step for m in client.get_metric_history(runs[0].info.run_id, "top1")} == set(range(12))


def test_a_resume_file_from_other_params_is_ignored(tmp_path):
    out = tmp_path / "m.pt"
    checkpoint.ResumeFile(out, "fingerprint-a").save({"epoch": 3}, curve=[])
    assert checkpoint.ResumeFile(out, "fingerprint-a").load()["train"] == {"epoch": 3}
    assert checkpoint.ResumeFile(out, "fingerprint-b").load() is None
    (tmp_path / ".m.pt.resume").write_bytes(b"junk")
    assert checkpoint.ResumeFile(out, "fingerprint-a").load() is None
