"""finetune: train a pruned network with the fine-tuning recipe; write its checkpoint and curve."""

from pathlib import Path

from prunelab import checkpoint, config, pipeline
from prunelab.engine import fit, seed_everything


def main() -> None:
    params = config.load_params()
    criterion, setting = pipeline.item_args(None, params)
    item, paths, ft = config.item_name(criterion, setting), params["paths"], params["finetune"]
    dev = pipeline.device(params)
    seed_everything(params["seed"])
    ckpt = checkpoint.load(config.item_file(paths["pruned"], criterion, setting, ".pt"))
    model = checkpoint.build(ckpt)
    splits = pipeline.load_data(params)
    curve = []
    sections = {"seed": params["seed"], "device": params["device"], "data": params["data"], "finetune": ft}
    tags = {"criterion": criterion, "setting": setting, "sparsity": params["prune"]["settings"][setting]}
    with pipeline.stage_run(params, "finetune", sections, item, tags) as run:
        def on_epoch(epoch: int, m: dict) -> None:
            curve.append(m)
            run.log_metrics(m, step=epoch)

        fit(model, pipeline.train_loader(splits, ft["batch_size"], params["seed"], dev),
                    pipeline.test_loader(splits, params, dev), pipeline.recipe(ft), dev, on_epoch,
                    desc=f"finetune@{item}")
    checkpoint.save(config.item_file(paths["finetuned"], criterion, setting, ".pt"), model, ckpt["arch"],
                    ckpt["widths"], ckpt["in_channels"], ckpt["num_classes"], meta={**ckpt["meta"], "finetuned": True})
    pipeline.write_curve(config.item_file(Path(paths["metrics"]) / "finetune", criterion, setting, ".csv"), curve)


if __name__ == "__main__":
    config.run_stage(main)
