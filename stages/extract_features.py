"""extract_features: one streamed pass of training images through the baseline, every channel
group's ReLU hooked at once; stores per-layer, per-channel statistics (raw maps only when
features.save_maps asks for them)."""

from prunelab import numerics

numerics.prepare()  # first, before torch and numpy load: the variables engine.cpu_numerics sets

from prunelab import checkpoint, config, criteria, models, pipeline
from prunelab.engine import seed_everything
from prunelab.features import channel_statistics


def main() -> None:
    params, _ = pipeline.experiment_stage(__doc__)
    dev, paths, feat = pipeline.device(params), params["paths"], params["features"]
    seed_everything(params["seed"])
    ckpt = pipeline.load_baseline(params)
    model = checkpoint.build(ckpt)
    splits = pipeline.load_data(params)
    stats = {c: criteria.FEATURE_STATISTICS[c] for c in params["prune"]["criteria"] if c in criteria.FEATURE_STATISTICS}
    layers = [g.name for g in models.channel_groups(ckpt["arch"])]
    # CHIP's protocol: training images with the training augmentation, the model in eval mode.
    images = pipeline.train_loader(splits, feat["batch_size"], params["seed"], params, dev)
    maps: dict | None = {} if feat["save_maps"] else None
    per_layer = channel_statistics(model, images, layers, stats, feat["num_images"], dev, maps=maps)
    meta = {"statistics": sorted(stats), "num_images": feat["num_images"], "seed": params["seed"],
            "baseline": paths["baseline"], "baseline_md5": checkpoint.file_hash(paths["baseline"]),
            "numerics": pipeline.numerics_record(params)}
    checkpoint.torch_save(paths["features"], {"layers": per_layer, "meta": meta, **({"maps": maps} if maps else {})})


if __name__ == "__main__":
    config.run_stage(main)
