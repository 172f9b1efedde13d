"""report: the results tables from the evaluate metric files (same bytes as `prunelab table
--from-mlflow` builds from the MLflow runs): results/table.{md,tex,csv}, the criteria
comparison, the top-1 summary DVC lists as metrics, the fine-tuning curves and the
top-1-vs-MACs plot; for the paper pipeline, its table in the paper's layout."""

from prunelab import config, tracking
from prunelab.cli import write_table


def main() -> None:
    params = config.load_any("params.yaml")
    t = params["tracking"]
    tracking.check_store(t["uri"])
    written = write_table(params)
    section = "rows" if config.is_paper(params) else "prune"
    with tracking.stage_run("report", t["uri"], t["experiment"], {section: params[section]},
                            {"stage": "report", "params_hash": config.params_hash(params)}) as run:
        for path in written.values():
            run.log_artifact(path)
        run.record_outputs(list(written.values()))
    print(written["table.md"].read_text(), end="")


if __name__ == "__main__":
    config.run_stage(main)
