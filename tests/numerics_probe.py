"""The float results portable CPU numerics must reproduce on any x86-64 CPU with AVX2, as md5s.

    python tests/numerics_probe.py PARAMS_FILE [train|prune ...]

PARAMS_FILE names engine.cpu_numerics (prepared before torch loads, verified once it has, as a
stage does). tests/test_numerics.py runs it natively and under qemu-x86_64 -cpu Haswell (an
Intel CPU without AVX-512) and compares what it prints: one JSON object {part: md5}.

  train  ResNet-20 on digits (8x8): a few SGD steps of engine.train_step (convolutions,
         BatchNorm, the linear layer's GEMM, cross-entropy, the optimiser), then the weights
  prune  from a baseline trained as above: CHIP's scores (an SVD per image and layer) and
         HRank's (matrix ranks) on the training images, SNPFI's Shapley game (on the first
         GAME_GROUPS channel groups), the networks CHIP and SNPFI prune to, SNPFI's least-squares
         refit and BatchNorm re-estimation, and the pruned networks' logits on the test images

Sized to take about two minutes under emulation (most of it importing torch).
"""

import sys

sys.path.insert(0, __file__.rsplit("/tests/", 1)[0])
from prunelab import numerics  # noqa: E402

mode = numerics.read_mode(sys.argv[1])
numerics.prepare(sys.argv[1])

import hashlib  # noqa: E402
import json  # noqa: E402

import torch  # noqa: E402

from prunelab import criteria, data, models, recovery, surgery  # noqa: E402
from prunelab.criteria import snpfi  # noqa: E402
from prunelab.engine import Accel, Recipe, make_optimizer, seed_everything, train_step  # noqa: E402
from prunelab.features import channel_statistics  # noqa: E402

STEPS, IMAGES = 6, 32
GAME_GROUPS = 4  # SNPFI's game on the first few channel groups: its arithmetic, in minutes not tens of them emulated
RATES = [0.0, 0.4, 0.4] + [0.5] * 9  # ResNet-20: stem, two stage outputs, nine blocks' inner channels


def md5(*tensors: torch.Tensor) -> str:
    h = hashlib.md5()
    for t in tensors:
        h.update(t.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def trained(splits: data.Splits) -> torch.nn.Module:
    seed_everything(0)
    model = models.build_model("resnet20", None, splits.in_channels, splits.num_classes)
    opt = make_optimizer(model, Recipe(epochs=1, lr=0.1))
    model.train()
    for step, (x, y) in zip(range(STEPS), splits.train_loader(64, 0)):
        train_step(model, opt, x, y, 0.1, Accel(), torch.device("cpu"))
    return model.eval()


def main() -> None:
    print(json.dumps(numerics.verify(mode)), file=sys.stderr)
    splits = data.load_dataset("digits", "data", False, 0, 8, 0.2)
    model = trained(splits)
    out = {"train": md5(*model.state_dict().values())}
    if "prune" in sys.argv[2:]:
        groups = models.channel_groups("resnet20")
        widths = models.default_widths("resnet20")
        images = next(iter(splits.train_loader(IMAGES, 1)))  # (32, 1, 8, 8), (32,)
        stats = channel_statistics(model, [images], [g.name for g in groups], criteria.FEATURE_STATISTICS, IMAGES,
                                   torch.device("cpu"), progress=False)
        chip = {g: s["chip"] for g, s in stats.items()}  # (C,) float64: nuclear norms' drops
        out["scores"] = md5(*chip.values(), *(s["hrank"] for s in stats.values()))
        games = snpfi.analyse(model, groups[:GAME_GROUPS], *images, permutations=2, seed=0, progress=False)
        out["snpfi_game"] = md5(*(g["importance"] for g in games.values()), *(g["utilization"] for g in games.values()))
        keep = surgery.keep_indices("resnet20", widths, chip, RATES)
        pruned, _ = surgery.prune(model, "resnet20", widths, keep, splits.in_channels, splits.num_classes)
        counts = {g: len(k) for g, k in keep.items() if g in games}  # SNPFI's choice where it played, CHIP's elsewhere
        snpfi_keep = {**keep, **snpfi.keep_indices({g: games[g]["importance"] for g in counts}, counts)}
        refit, _ = surgery.prune(model, "resnet20", widths, snpfi_keep, splits.in_channels, splits.num_classes)
        recovery.refit_consumers(model, refit, "resnet20", snpfi_keep, images[0], ridge=1e-3)
        recovery.recalibrate_batchnorm(refit, [images], "cpu")
        x_test, _ = next(iter(splits.test_loader(64)))  # (64, 1, 8, 8), normalised
        with torch.no_grad():
            logits = [m.eval()(x_test) for m in (pruned, refit)]  # (64, 10) each
        out["pruned"] = md5(*pruned.state_dict().values(), *refit.state_dict().values(), *logits)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
