import oracles
import pytest
import torch
from helpers import DEVICES

from prunelab import models
from prunelab.criteria import channel_independence, channel_independence_per_image
from prunelab.data import Loader, load_digits
from prunelab.engine import Recipe, fit
from prunelab.features import forward_hooks

naive_ci = oracles.channel_independence  # CHIP's definition, one nuclear norm per image and removed channel


def assert_close_to_reference(fmaps, device=torch.device("cpu")):
    """Our scores, computed on `device`, against the literal definition on the CPU."""
    ref = naive_ci(fmaps)
    on_device = fmaps.to(device)
    got = channel_independence_per_image(on_device)
    assert got.device.type == device.type
    err = (got.double().cpu() - ref).abs().max() / ref.abs().max()
    assert err <= 1e-6, f"max error {err:.2e} of the largest score"
    assert torch.allclose(channel_independence(on_device).double().cpu(), ref.mean(0), rtol=0,
                          atol=1e-6 * ref.abs().max().item())


@pytest.mark.parametrize("shape", [(3, 8, 4, 4), (3, 16, 4, 4), (3, 24, 4, 4), (2, 64, 2, 2), (2, 6, 8, 8),
                                   (2, 64, 8, 8)],
                         ids=["C<HW", "C=HW", "C>HW", "C>>HW", "C<<HW", "resnet56-stage3"])
@pytest.mark.parametrize("device", DEVICES)
def test_matches_naive_definition_on_random_maps(shape, device):
    torch.manual_seed(0)
    assert_close_to_reference(torch.relu(torch.randn(shape)), device)


@pytest.mark.parametrize("device", DEVICES)
def test_zero_channels_score_zero_and_rank_deficient_maps(device):
    torch.manual_seed(1)
    low_rank = torch.randn(2, 12, 2) @ torch.randn(2, 2, 16)  # (2, 12, 16): rank 2
    fmaps = low_rank.reshape(2, 12, 4, 4).clone()
    fmaps[:, 3] = 0
    assert_close_to_reference(fmaps, device)
    scores = channel_independence(fmaps.to(device)).cpu()  # (12,)
    # Zero to the precision chip.py states for rank-deficient maps (1e-7 of the largest score):
    # the CPU's LAPACK keeps the zero row out of every eigenvector (8.8e-38 here); cuSOLVER mixes
    # it into the null space's, which left 3.2e-9 of 3.3 on an H200. Either way it ranks last.
    assert scores[3].abs() <= 1e-7 * scores.abs().max()
    assert scores[3] < torch.cat([scores[:3], scores[4:]]).min()


@pytest.fixture(scope="module")
def trained_digits_maps():
    """ReLU maps of a ResNet-20 trained for 2 epochs on the digits (8x8), on 4 test images."""
    torch.manual_seed(0)
    s = load_digits()
    m = models.build_model("resnet20", in_channels=1)
    train = Loader(s.x_train, s.y_train, s.mean, s.std, 64, shuffle=True, augment=s.augment)
    test = Loader(s.x_test, s.y_test, s.mean, s.std, 4)
    assert fit(m, train, test, Recipe(epochs=2, lr=0.1), torch.device("cpu"))["top1"] > 50
    maps = {}
    with torch.no_grad(), forward_hooks(m.eval(), LAYERS, lambda n, o: maps.__setitem__(n, o.clone())):
        m(next(iter(test))[0])
    return maps


LAYERS = ["relu", "layer1.1.relu1", "layer2.0.relu1", "layer2.2.relu2", "layer3.2.relu1", "layer3.2.relu2"]


@pytest.mark.parametrize("layer", LAYERS)
def test_matches_naive_definition_on_maps_of_a_trained_network(trained_digits_maps, layer):
    fm = trained_digits_maps[layer]  # (4, C, H, W): 16x8x8 (C < HW), 32x4x4 and 64x2x2 (C > HW)
    assert_close_to_reference(fm)


def test_all_zero_map_scores_zero():
    assert torch.equal(channel_independence(torch.zeros(2, 5, 3, 3)), torch.zeros(5))


def test_ranking_matches_the_reference():
    torch.manual_seed(4)
    fmaps = torch.relu(torch.randn(6, 32, 6, 6))
    assert torch.equal(channel_independence(fmaps).argsort(), naive_ci(fmaps).mean(0).argsort())


def test_scores_independent_of_chunking():
    torch.manual_seed(2)
    fmaps = torch.relu(torch.randn(5, 10, 3, 3))
    whole = channel_independence_per_image(fmaps)
    chunked = channel_independence_per_image(fmaps, max_bytes=1)  # one image per chunk
    assert torch.equal(whole, chunked)


def test_hrank_equals_numpys_rank_of_every_map():
    from prunelab.criteria import channel_rank, channel_rank_per_image

    torch.manual_seed(5)
    n, c, h, w = 3, 6, 7, 5
    ranks = torch.randint(0, 6, (n, c))  # exact rank of each map: a sum of r random outer products
    fmaps = torch.zeros(n, c, h, w)
    for i in range(n):
        for ch in range(c):
            r = int(ranks[i, ch])
            fmaps[i, ch] = torch.randn(h, r) @ torch.randn(r, w)
    reference = oracles.channel_rank(fmaps)
    assert torch.equal(reference, ranks.float())
    assert torch.equal(channel_rank_per_image(fmaps), reference)
    assert torch.allclose(channel_rank(fmaps), reference.mean(0))


@pytest.mark.parametrize("arch", ["resnet20", "vgg16", "resnet50"])
def test_l1_is_the_sum_of_absolute_filter_weights(arch):
    from prunelab.criteria import filter_l1

    torch.manual_seed(0)
    m = models.build_model(arch)
    modules = dict(m.named_modules())
    groups = models.channel_groups(arch)
    scores = filter_l1(m, groups)
    for g in groups[:4] + groups[-4:]:
        convs = [modules[p] for p in g.producers if isinstance(modules[p], torch.nn.Conv2d)]
        assert torch.allclose(scores[g.name], oracles.filter_l1(convs), rtol=1e-6), g.name
    stage_out = [g for g in groups if len(g.producers) > 2]
    assert (arch == "resnet50") == bool(stage_out)  # ResNet-50's stage outputs sum several convs


def test_random_scores_are_the_seeded_draw_of_their_definition():
    """Each group's scores: the README's seeded uniform draw (tests/oracles.py), for two seeds."""
    from prunelab.criteria import random_scores

    m = models.build_model("resnet20")
    groups = models.channel_groups("resnet20")
    widths = models.default_widths("resnet20")
    for seed in (0, 1):
        got = random_scores(m, groups, seed)
        assert set(got) == {g.name for g in groups}
        for g in groups:
            expected = oracles.random_scores(g.name, models.get_width(widths, g.width_key), seed)
            assert torch.equal(got[g.name], expected), (seed, g.name)


@pytest.mark.parametrize("shape", [(3, 8, 4, 4), (2, 24, 4, 4)], ids=["C<HW", "C>HW"])
def test_scores_of_float64_maps_keep_float64_precision(shape):
    """CHIP is computed in float64 (a small difference of large norms) and handed back in the
    maps' dtype: float64 maps give float64 scores within the quadrature's 1e-8 of the largest
    score (chip.py) of the definition, which float32's 6e-8 rounding would not keep; float32 maps
    give float32 scores, integer maps float32."""
    torch.manual_seed(6)
    fmaps = torch.relu(torch.randn(shape, dtype=torch.float64))
    got = channel_independence_per_image(fmaps)
    ref = naive_ci(fmaps)
    assert got.dtype == torch.float64
    assert (got - ref).abs().max() <= 1e-8 * ref.abs().max()
    assert channel_independence_per_image(fmaps.float()).dtype == torch.float32
    assert channel_independence_per_image((fmaps * 10).round().to(torch.int64)).dtype == torch.float32
