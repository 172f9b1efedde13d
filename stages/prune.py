"""prune: keep each group's highest-scoring channels; physically remove the rest (weights, BN
statistics and consumers' inputs transferred); evaluate before fine-tuning (top-1, and which
test images the pruned network gets right).

Widths: the setting's rates, except for snpfi, which picks each group's width from its
utilization curve for the setting's MACs reduction, then recovers without training (least-squares
refit of every consumer, BatchNorm statistics re-estimated)."""

from pathlib import Path

from prunelab import checkpoint, config, counting, criteria, models, pipeline, recovery, report, significance, surgery
from prunelab.criteria import snpfi
from prunelab.engine import evaluate, seed_everything
from prunelab.sparsity import parse_sparsity


def main() -> None:
    params, net = pipeline.network_stage(__doc__)
    paths, dev = params["paths"], pipeline.device(params)
    base = checkpoint.load(paths["baseline"])
    arch, widths, rates = base["arch"], base["widths"], parse_sparsity(net.sparsity)
    keys = ("scores", "meta", "utilization") if net.criterion in criteria.SHAPLEY_CRITERIA else ("scores", "meta")
    scored = checkpoint.torch_load(Path(paths["scores"]) / f"{net.criterion}.pt", keys, "scores file")
    splits = pipeline.load_data(params)
    shape, test = pipeline.input_shape(splits), pipeline.test_loader(splits, params, dev)
    original = checkpoint.build(base)
    metrics: dict = {}
    if net.criterion in criteria.SHAPLEY_CRITERIA:
        # the MACs reduction the setting's rates give, reached with SNPFI's own per-group widths
        build = lambda w: models.build_model(arch, w, base["in_channels"], base["num_classes"])  # noqa: E731
        target = report.reduction(counting.count_ops(build(widths), shape)["macs"],
                                  counting.count_ops(build(models.pruned_widths(arch, rates, widths)), shape)["macs"]) / 100
        counts, tau, reached = snpfi.allocate(arch, widths, scored["utilization"], target, shape,
                                              base["in_channels"], base["num_classes"])
        keep = snpfi.keep_indices(scored["scores"], counts)
        metrics.update(target_macs_reduction_pct=100 * target, reached_macs_reduction_pct=100 * reached, tau=tau)
    else:
        keep = surgery.keep_indices(arch, widths, scored["scores"], rates)
    model, new_widths = surgery.prune(original, arch, widths, keep, base["in_channels"], base["num_classes"])
    tags = {"criterion": net.criterion, "setting": net.setting, "sparsity": net.sparsity}
    sections = {"sparsity": net.sparsity, "criterion": net.criterion, "data": params["data"],
                **({"snpfi": params["snpfi"]} if net.criterion in criteria.SHAPLEY_CRITERIA else {})}
    with pipeline.stage_run(params, "prune", sections, net.name, tags, data=splits) as run:
        if net.criterion in criteria.SHAPLEY_CRITERIA:
            metrics["top1_before_recovery"] = evaluate(model.to(dev), test, dev, **pipeline.eval_accel(params))["top1"]
            seed_everything(params["seed"])
            images, _ = pipeline.calibration_batch(splits, params, dev)
            recovery.refit_consumers(original.to(dev), model, arch, keep, images, params["snpfi"]["ridge"])
            metrics["top1_after_refit"] = evaluate(model, test, dev, **pipeline.eval_accel(params))["top1"]
            bn_batches = pipeline.FirstBatches(pipeline.train_loader(splits, 256, params["seed"], params, dev), 10)
            recovery.recalibrate_batchnorm(model, bn_batches, dev)  # up to 2,560 training images
        before, hits = significance.evaluate(model.to(dev), test, dev, **pipeline.eval_accel(params))  # (N,) bool
        metrics.update(top1_before_finetune=before["top1"], loss_before_finetune=before["loss"],
                       test_images=len(hits), **counting.count(model, shape))
        run.log_metrics(metrics)
        # which test images it gets right: the report pairs criteria image by image before fine-tuning
        metrics["test_correct_before_finetune"] = significance.encode(hits)
        outputs = [net.file(paths["pruned"], ".pt"), net.file(Path(paths["metrics"]) / "prune", ".json")]
        checkpoint.save(outputs[0], model, arch, new_widths, base["in_channels"], base["num_classes"],
                        meta={"keep": {k: v.tolist() for k, v in keep.items()}, **tags})
        pipeline.write_json(outputs[1], metrics)
        run.record_outputs(outputs)
        run.log_artifact(outputs[0])  # data only: {arch, widths, state_dict, meta}
        run.log_artifact(outputs[1])  # the record, per-image results included


if __name__ == "__main__":
    config.run_stage(main)
