"""Glue shared by the DVC stages: params sections -> library calls, metric files, MLflow runs."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from prunelab import checkpoint, config, tracking
from prunelab.checkpoint import atomic_write
from prunelab.data import DatasetNotFound, FolderSplits, Splits, load_dataset
from prunelab.engine import Recipe, resolve_device


def device(params: dict) -> torch.device:
    try:
        return resolve_device(params["device"])
    except ValueError as e:
        raise config.ConfigError(str(e)) from None


def load_data(params: dict) -> Splits | FolderSplits:
    d = params["data"]
    try:
        return load_dataset(d["name"], params["paths"]["data"], d["download"], params["seed"], d["image_size"],
                            d["test_fraction"])
    except DatasetNotFound as e:
        raise config.ConfigError(f"paths.data: {e}") from None


def train_loader(splits: Splits | FolderSplits, batch_size: int, seed: int, dev: torch.device):
    return splits.train_loader(batch_size, seed, dev)


def test_loader(splits: Splits | FolderSplits, params: dict, dev: torch.device):
    return splits.test_loader(params["data"]["eval_batch_size"], dev)


def recipe(section: dict) -> Recipe:
    return Recipe(**{k: v for k, v in section.items() if k != "batch_size"})


def input_shape(splits: Splits | FolderSplits) -> tuple[int, int, int]:
    return (splits.in_channels, splits.image_size, splits.image_size)


def write_json(path: str | Path, data: dict) -> None:
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def write_curve(path: str | Path, rows: list[dict]) -> None:
    """Per-epoch metrics as CSV (a DVC plot)."""
    keys = list(rows[0])
    text = ",".join(["epoch", *keys]) + "\n" + "".join(
        ",".join([str(i), *(repr(float(r[k])) for k in keys)]) + "\n" for i, r in enumerate(rows))
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def stage_run(params: dict, stage: str, sections: dict, item: str | None = None, tags: dict | None = None,
              run_id: str | None = None):
    """The MLflow run of one stage execution, named as DVC names the stage ('prune@chip-r1')."""
    run_name = f"{stage}@{item}" if item else stage
    all_tags = {"stage": stage, "model": params["model"]["arch"], "params_hash": config.params_hash(params),
                **({"item": item} if item else {}), **(tags or {})}
    t = params["tracking"]
    return tracking.stage_run(run_name, t["uri"], t["experiment"], sections, all_tags, run_id)


def train_resumably(params: dict, stage: str, item: str | None, sections: dict, tags: dict, output: Path,
                    inputs: list[Path], train, write_outputs) -> None:
    """Run train(on_epoch, state, save_state) -> final metrics inside the stage's MLflow run,
    saving the training state every epoch and resuming from it after a crash; then
    write_outputs(final metrics, per-epoch metrics of the whole run), then drop the state.

    The resume file's fingerprint covers the stage's params sections and the md5 of its input
    files, so a changed configuration starts over.
    """
    fingerprint = config.params_hash({"sections": sections, "inputs": [checkpoint.file_hash(p) for p in inputs]})
    resume = checkpoint.ResumeFile(output, fingerprint)
    saved = resume.load()
    curve = list(saved["curve"]) if saved else []
    with stage_run(params, stage, sections, item, tags, run_id=saved["mlflow_run_id"] if saved else None) as run:
        def on_epoch(epoch: int, m: dict) -> None:
            curve.append(m)
            run.log_metrics(m, step=epoch)

        def save_state(state: dict) -> None:
            resume.save(state, curve=curve, mlflow_run_id=run.run_id)

        final = train(on_epoch, saved["train"] if saved else None, save_state)
        write_outputs(final, curve, run)
    resume.remove()


def item_args(params: dict) -> tuple[str, str]:
    """--criterion C --setting S of a per-network stage, checked against params."""
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--criterion", required=True)
    p.add_argument("--setting", required=True)
    a = p.parse_args()
    if a.criterion not in params["prune"]["criteria"]:
        raise config.ConfigError(f"--criterion: {a.criterion!r} is not in prune.criteria {params['prune']['criteria']}")
    if a.setting not in params["prune"]["settings"]:
        raise config.ConfigError(f"--setting: {a.setting!r} is not in prune.settings ({', '.join(params['prune']['settings'])})")
    return a.criterion, a.setting
