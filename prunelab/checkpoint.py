"""Checkpoints hold data, not pickled modules: {arch, widths, in_channels, num_classes, state_dict, meta}.

Saved atomically (temp file + rename) and loaded with weights_only=True; the module is rebuilt
from arch + widths.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from prunelab import models
from prunelab.errors import PrunelabError

REQUIRED = ("arch", "widths", "in_channels", "num_classes", "state_dict", "meta")


class CheckpointError(PrunelabError):
    pass


def atomic_write(path: str | Path, write) -> None:
    """write(tmp_path) into a temp file beside path, then rename it over path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(path: str | Path, model: nn.Module, arch: str, widths: dict, in_channels: int, num_classes: int,
         meta: dict | None = None) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    payload = {"arch": arch, "widths": widths, "in_channels": in_channels, "num_classes": num_classes,
               "state_dict": state, "meta": meta or {}}
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load(path: str | Path) -> dict:
    """The checkpoint dict, validated; raises CheckpointError naming the file on any problem."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, pickle with disallowed globals, ...
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupt or not a prunelab checkpoint: {type(e).__name__}") from None
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in REQUIRED):
        raise CheckpointError(f"checkpoint {str(path)!r} lacks keys {', '.join(REQUIRED)}")
    return ckpt


def build(ckpt: dict) -> nn.Module:
    """The module a checkpoint describes, with its weights loaded."""
    try:
        model = models.build_model(ckpt["arch"], ckpt["widths"], ckpt["in_channels"], ckpt["num_classes"])
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except (ValueError, RuntimeError, KeyError) as e:
        raise CheckpointError(f"checkpoint for {ckpt.get('arch')!r} does not match its architecture: {e}") from None
    return model


def file_hash(path: str | Path) -> str:
    """md5 of a file, the hash DVC records for it, to name where a result came from."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
