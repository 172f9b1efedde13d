"""evaluate: top-1 of a fine-tuned network, its counts, and their reductions against the baseline."""

import json
from pathlib import Path

from prunelab import checkpoint, config, counting, pipeline, report
from prunelab.engine import evaluate


def main() -> None:
    params = config.load_params()
    criterion, setting = pipeline.item_args(params)
    item, paths = config.item_name(criterion, setting), params["paths"]
    metrics_dir, dev = Path(paths["metrics"]), pipeline.device(params)
    model = checkpoint.build(checkpoint.load(config.item_file(paths["finetuned"], criterion, setting, ".pt")))
    splits = pipeline.load_data(params)
    baseline = json.loads((metrics_dir / "train_baseline.json").read_text())
    pruned = json.loads(config.item_file(metrics_dir / "prune", criterion, setting, ".json").read_text())
    shape = pipeline.input_shape(splits)
    record = {"model": params["model"]["arch"], "criterion": criterion, "setting": setting,
              "sparsity": params["prune"]["settings"][setting], "input_shape": "x".join(map(str, shape)),
              "baseline_top1": baseline["top1"], "top1_before_finetune": pruned["top1_before_finetune"],
              **evaluate(model.to(dev), pipeline.test_loader(splits, params, dev), dev),
              **counting.count(model, shape)}
    for key in ("params", "macs", "flops_paper"):
        record[f"baseline_{key}"] = baseline[key]
        record[f"{key}_reduction_pct"] = report.reduction(baseline[key], record[key])
    strings = {k: v for k, v in record.items() if isinstance(v, str)}
    with pipeline.stage_run(params, "evaluate", {"data": params["data"]}, item, strings) as run:
        run.log_metrics(record)
    pipeline.write_json(config.item_file(metrics_dir / "evaluate", criterion, setting, ".json"), record)


if __name__ == "__main__":
    config.run_stage(main)
