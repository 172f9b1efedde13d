"""report: results/table.{md,tex,csv} from the evaluate metric files (same bytes as
`prunelab table --from-mlflow` builds from the MLflow runs)."""

from prunelab import config, pipeline
from prunelab.cli import write_table


def main() -> None:
    params = config.load_params()
    written = write_table(params)
    with pipeline.stage_run(params, "report", {"prune": params["prune"]}) as run:
        for path in written.values():
            run.log_artifact(path)
    print(written["table.md"].read_text(), end="")


if __name__ == "__main__":
    config.run_stage(main)
