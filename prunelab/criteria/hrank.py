"""HRank (Lin et al., CVPR 2020): the average numerical rank of each channel's H x W map."""

from __future__ import annotations

import torch


def channel_rank_per_image(fmaps: torch.Tensor) -> torch.Tensor:
    """fmaps (N, C, H, W) -> (N, C) numerical rank of every H x W map, batched in one SVD call.

    The tolerance is torch.linalg.matrix_rank's (and numpy's) default: sigma_max * max(H, W) *
    eps of the maps' dtype, so float32 maps are judged at float32 precision, as in HRank's code.
    """
    return torch.linalg.matrix_rank(fmaps).to(torch.float32)


def channel_rank(fmaps: torch.Tensor) -> torch.Tensor:
    """fmaps (N, C, H, W) -> (C,) HRank score: rank averaged over the N images."""
    return channel_rank_per_image(fmaps).mean(0)
