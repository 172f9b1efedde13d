"""Small synthetic datasets written in the real on-disk formats, for the paper pipeline's smoke
mode and the tests: the real loaders read them exactly as they read the real data.

Pixels and labels are seeded random numbers: nothing is learnable, only the wiring is exercised.
Each writer fills a temporary folder and renames it into place, so an interrupted write leaves
nothing that looks like a dataset. The folder's MD5SUMS records every file's md5 as written;
verify() checks them before a loader unpickles anything, as the real data's md5s are checked.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import secrets
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np

CIFAR10_FOLDER = "cifar-10-batches-py"
MANIFEST = "MD5SUMS"  # md5sum's format: '<md5>  <path relative to the folder>' per line


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _atomic_dir(target: Path, fill: Callable[[Path], None]) -> Path:
    """Create `target` by fill(temporary sibling folder) + MANIFEST + rename; keep an existing target.

    The folder gets mode 0777 minus the umask, as mkdir would (mkdtemp's 0700 would hide it from
    other users once renamed)."""
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = target.parent / f".{target.name}.{secrets.token_hex(4)}.tmp"
        try:
            os.mkdir(tmp, 0o777)
            break
        except FileExistsError:
            continue
    try:
        fill(tmp)
        files = sorted(f for f in tmp.rglob("*") if f.is_file())
        (tmp / MANIFEST).write_text("".join(f"{_md5(f)}  {f.relative_to(tmp).as_posix()}\n" for f in files))
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def write_cifar10(root: str | Path, per_batch: int = 8, test: int = 16, seed: int = 0) -> Path:
    """root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}: pickled dicts with
    'data' (N, 3072) uint8, row-major 3 planes of 32x32, and 'labels' (N ints in 0..9)."""
    rng = np.random.default_rng(seed)

    def fill(d: Path) -> None:
        for name, n in [*((f"data_batch_{i}", per_batch) for i in range(1, 6)), ("test_batch", test)]:
            data = rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)
            labels = [int(v) for v in rng.integers(0, 10, n)]
            with open(d / name, "wb") as f:
                pickle.dump({"batch_label": name, "data": data, "labels": labels,
                             "filenames": [f"{name}_{i}.png" for i in range(n)]}, f)
        with open(d / "batches.meta", "wb") as f:
            pickle.dump({"label_names": [f"class{i}" for i in range(10)], "num_cases_per_batch": per_batch,
                         "num_vis": 3072}, f)

    return _atomic_dir(Path(root) / CIFAR10_FOLDER, fill)


def write_mnist(root: str | Path, train: int = 16, test: int = 16, seed: int = 0) -> Path:
    """root/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte: big-endian idx files, as
    torchvision leaves them after unzipping."""
    rng = np.random.default_rng(seed)

    def fill(raw: Path) -> None:
        for prefix, n in (("train", train), ("t10k", test)):
            images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
            labels = rng.integers(0, 10, n, dtype=np.uint8)
            (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">iiii", 2051, n, 28, 28) + images.tobytes())
            (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">ii", 2049, n) + labels.tobytes())

    return _atomic_dir(Path(root) / "MNIST" / "raw", fill)


def write_fashion_mnist(root: str | Path, train: int = 300, test: int = 100, seed: int = 0) -> Path:
    """root/FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz: big-endian idx files,
    gzipped as the release ships them (gzip time stamp 0, so a seed always gives the same bytes)."""
    rng = np.random.default_rng(seed)

    def fill(raw: Path) -> None:
        for prefix, n in (("train", train), ("t10k", test)):
            images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
            labels = rng.integers(0, 10, n, dtype=np.uint8)
            (raw / f"{prefix}-images-idx3-ubyte.gz").write_bytes(
                gzip.compress(struct.pack(">iiii", 2051, n, 28, 28) + images.tobytes(), mtime=0))
            (raw / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(
                gzip.compress(struct.pack(">ii", 2049, n) + labels.tobytes(), mtime=0))

    return _atomic_dir(Path(root) / "FashionMNIST" / "raw", fill)


def write_image_folder(root: str | Path, classes: int = 4, train_per_class: int = 4, val_per_class: int = 2,
                       size: tuple[int, int] = (40, 48), seed: int = 0) -> Path:
    """root/{train,val}/<wnid>/<name>.JPEG, ImageNet's folder layout (RGB JPEGs)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    wnids = [f"n{i:08d}" for i in range(classes)]

    def fill(d: Path) -> None:
        for split, per_class in (("train", train_per_class), ("val", val_per_class)):
            for wnid in wnids:
                (d / split / wnid).mkdir(parents=True)
                for i in range(per_class):
                    pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
                    Image.fromarray(pixels).save(d / split / wnid / f"{wnid}_{i}.JPEG", quality=90)

    return _atomic_dir(Path(root), fill)


WRITERS = {"cifar10": write_cifar10, "mnist": write_mnist, "fashion_mnist": write_fashion_mnist,
           "imagenet": write_image_folder}


def verify(folder: str | Path) -> None:
    """Every file that `folder`'s MANIFEST lists has the md5 recorded when it was written;
    else a DatasetError naming the file (a changed file is never unpickled)."""
    from prunelab.data import DatasetError

    folder = Path(folder)
    rewrite = f"delete {folder} to have it written again"
    if not (folder / MANIFEST).is_file():
        raise DatasetError(f"{folder}: no {MANIFEST} (not written by prunelab.synthetic); {rewrite}")
    for line in (folder / MANIFEST).read_text().splitlines():
        md5, _, name = line.partition("  ")
        file = folder / name
        if not name or ".." in Path(name).parts or Path(name).is_absolute():
            raise DatasetError(f"{folder / MANIFEST}: malformed line {line[:80]!r}; {rewrite}")
        if not file.is_file():
            raise DatasetError(f"{file}: missing (listed in {MANIFEST}); {rewrite}")
        if _md5(file) != md5:
            raise DatasetError(f"{file}: its md5 is not the one recorded when it was written; {rewrite}")


def write_dataset(name: str, root: str | Path, seed: int = 0) -> Path:
    """A synthetic `name` dataset under root, where the real loader looks for it."""
    if name not in WRITERS:
        raise ValueError(f"no synthetic writer for dataset {name!r}; allowed: {', '.join(WRITERS)}")
    return WRITERS[name](root, seed=seed)


def write_weights(path: str | Path, arch: str, in_channels: int, num_classes: int, seed: int = 0) -> Path:
    """A state_dict file of a freshly initialised `arch`, like a torchvision checkpoint (.pth)."""
    import torch

    from prunelab import models
    from prunelab.checkpoint import atomic_write

    path = Path(path)
    if not path.exists():
        torch.manual_seed(seed)
        state = models.build_model(arch, None, in_channels, num_classes).state_dict()
        atomic_write(path, lambda tmp: torch.save(state, tmp))
    return path
