import itertools
import math

import pytest
import torch

from prunelab import counting, models
from prunelab.criteria import snpfi
from prunelab.features import forward_hooks
from prunelab.sparsity import parse_sparsity

# a ResNet-20 narrow enough to enumerate every coalition of its groups (C <= 6)
TINY = {"stem": 5, "inner": [4, 6, 3, 5, 4, 6, 6, 4, 5], "out": [5, 5, 5, 6, 6, 6, 8, 8, 8]}
TINY_GROUPS = ["relu", "layer1.0.relu1", "layer1.2.relu2", "layer2.1.relu1", "layer2.0.relu2", "layer3.2.relu1"]


def trained_like(arch: str, widths: dict | None = None, in_channels: int = 3) -> torch.nn.Module:
    """A model with non-trivial BN statistics and affine parameters, in eval mode."""
    torch.manual_seed(0)
    m = models.build_model(arch, widths, in_channels)
    for mod in m.modules():
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
            torch.nn.init.uniform_(mod.weight, 0.5, 1.5)
            torch.nn.init.uniform_(mod.bias, -0.2, 0.2)
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 2.0)
    return m.eval()


@pytest.fixture(scope="module")
def tiny():
    """(model, images, labels): the narrow ResNet-20 on 32 random 8x8 images with random labels."""
    model = trained_like("resnet20", TINY, in_channels=1)
    gen = torch.Generator().manual_seed(0)
    return model, torch.randn(32, 1, 8, 8, generator=gen), torch.randint(0, 10, (32,), generator=gen)


def group(arch: str, name: str):
    return next(g for g in models.channel_groups(arch) if g.name == name)


def naive_value(model, g, x, y, active: torch.Tensor) -> float:
    """V(M) by a full forward with the inactive channels zeroed at every carrier."""
    def zero(_name, out):
        out[:, ~active] = 0

    with torch.no_grad(), forward_hooks(model, g.carriers, zero):
        logits = model(x)
    return logits.double().log_softmax(1)[torch.arange(len(y)), y].mean().item()


def exact_shapley(model, g, x, y, c: int) -> torch.Tensor:
    """Shapley values by enumerating all 2^C coalitions."""
    value = {}
    for bits in itertools.product([False, True], repeat=c):
        value[bits] = naive_value(model, g, x, y, torch.tensor(bits))
    phi = torch.zeros(c, dtype=torch.float64)
    for bits, v in value.items():
        size = sum(bits)
        for i in range(c):
            if bits[i]:
                without = bits[:i] + (False,) + bits[i + 1:]
                phi[i] += math.factorial(size - 1) * math.factorial(c - size) / math.factorial(c) * (v - value[without])
    return phi


@pytest.mark.parametrize("name", TINY_GROUPS)
def test_monte_carlo_converges_to_exact_shapley(tiny, name):
    model, x, y = tiny
    g = group("resnet20", name)
    c = models.get_width(TINY, g.width_key)
    exact = exact_shapley(model, g, x, y, c)
    perms = snpfi.sample_permutations(c, 2000, torch.Generator().manual_seed(0))
    got = snpfi.group_game(model, g, x, y, perms)["importance"]
    spread = (exact.max() - exact.min()).item()
    assert spread > 1e-3, "degenerate game"
    assert (got - exact).abs().max() < 0.02 * spread, f"{got} vs exact {exact}"


@pytest.mark.parametrize("name", TINY_GROUPS)
def test_batched_cached_game_equals_naive_loop_with_the_same_permutations(tiny, name):
    model, x, y = tiny
    g = group("resnet20", name)
    c = models.get_width(TINY, g.width_key)
    perms = snpfi.sample_permutations(c, 4, torch.Generator().manual_seed(1))
    got = snpfi.group_game(model, g, x, y, perms, batch_size=12, max_batch=40)  # several batches and chunks

    values = torch.tensor([[naive_value(model, g, x, y, torch.isin(torch.arange(c), perm[:m])) for m in range(c + 1)]
                           for perm in perms], dtype=torch.float64)  # (P, C+1)
    phi = torch.zeros(c, dtype=torch.float64)
    for p, perm in enumerate(perms):
        for m in range(c):
            phi[perm[m]] += (values[p, m + 1] - values[p, m]) / len(perms)
    assert torch.allclose(got["values"], values, rtol=0, atol=1e-6), f"{(got['values'] - values).abs().max()}"
    assert torch.allclose(got["importance"], phi, rtol=0, atol=1e-6), f"{(got['importance'] - phi).abs().max()}"
    # efficiency: the estimates of every permutation set sum to V(all) - V(empty)
    full = naive_value(model, g, x, y, torch.ones(c, dtype=torch.bool))
    empty = naive_value(model, g, x, y, torch.zeros(c, dtype=torch.bool))
    own_span = (got["values"][0, -1] - got["values"][0, 0]).item()
    assert got["importance"].sum().item() == pytest.approx(own_span, abs=1e-12)
    assert got["importance"].sum().item() == pytest.approx(full - empty, abs=1e-6)


def test_batched_game_equals_naive_loop_in_float64(tiny):
    model, x, y = tiny
    model64, g = models.build_model("resnet20", TINY, in_channels=1).double(), group("resnet20", "layer1.2.relu2")
    model64.load_state_dict(model.state_dict())
    model64.eval()
    perms = snpfi.sample_permutations(5, 2, torch.Generator().manual_seed(2))
    got = snpfi.group_game(model64, g, x.double(), y, perms, max_batch=64)["values"]
    want = torch.tensor([[naive_value(model64, g, x.double(), y, torch.isin(torch.arange(5), perm[:m]))
                          for m in range(6)] for perm in perms], dtype=torch.float64)
    assert torch.allclose(got, want, rtol=0, atol=1e-12), f"{(got - want).abs().max()}"


FORWARD_CASES = [("resnet20", 32, 3), ("vgg16", 32, 3), ("resnet50", 64, 2)]


@pytest.mark.parametrize("arch,size,n", FORWARD_CASES, ids=[c[0] for c in FORWARD_CASES])
def test_cached_partial_forward_equals_full_forward(arch, size, n):
    """The parts compose to forward(), and for every group rest(prefix(x)) == model(x)."""
    model = trained_like(arch)
    x = torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(x)
        composed = x
        for part in model.parts():
            composed = part(composed)
        assert torch.allclose(composed, full, atol=1e-5), f"{(composed - full).abs().max()}"
        for g in models.channel_groups(arch):
            prefix, rest = snpfi.split_forward(model, g)
            got = rest(prefix(x))
            assert torch.allclose(got, full, atol=1e-5), f"{g.name}: {(got - full).abs().max()}"


# every group of ResNet-20 and VGG-16; ResNet-50's stem and its groups carried by several maps
MASK_CASES = [("resnet20", 32, 3, lambda g: True), ("vgg16", 32, 3, lambda g: True),
              ("resnet50", 64, 2, lambda g: g.name == "relu" or len(g.carriers) > 1)]


@pytest.mark.parametrize("arch,size,n,chosen", MASK_CASES, ids=[c[0] for c in MASK_CASES])
def test_masked_copies_equal_zeroing_each_copy(arch, size, n, chosen):
    """K copies of the cached input under K masks == K full forwards with the channels zeroed."""
    model = trained_like(arch)
    modules = dict(model.named_modules())
    x = torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for g in filter(chosen, models.channel_groups(arch)):
            prefix, rest = snpfi.split_forward(model, g)
            masks = torch.rand(2, modules[g.producers[0]].weight.shape[0], generator=gen) < 0.5  # (K, C)
            with snpfi.coalition_masks(model, g, masks.float()):
                masked = rest(prefix(x).repeat(2, 1, 1, 1)).view(2, n, -1)  # (K, N, classes)
            for k in range(2):
                def zero(_name, out, k=k):
                    out[:, ~masks[k]] = 0

                with forward_hooks(model, g.carriers, zero):
                    want = model(x)
                assert torch.allclose(masked[k], want, atol=1e-5), f"{g.name}: {(masked[k] - want).abs().max()}"


def test_analyse_utilization_is_normalised_monotone_and_seeded(tiny):
    model, x, y = tiny
    groups = models.channel_groups("resnet20")
    res = snpfi.analyse(model, groups, x[:16], y[:16], permutations=2, seed=3, progress=False)
    assert list(res) == [g.name for g in groups]
    for g in groups:
        c = models.get_width(TINY, g.width_key)
        u = res[g.name]["utilization"]
        assert u.shape == (c + 1,) and res[g.name]["importance"].shape == (c,)
        assert u[0] == 0 and u[-1] == 1 and bool((u.diff() >= 0).all())
    again = snpfi.analyse(model, groups[::-1][:3], x[:16], y[:16], permutations=2, seed=3, progress=False)
    for name, r in again.items():  # one generator per (seed, group): independent of the other groups
        assert torch.equal(r["importance"], res[name]["importance"])
    other = snpfi.analyse(model, groups[:1], x[:16], y[:16], permutations=2, seed=4, progress=False)
    assert not torch.equal(other["relu"]["values"], res["relu"]["values"])


def test_utilization_curve_edge_cases():
    u = snpfi.utilization_curve(torch.tensor([-2.0, -1.5, -1.75, -0.5, -1.0], dtype=torch.float64))
    assert torch.equal(u, torch.tensor([0.0, 0.5, 0.5, 1.0, 1.0], dtype=torch.float64))  # clipped, running max
    below = snpfi.utilization_curve(torch.tensor([-1.0, -3.0, -0.5], dtype=torch.float64))  # dips below U(0)
    assert torch.equal(below, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    flat = snpfi.utilization_curve(torch.full((4,), -0.3, dtype=torch.float64))  # the group changes nothing
    assert torch.equal(flat, torch.tensor([0.0, 1.0, 1.0, 1.0], dtype=torch.float64))


def test_keep_counts_is_the_smallest_size_reaching_tau():
    curves = {"a": torch.tensor([0.0, 0.2, 0.2, 0.7, 1.0], dtype=torch.float64),
              "b": torch.tensor([0.0, 0.9, 1.0], dtype=torch.float64)}
    for tau in (0.0, 0.1, 0.2, 0.5, 0.7, 0.95, 1.0, 1.5):
        want = {k: next((m for m in range(1, len(c)) if c[m] >= tau), len(c) - 1) for k, c in curves.items()}
        assert snpfi.keep_counts(curves, tau) == want, tau


def synthetic_curves(arch: str, seed: int) -> dict[str, torch.Tensor]:
    """Seeded noisy concave curves, one per group, normalised like the real ones."""
    gen = torch.Generator().manual_seed(seed)
    widths = models.default_widths(arch)
    curves = {}
    for g in models.channel_groups(arch):
        c = models.get_width(widths, g.width_key)
        m = torch.arange(c + 1, dtype=torch.float64) / c
        power = 0.3 + 3 * torch.rand(1, generator=gen, dtype=torch.float64)
        raw = 1 - (1 - m) ** power + 0.05 * torch.randn(c + 1, generator=gen, dtype=torch.float64)
        curves[g.name] = snpfi.utilization_curve(raw)
    return curves


def macs(arch, widths, shape):
    return counting.count_ops(models.build_model(arch, widths, shape[0], 10), shape)["macs"]


CHIP_RESNET56 = ["[0.]+[0.15]*2+[0.4]*27", "[0.]+[0.4]*2+[0.5]*9+[0.6]*9+[0.7]*9"]


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32)], ids=["digits", "cifar"])
@pytest.mark.parametrize("spec", CHIP_RESNET56, ids=["r1", "r2"])
def test_allocate_reaches_chip_resnet56_reductions(spec, shape):
    arch = "resnet56"
    widths = models.default_widths(arch)
    target = 1 - macs(arch, models.pruned_widths(arch, parse_sparsity(spec)), shape) / macs(arch, widths, shape)
    curves = synthetic_curves(arch, 0)
    counts, tau, reached = snpfi.allocate(arch, widths, curves, target, shape)
    assert abs(reached - target) <= 0.01, f"asked {target:.4f}, reached {reached:.4f}"
    new = models.default_widths(arch)
    for g in models.channel_groups(arch):
        assert 1 <= counts[g.name] <= models.get_width(widths, g.width_key)
        models.set_width(new, g.width_key, counts[g.name])
    assert reached == pytest.approx(1 - macs(arch, new, shape) / macs(arch, widths, shape), abs=1e-12)
    # every count lies between the pure threshold allocations around tau
    at_tau = snpfi.keep_counts(curves, tau)
    next_tau = min((v for c in curves.values() for v in c.tolist() if v > tau), default=math.inf)
    above = snpfi.keep_counts(curves, next_tau)
    assert all(at_tau[k] <= counts[k] <= above[k] for k in counts)


def test_allocate_more_reduction_keeps_fewer_channels_everywhere():
    arch, shape = "resnet56", (1, 8, 8)
    widths, curves = models.default_widths(arch), synthetic_curves(arch, 1)
    previous = None
    for target in (0.2, 0.4, 0.48, 0.6, 0.73, 0.85):
        counts, _, reached = snpfi.allocate(arch, widths, curves, target, shape)
        assert abs(reached - target) <= 0.01
        if previous is not None:
            assert all(counts[k] <= previous[k] for k in counts)
        previous = counts


def test_keep_indices_keeps_the_most_important_channels():
    importance = {"a": torch.tensor([0.1, -0.2, 0.5, 0.3], dtype=torch.float64)}
    assert snpfi.keep_indices(importance, {"a": 2})["a"].tolist() == [2, 3]


def test_permutations_come_in_antithetic_pairs():
    """Each row a permutation of range(C); rows 2j and 2j+1 are each other's reverse (README:
    "drawn in antithetic pairs"), so an odd count is refused; without pairs any count >= 1."""
    perms = snpfi.sample_permutations(7, 6, torch.Generator().manual_seed(0))
    assert perms.shape == (6, 7)
    for row in perms:
        assert sorted(row.tolist()) == list(range(7))
    for j in range(3):
        assert perms[2 * j + 1].tolist() == perms[2 * j].tolist()[::-1]
    assert len({tuple(r) for r in perms[::2].tolist()}) == 3  # the pairs themselves are distinct draws
    for bad in (3, 1, 0):
        with pytest.raises(ValueError, match="positive even number"):
            snpfi.sample_permutations(7, bad, torch.Generator().manual_seed(0))
    assert snpfi.sample_permutations(7, 3, torch.Generator().manual_seed(0), antithetic=False).shape == (3, 7)


def test_each_group_draws_its_own_permutations(tiny):
    """README: permutations "seeded per group": by the seed and the group's name, so groups of
    the same width never play the same permutations. The same channels under another name play
    other coalitions (other values), though the importances still telescope to V(all) - V(empty);
    under their own name the same ones."""
    import dataclasses

    model, x, y = tiny
    g = group("resnet20", "layer1.0.relu1")
    renamed = dataclasses.replace(g, name="the same channels", maps=g.carriers)
    res = snpfi.analyse(model, [g, renamed], x[:8], y[:8], permutations=2, seed=0, progress=False)
    a, b = res[g.name], res[renamed.name]
    assert not torch.equal(a["values"], b["values"])
    assert a["importance"].sum().item() == pytest.approx(b["importance"].sum().item(), abs=1e-9)
    assert a["importance"].sum().item() == pytest.approx((a["values"][0, -1] - a["values"][0, 0]).item(), abs=1e-9)
    again = snpfi.analyse(model, [g], x[:8], y[:8], permutations=2, seed=0, progress=False)
    assert torch.equal(again[g.name]["values"], a["values"])


def test_a_curve_flat_to_the_rounding_of_its_values_is_flat():
    """Mean log-probabilities of magnitude 1000 that move by 1e-10 (1e-13 of themselves: rounding,
    not the channels) are a flat curve: U(m) = 1 for m >= 1, as for an exactly flat one; a real
    change of the same size on values near 0 is normalised."""
    u = snpfi.utilization_curve(torch.tensor([-1000.0, -1000.0 + 5e-11, -1000.0 + 2e-11, -1000.0 + 1e-10],
                                             dtype=torch.float64))
    assert torch.equal(u, torch.tensor([0.0, 1.0, 1.0, 1.0], dtype=torch.float64))
    small = snpfi.utilization_curve(torch.tensor([0.0, 5e-11, 2e-11, 1e-10], dtype=torch.float64))
    assert small.tolist() == pytest.approx([0.0, 0.5, 0.5, 1.0])


@pytest.mark.parametrize("target", [0.0, 1.0, -0.1, 1.5])
def test_allocate_refuses_a_reduction_outside_0_1(target):
    with pytest.raises(ValueError, match=r"target_reduction must be in \(0, 1\)"):
        snpfi.allocate("resnet20", models.default_widths("resnet20"), {}, target, (1, 8, 8))


@pytest.mark.parametrize("fraction,want", [(0.25, 20), (0.75, 19)])
def test_allocate_takes_the_allocation_closest_to_the_request(fraction, want):
    """One flat stretch: layer2.0.relu1's curve is 0.2 from 1 to 31 channels (then 1), every
    other group's is 1 from its first channel. At tau = 0.2 every group keeps 1 channel; the next
    threshold gives layer2.0.relu1 all 32; between them it gains one channel at a time. With the
    request a quarter (or three quarters) of the way from the reduction at 20 channels to that
    at 19 (PyTorch's count), 20 (19) is the closer of the two around it, and is kept."""
    from torch.utils.flop_counter import FlopCounterMode

    arch, shape = "resnet20", (1, 8, 8)
    widths = models.default_widths(arch)
    name = "layer2.0.relu1"
    curves = {g.name: torch.tensor([0.0] + [1.0] * models.get_width(widths, g.width_key), dtype=torch.float64)
              for g in models.channel_groups(arch)}
    curves[name] = torch.tensor([0.0] + [0.2] * 31 + [1.0], dtype=torch.float64)
    key = group(arch, name).width_key

    def torch_reduction(m: int) -> float:
        w = models.default_widths(arch)
        for g in models.channel_groups(arch):
            models.set_width(w, g.width_key, m if g.name == name else 1)
        counted = []
        for ws in (widths, w):
            with FlopCounterMode(display=False) as fc:
                models.build_model(arch, ws, 1, 10).eval()(torch.zeros(1, *shape))
            counted.append(fc.get_total_flops())
        return 1 - counted[1] / counted[0]

    r19, r20 = torch_reduction(19), torch_reduction(20)
    assert r19 > r20
    target = r20 + fraction * (r19 - r20)
    counts, tau, reached = snpfi.allocate(arch, widths, curves, target, shape)
    assert counts[name] == want and all(k == 1 for g, k in counts.items() if g != name)
    assert reached == pytest.approx(torch_reduction(want), abs=1e-12) and tau == 0.2
    assert models.get_width(widths, key) == 32
