"""Write <project>/results/run.json: when, on what machine and in how long a pipeline's results
were computed, from the MLflow runs that match its dvc.lock (runs rebuilt by mlflow_sync carry
no timing and are left out). Run it on the machine that ran `dvc repro`, right after it:

    .venv/bin/python tools/record_run.py fashion

span_s runs from the first stage run's start to the last one's end: every stage but
check_params and mlflow_sync (they log no run of their own). `dvc repro` runs stages one after
another, so stages_s gives each stage the time from the previous stage's last run's end to its
own last run's end: its interpreter start-up, imports, work and logging (a stage opens its run
only around its logging, so a run's own duration would miss most of that). After a partial
re-run (say, only the report), the newest runs are timed from the older ones' end: record a
full `dvc repro`.
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

UNTIMED = ("check_params", "mlflow_sync")


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
    args = parser.parse_args()
    os.chdir(args.project)
    params = config.load_any("params.yaml")
    t = params["tracking"]
    stages = [s for s in tracking.lock_stages("dvc.lock") if s not in UNTIMED]
    runs = {s: [r for r in matching if "restored_from" not in r.data.tags]
            for s, matching in tracking.lock_runs(t["uri"], t["experiment"], stages).items()}
    untimed = [s for s, r in runs.items() if not r]
    if untimed:
        raise SystemExit(f"error: {untimed[0]}: its MLflow runs were rebuilt from dvc.lock, with no timing; "
                         "run `dvc repro --force` to time it")
    starts = [r.info.start_time for rs in runs.values() for r in rs]
    ends = sorted((max(r.info.end_time for r in rs), s) for s, rs in runs.items())  # in the order they ran
    previous = [min(starts)] + [end for end, _ in ends[:-1]]
    record = {
        "date": datetime.fromtimestamp(min(starts) / 1000, timezone.utc).strftime("%Y-%m-%d"),
        "machine": f"{cpu_model()}, {os.cpu_count()} CPUs, " + (
            f"GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "no GPU"),
        "span_s": round((ends[-1][0] - min(starts)) / 1000, 1),
        "stages_s": {s: round((end - before) / 1000, 1) for (end, s), before in zip(ends, previous)},
    }
    out = Path(params["paths"]["results"]) / "run.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.project}/{out}: {record['span_s'] / 60:.1f} min from {record['date']}")


if __name__ == "__main__":
    main()
