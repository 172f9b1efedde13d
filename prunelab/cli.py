"""`prunelab count`, `prunelab paper-table`, `prunelab table` and `prunelab check`."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from importlib.metadata import version
from pathlib import Path

from prunelab import config, counting, models, report, significance, tracking
from prunelab.errors import PrunelabError
from prunelab.sparsity import parse_sparsity


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
    try:
        models.check_input(args.model, shape[1], shape[2])
    except ValueError as e:
        raise PrunelabError(f"--input: {e}") from None
    model = models.build_model(args.model, widths, shape[0], classes)
    counts = counting.count(model, shape)
    if args.json:
        print(json.dumps(counts))
    else:
        print(f"{args.model} {'x'.join(map(str, shape))}, {classes} classes: params {counts['params']:,}  "
              f"macs {counts['macs']:,}  flops_paper {counts['flops_paper']:,}")


def paper_table_command(args: argparse.Namespace) -> None:
    from prunelab.paper import counts_table, snpfi_counts_table

    print(counts_table())
    print(snpfi_counts_table(), end="")


def _records(params: dict, from_mlflow: bool) -> list[dict]:
    """The evaluate records of every network of params, with its measured latencies, from the
    metric files or from the MLflow runs that match dvc.lock."""
    nets = config.networks(params)
    if from_mlflow:
        t = params["tracking"]
        runs = tracking.lock_runs(t["uri"], t["experiment"], [f"evaluate@{n.name}" for n in nets])
        newest = {stage: matching[0] for stage, matching in runs.items()}  # same hashes, same result
        for stage, run in newest.items():
            print(f"{stage}: MLflow run {run.info.run_id}", file=sys.stderr)
        # the per-image results are not tags: they come from the record the run carries as an artifact
        records = []
        for n in nets:
            run = newest[f"evaluate@{n.name}"]
            logged = tracking.artifact_json(t["uri"], run, f"{n.name}.json")
            records.append({**run.data.tags, **run.data.metrics,
                            **{k: logged[k] for k in significance.PER_IMAGE_FIELDS if k in logged}})
        return records
    metrics_dir = Path(params["paths"]["metrics"])  # each network's record, and what was measured apart
    evaluated = report.records_from_files([n.file(metrics_dir / "evaluate", ".json") for n in nets])
    measured = report.records_from_files([n.file(metrics_dir / "latency", ".json") for n in nets])
    return [{**record, **latency} for record, latency in zip(evaluated, measured)]


def _curves(params: dict, from_mlflow: bool) -> list[dict]:
    """Fine-tuning top-1 per epoch of every network and seed (report.CURVE_FIELDS), from the
    curve files or from the history of the MLflow runs that match dvc.lock."""
    nets, seeds = config.networks(params), config.seeds(params)
    rows = []
    if from_mlflow:
        t = params["tracking"]
        per_seed = tracking.lock_seed_runs(t["uri"], t["experiment"], [f"finetune@{n.name}" for n in nets])
        for net in nets:
            for seed in seeds:
                history = per_seed[f"finetune@{net.name}"].get(str(seed))
                if history is None:
                    raise PrunelabError(f"finetune@{net.name}: no MLflow run of seed {seed} matches dvc.lock")
                rows += [{"setting": net.setting, "criterion": net.criterion, "seed": seed, "epoch": step,
                          "top1": value} for step, value in history]
        return rows
    for net in nets:
        for seed in seeds:
            path = config.finetuned_file(params, net, seed, Path(params["paths"]["metrics"]) / "finetune", ".csv")
            if not path.is_file():
                raise PrunelabError(f"{path}: no such curve file; run `dvc repro` first")
            with path.open() as f:
                rows += [{"setting": net.setting, "criterion": net.criterion, "seed": seed, "epoch": int(r["epoch"]),
                          "top1": float(r["top1"])} for r in csv.DictReader(f)]
    return rows


def write_table(params: dict, from_mlflow: bool = False) -> dict:
    """Rebuild the results tables from the evaluate metric files or from the MLflow runs that
    match dvc.lock: the default pipeline's results/, or the paper pipeline's (params from
    config.load_any)."""
    if config.is_paper(params):
        paper = params
        records = []
        for name in paper["experiments"]:
            params = config.experiment_params(paper, name)
            if params["rows"]:
                records += _records(params, from_mlflow)
        rank = {name: i for i, name in enumerate(config.paper_networks(paper))}  # rows' order, each row's criteria in turn
        records.sort(key=lambda r: rank[f"{r['setting']}-{r['criterion']}"])
        title = "CHIP and SNPFI, reproduced" + (" (smoke mode: synthetic data, not results)" if paper["smoke"] else "")
        return report.write_paper_tables(records, paper["paths"]["results"], title)
    title = (f"{report.MODEL_NAMES.get(params['model']['arch'], params['model']['arch'])} on "
             f"{report.DATA_NAMES.get(params['data']['name'], params['data']['name'])}: pruning criteria compared")
    return report.write_tables(_records(params, from_mlflow), params["paths"]["results"], title,
                               _curves(params, from_mlflow))


def check_command(args: argparse.Namespace) -> None:
    """The params check of the check_params stage, before DVC reads the file: DVC expands
    dvc.yaml's templates (engine.launcher, prune.criteria, prune.settings) before any stage runs,
    and a wrong type there gets DVC's "unexpected error - 'Value' object is not iterable", which
    names no key; `make repro` and `make pull` run this first."""
    params = config.load_any(args.params)
    if config.is_paper(params):
        config.check_paper_dvc_yaml(params, Path(args.params).parent / "dvc.yaml")
    print(f"{args.params}: passed")


def table_command(args: argparse.Namespace) -> None:
    written = write_table(config.load_any(args.params), args.from_mlflow)
    for path in written.values():
        print(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="prunelab", description="Reproducible structured pruning of CNNs.")
    parser.add_argument("--version", action="version", version=f"prunelab {version('prunelab')}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("count", help="params, MACs and paper-convention FLOPs of a (pruned) model")
    p.add_argument("--model", required=True, help=f"one of {', '.join(models.ARCHS)}")
    p.add_argument("--sparsity", help="CHIP rate string such as '[0.]+[0.15]*2+[0.4]*27' (default: unpruned)")
    p.add_argument("--input", type=_shape, help="input CxHxW (default: the paper's, 3x32x32 or 3x224x224)")
    p.add_argument("--classes", type=int, help="number of classes (default: the paper's, 10 or 1000)")
    p.add_argument("--json", action="store_true", help='print {"params", "macs", "flops_paper"} as JSON')
    p.set_defaults(func=count_command)
    pt = sub.add_parser("paper-table", help="CHIP's rows and SNPFI's systems at 60%%: params, MACs and FLOPs computed from the architectures")
    pt.set_defaults(func=paper_table_command)
    t = sub.add_parser("table", help="rebuild the report stage's outputs from the tracked results",
                       description="Rebuild what the report stage writes: results/table.{md,tex,csv}, "
                                   "comparison.md, summary.json, latency.{md,csv}, finetune_curves.csv and "
                                   "top1_vs_macs.{csv,png} (the paper pipeline: its table.{md,tex,csv}, "
                                   "comparison.md, summary.json and latency.{md,csv}), from the evaluate metric files "
                                   "or from the MLflow runs that match dvc.lock. Overwrites those files.")
    t.add_argument("--params", default="params.yaml", help="params.yaml, or paper/params.yaml run from paper/")
    t.add_argument("--from-mlflow", action="store_true",
                   help="from the MLflow runs that match dvc.lock (named on stderr) instead of the metric files")
    t.set_defaults(func=table_command)
    c = sub.add_parser("check", help="check a params file as the check_params stage does, before DVC reads it",
                       description="Check a params file as the check_params stage does (one line naming the key, "
                                   "exit 2), before DVC expands dvc.yaml's templates with it.")
    c.add_argument("--params", default="params.yaml", help="params.yaml, fashion/params.yaml or paper/params.yaml")
    c.set_defaults(func=check_command)
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except PrunelabError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
