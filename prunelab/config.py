"""params.yaml: load, validate every key (one-line errors naming the key), and derive paths.

The only module that knows the file's layout; stages pass plain values on to the library.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from prunelab import models
from prunelab.criteria import CRITERIA
from prunelab.data import DATASETS
from prunelab.engine import DEVICES
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
        if not isinstance(name, str) or not name.replace("_", "").isalnum():
            raise ConfigError(f"{key}: setting name {name!r} must be letters, digits and '_'")
        parse_sparsity(spec, f"{key}.{name}")


PATH_KEYS = ("data", "baseline", "features", "scores", "pruned", "finetuned", "metrics", "results")

_RECIPE = {
    "epochs": _int(1), "batch_size": _int(1), "lr": _float(0, 10, lo_open=True), "momentum": _float(0, 1),
    "weight_decay": _float(0, 1), "warmup_epochs": _float(0, 1e6), "label_smoothing": _float(0, 1),
}

SCHEMA: dict[str, Any] = {
    "seed": _int(0),
    "device": _choice(*DEVICES),
    "paths": {k: _str for k in PATH_KEYS},
    "tracking": {"uri": _str, "experiment": _str},
    "data": {"name": _choice(*DATASETS), "image_size": _int(4), "test_fraction": _float(0, 1, lo_open=True),
             "download": _bool, "eval_batch_size": _int(1)},
    "model": {"arch": _choice(*models.ARCHS), "pretrained": _optional_str},
    "train": _RECIPE,
    "features": {"num_images": _int(1), "batch_size": _int(1), "save_maps": _bool},
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


def load_params(path: str | Path = "params.yaml") -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such params file")
    try:
        params = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    return validate(params or {})


def params_hash(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]


def item_name(criterion: str, setting: str) -> str:
    """The matrix item of dvc.yaml's per-network stages, as DVC names it: prune@<item>."""
    return f"{criterion}-{setting}"


def items(params: dict) -> list[tuple[str, str]]:
    """(criterion, setting) of every pruned network, in dvc.yaml's matrix order."""
    return [(c, s) for c in params["prune"]["criteria"] for s in params["prune"]["settings"]]


def item_file(directory: str | Path, criterion: str, setting: str, suffix: str) -> Path:
    """<directory>/<criterion>-<setting><suffix>: one file per pruned network (dvc.yaml says the same)."""
    return Path(directory) / f"{item_name(criterion, setting)}{suffix}"


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(); a PrunelabError becomes one line on stderr and exit code 2."""
    try:
        main()
    except PrunelabError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
