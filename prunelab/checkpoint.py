"""Checkpoints hold data, not pickled modules: {arch, widths, in_channels, num_classes, state_dict, meta}.

Saved atomically (temp file + rename) and loaded with weights_only=True; the module is rebuilt
from arch + widths.
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
from pathlib import Path

import torch
from torch import nn

from prunelab import models
from prunelab.errors import PrunelabError

REQUIRED = ("arch", "widths", "in_channels", "num_classes", "state_dict", "meta")


class CheckpointError(PrunelabError):
    pass


class OutputError(PrunelabError):
    """An output that cannot be written (a read-only folder, a full disk, a folder that is a
    symlink out of the project); the previous file stays."""


def _inside_project(path: Path) -> None:
    """Refuse a path inside the project (DVC_ROOT, which DVC sets for a stage, else the working
    folder) whose folder resolves outside it: a symlinked results/ subfolder would otherwise have
    the stage write through it into a folder DVC neither tracks nor restores. A path given
    outside the project (an absolute paths.* value) is the user's choice and is not checked."""
    root = Path(os.path.abspath(os.environ.get("DVC_ROOT") or os.getcwd()))
    lexical = Path(os.path.abspath(path))
    if not lexical.is_relative_to(root):
        return
    if not lexical.parent.resolve().is_relative_to(root.resolve()):  # the folders that exist, links followed
        rel = lexical.parent.relative_to(root)
        folders = [root / p for p in reversed(rel.parents)][1:] + [lexical.parent]  # results, results/metrics, ..
        link = next((f for f in folders if f.is_symlink()), lexical.parent)
        raise OutputError(f"{path}: {link.relative_to(root)} is a symlink to {link.resolve()}, "
                          "outside the project; outputs stay inside it (replace the link with a folder)")


def _hidden_sibling(path: Path, create) -> Path:
    """create(name) for a fresh hidden name beside path, '.<name>.<random>.tmp'."""
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            create(tmp)
            return tmp
        except FileExistsError:
            continue


def atomic_write(path: str | Path, write) -> None:
    """write(tmp_path) fills a new file, which then replaces path by one rename: path holds its
    old bytes or its new ones, never a part (a full disk, an exception, a kill mid-write).

    The file is created with mode 0666 minus the umask, as open() would. On Linux it is an
    anonymous file (O_TMPFILE) until written, named only for the rename, so a process killed
    while writing leaves nothing behind; elsewhere a hidden temp file beside path, removed on error.
    A write the system refuses (a read-only folder, a full disk) is an OutputError naming path.
    """
    _inside_project(Path(path))
    try:
        _atomic_write(Path(path), write)
    except OSError as e:
        raise OutputError(f"{path}: cannot be written ({e.strerror or type(e).__name__}); whatever it held before is "
                          "unchanged") from None


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = None
    if hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd"):
        try:
            fd = os.open(path.parent, os.O_TMPFILE | os.O_WRONLY, 0o666)
        except OSError:  # a file system without O_TMPFILE
            fd = None
    if fd is None:
        tmp = _hidden_sibling(path, lambda t: os.close(os.open(t, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)))
        try:
            write(str(tmp))
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return
    try:
        write(f"/proc/self/fd/{fd}")  # reopens the anonymous file
        # a dir fd makes os.link use linkat(AT_SYMLINK_FOLLOW), which links the fd's file itself
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            tmp = _hidden_sibling(path, lambda t: os.link(f"/proc/self/fd/{fd}", t.name, dst_dir_fd=dir_fd))
        finally:
            os.close(dir_fd)
        try:
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    finally:
        os.close(fd)


def torch_save(path: str | Path, obj) -> None:
    """torch.save, atomically and byte-reproducibly.

    torch.save names its zip archive after the file it writes; serialising to memory first
    keeps that name fixed, so equal tensors give equal bytes (and equal DVC hashes).
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(buffer.getvalue()))


def save(path: str | Path, model: nn.Module, arch: str, widths: dict, in_channels: int, num_classes: int,
         meta: dict | None = None) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    payload = {"arch": arch, "widths": widths, "in_channels": in_channels, "num_classes": num_classes,
               "state_dict": state, "meta": meta or {}}
    torch_save(path, payload)


def _read(path: Path, what: str, expected: str):
    """torch.load(path, weights_only=True), or a CheckpointError naming the file."""
    if not path.is_file():
        raise CheckpointError(f"{what} {str(path)!r} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, pickle with disallowed globals, ...
        raise CheckpointError(f"{what} {str(path)!r} is corrupt or not {expected}: {type(e).__name__}") from None


def torch_load(path: str | Path, keys: tuple[str, ...], what: str = "file") -> dict:
    """A dict saved by torch_save, loaded with weights_only=True and checked for `keys`.

    Raises CheckpointError naming the file when it is missing, corrupt or not what was expected.
    """
    path = Path(path)
    obj = _read(path, what, f"a prunelab {what}")
    if not isinstance(obj, dict) or any(k not in obj for k in keys):
        raise CheckpointError(f"{what} {str(path)!r} lacks keys {', '.join(keys)}")
    return obj


def load(path: str | Path) -> dict:
    """The checkpoint dict, validated; raises CheckpointError naming the file on any problem."""
    return torch_load(path, REQUIRED, "checkpoint")


def load_weights(model: nn.Module, path: str | Path, key: str = "model.pretrained") -> nn.Module:
    """Load a plain state_dict file (torchvision's .pth; also {'state_dict': ...} or {'model': ...})
    into `model`, strictly, with weights_only=True. Errors name `key` and the file."""
    path = Path(path)
    state = _read(path, f"{key}: weights file", "a state_dict")
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as e:
        first = str(e).strip().splitlines()
        raise CheckpointError(f"{key}: {str(path)!r} does not fit the model: {' '.join(first[:2])[:300]}") from None
    return model


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


class ResumeFile:
    """Per-epoch training state beside a stage's output (`models/.baseline.pt.resume`).

    It carries a fingerprint of everything the run depends on (params, input hashes) and the
    md5 of each code file the stage depends on ({path: md5}); a file whose fingerprint or code
    differs is ignored, so a changed configuration or changed code starts over (`changed_code`
    then names the code files that differ). Removed once the stage's output is written.
    """

    def __init__(self, output: str | Path, fingerprint: str, code: dict[str, str] | None = None,
                 folder: str | Path | None = None):
        """folder: the DVC output folder that holds `output` (a network's per-seed checkpoints).
        DVC deletes a stage's outputs, folders and all, before it runs the stage again, so the
        state then lives beside the folder (`models/finetuned/.chip-r1.seed0.pt.resume`)."""
        output = Path(output)
        if folder is None:
            self.path = output.parent / f".{output.name}.resume"
        else:
            self.path = Path(folder).parent / f".{Path(folder).name}.{output.name}.resume"
        self.fingerprint, self.code = fingerprint, code or {}
        self.changed_code: list[str] = []

    def load(self) -> dict | None:
        if not self.path.is_file():
            return None
        try:
            state = torch_load(self.path, ("fingerprint", "train"), "resume file")
        except CheckpointError:
            return None  # a file killed mid-write cannot exist (atomic), but a foreign one might
        if state["fingerprint"] != self.fingerprint:
            return None
        saved_code = state.get("code") if isinstance(state.get("code"), dict) else {}
        self.changed_code = sorted(k for k in saved_code.keys() | self.code.keys() if saved_code.get(k) != self.code.get(k))
        return None if self.changed_code else state

    def save(self, train_state: dict, **extra) -> None:
        torch_save(self.path, {"fingerprint": self.fingerprint, "code": self.code, "train": train_state, **extra})

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
