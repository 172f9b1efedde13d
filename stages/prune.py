"""prune: keep each group's highest-scoring channels; physically remove the rest (weights, BN
statistics and consumers' inputs transferred); evaluate before fine-tuning (top-1, and which
test images the pruned network gets right). One pruned network per fine-tuning seed: a seed-drawn
criterion (random) prunes each seed's own draw, the others the same network.

Widths: the setting's rates (for an auto: setting, those the sensitivity stage picked), except for
snpfi, which picks each group's width from its utilization curve for the setting's MACs
reduction, then recovers without training (least-squares refit of every consumer, BatchNorm
statistics re-estimated)."""

from prunelab import numerics

numerics.prepare()  # first, before torch and numpy load: the variables engine.cpu_numerics sets

import statistics
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import nn

from prunelab import checkpoint, config, correctness, counting, criteria, pipeline, recovery, surgery
from prunelab.criteria import snpfi
from prunelab.engine import evaluate, seed_everything
from prunelab.sparsity import compact, is_auto


@dataclass
class Pruned:
    """One pruned network: the model, its widths, the channels each group kept, what it scored
    before fine-tuning (top1_before_finetune, loss_before_finetune; SNPFI's also before its
    recovery and after its refit) and which test images it gets right ((N,) bool)."""
    model: nn.Module
    widths: dict
    keep: dict
    metrics: dict = field(default_factory=dict)
    correct: np.ndarray | None = None


def main() -> None:
    params, net = pipeline.network_stage(__doc__)
    paths, dev = params["paths"], pipeline.device(params)
    base = pipeline.load_baseline(params)
    arch, widths, rates = base["arch"], base["widths"], config.setting_rates(params, net.setting)
    shapley = net.criterion in criteria.SHAPLEY_CRITERIA
    keys = ("scores", "meta", "utilization") if shapley else ("scores", "meta")
    if net.criterion in criteria.SEED_DRAWN:
        keys += ("scores_per_seed",)
    scored = checkpoint.torch_load(Path(paths["scores"]) / f"{net.criterion}.pt", keys, "scores file")
    pipeline.check_made_from(scored["meta"], Path(paths["scores"]) / f"{net.criterion}.pt", paths["baseline"])
    seeds = config.seeds(params)
    # {seed: {group: (C,) scores}}: a seed-drawn criterion's own draw per seed, else the one scoring
    scores = scored.get("scores_per_seed") or dict.fromkeys(seeds, scored["scores"])
    splits = pipeline.load_data(params)
    shape, test = pipeline.input_shape(splits), pipeline.test_loader(splits, params, dev)
    original = checkpoint.build(base)
    metrics: dict = {"rates": compact(rates)} if is_auto(net.sparsity) else {}
    if shapley:  # SNPFI's own per-group widths, for the MACs reduction the setting's rates give
        counts, tau, target, reached = snpfi.allocate_like(arch, widths, scored["utilization"], rates, shape,
                                                           base["in_channels"], base["num_classes"])
        metrics.update(target_macs_reduction_pct=100 * target, reached_macs_reduction_pct=100 * reached, tau=tau)
    tags = {"criterion": net.criterion, "setting": net.setting, "sparsity": net.sparsity}
    # one network per distinct draw: the seeds of a criterion that does not draw share its one network
    draws: list[tuple[dict, Pruned]] = []  # (a draw's scores, the network pruned from it)
    for seed in seeds:
        if any(drawn is scores[seed] for drawn, _ in draws):
            continue
        if shapley:
            keep = snpfi.keep_indices(scores[seed], counts)
        else:
            keep = surgery.keep_indices(arch, widths, scores[seed], rates)
        model, new_widths = surgery.prune(original, arch, widths, keep, base["in_channels"], base["num_classes"])
        net_pruned = Pruned(model, new_widths, keep)
        if shapley:
            net_pruned.metrics["top1_before_recovery"] = evaluate(model.to(dev), test, dev, **pipeline.eval_accel(params))["top1"]
            seed_everything(params["seed"])
            images, _ = pipeline.calibration_batch(splits, params, dev)
            recovery.refit_consumers(original.to(dev), model, arch, keep, images, params["snpfi"]["ridge"])
            net_pruned.metrics["top1_after_refit"] = evaluate(model, test, dev, **pipeline.eval_accel(params))["top1"]
            bn_batches = pipeline.FirstBatches(pipeline.train_loader(splits, 256, params["seed"], params, dev), 10)
            recovery.recalibrate_batchnorm(model, bn_batches, dev)  # up to 2,560 training images
        before, net_pruned.correct = correctness.evaluate(model.to(dev), test, dev, **pipeline.eval_accel(params))
        net_pruned.metrics.update(top1_before_finetune=before["top1"], loss_before_finetune=before["loss"])
        draws.append((scores[seed], net_pruned))
    per_seed = [next(p for drawn, p in draws if drawn is scores[seed]) for seed in seeds]  # the network seed S starts from
    if len(seeds) == 1:
        metrics.update(per_seed[0].metrics)
    else:  # means over the seeds' pruned networks, and each seed's top-1
        for key in per_seed[0].metrics:
            metrics[key] = statistics.fmean(p.metrics[key] for p in per_seed)
        metrics.update(seeds=" ".join(map(str, seeds)), top1_before_finetune_per_seed=" ".join(
            f"{p.metrics['top1_before_finetune']:.2f}" for p in per_seed))
    # which test images it gets right (one string per seed when there are seeds): the report pairs
    # criteria image by image before fine-tuning; counts: every draw keeps the same widths
    metrics.update(test_images=len(per_seed[0].correct), **counting.count(per_seed[0].model, shape),
                   test_correct_before_finetune=" ".join(correctness.encode(p.correct) for p in per_seed))
    for seed, p in zip(seeds, per_seed):
        checkpoint.save(config.pruned_file(params, net, seed), p.model, arch, p.widths, base["in_channels"],
                        base["num_classes"], meta={"keep": {k: v.tolist() for k, v in p.keep.items()}, **tags,
                                                   "numerics": pipeline.numerics_record(params)})
    metrics["numerics"] = pipeline.numerics_record(params)
    pipeline.write_json(net.file(Path(paths["metrics"]) / "prune", ".json"), metrics)


if __name__ == "__main__":
    config.run_stage(main)
