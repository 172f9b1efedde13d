"""prune: keep each group's highest-scoring channels at the setting's rates; physically remove
the rest (weights, BN statistics and consumers' inputs transferred); evaluate before fine-tuning."""

from pathlib import Path

from prunelab import checkpoint, config, counting, pipeline, surgery
from prunelab.engine import evaluate
from prunelab.sparsity import parse_sparsity


def main() -> None:
    params, net = pipeline.network_stage(__doc__)
    paths, dev = params["paths"], pipeline.device(params)
    base = checkpoint.load(paths["baseline"])
    scores = checkpoint.torch_load(Path(paths["scores"]) / f"{net.criterion}.pt", ("scores", "meta"), "scores file")["scores"]
    keep = surgery.keep_indices(base["arch"], base["widths"], scores, parse_sparsity(net.sparsity))
    model, widths = surgery.prune(checkpoint.build(base), base["arch"], base["widths"], keep,
                                  base["in_channels"], base["num_classes"])
    splits = pipeline.load_data(params)
    tags = {"criterion": net.criterion, "setting": net.setting, "sparsity": net.sparsity}
    with pipeline.stage_run(params, "prune", {"sparsity": net.sparsity, "criterion": net.criterion}, net.name, tags) as run:
        before = evaluate(model.to(dev), pipeline.test_loader(splits, params, dev), dev, **pipeline.eval_accel(params))
        metrics = {"top1_before_finetune": before["top1"], "loss_before_finetune": before["loss"],
                   **counting.count(model, pipeline.input_shape(splits))}
        run.log_metrics(metrics)
    checkpoint.save(net.file(paths["pruned"], ".pt"), model, base["arch"], widths, base["in_channels"],
                    base["num_classes"], meta={"keep": {k: v.tolist() for k, v in keep.items()}, **tags})
    pipeline.write_json(net.file(Path(paths["metrics"]) / "prune", ".json"), metrics)


if __name__ == "__main__":
    config.run_stage(main)
