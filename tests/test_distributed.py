"""DDP on the CPU (Gloo, 2 processes started by torchrun) against one process on the same
global batches.

Run as a script under torchrun, this file is the worker: every rank trains ResNet-20 on small
random images through engine.fit and saves what it ended with to <out>/rank<r>.pt. The tests
start it once (a module fixture) and compare with one process training in the test itself.

In float64: in float32 the two sides' convolutions round differently (a batch of 16 against two
of 8), and a pre-activation within ~1e-7 of zero then flips its ReLU, a 1e-3 gradient change
that training amplifies; float64 leaves only the sync-BN difference to detect.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from prunelab import distributed, models
from prunelab.data import Loader
from prunelab.engine import Recipe, fit, seed_everything

ROOT = Path(__file__).resolve().parents[1]
RECIPE = Recipe(epochs=2, lr=0.05, momentum=0.9, weight_decay=5e-4, warmup_epochs=0.5)
CPU = torch.device("cpu")


def loaders() -> tuple[Loader, Loader]:
    """37 training images in global batches of 16 (16, 16, 5: an uneven last batch, 3 + 2 over
    two ranks), 21 test images in batches of 8; 16x16, cropped and flipped."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (58, 3, 16, 16), dtype=torch.uint8, generator=gen)
    y = torch.randint(0, 10, (58,), generator=gen)
    mean, std = torch.full((3,), 0.5), torch.full((3,), 0.25)
    return (Loader(x[:37], y[:37], mean, std, 16, shuffle=True, augment={"shift": 2, "flip": True}, seed=0),
            Loader(x[37:], y[37:], mean, std, 8))


class Float64(torch.nn.Module):
    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.double())


def train(sync_bn: bool, train_loader=None, **kwargs) -> tuple[torch.nn.Module, dict]:
    seed_everything(0)  # every rank (and the reference) starts from the same weights
    model = Float64(models.build_model("resnet20"))
    default_train, test = loaders()
    final = fit(model, train_loader or default_train, test, RECIPE, CPU, sync_bn=sync_bn, **kwargs)
    return model, final


class Unshardable:
    """A loader without shard(): fit must cut each global batch after loading it."""

    def __init__(self, loader):
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)

    def __iter__(self):
        return iter(self.loader)


def worker(out: Path) -> None:
    torch.set_num_threads(1)
    device = distributed.init(CPU)
    assert device == CPU and distributed.world_size() == 2
    rank = distributed.rank()
    epochs_seen = []

    def save_state(state: dict) -> None:
        torch.save(state, out / f"state_rank{rank}_epoch{state['epoch']}.pt")

    synced, synced_final = train(True, on_epoch_end=lambda e, m: epochs_seen.append(e), save_state=save_state)
    plain, plain_final = train(False)
    distributed.barrier()  # rank 0's epoch-0 state is on disk for every rank to resume from
    state = torch.load(out / "state_rank0_epoch0.pt", weights_only=True)
    resumed, resumed_final = train(True, state=state)
    sliced, sliced_final = train(True, Unshardable(loaders()[0]))
    torch.save({
        "synced": synced.state_dict(), "synced_final": synced_final, "epochs_seen": epochs_seen,
        "bn_types": sorted({type(m).__name__ for m in synced.modules() if "BatchNorm" in type(m).__name__}),
        "plain": plain.state_dict(), "plain_final": plain_final,
        "resumed": resumed.state_dict(), "resumed_final": resumed_final,
        "sliced": sliced.state_dict(), "sliced_final": sliced_final,
        "is_main": distributed.is_main(),
    }, out / f"rank{rank}.pt")
    distributed.cleanup()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> tuple[list[dict], Path]:
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    if sys.platform == "linux":
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")  # loopback: no dependence on the host's network
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        __file__, str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    return [torch.load(out / f"rank{i}.pt", weights_only=True) for i in range(2)], out


@pytest.fixture(scope="module")
def single() -> tuple[dict, dict]:
    """One process on the whole of every global batch."""
    torch.set_num_threads(1)
    model, final = train(sync_bn=False)
    return model.state_dict(), final


def max_diff(a: dict, b: dict) -> tuple[float, str]:
    assert list(a) == list(b)
    return max(((a[k].double() - b[k].double()).abs().max().item(), k) for k in a)


def test_sync_bn_ddp_equals_one_process_on_the_global_batches(ranks, single):
    (r0, r1), _ = ranks
    want_state, want_final = single
    for r in (r0, r1):
        diff, key = max_diff(r["synced"], want_state)  # weights and BN running statistics
        assert diff < 1e-4, f"{key}: {diff}"
        assert all(torch.equal(r["synced"][k], want_state[k]) for k in want_state if k.endswith("num_batches_tracked"))
        assert r["synced_final"] == pytest.approx(want_final, abs=1e-4)
    assert r0["synced_final"] == r1["synced_final"]  # metrics reduced over ranks: the same numbers everywhere


def test_without_sync_bn_each_rank_normalises_by_its_own_slice(ranks, single):
    (r0, r1), _ = ranks
    weights = [k for k in single[0] if not k.split(".")[-1].startswith(("running_", "num_batches"))]
    diff, key = max_diff({k: r0["plain"][k] for k in weights}, {k: single[0][k] for k in weights})
    assert diff > 1e-3, f"plain DDP should train other weights than one process on the global batch ({key}: {diff})"
    diff, key = max_diff(r0["plain"], single[0])  # and its running statistics come from rank 0's slices
    assert diff > 1e-3, f"{key}: {diff}"
    assert max_diff(r0["plain"], r1["plain"])[0] == 0  # DDP still keeps the ranks' weights identical
    assert r0["plain_final"] == r1["plain_final"]


def test_only_rank_0_writes_and_the_model_comes_back_plain(ranks):
    (r0, r1), out = ranks
    assert (r0["is_main"], r1["is_main"]) == (True, False)
    assert r0["epochs_seen"] == [0, 1] and r1["epochs_seen"] == []
    assert sorted(p.name for p in out.glob("state_*")) == ["state_rank0_epoch0.pt", "state_rank0_epoch1.pt"]
    saved = torch.load(out / "state_rank0_epoch1.pt", weights_only=True)["model"]
    assert list(saved) == list(Float64(models.build_model("resnet20")).state_dict())  # no "module." prefix
    assert r0["bn_types"] == r1["bn_types"] == ["BatchNorm2d"]


def test_ddp_resumed_run_ends_where_the_uninterrupted_one_ends(ranks):
    for r in ranks[0]:
        assert max_diff(r["resumed"], r["synced"])[0] < 1e-6 and r["resumed_final"] == pytest.approx(r["synced_final"])


def test_a_loader_without_shard_is_cut_after_loading(ranks):
    for r in ranks[0]:
        assert max_diff(r["sliced"], r["synced"])[0] < 1e-6 and r["sliced_final"] == pytest.approx(r["synced_final"])


@pytest.mark.parametrize("device, sync_type", [("cpu", distributed.CPUSyncBatchNorm), ("cuda", torch.nn.SyncBatchNorm)])
def test_sync_batchnorm_conversion_keeps_the_tensors_and_reverts_exactly(device, sync_type):
    model = models.build_model("resnet20").train()
    before = model.state_dict(keep_vars=True)
    distributed.convert_sync_batchnorm(model, torch.device(device))  # builds modules only: no GPU needed
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert len(bns) == 19 and {type(m) for m in bns} == {sync_type} and all(m.training for m in bns)
    converted = model.state_dict(keep_vars=True)
    for state in (converted, distributed.revert_sync_batchnorm(model).state_dict(keep_vars=True)):
        assert list(state) == list(before) and all(state[k] is before[k] for k in before)  # the same tensors
    assert {type(m) for m in model.modules() if "BatchNorm" in type(m).__name__} == {torch.nn.BatchNorm2d}


def test_one_process_is_a_world_of_one():
    train_loader = loaders()[0]
    assert not distributed.launched() and not distributed.active()
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    assert distributed.init(CPU) == CPU and distributed.shard_loader(train_loader, drop_small=True) is train_loader
    distributed.barrier()
    t = torch.ones(2)
    assert distributed.all_reduce_sum(t) is t and t.tolist() == [1, 1]
    with pytest.raises(ValueError, match="batch size 16 is smaller than the 32 processes"):
        train_loader.shard(0, 32)


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
