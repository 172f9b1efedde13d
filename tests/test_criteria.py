import pytest
import torch

from prunelab import models
from prunelab.criteria import channel_independence, channel_independence_per_image


def naive_ci(fmaps: torch.Tensor) -> torch.Tensor:
    """CHIP's definition, literally: per image and channel, ||A||_* - ||A, row c zeroed||_*, in float64."""
    n, c = fmaps.shape[:2]
    a = fmaps.reshape(n, c, -1).double()
    out = torch.zeros(n, c, dtype=torch.float64)
    for i in range(n):
        full = torch.linalg.matrix_norm(a[i], "nuc")
        for ch in range(c):
            masked = a[i].clone()
            masked[ch] = 0
            out[i, ch] = full - torch.linalg.matrix_norm(masked, "nuc")
    return out


def assert_close_to_reference(fmaps):
    ref = naive_ci(fmaps)
    got = channel_independence_per_image(fmaps).double()
    err = (got - ref).abs().max() / ref.abs().max()
    assert err <= 1e-6, f"max error {err:.2e} of the largest score"
    assert torch.allclose(channel_independence(fmaps).double(), ref.mean(0), rtol=0, atol=1e-6 * ref.abs().max().item())


@pytest.mark.parametrize("shape", [(3, 8, 4, 4), (3, 16, 4, 4), (3, 24, 4, 4), (2, 64, 2, 2), (2, 6, 8, 8)],
                         ids=["C<HW", "C=HW", "C>HW", "C>>HW", "C<<HW"])
def test_matches_naive_definition_on_random_maps(shape):
    torch.manual_seed(0)
    assert_close_to_reference(torch.relu(torch.randn(shape)))


def test_zero_channels_score_zero_and_rank_deficient_maps():
    torch.manual_seed(1)
    low_rank = torch.randn(2, 12, 2) @ torch.randn(2, 2, 16)  # (2, 12, 16): rank 2
    fmaps = low_rank.reshape(2, 12, 4, 4).clone()
    fmaps[:, 3] = 0
    assert_close_to_reference(fmaps)
    assert channel_independence(fmaps)[3].abs() < 1e-9


def test_matches_naive_definition_on_real_relu_maps():
    torch.manual_seed(0)
    m = models.build_model("resnet20", in_channels=1).eval()
    maps = {}
    handles = [dict(m.named_modules())[n].register_forward_hook(lambda _m, _i, o, n=n: maps.__setitem__(n, o.clone()))
               for n in ("relu", "layer2.0.relu1", "layer3.2.relu2")]
    m(torch.randn(3, 1, 16, 16))
    for h in handles:
        h.remove()
    for fm in maps.values():
        assert_close_to_reference(fm)


def test_scores_independent_of_chunking():
    torch.manual_seed(2)
    fmaps = torch.relu(torch.randn(5, 10, 3, 3))
    whole = channel_independence_per_image(fmaps)
    chunked = channel_independence_per_image(fmaps, max_bytes=1)  # one image per chunk
    assert torch.equal(whole, chunked)
