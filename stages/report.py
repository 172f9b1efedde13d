"""report: the results tables from the evaluate metric files (same bytes as `prunelab table
--from-mlflow` builds from the MLflow runs): results/table.{md,tex,csv}, the criteria
comparison, the top-1 summary DVC lists as metrics, the fine-tuning curves and the
top-1-vs-MACs plot; for the paper pipeline, its table in the paper's layout."""

from prunelab import numerics

numerics.prepare()  # first, before torch and numpy load: the variables engine.cpu_numerics sets

from prunelab import config, pipeline
from prunelab.cli import write_table


def main() -> None:
    pipeline.no_arguments(__doc__)
    written = write_table(config.load_any("params.yaml"))
    print(written["table.md"].read_text(), end="")


if __name__ == "__main__":
    config.run_stage(main)
