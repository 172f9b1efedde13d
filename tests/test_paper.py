"""The paper pipeline (paper/): every CHIP row wired to the stages, with PAPER.md's recipes;
its smoke mode reproduced end to end on synthetic data in the real on-disk formats."""

import csv
import io
import json
import re
import subprocess
from pathlib import Path

import oracles
import pytest
import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from helpers import BIN, ROOT, copy_paper_project, dvc, env
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


def test_one_row_per_pruned_row_of_chips_table(paper_params):
    ours = sorted((paper_params["experiments"][r["experiment"]]["model"]["arch"], parse_sparsity(r["sparsity"]))
                  for r in paper_params["rows"].values())
    theirs = sorted((arch, parse_sparsity(s)) for arch, s, _ in PAPER_ROWS)
    assert ours == theirs and len(ours) == 12
    assert sorted((a, parse_sparsity(s), t) for a, s, t in paper.CHIP_ROWS if s is not None) == \
        sorted((a, parse_sparsity(s), t) for a, s, t in PAPER_ROWS)


def test_recipes_are_papers(paper_params):
    cifar = {"epochs": 300, "batch_size": 256, "lr": 0.01, "momentum": 0.9, "weight_decay": 0.005,
             "warmup_epochs": 5, "label_smoothing": 0.0}
    imagenet = {"epochs": 180, "batch_size": 256, "lr": 0.01, "momentum": 0.99, "weight_decay": 1e-4,
                "warmup_epochs": 5, "label_smoothing": 0.1}
    for name, exp in paper_params["experiments"].items():
        on_imagenet = exp["model"]["arch"] == "resnet50"
        assert exp["finetune"] == (imagenet if on_imagenet else cifar), name
        assert exp["data"]["name"] == ("imagenet" if on_imagenet else "cifar10"), name
        assert exp["data"]["image_size"] == (224 if on_imagenet else 32), name


def test_an_experiment_resolves_to_the_default_pipelines_params(paper_params):
    p = config.experiment_params(paper_params, "resnet110")
    config.validate({k: p[k] for k in config.SCHEMA})
    assert p["paths"]["baseline"] == "runs/resnet110/baseline.pt" and p["paths"]["data"] == "../data"
    assert list(p["prune"]["settings"]) == ["resnet110-r1", "resnet110-r2", "resnet110-r3"]
    nets = config.networks(p)
    assert [n.name for n in nets] == list(p["prune"]["settings"]) and {n.criterion for n in nets} == {"chip"}
    assert config.finetuned_file(p, nets[0], 0) == Path("runs/resnet110/finetuned/resnet110-r1/seed0.pt")
    smoke = config.experiment_params({**paper_params, "smoke": True}, "resnet50")
    assert smoke["paths"]["data"] == "runs/smoke-data/imagenet"
    assert smoke["model"]["pretrained"] == "runs/smoke-data/resnet50-weights.pth"
    assert smoke["train"]["epochs"] == smoke["finetune"]["epochs"] == 1 and smoke["features"]["num_images"] == 8
    assert smoke["latency"]["batch_sizes"] == [1, 2]
    assert paper_params["experiments"]["resnet50"]["finetune"]["epochs"] == 180  # the file's params untouched


@pytest.mark.parametrize("edit,message", [
    ({"rows": {"x": {"experiment": "resnet57", "sparsity": "[0.]"}}}, "rows.x.experiment: 'resnet57' is not allowed"),
    ({"rows": {"x": {"experiment": "vgg16", "sparsity": "[0.3]*11"}}}, "rows.x.sparsity: vgg16 takes 12 rates"),
    ({"seeds": [0, 0]}, "seeds: must be a non-empty list of distinct integers"),
    ({"smoke": "yes"}, "smoke: must be true or false"),
])
def test_bad_paper_params_are_named(paper_params, edit, message):
    bad = {**paper_params, **edit}
    with pytest.raises(PrunelabError, match=re.escape(message)):
        config.validate_paper(bad)
        for name in bad["experiments"]:
            config.experiment_params(bad, name)


def test_dvc_yaml_has_a_stage_per_experiment_and_per_row(tmp_path, paper_params):
    project = copy_paper_project(tmp_path / "p")
    names = set(dvc(project, "stage", "list", "--name-only", cwd=project / "paper").stdout.split())
    experiments, rows = paper_params["experiments"], paper_params["rows"]
    expected = {f"{s}@{e}" for s in ("train_baseline", "extract_features", "score") for e in experiments}
    expected |= {f"{s}@{r}" for s in ("prune", "finetune", "evaluate") for r in rows}
    expected |= {"check_params", "report", "mlflow_sync"}
    assert names == expected
    report_deps = yaml.safe_load((ROOT / "paper" / "dvc.yaml").read_text())["stages"]["report"]["deps"]
    assert {f"${{paths.runs}}/{e}/metrics/evaluate" for e in experiments} <= set(report_deps)


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


def test_smoke_mode_reproduces_every_row(tmp_path, paper_params):
    """`cd paper && dvc repro` in smoke mode with two fine-tuning seeds: every row in the table,
    the paper's top-1 beside ours, ResNet-56 counts equal to the paper's, every CIFAR row's counts
    equal to torch's FLOP counter and the thop convention's definition (tests/oracles.py), the
    speed-up the evaluate stage's latencies give; cached on a rerun; the same table from MLflow."""
    project = copy_paper_project(tmp_path / "p", smoke=True, seeds=[0, 1])
    r = dvc(project, "repro", cwd=project / "paper")
    assert "Running stage 'report'" in r.stdout and "restored from the tracked files" in r.stdout
    results = project / "paper" / "results"
    table = list(csv.DictReader(io.StringIO((results / "table.csv").read_text())))
    assert len(table) == len(paper_params["rows"]) == 12
    for row in table:
        assert float(row["paper_pruned_top1"]) == paper_row(row["model"], row["sparsity"])[2]
        assert row["seeds"] == "0 1" and len(row["pruned_top1_per_seed"].split()) == 2
        experiment = paper_params["rows"][row["setting"]]["experiment"]
        record = json.loads((project / "paper" / paper_params["paths"]["runs"] / experiment / "metrics" / "evaluate"
                             / f"{row['setting']}.json").read_text())
        assert float(row["speedup_cpu_b2"]) == pytest.approx(
            record["latency_cpu_b2_baseline_ms"] / record["latency_cpu_b2_pruned_ms"], rel=1e-6)
        if row["model"] != "resnet50":  # CIFAR input and classes: the counts of the paper's setting
            net = models.build_model(row["model"], models.pruned_widths(row["model"], parse_sparsity(row["sparsity"])))
            with torch.no_grad(), FlopCounterMode(display=False) as fc:
                net.eval()(torch.zeros(1, 3, 32, 32))
            assert int(row["params"]) == sum(t.numel() for t in net.parameters()), row["setting"]
            assert int(row["macs"]) == fc.get_total_flops() // 2, row["setting"]
            assert int(row["flops_paper"]) == oracles.flops_paper(net, (3, 32, 32)), row["setting"]
            if row["model"] == "resnet56":
                assert (int(row["params"]), int(row["flops_paper"])) == PAPER_RESNET56_COUNTS[row["sparsity"]]
    md = (results / "table.md").read_text()
    assert "smoke mode" in md and "mean ± sample standard deviation" in md and "94.50" in md
    assert "the paper reports the best run" in md and "Speed-up, CPU (batch 1 / 2)" in md
    assert re.findall(r"Running stage '([^']+)'", dvc(project, "repro", cwd=project / "paper").stdout) == ["mlflow_sync"]
    before = {p.name: p.read_bytes() for p in results.iterdir()}
    subprocess.run([str(BIN / "prunelab"), "table", "--from-mlflow"], cwd=project / "paper", env=env(project), check=True,
                   capture_output=True)
    assert {p.name: p.read_bytes() for p in results.iterdir()} == before
