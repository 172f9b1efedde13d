import oracles
import pytest
import torch

from prunelab import models
from prunelab.criteria import FEATURE_STATISTICS
from prunelab.errors import PrunelabError
from prunelab.features import channel_statistics, forward_hooks


def batches(x, size):
    return [(x[i:i + size], None) for i in range(0, len(x), size)]


@pytest.fixture(scope="module")
def net_and_images():
    torch.manual_seed(0)
    return models.build_model("resnet20", in_channels=1).eval(), torch.randn(24, 1, 8, 8)


def test_streamed_statistics_equal_the_definitions_on_all_maps_at_once(net_and_images):
    """Every layer's streamed CHIP and HRank statistics against the naive definitions
    (tests/oracles.py) applied to maps hooked in one plain forward pass."""
    model, x = net_and_images
    layers = [g.name for g in models.channel_groups("resnet20")]
    maps = {}
    stats = channel_statistics(model, batches(x, 5), layers, FEATURE_STATISTICS, 20, torch.device("cpu"),
                               progress=False, maps=maps)
    assert set(stats) == set(layers) and maps["layer3.0.relu1"].shape == (20, 64, 2, 2)
    reference = {}
    with torch.no_grad(), forward_hooks(model, layers, lambda n, o: reference.__setitem__(n, o.clone())):
        model(x[:20])
    for layer in layers:
        assert torch.equal(maps[layer], reference[layer])
        ci = oracles.channel_independence(reference[layer]).mean(0)  # (C,)
        assert torch.allclose(stats[layer]["chip"].double(), ci, rtol=0, atol=1e-6 * ci.abs().max().item()), layer
        ranks = oracles.channel_rank(reference[layer]).double().mean(0)  # (C,) mean of integer ranks
        assert torch.allclose(stats[layer]["hrank"].double(), ranks, rtol=0, atol=1e-6), layer


def test_batch_size_does_not_change_the_statistics(net_and_images):
    model, x = net_and_images
    layers = ["relu", "layer2.1.relu2"]
    a = channel_statistics(model, batches(x, 24), layers, FEATURE_STATISTICS, 24, torch.device("cpu"), False)
    b = channel_statistics(model, batches(x, 7), layers, FEATURE_STATISTICS, 24, torch.device("cpu"), False)
    for layer in layers:
        assert torch.allclose(a[layer]["chip"], b[layer]["chip"], rtol=1e-6)


def test_hooks_are_removed_even_on_error(net_and_images):
    model, x = net_and_images
    with pytest.raises(PrunelabError, match="features.num_images"):
        channel_statistics(model, batches(x, 8), ["relu"], FEATURE_STATISTICS, 100, torch.device("cpu"), False)
    assert all(not m._forward_hooks for m in model.modules())
    with pytest.raises(KeyError, match="no module named 'nope'"):
        with forward_hooks(model, ["relu", "nope"], lambda n, o: None):
            pass
    assert all(not m._forward_hooks for m in model.modules())
