import pickle

import numpy as np
import pytest
import torch

from prunelab.data import DatasetError, Loader, load_cifar10, load_dataset, load_digits, random_shift


def test_digits_split_is_seeded_stratified_and_complete():
    a, b = load_digits(seed=0), load_digits(seed=0)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert a.x_train.shape == (1437, 1, 8, 8) and a.x_test.shape == (360, 1, 8, 8)
    assert a.x_train.dtype == torch.uint8 and int(a.x_train.max()) == 255
    assert torch.bincount(a.y_test).min() >= 35  # stratified: ~36 of each digit
    c = load_digits(seed=1)
    assert not torch.equal(a.y_test, c.y_test)


def test_digits_resize_param():
    s = load_dataset("digits", image_size=16)
    assert s.x_train.shape[1:] == (1, 16, 16)


def test_random_shift_equals_per_image_crop_of_padded_image():
    x = torch.arange(2 * 1 * 5 * 5, dtype=torch.float32).reshape(2, 1, 5, 5)
    gen = torch.Generator().manual_seed(0)
    got = random_shift(x, 2, gen)
    off = torch.randint(0, 5, (2, 2), generator=torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        dy, dx = off[0, i].item(), off[1, i].item()
        assert torch.equal(got[i], padded[i, :, dy:dy + 5, dx:dx + 5])


def test_loader_is_reproducible_and_normalises():
    s = load_digits()
    make = lambda: Loader(s.x_train, s.y_train, s.mean, s.std, 100, shuffle=True, augment=s.augment, seed=3)
    (x1, y1), (x2, y2) = next(iter(make())), next(iter(make()))
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    plain = Loader(s.x_train, s.y_train, s.mean, s.std, 2000)
    xs = next(iter(plain))[0]
    assert abs(xs.mean().item()) < 1e-4 and abs(xs.std().item() - 1) < 1e-3
    assert len(make()) == 15


def write_fake_cifar10(root, n_train_per_batch=4, n_test=6):
    """CIFAR-10's python on-disk format: cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}."""
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def batch(name, n):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        with open(d / name, "wb") as f:
            pickle.dump({"batch_label": name, "data": data, "labels": [int(v) for v in rng.integers(0, 10, n)],
                         "filenames": ["x.png"] * n}, f)
        return data

    first = batch("data_batch_1", n_train_per_batch)
    for i in range(2, 6):
        batch(f"data_batch_{i}", n_train_per_batch)
    batch("test_batch", n_test)
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)], "num_cases_per_batch": 4}, f)
    return first


def test_cifar10_loader_reads_the_on_disk_format(tmp_path, monkeypatch):
    import torchvision.datasets.cifar

    first = write_fake_cifar10(tmp_path)
    # torchvision checks each file's md5 against the real release's; ours are other bytes
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda path, md5=None: True)
    s = load_cifar10(tmp_path, download=False)
    assert s.x_train.shape == (20, 3, 32, 32) and s.x_test.shape == (6, 3, 32, 32)
    # row-major 3072 = 3 planes of 32x32, the real format's layout
    assert torch.equal(s.x_train[0], torch.from_numpy(first[0].reshape(3, 32, 32)))
    assert s.augment == {"shift": 4, "flip": True}


def test_missing_cifar10_names_the_root_and_the_fix(tmp_path):
    with pytest.raises(DatasetError, match=r"no CIFAR-10 found in .*nowhere.*download: true"):
        load_cifar10(tmp_path / "nowhere", download=False)


def test_unknown_dataset_lists_the_allowed():
    with pytest.raises(DatasetError, match="allowed: digits, cifar10, mnist, imagenet"):
        load_dataset("imagenet42")


def write_fake_mnist(root, n_train=12, n_test=5):
    """MNIST's raw on-disk format: big-endian idx files in MNIST/raw/ (as torchvision leaves them, unzipped)."""
    import struct

    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">iiii", 2051, n, 28, 28) + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">ii", 2049, n) + labels.tobytes())
        out[prefix] = (images, labels)
    return out


def test_mnist_loader_reads_the_idx_format(tmp_path):
    from prunelab.data import load_mnist

    written = write_fake_mnist(tmp_path)
    s = load_mnist(tmp_path)
    assert s.x_train.shape == (12, 1, 28, 28) and s.x_test.shape == (5, 1, 28, 28)
    assert torch.equal(s.x_train[:, 0], torch.from_numpy(written["train"][0]))
    assert torch.equal(s.y_test, torch.from_numpy(written["t10k"][1]).long())
    x, y = next(iter(s.train_loader(4, seed=0)))
    assert x.shape == (4, 1, 28, 28) and y.dtype == torch.int64
    with pytest.raises(DatasetError, match="no MNIST found"):
        load_mnist(tmp_path / "nowhere")


def write_fake_image_folder(root, classes=("n01", "n02"), per_class=3):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(root / split / c / f"{i}.png")


def test_imagenet_folder_tree_loads_with_paper_transforms(tmp_path):
    from prunelab.data import FolderSplits

    write_fake_image_folder(tmp_path)
    s = load_dataset("imagenet", tmp_path, image_size=16)
    assert isinstance(s, FolderSplits) and (s.num_classes, s.in_channels, s.image_size) == (2, 3, 16)
    s.num_workers = 0
    train = s.train_loader(4, seed=0)
    assert len(train) == 2
    x1, y1 = next(iter(train))
    x2, y2 = next(iter(s.train_loader(4, seed=0)))
    assert x1.shape == (4, 3, 16, 16) and torch.equal(x1, x2) and torch.equal(y1, y2)  # seeded
    train.set_epoch(1)
    assert not torch.equal(next(iter(train))[0], x1)  # another epoch, another shuffle and crops
    xv, yv = next(iter(s.test_loader(6)))
    assert xv.shape == (6, 3, 16, 16) and yv.tolist() == [0, 0, 0, 1, 1, 1]


def test_imagenet_errors_name_the_problem(tmp_path):
    with pytest.raises(DatasetError, match="val/ is missing"):
        (tmp_path / "train").mkdir()
        load_dataset("imagenet", tmp_path)
    with pytest.raises(DatasetError, match="cannot be downloaded"):
        load_dataset("imagenet", tmp_path, download=True)
    with pytest.raises(DatasetError, match="mnist images are 28x28"):
        load_dataset("mnist", tmp_path, image_size=32)
