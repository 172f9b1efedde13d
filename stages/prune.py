"""prune: keep each group's highest-scoring channels at the setting's rates; physically remove
the rest (weights, BN statistics and consumers' inputs transferred); evaluate before fine-tuning."""

from pathlib import Path

from prunelab import checkpoint, config, counting, pipeline, surgery
from prunelab.engine import evaluate
from prunelab.sparsity import parse_sparsity


def main() -> None:
    params = config.load_params()
    criterion, setting = pipeline.item_args(params)
    item, paths, spec = config.item_name(criterion, setting), params["paths"], params["prune"]["settings"][setting]
    dev = pipeline.device(params)
    base = checkpoint.load(paths["baseline"])
    scores = checkpoint.torch_load(Path(paths["scores"]) / f"{criterion}.pt", ("scores", "meta"), "scores file")["scores"]
    keep = surgery.keep_indices(base["arch"], base["widths"], scores, parse_sparsity(spec))
    model, widths = surgery.prune(checkpoint.build(base), base["arch"], base["widths"], keep,
                                  base["in_channels"], base["num_classes"])
    splits = pipeline.load_data(params)
    tags = {"criterion": criterion, "setting": setting, "sparsity": spec}
    with pipeline.stage_run(params, "prune", {"sparsity": spec, "criterion": criterion}, item, tags) as run:
        before = evaluate(model.to(dev), pipeline.test_loader(splits, params, dev), dev)
        metrics = {"top1_before_finetune": before["top1"], "loss_before_finetune": before["loss"],
                   **counting.count(model, pipeline.input_shape(splits))}
        run.log_metrics(metrics)
    checkpoint.save(config.item_file(paths["pruned"], criterion, setting, ".pt"), model, base["arch"], widths,
                    base["in_channels"], base["num_classes"],
                    meta={"keep": {k: v.tolist() for k, v in keep.items()}, **tags})
    pipeline.write_json(config.item_file(Path(paths["metrics"]) / "prune", criterion, setting, ".json"), metrics)


if __name__ == "__main__":
    config.run_stage(main)
