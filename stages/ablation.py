"""ablation: criterion, widths and recovery apart, on one baseline (--baseline), no training.

Every criterion's ranking x two widths (the setting's rates; SNPFI's allocation for the same
MACs) x four recoveries (none; BatchNorm re-estimated; least-squares refit; refit then
BatchNorm, SNPFI's order), at ablation.setting: top-1 on the test set of each pruned network
(prunelab/ablation.py). The BatchNorm images and the refit's calibration images are the prune
stage's. Writes results/metrics/b<baseline>/ablation.csv, which the report pairs across
baselines."""

from prunelab import numerics

numerics.prepare()  # first, before torch and numpy load: the variables engine.cpu_numerics sets

import copy
from pathlib import Path

from tqdm.auto import tqdm

from prunelab import ablation, checkpoint, config, counting, criteria, pipeline, recovery, surgery
from prunelab.criteria import snpfi
from prunelab.engine import evaluate, seed_everything


def main() -> None:
    params, _ = pipeline.experiment_stage(__doc__)
    paths, dev, setting = params["paths"], pipeline.device(params), params["ablation"]["setting"]
    base = pipeline.load_baseline(params)
    arch, widths, in_ch, classes = base["arch"], base["widths"], base["in_channels"], base["num_classes"]
    rates = config.setting_rates(params, setting)
    splits = pipeline.load_data(params)
    shape, test = pipeline.input_shape(splits), pipeline.test_loader(splits, params, dev)
    original = checkpoint.build(base).to(dev)
    baseline_macs = counting.count_ops(original, shape)["macs"]

    # every criterion's ranking: {criterion: {group: (C,) scores}}; random's first draw
    rankings, utilization = {}, None
    for c in params["prune"]["criteria"]:
        path = Path(paths["scores"]) / f"{c}.pt"
        keys = ("scores", "meta") + (("utilization",) if c in criteria.SHAPLEY_CRITERIA else ()) + (
            ("scores_per_seed",) if c in criteria.SEED_DRAWN else ())
        scored = checkpoint.torch_load(path, keys, "scores file")
        pipeline.check_made_from(scored["meta"], path, paths["baseline"])
        per_seed = scored.get("scores_per_seed")
        rankings[c] = per_seed[config.seeds(params)[0]] if per_seed else scored["scores"]
        utilization = scored.get("utilization", utilization)
    # SNPFI's widths for the MACs the setting's rates remove (needs SNPFI's utilization curves)
    counts = None
    if utilization is not None:
        counts, *_ = snpfi.allocate_like(arch, widths, utilization, rates, shape, in_ch, classes)

    # the prune stage's recovery images: the calibration batch (refit), 10 batches of 256 (BatchNorm)
    seed_everything(params["seed"])
    calibration, _ = pipeline.calibration_batch(splits, params, dev)  # (N, C, H, W)
    bn_batches = pipeline.FirstBatches(pipeline.train_loader(splits, 256, params["seed"], params, dev), 10)

    rows = []
    for ranking, scores in tqdm(rankings.items(), desc="ablation", unit="ranking"):
        for kind in ablation.WIDTHS:
            if kind == "snpfi" and counts is None:
                continue
            keep = (surgery.keep_indices(arch, widths, scores, rates) if kind == "rates"
                    else snpfi.keep_indices(scores, counts))
            pruned, _ = surgery.prune(original, arch, widths, keep, in_ch, classes)
            pruned.to(dev)
            refit = copy.deepcopy(pruned)
            recovery.refit_consumers(original, refit, arch, keep, calibration, params["snpfi"]["ridge"])
            recovered = {"none": pruned, "refit": refit,
                         "bn": recovery.recalibrate_batchnorm(copy.deepcopy(pruned), bn_batches, dev),
                         "refit+bn": recovery.recalibrate_batchnorm(copy.deepcopy(refit), bn_batches, dev)}
            counted = counting.count(pruned, shape)
            for name in ablation.RECOVERIES:
                top1 = evaluate(recovered[name], test, dev, **pipeline.eval_accel(params))["top1"]
                rows.append({"ranking": ranking, "widths": kind, "recovery": name, "params": counted["params"],
                             "macs": counted["macs"], "macs_reduction_pct": counting.reduction(baseline_macs, counted["macs"]),
                             "top1": top1})
    ablation.write_csv(Path(paths["metrics"]) / "ablation.csv", rows)


if __name__ == "__main__":
    config.run_stage(main)
