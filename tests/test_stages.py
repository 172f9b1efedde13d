"""The stages: bad input (one line naming the key and what is allowed, exit code 2, nothing
written), and every criterion's path through score -> prune -> finetune -> evaluate."""

import csv
import hashlib
import json
import statistics

import oracles
import pytest
import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from helpers import ROOT, copy_project, edit_params, set_params, stage, stage_in_process
from prunelab import checkpoint, config, correctness, models, pipeline
from prunelab.errors import PrunelabError

ROW1_R20 = "[0.]+[0.15]*2+[0.4]*9"


def files_under(project):
    return sorted(p.relative_to(project).as_posix() for p in project.rglob("*")
                  if p.is_file() and not p.relative_to(project).parts[0] in (".git", ".dvc", "prunelab", "stages"))


def default_params(**overrides) -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    set_params(params, overrides)
    return params


CASES = [
    ({"model.arch": "resnet57"}, "model.arch", "allowed: resnet20"),
    ({"prune.criteria": ["chip", "magic"]}, "prune.criteria", "allowed: chip"),
    ({"prune.settings.r1": "[0.]+[1.2]*2+[0.4]*27"}, "prune.settings.r1", "[0, 1)"),
    ({"prune.settings.r1": ROW1_R20}, "prune.settings.r1", "takes 30 rates"),
    ({"train.epochs": 0}, "train.epochs", "must be an integer"),
    ({"finetune.epochs": -3}, "finetune.epochs", "must be an integer"),
    ({"train.epoch": 3}, "train.epoch", "unknown key; allowed: epochs"),
    ({"device": "tpu"}, "device", "allowed: auto, cpu, cuda"),
    ({"engine.cpu_numerics": "fast"}, "engine.cpu_numerics", "allowed: portable, native"),
    # a setting's name becomes a command-line argument (--setting -x would read as an option)
    ({"prune.settings": {"-x": "[0.1]*30"}}, "prune.settings", "starting with a letter or digit"),
    # digits hold 1,437 training images at test_fraction 0.2: caught here, not minutes into a stage
    ({"features.num_images": 5000}, "features.num_images", "digits's training split holds 1437"),
    ({"snpfi.calibration_images": 2000, "data.train_subset": 1000}, "snpfi.calibration_images", "holds 1000"),
    ({"engine.cpu_numerics": None}, "engine", "cpu_numerics"),
    # strict types: YAML gives every value its type, and nothing is coerced
    ({"engine.channels_last": 1}, "engine.channels_last", "allowed: auto, true, false"),
    ({"train.lr": "0.1"}, "train.lr", "must be a number in (0, 10), got '0.1'"),
    ({"seeds": [0, True]}, "seeds", "distinct integers"),
    ({"data.download": "no"}, "data.download", "must be true or false"),
    ({"prune.settings": {"r 1": "[0.1]*30"}}, "prune.settings", "letters, digits"),
    ({"model.arch": "vgg16", "prune.settings": {"r1": "[0.3]*12"}}, "model.arch", "at least 32x32 pixels"),
    ({"seeds": [0, 1, 0]}, "seeds", "distinct integers"),
    ({"sweep.schemes": ["inner", "r3"]}, "sweep.schemes", "neither 'inner' nor a prune.settings name (r2)"),
    ({"sweep.ratios": [0.5, 1.0]}, "sweep.ratios", "[0, 1)"),
    ({"sweep.bn_images": 0}, "sweep.bn_images", "must be an integer"),
    ({"sweep.finetune_epochs": -1}, "sweep.finetune_epochs", "must be an integer"),
    ({"model.arch": "vgg16", "data.image_size": 32, "prune.settings": {"r2": "[0.3]*12"}}, "sweep.schemes",
     "takes a CIFAR ResNet"),
]


@pytest.mark.parametrize("overrides,key,allowed", CASES, ids=[c[1] + ":" + c[2][:12] for c in CASES])
def test_bad_params_are_refused_with_one_line_naming_the_key(overrides, key, allowed):
    """What every stage checks first (config.load_params -> validate), in-process; run_stage turns
    any PrunelabError into `error: <message>` and exit code 2."""
    with pytest.raises(PrunelabError) as e:
        config.validate(default_params(**overrides))
    message = str(e.value)
    assert "\n" not in message and message.startswith(key) and allowed in message, message


def test_a_missing_dataset_names_paths_data_and_the_download_switch(tmp_path):
    params = config.validate(default_params(**{"data.name": "cifar10", "data.image_size": 32,
                                               "paths.data": str(tmp_path / "no" / "such" / "dir")}))
    with pytest.raises(config.ConfigError) as e:
        pipeline.load_data(config.resolve(params, params["baselines"][0]))
    message = str(e.value)
    assert "\n" not in message and message.startswith("paths.data") and "data.download: true" in message, message
    assert not (tmp_path / "no").exists()


def test_a_stage_given_bad_params_exits_2_with_one_line_and_writes_nothing(tmp_path):
    """The exit path itself, once, in a real process: PrunelabError -> one line on stderr, exit 2."""
    project = copy_project(tmp_path / "p", **{"prune.settings.r1": ROW1_R20})
    before = files_under(project)
    r = stage(project, "train_baseline")
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("error: prune.settings.r1") and "takes 30 rates" in r.stderr, r.stderr
    assert files_under(project) == before


def test_corrupt_checkpoint_is_named_and_nothing_is_written(tmp_path):
    project = copy_project(tmp_path / "p")
    (project / "models" / "b0").mkdir(parents=True)
    (project / "models" / "b0" / "baseline.pt").write_bytes(b"\x00garbage")
    before = files_under(project)
    code, err = stage_in_process(project, "extract_features")
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("error: ") and "models/b0/baseline.pt" in err and "corrupt" in err, err
    assert files_under(project) == before


def md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_pretrained_weights_become_the_baseline_without_training(tmp_path):
    torch.manual_seed(0)
    model = models.build_model("resnet20", in_channels=1)
    project = copy_project(tmp_path / "p", **{"model.arch": "resnet20", "model.pretrained": "given.pth",
                                              "prune.settings": {"r1": ROW1_R20}})
    torch.save(model.state_dict(), project / "given.pth")
    code, err = stage_in_process(project, "train_baseline")
    assert code == 0, err
    saved = checkpoint.load(project / "models" / "b0" / "baseline.pt")
    assert all(torch.equal(saved["state_dict"][k], v) for k, v in model.state_dict().items())
    metrics = json.loads((project / "results" / "metrics" / "b0" / "train_baseline.json").read_text())
    images, labels = held_out(project)
    assert metrics["params"] == sum(p.numel() for p in model.parameters())
    assert metrics["top1"] == pytest.approx(oracles.top1(model, images, labels), abs=1e-9)
    assert (project / "results" / "metrics" / "b0" / "train_baseline.csv").read_text().count("\n") == 2  # header + 1 row


def held_out(project) -> tuple[torch.Tensor, torch.Tensor]:
    """The project's normalised test images and labels, as the stages load them."""
    params = config.resolve(config.load_params(project / "params.yaml"), 0)
    splits = pipeline.load_data({**params, "paths": {**params["paths"], "data": str(project / "data")}})
    batches = list(splits.test_loader(512))
    return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])


CRITERIA = ["chip", "hrank", "l1", "random", "snpfi"]
TINY = {"model.arch": "resnet20", "train.epochs": 1, "finetune.epochs": 1, "features.num_images": 16,
        "features.batch_size": 8, "features.save_maps": True, "snpfi.calibration_images": 16,
        "snpfi.permutations": 2, "latency.repeats": 0, "prune.criteria": CRITERIA,
        "prune.settings": {"r1": ROW1_R20}, "seeds": [0, 1]}  # two fine-tuning seeds: random draws twice


@pytest.fixture(scope="module")
def every_path(tmp_path_factory):
    """A tiny project (ResNet-20, one epoch, 16 feature images) taken through every stage for every
    criterion, each stage run as its script in this process."""
    project = copy_project(tmp_path_factory.mktemp("paths") / "p", **TINY)
    runs = [("train_baseline",), ("extract_features",)]
    for c in CRITERIA:
        runs += [("score", "--criterion", c)] + [(s, "--criterion", c, "--setting", "r1")
                                                 for s in ("prune", "finetune", "evaluate")]
    for name, *args in runs:
        code, err = stage_in_process(project, name, *args)
        assert code == 0, f"{name} {args}: exit {code}\n{err[-3000:]}"
    return project


def load(path, keys):
    return checkpoint.torch_load(path, keys)


def test_the_ablation_crosses_ranking_widths_and_recovery_and_meets_the_prune_stage(every_path):
    """Against the prune stage, which computes some of its cells another way: CHIP's ranking at the
    setting's rates with no recovery is the prune stage's CHIP network before fine-tuning, random's
    its first seed's draw; SNPFI's ranking at SNPFI's widths is the prune stage's SNPFI network
    before its recovery (none), after its refit (refit) and after the refit and the BatchNorm
    re-estimation (refit+bn). Every ranking x 2 widths x 4 recoveries is there, and the rates'
    networks remove what the prune stage's remove."""
    from prunelab import ablation

    code, err = stage_in_process(every_path, "ablation")
    assert code == 0, err[-3000:]
    rows = ablation.read_csv(every_path / "results" / "metrics" / "b0" / "ablation.csv")
    cell = {(r["ranking"], r["widths"], r["recovery"]): r for r in rows}
    assert set(cell) == {(c, w, r) for c in CRITERIA for w in ablation.WIDTHS for r in ablation.RECOVERIES}
    pruned = {c: json.loads((every_path / "results" / "metrics" / "b0" / "prune" / f"{c}-r1.json").read_text())
              for c in CRITERIA}
    assert cell["chip", "rates", "none"]["top1"] == pytest.approx(pruned["chip"]["top1_before_finetune"], abs=1e-6)
    assert cell["random", "rates", "none"]["top1"] == pytest.approx(
        float(pruned["random"]["top1_before_finetune_per_seed"].split()[0]), abs=0.005)
    snpfi = pruned["snpfi"]
    assert cell["snpfi", "snpfi", "none"]["top1"] == pytest.approx(snpfi["top1_before_recovery"], abs=1e-6)
    assert cell["snpfi", "snpfi", "refit"]["top1"] == pytest.approx(snpfi["top1_after_refit"], abs=1e-6)
    assert cell["snpfi", "snpfi", "refit+bn"]["top1"] == pytest.approx(snpfi["top1_before_finetune"], abs=1e-6)
    for c in CRITERIA:
        assert cell[c, "rates", "none"]["macs"] == pruned["chip"]["macs"]
        assert cell[c, "snpfi", "none"]["macs"] == pruned["snpfi"]["macs"]


def build(path):
    return checkpoint.build(checkpoint.load(path)).eval()


@pytest.mark.parametrize("criterion", CRITERIA)
def test_scores_are_the_criterion_s_definition_with_their_provenance(every_path, criterion):
    p = every_path
    keys = {"snpfi": ("scores", "meta", "utilization"), "random": ("scores", "meta", "scores_per_seed")}.get(
        criterion, ("scores", "meta"))
    saved = load(p / "models" / "b0" / "scores" / f"{criterion}.pt", keys)
    groups = models.channel_groups("resnet20")
    assert saved["meta"]["criterion"] == criterion
    assert saved["meta"]["baseline_md5"] == md5(p / "models" / "b0" / "baseline.pt")
    assert set(saved["scores"]) == {g.name for g in groups}
    baseline = build(p / "models" / "b0" / "baseline.pt")
    modules = dict(baseline.named_modules())
    maps = load(p / "models" / "b0" / "features.pt", ("maps",))["maps"]  # {layer: (16, C, H, W)}
    for g in groups:
        got = saved["scores"][g.name].double()
        width = modules[g.producers[0]].weight.shape[0]
        if criterion == "chip":
            want = oracles.channel_independence(maps[g.name]).mean(0)
            assert torch.allclose(got, want, rtol=0, atol=1e-6 * want.abs().max().item()), g.name
        elif criterion == "hrank":
            assert torch.allclose(got, oracles.channel_rank(maps[g.name]).double().mean(0), atol=1e-6), g.name
        elif criterion == "l1":
            convs = [modules[n] for n in g.producers if isinstance(modules[n], torch.nn.Conv2d)]
            assert torch.allclose(got, oracles.filter_l1(convs), rtol=1e-6), g.name
        elif criterion == "random":  # the `seed` draw, and one per fine-tuning seed
            assert torch.equal(got, oracles.random_scores(g.name, width, 0)), g.name
            for seed in (0, 1):
                assert torch.equal(saved["scores_per_seed"][seed][g.name].double(),
                                   oracles.random_scores(g.name, width, seed)), (g.name, seed)
        else:  # snpfi: one Shapley value per channel; utilization over coalition sizes 0..C, normalised
            u = saved["utilization"][g.name]
            assert got.shape == (width,) and u.shape == (width + 1,), g.name
            assert u[0] == 0 and u[-1] == 1 and bool((u[1:] >= u[:-1]).all()), (g.name, u)
    if criterion in ("chip", "hrank"):
        assert saved["meta"]["num_images"] == 16 and saved["meta"]["seed"] == 0
    if criterion == "snpfi":
        assert (saved["meta"]["calibration_images"], saved["meta"]["permutations"]) == (16, 2)


def macs(model, shape=(1, 8, 8)) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model.eval()(torch.zeros(1, *shape))
    return fc.get_total_flops() // 2


@pytest.mark.parametrize("criterion", CRITERIA)
def test_pruned_network_keeps_the_top_scoring_channels_and_its_metrics_are_its_own(every_path, criterion):
    p = every_path
    keys = ("scores", "meta", "scores_per_seed") if criterion == "random" else ("scores", "meta")
    saved = load(p / "models" / "b0" / "scores" / f"{criterion}.pt", keys)
    metrics = json.loads((p / "results" / "metrics" / "b0" / "prune" / f"{criterion}-r1.json").read_text())
    images, labels = held_out(p)
    per_seed = metrics["top1_before_finetune_per_seed"].split()
    bits = metrics["test_correct_before_finetune"].split()
    assert metrics["seeds"] == "0 1" and len(per_seed) == len(bits) == 2
    for seed in (0, 1):  # one pruned network per fine-tuning seed
        ckpt = checkpoint.load(p / "models" / "b0" / "pruned" / f"{criterion}-r1" / f"seed{seed}.pt")
        scores = saved["scores_per_seed"][seed] if criterion == "random" else saved["scores"]
        for group, kept in ckpt["meta"]["keep"].items():
            s = scores[group]
            dropped = sorted(set(range(len(s))) - set(kept))
            assert kept == sorted(kept) and kept, group
            if dropped:  # no dropped channel outscores a kept one
                assert s[kept].min() >= s[dropped].max(), group
        pruned = build(p / "models" / "b0" / "pruned" / f"{criterion}-r1" / f"seed{seed}.pt")
        assert metrics["params"] == sum(t.numel() for t in pruned.parameters())
        assert metrics["macs"] == macs(pruned) and metrics["flops_paper"] == oracles.flops_paper(pruned, (1, 8, 8))
        top1 = oracles.top1(pruned, images, labels)
        assert float(per_seed[seed]) == pytest.approx(top1, abs=0.005)
        assert 100 * correctness.decode(bits[seed], len(labels)).mean() == pytest.approx(top1, abs=1e-9)
    assert metrics["top1_before_finetune"] == pytest.approx(statistics.fmean(map(float, per_seed)), abs=0.01)
    keeps = [checkpoint.load(p / "models" / "b0" / "pruned" / f"{criterion}-r1" / f"seed{s}.pt")["meta"]["keep"] for s in (0, 1)]
    # random prunes each seed's own draw; every other criterion the same network for both seeds
    assert (keeps[0] != keeps[1]) == (criterion == "random") and (bits[0] != bits[1]) <= (criterion == "random")
    baseline_macs = macs(build(p / "models" / "b0" / "baseline.pt"))
    if criterion == "snpfi":  # its own widths, for the MACs reduction the rates give
        rate_based = build(p / "models" / "b0" / "pruned" / "chip-r1" / "seed0.pt")
        target = 100 * (1 - macs(rate_based) / baseline_macs)
        assert metrics["target_macs_reduction_pct"] == pytest.approx(target, abs=1e-9)
        assert metrics["reached_macs_reduction_pct"] == pytest.approx(100 * (1 - metrics["macs"] / baseline_macs))
        assert abs(metrics["reached_macs_reduction_pct"] - target) <= 1.0
        assert {"top1_before_recovery", "top1_after_refit"} <= set(metrics)
    else:  # the rates alone set the widths: every rate-based criterion's network has the same shape
        assert checkpoint.load(p / "models" / "b0" / "pruned" / f"{criterion}-r1" / "seed0.pt")["widths"] == \
            checkpoint.load(p / "models" / "b0" / "pruned" / "chip-r1" / "seed0.pt")["widths"]


@pytest.mark.parametrize("criterion", CRITERIA)
def test_finetuned_network_is_evaluated_against_the_baseline(every_path, criterion):
    p = every_path
    record = json.loads((p / "results" / "metrics" / "b0" / "evaluate" / f"{criterion}-r1.json").read_text())
    baseline = json.loads((p / "results" / "metrics" / "b0" / "train_baseline.json").read_text())
    images, labels = held_out(p)
    top1 = []
    for seed in (0, 1):  # each seed fine-tunes its own pruned network
        pruned = checkpoint.load(p / "models" / "b0" / "pruned" / f"{criterion}-r1" / f"seed{seed}.pt")
        tuned = checkpoint.load(p / "models" / "b0" / "finetuned" / f"{criterion}-r1" / f"seed{seed}.pt")
        assert tuned["widths"] == pruned["widths"] and tuned["meta"]["finetuned"] and tuned["meta"]["seed"] == seed
        assert tuned["meta"]["keep"] == pruned["meta"]["keep"]
        assert not all(torch.equal(tuned["state_dict"][k], v) for k, v in pruned["state_dict"].items())  # it trained
        with open(p / "results" / "metrics" / "b0" / "finetune" / f"{criterion}-r1" / f"seed{seed}.csv") as f:
            assert len(list(csv.DictReader(f))) == 1  # finetune.epochs
        model = build(p / "models" / "b0" / "finetuned" / f"{criterion}-r1" / f"seed{seed}.pt")
        top1.append(oracles.top1(model, images, labels))
    assert record["seeds"] == "0 1" and record["top1_per_seed"] == " ".join(f"{t:.2f}" for t in top1)
    assert record["top1"] == pytest.approx(statistics.fmean(top1), abs=1e-9)
    assert record["top1_std"] == pytest.approx(statistics.stdev(top1), abs=1e-9)
    assert record["params"] == sum(t.numel() for t in model.parameters()) and record["macs"] == macs(model)
    assert record["baseline_top1"] == baseline["top1"] and record["baseline_params"] == baseline["params"]
    assert record["params_reduction_pct"] == pytest.approx(100 * (1 - record["params"] / baseline["params"]))
    prune_metrics = json.loads((p / "results" / "metrics" / "b0" / "prune" / f"{criterion}-r1.json").read_text())
    for key in ("top1_before_finetune", "top1_before_finetune_per_seed", "test_correct_before_finetune"):
        assert record[key] == prune_metrics[key], key
    assert (record["criterion"], record["setting"], record["sparsity"]) == (criterion, "r1", ROW1_R20)
    assert not any(k.startswith("latency_") for k in record)  # latency.repeats: 0


def test_sweep_with_fine_tuning_measures_every_criterion_and_random_s_draws(every_path, tmp_path):
    """sweep.finetune_epochs above 0: every swept network (each criterion, random once per seed)
    is also fine-tuned; its row then has the fine-tuned top-1, and the plot a third row."""
    import shutil

    import matplotlib.image

    project = tmp_path / "p"
    shutil.copytree(every_path, project, ignore=shutil.ignore_patterns(".git", "mlflow.db"))
    edit_params(project, **{"sweep.schemes": ["inner"], "sweep.ratios": [0.5], "sweep.bn_images": 32,
                            "sweep.finetune_epochs": 1})
    code, err = stage_in_process(project, "sweep")
    assert code == 0, err[-3000:]
    with open(project / "results" / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["criterion"], r["seed"]) for r in rows] == [("chip", "0"), ("hrank", "0"), ("l1", "0"), ("random", "0"),
                                                           ("random", "1"), ("snpfi", "0")]
    assert all(0 <= float(r["top1_finetuned"]) <= 100 for r in rows)
    draws = [r for r in rows if r["criterion"] == "random"]
    assert draws[0]["macs"] == draws[1]["macs"]  # the same widths, other channels
    height, width, _ = matplotlib.image.imread(project / "results" / "sweep.png").shape
    assert height > width  # three rows of panels (pruned, BatchNorm re-estimated, fine-tuned), one scheme


def test_every_stage_refuses_a_criterion_outside_prune_criteria(every_path):
    code, err = stage_in_process(every_path, "score", "--criterion", "magic")
    assert code == 2 and err.startswith("error: --criterion: 'magic' is not in prune.criteria"), err


def test_inputs_made_from_another_baseline_are_refused_naming_both_files(every_path, tmp_path):
    """A scores file (or a features file) records the md5 of the baseline it was made from; the
    stages that read it with the baseline compare the two and refuse a mismatch in one line,
    naming both files, before writing anything (a scores file copied from another baseline's
    project used to prune a different network without a word)."""
    import shutil

    project = tmp_path / "p"
    shutil.copytree(every_path, project, symlinks=True)
    baseline = project / "models" / "b0" / "baseline.pt"
    other = checkpoint.load(baseline)  # another baseline: the same network with one weight changed
    other["state_dict"]["conv1.weight"] = other["state_dict"]["conv1.weight"] + 1
    checkpoint.torch_save(baseline, other)
    before = files_under(project)
    for name, args, culprit in (("prune", ("--criterion", "chip", "--setting", "r1"), "models/b0/scores/chip.pt"),
                                ("score", ("--criterion", "chip"), "models/b0/features.pt")):
        code, err = stage_in_process(project, name, *args)
        assert code == 2 and err.count("\n") == 1, err
        assert err.startswith(f"error: {culprit}: made from another baseline (md5 ") and "models/b0/baseline.pt (md5 " in err
        assert files_under(project) == before
    # another network's checkpoint in the baseline's place (a ResNet-56 where model.arch is ResNet-20)
    from prunelab import models

    foreign = models.build_model("resnet56", None, 1, 10)
    checkpoint.save(baseline, foreign, "resnet56", models.default_widths("resnet56"), 1, 10)
    before = files_under(project)
    for name, *args in (("extract_features",), ("prune", "--criterion", "l1", "--setting", "r1")):
        code, err = stage_in_process(project, name, *args)
        assert code == 2 and err == ("error: models/b0/baseline.pt: a resnet56 checkpoint, not the unpruned resnet20 of "
                                     "model.arch; run `dvc repro` to train this baseline\n"), (name, err)
        assert files_under(project) == before
