"""finetune: train a pruned network with the fine-tuning recipe, once per seed; write each
checkpoint and curve. Killed mid-way, it resumes from its last epoch."""

from prunelab import numerics

numerics.prepare()  # first, before torch and numpy load: the variables engine.cpu_numerics sets

from pathlib import Path

from prunelab import checkpoint, config, pipeline, tracking
from prunelab.engine import fit, seed_everything


def main() -> None:
    params, net = pipeline.network_stage(__doc__)
    paths, ft, dev = params["paths"], params["finetune"], pipeline.device(params)
    splits = pipeline.load_data(params)
    run_ids = []
    for seed in config.seeds(params):
        pruned_path = config.pruned_file(params, net, seed)  # a seed-drawn criterion's own draw
        ckpt = checkpoint.load(pruned_path)
        seed_everything(seed)
        model = checkpoint.build(ckpt)
        sections = {"seed": seed, "device": params["device"], "engine": params["engine"], "data": params["data"],
                    "finetune": ft}
        tags = {"criterion": net.criterion, "setting": net.setting, "sparsity": net.sparsity, "seed": str(seed)}
        output = config.finetuned_file(params, net, seed)
        with pipeline.ResumableTraining(params, "finetune", net.name, sections, tags, output, [pruned_path],
                                        data=splits) as job:
            fit(model, pipeline.train_loader(splits, ft["batch_size"], seed, params, dev),
                pipeline.test_loader(splits, params, dev), pipeline.recipe(ft), dev, job.on_epoch,
                f"finetune@{net.name}", job.state, job.save_state, **pipeline.accel(params))
            if job.run:  # rank 0 writes; the other torchrun ranks only trained alongside
                checkpoint.save(output, model, ckpt["arch"], ckpt["widths"], ckpt["in_channels"], ckpt["num_classes"],
                                meta={**ckpt["meta"], "finetuned": True, "seed": seed,
                                      "numerics": pipeline.numerics_record(params)})
                pipeline.write_curve(config.finetuned_file(params, net, seed, Path(paths["metrics"]) / "finetune", ".csv"),
                                     job.curve)
                job.run.log_artifact(output)  # data only: {arch, widths, state_dict, meta}
                run_ids.append(job.run.run_id)
    # DVC's outputs: the seeds' checkpoints and curves (one folder each when there are several
    # seeds); every seed's run is tagged with their md5, so mlflow_sync finds the stage's runs.
    outputs = [config.finetuned_file(params, net, seed, d, suffix) for seed in config.seeds(params)
               for d, suffix in ((paths["finetuned"], ".pt"), (Path(paths["metrics"]) / "finetune", ".csv"))]
    if run_ids:  # rank 0 (under torchrun the other ranks write nothing)
        tracking.tag_runs(params["tracking"]["uri"], run_ids, {"outs_md5": tracking.files_md5(
            sorted({p.parent if "seeds" in params else p for p in outputs}))})


if __name__ == "__main__":
    config.run_stage(main)
