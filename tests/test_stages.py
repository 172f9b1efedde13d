"""Bad input to a stage: one line naming the key and what is allowed, exit code 2, nothing written."""

import pytest

from helpers import copy_project, stage

ROW1_R20 = "[0.]+[0.15]*2+[0.4]*9"


def files_under(project):
    return sorted(p.relative_to(project).as_posix() for p in project.rglob("*")
                  if p.is_file() and not p.relative_to(project).parts[0] in (".git", ".dvc", "prunelab", "stages"))


CASES = [
    ({"model.arch": "resnet57"}, "model.arch", "allowed: resnet20"),
    ({"prune.criteria": ["chip", "magic"]}, "prune.criteria", "allowed: chip"),
    ({"prune.settings.r1": "[0.]+[1.2]*2+[0.4]*27"}, "prune.settings.r1", "[0, 1)"),
    ({"prune.settings.r1": ROW1_R20}, "prune.settings.r1", "takes 30 rates"),
    ({"train.epochs": 0}, "train.epochs", "integer >= 1"),
    ({"finetune.epochs": -3}, "finetune.epochs", "integer >= 1"),
    ({"train.epoch": 3}, "train.epoch", "unknown key; allowed: epochs"),
    ({"device": "tpu"}, "device", "allowed: auto, cpu, cuda"),
    ({"model.arch": "vgg16", "prune.settings": {"r1": "[0.3]*12"}}, "data.image_size", "at least 32 pixels"),
    ({"data.name": "cifar10", "data.image_size": 32, "paths.data": "no/such/dir"}, "paths.data", "data.download: true"),
]


@pytest.mark.parametrize("overrides,key,allowed", CASES, ids=[c[1] + ":" + c[2][:12] for c in CASES])
def test_bad_params_exit_2_with_one_line_and_write_nothing(tmp_path, overrides, key, allowed):
    project = copy_project(tmp_path / "p", **overrides)
    before = files_under(project)
    r = stage(project, "train_baseline")
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith(f"error: {key}") and allowed in r.stderr, r.stderr
    assert files_under(project) == before


def test_corrupt_checkpoint_is_named_and_nothing_is_written(tmp_path):
    project = copy_project(tmp_path / "p")
    (project / "models").mkdir()
    (project / "models" / "baseline.pt").write_bytes(b"\x00garbage")
    before = files_under(project)
    r = stage(project, "extract_features")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "models/baseline.pt" in r.stderr and "corrupt" in r.stderr
    assert files_under(project) == before


def test_score_stage_for_every_criterion_records_its_provenance(tmp_path):
    """extract_features + score for hrank, l1 and random on a saved baseline: right scores, provenance."""
    import torch

    from prunelab import checkpoint, criteria, models

    project = copy_project(tmp_path / "p", **{"model.arch": "resnet20", "features.num_images": 16,
                                              "features.batch_size": 8, "prune.criteria": ["hrank", "l1", "random"],
                                              "prune.settings": {"r1": ROW1_R20}})
    torch.manual_seed(0)
    model = models.build_model("resnet20", in_channels=1)
    checkpoint.save(project / "models" / "baseline.pt", model, "resnet20", models.default_widths("resnet20"), 1, 10)
    assert stage(project, "extract_features").returncode == 0
    groups = models.channel_groups("resnet20")
    for criterion in ("hrank", "l1", "random"):
        r = stage(project, "score", "--criterion", criterion)
        assert r.returncode == 0, r.stderr
        saved = checkpoint.torch_load(project / "scores" / f"{criterion}.pt", ("scores", "meta"))
        assert saved["meta"]["criterion"] == criterion
        assert saved["meta"]["baseline_md5"] == checkpoint.file_hash(project / "models" / "baseline.pt")
        assert set(saved["scores"]) == {g.name for g in groups}
        if criterion in criteria.MODEL_CRITERIA:
            expected = criteria.MODEL_CRITERIA[criterion](model, groups, 0)
            assert all(torch.equal(saved["scores"][k], expected[k]) for k in expected)
        else:
            assert saved["meta"]["num_images"] == 16 and saved["meta"]["seed"] == 0
            assert 1 <= float(saved["scores"]["relu"].max()) <= 8  # ranks of 8x8 maps


def test_pretrained_weights_become_the_baseline_without_training(tmp_path):
    import json

    import torch

    from prunelab import checkpoint, models

    torch.manual_seed(0)
    model = models.build_model("resnet20", in_channels=1)
    project = copy_project(tmp_path / "p", **{"model.arch": "resnet20", "model.pretrained": "given.pth",
                                              "prune.settings": {"r1": ROW1_R20}})
    torch.save(model.state_dict(), project / "given.pth")
    r = stage(project, "train_baseline")
    assert r.returncode == 0, r.stderr
    saved = checkpoint.load(project / "models" / "baseline.pt")
    assert all(torch.equal(saved["state_dict"][k], v) for k, v in model.state_dict().items())
    metrics = json.loads((project / "results" / "metrics" / "train_baseline.json").read_text())
    assert metrics["params"] == sum(p.numel() for p in model.parameters()) and 0 <= metrics["top1"] <= 100
    assert (project / "results" / "metrics" / "train_baseline.csv").read_text().count("\n") == 2  # header + 1 row
