"""Fashion-MNIST: the idx loader, its lookup order and md5 checks, on synthetic files in the
release's format and on the real files where Debian's package is installed; data.train_subset."""

import copy
import gzip
import hashlib
import re
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from prunelab import config, data, synthetic
from prunelab.data import DatasetError, DatasetNotFound, balanced_subset, load_dataset

ROOT = Path(__file__).resolve().parents[1]
FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
         "t10k-labels-idx1-ubyte.gz")


def parse_idx_gz(path: Path) -> np.ndarray:
    """The reference reader: gunzip, then the idx header read field by field."""
    raw = gzip.decompress(path.read_bytes())
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    assert (zero, dtype) == (0, 8), (zero, dtype)
    shape = struct.unpack(f">{ndim}i", raw[4:4 + 4 * ndim])
    return np.frombuffer(raw[4 + 4 * ndim:], dtype=np.uint8).reshape(shape)


@pytest.fixture
def no_debian(tmp_path, monkeypatch):
    """Debian's folder redirected to an (empty) place under tmp_path."""
    monkeypatch.setattr(data, "DEBIAN_FASHION_DIR", tmp_path / "debian" / "fashion-mnist")
    return tmp_path / "debian"


def install_fake_debian(debian: Path, seed: int) -> Path:
    """Synthetic files in the redirected Debian folder."""
    raw = synthetic.write_fashion_mnist(debian / "src", seed=seed)
    raw.rename(data.DEBIAN_FASHION_DIR)
    return data.DEBIAN_FASHION_DIR


def trust_unzipped(monkeypatch, folder: Path) -> None:
    """The md5s of folder's files once unzipped stand in for the release's unzipped bytes'."""
    monkeypatch.setattr(data, "FASHION_UNZIPPED_MD5",
                        {n: hashlib.md5(gzip.decompress((folder / n).read_bytes())).hexdigest() for n in FILES})


def recompress(path: Path, mtime: int) -> None:
    """path re-gzipped as Debian did: the same bytes inside, another header (no name, other time)."""
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes()), mtime=mtime))


def refused_once_changed(path: Path, root: Path) -> None:
    """One flipped bit in path's last byte: the loader refuses it in one line naming the file."""
    path.write_bytes(path.read_bytes()[:-1] + bytes([path.read_bytes()[-1] ^ 1]))
    with pytest.raises(DatasetError, match=rf"{re.escape(path.name)}: corrupted") as e:
        load_dataset("fashion_mnist", root)
    assert "\n" not in str(e.value)


def test_synthetic_idx_files_go_through_the_real_loader(tmp_path, no_debian):
    raw = synthetic.write_fashion_mnist(tmp_path)
    assert set(FILES) <= {p.name for p in raw.iterdir()}
    synthetic.verify(raw)  # their md5s as written: what the smoke mode checks instead of the release's
    assert all((raw / n).read_bytes()[:2] == b"\x1f\x8b" for n in FILES)  # gzipped, as the release is
    s = load_dataset("fashion_mnist", tmp_path, verify=False)
    assert s.x_train.shape == (300, 1, 28, 28) and s.x_test.shape == (100, 1, 28, 28)
    assert s.x_train.dtype == torch.uint8 and s.y_train.dtype == torch.int64
    assert np.array_equal(s.x_train[:, 0].numpy(), parse_idx_gz(raw / FILES[0]))
    assert np.array_equal(s.y_train.numpy(), parse_idx_gz(raw / FILES[1]))
    assert np.array_equal(s.x_test[:, 0].numpy(), parse_idx_gz(raw / FILES[2]))
    assert np.array_equal(s.y_test.numpy(), parse_idx_gz(raw / FILES[3]))
    assert s.num_classes == 10 and s.in_channels == 1 and s.image_size == 28
    synthetic.write_mnist(tmp_path)
    assert s.augment == load_dataset("mnist", tmp_path).augment  # augmented as MNIST is
    x = parse_idx_gz(raw / FILES[0]) / 255.0
    assert torch.allclose(s.mean, torch.tensor([x.mean()], dtype=torch.float32))
    assert torch.allclose(s.std, torch.tensor([x.std(ddof=1)], dtype=torch.float32))
    # the smoke mode's entry point writes the same files
    assert synthetic.write_dataset("fashion_mnist", tmp_path / "w") == tmp_path / "w" / "FashionMNIST" / "raw"


def test_md5_mismatch_is_one_line_naming_the_file(tmp_path, no_debian, monkeypatch):
    raw = synthetic.write_fashion_mnist(tmp_path)
    # synthetic bytes are not the release's: torchvision's md5s reject the first file read
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte.gz: corrupted") as e:
        load_dataset("fashion_mnist", tmp_path)
    assert "\n" not in str(e.value) and str(raw) in str(e.value)
    # with the synthetic files' own md5s as the reference, they load; one changed byte fails, naming its file
    md5s = {n: hashlib.md5((raw / n).read_bytes()).hexdigest() for n in FILES}
    monkeypatch.setattr(data, "_fashion_release", lambda: md5s)
    assert load_dataset("fashion_mnist", tmp_path).x_train.shape == (300, 1, 28, 28)
    refused_once_changed(raw / "t10k-labels-idx1-ubyte.gz", tmp_path)


def test_lookup_order_paths_data_then_debian_then_download(tmp_path, no_debian, monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("downloaded although the files were there")

    monkeypatch.setattr("torchvision.datasets.FashionMNIST.download", no_download)
    debian = install_fake_debian(no_debian, seed=1)
    trust_unzipped(monkeypatch, debian)
    empty = tmp_path / "empty"
    # only Debian's folder has the files: found without configuration, checked by their unzipped bytes
    s = load_dataset("fashion_mnist", empty, download=True)
    assert np.array_equal(s.y_train.numpy(), parse_idx_gz(debian / FILES[1]))
    assert s.source == debian  # and it says so
    # paths.data has them too: paths.data wins
    mine = synthetic.write_fashion_mnist(tmp_path / "mine", seed=2)
    s = load_dataset("fashion_mnist", tmp_path / "mine", verify=False)
    assert np.array_equal(s.y_train.numpy(), parse_idx_gz(mine / FILES[1]))
    assert not np.array_equal(parse_idx_gz(mine / FILES[1]), parse_idx_gz(debian / FILES[1]))
    assert s.source == mine
    # a Debian file whose unzipped bytes are not the release's (here: gzipped twice): one line naming it
    (debian / FILES[2]).write_bytes(gzip.compress((debian / FILES[2]).read_bytes()))
    with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte\.gz: corrupted") as e:
        load_dataset("fashion_mnist", empty)
    assert "\n" not in str(e.value)


def test_a_recompressed_or_unzipped_copy_in_paths_data_is_the_release(tmp_path, no_debian, monkeypatch):
    """The issue's case: Debian's re-compressed files copied into paths.data/FashionMNIST/raw/ were
    called corrupted. A file passes on its own md5 or on its unzipped bytes' md5."""
    raw = synthetic.write_fashion_mnist(tmp_path, seed=3)
    md5s = {n: hashlib.md5((raw / n).read_bytes()).hexdigest() for n in FILES}
    monkeypatch.setattr(data, "_fashion_release", lambda: md5s)  # these bytes are "the release"
    trust_unzipped(monkeypatch, raw)
    expected = load_dataset("fashion_mnist", tmp_path)
    for n in FILES:
        recompress(raw / n, mtime=1_590_000_000)
    assert all(hashlib.md5((raw / n).read_bytes()).hexdigest() != md5s[n] for n in FILES)  # other .gz bytes
    s = load_dataset("fashion_mnist", tmp_path)
    assert torch.equal(s.x_train, expected.x_train) and torch.equal(s.y_test, expected.y_test)
    assert s.source == raw
    # torchvision's unzipped copies (the names without .gz) are read as well
    for n in FILES:
        (raw / n.removesuffix(".gz")).write_bytes(gzip.decompress((raw / n).read_bytes()))
        (raw / n).unlink()
    s = load_dataset("fashion_mnist", tmp_path)
    assert torch.equal(s.x_train, expected.x_train) and torch.equal(s.y_test, expected.y_test)
    # the unzipped reference is what is checked: one changed pixel fails, naming the file
    refused_once_changed(raw / "t10k-images-idx3-ubyte", tmp_path)


def test_files_almost_in_place_are_refused_not_replaced_by_debians_copy(tmp_path, no_debian, monkeypatch):
    """A paths.data the user filled wrongly used to fall back to Debian's copy in silence."""
    debian = install_fake_debian(no_debian, seed=1)
    trust_unzipped(monkeypatch, debian)
    # the four files straight in paths.data, not in FashionMNIST/raw/ under it
    flat = tmp_path / "flat"
    synthetic.write_fashion_mnist(tmp_path / "w", seed=2).rename(flat)
    with pytest.raises(DatasetNotFound, match="move its files there") as e:
        load_dataset("fashion_mnist", flat)
    assert str(flat / "FashionMNIST" / "raw") in str(e.value) and "\n" not in str(e.value)
    # some of the four in raw/: the missing ones are named
    raw = synthetic.write_fashion_mnist(tmp_path / "part", seed=2)
    (raw / FILES[1]).unlink()
    with pytest.raises(DatasetNotFound, match=f"holds 3 of Fashion-MNIST's 4 files; missing: {FILES[1]}"):
        load_dataset("fashion_mnist", tmp_path / "part")
    # the stage says which copy it read
    assert load_dataset("fashion_mnist", tmp_path / "nothing").source == debian


def test_missing_dataset_names_the_three_ways(tmp_path, no_debian):
    with pytest.raises(DatasetNotFound) as e:
        load_dataset("fashion_mnist", tmp_path)
    msg = str(e.value)
    assert "\n" not in msg
    for way in (str(tmp_path / "FashionMNIST" / "raw"), "make fashion-data", "apt-get install dataset-fashion-mnist",
                "data.download: true"):
        assert way in msg, (way, msg)
    # three of the four files are not a dataset either
    raw = synthetic.write_fashion_mnist(tmp_path)
    (raw / FILES[3]).unlink()
    with pytest.raises(DatasetNotFound, match=f"missing: {FILES[3]}"):
        load_dataset("fashion_mnist", tmp_path, verify=False)


def test_a_malformed_idx_file_is_named(tmp_path, no_debian):
    raw = synthetic.write_fashion_mnist(tmp_path)
    images = gzip.decompress((raw / FILES[0]).read_bytes())
    (raw / FILES[0]).write_bytes(gzip.compress(images[:-28]))  # the last image's last row is missing
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte\.gz: .*values after the header"):
        load_dataset("fashion_mnist", tmp_path, verify=False)


def check_balanced(sub: np.ndarray, full: np.ndarray, size: int, k: int) -> None:
    """As equal per class as the classes hold: classes not taken whole differ by at most one,
    and no class taken whole has more than they."""
    got, have = np.bincount(sub, minlength=k), np.bincount(full, minlength=k)
    assert got.sum() == size and (got <= have).all()
    partial = got[got < have]
    if partial.size:
        assert partial.max() - partial.min() <= 1, got
        assert got.max() <= partial.min() + 1, got


def test_train_subset_is_balanced_seeded_and_real_images(tmp_path, no_debian):
    synthetic.write_fashion_mnist(tmp_path)
    full = load_dataset("fashion_mnist", tmp_path, verify=False)
    a = load_dataset("fashion_mnist", tmp_path, verify=False, seed=3, train_subset=101)
    b = load_dataset("fashion_mnist", tmp_path, verify=False, seed=3, train_subset=101)
    c = load_dataset("fashion_mnist", tmp_path, verify=False, seed=4, train_subset=101)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_train, b.y_train)
    assert not torch.equal(a.x_train, c.x_train)
    check_balanced(a.y_train.numpy(), full.y_train.numpy(), 101, 10)
    # each subset image is a training image with its own label, none twice; the test split is untouched
    rows = {img.tobytes(): int(y) for img, y in zip(full.x_train.numpy(), full.y_train.numpy())}
    picked = [img.tobytes() for img in a.x_train.numpy()]
    assert len(set(picked)) == 101 and [rows[p] for p in picked] == a.y_train.tolist()
    assert torch.equal(a.x_test, full.x_test)
    x = a.x_train.double() / 255  # normalised by the subset's own statistics
    assert torch.allclose(a.mean, x.mean().float()[None]) and torch.allclose(a.std, x.std().float()[None])
    with pytest.raises(DatasetError, match="data.train_subset: 301 is more than the 300 training images"):
        load_dataset("fashion_mnist", tmp_path, verify=False, train_subset=301)


@pytest.mark.parametrize("counts, size", [([2, 50, 50, 50, 50, 50, 50, 50, 50, 7], 100),
                                          ([30] * 10, 37), ([5, 9], 14), ([1, 0, 40], 10)])
def test_balanced_subset_scarce_classes(counts, size):
    y = torch.from_numpy(np.random.default_rng(0).permutation(np.repeat(np.arange(len(counts)), counts)))
    idx = balanced_subset(y, size, len(counts), seed=0)
    assert torch.equal(idx, idx.unique())  # sorted, no repeats
    check_balanced(y[idx].numpy(), y.numpy(), size, len(counts))
    assert torch.equal(idx, balanced_subset(y, size, len(counts), seed=0))


def test_train_subset_for_the_other_in_memory_datasets(tmp_path):
    s = load_dataset("digits", seed=0, train_subset=50)
    assert np.array_equal(np.bincount(s.y_train.numpy()), [5] * 10)
    synthetic.write_cifar10(tmp_path)
    s = load_dataset("cifar10", tmp_path, verify=False, train_subset=20)
    assert len(s.y_train) == 20 and s.x_train.shape[1:] == (3, 32, 32)
    synthetic.write_mnist(tmp_path)
    assert len(load_dataset("mnist", tmp_path, train_subset=12).y_train) == 12
    with pytest.raises(DatasetError, match="data.train_subset"):
        load_dataset("imagenet", tmp_path, train_subset=12)


def default_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


@pytest.mark.parametrize("name, subset, error", [
    ("digits", None, None), ("fashion_mnist", 10, None), ("cifar10", 50_000, None),
    ("fashion_mnist", 9, "data.train_subset: fashion_mnist has 10 classes"),
    ("digits", 0, "data.train_subset: must be an integer"), ("digits", "100", "data.train_subset: must be an integer"),
    ("mnist", 60_001, "data.train_subset: must be an integer"),
    ("imagenet", 1000, "data.train_subset: only for digits, cifar10, mnist, fashion_mnist"),
])
def test_config_checks_train_subset(name, subset, error):
    params = default_params()
    params["data"].update(name=name, train_subset=subset, image_size=data.FIXED_SIZES.get(name, 8))
    params["features"]["num_images"] = params["snpfi"]["calibration_images"] = 8  # within the smallest subset
    if name == "imagenet":
        params["data"]["image_size"] = 224
    if error is None:
        assert config.validate(params)["data"]["train_subset"] == subset
    else:
        with pytest.raises(config.ConfigError, match=error):
            config.validate(params)


def test_paper_params_carry_train_subset():
    paper = config.load_paper(ROOT / "paper" / "params.yaml")
    bad = copy.deepcopy(paper)
    next(iter(bad["experiments"].values()))["data"] = {**next(iter(paper["experiments"].values()))["data"],
                                                       "train_subset": 5}
    with pytest.raises(config.ConfigError, match=r"experiments\.\w+\.data\.train_subset"):
        config.validate_paper(bad)


REAL = all((data.DEBIAN_FASHION_DIR / n).is_file() for n in FILES)


@pytest.mark.skipif(not REAL, reason="Debian's dataset-fashion-mnist is not installed (make fashion-data)")
def test_real_fashion_mnist_from_debians_package(tmp_path):
    s = load_dataset("fashion_mnist", tmp_path)  # nothing in paths.data: Debian's folder, md5s checked
    assert s.source == data.DEBIAN_FASHION_DIR
    assert s.x_train.shape == (60_000, 1, 28, 28) and s.x_test.shape == (10_000, 1, 28, 28)
    assert s.x_train.dtype == torch.uint8
    assert np.array_equal(np.bincount(s.y_train.numpy()), [6000] * 10)
    assert np.array_equal(np.bincount(s.y_test.numpy()), [1000] * 10)
    assert set(np.unique(s.y_train.numpy())) == set(range(10))
    sub = load_dataset("fashion_mnist", tmp_path, seed=0, train_subset=10_000)
    assert np.array_equal(np.bincount(sub.y_train.numpy(), minlength=10), [1000] * 10)


@pytest.mark.skipif(not REAL, reason="Debian's dataset-fashion-mnist is not installed (make fashion-data)")
def test_debians_files_copied_into_paths_data_are_read_there(tmp_path):
    """The issue's case, on the real files: dpkg vouches for them (its recorded md5s), their .gz
    bytes are not the release's, and the loader takes them in FashionMNIST/raw/ all the same."""
    dpkg = {Path(path).name: md5 for md5, _, path in (line.partition("  ") for line in
            Path("/var/lib/dpkg/info/dataset-fashion-mnist.md5sums").read_text().splitlines())}
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    release = data._fashion_release()
    for n in FILES:
        copied = shutil.copy(data.DEBIAN_FASHION_DIR / n, raw / n)
        gz = Path(copied).read_bytes()
        assert hashlib.md5(gz).hexdigest() == dpkg[n] != release[n]
        assert hashlib.md5(gzip.decompress(gz)).hexdigest() == data.FASHION_UNZIPPED_MD5[n]
    s = load_dataset("fashion_mnist", tmp_path)
    assert s.source == raw
    assert torch.equal(s.x_test, load_dataset("fashion_mnist", tmp_path / "none").x_test)


def test_idx_reader_bounds_and_names_broken_gzip(tmp_path, no_debian, monkeypatch):
    raw = synthetic.write_fashion_mnist(tmp_path)
    labels = raw / FILES[1]
    labels.write_bytes(labels.read_bytes()[:-20])  # cut inside the deflate data
    with pytest.raises(DatasetError, match=r"train-labels-idx1-ubyte\.gz: truncated gzip file"):
        load_dataset("fashion_mnist", tmp_path, verify=False)
    images = raw / FILES[0]
    monkeypatch.setattr(data, "MAX_IDX_BYTES", len(gzip.decompress(images.read_bytes())) - 1)
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte\.gz: unzips to more than"):
        load_dataset("fashion_mnist", tmp_path, verify=False)
