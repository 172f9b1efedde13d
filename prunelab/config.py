"""params.yaml: load, validate every key (one-line errors naming the key), and derive paths.

The only module that knows the file's layout; stages pass plain values on to the library.
"""

from __future__ import annotations

import copy
import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from prunelab import models
from prunelab.criteria import CRITERIA
from prunelab.data import DATASETS
from prunelab.engine import AMP_MODES, DEVICES
from prunelab.errors import PrunelabError
from prunelab.sparsity import parse_sparsity


class ConfigError(PrunelabError):
    pass


def _choice(*allowed):
    def check(key, v):
        if v not in allowed:
            raise ConfigError(f"{key}: {v!r} is not allowed; allowed: {', '.join(map(str, allowed))}")
    return check


def _int(lo: int):
    def check(key, v):
        if not isinstance(v, int) or isinstance(v, bool) or v < lo:
            raise ConfigError(f"{key}: must be an integer >= {lo}, got {v!r}")
    return check


def _float(lo: float, hi: float, lo_open: bool = False, hi_open: bool = True):
    def check(key, v):
        ok = isinstance(v, (int, float)) and not isinstance(v, bool)
        ok = ok and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
        if not ok:
            raise ConfigError(f"{key}: must be a number in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}, got {v!r}")
    return check


def _str(key, v):
    if not isinstance(v, str) or not v:
        raise ConfigError(f"{key}: must be a non-empty string, got {v!r}")


def _optional_str(key, v):
    if v is not None:
        _str(key, v)


def _bool(key, v):
    if not isinstance(v, bool):
        raise ConfigError(f"{key}: must be true or false, got {v!r}")


def _criteria(key, v):
    if not isinstance(v, list) or not v:
        raise ConfigError(f"{key}: must be a non-empty list; allowed items: {', '.join(CRITERIA)}")
    for c in v:
        _choice(*CRITERIA)(key, c)


def _settings(key, v):
    if not isinstance(v, dict) or not v:
        raise ConfigError(f"{key}: must map setting names to sparsity specs, e.g. r1: '[0.]+[0.15]*2+[0.4]*27'")
    for name, spec in v.items():
        if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"{key}: setting name {name!r} must be letters, digits, '-' and '_'")
        parse_sparsity(spec, f"{key}.{name}")


def _launcher(key, v):
    if not isinstance(v, str) or not v.split() or v.split()[0] not in ("python", "torchrun"):
        raise ConfigError(f"{key}: must be 'python' or a torchrun command such as "
                          f"'torchrun --standalone --nproc_per_node=4', got {v!r}")


def _channels_last(key, v):
    if v not in ("auto", True, False):
        raise ConfigError(f"{key}: {v!r} is not allowed; allowed: auto, true, false")


ENGINE = {"launcher": _launcher, "amp": _choice(*AMP_MODES), "channels_last": _channels_last, "compile": _bool,
          "sync_bn": _bool}

def _batch_sizes(key, v):
    if not isinstance(v, list) or not v or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in v):
        raise ConfigError(f"{key}: must be a non-empty list of integers >= 1, got {v!r}")


PATH_KEYS = ("data", "baseline", "features", "scores", "pruned", "finetuned", "metrics", "results")

_RECIPE = {
    "epochs": _int(1), "batch_size": _int(1), "lr": _float(0, 10, lo_open=True), "momentum": _float(0, 1),
    "weight_decay": _float(0, 1), "warmup_epochs": _float(0, 1e6), "label_smoothing": _float(0, 1),
}

SCHEMA: dict[str, Any] = {
    "seed": _int(0),
    "device": _choice(*DEVICES),
    "engine": ENGINE,
    "paths": {k: _str for k in PATH_KEYS},
    "tracking": {"uri": _str, "experiment": _str},
    "data": {"name": _choice(*DATASETS), "image_size": _int(4), "test_fraction": _float(0, 1, lo_open=True),
             "download": _bool, "eval_batch_size": _int(1)},
    "model": {"arch": _choice(*models.ARCHS), "pretrained": _optional_str},
    "train": _RECIPE,
    "features": {"num_images": _int(1), "batch_size": _int(1), "save_maps": _bool},
    "snpfi": {"calibration_images": _int(1), "permutations": _int(2), "ridge": _float(0, 1)},
    "latency": {"batch_sizes": _batch_sizes, "warmup": _int(0), "repeats": _int(0)},
    "prune": {"criteria": _criteria, "settings": _settings},
    "finetune": _RECIPE,
}


def _validate(node: Any, schema: Any, key: str) -> None:
    if isinstance(schema, dict):
        if not isinstance(node, dict):
            raise ConfigError(f"{key or 'params'}: must be a mapping with keys {', '.join(schema)}")
        for k in node:
            if k not in schema:
                raise ConfigError(f"{key + '.' if key else ''}{k}: unknown key; allowed: {', '.join(schema)}")
        for k, sub in schema.items():
            if k not in node:
                raise ConfigError(f"{key + '.' if key else ''}{k}: missing")
            _validate(node[k], sub, f"{key}.{k}" if key else k)
    else:
        schema(key, node)


def validate(params: dict) -> dict:
    _validate(params, SCHEMA, "")
    arch = params["model"]["arch"]
    size = 32 if params["data"]["name"] == "cifar10" else params["data"]["image_size"]
    if size < models.min_input_size(arch):
        raise ConfigError(f"data.image_size: {arch} needs inputs of at least {models.min_input_size(arch)} pixels, got {size}")
    for name, spec in params["prune"]["settings"].items():
        try:
            models.group_rates(arch, parse_sparsity(spec))
        except ValueError as e:
            raise ConfigError(f"prune.settings.{name}: {e}") from None
    return params


def read(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such params file")
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None


def load_params(path: str | Path = "params.yaml", experiment: str | None = None) -> dict:
    """Validated params of the default pipeline, or of one experiment of a paper params file."""
    params = load_any(path)
    if is_paper(params):
        if experiment is None:
            raise ConfigError(f"{path}: a paper params file; pass --experiment ({', '.join(params['experiments'])})")
        return experiment_params(params, experiment)
    if experiment is not None:
        raise ConfigError(f"--experiment: {path} has no experiments: (the paper pipeline's params live in paper/)")
    return params


def params_hash(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Network:
    """One pruned network: one entry of dvc.yaml's per-network stages.

    name: DVC's matrix item ('prune@<name>'), also the stem of the network's files and its MLflow
    run name: '<criterion>-<setting>' in the default pipeline, the row key in the paper's.
    """

    name: str
    criterion: str
    setting: str  # key of prune.settings
    sparsity: str

    def file(self, directory: str | Path, suffix: str) -> Path:
        return Path(directory) / f"{self.name}{suffix}"


def networks(params: dict) -> list[Network]:
    """Every pruned network, in dvc.yaml's order: criteria x settings, or the paper's rows."""
    settings = params["prune"]["settings"]
    if "rows" in params:
        return [Network(row, PAPER_CRITERION, row, settings[row]) for row in params["rows"]]
    return [Network(f"{c}-{s}", c, s, settings[s]) for c in params["prune"]["criteria"] for s in settings]


def seeds(params: dict) -> list[int]:
    """Fine-tuning seeds: the paper pipeline's `seeds`, else the one `seed`."""
    return list(params.get("seeds", [params["seed"]]))


def finetuned_file(params: dict, net: Network, seed: int, directory: str | Path | None = None,
                   suffix: str = ".pt") -> Path:
    """<finetuned>/<name>.pt for the default pipeline's one seed; <finetuned>/<name>/seed<S>.pt
    when the params list several seeds (one DVC output directory per network)."""
    directory = Path(params["paths"]["finetuned"] if directory is None else directory)
    if "seeds" in params:
        return directory / net.name / f"seed{seed}{suffix}"
    return net.file(directory, suffix)


# --- The paper pipeline (paper/params.yaml): experiments (one per model) and rows (one per
# pruned network of CHIP's table), resolved into the default pipeline's params per experiment.

PAPER_CRITERION = "chip"
SMOKE_BATCHES = 2  # batches per epoch and per evaluation in smoke mode


def _seed_list(key, v):
    if not isinstance(v, list) or not v or len(set(v)) != len(v):
        raise ConfigError(f"{key}: must be a non-empty list of distinct integers >= 0, got {v!r}")
    for s in v:
        _int(0)(key, s)


def _mapping(key, v):
    if not isinstance(v, dict):
        raise ConfigError(f"{key}: must be a mapping")


_EXPERIMENT = {k: SCHEMA[k] for k in ("model", "data", "train", "finetune")}

PAPER_SCHEMA: dict[str, Any] = {
    "seed": _int(0),
    "seeds": _seed_list,
    "device": SCHEMA["device"],
    "engine": ENGINE,
    "smoke": _bool,
    "paths": {"data": {name: _str for name in DATASETS if name != "digits"}, "runs": _str, "results": _str},
    "tracking": SCHEMA["tracking"],
    "features": SCHEMA["features"],
    "snpfi": SCHEMA["snpfi"],
    "latency": SCHEMA["latency"],
    "shared": _mapping,  # recipes and datasets for YAML anchors; checked where experiments use them
    "experiments": _mapping,
    "rows": _mapping,
}


def validate_paper(paper: dict) -> None:
    _validate(paper, PAPER_SCHEMA, "")
    if not paper["experiments"]:
        raise ConfigError("experiments: must name at least one experiment")
    for name, exp in paper["experiments"].items():
        _validate(exp, _EXPERIMENT, f"experiments.{name}")
        if exp["data"]["name"] == "digits":
            raise ConfigError(f"experiments.{name}.data.name: the paper uses cifar10, mnist or imagenet")
    for row, spec in paper["rows"].items():
        if not isinstance(row, str) or not row.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"rows: row name {row!r} must be letters, digits, '-' and '_'")
        _validate(spec, {"experiment": _choice(*paper["experiments"]), "sparsity": _str}, f"rows.{row}")
        arch = paper["experiments"][spec["experiment"]]["model"]["arch"]
        try:
            models.group_rates(arch, parse_sparsity(spec["sparsity"], f"rows.{row}.sparsity"))
        except ValueError as e:
            raise ConfigError(str(e) if str(e).startswith("rows.") else f"rows.{row}.sparsity: {e}") from None


def is_paper(params: dict) -> bool:
    return isinstance(params, dict) and "experiments" in params


def experiment_params(paper: dict, name: str) -> dict:
    """The default pipeline's params for one paper experiment: its model, data and recipes, its
    rows as prune settings, its outputs under paths.runs/<name>/; in smoke mode, synthetic data
    in the dataset's real format, one epoch of a few batches."""
    if name not in paper["experiments"]:
        raise ConfigError(f"--experiment: {name!r} is not in experiments ({', '.join(paper['experiments'])})")
    exp = copy.deepcopy(paper["experiments"][name])
    runs = Path(paper["paths"]["runs"])
    out = runs / name
    rows = {r: spec for r, spec in paper["rows"].items() if spec["experiment"] == name}
    params = {
        "seed": paper["seed"], "device": paper["device"], "engine": paper["engine"], "tracking": paper["tracking"],
        "paths": {"data": paper["paths"]["data"][exp["data"]["name"]], "baseline": str(out / "baseline.pt"),
                  "features": str(out / "features.pt"), "scores": str(out / "scores"), "pruned": str(out / "pruned"),
                  "finetuned": str(out / "finetuned"), "metrics": str(out / "metrics"),
                  "results": paper["paths"]["results"]},
        "data": exp["data"], "model": exp["model"], "train": exp["train"],
        "features": copy.deepcopy(paper["features"]), "snpfi": paper["snpfi"],
        "latency": copy.deepcopy(paper["latency"]),
        "prune": {"criteria": [PAPER_CRITERION], "settings": {r: spec["sparsity"] for r, spec in rows.items()}},
        "finetune": exp["finetune"],
    }
    if paper["smoke"]:
        smoke_data = runs / "smoke-data"
        params["paths"]["data"] = str(smoke_data / exp["data"]["name"])
        if params["model"]["pretrained"]:
            params["model"]["pretrained"] = str(smoke_data / f"{exp['model']['arch']}-weights.pth")
        params["data"].update(download=False, eval_batch_size=8)
        for recipe in (params["train"], params["finetune"]):
            recipe.update(epochs=1, batch_size=8, warmup_epochs=0)
        params["features"].update(num_images=8, batch_size=4)
        params["latency"] = {"batch_sizes": [1, 2], "warmup": 1, "repeats": 2}  # wiring, not a measurement
    if rows:
        validate({k: params[k] for k in SCHEMA})
    else:
        _validate({k: params[k] for k in SCHEMA if k != "prune"}, {k: v for k, v in SCHEMA.items() if k != "prune"}, "")
    params.update(experiment=name, rows=rows, seeds=list(paper["seeds"]), smoke=paper["smoke"])
    return params


def load_paper(path: str | Path) -> dict:
    paper = read(path)
    if not is_paper(paper):
        raise ConfigError(f"{path}: not a paper params file (no experiments:)")
    validate_paper(paper)
    return paper


def load_any(path: str | Path) -> dict:
    """A validated params file as it is: the default pipeline's, or a paper file (is_paper)."""
    raw = read(path)
    if is_paper(raw):
        validate_paper(raw)
        return raw
    return validate(raw)


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(); a PrunelabError becomes one line on stderr and exit code 2."""
    from prunelab import distributed

    try:
        main()
    except PrunelabError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        distributed.cleanup()  # under torchrun: leave the process group
