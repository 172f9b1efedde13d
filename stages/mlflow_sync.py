"""mlflow_sync: MLflow holds a finished run for every stage whose outputs are in the workspace.

DVC's last stage, run on every `dvc repro` (always_changed). The training stages
(train_baseline, finetune) log their runs live, epoch by epoch. The stages that take seconds
(check_params, extract_features, score, prune, evaluate, report) do not open MLflow: its import
and store start-up cost about 4 s a process, more than most of them take. For each dvc.lock entry
whose outputs are here: the run that wrote exactly these files is tagged with the entry's hash
and its dependencies' md5s; a stage with no such run (one of those stages, or a stage DVC
skipped: a fresh clone, an unchanged stage) gets a run built from dvc.lock and the tracked
files, tagged restored_from=dvc.lock. Runs left RUNNING by a killed stage are closed as KILLED.
"""

from prunelab import numerics

numerics.prepare()  # first, before torch and numpy load: the variables engine.cpu_numerics sets

from collections import Counter
from functools import cache

from prunelab import config, pipeline, tracking


def main() -> None:
    pipeline.no_arguments(__doc__)
    params = config.load_any("params.yaml")
    t = params["tracking"]
    tracking.check_store(t["uri"])
    lock = tracking.lock_stages("dvc.lock")
    if config.is_paper(params):  # a stage resolves against its experiment's params for its baseline
        experiments = {f"{b}-{e}": config.experiment_params(params, e, b)
                       for b in params["baselines"] for e in params["experiments"]}
        # stage name -> '<baseline>-<experiment>': train_baseline@0-resnet56, score@0-resnet56-chip,
        # prune@0-resnet56-r1-chip (paper/dvc.yaml's vars: name them)
        models, scores, networks = (items for entry in config.paper_dvc_vars(params) for items in entry.values())
        of_stage = {f"{stage}@{name}": name for name in models for stage in ("train_baseline", "extract_features")}
        of_stage |= {f"score@{name}": f"{item['baseline']}-{item['experiment']}" for name, item in scores.items()}
        of_stage |= {f"{stage}@{name}": f"{item['baseline']}-{item['experiment']}" for name, item in networks.items()
                     for stage in ("prune", "finetune", "evaluate")}
    else:  # a stage resolves against its baseline's params: train_baseline@0, score@0-chip, prune@0-chip-r2
        experiments = {str(b): config.resolve(params, b) for b in params["baselines"]}
        of_stage = {name: name.partition("@")[2].partition("-")[0] for name in lock if "@" in name}
        of_stage["sweep"] = str(params["sweep"]["baseline"])
    # dvc.lock may still hold entries of stages params.yaml no longer has (a baseline taken out of
    # `baselines`, a committed lock in a clone with other params): not this pipeline's, no run
    gone = tuple(name for name in lock if "@" in name and of_stage.get(name) not in experiments)

    @cache
    def dataset(experiment: str) -> tuple[str, str, str | None]:
        # a stage of no baseline (check_params) reads the data every baseline reads: `seed` fixes it
        p = experiments[experiment] if experiment else next(iter(experiments.values()))
        return pipeline.dataset_input(p, pipeline.load_data(p))

    def restore(name: str, _entry: dict) -> list[tuple]:
        experiment = of_stage.get(name, "")
        # the paper's check_params and report: no experiment, the file's own engine
        p = experiments.get(experiment, {"paths": {}, "engine": params["engine"]})
        return pipeline.restored_runs(p, name, lock, lambda: dataset(experiment))

    done = tracking.sync_lock(t["uri"], t["experiment"], restore, skip=("mlflow_sync", *gone))
    counts = Counter(done.values())
    print(f"mlflow_sync: {len(done)} stages with outputs here: {counts['kept']} runs kept, "
          f"{counts['linked']} linked to dvc.lock, {counts['restored']} restored from the tracked files")
    print(f"MLflow: `mlflow ui --backend-store-uri {tracking.tracking_uri(t['uri'])}`, then open "
          f"http://127.0.0.1:5000/#/experiments/{tracking.experiment_id(t['uri'], t['experiment'])}"
          "?workflowType=machine_learning")


if __name__ == "__main__":
    config.run_stage(main)
