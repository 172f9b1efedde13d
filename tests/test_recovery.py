import copy

import pytest
import torch
import torch.nn.functional as F

from prunelab import counting, models, recovery, surgery
from prunelab.criteria import snpfi
from prunelab.data import Loader, load_dataset
from prunelab.engine import Recipe, evaluate, fit
from prunelab.sparsity import parse_sparsity

CPU = torch.device("cpu")


def naive_patches(x: torch.Tensor, k: int, stride: int, pad: int) -> torch.Tensor:
    """(N, C, H, W) -> (N*Ho*Wo, C*k*k): one row per output position, by explicit slicing."""
    xp = F.pad(x, (pad, pad, pad, pad))
    n, c, h, w = xp.shape
    rows = []
    for i in range(n):
        for r in range(0, h - k + 1, stride):
            for s in range(0, w - k + 1, stride):
                rows.append(xp[i, :, r:r + k, s:s + k].reshape(-1))
    return torch.stack(rows)


def test_conv_least_squares_matches_lstsq():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 5, 3, stride=2, padding=1, bias=True).double()
    x, y = torch.randn(4, 3, 9, 9, dtype=torch.float64), torch.randn(4, 5, 5, 5, dtype=torch.float64)
    xtx, xty, yty = recovery.normal_equations(conv, x, y)
    w = recovery.solve(xtx, xty, ridge=0.0, bias=True)  # (3*3*3 + 1, 5)

    a = torch.cat([naive_patches(x, 3, 2, 1), torch.ones(100, 1, dtype=torch.float64)], 1)  # (4*5*5, 28)
    t = y.permute(0, 2, 3, 1).reshape(-1, 5)  # (100, 5): row order = naive_patches'
    want = torch.linalg.lstsq(a, t).solution
    assert torch.allclose(w, want, atol=1e-10), f"{(w - want).abs().max()}"
    assert yty == pytest.approx(t.square().sum().item())
    assert recovery.residual(xtx, xty, yty, w) == pytest.approx(((a @ want - t).square().sum() / yty).item())
    # loading the solution into the conv reproduces the least-squares prediction
    recovery.load_matrix(conv, w)
    with torch.no_grad():
        assert torch.allclose(conv(x).permute(0, 2, 3, 1).reshape(-1, 5), a @ want, atol=1e-10)


def test_linear_least_squares_with_ridge_matches_the_closed_form():
    torch.manual_seed(1)
    lin = torch.nn.Linear(6, 3, bias=False).double()
    x, y = torch.randn(20, 6, dtype=torch.float64), torch.randn(20, 3, dtype=torch.float64)
    xtx, xty, _ = recovery.normal_equations(lin, x, y)
    w = recovery.solve(xtx, xty, ridge=0.1, bias=False)
    lam = 0.1 * (x.T @ x).trace() / 6
    assert torch.allclose(w, torch.linalg.solve(x.T @ x + lam * torch.eye(6, dtype=torch.float64), x.T @ y), atol=1e-12)


def test_normal_equations_do_not_depend_on_chunking(monkeypatch):
    torch.manual_seed(2)
    conv = torch.nn.Conv2d(4, 6, 3, padding=1, bias=False)
    x, y = torch.randn(5, 4, 6, 6), torch.randn(5, 6, 6, 6)
    whole = recovery.normal_equations(conv, x, y)
    monkeypatch.setattr(recovery, "MAX_ELEMENTS", 1)  # one image per chunk
    chunked = recovery.normal_equations(conv, x, y)
    assert torch.allclose(whole[0], chunked[0]) and torch.allclose(whole[1], chunked[1])
    assert whole[2] == pytest.approx(chunked[2])


def test_recalibrate_batchnorm_is_the_average_over_the_batches():
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.BatchNorm2d(4, momentum=0.3)).eval()
    batches = [(torch.randn(8, 2, 6, 6), torch.zeros(8)) for _ in range(3)]
    recovery.recalibrate_batchnorm(model, batches, CPU)
    bn = model[1]
    with torch.no_grad():
        outs = [model[0](x) for x, _ in batches]  # (8, 4, 4, 4) each
    mean = torch.stack([o.mean(dim=(0, 2, 3)) for o in outs]).mean(0)
    var = torch.stack([o.var(dim=(0, 2, 3)) for o in outs]).mean(0)  # unbiased per batch, as BN keeps
    assert torch.allclose(bn.running_mean, mean, atol=1e-6) and torch.allclose(bn.running_var, var, atol=1e-5)
    assert bn.momentum == 0.3 and not model.training
    with pytest.raises(ValueError, match="no batches"):
        recovery.recalibrate_batchnorm(model, [], CPU)


ARCH = "resnet20"
ROW2_LIKE = "[0.]+[0.4]*2+[0.5]*3+[0.6]*3+[0.7]*3"  # CHIP's second ResNet-56 row, for ResNet-20


@pytest.fixture(scope="module")
def pruned_by_snpfi(tmp_path_factory):
    """A ResNet-20 trained 4 epochs on the digits, pruned by SNPFI at the row-2-like MACs reduction.

    Returns (splits, original, pruned, keep, calibration images).
    """
    torch.manual_seed(0)
    s = load_dataset("digits", tmp_path_factory.mktemp("data"), False, 0, 8, 0.2)
    model = models.build_model(ARCH, in_channels=1)
    fit(model, s.train_loader(64, 0), s.test_loader(512), Recipe(epochs=4, lr=0.1), CPU)
    model.eval()
    x, y = next(iter(Loader(s.x_train, s.y_train, s.mean, s.std, 256, shuffle=True, seed=1)))  # no augmentation
    groups = models.channel_groups(ARCH)
    res = snpfi.analyse(model, groups, x[:64], y[:64], permutations=2, progress=False)
    widths = models.default_widths(ARCH)
    shape = (1, 8, 8)
    target = 1 - (counting.count_ops(models.build_model(ARCH, models.pruned_widths(ARCH, parse_sparsity(ROW2_LIKE)), 1),
                                     shape)["macs"] / counting.count_ops(model, shape)["macs"])
    counts, _, reached = snpfi.allocate(ARCH, widths, {k: r["utilization"] for k, r in res.items()}, target, shape)
    assert abs(reached - target) <= 0.01
    keep = snpfi.keep_indices({k: r["importance"] for k, r in res.items()}, counts)
    pruned, _ = surgery.prune(model, ARCH, widths, keep, 1, 10)
    return s, model, pruned.eval(), keep, x


def test_refit_lowers_every_consumers_reconstruction_error(pruned_by_snpfi):
    s, original, plain, keep, x = pruned_by_snpfi
    refit = copy.deepcopy(plain)
    report = recovery.refit_consumers(original, refit, ARCH, keep, x)
    groups, widths = models.channel_groups(ARCH), models.default_widths(ARCH)
    pruned_groups = [g for g in groups if len(keep[g.name]) < models.get_width(widths, g.width_key)]
    assert set(report) == {c for g in pruned_groups for c in g.consumers}
    out_keep = {p: keep[g.name] for g in groups for p in g.producers}

    # independently: each consumer's input in the refit network, its original output, and the
    # errors of the plain-pruned and the refit weights on that same input
    seen = {}
    handles = [dict(refit.named_modules())[c].register_forward_pre_hook(
        lambda _m, args, c=c: seen.__setitem__(("in", c), args[0])) for c in report]
    handles += [dict(original.named_modules())[c].register_forward_hook(
        lambda _m, _i, out, c=c: seen.__setitem__(("out", c), out)) for c in report]
    with torch.no_grad():
        refit(x)
        original(x)
    for h in handles:
        h.remove()
    plain_modules, refit_modules = dict(plain.named_modules()), dict(refit.named_modules())
    for c in report:
        target = seen[("out", c)]
        if c in out_keep:
            target = target[:, out_keep[c]]
        inp = seen[("in", c)]
        errors = {}
        for label, conv in (("before", plain_modules[c]), ("after", refit_modules[c])):
            with torch.no_grad():
                errors[label] = ((conv(inp) - target).square().sum() / target.square().sum()).item()
        assert errors["after"] < errors["before"], f"{c}: {errors}"
        # the least-squares optimum for this input (lstsq on the unfolded patches, float64): the
        # refit, ridge 1e-3 of the mean diagonal, closes at least 99% of the gap to it
        conv = refit_modules[c]
        a = naive_patches(inp.double(), conv.kernel_size[0], conv.stride[0], conv.padding[0])  # (N*Ho*Wo, Cin*k*k)
        if conv.bias is not None:
            a = torch.cat([a, torch.ones(len(a), 1, dtype=a.dtype)], 1)
        t = target.double().permute(0, 2, 3, 1).reshape(len(a), -1)  # (N*Ho*Wo, Cout), rows as a's
        best = ((a @ torch.linalg.lstsq(a, t).solution - t).square().sum() / t.square().sum()).item()
        assert errors["after"] - best <= 0.01 * (errors["before"] - best), f"{c}: {errors}, optimum {best}"
        assert report[c]["before"] == pytest.approx(errors["before"], rel=1e-3), c
        assert report[c]["after"] == pytest.approx(errors["after"], rel=1e-3), c


def test_refit_and_bn_recalibration_raise_accuracy_before_fine_tuning(pruned_by_snpfi):
    s, original, plain, keep, x = pruned_by_snpfi
    test = s.test_loader(512)
    plain_top1 = evaluate(plain, test, CPU)["top1"]
    recovered = copy.deepcopy(plain)
    recovery.refit_consumers(original, recovered, ARCH, keep, x)
    refit_top1 = evaluate(recovered, test, CPU)["top1"]
    recovery.recalibrate_batchnorm(recovered, [b for _, b in zip(range(4), s.train_loader(128, 2))], CPU)
    both_top1 = evaluate(recovered, test, CPU)["top1"]
    # plain pruning at this sparsity is near chance (10 classes: 10%); the recovery takes it far
    # above: at least 75% after the refit, and after the refit + BatchNorm re-estimation (measured
    # 11.7, 92.5 and 92.2 on our CPU: margins of 8 and 17 points for other machines' rounding)
    assert plain_top1 <= 20 and refit_top1 >= 75 and both_top1 >= 75, (plain_top1, refit_top1, both_top1)
    assert not recovered.training
