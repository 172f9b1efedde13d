"""SNPFI (Tang, Wei, Li, 2023) in our reading (PAPER.md, "SNPFI"): filter interactions as a game.

For a channel group g of C channels, a coalition M is a subset of its channels; "only M active"
zeroes every other channel of g at every module that carries g (`group.carriers`). The value
V(M) is the mean over calibration images of log softmax(logits)[true class], model in eval mode.

- importance phi_i: the Shapley value of channel i, estimated by permutation sampling. The C+1
  prefixes of one permutation give C marginal contributions, one per channel, and telescope:
  sum_i phi_i = V(all) - V(empty) for any set of permutations. Permutations come in antithetic
  pairs (a permutation and its reverse) to cut the variance.
- utilization strength U_g(m): the mean value of the sampled coalitions of size m (the prefixes
  of length m, one per permutation), normalised to [0, 1] by U(0) and U(C), then made monotone.
- per-group widths: one global threshold tau; group g keeps the smallest m >= 1 with
  U_g(m) >= tau, and tau is searched so that the MACs reduction meets a requested fraction.

Cost: a network is a sequence of parts (`model.parts()`: stem, blocks, head). The parts before
the one holding the group's first carrier run once per calibration batch; only the remaining
parts run for the coalitions, K coalitions at a time as one batch of K x B images.
"""

from __future__ import annotations

import copy
import math
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn
from tqdm.auto import tqdm

from prunelab import counting, models, surgery
from prunelab.features import forward_hooks
from prunelab.models.spec import ChannelGroup


def split_forward(model: nn.Module, group: ChannelGroup) -> tuple[Callable, Callable]:
    """(prefix, rest) with rest(prefix(x)) == model(x).

    prefix runs the parts before the one holding the group's first carrier (in forward order),
    rest runs that part and every later one, so masks at the carriers act inside rest only.
    """
    parts = model.parts()
    modules = dict(model.named_modules())

    def part_of(name: str) -> int:
        target = modules[name]
        return next(i for i, part in enumerate(parts) if any(m is target for m in part.modules()))

    first = min(part_of(name) for name in group.carriers)

    def run(x: torch.Tensor, chosen: list[nn.Module]) -> torch.Tensor:
        for part in chosen:
            x = part(x)
        return x

    return (lambda x: run(x, parts[:first])), (lambda x: run(x, parts[first:]))


@contextmanager
def coalition_masks(model: nn.Module, group: ChannelGroup, masks: torch.Tensor) -> Iterator[None]:
    """While active, the batch is read as K copies of B images, copy k playing coalition k.

    masks: (K, C), 1 = active. Every carrier's output (K*B, C, ...) is multiplied in place by
    masks[k] on copy k, which is what removing the inactive channels does at that carrier.
    """
    k, c = masks.shape

    def apply(_name: str, out: torch.Tensor) -> None:
        out.unflatten(0, (k, -1)).mul_(masks.view(k, 1, c, *[1] * (out.ndim - 2)))  # (K, B, C, ...)

    with forward_hooks(model, group.carriers, apply):
        yield


@torch.inference_mode()
def coalition_values(model: nn.Module, group: ChannelGroup, images: torch.Tensor, labels: torch.Tensor,
                     masks: torch.Tensor, batch_size: int = 128, max_batch: int = 1024,
                     progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """V(M) for every coalition: masks (K, C) bool -> (K,) float64 on the CPU.

    images (N, C_in, H, W), normalised; labels (N,). The prefix runs once per batch of
    `batch_size` images; the rest runs on at most `max_batch` images (coalitions x images) at a
    time. progress(n) is called after every n image-evaluations. The model must be in eval mode.
    """
    param = next(model.parameters())
    prefix, rest = split_forward(model, group)
    masks = masks.to(param.device, param.dtype)
    totals = torch.zeros(masks.shape[0], dtype=torch.float64, device=param.device)
    for start in range(0, images.shape[0], batch_size):
        x = prefix(images[start:start + batch_size].to(param.device, param.dtype))  # (B, ...), cached
        y = labels[start:start + batch_size].to(param.device)  # (B,)
        b = x.shape[0]
        per = max(1, max_batch // b)  # coalitions per forward
        for k0 in range(0, masks.shape[0], per):
            chunk = masks[k0:k0 + per]  # (k, C)
            k = chunk.shape[0]
            # repeat copies, so the cache survives parts that work in place (VGG's ReLU parts)
            with coalition_masks(model, group, chunk):
                logits = rest(x.repeat(k, *[1] * (x.ndim - 1)))  # (k*B, classes), coalition-major
            logp = logits.double().log_softmax(1).gather(1, y.repeat(k)[:, None]).view(k, b)  # (k, B)
            totals[k0:k0 + k] += logp.sum(1)
            if progress:
                progress(k * b)
    return (totals / images.shape[0]).cpu()


def sample_permutations(channels: int, permutations: int, generator: torch.Generator,
                        antithetic: bool = True) -> torch.Tensor:
    """(P, C) random permutations of range(C); antithetic: rows 2j and 2j+1 are reverses."""
    if permutations < 1 or (antithetic and permutations % 2):
        raise ValueError(f"permutations must be a positive{' even' if antithetic else ''} number, got {permutations}")
    n = permutations // 2 if antithetic else permutations
    perms = torch.rand(n, channels, generator=generator).argsort(1)  # (n, C)
    if antithetic:
        perms = torch.stack([perms, perms.flip(1)], 1).reshape(permutations, channels)
    return perms


def prefix_masks(perms: torch.Tensor) -> torch.Tensor:
    """perms (P, C) -> (P, C+1, C) bool: [p, m] = the first m channels of permutation p."""
    p, c = perms.shape
    rank = perms.argsort(1)  # (P, C): position of every channel in its permutation
    return rank[:, None, :] < torch.arange(c + 1)[None, :, None]


def utilization_curve(mean_values: torch.Tensor) -> torch.Tensor:
    """(C+1,) mean value per coalition size -> normalised, monotone utilization strength.

    U(m) = (u(m) - u(0)) / (u(C) - u(0)) clipped to [0, 1], then a running maximum so a
    threshold picks a well-defined smallest size. U(0) = 0 and U(C) = 1 exactly. A group whose
    channels do not change the value at all (u(C) = u(0)) gets U(m) = 1 for m >= 1: one
    channel does as well as all of them.
    """
    u = mean_values.double()
    span = u[-1] - u[0]
    if span.abs() <= 1e-12 * max(1.0, u.abs().max().item()):
        curve = torch.ones_like(u)
        curve[0] = 0
        return curve
    return ((u - u[0]) / span).clamp(0, 1).cummax(0).values


def group_game(model: nn.Module, group: ChannelGroup, images: torch.Tensor, labels: torch.Tensor,
               perms: torch.Tensor, batch_size: int = 128, max_batch: int = 1024,
               progress: Callable[[int], None] | None = None) -> dict[str, torch.Tensor]:
    """Shapley estimate and utilization of one group from the given permutations (P, C).

    Returns {"importance": (C,), "utilization": (C+1,), "values": (P, C+1)} float64, where
    values[p, m] = V(first m channels of permutation p). Coalitions shared by several
    permutations (the empty and the full one at least) are evaluated once.
    """
    p, c = perms.shape
    masks = prefix_masks(perms).reshape(-1, c)  # (P*(C+1), C)
    unique, inverse = torch.unique(masks, dim=0, return_inverse=True)  # (U, C), (P*(C+1),)
    values = coalition_values(model, group, images, labels, unique, batch_size, max_batch, progress)
    values = values[inverse].view(p, c + 1)  # (P, C+1)
    marginal = values.diff(dim=1)  # (P, C): [p, m] is the contribution of channel perms[p, m]
    importance = torch.zeros(p, c, dtype=torch.float64).scatter_(1, perms, marginal).mean(0)
    return {"importance": importance, "utilization": utilization_curve(values.mean(0)), "values": values}


def analyse(model: nn.Module, groups: list[ChannelGroup], images: torch.Tensor, labels: torch.Tensor,
            permutations: int = 4, seed: int = 0, device: torch.device | str = "cpu", progress: bool = True,
            batch_size: int = 128, max_batch: int = 1024) -> dict[str, dict[str, torch.Tensor]]:
    """{group name: {"importance": (C,), "utilization": (C+1,), "values": (P, C+1)}} (float64, CPU).

    images (N, C_in, H, W) normalised calibration images, labels (N,). Each group draws its
    `permutations` (antithetic pairs, so an even number) from a generator seeded by (seed,
    group name): a group's result does not depend on which other groups are analysed.
    The model is moved to `device` and put in eval mode.
    """
    model.eval().to(device)
    modules = dict(model.named_modules())
    out = {}
    for g in groups:
        width = modules[g.producers[0]].weight.shape[0]
        gen = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(g.name.encode()))
        perms = sample_permutations(width, permutations, gen)
        total = torch.unique(prefix_masks(perms).reshape(-1, width), dim=0).shape[0] * images.shape[0]
        with tqdm(total=total, desc=f"snpfi {g.name}", unit="img", disable=not progress, dynamic_ncols=True,
                  leave=False) as bar:
            out[g.name] = group_game(model, g, images, labels, perms, batch_size, max_batch, bar.update)
    return out


def keep_counts(utilization: dict[str, torch.Tensor], tau: float) -> dict[str, int]:
    """{group: smallest m >= 1 with U(m) >= tau}, or the group's full width C when none reaches tau.

    utilization: {group: (C+1,) non-decreasing curve}, so a binary search finds m.
    """
    counts = {}
    for name, curve in utilization.items():
        u = curve[1:].contiguous()  # U(1..C)
        first = int(torch.searchsorted(u, torch.tensor([float(tau)], dtype=u.dtype)))  # first index with u >= tau
        counts[name] = min(first + 1, u.numel())
    return counts


def allocate(arch: str, widths: dict, utilization: dict[str, torch.Tensor], target_reduction: float,
             input_shape: tuple[int, int, int], in_channels: int | None = None,
             num_classes: int = 10) -> tuple[dict[str, int], float, float]:
    """Per-group kept channel counts from one global threshold, for a requested MACs reduction.

    utilization: {group: (C+1,) monotone curve} for every channel group of the arch (C = the
    group's width in `widths`). target_reduction: a fraction of the MACs of `widths` to remove.
    Returns (counts {group: int}, tau, reached reduction).

    The counts as a function of tau form a step function whose steps sit at the curves' values,
    so tau is bisected over the sorted distinct values (plus one above 1: full widths), which
    finds the two neighbouring allocations whose reductions bracket the request. A single step
    can add many channels at once (a flat stretch of a curve), so the gap between them is
    closed one channel at a time: the channels that the upper allocation adds are ordered by the
    utilization their group has before the channel (lowest first: the group furthest below the
    threshold), and the longest prefix of that order whose reduction still meets the request,
    or one more channel when that is closer, is added. The returned tau is the lower
    allocation's threshold; every count lies between the counts at tau and at the next step.
    """
    if not 0 < target_reduction < 1:
        raise ValueError(f"target_reduction must be in (0, 1), got {target_reduction}")
    in_channels = input_shape[0] if in_channels is None else in_channels
    groups = models.channel_groups(arch)
    curves = {}
    for g in groups:
        if g.name not in utilization:
            raise KeyError(f"no utilization curve for layer {g.name!r}")
        width = models.get_width(widths, g.width_key)
        if utilization[g.name].numel() != width + 1:
            raise ValueError(f"layer {g.name!r}: utilization has {utilization[g.name].numel()} points for "
                             f"{width} channels (expected {width + 1})")
        curves[g.name] = utilization[g.name].double().cpu()

    def macs(w: dict) -> int:
        return counting.count_ops(models.build_model(arch, w, in_channels, num_classes), input_shape)["macs"]

    base = macs(widths)

    def reduction(counts: dict[str, int]) -> float:
        w = copy.deepcopy(widths)
        for g in groups:
            models.set_width(w, g.width_key, counts[g.name])
        return 1 - macs(w) / base

    # candidate thresholds, ascending; the last (above every curve) keeps full widths
    taus = sorted({v for c in curves.values() for v in c[1:].tolist()}) + [math.inf]
    # largest i whose allocation still removes at least the target (reduction falls as tau rises)
    lo, hi = -1, len(taus) - 1  # invariant: reduction at taus[lo] >= target (lo = -1: none) > at taus[hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if reduction(keep_counts(curves, taus[mid])) >= target_reduction:
            lo = mid
        else:
            hi = mid
    if lo < 0:  # even one channel per group removes less than asked: the most we can do
        counts = keep_counts(curves, taus[0])
        return counts, taus[0], reduction(counts)
    low, high = keep_counts(curves, taus[lo]), keep_counts(curves, taus[hi])
    # single-channel steps from `low` towards `high`: (utilization before the channel, group, m)
    steps = sorted((curves[g.name][m - 1].item(), i, m) for i, g in enumerate(groups)
                   for m in range(low[g.name] + 1, high[g.name] + 1))

    def with_steps(n: int) -> dict[str, int]:
        counts = dict(low)
        for _, i, m in steps[:n]:
            counts[groups[i].name] = m
        return counts

    a, b = 0, len(steps)  # reduction(with_steps(a)) >= target > reduction(with_steps(b))
    while b - a > 1:
        mid = (a + b) // 2
        if reduction(with_steps(mid)) >= target_reduction:
            a = mid
        else:
            b = mid
    r_a, r_b = reduction(with_steps(a)), reduction(with_steps(b))
    best, reached = (a, r_a) if r_a - target_reduction <= target_reduction - r_b else (b, r_b)
    return with_steps(best), taus[lo], reached


def allocate_like(arch: str, widths: dict, utilization: dict[str, torch.Tensor], rates: list[float],
                  input_shape: tuple[int, int, int], in_channels: int | None = None,
                  num_classes: int = 10) -> tuple[dict[str, int], float, float, float]:
    """allocate for the MACs reduction that pruning every group at its rate (CHIP's compact
    `rates`) gives: SNPFI's own widths at the budget of a rate-based setting.
    Returns (counts, tau, target reduction, reached reduction), reductions as fractions."""
    def macs(w: dict) -> int:
        return counting.count_ops(models.build_model(arch, w, in_channels, num_classes), input_shape)["macs"]

    target = counting.reduction(macs(widths), macs(models.pruned_widths(arch, rates, widths))) / 100
    counts, tau, reached = allocate(arch, widths, utilization, target, input_shape, in_channels, num_classes)
    return counts, tau, target, reached


def keep_indices(importance: dict[str, torch.Tensor], counts: dict[str, int]) -> dict[str, torch.Tensor]:
    """{group: kept channel indices, ascending}: the counts[group] channels of highest importance."""
    return {name: surgery.select_channels(importance[name], k) for name, k in counts.items()}
