"""evaluate: top-1 of a fine-tuned network (mean and spread over its seeds), which test images it
gets right (per seed, packed: the report pairs networks image by image; and, from the prune
stage, which the pruned network got right before fine-tuning), its counts and their
reductions against the baseline; and, in a file of its own, the measured inference latency of
both (CPU, and CUDA when present, with engine.amp and engine.channels_last as in training) with
the speed-up: a measurement, the one output that differs between runs and machines."""

from prunelab import numerics

numerics.prepare()  # first, before torch and numpy load: the variables engine.cpu_numerics sets

import json
import statistics
from pathlib import Path

from prunelab import checkpoint, config, correctness, counting, pipeline
from prunelab.latency import compare_latency


def main() -> None:
    params, net = pipeline.network_stage(__doc__)
    paths, dev = params["paths"], pipeline.device(params)
    metrics_dir = Path(paths["metrics"])
    lat = params["latency"]
    # the baseline the latencies are measured against, checked before anything is written
    baseline_model = checkpoint.build(pipeline.load_baseline(params)) if lat["repeats"] else None
    splits = pipeline.load_data(params)
    seeds = config.seeds(params)
    per_seed, correct = [], []
    for seed in seeds:
        model = checkpoint.build(checkpoint.load(config.finetuned_file(params, net, seed))).to(dev)
        metrics, hits = correctness.evaluate(model, pipeline.test_loader(splits, params, dev), dev,
                                              **pipeline.eval_accel(params))  # top-1 and loss; (N,) bool
        per_seed.append(metrics)
        correct.append(hits)
    baseline = json.loads((metrics_dir / "train_baseline.json").read_text())
    pruned = json.loads(net.file(metrics_dir / "prune", ".json").read_text())
    shape = pipeline.input_shape(splits)
    top1 = [m["top1"] for m in per_seed]
    record = {"model": params["model"]["arch"], "baseline": str(params["baseline"]), "criterion": net.criterion,
              "setting": net.setting, "sparsity": net.sparsity, "input_shape": "x".join(map(str, shape)),
              "seeds": " ".join(map(str, seeds)), "top1_per_seed": " ".join(f"{t:.2f}" for t in top1),
              "baseline_top1": baseline["top1"], "top1_before_finetune": pruned["top1_before_finetune"],
              "top1": statistics.fmean(top1), "top1_std": statistics.stdev(top1) if len(top1) > 1 else 0.0,
              "top1_best": max(top1), "loss": statistics.fmean(m["loss"] for m in per_seed),
              "test_images": len(correct[0]), "test_correct_per_seed": " ".join(map(correctness.encode, correct)),
              "test_correct_before_finetune": pruned["test_correct_before_finetune"],
              **{k: pruned[k] for k in ("top1_before_finetune_per_seed",) if k in pruned},  # random's draws
              **counting.count(model, shape), "numerics": pipeline.numerics_record(params)}
    for key in ("params", "macs", "flops_paper"):
        record[f"baseline_{key}"] = baseline[key]
        record[f"{key}_reduction_pct"] = counting.reduction(baseline[key], record[key])
    pipeline.write_json(net.file(metrics_dir / "evaluate", ".json"), record)

    timed = {}
    if lat["repeats"]:
        for device in ["cpu", *(["cuda"] if dev.type == "cuda" else [])]:
            times = compare_latency({"baseline": baseline_model, "pruned": model}, shape, tuple(lat["batch_sizes"]),
                                    device, lat["warmup"], lat["repeats"], **pipeline.eval_accel(params))
            for b in lat["batch_sizes"]:
                base_ms, pruned_ms = times["baseline"][b]["median_ms"], times["pruned"][b]["median_ms"]
                timed.update({f"latency_{device}_b{b}_baseline_ms": base_ms, f"latency_{device}_b{b}_pruned_ms": pruned_ms,
                              f"speedup_{device}_b{b}": base_ms / pruned_ms})
        timed["machine"] = numerics.machine()
    pipeline.write_json(net.file(metrics_dir / "latency", ".json"), timed)  # {} when latency.repeats is 0


if __name__ == "__main__":
    config.run_stage(main)
