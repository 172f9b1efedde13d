"""score: one score per channel of every channel group, for one criterion (higher = keep).

Feature criteria (chip, hrank) read the statistics extract_features streamed; model criteria
(l1, random) read the baseline (random also draws once per fine-tuning seed when params list
`seeds`, seeded by the baseline and the seed: each pruned network is its own draw); snpfi plays its Shapley game on the baseline and calibration
images, and also stores each group's utilization curve. The scores file records where its
numbers came from.
"""

from prunelab import numerics

numerics.prepare()  # first, before torch and numpy load: the variables engine.cpu_numerics sets

from pathlib import Path

from tqdm.auto import tqdm

from prunelab import checkpoint, config, criteria, models, pipeline
from prunelab.criteria import snpfi
from prunelab.engine import seed_everything


def main() -> None:
    params, criterion = pipeline.experiment_stage(__doc__, criterion=True)
    paths = params["paths"]
    scores, extra = {}, {}
    if criterion in criteria.FEATURE_STATISTICS:
        stats = checkpoint.torch_load(paths["features"], ("layers", "meta"), "features file")
        pipeline.check_made_from(stats["meta"], paths["features"], paths["baseline"])
        for layer, per_stat in tqdm(stats["layers"].items(), desc=f"score {criterion}", unit="layer"):
            scores[layer] = per_stat[criterion]  # (C,): the statistic's mean over the images
        provenance = stats["meta"]  # images (seed, count) and baseline md5
    else:
        ckpt = pipeline.load_baseline(params)
        model, groups = checkpoint.build(ckpt), models.channel_groups(ckpt["arch"])
        provenance = {"seed": params["seed"], "baseline": paths["baseline"],
                      "baseline_md5": checkpoint.file_hash(paths["baseline"])}
        if criterion in criteria.SHAPLEY_CRITERIA:
            dev = pipeline.device(params)
            seed_everything(params["seed"])
            splits = pipeline.load_data(params)
            images, labels = pipeline.calibration_batch(splits, params, dev)
            games = snpfi.analyse(model, groups, images, labels, params["snpfi"]["permutations"], params["seed"], dev)
            scores = {g: game["importance"] for g, game in games.items()}  # (C,) Shapley values
            extra["utilization"] = {g: game["utilization"] for g, game in games.items()}  # (C+1,)
            provenance.update(calibration_images=len(labels), permutations=params["snpfi"]["permutations"])
        else:
            score_fn = criteria.MODEL_CRITERIA[criterion]
            for group in tqdm(groups, desc=f"score {criterion}", unit="layer"):
                scores.update(score_fn(model, [group], params["seed"]))
            if criterion in criteria.SEED_DRAWN and "seeds" in params:  # one draw per fine-tuning seed and baseline
                extra["scores_per_seed"] = {seed: score_fn(model, groups, config.draw_seed(params["baseline"], seed))
                                            for seed in config.seeds(params)}
    checkpoint.torch_save(Path(paths["scores"]) / f"{criterion}.pt",
                          {"scores": scores, "meta": {"criterion": criterion, **provenance,
                                                     "numerics": pipeline.numerics_record(params)}, **extra})


if __name__ == "__main__":
    config.run_stage(main)
