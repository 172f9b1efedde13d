"""Channel selection and physical pruning with full weight transfer.

Selection (scores -> kept indices) and surgery (index_select on every parameter and buffer) are
separate: surgery takes any kept-index sets, whichever criterion chose them.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from prunelab import models


def select_channels(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """Indices of the `keep` highest scores, ascending. Ties go to the lower index."""
    if not 1 <= keep <= scores.numel():
        raise ValueError(f"cannot keep {keep} of {scores.numel()} channels")
    order = torch.sort(scores.double(), descending=True, stable=True).indices  # stable: ties by index
    return order[:keep].sort().values


def keep_indices(arch: str, widths: dict, scores: dict[str, torch.Tensor], rates: list[float]) -> dict[str, torch.Tensor]:
    """{group name: kept channel indices} for every channel group of the arch.

    widths: the network's current widths; scores[group name]: (C,) with C = that group's width.
    """
    per_group = models.group_rates(arch, rates)
    keep = {}
    for group in models.channel_groups(arch):
        width = models.get_width(widths, group.width_key)
        if group.name not in scores:
            raise KeyError(f"no scores for layer {group.name!r}")
        if scores[group.name].numel() != width:
            raise ValueError(f"layer {group.name!r}: {scores[group.name].numel()} scores for {width} channels")
        keep[group.name] = select_channels(scores[group.name], models.kept_width(width, per_group[group.name]))
    return keep


def input_columns(keep: torch.Tensor, channels: int, in_features: int) -> torch.Tensor:
    """Kept input columns of a consumer reading `channels` channels at P = in_features / channels
    positions each, flattened channel-major as torch.flatten(x, 1) does on (N, C, H, W): channel c
    is columns c*P .. c*P + P-1. A conv (P = 1) keeps `keep` itself; AlexNet's fc1 has P = 4."""
    positions, rest = divmod(in_features, channels)
    if rest or not positions:
        raise ValueError(f"a consumer with {in_features} inputs cannot read {channels} channels")
    return (keep[:, None] * positions + torch.arange(positions)).flatten()  # (K*P,)


def prune(model: nn.Module, arch: str, widths: dict, keep: dict[str, torch.Tensor],
          in_channels: int, num_classes: int) -> tuple[nn.Module, dict]:
    """A new, smaller model holding exactly the kept channels, and its widths.

    Every producer's output-channel tensors (conv or linear weight and bias, BN weight, bias,
    running mean and variance; a depthwise conv is a producer: dim 0 of its (C, 1, kh, kw) weight)
    and every consumer's input-channel weights (the columns of those channels, input_columns) are
    index-selected; all other tensors are copied unchanged. A depthwise conv's `groups` and
    channel counts follow from the new widths when the model is rebuilt.
    """
    source = model.state_dict()
    out_idx: dict[str, torch.Tensor] = {}
    in_idx: dict[str, torch.Tensor] = {}
    new_widths = copy.deepcopy(widths)
    for group in models.channel_groups(arch):
        if group.name not in keep:
            continue
        idx = keep[group.name].long().cpu()
        width = models.get_width(widths, group.width_key)
        for name in group.producers:
            out_idx[name] = idx
        for name in group.consumers:
            in_idx[name] = input_columns(idx, width, source[f"{name}.weight"].shape[1])
        models.set_width(new_widths, group.width_key, idx.numel())
    state = {}
    for key, tensor in source.items():
        module, _, leaf = key.rpartition(".")
        t = tensor.detach().cpu()
        if module in out_idx and t.ndim >= 1:
            t = t.index_select(0, out_idx[module])
        if module in in_idx and leaf == "weight":
            t = t.index_select(1, in_idx[module])
        state[key] = t.clone()
    pruned = models.build_model(arch, new_widths, in_channels, num_classes)
    pruned.load_state_dict(state, strict=True)
    return pruned, new_widths
