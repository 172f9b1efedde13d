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
from pathlib import Path

from prunelab import checkpoint, config, counting, criteria, pipeline, recovery, significance, surgery
from prunelab.criteria import snpfi
from prunelab.engine import evaluate, seed_everything
from prunelab.sparsity import compact, is_auto


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
    pruned: dict[int, tuple] = {}  # id(a seed's scores) -> (model, widths, keep, metrics, (N,) bool): once per draw
    for seed in seeds:
        if id(scores[seed]) in pruned:
            continue
        if shapley:
            keep = snpfi.keep_indices(scores[seed], counts)
        else:
            keep = surgery.keep_indices(arch, widths, scores[seed], rates)
        model, new_widths = surgery.prune(original, arch, widths, keep, base["in_channels"], base["num_classes"])
        own: dict = {}
        if shapley:
            own["top1_before_recovery"] = evaluate(model.to(dev), test, dev, **pipeline.eval_accel(params))["top1"]
            seed_everything(params["seed"])
            images, _ = pipeline.calibration_batch(splits, params, dev)
            recovery.refit_consumers(original.to(dev), model, arch, keep, images, params["snpfi"]["ridge"])
            own["top1_after_refit"] = evaluate(model, test, dev, **pipeline.eval_accel(params))["top1"]
            bn_batches = pipeline.FirstBatches(pipeline.train_loader(splits, 256, params["seed"], params, dev), 10)
            recovery.recalibrate_batchnorm(model, bn_batches, dev)  # up to 2,560 training images
        before, hits = significance.evaluate(model.to(dev), test, dev, **pipeline.eval_accel(params))  # (N,) bool
        own.update(top1_before_finetune=before["top1"], loss_before_finetune=before["loss"])
        pruned[id(scores[seed])] = (model, new_widths, keep, own, hits)
    per_seed = [pruned[id(scores[seed])] for seed in seeds]
    if len(seeds) == 1:
        metrics.update(per_seed[0][3])
    else:  # means over the seeds' pruned networks, and each seed's top-1
        for key in per_seed[0][3]:
            metrics[key] = statistics.fmean(own[key] for _, _, _, own, _ in per_seed)
        metrics.update(seeds=" ".join(map(str, seeds)), top1_before_finetune_per_seed=" ".join(
            f"{own['top1_before_finetune']:.2f}" for _, _, _, own, _ in per_seed))
    # which test images it gets right (one string per seed when there are seeds): the report pairs
    # criteria image by image before fine-tuning; counts: every draw keeps the same widths
    metrics.update(test_images=len(per_seed[0][4]), **counting.count(per_seed[0][0], shape),
                   test_correct_before_finetune=" ".join(significance.encode(hits) for *_, hits in per_seed))
    for seed, (model, new_widths, keep, _, _) in zip(seeds, per_seed):
        checkpoint.save(config.pruned_file(params, net, seed), model, arch, new_widths, base["in_channels"],
                        base["num_classes"], meta={"keep": {k: v.tolist() for k, v in keep.items()}, **tags,
                                                   "numerics": pipeline.numerics_record(params)})
    metrics["numerics"] = pipeline.numerics_record(params)
    pipeline.write_json(net.file(Path(paths["metrics"]) / "prune", ".json"), metrics)


if __name__ == "__main__":
    config.run_stage(main)
