"""Small synthetic datasets written in the real on-disk formats, for the paper pipeline's smoke
mode and the tests: the real loaders read them exactly as they read the real data.

Pixels and labels are seeded random numbers: nothing is learnable, only the wiring is exercised.
Each writer fills a temporary folder and renames it into place, so an interrupted write leaves
nothing that looks like a dataset.
"""

from __future__ import annotations

import pickle
import shutil
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

CIFAR10_FOLDER = "cifar-10-batches-py"


def _atomic_dir(target: Path, fill: Callable[[Path], None]) -> Path:
    """Create `target` by fill(temporary sibling folder) + rename; keep an existing target."""
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        fill(tmp)
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


WRITERS = {"cifar10": write_cifar10, "mnist": write_mnist, "imagenet": write_image_folder}


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
