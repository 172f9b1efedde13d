"""score: one score per channel of every channel group, for one criterion (higher = keep).

Feature criteria (chip, hrank) read the statistics extract_features streamed; model criteria
(l1, random) read the baseline. The scores file records where its numbers came from.
"""

from pathlib import Path

from tqdm.auto import tqdm

from prunelab import checkpoint, config, criteria, models, pipeline


def main() -> None:
    params, criterion = pipeline.experiment_stage(__doc__, criterion=True)
    paths = params["paths"]
    scores = {}
    with pipeline.stage_run(params, "score", {"criterion": criterion, "seed": params["seed"]}, item=params.get("experiment", criterion),
                            tags={"criterion": criterion}) as run:
        if criterion in criteria.FEATURE_STATISTICS:
            stats = checkpoint.torch_load(paths["features"], ("layers", "meta"), "features file")
            for layer, per_stat in tqdm(stats["layers"].items(), desc=f"score {criterion}", unit="layer"):
                scores[layer] = per_stat[criterion]  # (C,): the statistic's mean over the images
            provenance = stats["meta"]  # images (seed, count) and baseline md5
        else:
            ckpt = checkpoint.load(paths["baseline"])
            model, score_fn = checkpoint.build(ckpt), criteria.MODEL_CRITERIA[criterion]
            for group in tqdm(models.channel_groups(ckpt["arch"]), desc=f"score {criterion}", unit="layer"):
                scores.update(score_fn(model, [group], params["seed"]))
            provenance = {"seed": params["seed"], "baseline": paths["baseline"],
                          "baseline_md5": checkpoint.file_hash(paths["baseline"])}
        meta = {"criterion": criterion, **provenance}
        run.set_tags({k: v for k, v in meta.items() if k in ("baseline_md5", "num_images")})
        run.log_metrics({"layers": len(scores)})
    checkpoint.torch_save(Path(paths["scores"]) / f"{criterion}.pt", {"scores": scores, "meta": meta})


if __name__ == "__main__":
    config.run_stage(main)
