"""Which test images a network gets right, and how that is stored.

A network evaluated on n test images gives its per-image correctness, (n,) bool; two networks'
correctness on the same images is what prunelab.significance pairs. It is stored packed, a bit
per image (numpy.packbits, hex): 2,500 characters for Fashion-MNIST's 10,000 test images.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from prunelab.engine import Accel

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
