"""score: one score per channel of every channel group, for one criterion (higher = keep)."""

import argparse
from pathlib import Path

from tqdm.auto import tqdm

from prunelab import checkpoint, config, criteria, pipeline


def main() -> None:
    params = config.load_params()
    parser = argparse.ArgumentParser()
    parser.add_argument("--criterion", required=True, choices=params["prune"]["criteria"])
    criterion = parser.parse_args().criterion
    paths = params["paths"]
    stats = checkpoint.torch_load(paths["features"], ("layers", "meta"), "features file")
    scores = {}
    with pipeline.stage_run(params, "score", {"criterion": criterion}, item=criterion, tags={"criterion": criterion}) as run:
        for layer, per_stat in tqdm(stats["layers"].items(), desc=f"score {criterion}", unit="layer"):
            if criterion in criteria.FEATURE_STATISTICS:
                scores[layer] = per_stat[criterion]  # (C,): the statistic's mean over the images
        meta = {"criterion": criterion, **stats["meta"]}
        run.set_tags({"baseline_md5": meta["baseline_md5"], "num_images": meta["num_images"]})
        run.log_metrics({"layers": len(scores)})
    out = Path(paths["scores"]) / f"{criterion}.pt"
    checkpoint.torch_save(out, {"scores": scores, "meta": meta})


if __name__ == "__main__":
    config.run_stage(main)
