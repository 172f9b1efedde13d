"""Datasets as in-memory tensors, and a batch loader that augments on the tensors' device.

Every supported dataset but ImageNet fits in memory (digits: 1,797 images; CIFAR-10: 60,000 x 3
x 32 x 32 uint8 = 184 MB; (Fashion-)MNIST: 70,000 x 28 x 28 = 55 MB), so images are held as one
uint8 tensor (N, C, H, W) and batches are cut, augmented and normalised on the training device:
no worker processes, no per-image Python.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import importlib.util
import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from prunelab.distributed import shard_bounds
from prunelab.errors import PrunelabError

DATASETS = ("digits", "cifar10", "mnist", "fashion_mnist", "imagenet")
NUM_CLASSES = {"digits": 10, "cifar10": 10, "mnist": 10, "fashion_mnist": 10}  # the in-memory ones


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
    source: Path | None = None  # the folder the files were read from; None: embedded (digits)

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

        root = self.source = Path(root)
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


def _digits_file() -> Path:
    """scikit-learn's digits.csv.gz, found without importing scikit-learn: its import (with
    scipy's) takes about 3 s, and every stage of the default pipeline loads the digits."""
    spec = importlib.util.find_spec("sklearn")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "digits.csv.gz" if spec else None
    if path is None or not path.is_file():
        raise DatasetNotFound("scikit-learn's digits.csv.gz is missing: reinstall scikit-learn (`make install`)")
    return path


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices, sorted: ceil(test_fraction * N) test images (scikit-learn's count),
    each class's share of them proportional to its size (largest remainders get the rest),
    each class's members drawn by a generator seeded with `seed`."""
    classes, counts = np.unique(labels, return_counts=True)
    n_test = math.ceil(test_fraction * len(labels))
    exact = counts * n_test / len(labels)  # (classes,)
    per_class = np.floor(exact).astype(int)
    per_class[np.argsort(-(exact - per_class), kind="stable")[: n_test - per_class.sum()]] += 1
    rng = np.random.default_rng(seed)
    test = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, per_class)])
    return np.setdiff1d(np.arange(len(labels)), test), np.sort(test)


def load_digits(test_fraction: float = 0.2, seed: int = 0, image_size: int = 8, shift: int = 1) -> Splits:
    """scikit-learn's 1,797 8x8 handwritten digits (shipped with the package, no download).

    A stratified, seeded train/test split; pixels 0..16 rescaled to uint8 0..255; optionally
    resized (bilinear) to image_size; training augmentation = random shifts of up to `shift` px.
    """
    if not 0 < test_fraction < 1:
        raise DatasetError(f"data.test_fraction must be in (0, 1), got {test_fraction}")
    table = np.loadtxt(_digits_file(), delimiter=",")  # (1797, 65): 64 pixels 0..16, then the digit
    x = torch.from_numpy(np.rint(table[:, :64].reshape(-1, 1, 8, 8) * (255 / 16)).astype(np.uint8))  # (1797, 1, 8, 8)
    if image_size != 8:
        x = F.interpolate(x.float(), size=(image_size, image_size), mode="bilinear", align_corners=False)
        x = x.round().clamp(0, 255).to(torch.uint8)
    labels = table[:, 64].astype(np.int64)  # (1797,)
    y = torch.from_numpy(labels)
    idx_train, idx_test = map(torch.from_numpy, stratified_split(labels, test_fraction, seed))
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
    return Splits(xtr, ytr, xte, yte, mean, std, 10, {"shift": 4, "flip": True}, folder)


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
    return Splits(xtr, train.targets.long(), xte, test.targets.long(), mean, std, 10, {"shift": 2, "flip": False},
                  Path(train.raw_folder))


MAX_IDX_BYTES = 64 << 20  # unzipped; the largest (Fashion-)MNIST file, the training images, is 47 MB


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def gunzip_idx(raw: bytes, path: Path) -> bytes:
    """raw unzipped when it is gzipped (its magic number), else raw; bounded by MAX_IDX_BYTES, since
    a small file can unzip to gigabytes. path: named in errors only."""
    if raw[:2] != b"\x1f\x8b":
        return raw
    unzip = zlib.decompressobj(wbits=31)  # 31: a gzip container
    try:
        data = unzip.decompress(raw, MAX_IDX_BYTES + 1)
    except zlib.error as e:
        raise DatasetError(f"{path}: not a readable gzip file ({e})") from None
    if len(data) > MAX_IDX_BYTES:
        raise DatasetError(f"{path}: unzips to more than {MAX_IDX_BYTES >> 20} MB; no (Fashion-)MNIST file does")
    if not unzip.eof:
        raise DatasetError(f"{path}: truncated gzip file")
    return data


def read_idx(raw: bytes, path: Path) -> np.ndarray:
    """The array in an idx file's bytes (LeCun's MNIST format), gzipped or not.

    Layout: 0x00 0x00, a type byte (0x08 = unsigned byte, the only one (Fashion-)MNIST uses), the
    number of dimensions d, then d big-endian uint32 sizes, then the values in row-major order.
    path: named in errors only.
    """
    raw = gunzip_idx(raw, path)
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08":
        raise DatasetError(f"{path}: not an idx file of unsigned bytes "
                           f"(it starts with {raw[:4].hex()}, expected 000008..)")
    header = 4 + 4 * raw[3]
    if len(raw) < header:
        raise DatasetError(f"{path}: truncated idx header")
    shape = struct.unpack(f">{raw[3]}I", raw[4:header])
    if len(raw) - header != math.prod(shape):
        raise DatasetError(f"{path}: {len(raw) - header} values after the header, "
                           f"its sizes {shape} say {math.prod(shape)}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


FASHION_FOLDER = Path("FashionMNIST") / "raw"  # under paths.data: where torchvision downloads to
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")  # dpkg -L dataset-fashion-mnist
# md5 of each file's idx bytes once unzipped. Debian re-compressed the release's .gz files (the
# same deflate data in a gzip header without the file name and with another time stamp), so their
# own md5s are not the release's, but their unzipped bytes are the release's; so are the unzipped
# copies torchvision leaves beside the .gz files. Computed from dataset-fashion-mnist 0.0~git20200523
# (whose .gz files match dpkg's recorded md5s); tests/test_fashion.py checks them against it.
FASHION_UNZIPPED_MD5 = {
    "train-images-idx3-ubyte.gz": "f4a8712d7a061bf5bd6d2ca38dc4d50a",  # 47,040,016 bytes: 60,000 x 28 x 28
    "train-labels-idx1-ubyte.gz": "9018921c3c673c538a1fc5bad174d6f9",  # 60,008 bytes
    "t10k-images-idx3-ubyte.gz": "8181f5470baa50b63fa0f6fddb340f0a",  # 7,840,016 bytes: 10,000 x 28 x 28
    "t10k-labels-idx1-ubyte.gz": "15d484375f8d13e6eb1aabb0c3f46965",  # 10,008 bytes
}


def _fashion_release() -> dict[str, str]:
    """{file name: md5} of the Zalando release's four .gz files, as torchvision lists them."""
    from torchvision.datasets import FashionMNIST

    return dict(FashionMNIST.resources)


def _fashion_file(folder: Path, name: str) -> Path | None:
    """folder/name, else its unzipped copy folder/name-without-.gz (torchvision keeps both), else None."""
    for path in (folder / name, folder / name.removesuffix(".gz")):
        if path.is_file():
            return path
    return None


def _fashion_folder(root: Path, names: list[str], download: bool) -> Path:
    """The folder the four files are read from: root/FashionMNIST/raw/, else Debian's package
    folder, else root/FashionMNIST/raw/ after torchvision downloads them there (`download`).

    Files that are almost where they belong are refused, not skipped in favour of Debian's copy:
    a user who put some of the files in raw/, or all of them straight in paths.data, meant them.
    """
    raw = root / FASHION_FOLDER
    present = [n for n in names if _fashion_file(raw, n)]
    if present and len(present) < len(names):
        missing = [n for n in names if n not in present]
        raise DatasetNotFound(f"{raw} holds {len(present)} of Fashion-MNIST's 4 files; missing: {', '.join(missing)}")
    if not present:
        stray = [n for n in names if _fashion_file(root, n)]
        if stray:
            raise DatasetNotFound(f"{root} holds {stray[0]}, but Fashion-MNIST is read from {raw}/ "
                                  f"(torchvision's layout): move its files there")
    if present or _all_present(DEBIAN_FASHION_DIR, names):
        return raw if present else DEBIAN_FASHION_DIR
    if not download:
        raise DatasetNotFound(f"no Fashion-MNIST found: put its four .gz idx files in {raw}/, "
                              f"or run `make fashion-data` (apt-get install dataset-fashion-mnist, "
                              f"read from {DEBIAN_FASHION_DIR}/), "
                              "or set data.download: true")
    from torchvision.datasets import FashionMNIST

    try:  # fetches all four files (checked against the release's md5s) into raw, then reads the test split
        FashionMNIST(str(root), train=False, download=True)
    except (RuntimeError, OSError) as e:
        raise DatasetNotFound(f"Fashion-MNIST download into {raw} failed ({str(e).splitlines()[0]}); "
                              "put the files there or run `make fashion-data`") from None
    return raw


def _all_present(folder: Path, names: list[str]) -> bool:
    return all(_fashion_file(folder, n) for n in names)


def load_fashion_mnist(root: str | Path, download: bool = False, verify: bool = True) -> Splits:
    """Zalando's Fashion-MNIST (60,000 train + 10,000 test 28x28 grey images, 10 classes) from its
    four gzipped idx files: train-{images-idx3,labels-idx1}-ubyte.gz, t10k-... likewise (or their
    unzipped copies, the names without .gz).

    Looked up as _fashion_folder says; Splits.source names the folder read. verify: a file
    passes when its md5 is the release's (torchvision's list) or when its unzipped bytes' md5 is
    the release's unzipped bytes' (FASHION_UNZIPPED_MD5: Debian's re-compressed copies, and
    torchvision's unzipped ones); the smoke mode's synthetic files are other bytes.
    Augmentation: as MNIST's, random shifts of up to 2 px.
    """
    release = _fashion_release()
    folder = _fashion_folder(Path(root), list(release), download)

    def read(name: str, ndim: int) -> np.ndarray:
        path = _fashion_file(folder, name)
        raw = path.read_bytes()
        try:
            unzipped = gunzip_idx(raw, path)  # raw itself when it is not gzipped; unzipped once, checked and read
        except DatasetError:
            if not verify:
                raise
            unzipped = None  # not even a gzip file: corrupted, as far as this file can tell
        if verify and md5(raw) != release[name] and (unzipped is None or md5(unzipped) != FASHION_UNZIPPED_MD5[name]):
            raise DatasetError(f"{path}: corrupted (neither it nor its unzipped bytes have the Fashion-MNIST "
                               "release's md5); delete it and provide the file again")
        array = read_idx(unzipped, path)
        if array.ndim != ndim or (ndim == 3 and array.shape[1:] != (28, 28)):
            raise DatasetError(f"{path}: holds an array of shape {array.shape}, expected "
                               f"{'(N, 28, 28) images' if ndim == 3 else '(N,) labels'}")
        if ndim == 1 and array.size and array.max() >= NUM_CLASSES["fashion_mnist"]:
            raise DatasetError(f"{path}: label {array.max()} is not a class index 0..9")
        return array

    def split(prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
        x = read(f"{prefix}-images-idx3-ubyte.gz", 3)  # (N, 28, 28) uint8
        y = read(f"{prefix}-labels-idx1-ubyte.gz", 1)  # (N,) uint8
        if len(x) != len(y):
            raise DatasetError(f"{folder / (prefix + '-labels-idx1-ubyte.gz')}: {len(y)} labels for {len(x)} images")
        return torch.from_numpy(x.copy())[:, None], torch.from_numpy(y.astype(np.int64))  # (N, 1, 28, 28), (N,)

    (xtr, ytr), (xte, yte) = split("train"), split("t10k")
    mean, std = _stats(xtr)
    return Splits(xtr, ytr, xte, yte, mean, std, NUM_CLASSES["fashion_mnist"], {"shift": 2, "flip": False}, folder)


def balanced_subset(labels: torch.Tensor, size: int, num_classes: int, seed: int) -> torch.Tensor:
    """Sorted indices of `size` items, as equally many per class as the classes hold, drawn by `seed`.

    Class k gets t_k = min(c_k, L) of its c_k items, L the largest level with sum_k t_k <= size;
    the remaining size - sum_k t_k items go one each to randomly drawn classes with c_k > L. So
    every class that is not taken whole gets L or L + 1 items. Within a class, the items are a
    uniform draw without replacement. labels: (N,) ints in [0, num_classes).
    """
    y = labels.cpu().numpy()
    counts = np.bincount(y, minlength=num_classes)  # (K,)
    if not 0 < size <= len(y):
        raise ValueError(f"size must be in [1, {len(y)}], got {size}")
    lo, hi = 0, int(counts.max())  # binary search for L: sum(min(c, L)) grows with L
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if np.minimum(counts, mid).sum() <= size else (lo, mid - 1)
    take = np.minimum(counts, lo)  # (K,)
    rng = np.random.default_rng(seed)
    take[rng.choice(np.flatnonzero(counts > lo), size - int(take.sum()), replace=False)] += 1
    chosen = [rng.permutation(np.flatnonzero(y == k))[:t] for k, t in enumerate(take)]
    return torch.from_numpy(np.sort(np.concatenate(chosen)))


def subset_train(splits: Splits, size: int, seed: int) -> Splits:
    """`splits` with its training split cut to a balanced_subset of `size` images; the
    normalisation statistics are the subset's, as they are the whole split's otherwise."""
    n = len(splits.y_train)
    if size > n:
        raise DatasetError(f"data.train_subset: {size} is more than the {n} training images")
    idx = balanced_subset(splits.y_train, size, splits.num_classes, seed)
    x = splits.x_train[idx]
    mean, std = _stats(x)
    return dataclasses.replace(splits, x_train=x, y_train=splits.y_train[idx], mean=mean, std=std)


FIXED_SIZES = {"cifar10": 32, "mnist": 28, "fashion_mnist": 28}


def load_dataset(name: str, root: str | Path = "data", download: bool = False, seed: int = 0,
                 image_size: int | None = None, test_fraction: float = 0.2, verify: bool = True,
                 train_subset: int | None = None) -> Splits | FolderSplits:
    """verify: CIFAR-10 and Fashion-MNIST, check the files' md5s (off for synthetic data).
    train_subset: None (all), or the size of a seeded balanced_subset of the training split
    (in-memory datasets only)."""
    if name in FIXED_SIZES and image_size not in (None, FIXED_SIZES[name]):
        raise DatasetError(f"data.image_size: {name} images are {FIXED_SIZES[name]}x{FIXED_SIZES[name]}, got {image_size}")
    if name == "imagenet":
        if download:
            raise DatasetError("data.download: ImageNet cannot be downloaded; put its train/ and val/ folders in paths.data")
        if train_subset is not None:
            raise DatasetError(f"data.train_subset: only for {', '.join(NUM_CLASSES)}; set it to null for imagenet")
        return FolderSplits(root, image_size or 224)
    if name == "digits":
        splits = load_digits(test_fraction, seed, image_size or 8)
    elif name == "cifar10":
        splits = load_cifar10(root, download, verify)
    elif name == "mnist":
        splits = load_mnist(root, download)
    elif name == "fashion_mnist":
        splits = load_fashion_mnist(root, download, verify)
    else:
        raise DatasetError(f"data.name: unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
    return splits if train_subset is None else subset_train(splits, train_subset, seed)


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
