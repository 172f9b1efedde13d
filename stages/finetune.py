"""finetune: train a pruned network with the fine-tuning recipe; write its checkpoint and curve.
Killed mid-way, it resumes from its last epoch."""

from pathlib import Path

from prunelab import checkpoint, config, pipeline
from prunelab.engine import fit, seed_everything


def main() -> None:
    params = config.load_params()
    criterion, setting = pipeline.item_args(params)
    item, paths, ft = config.item_name(criterion, setting), params["paths"], params["finetune"]
    dev = pipeline.device(params)
    seed_everything(params["seed"])
    pruned_path = config.item_file(paths["pruned"], criterion, setting, ".pt")
    ckpt = checkpoint.load(pruned_path)
    model = checkpoint.build(ckpt)
    splits = pipeline.load_data(params)
    sections = {"seed": params["seed"], "device": params["device"], "data": params["data"], "finetune": ft}
    tags = {"criterion": criterion, "setting": setting, "sparsity": params["prune"]["settings"][setting]}
    output = config.item_file(paths["finetuned"], criterion, setting, ".pt")

    def train(on_epoch, state, save_state) -> dict:
        return fit(model, pipeline.train_loader(splits, ft["batch_size"], params["seed"], dev),
                   pipeline.test_loader(splits, params, dev), pipeline.recipe(ft), dev, on_epoch,
                   f"finetune@{item}", state, save_state)

    def write_outputs(final: dict, curve: list[dict], run) -> None:
        checkpoint.save(output, model, ckpt["arch"], ckpt["widths"], ckpt["in_channels"], ckpt["num_classes"],
                        meta={**ckpt["meta"], "finetuned": True})
        pipeline.write_curve(config.item_file(Path(paths["metrics"]) / "finetune", criterion, setting, ".csv"), curve)

    pipeline.train_resumably(params, "finetune", item, sections, tags, output, [pruned_path], train, write_outputs)


if __name__ == "__main__":
    config.run_stage(main)
