"""Glue shared by the DVC stages: params sections -> library calls, metric files, MLflow runs."""

from __future__ import annotations

import argparse
import copy
import csv
import hashlib
import itertools
import json
import signal
import sys
import threading
from contextlib import ExitStack, contextmanager
from pathlib import Path

import torch
import yaml

from prunelab import checkpoint, config, correctness, distributed, models, numerics, synthetic, tracking
from prunelab.checkpoint import atomic_write
from prunelab.data import DatasetNotFound, FolderSplits, Loader, Splits, balanced_subset, load_dataset
from prunelab.engine import Recipe, resolve_device


def device(params: dict) -> torch.device:
    """The params' device; under torchrun, this rank's (its process group joined)."""
    try:
        return distributed.init(resolve_device(params["device"]))
    except ValueError as e:
        raise config.ConfigError(str(e)) from None


def accel(params: dict) -> dict:
    """engine options for engine.fit / engine.evaluate (all but the launcher and the CPU numerics,
    which act before the process imports torch)."""
    return {k: v for k, v in params["engine"].items() if k not in ("launcher", "cpu_numerics")}


def eval_accel(params: dict) -> dict:
    return {k: params["engine"][k] for k in ("amp", "channels_last")}


def load_data(params: dict) -> Splits | FolderSplits:
    d = params["data"]
    if params.get("smoke"):  # the paper pipeline's smoke mode: synthetic files in the real format
        # checked against the md5s recorded when they were written, before the loader unpickles them
        synthetic.verify(synthetic.write_dataset(d["name"], params["paths"]["data"], params["data_seed"]))
    try:
        splits = load_dataset(d["name"], params["paths"]["data"], d["download"], params["data_seed"], d["image_size"],
                              d["test_fraction"], verify=not params.get("smoke"), train_subset=d["train_subset"])
    except DatasetNotFound as e:
        raise config.ConfigError(f"paths.data: {e}") from None
    if splits.source is not None:  # which copy: paths.data's, or a system-wide one (Debian's Fashion-MNIST)
        print(f"{d['name']}: read from {splits.source}")
    return splits


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


def training_images_unaugmented(splits: Splits | FolderSplits, n: int, seed: int, batch_size: int,
                                dev: torch.device) -> tuple[Loader | torch.utils.data.DataLoader, int]:
    """A loader of min(n, N) training images, as many per class as the classes allow, drawn by
    seed (data.balanced_subset), seen as the test images are (no augmentation; an image folder's
    through its validation transform, the centre crop), and their count: what the sensitivity
    stage measures on instead of the test set."""
    if isinstance(splits, Splits):
        n = min(n, len(splits.y_train))
        idx = balanced_subset(splits.y_train, n, splits.num_classes, seed)  # (n,)
        return Loader(splits.x_train[idx], splits.y_train[idx], splits.mean, splits.std, batch_size, dev), n
    plain = copy.copy(splits.train)  # the same file list (no second scan), the validation transform
    plain.transform = splits.val.transform
    n = min(n, len(plain.targets))
    idx = balanced_subset(torch.tensor(plain.targets), n, splits.num_classes, seed)  # (n,)
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(plain, idx.tolist()), batch_size,
                                         num_workers=splits.num_workers, pin_memory=dev.type == "cuda")
    return loader, n


def test_loader(splits: Splits | FolderSplits, params: dict, dev: torch.device):
    return _limited(params, splits.test_loader(params["data"]["eval_batch_size"], dev))


def recipe(section: dict) -> Recipe:
    return Recipe(**{k: v for k, v in section.items() if k != "batch_size"})


def input_shape(splits: Splits | FolderSplits) -> tuple[int, int, int]:
    return (splits.in_channels, splits.image_size, splits.image_size)


def write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json(path: str | Path, data: dict) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_curve(path: str | Path, rows: list[dict]) -> None:
    """Per-epoch metrics as CSV (a DVC plot)."""
    keys = list(rows[0])
    text = ",".join(["epoch", *keys]) + "\n" + "".join(
        ",".join([str(i), *(repr(float(r[k])) for k in keys)]) + "\n" for i, r in enumerate(rows))
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def dataset_digest(splits: Splits | FolderSplits) -> str:
    """md5 of the images and labels a stage used: in-memory splits by their bytes, an image
    folder by its file list (paths and sizes)."""
    h = hashlib.md5()
    if isinstance(splits, Splits):
        for t in (splits.x_train, splits.y_train, splits.x_test, splits.y_test):
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    else:
        for path, label in (*splits.train.samples, *splits.val.samples):
            h.update(f"{path}:{Path(path).stat().st_size}:{label}\n".encode())
    return h.hexdigest()


@contextmanager
def stage_run(params: dict, stage: str, sections: dict, item: str | None = None, tags: dict | None = None,
              run_id: str | None = None, data: Splits | FolderSplits | None = None):
    """The MLflow run of one stage execution, named as DVC names the stage: 'finetune@0-chip-r1' (baseline 0), or
    'train_baseline@0-resnet110' for a per-model stage of the paper pipeline. `data`, when the
    stage read a data set, is logged as the run's input (name and digest)."""
    if "experiment" in params:  # the paper's: the experiment names a per-model stage
        item = item or params["experiment"]
    if "baseline" in params:  # the baseline comes first (train_baseline@0, finetune@0-chip-r2, finetune@0-resnet56-r1-chip)
        item = f"{params['baseline']}-{item}" if item else str(params["baseline"])
    run_name = f"{stage}@{item}" if item else stage
    all_tags = {"stage": stage, "model": params["model"]["arch"], "params_hash": config.params_hash(params),
                **({"item": item} if item else {}), **({"experiment": params["experiment"]} if "experiment" in params else {}),
                **({"baseline": str(params["baseline"])} if "baseline" in params else {}),
                **({"smoke": "true"} if params.get("smoke") else {}), **numerics_tags(params), **(tags or {})}
    t = params["tracking"]
    with tracking.stage_run(run_name, t["uri"], t["experiment"], sections, all_tags, run_id) as run:
        if data is not None:
            run.log_dataset(*dataset_input(params, data))
        yield run


def numerics_record(params: dict) -> dict:
    """The CPU numerics this process computes under (numerics.record), for a stage's JSON record
    and checkpoint meta: under `portable` the same on every machine."""
    return numerics.record(params["engine"]["cpu_numerics"])


def numerics_tags(params: dict) -> dict[str, str]:
    """The CPU numerics and the machine, as an MLflow run's tags ('numerics.cpu_capability',
    'machine.cpu_vendor', 'machine.gpu', ...)."""
    return {k: str(v) for k, v in tracking.flatten({"numerics": numerics_record(params),
                                                     "machine": numerics.machine()}).items()}


def dataset_input(params: dict, splits: Splits | FolderSplits) -> tuple[str, str, str | None]:
    """(name, digest, source folder or None for embedded data) of a stage's data set, for MLflow."""
    d = params["data"]
    return (f"{d['name']}-{splits.image_size}px", dataset_digest(splits),
            None if splits.source is None else str(splits.source))


def restored_runs(params: dict, name: str, lock: dict[str, dict], dataset) -> list[tuple]:
    """A skipped stage's MLflow runs rebuilt from dvc.lock and the tracked files (mlflow_sync):
    [(the params the stage read, [(step, metrics)], tags, artifacts, data set)], one run per
    fine-tuning seed as the stage logs them, else one. dataset() gives the data set's
    (name, digest, source), called only for a stage that read the data (`data` in its params).

    Tags name the stage and the CPU numerics (numerics.record). Metrics come from the stage's
    JSON outputs (strings become tags) and per-epoch curves (CSV
    under paths.metrics); the evaluate run also gets the params of the prune and finetune stages
    that made its network; prune and finetune attach their checkpoints, prune and evaluate their
    records, report, sweep and sensitivity their tables and plots.
    """
    stage, _, item = name.partition("@")
    # the network's name: the item, less the baseline in front of it (0-chip-r2, 0-resnet56-r1-chip)
    net_name = item.partition("-")[2] if "baseline" in params else item
    read = {k: v for values in lock[name].get("params", {}).values() for k, v in values.items()}
    if stage == "evaluate":  # and the params of the stages that made its network (one params.yaml: no clash)
        for upstream in ("prune", "finetune"):
            entry = lock.get(f"{upstream}@{item}", {})
            read.update({k: v for values in entry.get("params", {}).values() for k, v in values.items() if k not in read})
    nets = {n.name: n for n in config.networks(params)} if "prune" in params else {}
    # the CPU numerics its outputs were computed under: the params' mode (a changed mode re-runs
    # every stage), as this process, which verified it, records it (the same everywhere under portable)
    tags = {"stage": stage, **({"item": item} if item else {}),
            **({"baseline": str(params["baseline"])} if "baseline" in params else {}),
            **{k: str(v) for k, v in tracking.flatten({"numerics": numerics_record(params)}).items()}}
    if net_name in nets:
        net = nets[net_name]
        tags.update(criterion=net.criterion, setting=net.setting, sparsity=net.sparsity)
    files = []
    for out in lock[name].get("outs", []):
        path = Path(out["path"])
        files += sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
    data = dataset() if any(k.rsplit(".", 1)[-1] == "data" for k in read) else None
    if stage == "finetune" and net_name in nets:  # a run per seed: its checkpoint and its curve
        metrics_dir, net = Path(params["paths"]["metrics"]) / "finetune", nets[net_name]
        return [(*_restored(params, stage, read, {**tags, "seed": str(seed)}, [
            config.finetuned_file(params, net, seed), config.finetuned_file(params, net, seed, metrics_dir, ".csv")]),
            data) for seed in config.seeds(params)]
    return [(*_restored(params, stage, read, tags, files), data)]


def _restored(params: dict, stage: str, read: dict, tags: dict, files: list[Path]) -> tuple[dict, list, dict, list]:
    """One restored run from a stage's output files: JSON records, per-epoch curves, artifacts."""
    tags, metrics, artifacts = dict(tags), [], []
    curves = Path(params["paths"]["metrics"]) if "metrics" in params["paths"] else None
    for f in files:
        if f.suffix == ".json":
            values = tracking.flatten(json.loads(f.read_text()))
            metrics.append((None, {k: float(v) for k, v in values.items()
                                   if isinstance(v, (int, float)) and not isinstance(v, bool)}))
            tags.update({k: v for k, v in values.items() if isinstance(v, str) and k not in correctness.PER_IMAGE_FIELDS})
            if any(k in values for k in correctness.PER_IMAGE_FIELDS):  # prune's and evaluate's record itself,
                artifacts.append(f)  # per-image results included, as the stage logs it (not its latency file)
        elif f.suffix == ".csv" and curves is not None and curves in f.parents and _is_curve(f):  # (epoch, metrics) rows
            with f.open() as fh:
                metrics += [(int(row.pop("epoch")), {k: float(v) for k, v in row.items()}) for row in csv.DictReader(fh)]
        elif stage in ("prune", "finetune", "report", "sweep", "sensitivity", "ablation"):  # checkpoints (data only), tables and plots
            artifacts.append(f)
    return read, metrics, tags, artifacts


def _is_curve(path: Path) -> bool:
    """A per-epoch curve (its first column is `epoch`), not a table such as sensitivity.csv."""
    with path.open() as f:
        return f.readline().split(",", 1)[0].strip() == "epoch"


def code_fingerprint(stage: str, dvc_yaml: str | Path = "dvc.yaml") -> dict[str, str]:
    """{file: md5} of the code `stage` declares in dvc_yaml (stages run in its folder): its
    literal deps, the stage script and library files and folders, a folder standing for every
    .py file under it; paths as written there (paper/dvc.yaml's are '../'-relative). Templated
    deps (${paths.baseline}) are data, fingerprinted as the stage's inputs. foreach stages list
    their deps under do:, matrix stages directly. {} where there is no dvc_yaml or no such stage.
    """
    dvc_yaml = Path(dvc_yaml)
    if not dvc_yaml.is_file():
        return {}
    definition = (yaml.safe_load(dvc_yaml.read_text()) or {}).get("stages", {}).get(stage) or {}
    body = definition.get("do", definition)
    code = {}
    for dep in body.get("deps") or []:
        dep = next(iter(dep)) if isinstance(dep, dict) else str(dep)
        if "${" in dep:
            continue
        path = dvc_yaml.parent / dep
        if path.is_dir():
            for f in sorted(path.rglob("*.py")):
                code[f"{dep.rstrip('/')}/{f.relative_to(path).as_posix()}"] = checkpoint.file_hash(f)
        else:
            code[dep] = checkpoint.file_hash(path) if path.is_file() else "missing"
    return code


class ResumableTraining:
    """A training stage's run, resumable after a crash; the stage reads top to bottom:

        with pipeline.ResumableTraining(params, "finetune", net.name, sections, tags, output, inputs) as job:
            final = fit(model, ..., job.on_epoch, desc, job.state, job.save_state)
            if job.run:  # rank 0 writes the outputs; other torchrun ranks have no run
                checkpoint.save(output, ...); job.run.log_artifact(output)

    Entering loads the saved state (job.state: fit's state, None to start over) and opens the
    stage's MLflow run (continued when the state names one). fit hands each epoch's metrics to
    job.on_epoch and its state to job.save_state, which saves it, then sends the epoch's metrics.
    A clean exit sends what is left (a pretrained baseline's one evaluation has no state to
    save), closes the run and drops the states the outputs now replace.

    The resume file's fingerprint covers the stage's params sections and the md5 of its input
    files, and it records the stage's code (code_fingerprint), so a changed configuration or a
    changed code dependency starts over; the latter says so in one line.

    A fine-tuning seed's state outlives its outputs until the network's last seed is written:
    DVC deletes the network's whole output folder before it runs the stage again, so a stage
    interrupted at seed 2 would else train seeds 0 and 1 again. Their final states come back
    instead: fit() has no epoch left, the outputs are written again from them (the same bytes)
    and the seed's MLflow run is continued, not duplicated.
    """

    def __init__(self, params: dict, stage: str, item: str | None, sections: dict, tags: dict, output: Path,
                 inputs: list[Path], data: Splits | FolderSplits | None = None):
        self.params, self.stage, self.item, self.sections, self.tags, self.data = params, stage, item, sections, tags, data
        fingerprint = config.params_hash({"sections": sections, "inputs": [checkpoint.file_hash(p) for p in inputs]})
        # a network's fine-tuned checkpoints are one DVC output folder, which DVC deletes before a re-run: keep the state outside it
        folder = output.parent if stage == "finetune" else None
        self.resume = checkpoint.ResumeFile(output, fingerprint, code_fingerprint(stage), folder)
        self.run = None  # the stage's MLflow run (tracking.StageRun); None on the other torchrun ranks
        self.state: dict | None = None  # fit's state to resume from
        self.curve: list[dict] = []  # every epoch's metrics, the resumed ones first
        self._unsent: list[tuple[int, dict]] = []  # (epoch, metrics) the run has not received yet

    def __enter__(self) -> ResumableTraining:
        saved = self.resume.load()
        if self.resume.changed_code and distributed.is_main():
            changed = self.resume.changed_code
            print(f"{self.stage}: not resuming from {self.resume.path}: its code dependencies changed since it was "
                  f"saved ({', '.join(changed[:3])}{', ...' if len(changed) > 3 else ''}); training from the start",
                  file=sys.stderr)
        self.state = saved["train"] if saved else None
        self._exits = ExitStack()
        if distributed.is_main():  # other torchrun ranks train alongside rank 0 and write nothing
            self.curve = list(saved["curve"]) if saved else []
            self.run = self._exits.enter_context(stage_run(self.params, self.stage, self.sections, self.item, self.tags,
                                                           saved["mlflow_run_id"] if saved else None, self.data))
            # a resumed run first gets the epochs it never received (the store died before they were sent)
            logged = self.run.logged_steps("top1") if saved else set()
            self._unsent = [(epoch, m) for epoch, m in enumerate(self.curve) if epoch not in logged]
            self._send()
            self._exits.enter_context(ctrl_c)
        return self

    def on_epoch(self, epoch: int, metrics: dict) -> None:
        self.curve.append(metrics)
        self._unsent.append((epoch, metrics))

    def save_state(self, state: dict) -> None:
        """The epoch's state first, then its metrics: a store that dies mid-stage costs the
        logging, not the epoch."""
        self.resume.save(state, curve=self.curve, mlflow_run_id=self.run.run_id)
        self._send()
        if ctrl_c.pressed:  # a KeyboardInterrupt a library swallowed: stop now the epoch is saved
            raise KeyboardInterrupt

    def _send(self) -> None:
        while self._unsent:
            epoch, metrics = self._unsent[0]
            self.run.log_metrics(metrics, step=epoch)
            self._unsent.pop(0)

    def __exit__(self, exc_type, exc, tb) -> bool:
        raised_here = None
        if exc is None and self.run is not None:
            try:
                self._send()  # what is left: a pretrained baseline's one evaluation has no state to save
            except BaseException as e:  # the store died at the last send: the run ends as failed
                exc_type, exc, tb = raised_here = type(e), e, e.__traceback__
        if self._exits.__exit__(exc_type, exc, tb):  # ctrl_c restored, then the MLflow run closed
            return True
        if raised_here:
            raise exc
        if exc is None and self.run is not None:
            for path in _finished_states(self.params, self.stage, self.item, self.sections, self.resume):
                path.unlink(missing_ok=True)
        return False


class _CtrlC:
    """SIGINT as Python raises it (KeyboardInterrupt), remembered too: a library that catches
    BaseException (SQLAlchemy under MLflow, closing its transaction) may swallow the exception,
    and training would go on; ResumableTraining.save_state then stops after the epoch's state is saved."""

    pressed = False

    def __enter__(self):
        self._previous = None
        if threading.current_thread() is threading.main_thread():  # signal handlers live there
            self._previous = signal.signal(signal.SIGINT, self._note)
        return self

    def _note(self, signum, frame):
        type(self).pressed = True
        raise KeyboardInterrupt

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


ctrl_c = _CtrlC()


def _finished_states(params: dict, stage: str, item: str | None, sections: dict,
                     resume: checkpoint.ResumeFile) -> list[Path]:
    """The resume files done with once this seed's outputs are written: its own; for a
    fine-tuning seed, none until the network's last seed, then every seed's."""
    if stage != "finetune":
        return [resume.path]
    seeds = config.seeds(params)
    if sections["seed"] != seeds[-1]:
        return []
    net = next(n for n in config.networks(params) if n.name == item)
    states = []
    for seed in seeds:
        output = config.finetuned_file(params, net, seed)
        states.append(checkpoint.ResumeFile(output, "", folder=output.parent).path)
    return states


def load_baseline(params: dict) -> dict:
    """The baseline checkpoint (paths.baseline), refused in one line if it is not the unpruned
    model.arch that the params describe (another network's checkpoint put in its place)."""
    path, arch = params["paths"]["baseline"], params["model"]["arch"]
    ckpt = checkpoint.load(path)
    if ckpt["arch"] != arch or ckpt["widths"] != models.default_widths(arch):
        what = f"a {ckpt['arch']}" + ("" if ckpt["arch"] != arch else ", pruned,")
        raise config.ConfigError(f"{path}: {what} checkpoint, not the unpruned {arch} of model.arch; run "
                                 "`dvc repro` to train this baseline")
    return ckpt


def check_made_from(meta: dict, what: str | Path, baseline: str | Path) -> None:
    """Refuse an input (a features or scores file) that its producer made from another baseline
    than the one this stage reads, in one line naming both files, before anything is written.
    meta: the provenance the producer recorded, with the md5 of its baseline."""
    recorded, actual = meta.get("baseline_md5"), checkpoint.file_hash(baseline)
    if recorded != actual:
        made = f"md5 {recorded}" if recorded else "no recorded baseline"
        raise config.ConfigError(f"{what}: made from another baseline ({made}) than {baseline} (md5 {actual}); "
                                 "run `dvc repro` to make it again from this one")


def no_arguments(description: str) -> None:
    """A stage that takes no arguments: --help prints what it does, anything else is refused."""
    argparse.ArgumentParser(description=description).parse_args()


def _baseline_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--baseline", type=int, help="one of `baselines` in params.yaml, whose files the stage "
                        "reads and writes (optional where it lists one)")


def _resolved(params: dict, baseline: int | None) -> dict:
    """The default pipeline's params for --baseline (config.resolve; optional where `baselines` lists
    one); a paper experiment's are resolved already."""
    if "experiment" in params:
        return params
    return config.resolve(params, config.chosen_baseline(params["baselines"], baseline))


def experiment_stage(description: str, criterion: bool = False) -> tuple[dict, str | None]:
    """Params of a per-baseline stage (train_baseline, extract_features, score, sensitivity) and
    its --criterion, resolved for its baseline (config.resolve).

    Both pipelines name the baseline with --baseline; the paper pipeline also names its
    experiment with --experiment.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--experiment", help="paper pipeline: an entry of experiments: in params.yaml")
    _baseline_argument(parser)
    if criterion:
        parser.add_argument("--criterion", required=True)
    args = parser.parse_args()
    params = _resolved(config.load_params("params.yaml", args.experiment, args.baseline), args.baseline)
    if criterion and args.criterion not in params["prune"]["criteria"]:
        raise config.ConfigError(f"--criterion: {args.criterion!r} is not in prune.criteria {params['prune']['criteria']}")
    tracking.check_store(params["tracking"]["uri"])  # before any data or model loads
    return params, args.criterion if criterion else None


def network_stage(description: str) -> tuple[dict, config.Network]:
    """Params of a per-network stage (prune, finetune, evaluate) and its network: --criterion C
    --setting S in the default pipeline, --network <row>-<criterion> in the paper pipeline."""
    parser = argparse.ArgumentParser(description=description)
    _baseline_argument(parser)
    parser.add_argument("--criterion")
    parser.add_argument("--setting")
    parser.add_argument("--network", help="paper pipeline: <row>-<criterion>, a row of params.yaml and one of its criteria")
    args = parser.parse_args()
    if args.network is not None:
        paper = config.load_paper("params.yaml")
        networks = config.paper_networks(paper)
        if args.network not in networks:
            raise config.ConfigError(f"--network: {args.network!r} is not a row pruned by one of its criteria "
                                     f"({', '.join(networks)})")
        params = config.experiment_params(paper, networks[args.network]["experiment"], args.baseline)
        tracking.check_store(params["tracking"]["uri"])  # before any data or model loads
        return params, next(n for n in config.networks(params) if n.name == args.network)
    params = _resolved(config.load_params("params.yaml"), args.baseline)
    if args.criterion not in params["prune"]["criteria"]:
        raise config.ConfigError(f"--criterion: {args.criterion!r} is not in prune.criteria {params['prune']['criteria']}")
    if args.setting not in params["prune"]["settings"]:
        raise config.ConfigError(f"--setting: {args.setting!r} is not in prune.settings ({', '.join(params['prune']['settings'])})")
    tracking.check_store(params["tracking"]["uri"])  # before any data or model loads
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
