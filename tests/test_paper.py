"""The paper pipeline (paper/): every CHIP row wired to the stages, with PAPER.md's recipes;
its smoke mode reproduced end to end on synthetic data in the real on-disk formats."""

import csv
import io
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import oracles
import pytest
import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from helpers import BIN, ROOT, copy_paper_project, dvc, env, with_paper_vars
from prunelab import config, models, paper, synthetic
from prunelab.errors import PrunelabError
from prunelab.sparsity import parse_sparsity

PAPER_PARAMS = ROOT / "paper" / "params.yaml"

# CHIP's pruned rows as PAPER.md ("CHIP's rows") gives them: (model, sparsity, top-1 the paper
# reports), and the exact counts it gives for ResNet-56: sparsity -> (params, FLOPs in its thop
# convention). Typed from the paper, the independent source; prunelab.paper is what is checked.
PAPER_ROWS = [
    ("resnet56", "[0.]+[0.15]*2+[0.4]*27", 94.16),
    ("resnet56", "[0.]+[0.4]*2+[0.5]*9+[0.6]*9+[0.7]*9", 92.43),
    ("resnet110", "[0.]+[0.2]*2+[0.3]*18+[0.35]*36", 94.50),
    ("resnet110", "[0.]+[0.22]*2+[0.35]*18+[0.45]*36", 94.44),
    ("resnet110", "[0.]+[0.4]*2+[0.5]*18+[0.65]*36", 93.23),
    ("vgg16", "[0.21]*7+[0.75]*5", 93.86),
    ("vgg16", "[0.3]*7+[0.75]*5", 93.72),
    ("vgg16", "[0.45]*7+[0.78]*5", 93.18),
    ("resnet50", "[0.]+[0.1]*3+[0.35]*16", 76.41),
    ("resnet50", "[0.]+[0.12]*3+[0.38]*16", 76.35),
    ("resnet50", "[0.]+[0.25]*3+[0.5]*16", 75.26),
    ("resnet50", "[0.]+[0.5]*3+[0.6]*16", 73.30),
]
PAPER_RESNET56_COUNTS = {"[0.]+[0.15]*2+[0.4]*27": (485_413, 65_939_968),
                         "[0.]+[0.4]*2+[0.5]*9+[0.6]*9+[0.7]*9": (240_793, 34_785_856)}


def paper_row(model: str, sparsity: str) -> tuple[str, str, float]:
    rates = parse_sparsity(sparsity)
    return next(r for r in PAPER_ROWS if r[0] == model and parse_sparsity(r[1]) == rates)


@pytest.fixture(scope="module")
def paper_params():
    return config.load_paper(PAPER_PARAMS)


# SNPFI's systems (PAPER.md): model, dataset; every criterion prunes each at one shared budget
SNPFI_SYSTEMS = {"alexnet": "mnist", "mobilenet_v1": "cifar10", "resnet50": "imagenet"}


def _arch(paper_params, row: dict) -> str:
    return paper_params["experiments"][row["experiment"]]["model"]["arch"]


def test_one_row_per_pruned_row_of_chips_table(paper_params):
    chip_table = {(a, tuple(parse_sparsity(s))) for a, s, _ in PAPER_ROWS}
    chip_rows = [r for r in paper_params["rows"].values()
                 if (_arch(paper_params, r), tuple(parse_sparsity(r["sparsity"]))) in chip_table]
    ours = sorted((_arch(paper_params, r), parse_sparsity(r["sparsity"])) for r in chip_rows)
    theirs = sorted((arch, parse_sparsity(s)) for arch, s, _ in PAPER_ROWS)
    assert ours == theirs and len(ours) == 12
    # pruned by params.yaml's criteria, CHIP by default: each is a network of CHIP's table
    assert paper_params["criteria"] == ["chip"] and not any("criteria" in r for r in chip_rows)
    assert sum(n["criterion"] == "chip" and n["row"] in {k for k, r in paper_params["rows"].items() if r in chip_rows}
               for n in config.paper_networks(paper_params).values()) == 12
    assert sorted((a, parse_sparsity(s), t) for a, s, t in paper.CHIP_ROWS if s is not None) == \
        sorted((a, parse_sparsity(s), t) for a, s, t in PAPER_ROWS)


def test_snpfis_systems_at_60_percent_with_every_criterion(paper_params):
    """AlexNet/MNIST, MobileNetV1/CIFAR-10, ResNet-50/ImageNet: one sparsity each, pruned by all
    five criteria, whose uniform rates remove 60% of the FLOPs (paper convention) within half a
    point, counted on the dataset's input by the counter and by torch's FLOP counter (MACs)."""
    chip_table = {(a, tuple(parse_sparsity(s))) for a, s, _ in PAPER_ROWS}
    others = [r for r in paper_params["rows"].values()
              if (_arch(paper_params, r), tuple(parse_sparsity(r["sparsity"]))) not in chip_table]
    by_arch = {_arch(paper_params, r): r for r in others}
    assert set(by_arch) == set(SNPFI_SYSTEMS) and len(others) == 3  # one row each, pruned by its own criteria
    for arch, row in by_arch.items():
        exp = paper_params["experiments"][row["experiment"]]
        assert exp["data"]["name"] == SNPFI_SYSTEMS[arch]
        assert sorted(row["criteria"]) == ["chip", "hrank", "l1", "random", "snpfi"], arch
        shape = (1, 28, 28) if SNPFI_SYSTEMS[arch] == "mnist" else (3, 224, 224) if arch == "resnet50" else (3, 32, 32)
        classes = 1000 if arch == "resnet50" else 10
        base = models.build_model(arch, None, shape[0], classes)
        pruned = models.build_model(arch, models.pruned_widths(arch, parse_sparsity(row["sparsity"])), shape[0], classes)
        flops = [oracles.flops_paper(net, shape) for net in (base, pruned)]
        assert 59.5 <= 100 * (1 - flops[1] / flops[0]) <= 61, (arch, flops)
        macs = []
        for net in (base, pruned):
            with torch.no_grad(), FlopCounterMode(display=False) as fc:
                net.eval()(torch.zeros(1, *shape))
            macs.append(fc.get_total_flops() // 2)
        assert 59.5 <= 100 * (1 - macs[1] / macs[0]) <= 61, (arch, macs)
    assert sorted((a, d, parse_sparsity(s)) for a, d, s in paper.SNPFI_ROWS) == sorted(
        (arch, SNPFI_SYSTEMS[arch], parse_sparsity(row["sparsity"])) for arch, row in by_arch.items())


def test_recipes_are_papers(paper_params):
    cifar = {"epochs": 300, "batch_size": 256, "lr": 0.01, "momentum": 0.9, "weight_decay": 0.005,
             "warmup_epochs": 5, "label_smoothing": 0.0}
    imagenet = {"epochs": 180, "batch_size": 256, "lr": 0.01, "momentum": 0.99, "weight_decay": 1e-4,
                "warmup_epochs": 5, "label_smoothing": 0.1}
    for name, exp in paper_params["experiments"].items():
        if exp["data"]["name"] == "mnist":  # SNPFI's AlexNet: SNPFI gives no recipe; ours, fine-tuned as CHIP's CIFAR rows
            assert exp["finetune"] == {**cifar, "epochs": 30, "warmup_epochs": 1}, name
            assert exp["data"]["image_size"] == 28 and exp["model"]["arch"] == "alexnet"
            continue
        on_imagenet = exp["model"]["arch"] == "resnet50"
        assert exp["finetune"] == (imagenet if on_imagenet else cifar), name
        assert exp["data"]["name"] == ("imagenet" if on_imagenet else "cifar10"), name
        assert exp["data"]["image_size"] == (224 if on_imagenet else 32), name


def test_an_experiment_resolves_to_the_default_pipelines_params(paper_params):
    p = config.experiment_params(paper_params, "resnet110")
    # the file's one baseline (config.resolve): its files in runs/<experiment>/b0/, its records in
    # runs/<experiment>/metrics/b0/, the one folder the report stage depends on per experiment
    assert paper_params["baselines"] == [0] and p["baselines"] == [0]
    assert p["baseline"] == p["seed"] == 0 and p["data_seed"] == paper_params["seed"]
    assert p["paths"]["baseline"] == "runs/resnet110/b0/baseline.pt" and p["paths"]["data"] == "../data"
    assert p["paths"]["metrics"] == "runs/resnet110/metrics/b0" and p["paths"]["scores"] == "runs/resnet110/b0/scores"
    assert list(p["prune"]["settings"]) == ["resnet110-r1", "resnet110-r2", "resnet110-r3"]
    nets = config.networks(p)
    assert [n.name for n in nets] == [f"{s}-chip" for s in p["prune"]["settings"]] and {n.criterion for n in nets} == {"chip"}
    assert p["prune"]["criteria"] == ["chip"]  # the scores its rows prune with, nothing more
    assert config.finetuned_file(p, nets[0], 0) == Path("runs/resnet110/b0/finetuned/resnet110-r1-chip/seed0.pt")
    # several baselines: each its own seed (its training, features, scores, draws, game) and folders,
    # the data's seed shared; a stage must then say which
    three = {**paper_params, "baselines": [0, 1, 7]}
    b7 = config.experiment_params(three, "resnet110", 7)
    assert (b7["baseline"], b7["seed"], b7["data_seed"], b7["baselines"]) == (7, 7, paper_params["seed"], [0, 1, 7])
    assert b7["paths"]["baseline"] == "runs/resnet110/b7/baseline.pt" and b7["paths"]["metrics"] == "runs/resnet110/metrics/b7"
    with pytest.raises(PrunelabError, match=re.escape("--baseline: required, one of baselines (0, 1, 7)")):
        config.experiment_params(three, "resnet110")
    with pytest.raises(PrunelabError, match=re.escape("--baseline: 2 is not in baselines (0, 1, 7)")):
        config.experiment_params(three, "resnet110", 2)
    # a row's own criteria replace the file's: SNPFI's systems, every criterion from one baseline
    alex = config.experiment_params(paper_params, "alexnet")
    assert [n.name for n in config.networks(alex)] == [f"alexnet-f60-{c}" for c in ("snpfi", "chip", "hrank", "l1", "random")]
    assert alex["prune"]["criteria"] == ["snpfi", "chip", "hrank", "l1", "random"]
    # criteria: [chip, l1] multiplies CHIP's rows, and adds l1 to ResNet-50's scores once (r1-r4 and f60 share them)
    two = {**paper_params, "criteria": ["chip", "l1"]}
    assert [n.name for n in config.networks(config.experiment_params(two, "resnet110"))] == [
        f"resnet110-r{i}-{c}" for i in (1, 2, 3) for c in ("chip", "l1")]
    assert config.experiment_params(two, "resnet50")["prune"]["criteria"] == ["chip", "l1", "snpfi", "hrank", "random"]
    assert len(config.paper_networks(two)) == 12 * 2 + 3 * 5
    assert [k for k in config.paper_scores(two) if k.startswith("resnet50-")] == [
        f"resnet50-{c}" for c in ("chip", "l1", "snpfi", "hrank", "random")]
    smoke = config.experiment_params({**paper_params, "smoke": True}, "resnet50")
    assert smoke["paths"]["data"] == "runs/smoke-data/imagenet"
    assert smoke["model"]["pretrained"] == "runs/smoke-data/resnet50-weights.pth"
    assert smoke["train"]["epochs"] == smoke["finetune"]["epochs"] == 1 and smoke["features"]["num_images"] == 8
    assert smoke["latency"]["batch_sizes"] == [1, 2] and smoke["data"]["image_size"] == 32
    assert smoke["snpfi"]["calibration_images"] == 2 and paper_params["snpfi"]["calibration_images"] == 128
    assert paper_params["experiments"]["resnet50"]["finetune"]["epochs"] == 180  # the file's params untouched


def test_an_experiment_no_row_prunes_resolves_to_its_baseline_alone(paper_params):
    """An experiment whose rows are all gone trains its baseline and nothing else: no prune
    section to fill, no network; what it builds is still checked (config.BaselineOnly)."""
    bare = {**paper_params, "rows": {r: s for r, s in paper_params["rows"].items() if s["experiment"] != "vgg16"}}
    config.validate_paper(bare)
    p = config.experiment_params(bare, "vgg16")
    assert p["rows"] == {} and p["prune"] == {"criteria": [], "settings": {}} and config.networks(p) == []
    assert not [n for n in config.paper_networks(bare) if n.startswith("vgg16")]
    vgg = bare["experiments"]["vgg16"]
    broken = {**bare, "experiments": {**bare["experiments"], "vgg16": {**vgg, "train": {**vgg["train"], "epochs": 0}}}}
    with pytest.raises(PrunelabError, match=r"^train\.epochs: must be an integer in \[1, 10000\], got 0$"):
        config.experiment_params(broken, "vgg16")


@pytest.mark.parametrize("edit,message", [
    ({"rows": {"x": {"experiment": "resnet57", "sparsity": "[0.]"}}},
     "rows.x.experiment: 'resnet57' is not allowed"),
    ({"rows": {"x": {"experiment": "vgg16", "sparsity": "[0.3]*11"}}},
     "rows.x.sparsity: vgg16 takes 12 rates"),
    ({"rows": {"x": {"experiment": "vgg16", "criterion": "chip", "sparsity": "[0.3]*12"}}},
     "rows.x.criterion: unknown key; allowed: experiment, sparsity, criteria"),
    ({"rows": {"x": {"experiment": "vgg16", "sparsity": "[0.3]*12", "criteria": ["l1", "taylor"]}}},
     "rows.x.criteria: must be a non-empty list of distinct criteria; allowed: chip, hrank, l1, random, snpfi, "
     "got ['l1', 'taylor']"),
    ({"rows": {"x": {"experiment": "vgg16", "sparsity": "[0.3]*12", "criteria": []}}},
     "rows.x.criteria: must be a non-empty list"),
    ({"criteria": ["chip", "taylor"]}, "criteria: must be a non-empty list of distinct criteria; allowed: chip"),
    ({"criteria": ["chip", "l1", "chip"]}, "criteria: must be a non-empty list of distinct criteria"),
    ({"experiments": {}}, "experiments: must map experiment names to experiments, at least one, got {}"),
    ({"seeds": [0, 0]}, "seeds: must be a non-empty list of distinct integers"),
    ({"baselines": [1, 1]}, "baselines: must be a non-empty list of distinct integers"),
    ({"baselines": []}, "baselines: must be a non-empty list of distinct integers"),
    ({"smoke": "yes"}, "smoke: must be true or false"),
    # DVC expands every row's stages on every command: a file of thousands stalls `dvc status`
    ({"rows": {f"r{i}": {"experiment": "vgg16", "sparsity": "[0.3]*12"} for i in range(config.MAX_PAPER_ROWS + 1)}},
     f"rows: {config.MAX_PAPER_ROWS + 1} rows; at most {config.MAX_PAPER_ROWS}"),
    ({"criteria": ["chip", "hrank", "l1", "random", "snpfi"],
      "rows": {f"r{i}": {"experiment": "vgg16", "sparsity": "[0.3]*12"} for i in range(config.MAX_PAPER_NETWORKS // 5 + 1)}},
     f"rows: {5 * (config.MAX_PAPER_NETWORKS // 5 + 1)} networks (rows x their criteria x baselines); at most"),
    # the same bound counts every baseline's networks: CHIP's 12 rows and SNPFI's 3 x 5 are 27 a baseline
    ({"baselines": list(range(config.MAX_PAPER_NETWORKS // 27 + 1))},
     f"rows: {27 * (config.MAX_PAPER_NETWORKS // 27 + 1)} networks (rows x their criteria x baselines); at most"),
    ({"rows": {"-x": {"experiment": "vgg16", "sparsity": "[0.3]*12"}}}, "rows: row name '-x' must be letters"),
])
def test_bad_paper_params_are_named(paper_params, edit, message):
    bad = {**paper_params, **edit}
    with pytest.raises(PrunelabError, match=re.escape(message)):
        config.validate_paper(bad)
        for name in bad["experiments"]:
            config.experiment_params(bad, name)


def test_dvc_yaml_s_vars_are_the_params_rows_times_criteria():
    """paper/dvc.yaml as tools/write_pipelines.py writes it from paper/params.yaml (not stale)."""
    paper = config.load_paper(PAPER_PARAMS)
    text = (ROOT / "paper" / "dvc.yaml").read_text()
    assert text == with_paper_vars(text, paper), "paper/dvc.yaml is stale: run tools/write_pipelines.py"
    config.check_paper_dvc_yaml(paper, ROOT / "paper" / "dvc.yaml")
    assert yaml.safe_load(text)["vars"] == config.paper_dvc_vars(paper)
    # what the stages run over, for every baseline, the baseline first in each name
    two = {**paper, "baselines": [0, 3]}
    (models,), (scores,), (networks,) = (entry.values() for entry in config.paper_dvc_vars(two))
    assert list(models) == [f"{b}-{e}" for b in (0, 3) for e in paper["experiments"]]
    assert models["3-vgg16"] == {"baseline": 3, "experiment": "vgg16"}
    assert list(scores) == [f"{b}-{name}" for b in (0, 3) for name in config.paper_scores(paper)]
    assert scores["3-alexnet-snpfi"] == {"baseline": 3, "experiment": "alexnet", "criterion": "snpfi"}
    assert list(networks) == [f"{b}-{name}" for b in (0, 3) for name in config.paper_networks(paper)]
    assert networks["3-resnet56-r2-chip"] == {"baseline": 3, "network": "resnet56-r2-chip", "row": "resnet56-r2",
                                              "experiment": "resnet56", "criterion": "chip"}


def test_a_stale_dvc_yaml_is_refused(tmp_path, paper_params):
    (tmp_path / "dvc.yaml").write_text((ROOT / "paper" / "dvc.yaml").read_text())
    config.check_paper_dvc_yaml(paper_params, tmp_path / "dvc.yaml")
    for edit in ({"criteria": ["chip", "l1"]}, {"baselines": [0, 1]},
                 {"rows": {**paper_params["rows"], "vgg16-r4": {"experiment": "vgg16", "sparsity": "[0.5]*12"}}}):
        with pytest.raises(PrunelabError, match=re.escape("its models, scores and networks are not params.yaml's "
                                                          "baselines x rows x criteria; run `python tools/write_pipelines.py`")):
            config.check_paper_dvc_yaml({**paper_params, **edit}, tmp_path / "dvc.yaml")


@pytest.mark.parametrize(("criteria", "baselines"), [(["chip"], [0]), (["chip", "hrank", "l1", "random"], [0]),
                                                     (["chip"], [0, 1, 2])])
def test_dvc_yaml_has_a_stage_per_experiment_and_per_network(tmp_path, paper_params, criteria, baselines):
    """`criteria: [chip, hrank, l1, random]` (the README's line) gives every row x criterion a prune,
    finetune and evaluate stage, and each experiment one score stage per criterion its rows use;
    each baseline has all of these, its own, named after it."""
    project = copy_paper_project(tmp_path / "p", criteria=criteria, baselines=baselines)
    names = set(dvc(project, "stage", "list", "--name-only", cwd=project / "paper").stdout.split())
    experiments, rows = paper_params["experiments"], paper_params["rows"]
    of_row = {r: spec.get("criteria", criteria) for r, spec in rows.items()}
    expected = {f"{s}@{b}-{e}" for s in ("train_baseline", "extract_features") for e in experiments for b in baselines}
    expected |= {f"score@{b}-{rows[r]['experiment']}-{c}" for r, cs in of_row.items() for c in cs for b in baselines}
    expected |= {f"{s}@{b}-{r}-{c}" for s in ("prune", "finetune", "evaluate") for r, cs in of_row.items() for c in cs
                 for b in baselines}
    expected |= {"check_params", "report", "mlflow_sync"}
    assert names == expected
    assert sum(n.startswith("prune@") for n in names) == (12 * len(criteria) + 3 * 5) * len(baselines)
    report_deps = yaml.safe_load((ROOT / "paper" / "dvc.yaml").read_text())["stages"]["report"]["deps"]
    assert {f"${{paths.runs}}/{e}/metrics" for e in experiments} <= set(report_deps)


def test_synthetic_datasets_load_through_the_real_loaders(tmp_path):
    from prunelab.data import load_dataset

    synthetic.write_dataset("cifar10", tmp_path / "c")
    s = load_dataset("cifar10", tmp_path / "c", verify=False)
    assert s.x_train.shape == (40, 3, 32, 32) and s.x_test.shape == (16, 3, 32, 32)
    with pytest.raises(PrunelabError, match="corrupted"):  # the real release's md5s are checked by default
        load_dataset("cifar10", tmp_path / "c")
    synthetic.write_dataset("mnist", tmp_path / "m")
    assert load_dataset("mnist", tmp_path / "m").x_train.shape == (16, 1, 28, 28)
    synthetic.write_dataset("imagenet", tmp_path / "i")
    folder = load_dataset("imagenet", tmp_path / "i")
    assert folder.num_classes == 4 and len(folder.train) == 16 and len(folder.val) == 8


def test_params_edited_without_the_tool_stop_at_check_params(tmp_path):
    """criteria: edited, tools/write_pipelines.py not run: `dvc repro` stops at check_params with
    one line naming the tool, and no other stage runs."""
    project = copy_paper_project(tmp_path / "p", write_vars=False, smoke=True, criteria=["chip", "l1"])
    r = dvc(project, "repro", cwd=project / "paper", check=False)
    assert r.returncode != 0
    assert re.findall(r"Running stage '([^']+)'", r.stdout) == ["check_params"]
    errors = [line for line in (r.stdout + r.stderr).splitlines() if line.startswith("error: ")]
    assert errors == ["error: dvc.yaml: its models, scores and networks are not params.yaml's baselines x rows x "
                      "criteria; run `python tools/write_pipelines.py` from the repository root, then `dvc repro` again"]
    assert not (project / "paper" / "runs").exists()


@pytest.mark.slow  # a second paper reproduction: minutes (make test-slow, CI)
def test_a_criterion_added_later_reuses_the_baseline_scores_and_networks(tmp_path):
    """criteria: [chip] run, then [chip, l1] (the tool re-run): DVC runs L1's score and L1's
    networks only; the baseline, CHIP's score and CHIP's networks are reused as they are."""
    project = copy_paper_project(tmp_path / "p", smoke=True)
    paper = project / "paper"
    first = dvc(project, "repro", "evaluate@0-resnet56-r1-chip", cwd=paper).stdout
    assert re.findall(r"Running stage '([^']+)'", first) == [
        "check_params", "train_baseline@0-resnet56", "extract_features@0-resnet56", "score@0-resnet56-chip",
        "prune@0-resnet56-r1-chip", "finetune@0-resnet56-r1-chip", "evaluate@0-resnet56-r1-chip"]
    params = yaml.safe_load((paper / "params.yaml").read_text())
    params["criteria"] = ["chip", "l1"]
    (paper / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (paper / "dvc.yaml").write_text(with_paper_vars((paper / "dvc.yaml").read_text(), params))
    again = dvc(project, "repro", "evaluate@0-resnet56-r1-chip", "evaluate@0-resnet56-r1-l1", cwd=paper).stdout
    # extract_features re-runs (its params name criteria: which statistics to stream) and writes
    # the same features, so CHIP's score and network are not run again
    assert re.findall(r"Running stage '([^']+)'", again) == [
        "check_params", "extract_features@0-resnet56", "score@0-resnet56-l1",
        "prune@0-resnet56-r1-l1", "finetune@0-resnet56-r1-l1", "evaluate@0-resnet56-r1-l1"]


# Both reproductions run in the slow tier (`make test-slow`, CI): one row of CHIP's table and one of
# SNPFI's systems, two criteria each (the two kinds of rows the comparison sets side by side), beside
# every experiment's baseline, for two baselines (about 60 stage processes on 2 cores), the quick
# local check (`pytest -m slow -k "one and row"`); and every row with [chip, l1] and SNPFI's systems
# with all five criteria, on one baseline (39 networks, about 150 stage processes). The fast tier checks the paper pipeline's
# params, dvc.yaml, data and a refused run without reproducing it.
ONE_ROW_EACH = {"resnet56-r1": {"experiment": "resnet56", "sparsity": "[0.]+[0.15]*2+[0.4]*27"},
                "alexnet-f60": {"experiment": "alexnet", "sparsity": "[0.37]*7", "criteria": ["snpfi", "chip"]}}


def _differences(rows: dict) -> int:
    """How many after-fine-tuning differences comparison.md gives: every criterion of a row
    against random and against CHIP where the row has them (CHIP − Random once)."""
    count = 0
    for spec in rows.values():
        criteria = spec.get("criteria", ["chip", "l1"])
        count += (len(criteria) - 1 if "random" in criteria else 0)
        count += (len(criteria) - 1 - ("random" in criteria) if "chip" in criteria else 0)
    return count


@pytest.mark.slow  # 4 to 20 minutes of stage processes: the fast tier's 10 minutes cannot hold it (make test-slow, CI)
@pytest.mark.parametrize("variant", ["one row each", "every row"])
def test_smoke_mode_reproduces_the_rows_with_two_criteria(tmp_path, paper_params, variant):
    """`cd paper && dvc repro` in smoke mode with two fine-tuning seeds and criteria [chip, l1], on
    two baselines (one row each) or one (every row): every row x criterion in the table, its top-1
    the mean over the baselines (each baseline's the mean over its seeds), the paper's top-1 beside
    CHIP's, ResNet-56 counts equal to the paper's, every CIFAR row's counts equal to torch's FLOP
    counter and the thop convention's definition (tests/oracles.py), the speed-up the evaluate
    stage's latencies give, each row's criteria compared with intervals over the baselines (or the
    seeds of one); cached on a rerun; the same table from MLflow."""
    rows = ONE_ROW_EACH if variant == "one row each" else paper_params["rows"]
    baselines = [0, 1] if variant == "one row each" else [0]
    project = copy_paper_project(tmp_path / "p", smoke=True, baselines=baselines, seeds=[0, 1], criteria=["chip", "l1"],
                                 rows=rows)
    paper_params = {**paper_params, "rows": rows}
    r = dvc(project, "repro", cwd=project / "paper")
    assert "Running stage 'report'" in r.stdout and "restored from the tracked files" in r.stdout
    results = project / "paper" / "results"
    table = list(csv.DictReader(io.StringIO((results / "table.csv").read_text())))
    latency = list(csv.DictReader(io.StringIO((results / "latency.csv").read_text())))
    expected = [(row, c) for row, spec in paper_params["rows"].items() for c in spec.get("criteria", ["chip", "l1"])]
    assert [(row["setting"], row["criterion"]) for row in table] == expected
    assert variant != "every row" or len(table) == 12 * 2 + 3 * 5
    assert [(r["setting"], r["criterion"]) for r in latency] == expected
    for row, timed in zip(table, latency):
        spec = paper_params["rows"][row["setting"]]
        name = f"{row['setting']}-{row['criterion']}"
        reported = next((t for a, s, t in PAPER_ROWS if a == row["model"] and parse_sparsity(s) == parse_sparsity(row["sparsity"])),
                        None)
        if reported is not None and row["criterion"] == "chip":  # CHIP's rows: its reported top-1 beside ours
            assert float(row["paper_pruned_top1"]) == reported
        else:
            assert row["paper_pruned_top1"] == ""
        assert row["seeds"] == "0 1" and row["baselines"] == " ".join(map(str, baselines))
        runs = project / "paper" / paper_params["paths"]["runs"] / spec["experiment"]
        per_baseline = [json.loads((runs / "metrics" / f"b{b}" / "evaluate" / f"{name}.json").read_text())
                        for b in baselines]
        assert [r["baseline"] for r in per_baseline] == list(map(str, baselines))
        assert all(len(r["top1_per_seed"].split()) == 2 for r in per_baseline)
        assert float(row["pruned_top1"]) == pytest.approx(np.mean([r["top1"] for r in per_baseline]), abs=1e-6)
        if len(baselines) > 1:  # each baseline's own top-1, another training each
            assert [float(t) for t in row["pruned_top1_per_baseline"].split()] == pytest.approx(
                [r["top1"] for r in per_baseline], abs=5e-5)
        measured = [json.loads((runs / "metrics" / f"b{b}" / "latency" / f"{name}.json").read_text()) for b in baselines]
        assert float(timed["speedup_cpu_b2"]) == pytest.approx(  # the mean of each baseline's own
            np.mean([m["latency_cpu_b2_baseline_ms"] / m["latency_cpu_b2_pruned_ms"] for m in measured]), rel=1e-6)
        if row["criterion"] == "snpfi":  # its own widths, for the MACs reduction of the row's rates
            pruned = [json.loads((runs / "metrics" / f"b{b}" / "prune" / f"{name}.json").read_text()) for b in baselines]
            assert all(abs(p["reached_macs_reduction_pct"] - p["target_macs_reduction_pct"]) < 5 for p in pruned), pruned
            assert float(row["macs_reduction_pct"]) == pytest.approx(  # each baseline's SNPFI picks its own widths
                np.mean([p["reached_macs_reduction_pct"] for p in pruned]), abs=1e-6)
        elif row["model"] != "resnet50":  # the counts of the dataset's input: CIFAR-10's, or MNIST's for AlexNet
            shape = (1, 28, 28) if row["model"] == "alexnet" else (3, 32, 32)
            net = models.build_model(row["model"], models.pruned_widths(row["model"], parse_sparsity(row["sparsity"])),
                                     shape[0])
            with torch.no_grad(), FlopCounterMode(display=False) as fc:
                net.eval()(torch.zeros(1, *shape))
            assert int(row["params"]) == sum(t.numel() for t in net.parameters()), name
            assert int(row["macs"]) == fc.get_total_flops() // 2, name
            assert int(row["flops_paper"]) == oracles.flops_paper(net, shape), name
            if row["model"] == "resnet56":
                assert (int(row["params"]), int(row["flops_paper"])) == PAPER_RESNET56_COUNTS[row["sparsity"]]
    # every row's criteria side by side: SNPFI's systems, each of the five against random and CHIP;
    # CHIP's rows, L1 against CHIP; after fine-tuning paired by baseline (the replicates), or by the
    # seeds of the one baseline
    comparison = (results / "comparison.md").read_text()
    unit = "2 baselines" if len(baselines) > 1 else "2 fine-tuning seeds of one baseline"
    headings = re.findall(r"^## \S+, setting (\S+): ", comparison, re.MULTILINE)
    assert headings == list(paper_params["rows"])
    after = "".join(part.split("| Difference before fine-tuning |")[0] for part in comparison.split("\n## "))
    differences = re.findall(rf"^\| ([\w-]+) − (\w+) \| [^|]+ \| [^|]+ \| {unit}[^|]*\|$", after, re.MULTILINE)
    assert len(differences) == _differences(rows), differences
    assert differences.count(("L1", "CHIP")) == sum("l1" in s.get("criteria", ["chip", "l1"]) for s in rows.values())
    assert variant != "every row" or (differences.count(("L1", "CHIP")) == 12 + 3 and len(differences) == 12 + 3 * 7)
    # before fine-tuning too, each row's criteria compared
    assert comparison.count("| Difference before fine-tuning |") == len(rows)
    summary = json.loads((results / "summary.json").read_text())
    assert list(summary) == sorted(f"{row}-{c}" for row, c in expected)
    md = (results / "table.md").read_text()
    assert "smoke mode" in md and "± theirs" in md and "94.16" in md
    assert variant != "every row" or "94.50" in md  # ResNet-110's first row
    assert "the paper reports the best run" in md and "Speed-up" not in md
    assert "Speed-up, CPU (batch 1 / 2)" in (results / "latency.md").read_text()
    assert re.findall(r"Running stage '([^']+)'", dvc(project, "repro", cwd=project / "paper").stdout) == ["mlflow_sync"]
    before = {p.name: p.read_bytes() for p in results.iterdir()}
    subprocess.run([str(BIN / "prunelab"), "table", "--from-mlflow"], cwd=project / "paper", env=env(project), check=True,
                   capture_output=True)
    assert {p.name: p.read_bytes() for p in results.iterdir()} == before


def test_readme_s_criteria_line_and_its_network_counts(paper_params):
    """The paper page's recipe for comparing the criteria on CHIP's rows (docs/paper.md): its
    criteria line is accepted, and the network counts it and the smoke-mode paragraph give are
    params.yaml's."""
    readme = (ROOT / "docs" / "paper.md").read_text()
    line = re.search(r"^criteria: (\[[^\]]*\]) +# in paper/params.yaml", readme, re.MULTILINE).group(1)
    four = {**paper_params, "criteria": yaml.safe_load(line)}
    config.validate_paper(four)
    assert four["criteria"] == ["chip", "hrank", "l1", "random"]
    chip_rows = sum("criteria" not in r for r in paper_params["rows"].values())
    snpfi = [len(r["criteria"]) for r in paper_params["rows"].values() if "criteria" in r]
    assert (f"# {chip_rows} rows x 4 criteria + SNPFI's {len(snpfi)} x {snpfi[0]} = "
            f"{len(config.paper_networks(four))} networks") in readme
    two = {**paper_params, "criteria": ["chip", "l1"]}
    assert f"`criteria: [chip, l1]`:\n  every row × criterion, {len(config.paper_networks(two))} networks" in readme
