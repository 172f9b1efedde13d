"""Whether two pruned networks differ in top-1, and how sure that is.

Two networks A and B evaluated on the same n test images give per-image correctness
a, b in {0, 1}^n. Their top-1 difference in points is 100 * mean(d), d_i = a_i - b_i in
{-1, 0, 1}. Treating the test images as a sample from the data distribution, the paired
t interval

    100 * (mean(d) +- t_{0.975, n-1} * sd(d) / sqrt(n))

(scipy.stats.ttest_rel(a, b).confidence_interval) says how far the difference could move on
another test set of the same size. It only sees the images both networks got right or wrong
differently (the discordant pairs): two networks that agree on 9,900 of 10,000 images are
compared on 100. What it does not see is training noise: another fine-tuning seed gives another
network. With several seeds per network, the interval is over the seeds instead (paired by
seed: same seed, same data order), t with n_seeds - 1 degrees of freedom, which contains both.

Correctness is stored packed, a bit per image (numpy.packbits, hex): 2,500 characters for
Fashion-MNIST's 10,000 test images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from prunelab.engine import Accel

CONFIDENCE = 0.95
# evaluate record fields: which test images each network gets right (encode): after fine-tuning
# one per seed, space separated; before fine-tuning the pruned network's (the prune stage's
# record). Not MLflow tags (past their length on large test sets): the prune and evaluate runs
# carry their JSON records as artifacts.
PER_IMAGE_FIELDS = ("test_correct_per_seed", "test_correct_before_finetune")


@torch.inference_mode()
def evaluate(model: nn.Module, loader, device: torch.device, *, amp: str = "auto",
             channels_last: str | bool = "auto") -> tuple[dict, np.ndarray]:
    """({"top1": %, "loss": mean cross-entropy}, (N,) bool whether the top class is each test
    image's label, in the loader's order) in one pass; model in eval mode, one process. The
    totals are summed as engine.evaluate sums them, so both give the same top-1 and loss."""
    accel = Accel.resolve(device, amp, channels_last)
    model.eval()
    if accel.channels_last:
        model.to(memory_format=torch.channels_last)
    correct, loss_sum = [], torch.zeros((), dtype=torch.float64, device=device)
    for x, y in loader:
        x, y = accel.batch(x, device), y.to(device)  # (B, C, H, W), (B,)
        with accel.autocast(device):
            logits = model(x).float()  # (B, classes)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
        correct.append((logits.argmax(1) == y).cpu())  # (B,)
    if accel.channels_last:
        model.to(memory_format=torch.contiguous_format)
    hits = torch.cat(correct).numpy()  # (N,)
    return {"top1": 100.0 * float(hits.sum()) / len(hits), "loss": float(loss_sum) / len(hits)}, hits


def encode(correct: np.ndarray) -> str:
    """(N,) bool -> hex of its bits, 8 images per byte, first image in the high bit."""
    return np.packbits(np.asarray(correct, dtype=bool)).tobytes().hex()


def decode(text: str, n: int) -> np.ndarray:
    """encode's inverse for n images."""
    bits = np.unpackbits(np.frombuffer(bytes.fromhex(text), dtype=np.uint8))
    if len(bits) < n or bits[n:].any():
        raise ValueError(f"a correctness string of {len(bits)} bits does not hold {n} images")
    return bits[:n].astype(bool)


@dataclass(frozen=True)
class Difference:
    """Top-1 of A minus top-1 of B, in points, with its 95% interval over `n` paired `unit`s."""
    mean: float
    low: float
    high: float
    n: int
    unit: str  # "seeds" or "test images"

    @property
    def verdict(self) -> str:
        if self.n < 2:
            return "no interval (one pair)"
        if self.low <= 0.0 <= self.high:
            return "not distinguishable"
        return "A better" if self.low > 0 else "B better"


def _t_interval(a: np.ndarray, b: np.ndarray, scale: float, unit: str) -> Difference:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    mean = scale * float(np.mean(a - b))
    if len(a) < 2:
        return Difference(mean, float("nan"), float("nan"), len(a), unit)
    if np.all(a - b == (a - b)[0]):  # no spread: the interval is the point (scipy would give nan)
        return Difference(mean, mean, mean, len(a), unit)
    from scipy import stats  # here: a stage that only evaluates need not import it

    ci = stats.ttest_rel(a, b).confidence_interval(CONFIDENCE)
    return Difference(mean, scale * float(ci.low), scale * float(ci.high), len(a), unit)


def over_images(a: np.ndarray, b: np.ndarray) -> Difference:
    """A's top-1 minus B's, paired by test image; a, b: (N,) bool correctness."""
    if len(a) != len(b):
        raise ValueError(f"{len(a)} and {len(b)} test images: not the same test set")
    return _t_interval(a, b, 100.0, "test images")


def over_seeds(a: list[float], b: list[float]) -> Difference:
    """A's top-1 minus B's (both in %), paired by fine-tuning seed."""
    if len(a) != len(b):
        raise ValueError(f"{len(a)} and {len(b)} seeds: pair them by seed")
    return _t_interval(np.asarray(a), np.asarray(b), 1.0, "seeds")
