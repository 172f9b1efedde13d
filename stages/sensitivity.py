"""sensitivity: prune one rate slot at a time (prunelab/sensitivity.py: a slot is one entry of
the arch's compact rate list) at each of sensitivity.rates with sensitivity.criterion's scores,
re-estimate BatchNorm statistics, and measure top-1 on sensitivity.images training images (the
test set is not looked at: auto's choice must not be fitted to it). Then resolve every
`auto:<MACs reduction>` setting of prune.settings into rates (the rule: prunelab/sensitivity.py).

One baseline's (--baseline): its channels differ, and so may auto's choice. Writes, in
results/metrics/b<baseline>/, sensitivity.csv (a row per slot and rate), sensitivity.png (the
heatmap, every setting's rates outlined: hand-set ones and auto's choices) and
sensitivity.json (the baseline on the same images; per auto setting its rates, the MACs
reduction they reach and their summed sensitivity), which the prune stage reads."""

from prunelab import numerics

numerics.prepare()  # first, before torch and numpy load: the variables engine.cpu_numerics sets

import math
from pathlib import Path

from tqdm.auto import tqdm

from prunelab import checkpoint, config, counting, pipeline, recovery, sensitivity, surgery
from prunelab.engine import evaluate
from prunelab.report import DATA_NAMES, METHOD_NAMES, MODEL_NAMES
from prunelab.sparsity import auto_target, compact, is_auto, parse_sparsity


def main() -> None:
    params, _ = pipeline.experiment_stage(__doc__)
    paths, sens, dev = params["paths"], params["sensitivity"], pipeline.device(params)
    base = pipeline.load_baseline(params)
    arch, widths, in_ch, classes = base["arch"], base["widths"], base["in_channels"], base["num_classes"]
    scored = checkpoint.torch_load(Path(paths["scores"]) / f"{sens['criterion']}.pt", ("scores", "meta"), "scores file")
    pipeline.check_made_from(scored["meta"], Path(paths["scores"]) / f"{sens['criterion']}.pt", paths["baseline"])
    scores = scored["scores"]  # {group: (C,)}
    splits = pipeline.load_data(params)
    shape = pipeline.input_shape(splits)
    # the images top-1 is measured on: sensitivity.images training images, as many per class as
    # the classes allow, drawn by seed, without augmentation (a held-out-free stand-in for validation)
    measured, n = pipeline.training_images_unaugmented(splits, sens["images"], params["seed"],
                                                       params["data"]["eval_batch_size"], dev)
    # BatchNorm re-estimation: the first sensitivity.bn_images of the seeded training order, the
    # same batches for every network (as the sweep's)
    bn_batch = min(256, sens["bn_images"])
    bn_batches = pipeline.FirstBatches(pipeline.train_loader(splits, bn_batch, params["seed"], params, dev),
                                       math.ceil(sens["bn_images"] / bn_batch))
    original = checkpoint.build(base).to(dev)
    baseline = evaluate(original, measured, dev, **pipeline.eval_accel(params))  # {"top1", "loss"}
    baseline_macs = counting.count_ops(original, shape)["macs"]
    slots, labels = sensitivity.num_slots(arch), sensitivity.slot_labels(arch)
    rows = []
    grid = [(i, r) for i in range(slots) for r in sens["rates"]]
    for slot, rate in tqdm(grid, desc="sensitivity", unit="network"):
        rates = sensitivity.slot_rates(slots, slot, rate)
        keep = surgery.keep_indices(arch, widths, scores, rates)
        model, _ = surgery.prune(original, arch, widths, keep, in_ch, classes)
        model.to(dev)
        recovery.recalibrate_batchnorm(model, bn_batches, dev)
        row = {"slot": slot, "groups": labels[slot], "rate": rate, **counting.count(model, shape)}
        row["macs_reduction_pct"] = counting.reduction(baseline_macs, row["macs"])
        row.update(evaluate(model, measured, dev, **pipeline.eval_accel(params)))  # top1 (%), loss
        rows.append({k: row[k] for k in sensitivity.FIELDS})
    results = Path(paths["metrics"])  # this baseline's
    sensitivity.write_csv(results / "sensitivity.csv", rows)

    # every auto: setting, against the hand-set setting it names (auto:r2) when it names one
    settings = params["prune"]["settings"]
    record = {"criterion": sens["criterion"], "images": n, "baseline_top1": baseline["top1"],
              "baseline_loss": baseline["loss"], "auto": {}}
    marks = {}
    for name, spec in settings.items():
        if not is_auto(spec):  # outlined on the heatmap, auto: settings or none
            marks[f"{name} (hand-set)"] = parse_sparsity(spec)
            continue
        target = auto_target(spec, f"prune.settings.{name}", settings)
        hand = parse_sparsity(settings[target]) if isinstance(target, str) else None
        target_pct = (sensitivity.macs_reduction(arch, hand, widths, shape, in_ch, classes) if hand
                      else 100 * target)
        picked = sensitivity.auto_rates(rows, n, baseline["top1"], baseline["loss"], target_pct, arch, widths,
                                        shape, in_ch, classes)
        entry = {"spec": spec, "target_macs_reduction_pct": target_pct, **picked, "rates": compact(picked["rates"])}
        marks[f"{name} ({spec})"] = picked["rates"]
        if hand:
            entry["hand_set"] = target
            summed = sensitivity.summed_sensitivity(rows, hand, n, baseline["top1"], baseline["loss"], slots)
            if summed is not None:  # every hand-set rate was measured
                entry["hand_set_summed_drop_images"], entry["hand_set_summed_loss_increase"] = summed
        record["auto"][name] = entry
    record["numerics"] = pipeline.numerics_record(params)
    pipeline.write_json(results / "sensitivity.json", record)
    title = (f"{MODEL_NAMES.get(arch, arch)} on {DATA_NAMES.get(params['data']['name'], params['data']['name'])}, "
             f"{METHOD_NAMES.get(sens['criterion'], sens['criterion'])}'s channels:\n"
             f"top-1 on {n} training images, one rate slot pruned at a time")
    sensitivity.plot_heatmap(rows, results / "sensitivity.png", title, baseline["top1"], marks)


if __name__ == "__main__":
    config.run_stage(main)
