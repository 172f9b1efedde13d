"""sweep: top-1 against the MACs removed, for every criterion at a grid of pruning ratios
(prunelab/sweep.py: the schemes), without fine-tuning: straight after pruning, and after
BatchNorm statistics are re-estimated on sweep.bn_images training images (the same images for
every network); after sweep.finetune_epochs of the fine-tuning recipe too, when that is above 0.
Random prunes each of `seeds`' draws, plotted as their mean and range. SNPFI picks its own widths
for the MACs reduction the scheme's rates give and recovers as in the prune stage (least-squares
refit: its "straight after pruning"). On one baseline, sweep.baseline (dvc.yaml passes it as
--baseline): a plot's worth of networks per baseline would triple the cost and say little more.
Writes results/sweep.csv (a DVC plot) and sweep.png."""

from prunelab import numerics

numerics.prepare()  # first, before torch and numpy load: the variables engine.cpu_numerics sets

import json
import math
from pathlib import Path

from tqdm.auto import tqdm

from prunelab import checkpoint, config, counting, criteria, pipeline, recovery, surgery, sweep
from prunelab.criteria import snpfi
from prunelab.engine import evaluate, fit, seed_everything
from prunelab.report import DATA_NAMES, MODEL_NAMES


def main() -> None:
    params, _ = pipeline.experiment_stage(__doc__)
    paths, sw, dev = params["paths"], params["sweep"], pipeline.device(params)
    base = pipeline.load_baseline(params)
    arch, widths, in_ch, classes = base["arch"], base["widths"], base["in_channels"], base["num_classes"]
    splits = pipeline.load_data(params)
    shape, test = pipeline.input_shape(splits), pipeline.test_loader(splits, params, dev)
    original = checkpoint.build(base)
    baseline_macs = counting.count_ops(original, shape)["macs"]
    seeds = config.seeds(params)
    # {criterion: {seed: {group: (C,) scores}}}: random's own draw per seed, the others' one scoring
    draws = {}
    for c in params["prune"]["criteria"]:
        keys = ("scores", "meta") + (("utilization",) if c in criteria.SHAPLEY_CRITERIA else ()) + (
            ("scores_per_seed",) if c in criteria.SEED_DRAWN else ())
        scored = checkpoint.torch_load(Path(paths["scores"]) / f"{c}.pt", keys, "scores file")
        pipeline.check_made_from(scored["meta"], Path(paths["scores"]) / f"{c}.pt", paths["baseline"])
        draws[c] = (scored.get("scores_per_seed") or {seeds[0]: scored["scores"]}, scored.get("utilization"))
    # BatchNorm re-estimation: the first sweep.bn_images images of the seeded training order, in
    # batches of up to 256 (the prune stage's recalibration, the same batches for every network)
    bn_batch = min(256, sw["bn_images"])
    bn_batches = pipeline.FirstBatches(pipeline.train_loader(splits, bn_batch, params["seed"], params, dev),
                                       math.ceil(sw["bn_images"] / bn_batch))
    if any(c in criteria.SHAPLEY_CRITERIA for c in draws):  # SNPFI's refit: its calibration images, read once
        images, _ = pipeline.calibration_batch(splits, params, dev)  # (N, C, H, W)
    grid = [(s, r, c, seed) for s in sw["schemes"] for r in sw["ratios"] for c in draws for seed in draws[c][0]]
    rows = []
    for scheme, ratio, criterion, seed in tqdm(grid, desc="sweep", unit="network"):
        rates = sweep.scheme_rates(arch, scheme, ratio, params["prune"]["settings"])
        scores, utilization = draws[criterion][0][seed], draws[criterion][1]
        if criterion in criteria.SHAPLEY_CRITERIA:  # its own widths at the rates' MACs, and its refit
            counts, *_ = snpfi.allocate_like(arch, widths, utilization, rates, shape, in_ch, classes)
            keep = snpfi.keep_indices(scores, counts)
            model, _ = surgery.prune(original, arch, widths, keep, in_ch, classes)
            seed_everything(params["seed"])
            recovery.refit_consumers(original.to(dev), model, arch, keep, images, params["snpfi"]["ridge"])
        else:
            keep = surgery.keep_indices(arch, widths, scores, rates)
            model, _ = surgery.prune(original, arch, widths, keep, in_ch, classes)
        model.to(dev)
        row = {"scheme": scheme, "ratio": ratio, "criterion": criterion, "seed": seed, **counting.count(model, shape),
               "top1_pruned": evaluate(model, test, dev, **pipeline.eval_accel(params))["top1"]}
        row["macs_reduction_pct"] = counting.reduction(baseline_macs, row["macs"])
        recovery.recalibrate_batchnorm(model, bn_batches, dev)
        row["top1_bn_reestimated"] = evaluate(model, test, dev, **pipeline.eval_accel(params))["top1"]
        if sw["finetune_epochs"]:  # the fine-tuning recipe, shortened; seed = the draw's seed
            seed_everything(seed)
            recipe = pipeline.recipe({**params["finetune"], "epochs": sw["finetune_epochs"],
                                      "warmup_epochs": min(params["finetune"]["warmup_epochs"], sw["finetune_epochs"])})
            row["top1_finetuned"] = fit(model, pipeline.train_loader(splits, params["finetune"]["batch_size"], seed,
                                                                     params, dev), test, recipe, dev,
                                        desc=f"{criterion} {scheme} {ratio}", **pipeline.accel(params))["top1"]
        rows.append(row)
    results = Path(paths["results"])
    sweep.write_csv(results / "sweep.csv", rows)
    title = f"{MODEL_NAMES.get(arch, arch)} on {DATA_NAMES.get(params['data']['name'], params['data']['name'])}: " \
            "top-1 against MACs removed" + ("" if sw["finetune_epochs"] else ", no fine-tuning")
    baseline_top1 = json.loads((Path(paths["metrics"]) / "train_baseline.json").read_text())["top1"]  # the dotted line
    sweep.plot_png(rows, results / "sweep.png", title, baseline_top1)


if __name__ == "__main__":
    config.run_stage(main)
