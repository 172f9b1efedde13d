"""Glue shared by the DVC stages: params sections -> library calls, metric files, MLflow runs."""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import torch

from prunelab import checkpoint, config, distributed, synthetic, tracking
from prunelab.checkpoint import atomic_write
from prunelab.data import DatasetNotFound, FolderSplits, Splits, load_dataset
from prunelab.engine import Recipe, resolve_device


def device(params: dict) -> torch.device:
    """The params' device; under torchrun, this rank's (its process group joined)."""
    try:
        return distributed.init(resolve_device(params["device"]))
    except ValueError as e:
        raise config.ConfigError(str(e)) from None


def accel(params: dict) -> dict:
    """engine options for engine.fit / engine.evaluate (everything but the launcher)."""
    return {k: v for k, v in params["engine"].items() if k != "launcher"}


def eval_accel(params: dict) -> dict:
    return {k: params["engine"][k] for k in ("amp", "channels_last")}


def load_data(params: dict) -> Splits | FolderSplits:
    d = params["data"]
    if params.get("smoke"):  # the paper pipeline's smoke mode: synthetic files in the real format
        synthetic.write_dataset(d["name"], params["paths"]["data"], params["seed"])
    try:
        return load_dataset(d["name"], params["paths"]["data"], d["download"], params["seed"], d["image_size"],
                            d["test_fraction"], verify=not params.get("smoke"))
    except DatasetNotFound as e:
        raise config.ConfigError(f"paths.data: {e}") from None


def pretrained_weights(params: dict, splits: Splits | FolderSplits) -> str | None:
    """model.pretrained; in smoke mode a synthetic weights file written there first."""
    path = params["model"]["pretrained"]
    if path and params.get("smoke"):
        synthetic.write_weights(path, params["model"]["arch"], splits.in_channels, splits.num_classes, params["seed"])
    return path


class FirstBatches:
    """The first n batches of a loader (smoke mode), passing set_epoch through."""

    def __init__(self, loader, n: int):
        self.loader, self.n = loader, n

    def __len__(self) -> int:
        return min(self.n, len(self.loader))

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.loader, "set_epoch"):
            self.loader.set_epoch(epoch)

    def __iter__(self):
        return itertools.islice(iter(self.loader), len(self))


def _limited(params: dict, loader):
    return FirstBatches(loader, config.SMOKE_BATCHES) if params.get("smoke") else loader


def train_loader(splits: Splits | FolderSplits, batch_size: int, seed: int, params: dict, dev: torch.device):
    return _limited(params, splits.train_loader(batch_size, seed, dev))


def test_loader(splits: Splits | FolderSplits, params: dict, dev: torch.device):
    return _limited(params, splits.test_loader(params["data"]["eval_batch_size"], dev))


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
    """The MLflow run of one stage execution, named as DVC names the stage: 'prune@chip-r1', or
    'train_baseline@resnet110' for a per-model stage of the paper pipeline."""
    item = item or params.get("experiment")
    run_name = f"{stage}@{item}" if item else stage
    all_tags = {"stage": stage, "model": params["model"]["arch"], "params_hash": config.params_hash(params),
                **({"item": item} if item else {}), **({"experiment": params["experiment"]} if "experiment" in params else {}),
                **({"smoke": "true"} if params.get("smoke") else {}), **(tags or {})}
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
    if not distributed.is_main():  # other torchrun ranks: train alongside rank 0, write nothing
        train(lambda epoch, metrics: None, saved["train"] if saved else None, None)
        return
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


def experiment_stage(description: str, criterion: bool = False) -> tuple[dict, str | None]:
    """Params of a per-model stage (train_baseline, extract_features, score) and its --criterion.

    The default pipeline takes params.yaml as it is; the paper pipeline names its experiment
    with --experiment.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--experiment", help="paper pipeline: an entry of experiments: in params.yaml")
    if criterion:
        parser.add_argument("--criterion", required=True)
    args = parser.parse_args()
    params = config.load_params("params.yaml", args.experiment)
    if criterion and args.criterion not in params["prune"]["criteria"]:
        raise config.ConfigError(f"--criterion: {args.criterion!r} is not in prune.criteria {params['prune']['criteria']}")
    return params, args.criterion if criterion else None


def network_stage(description: str) -> tuple[dict, config.Network]:
    """Params of a per-network stage (prune, finetune, evaluate) and its network: --criterion C
    --setting S in the default pipeline, --row R in the paper pipeline."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--criterion")
    parser.add_argument("--setting")
    parser.add_argument("--row", help="paper pipeline: an entry of rows: in params.yaml")
    args = parser.parse_args()
    if args.row is not None:
        paper = config.load_paper("params.yaml")
        if args.row not in paper["rows"]:
            raise config.ConfigError(f"--row: {args.row!r} is not in rows ({', '.join(paper['rows'])})")
        params = config.experiment_params(paper, paper["rows"][args.row]["experiment"])
        return params, next(n for n in config.networks(params) if n.name == args.row)
    params = config.load_params("params.yaml")
    if args.criterion not in params["prune"]["criteria"]:
        raise config.ConfigError(f"--criterion: {args.criterion!r} is not in prune.criteria {params['prune']['criteria']}")
    if args.setting not in params["prune"]["settings"]:
        raise config.ConfigError(f"--setting: {args.setting!r} is not in prune.settings ({', '.join(params['prune']['settings'])})")
    return params, next(n for n in config.networks(params) if (n.criterion, n.setting) == (args.criterion, args.setting))


def calibration_batch(splits: Splits | FolderSplits, params: dict, dev: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """SNPFI's calibration set: the first snpfi.calibration_images training images of the seeded
    training order, with the training augmentation (as CHIP's feature images); (N, C, H, W), (N,)."""
    n = params["snpfi"]["calibration_images"]
    xs, ys, have = [], [], 0
    for x, y in train_loader(splits, min(n, 256), params["seed"], params, dev):
        xs.append(x[: n - have])
        ys.append(y[: n - have])
        have += len(ys[-1])
        if have >= n:
            break
    return torch.cat(xs), torch.cat(ys)
