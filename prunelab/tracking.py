"""MLflow: one run per stage execution, named as the DVC stage, with params, metrics and tags.

MLflow is imported lazily (it is slow to import) and with its telemetry switched off.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def _mlflow():
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    import mlflow

    return mlflow


def git_commit() -> str:
    """HEAD's commit, suffixed '-dirty' when tracked files differ from it; 'unknown' outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """{'train': {'lr': 0.1}} -> {'train.lr': 0.1}"""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def tracking_uri(configured: str) -> str:
    """MLFLOW_TRACKING_URI, when set, overrides the params' tracking.uri."""
    return os.environ.get("MLFLOW_TRACKING_URI") or configured


class StageRun:
    def __init__(self, mlflow, run):
        self._mlflow, self.run_id = mlflow, run.info.run_id

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        numeric = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        self._mlflow.log_metrics(numeric, step=step)

    def log_artifact(self, path) -> None:
        self._mlflow.log_artifact(str(path))

    def set_tags(self, tags: dict[str, Any]) -> None:
        self._mlflow.set_tags({k: str(v) for k, v in tags.items()})


@contextmanager
def stage_run(run_name: str, uri: str, experiment: str, params: dict, tags: dict,
              run_id: str | None = None) -> Iterator[StageRun]:
    """An MLflow run named after the DVC stage (e.g. 'prune@chip-r1'), closed even on error.

    run_id continues an existing run (a resumed stage keeps one metric history).
    """
    mlflow = _mlflow()
    mlflow.set_tracking_uri(tracking_uri(uri))
    mlflow.set_experiment(experiment)
    if run_id is not None:
        try:
            mlflow.tracking.MlflowClient().get_run(run_id)
        except mlflow.exceptions.MlflowException:  # gone (another tracking URI, deleted): start afresh
            run_id = None
    with mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name) as run:
        mlflow.log_params({k: str(v) for k, v in flatten(params).items()})
        mlflow.set_tags({"git_commit": git_commit(), **{k: str(v) for k, v in tags.items()}})
        yield StageRun(mlflow, run)


def latest_runs(uri: str, experiment: str, stage: str) -> dict[str, dict]:
    """{tag 'item': {'metrics': {...}, 'tags': {...}}} of the newest finished run of `stage` per item."""
    mlflow = _mlflow()
    client = mlflow.tracking.MlflowClient(tracking_uri=tracking_uri(uri))
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return {}
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.stage = '{stage}' and attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"], max_results=50_000)
    out: dict[str, dict] = {}
    for r in runs:
        out.setdefault(r.data.tags.get("item", ""), {"metrics": dict(r.data.metrics), "tags": dict(r.data.tags)})
    return out
