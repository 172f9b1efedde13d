"""CHIP: channel independence (Sui et al., NeurIPS 2021).

For one image, a layer's map A is C x M (M = H*W). The independence of channel c is
    CI_c = ||A||_* - ||A with row c zeroed||_*,
and the channel's score is the mean of CI_c over images (higher = more independent = keep).

Instead of C+1 SVDs per image we decompose once. Let A = sum_i s_i u_i v_i^T, so that row c is
a_c = sum_i s_i U_ci v_i and, in the basis {v_i}, has coordinates z_i = s_i U_ci = a_c . v_i.
Zeroing row c leaves A^T A - a_c a_c^T, which on span{v_i} is diag(s^2) - z z^T: the squared
singular values of A_{-c} are the eigenvalues of that r x r matrix, r = rank bound min(C, M).
So per image: one eigendecomposition of the smaller Gram matrix (A A^T or A^T A), then one small
symmetric eigenvalue problem per channel, all batched over images and channels.
"""

from __future__ import annotations

import torch


def _gram_basis(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """a: (N, C, M) -> (squared singular values (N, r), row coordinates z (N, C, r)), r = min(C, M)."""
    c, m = a.shape[-2:]
    if c <= m:
        lam, u = torch.linalg.eigh(a @ a.transpose(1, 2))  # (N, C), (N, C, C)
        lam = lam.clamp_min(0)
        return lam, u * lam.sqrt()[:, None, :]  # z[n, c, i] = s_i U_ci
    lam, v = torch.linalg.eigh(a.transpose(1, 2) @ a)  # (N, M), (N, M, M)
    return lam.clamp_min(0), a @ v  # z[n, c, i] = a_c . v_i


def channel_independence_per_image(fmaps: torch.Tensor, dtype: torch.dtype = torch.float64,
                                   max_bytes: int = 1 << 28) -> torch.Tensor:
    """fmaps (N, C, H, W) -> CI (N, C) for every image and channel, on fmaps' device.

    Computed in `dtype` (float64 by default: the nuclear-norm difference cancels digits), in
    chunks of images so that the (chunk, C, r, r) work tensor stays under `max_bytes`.
    """
    n, c = fmaps.shape[:2]
    a = fmaps.reshape(n, c, -1).to(dtype)  # (N, C, M)
    r = min(c, a.shape[-1])
    chunk = max(1, max_bytes // (c * r * r * a.element_size()))
    out = []
    for start in range(0, n, chunk):
        lam, z = _gram_basis(a[start:start + chunk])  # (B, r), (B, C, r)
        full = lam.sqrt().sum(-1)  # (B,) = ||A||_*
        downdated = torch.diag_embed(lam)[:, None] - z[..., :, None] * z[..., None, :]  # (B, C, r, r)
        mu = torch.linalg.eigvalsh(downdated).clamp_min(0)  # (B, C, r): squared s.v. of A_{-c}
        out.append(full[:, None] - mu.sqrt().sum(-1))
    return torch.cat(out).to(fmaps.dtype if fmaps.is_floating_point() else torch.float32)


def channel_independence(fmaps: torch.Tensor) -> torch.Tensor:
    """fmaps (N, C, H, W) -> (C,) CHIP score: CI averaged over the N images."""
    return channel_independence_per_image(fmaps).mean(0)
