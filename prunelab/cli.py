"""`prunelab count`, `prunelab paper-table`, `prunelab table` and `prunelab check`."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from importlib.metadata import version
from pathlib import Path

from prunelab import ablation, config, correctness, counting, models, report, tracking
from prunelab.checkpoint import atomic_write
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


def _stage(params: dict, stage: str, net: config.Network) -> str:
    """DVC's name of a network's stage: evaluate@0-chip-r2 (baseline 0), the paper's evaluate@0-resnet56-r1-chip."""
    return f"{stage}@{params['baseline']}-{net.name}"


def _records(params: dict, from_mlflow: bool) -> list[dict]:
    """The evaluate records of every network of params (resolved: one baseline's), with its
    measured latencies, from the metric files or from the MLflow runs that match dvc.lock."""
    nets = config.networks(params)
    if from_mlflow:
        t = params["tracking"]
        runs = tracking.lock_runs(t["uri"], t["experiment"], [_stage(params, "evaluate", n) for n in nets])
        newest = {stage: matching[0] for stage, matching in runs.items()}  # same hashes, same result
        for stage, run in newest.items():
            print(f"{stage}: MLflow run {run.info.run_id}", file=sys.stderr)
        # the per-image results are not tags: they come from the record the run carries as an artifact
        records = []
        for n in nets:
            run = newest[_stage(params, "evaluate", n)]
            logged = tracking.artifact_json(t["uri"], run, f"{n.name}.json")
            records.append({**run.data.tags, **run.data.metrics,
                            **{k: logged[k] for k in correctness.PER_IMAGE_FIELDS if k in logged}})
        return records
    metrics_dir = Path(params["paths"]["metrics"])  # each network's record, and what was measured apart
    evaluated = report.records_from_files([n.file(metrics_dir / "evaluate", ".json") for n in nets])
    measured = report.records_from_files([n.file(metrics_dir / "latency", ".json") for n in nets])
    return [{**record, **latency} for record, latency in zip(evaluated, measured)]


def _curves(params: dict, from_mlflow: bool) -> list[dict]:
    """Fine-tuning top-1 per epoch of every network and seed of params (resolved: one baseline's;
    report.CURVE_FIELDS), from the curve files or from the history of the MLflow runs that match
    dvc.lock."""
    nets, seeds, baseline = config.networks(params), config.seeds(params), params["baseline"]
    rows = []
    if from_mlflow:
        t = params["tracking"]
        per_seed = tracking.lock_seed_runs(t["uri"], t["experiment"], [_stage(params, "finetune", n) for n in nets])
        for net in nets:
            for seed in seeds:
                history = per_seed[_stage(params, "finetune", net)].get(str(seed))
                if history is None:
                    raise PrunelabError(f"{_stage(params, 'finetune', net)}: no MLflow run of seed {seed} matches dvc.lock")
                rows += [{"setting": net.setting, "criterion": net.criterion, "baseline": baseline, "seed": seed,
                          "epoch": step, "top1": value} for step, value in history]
        return rows
    for net in nets:
        for seed in seeds:
            path = config.finetuned_file(params, net, seed, Path(params["paths"]["metrics"]) / "finetune", ".csv")
            if not path.is_file():
                raise PrunelabError(f"{path}: no such curve file; run `dvc repro` first")
            with path.open() as f:
                rows += [{"setting": net.setting, "criterion": net.criterion, "baseline": baseline, "seed": seed,
                          "epoch": int(r["epoch"]), "top1": float(r["top1"])} for r in csv.DictReader(f)]
    return rows


def write_table(params: dict, from_mlflow: bool = False) -> dict:
    """Rebuild the results tables from the evaluate metric files or from the MLflow runs that
    match dvc.lock: the default pipeline's results/, or the paper pipeline's (params from
    config.load_any)."""
    if config.is_paper(params):
        paper = params
        records = []  # every network of every baseline: the tables pair and average over baselines
        for baseline in paper["baselines"]:
            for name in paper["experiments"]:
                params = config.experiment_params(paper, name, baseline)
                if params["rows"]:
                    records += _records(params, from_mlflow)
        rank = {name: i for i, name in enumerate(config.paper_networks(paper))}  # rows' order, each row's criteria in turn
        records.sort(key=lambda r: rank[f"{r['setting']}-{r['criterion']}"])
        title = "CHIP and SNPFI, reproduced" + (" (smoke mode: synthetic data, not results)" if paper["smoke"] else "")
        return report.write_paper_tables(records, paper["paths"]["results"], title)
    title = (f"{report.MODEL_NAMES.get(params['model']['arch'], params['model']['arch'])} on "
             f"{report.DATA_NAMES.get(params['data']['name'], params['data']['name'])}: pruning criteria compared")
    per_baseline = [config.resolve(params, b) for b in params["baselines"]]
    records = [r for p in per_baseline for r in _records(p, from_mlflow)]
    curves = [c for p in per_baseline for c in _curves(p, from_mlflow)]
    written = report.write_tables(records, params["paths"]["results"], title, curves, config.contrasts(params))
    if "ablation" in params:  # each baseline's ablation.csv (a tracked file; not in MLflow's runs as a table)
        rows = {str(p["baseline"]): ablation.read_csv(Path(p["paths"]["metrics"]) / "ablation.csv") for p in per_baseline}
        results = Path(params["paths"]["results"])
        setting = params["ablation"]["setting"]
        atomic_write(results / "ablation.md", lambda tmp: Path(tmp).write_text(ablation.markdown(rows, title, setting)))
        ablation.plot_png(rows, results / "ablation.png", f"{title}\ncriterion, widths and recovery apart, setting {setting}")
        written.update({"ablation.md": results / "ablation.md", "ablation.png": results / "ablation.png"})
    return written


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
