"""Write <project>/results/run.json: when, on what machine and in how long a pipeline's results
were computed, from the times its stages wrote their outputs. Run it on the machine that ran
`dvc repro`, right after it:

    .venv/bin/python tools/record_run.py fashion
    .venv/bin/python tools/record_run.py fashion --name run-b3.json   # a run that added baseline 3

`dvc repro` runs stages one after another, and a stage's outputs are written (and cached by
DVC) as it ends, so a stage's end is the newest modification time among its dvc.lock outputs,
and stages_s gives each stage the time from the previous stage's end to its own: interpreter
start-up, imports, work and DVC's caching. The clock starts when check_params (the first stage)
ends; span_s runs from there to the last stage's end (mlflow_sync writes no output and is not
timed). The run is the stages that ended after check_params: all of them after `dvc repro
--force`, only the new baseline's (and those that read every baseline) after `baselines` gained
one, which re-runs check_params. Stages that ended before it, or whose outputs are absent
(`dvc repro --allow-missing` on a clone), belong to earlier runs. After a checkout (which
rewrites files) the times mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path

import torch

from prunelab import config, tracking

UNTIMED = ("mlflow_sync",)  # no outputs


def end_time(entry: dict) -> float | None:
    """The newest modification time (s) among a dvc.lock entry's outputs, folders expanded;
    None when they are absent (a stage of an earlier run, skipped by --allow-missing)."""
    times = []
    for out in entry.get("outs", []):
        path = Path(out["path"])
        files = [f for f in path.rglob("*") if f.is_file()] if path.is_dir() else [path]
        times += [f.stat().st_mtime for f in files if f.is_file()]
    return max(times) if times else None


def breakdown(record: dict) -> str:
    """Markdown: the stages of a run.json grouped by kind (the name before '@'), in the order
    they ran: how many, their seconds in all, the mean per process."""
    kinds: dict[str, list[float]] = {}
    for name, seconds in record["stages_s"].items():
        kinds.setdefault(name.partition("@")[0], []).append(seconds)
    lines = ["| stage | processes | seconds | per process |", "|---|---:|---:|---:|"]
    lines += [f"| `{kind}` | {len(times)} | {sum(times):.0f} | {sum(times) / len(times):.1f} |"
              for kind, times in kinds.items()]
    lines.append(f"| all | {len(record['stages_s'])} | {record['span_s']:.0f} | |")
    return "\n".join(lines)


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project", help="a pipeline's folder, e.g. fashion")
    parser.add_argument("--name", default="run.json", help="the record's file name in paths.results (default: run.json)")
    args = parser.parse_args()
    if Path(args.name).name != args.name or not args.name.endswith(".json"):
        raise SystemExit(f"error: --name: {args.name!r} is not a file name ending in .json")
    os.chdir(args.project)
    params = config.load_any("params.yaml")
    lock = tracking.lock_stages("dvc.lock")
    timed = [name for name in lock if name not in UNTIMED]
    ends = {name: end_time(lock[name]) for name in timed}
    if ends.get("check_params") is None:
        raise SystemExit("error: check_params: its output is missing; run `dvc repro` first")
    origin = ends["check_params"]
    ran = sorted((end, name) for name, end in ends.items() if end is not None and end > origin)
    if not ran:
        raise SystemExit("error: no stage ended after check_params: nothing to record")
    previous = [origin] + [end for end, _ in ran[:-1]]
    record = {
        "date": datetime.fromtimestamp(origin, timezone.utc).strftime("%Y-%m-%d"),
        "machine": f"{cpu_model()}, {os.cpu_count()} CPUs, " + (
            f"GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "no GPU"),
        "span_s": round(ran[-1][0] - origin, 1),
        "stages_s": {name: round(end - before, 1) for (end, name), before in zip(ran, previous)},
    }
    out = Path(params["paths"]["results"]) / args.name
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.project}/{out}: {len(ran)} stages, {record['span_s'] / 60:.1f} min from {record['date']}")
    print(breakdown(record))


if __name__ == "__main__":
    main()
