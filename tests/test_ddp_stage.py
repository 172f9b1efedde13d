"""The DVC stage command under torchrun: train_baseline as 2 CPU processes (gloo), DDP with
SyncBatchNorm; only rank 0 writes and logs. (Numerics against one process: test_distributed.py.)"""

import json

from helpers import copy_project, dvc


def test_train_baseline_runs_under_torchrun_and_only_rank_0_writes(tmp_path):
    project = copy_project(tmp_path / "p", **{
        "model.arch": "resnet20", "train.epochs": 2, "train.warmup_epochs": 0, "prune.settings": {"r1": "[0.]+[0.15]*2+[0.4]*9"},
        "engine.launcher": "torchrun --standalone --nproc_per_node=2", "engine.sync_bn": True})
    r = dvc(project, "repro", "train_baseline@0")
    assert "torchrun --standalone --nproc_per_node=2 stages/train_baseline.py" in r.stdout
    metrics = json.loads((project / "results" / "metrics" / "b0" / "train_baseline.json").read_text())
    assert 0 <= metrics["top1"] <= 100 and metrics["params"] > 0
    curve = (project / "results" / "metrics" / "b0" / "train_baseline.csv").read_text().splitlines()
    assert len(curve) == 1 + 2  # one line per epoch, written once

    import mlflow

    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    exp = client.get_experiment_by_name("prunelab")
    runs = client.search_runs([exp.experiment_id])
    assert [r.info.run_name for r in runs] == ["train_baseline@0"]  # rank 1 opened no run
    assert len(client.get_metric_history(runs[0].info.run_id, "top1")) == 2
    from prunelab import checkpoint

    state = checkpoint.load(project / "models" / "b0" / "baseline.pt")["state_dict"]
    assert not any(k.startswith(("module.", "_orig_mod.")) for k in state)
