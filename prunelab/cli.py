"""`prunelab count` and `prunelab table`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from prunelab import config, counting, models, report
from prunelab.errors import PrunelabError
from prunelab.sparsity import parse_sparsity

TITLE = "CHIP on the default data"


def _shape(text: str) -> tuple[int, int, int]:
    try:
        c, h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected CxHxW such as 3x32x32, got {text!r}") from None
    return c, h, w


def count_command(args: argparse.Namespace) -> None:
    if args.model not in models.ARCHS:
        raise PrunelabError(f"--model: unknown model {args.model!r}; allowed: {', '.join(models.ARCHS)}")
    widths = None
    if args.sparsity is not None:
        try:
            widths = models.pruned_widths(args.model, parse_sparsity(args.sparsity, "--sparsity"))
        except ValueError as e:
            raise PrunelabError(str(e) if str(e).startswith("--sparsity") else f"--sparsity: {e}") from None
    paper_shape, paper_classes = models.paper_input(args.model)
    shape, classes = args.input or paper_shape, args.classes or paper_classes
    model = models.build_model(args.model, widths, shape[0], classes)
    counts = counting.count(model, shape)
    if args.json:
        print(json.dumps(counts))
    else:
        print(f"{args.model} {'x'.join(map(str, shape))}, {classes} classes: params {counts['params']:,}  "
              f"macs {counts['macs']:,}  flops_paper {counts['flops_paper']:,}")


def paper_table_command(args: argparse.Namespace) -> None:
    from prunelab.paper import counts_table

    print(counts_table(), end="")


def _records(params: dict, from_mlflow: bool) -> list[dict]:
    """The evaluate records of every network of params, from the metric files or from MLflow."""
    nets = config.networks(params)
    if from_mlflow:
        t = params["tracking"]
        return report.records_from_mlflow(t["uri"], t["experiment"], [n.name for n in nets])
    metrics_dir = Path(params["paths"]["metrics"]) / "evaluate"
    return report.records_from_files([n.file(metrics_dir, ".json") for n in nets])


def write_table(params: dict, from_mlflow: bool = False) -> dict:
    """Rebuild the results tables from the evaluate metric files or from MLflow: the default
    pipeline's results/, or the paper pipeline's (params from config.load_any)."""
    if config.is_paper(params):
        paper = params
        records = []
        for name in paper["experiments"]:
            params = config.experiment_params(paper, name)
            if params["rows"]:
                records += _records(params, from_mlflow)
        title = "CHIP, reproduced" + (" (smoke mode: synthetic data, not results)" if paper["smoke"] else "")
        return report.write_paper_tables(records, paper["paths"]["results"], title)
    return report.write_tables(_records(params, from_mlflow), params["paths"]["results"], TITLE)


def table_command(args: argparse.Namespace) -> None:
    written = write_table(config.load_any(args.params), args.from_mlflow)
    for path in written.values():
        print(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="prunelab", description="Reproducible structured pruning of CNNs.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("count", help="params, MACs and paper-convention FLOPs of a (pruned) model")
    p.add_argument("--model", required=True, help=f"one of {', '.join(models.ARCHS)}")
    p.add_argument("--sparsity", help="CHIP rate string such as '[0.]+[0.15]*2+[0.4]*27' (default: unpruned)")
    p.add_argument("--input", type=_shape, help="input CxHxW (default: the paper's, 3x32x32 or 3x224x224)")
    p.add_argument("--classes", type=int, help="number of classes (default: the paper's, 10 or 1000)")
    p.add_argument("--json", action="store_true", help='print {"params", "macs", "flops_paper"} as JSON')
    p.set_defaults(func=count_command)
    pt = sub.add_parser("paper-table", help="CHIP's rows with params, MACs and FLOPs computed from the architectures")
    pt.set_defaults(func=paper_table_command)
    t = sub.add_parser("table", help="rebuild results/table.{md,tex,csv}")
    t.add_argument("--params", default="params.yaml", help="params.yaml, or paper/params.yaml run from paper/")
    t.add_argument("--from-mlflow", action="store_true", help="from the MLflow runs instead of the metric files")
    t.set_defaults(func=table_command)
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except PrunelabError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
