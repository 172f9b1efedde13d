"""Datasets as in-memory tensors, and a batch loader that augments on the tensors' device.

Every supported dataset fits in memory (digits: 1,797 images; CIFAR-10: 60,000 x 3 x 32 x 32
uint8 = 184 MB), so images are held as one uint8 tensor (N, C, H, W) and batches are cut,
augmented and normalised on the training device: no worker processes, no per-image Python.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from prunelab.distributed import shard_bounds
from prunelab.errors import PrunelabError

DATASETS = ("digits", "cifar10", "mnist", "imagenet")


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

    def train_loader(self, batch_size: int, seed: int, device: torch.device | str = "cpu") -> Loader:
        """Shuffled, augmented batches, reproducible from `seed` (and the epoch)."""
        return Loader(self.x_train, self.y_train, self.mean, self.std, batch_size, device, shuffle=True,
                      augment=self.augment, seed=seed)

    def test_loader(self, batch_size: int, device: torch.device | str = "cpu") -> Loader:
        return Loader(self.x_test, self.y_test, self.mean, self.std, batch_size, device)


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class FolderSplits:
    """An ImageFolder tree, root/train/<class>/* and root/val/<class>/*, too large for memory.

    Train: RandomResizedCrop(image_size) + horizontal flip; eval: Resize(resize) +
    CenterCrop(image_size); both normalised with ImageNet's mean and std. Batches come from a
    torch DataLoader with worker processes, shuffled by a generator seeded with seed + epoch.
    """

    def __init__(self, root: str | Path, image_size: int = 224, resize: int = 256, num_workers: int | None = None):
        from torchvision import datasets, transforms as T

        root = Path(root)
        for split in ("train", "val"):
            if not (root / split).is_dir():
                raise DatasetNotFound(f"no ImageNet folder tree in {str(root)!r}: {split}/ is missing "
                                      f"(expected {split}/<class>/<image> files)")
        norm = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
        try:
            self.train = datasets.ImageFolder(str(root / "train"), T.Compose(
                [T.RandomResizedCrop(image_size), T.RandomHorizontalFlip(), T.ToTensor(), norm]))
            self.val = datasets.ImageFolder(str(root / "val"), T.Compose(
                [T.Resize(resize), T.CenterCrop(image_size), T.ToTensor(), norm]))
        except FileNotFoundError as e:  # a split without any image
            raise DatasetNotFound(f"ImageNet folder tree in {str(root)!r}: {e}") from None
        if self.train.classes != self.val.classes:
            raise DatasetError(f"{str(root)!r}: train/ and val/ have different class folders")
        self.in_channels, self.image_size, self.num_classes = 3, image_size, len(self.train.classes)
        self.num_workers = min(8, os.cpu_count() or 1) if num_workers is None else num_workers

    def _loader(self, dataset, batch_size: int, device, generator=None) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(dataset, batch_size, shuffle=generator is not None, generator=generator,
                                           num_workers=self.num_workers, pin_memory=torch.device(device).type == "cuda",
                                           persistent_workers=False)

    def train_loader(self, batch_size: int, seed: int, device: torch.device | str = "cpu") -> EpochSeeded:
        return EpochSeeded(lambda gen: self._loader(self.train, batch_size, device, gen), seed)

    def test_loader(self, batch_size: int, device: torch.device | str = "cpu") -> torch.utils.data.DataLoader:
        return self._loader(self.val, batch_size, device)


class EpochSeeded:
    """A DataLoader rebuilt per epoch with a generator seeded from (seed, epoch): reproducible
    shuffles and augmentations (workers derive their seeds from it), resumable at any epoch."""

    def __init__(self, make, seed: int):
        self.make, self.seed, self.epoch = make, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _current(self) -> torch.utils.data.DataLoader:
        return self.make(torch.Generator().manual_seed(self.seed * 100_003 + self.epoch))

    def __len__(self) -> int:
        return len(self._current())

    def __iter__(self):
        loader = self._current()
        if loader.num_workers == 0:  # transforms then draw from the global RNG, not from worker seeds
            torch.manual_seed(self.seed * 100_003 + self.epoch)
        return iter(loader)


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


def load_cifar10(root: str | Path, download: bool = False, verify: bool = True) -> Splits:
    """CIFAR-10 from `root`, the folder holding cifar-10-batches-py/ (the python release: pickled
    batches of 'data' (N, 3072) uint8 rows, 3 planes of 32x32, and 'labels').

    Downloads (through torchvision, which checks the archive) only when `download` is true.
    verify: check every batch file's md5 against the release's; the smoke mode's synthetic
    batches are other bytes. Augmentation: random crop 32 with 4 px padding, flip.
    """
    import pickle

    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import check_integrity

    if download:
        CIFAR10(str(root), train=True, download=True)
    folder = Path(root) / CIFAR10.base_folder
    missing = [name for name, _ in CIFAR10.train_list + CIFAR10.test_list if not (folder / name).is_file()]
    if missing:
        raise DatasetNotFound(f"no CIFAR-10 found in {str(root)!r} ({folder / missing[0]} is missing); "
                              f"put cifar-10-batches-py/ there or set data.download: true")

    def read(files) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for name, md5 in files:
            if verify and not check_integrity(str(folder / name), md5):
                raise DatasetError(f"{folder / name}: corrupted (its md5 is not the CIFAR-10 release's); "
                                   "delete cifar-10-batches-py/ and set data.download: true")
            with open(folder / name, "rb") as f:
                batch = pickle.load(f, encoding="latin1")
            xs.append(torch.from_numpy(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)))
            ys.append(torch.tensor(batch["labels"], dtype=torch.int64))
        return torch.cat(xs), torch.cat(ys)  # (N, 3, 32, 32) uint8, (N,)

    (xtr, ytr), (xte, yte) = read(CIFAR10.train_list), read(CIFAR10.test_list)
    mean, std = _stats(xtr)
    return Splits(xtr, ytr, xte, yte, mean, std, 10, {"shift": 4, "flip": True})


def load_mnist(root: str | Path, download: bool = False) -> Splits:
    """MNIST through torchvision, from `root` (the folder holding MNIST/raw/); 28x28, shifts of 2 px."""
    from torchvision.datasets import MNIST

    try:
        train = MNIST(str(root), train=True, download=download)
        test = MNIST(str(root), train=False, download=download)
    except RuntimeError as e:  # torchvision: "Dataset not found. You can use download=True to download it"
        raise DatasetNotFound(f"no MNIST found in {str(root)!r} ({e}); put MNIST/raw/ there or set data.download: true"
                              ) from None
    xtr, xte = train.data[:, None].contiguous(), test.data[:, None].contiguous()  # (N, 1, 28, 28) uint8
    mean, std = _stats(xtr)
    return Splits(xtr, train.targets.long(), xte, test.targets.long(), mean, std, 10, {"shift": 2, "flip": False})


FIXED_SIZES = {"cifar10": 32, "mnist": 28}


def load_dataset(name: str, root: str | Path = "data", download: bool = False, seed: int = 0,
                 image_size: int | None = None, test_fraction: float = 0.2, verify: bool = True) -> Splits | FolderSplits:
    """verify: CIFAR-10 only, check the files' md5 against the release's (off for synthetic data)."""
    if name in FIXED_SIZES and image_size not in (None, FIXED_SIZES[name]):
        raise DatasetError(f"data.image_size: {name} images are {FIXED_SIZES[name]}x{FIXED_SIZES[name]}, got {image_size}")
    if name == "digits":
        return load_digits(test_fraction, seed, image_size or 8)
    if name == "cifar10":
        return load_cifar10(root, download, verify)
    if name == "mnist":
        return load_mnist(root, download)
    if name == "imagenet":
        if download:
            raise DatasetError("data.download: ImageNet cannot be downloaded; put its train/ and val/ folders in paths.data")
        return FolderSplits(root, image_size or 224)
    raise DatasetError(f"data.name: unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")


def crop_flip(x: torch.Tensor, shift: int, offsets: torch.Tensor | None, flips: torch.Tensor | None) -> torch.Tensor:
    """RandomCrop(H, padding=shift) then RandomHorizontalFlip, with the draws given, in one gather.

    x: (B, C, H, W), any dtype (padding is zero: black pixels, as torchvision pads a PIL image).
    offsets: (2, B) ints in [0, 2*shift], the crop's top and left corner in the padded image
    (None when shift is 0). flips: (B,) bool, True = mirror left-right (None: no flips).
    Output image i = padded_i[:, top:top+H, left:left+W], mirrored where flips[i].
    """
    if not shift and flips is None:
        return x
    b, c, h, w = x.shape
    if shift:
        x = F.pad(x, (shift, shift, shift, shift))  # (B, C, H+2s, W+2s)
    rows = torch.arange(h, device=x.device).expand(b, h)  # (B, H)
    cols = torch.arange(w, device=x.device).expand(b, w)  # (B, W)
    if flips is not None:  # a mirrored crop reads its columns right to left
        cols = torch.where(flips[:, None], w - 1 - cols, cols)
    if shift:
        rows, cols = rows + offsets[0][:, None], cols + offsets[1][:, None]
    bi = torch.arange(b, device=x.device)[:, None, None, None]
    ci = torch.arange(c, device=x.device)[None, :, None, None]
    return x[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]  # (B, C, H, W)


class Loader:
    """Batches of (normalised float images, labels) from uint8 tensors, on `device`.

    shuffle/augment draw from a torch.Generator seeded with `seed` + epoch, so a run is
    reproducible and a resumed epoch sees the same batches. The epoch's draws are made on the
    CPU when it starts (the permutation, then per batch the crop offsets and the flips) and
    moved to the device once, so no batch waits on a host-to-device copy.

    A loader from shard(rank, world_size) yields, of every global batch, only this rank's
    contiguous slice (see distributed.shard_bounds), with the same draws as the whole loader:
    the ranks' slices of one step together are exactly the unsharded batch.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                 batch_size: int, device: torch.device | str = "cpu", shuffle: bool = False,
                 augment: dict | None = None, seed: int = 0, drop_last: bool = False):
        self.x, self.y = x.to(device), y.to(device)
        self.mean = mean.to(device)[None, :, None, None]
        self.std = std.to(device)[None, :, None, None]
        self.batch_size, self.shuffle, self.augment = batch_size, shuffle, augment or {}
        self.seed, self.drop_last, self.epoch = seed, drop_last, 0
        self.rank, self.world_size, self.drop_small = 0, 1, False

    def shard(self, rank: int, world_size: int, drop_small: bool = True) -> Loader:
        """This rank's view (sharing the tensors): its slice of every global batch.

        drop_small: skip a last global batch smaller than world_size on every rank alike (for
        training, where every rank needs images); else ranks past its size get empty slices.
        """
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        if drop_small and self.batch_size < world_size:
            raise ValueError(f"batch size {self.batch_size} is smaller than the {world_size} processes: "
                             "some rank would get no image; use a batch size of at least the world size")
        out = copy.copy(self)
        out.rank, out.world_size, out.drop_small = rank, world_size, drop_small
        return out

    def _global_sizes(self) -> list[int]:
        """Sizes of the epoch's global batches."""
        n, bs = len(self.y), self.batch_size
        count = n // bs if self.drop_last else math.ceil(n / bs)
        sizes = [min(bs, n - i * bs) for i in range(count)]
        return [b for b in sizes if b >= self.world_size] if self.drop_small else sizes

    def __len__(self) -> int:
        return len(self._global_sizes())

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        n, dev = len(self.y), self.x.device
        order = torch.randperm(n, generator=gen).to(dev) if self.shuffle else None
        sizes = self._global_sizes()
        shift, flip = self.augment.get("shift", 0), self.augment.get("flip", False)
        offsets, flips = [], []
        for b in sizes:  # per batch, in this order: as the per-batch draws of earlier versions
            if shift:
                offsets.append(torch.randint(0, 2 * shift + 1, (2, b), generator=gen))  # (2, b)
            if flip:
                flips.append(torch.rand(b, generator=gen) < 0.5)  # (b,)
        offsets = torch.cat(offsets, 1).to(dev) if offsets else None  # (2, images in the epoch)
        flips = torch.cat(flips).to(dev) if flips else None
        start = 0
        for b in sizes:
            lo, hi = shard_bounds(b, self.rank, self.world_size)
            part = slice(start + lo, start + hi)  # this rank's images of the global batch
            start += b
            x = self.x[order[part]] if order is not None else self.x[part]  # (b_rank, C, H, W) uint8
            y = self.y[order[part]] if order is not None else self.y[part]
            x = crop_flip(x, shift, offsets[:, part] if shift else None, flips[part] if flip else None)
            x = x.float() / 255  # (b_rank, C, H, W) in [0, 1]
            yield (x - self.mean) / self.std, y
