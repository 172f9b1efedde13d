"""CHIP: channel independence (Sui et al., NeurIPS 2021).

For one image, a layer's map A is C x M (M = H*W). The independence of channel c is
    CI_c = ||A||_* - ||A with row c zeroed||_*,
and the channel's score is the mean of CI_c over images (higher = more independent = keep).

The public code runs C+1 SVDs per image. We decompose once and integrate.

Let A = U diag(s) V^T (thin SVD, r = min(C, M) columns), d = s^2, and l_c = ||U_c||^2 the
leverage of row c (1 when C <= M). Zeroing row a_c leaves A^T A - a_c a_c^T, whose eigenvalues
mu are the roots of the secular function 1 - h(t) with h(t) = sum_j U_cj^2 d_j / (d_j + t)
evaluated at t = -mu. From sqrt(x) = (1/pi) int_0^inf x / (x + t) t^(-1/2) dt and the
Sherman-Morrison trace of (D - z z^T + tI)^-1 follows, with every term non-negative:

    CI_c = (1/pi) int_0^inf t^(-1/2) Q_c(t) / ((1 - l_c)/t + P_c(t)) dt
    P_c(t) = sum_j U_cj^2 / (d_j + t),   Q_c(t) = sum_j U_cj^2 d_j / (d_j + t)^2.

With t = d_max e^u the integrand is analytic in the strip |Im u| < pi, so the trapezoid rule
converges geometrically (error ~ exp(-2 pi^2 / h)); it decays like e^(u/2) and e^(-u/2) at
the two ends. P and Q at all nodes are two batched matmuls, (C, r) @ (r, K), per image. Per
image that is one eigendecomposition of the smaller Gram matrix plus O(C r K) multiply-adds,
all batched over images, channels and nodes, on the maps' device.
"""

from __future__ import annotations

import math

import torch

# Trapezoid rule in u = log(t / d_max): step and range. Measured against the naive definition
# (tests/test_criteria.py, benchmarks/ci_speed.py): <= ~1e-8 of the largest score on full-rank
# maps; rank-deficient maps are limited to ~1e-7 by the Gram matrix's own rounding.
STEP = 0.9
U_MIN, U_MAX = -46.0, 40.0


def _row_spectrum(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """a: (N, C, M) -> squared singular values d (N, r), U^2 (N, C, r), 1 - leverage (N, C).

    When C <= M, U is square orthogonal, every leverage is 1 and the third value is None.
    """
    c, m = a.shape[-2:]
    if c <= m:
        d, u = torch.linalg.eigh(a @ a.transpose(1, 2))  # (N, C), (N, C, C)
        return d.clamp_min_(0), u.square_(), None
    u, s, _ = torch.linalg.svd(a, full_matrices=False)  # (N, C, M), (N, M)
    u2 = u.square_()
    return s.square_(), u2, (1 - u2.sum(-1)).clamp_min_(0)


def channel_independence_per_image(fmaps: torch.Tensor, dtype: torch.dtype = torch.float64,
                                   max_bytes: int = 1 << 27) -> torch.Tensor:
    """fmaps (N, C, H, W) -> CI (N, C) for every image and channel, on fmaps' device.

    Computed in `dtype` (float64 by default: CI is a small difference of large norms), in chunks
    of images so that the (chunk, max(C, r), K) work tensors stay under `max_bytes`.
    """
    n, c = fmaps.shape[:2]
    a = fmaps.reshape(n, c, -1).to(dtype)  # (N, C, M)
    u_nodes = torch.arange(U_MIN, U_MAX + STEP / 2, STEP, dtype=dtype, device=a.device)  # (K,)
    chunk = max(1, max_bytes // (3 * c * u_nodes.numel() * a.element_size()))
    out = []
    for start in range(0, n, chunk):
        d, u2, lev_gap = _row_spectrum(a[start:start + chunk])  # (B, r), (B, C, r), (B, C) or None
        d_max = d.amax(-1, keepdim=True)  # (B, 1)
        t = torch.where(d_max > 0, d_max, 1.0) * u_nodes.exp()  # (B, K)
        w = torch.add(d[:, :, None], t[:, None, :]).reciprocal_()  # (B, r, K): 1 / (d + t)
        p = u2 @ w  # (B, C, K)
        q = u2 @ w.square_().mul_(d[:, :, None])  # (B, C, K), from d / (d + t)^2
        if lev_gap is not None:
            p.add_(lev_gap[:, :, None] / t[:, None, :])
        # integrand in u: t * t^(-1/2) Q / ((1 - l)/t + P)
        ci = q.div_(p).mul_(t.sqrt()[:, None, :]).sum(-1) * (STEP / math.pi)  # (B, C)
        out.append(torch.where(d_max > 0, ci, 0.0))  # an all-zero map: every CI is 0
    return torch.cat(out).to(fmaps.dtype if fmaps.is_floating_point() else torch.float32)


def channel_independence(fmaps: torch.Tensor) -> torch.Tensor:
    """fmaps (N, C, H, W) -> (C,) CHIP score: CI averaged over the N images."""
    return channel_independence_per_image(fmaps).mean(0)
