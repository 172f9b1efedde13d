"""train_baseline: train the unpruned network (or take model.pretrained's weights); write its
checkpoint, metrics and learning curve. Killed mid-way, it resumes from its last epoch."""

from prunelab import numerics

numerics.prepare()  # first, before torch and numpy load: the variables engine.cpu_numerics sets

from pathlib import Path

from prunelab import checkpoint, config, counting, models, pipeline
from prunelab.engine import evaluate, fit, seed_everything


def main() -> None:
    params, _ = pipeline.experiment_stage(__doc__)
    dev, arch, paths = pipeline.device(params), params["model"]["arch"], params["paths"]
    seed_everything(params["seed"])
    splits = pipeline.load_data(params)
    model = models.build_model(arch, None, splits.in_channels, splits.num_classes)
    sections = {k: params[k] for k in ("seed", "device", "engine", "data", "model", "train")}
    pretrained = pipeline.pretrained_weights(params, splits)
    metrics_dir = Path(paths["metrics"])

    with pipeline.ResumableTraining(params, "train_baseline", None, sections, {}, Path(paths["baseline"]),
                                    [Path(pretrained)] if pretrained else [], data=splits) as job:
        if pretrained:  # given weights are the baseline: evaluate them, train nothing
            checkpoint.load_weights(model, pretrained)
            final = evaluate(model.to(dev), pipeline.test_loader(splits, params, dev), dev, **pipeline.eval_accel(params))
            job.on_epoch(0, final)
        else:
            final = fit(model, pipeline.train_loader(splits, params["train"]["batch_size"], params["seed"], params, dev),
                        pipeline.test_loader(splits, params, dev), pipeline.recipe(params["train"]), dev, job.on_epoch,
                        "train_baseline", job.state, job.save_state, **pipeline.accel(params))
        if job.run:  # rank 0 writes; the other torchrun ranks only trained alongside
            counts = counting.count(model, pipeline.input_shape(splits))
            job.run.log_metrics(counts)  # top-1 and loss are already in the per-epoch history
            metrics = {"top1": final["top1"], "loss": final["loss"], **counts}
            checkpoint.save(paths["baseline"], model, arch, models.default_widths(arch), splits.in_channels,
                            splits.num_classes, meta={"stage": "train_baseline", "seed": params["seed"], **metrics,
                                                      "numerics": pipeline.numerics_record(params)})
            pipeline.write_json(metrics_dir / "train_baseline.json", metrics)
            pipeline.write_curve(metrics_dir / "train_baseline.csv", job.curve)
            job.run.record_outputs([paths["baseline"], metrics_dir / "train_baseline.json",
                                    metrics_dir / "train_baseline.csv"])

if __name__ == "__main__":
    config.run_stage(main)
