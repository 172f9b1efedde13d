import pickle

import numpy as np
import pytest
import torch
from helpers import DEVICES

from prunelab.data import DatasetError, Loader, crop_flip, load_cifar10, load_dataset, load_digits


def test_digits_split_is_seeded_stratified_and_complete():
    a, b = load_digits(seed=0), load_digits(seed=0)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert a.x_train.shape == (1437, 1, 8, 8) and a.x_test.shape == (360, 1, 8, 8)
    assert a.x_train.dtype == torch.uint8 and int(a.x_train.max()) == 255
    assert torch.bincount(a.y_test).min() >= 35  # stratified: ~36 of each digit
    c = load_digits(seed=1)
    assert not torch.equal(a.y_test, c.y_test)


def test_digits_are_scikit_learns_and_the_split_is_stratified():
    """The digits read from scikit-learn's file without importing it: the images and labels its
    load_digits gives; the split: scikit-learn's test count, each class in proportion (within one
    image), no image on both sides."""
    from sklearn.datasets import load_digits as sk_digits

    from prunelab.data import stratified_split

    bunch = sk_digits()
    s = load_digits(seed=0)
    images = torch.cat([s.x_train, s.x_test])[:, 0]  # (1797, 8, 8) uint8
    labels = torch.cat([s.y_train, s.y_test])
    reference = torch.from_numpy(np.rint(bunch.images * (255 / 16)).astype(np.uint8))
    order = np.lexsort(np.c_[bunch.target, bunch.images.reshape(len(bunch.target), -1)].T)
    mine = np.lexsort(np.c_[labels.numpy(), images.reshape(len(labels), -1).numpy()].T)
    assert torch.equal(images[mine], reference[order]) and torch.equal(labels[mine], torch.from_numpy(bunch.target[order]))
    for fraction, seed in ((0.2, 0), (0.2, 7), (0.5, 1), (0.05, 3)):
        train, test = stratified_split(bunch.target, fraction, seed)
        assert len(test) == int(np.ceil(fraction * 1797)) and len(train) + len(test) == 1797
        assert not set(train) & set(test)
        share = np.bincount(bunch.target[test], minlength=10) / np.bincount(bunch.target, minlength=10) * 1797
        assert np.all(np.abs(share - len(test)) <= 1797 / 174)  # within one image of each class's share


def test_digits_resize_param():
    s = load_dataset("digits", image_size=16)
    assert s.x_train.shape[1:] == (1, 16, 16)


def torchvision_crop_flip(img: torch.Tensor, shift: int, top: int, left: int, flip: bool) -> torch.Tensor:
    """torchvision's RandomCrop(H, padding=shift) + RandomHorizontalFlip for given draws, one image."""
    from torchvision.transforms.v2 import functional as TF

    h, w = img.shape[-2:]
    out = TF.crop(TF.pad(img, [shift]), top, left, h, w)
    return TF.horizontal_flip(out) if flip else out


def test_crop_flip_equals_torchvision_pad_crop_flip_per_image():
    x = torch.randint(0, 256, (6, 3, 7, 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    offsets = torch.tensor([[0, 4, 2, 1, 4, 0], [4, 0, 2, 3, 1, 0]])
    flips = torch.tensor([False, True, True, False, True, False])
    got = crop_flip(x, 2, offsets, flips)
    for i in range(6):
        want = torchvision_crop_flip(x[i], 2, offsets[0, i].item(), offsets[1, i].item(), flips[i].item())
        assert torch.equal(got[i], want), i
    assert torch.equal(crop_flip(x, 0, None, flips)[1], x[1].flip(-1))
    assert crop_flip(x, 0, None, None) is x


def test_cifar_augmentation_is_random_crop_pad_4_and_flip():
    """Every augmented image is one of torchvision's RandomCrop(32, padding=4) + flip outcomes of
    its source image, and all 9 x 9 offsets and both flips occur."""
    n = 96
    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    loader = Loader(x, torch.zeros(n, dtype=torch.int64), torch.zeros(3), torch.ones(3), n,
                    augment={"shift": 4, "flip": True}, seed=5)
    got = (next(iter(loader))[0] * 255).round().to(torch.uint8)  # mean 0, std 1: back to the pixels
    seen = set()
    for i in range(n):
        matches = [(t, l, f) for t in range(9) for l in range(9) for f in (False, True)
                   if torch.equal(got[i], torchvision_crop_flip(x[i], 4, t, l, f))]
        assert matches, f"image {i} is no pad-4 crop (+ flip) of its source"
        seen.update(matches)
    assert {t for t, _, _ in seen} == set(range(9)) and {l for _, l, _ in seen} == set(range(9))
    assert {f for _, _, f in seen} == {False, True}


def reference_batches(x, y, mean, std, batch_size, seed, epoch, shift, flip):
    """The loader's batches, image by image, from its documented draws: a seed*100003 + epoch
    generator gives the permutation, then per batch the crop offsets (2, b) and the flips (b,)."""
    gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(len(y), generator=gen)
    for start in range(0, len(y), batch_size):
        idx = order[start:start + batch_size]
        off = torch.randint(0, 2 * shift + 1, (2, len(idx)), generator=gen)
        flips = torch.rand(len(idx), generator=gen) < 0.5 if flip else torch.zeros(len(idx), dtype=torch.bool)
        imgs = torch.stack([torchvision_crop_flip(x[j], shift, off[0, k].item(), off[1, k].item(), flips[k].item())
                            for k, j in enumerate(idx.tolist())])
        yield (imgs.float() / 255 - mean[None, :, None, None]) / std[None, :, None, None], y[idx]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("flip", [False, True])
def test_loader_batches_are_the_reference_draws_image_by_image(flip, device):
    # the draw order is what makes a seed's batches (and so digits results) stable across versions;
    # on a GPU the same draws are cropped and flipped there
    s = load_digits()
    loader = Loader(s.x_train[:150], s.y_train[:150], s.mean, s.std, 64, device, shuffle=True,
                    augment={"shift": 1, "flip": flip}, seed=3)
    loader.set_epoch(2)
    got = list(loader)
    want = list(reference_batches(s.x_train[:150], s.y_train[:150], s.mean, s.std, 64, 3, 2, 1, flip))
    assert [len(b[1]) for b in got] == [64, 64, 22] == [len(b[1]) for b in want]
    for (gx, gy), (wx, wy) in zip(got, want):
        assert gx.device.type == gy.device.type == device.type
        torch.testing.assert_close(gx.cpu(), wx, rtol=0, atol=0 if device.type == "cpu" else 1e-6)
        assert torch.equal(gy.cpu(), wy)


@pytest.mark.parametrize("n, world", [(37, 2), (37, 3), (33, 2), (32, 4)])
def test_shards_of_a_step_together_are_the_global_batch(n, world):
    x = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    full = Loader(x, torch.arange(n), torch.zeros(3), torch.ones(3), 16, shuffle=True,
                  augment={"shift": 2, "flip": True}, seed=1)
    full.set_epoch(4)
    for drop_small in (True, False):
        shards = [full.shard(r, world, drop_small) for r in range(world)]
        assert len({len(s) for s in shards}) == 1
        steps = list(zip(*shards))
        kept = [b for b in full if not drop_small or len(b[1]) >= world]  # 33 / 16 leaves 1 image: dropped
        assert len(steps) == len(kept) == len(shards[0])
        for parts, (x_all, y_all) in zip(steps, kept):
            assert [len(p[1]) for p in parts] == [(r + 1) * len(y_all) // world - r * len(y_all) // world
                                                  for r in range(world)]
            assert torch.equal(torch.cat([p[0] for p in parts]), x_all)
            assert torch.equal(torch.cat([p[1] for p in parts]), y_all)


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


def test_cifar10_loader_reads_the_on_disk_format(tmp_path):
    first = write_fake_cifar10(tmp_path)
    with pytest.raises(DatasetError, match="data_batch_1: corrupted"):  # not the release's md5
        load_cifar10(tmp_path, download=False)
    s = load_cifar10(tmp_path, download=False, verify=False)
    assert s.x_train.shape == (20, 3, 32, 32) and s.x_test.shape == (6, 3, 32, 32)
    # row-major 3072 = 3 planes of 32x32, the real format's layout
    assert torch.equal(s.x_train[0], torch.from_numpy(first[0].reshape(3, 32, 32)))
    assert s.augment == {"shift": 4, "flip": True}


def test_missing_cifar10_names_the_root_and_the_fix(tmp_path):
    with pytest.raises(DatasetError, match=r"no CIFAR-10 found in .*nowhere.*download: true"):
        load_cifar10(tmp_path / "nowhere", download=False)


def test_unknown_dataset_lists_the_allowed():
    with pytest.raises(DatasetError, match="allowed: digits, cifar10, mnist, fashion_mnist, imagenet"):
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
