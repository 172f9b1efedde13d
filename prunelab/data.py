"""Datasets as in-memory tensors, and a batch loader that augments on the tensors' device.

Every supported dataset fits in memory (digits: 1,797 images; CIFAR-10: 60,000 x 3 x 32 x 32
uint8 = 184 MB), so images are held as one uint8 tensor (N, C, H, W) and batches are cut,
augmented and normalised on the training device: no worker processes, no per-image Python.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from prunelab.errors import PrunelabError

DATASETS = ("digits", "cifar10")


class DatasetError(PrunelabError):
    """A dataset that cannot be loaded as configured; the message names the culprit."""


class DatasetNotFound(DatasetError):
    """The dataset's files are not under the given root."""


@dataclass
class Splits:
    """uint8 images (N, C, H, W), int64 labels (N,), and the train split's per-channel mean/std."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    mean: torch.Tensor  # (C,), in [0, 1] units
    std: torch.Tensor  # (C,)
    num_classes: int
    augment: dict  # {"shift": pixels, "flip": bool}

    @property
    def in_channels(self) -> int:
        return self.x_train.shape[1]

    @property
    def image_size(self) -> int:
        return self.x_train.shape[-1]


def _stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    xf = x.double() / 255  # (N, C, H, W)
    return xf.mean(dim=(0, 2, 3)).float(), xf.std(dim=(0, 2, 3)).float()


def load_digits(test_fraction: float = 0.2, seed: int = 0, image_size: int = 8, shift: int = 1) -> Splits:
    """scikit-learn's 1,797 8x8 handwritten digits (shipped with the package, no download).

    A stratified, seeded train/test split; pixels 0..16 rescaled to uint8 0..255; optionally
    resized (bilinear) to image_size; training augmentation = random shifts of up to `shift` px.
    """
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    if not 0 < test_fraction < 1:
        raise DatasetError(f"data.test_fraction must be in (0, 1), got {test_fraction}")
    bunch = sk_digits()
    x = torch.from_numpy(np.rint(bunch.images * (255 / 16)).astype(np.uint8))[:, None]  # (1797, 1, 8, 8)
    if image_size != 8:
        x = F.interpolate(x.float(), size=(image_size, image_size), mode="bilinear", align_corners=False)
        x = x.round().clamp(0, 255).to(torch.uint8)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    idx_train, idx_test = train_test_split(
        np.arange(len(y)), test_size=test_fraction, random_state=seed, stratify=bunch.target
    )
    idx_train, idx_test = torch.from_numpy(np.sort(idx_train)), torch.from_numpy(np.sort(idx_test))
    mean, std = _stats(x[idx_train])
    return Splits(x[idx_train], y[idx_train], x[idx_test], y[idx_test], mean, std, 10,
                  {"shift": shift, "flip": False})


def load_cifar10(root: str | Path, download: bool = False) -> Splits:
    """CIFAR-10 through torchvision, from `root` (the folder holding cifar-10-batches-py/).

    Downloads only when `download` is true. Augmentation: random crop 32 with 4 px padding, flip.
    """
    from torchvision.datasets import CIFAR10

    try:
        train = CIFAR10(str(root), train=True, download=download)
        test = CIFAR10(str(root), train=False, download=download)
    except RuntimeError as e:  # torchvision: "Dataset not found or corrupted."
        raise DatasetNotFound(
            f"no CIFAR-10 found in {str(root)!r} ({e}); put cifar-10-batches-py/ there or set data.download: true"
        ) from None

    def to_tensors(ds):
        x = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()  # (N, 3, 32, 32)
        return x, torch.tensor(ds.targets, dtype=torch.int64)

    (xtr, ytr), (xte, yte) = to_tensors(train), to_tensors(test)
    mean, std = _stats(xtr)
    return Splits(xtr, ytr, xte, yte, mean, std, 10, {"shift": 4, "flip": True})


def load_dataset(name: str, root: str | Path = "data", download: bool = False, seed: int = 0,
                 image_size: int | None = None, test_fraction: float = 0.2) -> Splits:
    if name == "digits":
        return load_digits(test_fraction, seed, image_size or 8)
    if name == "cifar10":
        if image_size not in (None, 32):
            raise DatasetError(f"data.image_size: CIFAR-10 images are 32x32, got {image_size}")
        return load_cifar10(root, download)
    raise DatasetError(f"data.name: unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")


def random_shift(x: torch.Tensor, shift: int, generator: torch.Generator) -> torch.Tensor:
    """Pad by `shift` zeros on each side, then crop back at a random offset per image.

    x: (B, C, H, W). Equivalent to RandomCrop(H, padding=shift) on every image, in one gather.
    """
    if shift == 0:
        return x
    b, c, h, w = x.shape
    padded = F.pad(x, (shift, shift, shift, shift))  # (B, C, H+2s, W+2s)
    off = torch.randint(0, 2 * shift + 1, (2, b), generator=generator, device="cpu").to(x.device)
    rows = (off[0][:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # (B, 1, H, 1)
    cols = (off[1][:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # (B, 1, 1, W)
    bi = torch.arange(b, device=x.device)[:, None, None, None]
    ci = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[bi, ci, rows, cols]


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    flip = torch.rand(x.shape[0], generator=generator, device="cpu").to(x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


class Loader:
    """Batches of (normalised float images, labels) from uint8 tensors, on `device`.

    shuffle/augment draw from a torch.Generator seeded with `seed` + epoch, so a run is
    reproducible and a resumed epoch sees the same batches.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                 batch_size: int, device: torch.device | str = "cpu", shuffle: bool = False,
                 augment: dict | None = None, seed: int = 0, drop_last: bool = False):
        self.x, self.y = x.to(device), y.to(device)
        self.mean = mean.to(device)[None, :, None, None]
        self.std = std.to(device)[None, :, None, None]
        self.batch_size, self.shuffle, self.augment = batch_size, shuffle, augment or {}
        self.seed, self.drop_last, self.epoch = seed, drop_last, 0

    def __len__(self) -> int:
        n = len(self.y) / self.batch_size
        return math.floor(n) if self.drop_last else math.ceil(n)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        n = len(self.y)
        order = torch.randperm(n, generator=gen).to(self.x.device) if self.shuffle else torch.arange(n, device=self.x.device)
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            x = self.x[idx].float().div_(255)  # (B, C, H, W) in [0, 1]
            if self.augment.get("shift"):
                x = random_shift(x, self.augment["shift"], gen)
            if self.augment.get("flip"):
                x = random_flip(x, gen)
            yield (x - self.mean) / self.std, self.y[idx]
