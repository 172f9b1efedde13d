import pytest
import torch

from prunelab import checkpoint, models


def test_round_trip_rebuilds_the_module_from_arch_and_widths(tmp_path):
    widths = models.pruned_widths("resnet20", [0.0, 0.5, 0.25] + [0.5] * 9)
    m = models.build_model("resnet20", widths, 1, 10).eval()
    path = tmp_path / "sub" / "m.pt"
    checkpoint.save(path, m, "resnet20", widths, 1, 10, meta={"note": "x"})
    ckpt = checkpoint.load(path)
    assert ckpt["widths"] == widths and ckpt["meta"] == {"note": "x"}
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(checkpoint.build(ckpt).eval()(x), m(x))
    assert [p.name for p in path.parent.iterdir()] == ["m.pt"]  # no temp file left behind


def test_equal_models_give_equal_bytes(tmp_path):
    torch.manual_seed(0)
    m = models.build_model("resnet20")
    for name in ("a.pt", "b.pt"):
        checkpoint.save(tmp_path / name, m, "resnet20", models.default_widths("resnet20"), 3, 10)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()


def test_corrupt_missing_and_pickled_module_checkpoints_are_refused(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(checkpoint.CheckpointError, match="bad.pt.*corrupt"):
        checkpoint.load(bad)
    with pytest.raises(checkpoint.CheckpointError, match="does not exist"):
        checkpoint.load(tmp_path / "none.pt")
    pickled = tmp_path / "module.pt"
    torch.save({"model": models.build_model("resnet20")}, pickled)  # a pickled nn.Module: refused by weights_only
    with pytest.raises(checkpoint.CheckpointError, match="module.pt"):
        checkpoint.load(pickled)


def test_interrupted_save_keeps_the_previous_file(tmp_path):
    path = tmp_path / "m.pt"
    path.write_bytes(b"previous")

    def boom(tmp):
        open(tmp, "wb").write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        checkpoint.atomic_write(path, boom)
    assert path.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_torchvision_weights_file_loads_into_our_resnet50(tmp_path, monkeypatch):
    import torchvision

    torch.manual_seed(0)
    theirs = torchvision.models.resnet50()
    torch.save(theirs.state_dict(), tmp_path / "resnet50.pth")
    torch.save({"state_dict": theirs.state_dict()}, tmp_path / "wrapped.pth")
    x = torch.randn(1, 3, 64, 64)
    for name in ("resnet50.pth", "wrapped.pth"):
        ours = checkpoint.load_weights(models.build_model("resnet50", num_classes=1000), tmp_path / name)
        assert torch.equal(ours.eval()(x), theirs.eval()(x))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(checkpoint.CheckpointError, match="model.pretrained: 'resnet50.pth' does not fit"):
        checkpoint.load_weights(models.build_model("resnet50", num_classes=10), "resnet50.pth")
    with pytest.raises(checkpoint.CheckpointError, match="model.pretrained: weights file .* does not exist"):
        checkpoint.load_weights(models.build_model("resnet50"), tmp_path / "none.pth")
