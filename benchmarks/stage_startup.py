"""What a stage process spends before its work: each piece timed in fresh interpreters (median of
`--repeats`), then every stage script's own start-up (`--help`: its imports and argument parsing).

Until 2026-11-30 every short stage also imported MLflow and opened its SQLite store (to log its
run) and scikit-learn (to read the digits); the evaluate and prune stages imported pandas (for one
percentage). They no longer do: mlflow_sync logs their runs, the digits are read from
scikit-learn's CSV file directly, and the percentage lives in prunelab.counting.

    .venv/bin/python benchmarks/stage_startup.py
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES_WITH_ARGUMENTS = ("train_baseline", "extract_features", "score", "prune", "finetune", "evaluate")

PIECES = {
    "python alone": "pass",
    "import torch": "import torch",
    "import pandas": "import pandas",
    "import mlflow": "import mlflow",
    "import mlflow + open a SQLite store": "import mlflow, sys; mlflow.tracking.MlflowClient(tracking_uri=f'sqlite:///{sys.argv[1]}/m.db').search_experiments()",
    "digits through scikit-learn": "from sklearn.datasets import load_digits; load_digits()",
    "digits as prunelab reads them": "from prunelab.data import load_digits; load_digits()",
}


def seconds(args: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(args, cwd=ROOT, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print("| piece | seconds |\n|---|---:|")
        for name, code in PIECES.items():
            print(f"| {name} | {seconds([sys.executable, '-c', code, tmp], args.repeats):.2f} |", flush=True)
    print("\n| stage script (`--help`) | seconds |\n|---|---:|")
    for stem in STAGES_WITH_ARGUMENTS:  # the others take no arguments: --help would run them
        print(f"| {stem} | {seconds([sys.executable, f'stages/{stem}.py', '--help'], args.repeats):.2f} |", flush=True)


if __name__ == "__main__":
    main()
