"""params.yaml: load, validate every key (one-line errors naming the key), and derive paths.

The only module that knows the file's layout; stages pass plain values on to the library. The
layout is declared as pydantic models (Params, Paper); validation returns the file's own dicts,
which the stages read.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_origin

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, WrapValidator, model_validator
from pydantic_core import PydanticCustomError

from prunelab import models, numerics, sweep
from prunelab.criteria import CRITERIA, SHAPLEY_CRITERIA
from prunelab.data import DATASETS, FIXED_SIZES, NUM_CLASSES
from prunelab.engine import AMP_MODES, DEVICES
from prunelab.errors import ConfigError, PrunelabError, short
from prunelab.paramsfile import MAX_PARAMS_BYTES, read  # noqa: F401  (config.read, config.MAX_PARAMS_BYTES)
from prunelab.sparsity import auto_target, is_auto, parse_sparsity


# --- The schema, declared with pydantic. Strict: YAML already gives every value its type, so
# nothing is coerced ('3' is not 3, true is not 1). Each constrained type carries the phrase its
# error shows, so a failure reads "<key>: must be an integer in [1, 4096], got 5000" whatever
# pydantic's own wording. Checks that span sections (a model's input size, a setting's rate
# count, auto: settings) follow in validate().


def _phrased(base: Any, phrase: str, *checks: Callable[[Any], Any], kind: str = "value", **constraints) -> Any:
    """`base` under pydantic's `constraints` and then `checks` (each raises ValueError); any
    failure is one error, shown as '<key>: <phrase>, got <value>' (kind 'value') or '<key>:
    <value> <phrase>' (kind 'choice')."""
    def rephrase(v, handler):
        try:
            return handler(v)
        except ValidationError as e:  # pydantic's own checks, and `checks` raising ValueError
            raise PydanticCustomError("prunelab", "{phrase}", {"phrase": phrase, "kind": kind,
                                                               "culprit": _culprit(v, e, base)}) from None
    return Annotated[base, Field(**constraints), *map(AfterValidator, checks), WrapValidator(rephrase)]


def _culprit(v: Any, e: ValidationError, base: Any) -> str:
    """What, in a list the phrase says must hold only certain items, is the wrong one ('' when
    the whole value is): "'hrnak' is not allowed" for [chip, hrnak]; "a string, not a list" for chip."""
    if isinstance(v, str) and get_origin(base) is list:
        return "a string, not a list"
    loc = e.errors(include_url=False)[0]["loc"]
    if isinstance(v, list) and loc and isinstance(loc[0], int) and loc[0] < len(v):
        return f"{short(v[loc[0]])} is not allowed"
    return ""


def _one_of(*allowed) -> Any:
    return _phrased(Literal[allowed], f"is not allowed; allowed: {', '.join(map(str, allowed))}", kind="choice")


def _int_in(lo: int, hi: int) -> Any:
    return _phrased(int, f"must be an integer in [{lo}, {hi}]", ge=lo, le=hi)


def _number_in(lo: float, hi: float, lo_open: bool = False, hi_open: bool = True) -> Any:
    bounds = {"gt" if lo_open else "ge": lo, "lt" if hi_open else "le": hi}
    return _phrased(float, f"must be a number in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}", **bounds)


def _distinct(items: list) -> list:
    if len(set(items)) != len(items):  # items already validated: ints, floats or strings
        raise ValueError("repeated item")
    return items


def _distinct_list(item: Any, phrase: str, lo: int, hi: int | None) -> Any:
    return _phrased(list[item], phrase, _distinct, min_length=lo, max_length=hi)


def _launcher_command(v: str) -> str:
    if not v.split() or v.split()[0] not in ("python", "torchrun"):
        raise ValueError("not a launcher")
    return v


def _is_name(v: Any) -> bool:
    """Letters, digits, '-' and '_', starting with a letter or digit: a part of file, folder and
    stage names, and of the stages' command lines (`--setting -x` would read as an option)."""
    return isinstance(v, str) and v[:1].isalnum() and v.replace("_", "").replace("-", "").isalnum()


def _name(v: str) -> str:
    if not _is_name(v):
        raise ValueError("not a name")
    return v


Text = _phrased(str, "must be a non-empty string", min_length=1)
Flag = _phrased(bool, "must be true or false")

# Upper bounds, checked before anything is allocated (the params check of a hostile file stays
# fast; a typo fails in the check, not in an allocation hours later):
# Seeds feed numpy's and scikit-learn's seeding, which take integers below 2**32.
MAX_SEED = 2**32 - 1
# Batches: 8x the largest batch of any recipe here (512, eval); one batch of 4096 ImageNet
# inputs is 2.4 GB before a single activation, CIFAR-size ResNet-110 activations about 25 GB.
MAX_BATCH = 4096
MAX_LATENCY_BATCHES = 16  # latency.batch_sizes: one timed series each
# Epochs: 30x the paper's longest recipe (300); more is a typo, not a schedule.
MAX_EPOCHS = 10_000
# features.num_images: 15x CHIP's 640; with save_maps every image keeps all its raw maps on the
# CPU (ResNet-56 at 32x32: about 1 MB an image).
MAX_FEATURE_IMAGES = 10_000
# snpfi.calibration_images: 32x the default 128; the Shapley game caches every layer's partial
# forward of the whole set (about 1 MB an image for ResNet-56 at 32x32).
MAX_CALIBRATION_IMAGES = 4096
MAX_PERMUTATIONS = 1000  # snpfi.permutations: a forward per channel each; time grows linearly
MAX_LATENCY_PASSES = 10_000  # latency.warmup and .repeats: 10,000 ResNet-50 passes at batch 256 is hours
MAX_SEEDS = 100  # `seeds`: each is a full fine-tuning of every network
# data.image_size: fixed-size datasets take their one size (FIXED_SIZES; the loader checks it);
# digits are 8x8 scans held in memory whole: bilinear upsampling past 8x adds nothing, and 64 px
# is 1,797 x 64 x 64 B = 7 MB (the 1500 px of a typo would be 4 GB of uint8, 16 GB while resized
# as float); ImageNet's JPEGs average about 400x350 px, so crops past 512 px only upsample.
MAX_IMAGE_SIZE = {**FIXED_SIZES, "digits": 64, "imagenet": 512}
# data.train_subset: the largest training split held in memory, (Fashion-)MNIST's; a dataset's
# own split size is checked when it is loaded (digits' depends on data.test_fraction).
MAX_TRAIN_SUBSET = 60_000
MAX_SWEEP_RATIOS = 50  # sweep.ratios: every ratio prunes and evaluates every criterion's networks
MAX_SENSITIVITY_RATES = 20  # sensitivity.rates: every rate prunes and evaluates once per rate slot
MAX_FAMILY = 10  # compare.family: each contrast divides the level Holm's first rejection needs

Seed = _int_in(0, MAX_SEED)
Seeds = _distinct_list(Annotated[int, Field(ge=0, le=MAX_SEED)], "must be a non-empty list of distinct integers in "
                       f"[0, {MAX_SEED}], at most {MAX_SEEDS} of them", 1, MAX_SEEDS)
Criteria = _distinct_list(Literal[tuple(CRITERIA)], f"must be a non-empty list of distinct criteria; allowed: "
                          f"{', '.join(CRITERIA)}", 1, len(CRITERIA))
Batch = _int_in(1, MAX_BATCH)
Epochs = _int_in(1, MAX_EPOCHS)
Images = _int_in(1, MAX_TRAIN_SUBSET)  # training images held in memory at once
Name = _phrased(str, "must be letters, digits, '-' and '_', starting with a letter or digit", _name, min_length=1)


class Section(BaseModel):
    """A params mapping: exactly its fields (an unknown key is a typo), strictly typed."""

    model_config = ConfigDict(strict=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _mapping_of_known_keys(cls, data: Any) -> Any:
        allowed = ", ".join(cls.model_fields)
        if not isinstance(data, dict):
            raise PydanticCustomError("prunelab", "{phrase}", {"phrase": f"must be a mapping with keys {allowed}",
                                                               "kind": "bare"})
        for k in data:
            if k not in cls.model_fields:
                raise PydanticCustomError("prunelab", "{phrase}", {"phrase": f"unknown key; allowed: {allowed}",
                                                                   "kind": "key", "key": _key(k)})
        return data


class Engine(Section):
    launcher: _phrased(str, "must be 'python' or a torchrun command such as 'torchrun --standalone "
                       "--nproc_per_node=4'", _launcher_command)
    amp: _one_of(*AMP_MODES)
    channels_last: _phrased(Literal["auto"] | bool, "is not allowed; allowed: auto, true, false", kind="choice")
    compile: Flag
    sync_bn: Flag
    cpu_numerics: _one_of(*numerics.MODES)


class Paths(Section):
    data: Text
    models: Text  # <models>/b<baseline>/: baseline.pt, features.pt, scores/, pruned/, finetuned/ (DVC-cached)
    metrics: Text  # <metrics>/b<baseline>/: each stage's records and curves (tracked in git)
    results: Text  # the tables and plots over every baseline


class Tracking(Section):
    uri: Text
    experiment: Text


class Data(Section):
    name: _one_of(*DATASETS)
    image_size: _int_in(4, max(MAX_IMAGE_SIZE.values()))  # each dataset's own bound: _image_size
    test_fraction: _number_in(0, 1, lo_open=True)
    download: Flag
    eval_batch_size: Batch
    train_subset: _phrased(Annotated[int, Field(ge=1, le=MAX_TRAIN_SUBSET)] | None,
                           f"must be an integer in [1, {MAX_TRAIN_SUBSET}] or null")  # its lower bound, the classes: _train_subset


class Model(Section):
    arch: _one_of(*models.ARCHS)
    pretrained: _phrased(Annotated[str, Field(min_length=1)] | None, "must be a non-empty string or null")


class Recipe(Section):
    epochs: Epochs
    batch_size: Batch
    lr: _number_in(0, 10, lo_open=True)
    momentum: _number_in(0, 1)
    weight_decay: _number_in(0, 1)
    warmup_epochs: _number_in(0, MAX_EPOCHS, hi_open=False)
    label_smoothing: _number_in(0, 1)


class Features(Section):
    num_images: _int_in(1, MAX_FEATURE_IMAGES)
    batch_size: Batch
    save_maps: Flag


class Snpfi(Section):
    calibration_images: _int_in(1, MAX_CALIBRATION_IMAGES)
    permutations: _int_in(2, MAX_PERMUTATIONS)
    ridge: _number_in(0, 1)


class Latency(Section):
    batch_sizes: _phrased(list[Annotated[int, Field(ge=1, le=MAX_BATCH)]], f"must be a list of 1 to "
                          f"{MAX_LATENCY_BATCHES} integers in [1, {MAX_BATCH}]", min_length=1, max_length=MAX_LATENCY_BATCHES)
    warmup: _int_in(0, MAX_LATENCY_PASSES)
    repeats: _int_in(0, MAX_LATENCY_PASSES)


class Prune(Section):
    criteria: Criteria
    # each spec is parsed in validate(): an auto: spec may name another setting
    settings: _phrased(dict[Name, Any], "must map setting names (letters, digits, '-' and '_', starting with a letter or digit) to sparsity specs, "
                       "e.g. r1: '[0.]+[0.15]*2+[0.4]*27'", min_length=1)


class Sweep(Section):
    baseline: Seed  # whose networks it prunes: one of `baselines`
    schemes: _distinct_list(str, "must be a non-empty list of distinct names: inner, or prune.settings names", 1, None)
    ratios: _distinct_list(Annotated[float, Field(ge=0, lt=1)], f"must be a list of 1 to {MAX_SWEEP_RATIOS} "
                           "distinct ratios in [0, 1)", 1, MAX_SWEEP_RATIOS)
    bn_images: Images
    finetune_epochs: _int_in(0, MAX_EPOCHS)


class Sensitivity(Section):
    criterion: _one_of(*(c for c in CRITERIA if c not in SHAPLEY_CRITERIA))
    rates: _distinct_list(Annotated[float, Field(gt=0, lt=1)], f"must be a list of 1 to {MAX_SENSITIVITY_RATES} "
                          "distinct rates in (0, 1)", 1, MAX_SENSITIVITY_RATES)
    images: Images
    bn_images: Images


class Ablation(Section):
    setting: Name  # the prune.settings entry whose rates (and MACs) the ablation prunes at


class Compare(Section):
    # [] declares none: every difference is then an estimate, none gets a verdict
    family: _distinct_list(str, f"must be a list of at most {MAX_FAMILY} distinct contrasts '<criterion> - <criterion> "
                           "@ <setting>', e.g. 'chip - random @ r2'", 0, MAX_FAMILY)


CONTRAST = re.compile(r"\s*([a-z0-9_]+)\s+-\s+([a-z0-9_]+)\s+@\s+(\S+)\s*")  # 'chip - random @ r2'


def contrasts(params: dict) -> list[tuple[str, str, str]]:
    """compare.family as (criterion A, criterion B, setting): A's top-1 minus B's at the setting."""
    return [CONTRAST.fullmatch(c).groups() for c in params.get("compare", {}).get("family", [])]


def _family(params: dict) -> None:
    criteria, settings = params["prune"]["criteria"], params["prune"]["settings"]
    seen = set()
    for text in params["compare"]["family"]:
        m = CONTRAST.fullmatch(text)
        if not m:
            raise ConfigError(f"compare.family: {short(text)} is not '<criterion> - <criterion> @ <setting>' "
                              "(e.g. 'chip - random @ r2')")
        a, b, setting = m.groups()
        for c in (a, b):
            if c not in criteria:
                raise ConfigError(f"compare.family: {text!r} names {c!r}, not in prune.criteria ({', '.join(criteria)})")
        if a == b:
            raise ConfigError(f"compare.family: {text!r} compares {a!r} with itself")
        if setting not in settings:
            raise ConfigError(f"compare.family: {text!r} names the setting {setting!r}, not in prune.settings "
                              f"({', '.join(settings)})")
        if (frozenset((a, b)), setting) in seen:
            raise ConfigError(f"compare.family: {text!r} is listed twice (A - B and B - A are one contrast)")
        seen.add((frozenset((a, b)), setting))


class Params(Section):
    """The default pipeline's params.yaml (and each paper experiment, resolved)."""

    seed: Seed  # the data: digits' test split and data.train_subset's draw, the same for every baseline
    baselines: Seeds  # independently trained baselines, the replicates every comparison pairs over
    seeds: Seeds  # fine-tuning runs per network and baseline (same seed, same data order)
    device: _one_of(*DEVICES)
    engine: Engine
    paths: Paths
    tracking: Tracking
    data: Data
    model: Model
    train: Recipe
    features: Features
    snpfi: Snpfi
    latency: Latency
    prune: Prune
    finetune: Recipe
    # Omittable (paper/'s experiments have neither stage): absent is None, never validated; an
    # explicit null is refused as not a mapping.
    sweep: Sweep = None
    sensitivity: Sensitivity = None
    compare: Compare = None  # the report's declared contrasts; paper/ has no comparison
    ablation: Ablation = None  # criterion, widths and recovery apart; paper/ has no ablation


class BaselineOnly(Params):
    """A paper experiment no row prunes: its baseline and features, nothing to prune or fine-tune."""

    seeds: Seeds = None
    prune: Prune = None


def _key(k: Any) -> str:
    """A mapping key as written in the file; short() of anything long or not a string."""
    return k if isinstance(k, str) and len(k) <= 40 and k.isprintable() else short(k)


def _check(model: type[BaseModel], node: Any) -> None:
    """Validate `node` against `model`; the first error, in the schema's order, as one ConfigError
    line naming its key: 'train.epochs: must be an integer in [1, 10000], got 0'."""
    try:
        model.model_validate(node)
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        key = ".".join(map(_key, err["loc"]))
        ctx = err.get("ctx") or {}
        if err["type"] == "missing":
            raise ConfigError(f"{key}: missing") from None
        if err["type"] != "prunelab":  # every field carries its phrase; pydantic's wording, should one not
            raise ConfigError(f"{key or 'params'}: {err['msg']}, got {short(err['input'])}") from None
        phrase, kind = ctx["phrase"], ctx["kind"]
        if kind == "key":  # the unknown key itself is the culprit
            raise ConfigError(f"{key + '.' if key else ''}{ctx['key']}: {phrase}") from None
        raise ConfigError({"bare": f"{key or 'params'}: {phrase}",
                           "choice": f"{key}: {short(err['input'])} {phrase}",
                           "value": f"{key}: {phrase}, got {short(err['input'])}"
                                    + (f" ({ctx['culprit']})" if ctx.get("culprit") else "")}[kind]) from None


def _image_size(data: dict, key: str) -> None:
    name, size = data["name"], data["image_size"]
    if name in MAX_IMAGE_SIZE and size > MAX_IMAGE_SIZE[name]:
        raise ConfigError(f"{key}.image_size: {name} takes at most {MAX_IMAGE_SIZE[name]} pixels, got {size}")


def _train_subset(data: dict, key: str) -> None:
    """train_subset: at least one image per class, and only for a dataset held in memory."""
    name, size = data["name"], data["train_subset"]
    if size is None:
        return
    if name not in NUM_CLASSES:
        raise ConfigError(f"{key}.train_subset: only for {', '.join(NUM_CLASSES)}; {name} takes null")
    if size < NUM_CLASSES[name]:
        raise ConfigError(f"{key}.train_subset: {name} has {NUM_CLASSES[name]} classes; take at least one image "
                          f"of each: null or an integer >= {NUM_CLASSES[name]}, got {size}")


# Training images of the data sets whose size is known before they load (ImageNet's is its
# folder's): digits' 1,797 minus the stratified hold-out, the others' training splits.
TRAINING_IMAGES = {"mnist": 60_000, "fashion_mnist": 60_000, "cifar10": 50_000}
DIGITS_IMAGES = 1797


def _image_counts(params: dict) -> None:
    """features.num_images and snpfi.calibration_images within the training images there are:
    checked here, not minutes into a stage when the loader runs out."""
    data = params["data"]
    name = data["name"]
    if name == "digits":
        available = DIGITS_IMAGES - math.ceil(data["test_fraction"] * DIGITS_IMAGES)  # data.stratified_split's
    elif name in TRAINING_IMAGES:
        available = TRAINING_IMAGES[name]
    else:
        return
    if data["train_subset"] is not None:
        available = min(available, data["train_subset"])
    for key in ("features.num_images", "snpfi.calibration_images"):
        section, field = key.split(".")
        if params[section][field] > available:
            raise ConfigError(f"{key}: {params[section][field]} images, but {name}'s training split holds {available} "
                              f"(data.test_fraction, data.train_subset); at most {available}")


def validate(params: dict) -> dict:
    """The default pipeline's params (or a paper experiment's, resolved): the schema, then the
    checks that span sections. Returns `params` as given (strict: nothing was coerced)."""
    _check(Params, params)
    _image_size(params["data"], "data")
    _train_subset(params["data"], "data")
    _image_counts(params)
    arch = params["model"]["arch"]
    data = params["data"]["name"]
    size = FIXED_SIZES.get(data, params["data"]["image_size"])  # the side of the images the model gets
    try:
        models.check_input(arch, size, size)
    except ValueError as e:
        raise ConfigError(f"model.arch: {e} (data.name {data})") from None
    settings = params["prune"]["settings"]
    for name, spec in settings.items():
        if is_auto(spec):
            _auto_setting(params, name, spec, size)
            continue
        rates = parse_sparsity(spec, f"prune.settings.{name}")
        try:
            models.group_rates(arch, rates)
        except ValueError as e:
            raise ConfigError(f"prune.settings.{name}: {e}") from None
    if "sensitivity" in params and params["sensitivity"]["criterion"] not in params["prune"]["criteria"]:
        raise ConfigError(f"sensitivity.criterion: {params['sensitivity']['criterion']!r} is not in prune.criteria "
                          f"({', '.join(params['prune']['criteria'])}): its scores are not computed")
    if "compare" in params:
        _family(params)
    if "ablation" in params and params["ablation"]["setting"] not in settings:
        raise ConfigError(f"ablation.setting: {params['ablation']['setting']!r} is not in prune.settings "
                          f"({', '.join(settings)})")
    if "sweep" in params and params["sweep"]["baseline"] not in params["baselines"]:
        raise ConfigError(f"sweep.baseline: {params['sweep']['baseline']} is not in baselines "
                          f"({', '.join(map(str, params['baselines']))})")
    for scheme in params.get("sweep", {}).get("schemes", []):
        if is_auto(settings.get(scheme)):
            raise ConfigError(f"sweep.schemes: {scheme!r} is an auto: setting; the sweep scales a setting's hand-set "
                              "rates (inner, or a setting with rates)")
        try:
            sweep.scheme_rates(arch, scheme, 0.5, params["prune"]["settings"])
        except ValueError as e:
            raise ConfigError(f"sweep.schemes: {e}") from None
    return params


def _auto_setting(params: dict, name: str, spec: str, size: int) -> None:
    """An auto: setting needs the sensitivity stage, and a reduction its largest rates reach: every
    slot at max(sensitivity.rates) is the most the measured grid can remove (counted exactly)."""
    key = f"prune.settings.{name}"
    if "sensitivity" not in params:
        raise ConfigError(f"{key}: {short(spec)} needs the sensitivity: section (the stage that measures what auto: picks from)")
    target = auto_target(spec, key, params["prune"]["settings"])
    if isinstance(target, str):  # a setting's own reduction, which its rates (all < 1) reach
        return
    from prunelab import sensitivity  # its counting builds models: only for a numeric auto: target
    arch, data = params["model"]["arch"], params["data"]["name"]
    in_ch = 3 if data in ("cifar10", "imagenet") else 1
    widths = models.default_widths(arch)
    most = sensitivity.macs_reduction(arch, [max(params["sensitivity"]["rates"])] * sensitivity.num_slots(arch),
                                      widths, (in_ch, size, size), in_ch, NUM_CLASSES.get(data, 1000))
    if 100 * target > most:
        raise ConfigError(f"{key}: {short(spec)} asks for {100 * target:.1f}% of the MACs; every slot at the largest "
                          f"of sensitivity.rates ({max(params['sensitivity']['rates'])}) removes {most:.1f}%")


def setting_rates(params: dict, setting: str) -> list[float]:
    """A prune.settings entry's rates: its own, or for an auto: setting the ones the sensitivity
    stage picked for this baseline (<metrics>/b<baseline>/sensitivity.json). params: resolved."""
    spec = params["prune"]["settings"][setting]
    if not is_auto(spec):
        return parse_sparsity(spec, f"prune.settings.{setting}")
    path = Path(params["paths"]["metrics"]) / "sensitivity.json"
    try:
        picked = json.loads(path.read_text())["auto"][setting]
    except (OSError, ValueError, KeyError):
        raise ConfigError(f"prune.settings.{setting}: {short(spec)} has no rates in {path}: run the sensitivity "
                          "stage first (dvc repro runs it before prune)") from None
    if picked.get("spec") != spec:
        raise ConfigError(f"prune.settings.{setting}: {path} holds the rates of {short(picked.get('spec'))}, "
                          f"not {short(spec)}: re-run the sensitivity stage")
    return parse_sparsity(picked["rates"], f"{path}: auto.{setting}.rates")


def load_params(path: str | Path = "params.yaml", experiment: str | None = None, baseline: int | None = None) -> dict:
    """Validated params of the default pipeline, or of one experiment and baseline of a paper
    params file (experiment_params)."""
    params = load_any(path)
    if is_paper(params):
        if experiment is None:
            raise ConfigError(f"{path}: a paper params file; pass --experiment ({', '.join(params['experiments'])})")
        return experiment_params(params, experiment, baseline)
    if experiment is not None:
        raise ConfigError(f"--experiment: {path} has no experiments: (the paper pipeline's params live in paper/)")
    return params


def baseline_folder(baseline: int) -> str:
    return f"b{baseline}"


def chosen_baseline(baselines: list[int], baseline: int | None) -> int:
    """A stage's --baseline: as given, or the one there is where `baselines` lists one."""
    if baseline is None and len(baselines) == 1:
        return baselines[0]
    if baseline is None:
        raise ConfigError(f"--baseline: required, one of baselines ({', '.join(map(str, baselines))})")
    return baseline


def resolve(params: dict, baseline: int) -> dict:
    """The params one stage runs with, for one baseline: `seed` becomes the baseline's seed (its
    training, feature images, scores, random draws and SNPFI game), `data_seed` keeps the data's
    seed, `baseline` names it, and `paths` spell out its files: baseline, features, scores,
    pruned, finetuned under <models>/b<baseline>/, metrics under <metrics>/b<baseline>/.
    Everything else as given (validated)."""
    if baseline not in params["baselines"]:
        raise ConfigError(f"--baseline: {short(baseline)} is not in baselines ({', '.join(map(str, params['baselines']))})")
    paths = params["paths"]
    models = Path(paths["models"]) / baseline_folder(baseline)
    metrics = Path(paths["metrics"]) / baseline_folder(baseline)
    resolved = copy.deepcopy(params)
    resolved.update(seed=baseline, data_seed=params["seed"], baseline=baseline)
    resolved["paths"] = {"data": paths["data"], "baseline": str(models / "baseline.pt"), "features": str(models / "features.pt"),
                         "scores": str(models / "scores"), "pruned": str(models / "pruned"),
                         "finetuned": str(models / "finetuned"), "metrics": str(metrics), "results": paths["results"]}
    return resolved


def params_hash(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Network:
    """One pruned network: one entry of dvc.yaml's per-network stages.

    name: DVC's matrix item ('prune@<name>'), also the stem of the network's files and its MLflow
    run name: '<criterion>-<setting>' in the default pipeline, '<row>-<criterion>' in the paper's.
    """

    name: str
    criterion: str
    setting: str  # key of prune.settings
    sparsity: str

    def file(self, directory: str | Path, suffix: str) -> Path:
        return Path(directory) / f"{self.name}{suffix}"


def networks(params: dict) -> list[Network]:
    """Every pruned network, in dvc.yaml's order: criteria x settings, or the paper's rows, each
    row x its criteria (paper_networks)."""
    settings = params["prune"]["settings"]
    if "rows" in params:  # a paper experiment: its rows are its settings
        return [Network(f"{row}-{c}", c, row, settings[row]) for row, spec in params["rows"].items() for c in spec["criteria"]]
    return [Network(f"{c}-{s}", c, s, settings[s]) for c in params["prune"]["criteria"] for s in settings]


def draw_seed(baseline: int, seed: int) -> int:
    """The seed of random's channel draw for fine-tuning seed `seed` of baseline `baseline`: a
    draw of its own per pair (baseline 0's is the seed itself), within numpy's 32-bit range."""
    return (baseline * 1_000_003 + seed) % 2**32


def seeds(params: dict) -> list[int]:
    """Fine-tuning seeds (same seed, same data order for every network)."""
    return list(params["seeds"])


def _per_seed_file(params: dict, net: Network, seed: int, directory: str | Path, suffix: str) -> Path:
    """<directory>/<name>/seed<S><suffix>: one DVC output directory per network."""
    return Path(directory) / net.name / f"seed{seed}{suffix}"


def pruned_file(params: dict, net: Network, seed: int) -> Path:
    """The pruned network that fine-tuning seed `seed` starts from, one per seed: a criterion that
    draws its channels from the seed (criteria.SEED_DRAWN) prunes a different network for each; the
    others write the same network once per seed."""
    return _per_seed_file(params, net, seed, params["paths"]["pruned"], ".pt")


def finetuned_file(params: dict, net: Network, seed: int, directory: str | Path | None = None,
                   suffix: str = ".pt") -> Path:
    """Fine-tuning seed `seed`'s network (or, with `directory` and `suffix`, its curve)."""
    return _per_seed_file(params, net, seed, params["paths"]["finetuned"] if directory is None else directory, suffix)


# --- The paper pipeline (paper/params.yaml): experiments (one per model) and rows (one per
# pruned network of CHIP's table), resolved into the default pipeline's params per experiment.

SMOKE_BATCHES = 2  # batches per epoch and per evaluation in smoke mode


PAPER_DATASETS = ("cifar10", "mnist", "imagenet")  # CHIP's; paths.data names a folder for each


class Experiment(Section):
    """One model of the paper: its baseline's data and recipes."""

    model: Model
    data: Data
    train: Recipe
    finetune: Recipe


class Row(Section):
    experiment: Text  # one of experiments: (checked in validate_paper)
    sparsity: Text
    criteria: Criteria = None  # omittable: the file's criteria:


class PaperData(Section):
    cifar10: Text
    mnist: Text
    imagenet: Text


class PaperPaths(Section):
    data: PaperData
    runs: Text
    results: Text


def _mapping_of(value: Any, phrase: str) -> Any:
    """A mapping whose values are checked as `value` (their errors keep their own keys); the
    mapping itself, if it is not one or is empty, fails with `phrase`. Keys are checked by the
    caller: they name folders and stages."""
    def rephrase(v, handler):
        if not isinstance(v, dict) or not v:
            raise PydanticCustomError("prunelab", "{phrase}", {"phrase": phrase, "kind": "value"})
        return handler(v)
    return Annotated[dict[Any, value], WrapValidator(rephrase)]


class Paper(Section):
    """paper/params.yaml: shared settings, one experiment per model, and the rows of the tables."""

    seed: Seed  # the data (as the default pipeline's `seed`)
    baselines: Seeds  # independently trained baselines of every experiment, the replicates
    seeds: Seeds
    device: _one_of(*DEVICES)
    engine: Engine
    smoke: Flag
    criteria: Criteria  # every row is pruned by each, unless the row names its own criteria
    paths: PaperPaths
    tracking: Tracking
    features: Features
    snpfi: Snpfi
    latency: Latency
    shared: _phrased(dict, "must be a mapping")  # recipes and datasets for YAML anchors; checked where used
    experiments: _mapping_of(Experiment, "must map experiment names to experiments, at least one")
    rows: _mapping_of(Row, "must map row names to rows, at least one")


# paper rows: 15 in CHIP's and SNPFI's tables. Each row x criterion is a network with three
# stages, which DVC expands and hashes on every `dvc status`: 2,800 rows made it silent for
# minutes, so the bound is 10x the tables, at most MAX_PAPER_NETWORKS networks in all.
MAX_PAPER_ROWS = 150
MAX_PAPER_NETWORKS = 500


def validate_paper(paper: dict) -> None:
    _check(Paper, paper)
    if len(paper["rows"]) > MAX_PAPER_ROWS:
        raise ConfigError(f"rows: {len(paper['rows'])} rows; at most {MAX_PAPER_ROWS} (every row is stages DVC "
                          "expands on every command)")
    for name, exp in paper["experiments"].items():
        if not _is_name(name):  # a folder of paths.runs
            raise ConfigError(f"experiments: experiment name {short(name)} must be letters, digits, '-' and '_', starting with a letter or digit")
        _image_size(exp["data"], f"experiments.{name}.data")
        _train_subset(exp["data"], f"experiments.{name}.data")
        if exp["data"]["name"] not in PAPER_DATASETS:
            raise ConfigError(f"experiments.{name}.data.name: the paper uses {', '.join(PAPER_DATASETS)}")
    for row, spec in paper["rows"].items():
        if not _is_name(row):  # a part of stage and file names
            raise ConfigError(f"rows: row name {short(row)} must be letters, digits, '-' and '_', starting with a letter or digit")
        if spec["experiment"] not in paper["experiments"]:
            raise ConfigError(f"rows.{row}.experiment: {short(spec['experiment'])} is not allowed; "
                              f"allowed: {', '.join(paper['experiments'])}")
        arch = paper["experiments"][spec["experiment"]]["model"]["arch"]
        try:
            models.group_rates(arch, parse_sparsity(spec["sparsity"], f"rows.{row}.sparsity"))
        except ValueError as e:
            raise ConfigError(str(e) if str(e).startswith("rows.") else f"rows.{row}.sparsity: {e}") from None
    networks = sum(len(row_criteria(paper, row)) for row in paper["rows"]) * len(paper["baselines"])
    if networks > MAX_PAPER_NETWORKS:
        raise ConfigError(f"rows: {networks} networks (rows x their criteria x baselines); at most {MAX_PAPER_NETWORKS}")


def is_paper(params: dict) -> bool:
    return isinstance(params, dict) and "experiments" in params


def row_criteria(paper: dict, row: str) -> list[str]:
    """The criteria a paper row is pruned by: its own criteria:, else the file's."""
    return list(paper["rows"][row].get("criteria", paper["criteria"]))


def paper_networks(paper: dict) -> dict[str, dict[str, str]]:
    """'<row>-<criterion>' -> {row, experiment, criterion}: every row pruned by each of its
    criteria, in the rows' order. Unique: a row name holds letters, digits, '-' and '_', and no
    criterion name holds a '-', so the name splits back into one row and one criterion."""
    return {f"{row}-{c}": {"row": row, "experiment": spec["experiment"], "criterion": c}
            for row, spec in paper["rows"].items() for c in row_criteria(paper, row)}


def paper_scores(paper: dict) -> dict[str, dict[str, str]]:
    """'<experiment>-<criterion>' -> {experiment, criterion}: the scores the networks prune with,
    computed once per experiment and shared by its rows."""
    return {f"{n['experiment']}-{n['criterion']}": {"experiment": n["experiment"], "criterion": n["criterion"]}
            for n in paper_networks(paper).values()}


def paper_dvc_vars(paper: dict) -> list[dict]:
    """paper/dvc.yaml's `vars:`, the lists its per-model, per-score and per-network stages run
    over (`foreach: ${models}`, `${scores}`, `${networks}`), each for every baseline, the
    baseline first in its name as in the default pipeline ('0-resnet56', '0-resnet56-chip',
    '0-resnet56-r1-chip'): DVC cannot look a row's experiment up from a matrix item, so
    tools/write_pipelines.py writes them out from params.yaml."""
    per_model = {f"{b}-{e}": {"baseline": b, "experiment": e} for b in paper["baselines"] for e in paper["experiments"]}
    scores = {f"{b}-{name}": {"baseline": b, **item} for b in paper["baselines"] for name, item in paper_scores(paper).items()}
    networks = {f"{b}-{name}": {"baseline": b, "network": name, **item}
                for b in paper["baselines"] for name, item in paper_networks(paper).items()}
    return [{"models": per_model}, {"scores": scores}, {"networks": networks}]


def check_paper_dvc_yaml(paper: dict, path: str | Path) -> None:
    """The dvc.yaml beside a paper params file runs the networks that file asks for; a stale one
    (criteria or rows edited, the tool not re-run) is refused before any stage runs."""
    try:
        found = yaml.safe_load(Path(path).read_text()).get("vars")
    except (OSError, yaml.YAMLError, AttributeError) as e:
        raise ConfigError(f"{path}: not a readable dvc.yaml ({short(str(e))})") from None
    if found != paper_dvc_vars(paper):
        raise ConfigError(f"{path}: its models, scores and networks are not params.yaml's baselines x rows x criteria; run "
                          "`python tools/write_pipelines.py` from the repository root, then `dvc repro` again")


def experiment_params(paper: dict, name: str, baseline: int | None = None) -> dict:
    """The default pipeline's params for one paper experiment and one of its baselines (config.resolve;
    optional where `baselines` lists one): its model, data and recipes, its rows as prune
    settings, its files under paths.runs/<name>/b<baseline>/ and its records under
    paths.runs/<name>/metrics/b<baseline>/; in smoke mode, synthetic data in the dataset's real
    format, one epoch of a few batches."""
    if name not in paper["experiments"]:
        raise ConfigError(f"--experiment: {short(name)} is not in experiments ({', '.join(paper['experiments'])})")
    baseline = chosen_baseline(paper["baselines"], baseline)
    exp = copy.deepcopy(paper["experiments"][name])
    runs = Path(paper["paths"]["runs"])
    out = runs / name
    # rows: {row: {experiment, sparsity, criteria}}, each row's criteria resolved (row_criteria)
    rows = {r: {**spec, "criteria": row_criteria(paper, r)} for r, spec in paper["rows"].items() if spec["experiment"] == name}
    used = list(dict.fromkeys(c for spec in rows.values() for c in spec["criteria"]))  # scored on this experiment
    params = {
        "seed": paper["seed"], "baselines": list(paper["baselines"]), "seeds": list(paper["seeds"]), "device": paper["device"],
        "engine": paper["engine"], "tracking": paper["tracking"],
        "paths": {"data": paper["paths"]["data"][exp["data"]["name"]], "models": str(out), "metrics": str(out / "metrics"),
                  "results": paper["paths"]["results"]},
        "data": exp["data"], "model": exp["model"], "train": exp["train"],
        "features": copy.deepcopy(paper["features"]), "snpfi": copy.deepcopy(paper["snpfi"]),
        "latency": copy.deepcopy(paper["latency"]),
        "prune": {"criteria": used, "settings": {r: spec["sparsity"] for r, spec in rows.items()}},
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
        # SNPFI's game costs a partial forward per channel, permutation and image: ResNet-50 has
        # 26,000 channels, so the smoke game takes 2 images, 2 permutations and 32 px ImageNet crops
        params["snpfi"].update(calibration_images=2, permutations=2)
        if exp["data"]["name"] == "imagenet":
            params["data"]["image_size"] = 32
        params["latency"] = {"batch_sizes": [1, 2], "warmup": 1, "repeats": 2}  # wiring, not a measurement
    if rows:
        validate(params)  # without sweep: and sensitivity: (paper/ has neither stage)
    else:
        _check(BaselineOnly, {k: v for k, v in params.items() if k not in ("prune", "seeds")})
    params = resolve(params, baseline)
    params.update(experiment=name, rows=rows, smoke=paper["smoke"])
    return params


def check_outputs(params: dict, project: str | Path) -> None:
    """Every output path under `paths` (all but the data root, which may be read from anywhere)
    resolves inside `project`, the folder holding the params file: DVC runs the stages there, so
    relative paths start there; an absolute path, a '..' or a symlink that leads out is refused."""
    root = Path(project).resolve()
    for key, value in params["paths"].items():
        if key == "data":
            continue
        try:
            target = (root / value).resolve()
        except (OSError, ValueError) as e:  # a NUL byte, a symlink loop
            raise ConfigError(f"paths.{key}: {short(value)} is not a usable path ({e})") from None
        if target != root and root not in target.parents:
            raise ConfigError(f"paths.{key}: {short(value)} resolves to {short(str(target))}, outside the project "
                              f"folder {root}; outputs are written inside it")


def load_paper(path: str | Path) -> dict:
    paper = read(path)
    if not is_paper(paper):
        raise ConfigError(f"{path}: not a paper params file (no experiments:)")
    validate_paper(paper)
    check_outputs(paper, Path(path).parent)
    return paper


def load_any(path: str | Path) -> dict:
    """A validated params file as it is: the default pipeline's, or a paper file (is_paper); its
    outputs inside its folder (check_outputs)."""
    raw = read(path)
    if is_paper(raw):
        validate_paper(raw)
    else:
        validate(raw)
    check_outputs(raw, Path(path).parent)
    return raw


def run_stage(main: Callable[[], None]) -> None:
    """Check that the CPU numerics the params ask for took effect (numerics.prepare() ran first),
    then run a stage's main(); a PrunelabError becomes one line on stderr and exit code 2."""
    from prunelab import distributed, numerics

    try:
        mode = numerics.read_mode()  # None: no usable params file, which main()'s own check reports
        if mode is not None:
            numerics.verify(mode)
        main()
    except PrunelabError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:  # Ctrl-C: one line, not a traceback through PyTorch; 130 as a shell says
        print("interrupted: a training stage resumes from its last finished epoch on the next run", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        distributed.cleanup()  # under torchrun: leave the process group
