"""report: the results tables from the evaluate metric files (same bytes as `prunelab table
--from-mlflow` builds from the MLflow runs): results/table.{md,tex,csv}, the criteria
comparison and the top-1-vs-MACs plot; for the paper pipeline, its table in the paper's layout."""

from prunelab import config, tracking
from prunelab.cli import write_table


def main() -> None:
    params = config.load_any("params.yaml")
    written = write_table(params)
    section = "rows" if config.is_paper(params) else "prune"
    t = params["tracking"]
    with tracking.stage_run("report", t["uri"], t["experiment"], {section: params[section]},
                            {"stage": "report", "params_hash": config.params_hash(params)}) as run:
        for path in written.values():
            run.log_artifact(path)
    print(written["table.md"].read_text(), end="")


if __name__ == "__main__":
    config.run_stage(main)
