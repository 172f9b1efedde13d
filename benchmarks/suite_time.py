"""Where the test suite's time goes: runs pytest (the project's options: 2 workers) and prints the
wall time, then each test file's summed time (set-up, call and tear-down of its tests, fixtures
included, as pytest's JUnit report counts them) and the slowest tests, so that the next slow test
is seen when it is added.

    .venv/bin/python benchmarks/suite_time.py [--top 15] [pytest arguments, e.g. -m "not slow"]

Summed times exceed the wall time when the two workers overlap; a file whose sum nears the wall
time is the suite's critical path (xdist's --dist loadfile keeps a file on one worker).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--top", type=int, default=15, help="how many of the slowest tests to list")
    args, pytest_args = parser.parse_known_args()
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "junit.xml"
        start = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
                            *pytest_args], cwd=ROOT)
        wall = time.perf_counter() - start
        cases = ET.parse(report).getroot().iter("testcase")
        tests = [(c.get("classname", "").replace(".", "/") + ".py", c.get("name", ""), float(c.get("time", 0)),
                  "failed" if c.find("failure") is not None or c.find("error") is not None else
                  "skipped" if c.find("skipped") is not None else "passed") for c in cases]
    by_file: dict[str, list[float]] = defaultdict(list)
    for file, _, seconds, _ in tests:
        by_file[file].append(seconds)
    counts = {s: sum(1 for t in tests if t[3] == s) for s in ("passed", "failed", "skipped")}
    print(f"\n{len(tests)} tests ({', '.join(f'{n} {s}' for s, n in counts.items() if n)}) in {wall:.0f} s wall "
          f"({wall / 60:.1f} min), pytest exit code {r.returncode}\n")
    print(f"{'file':<44} {'tests':>5} {'seconds':>8} {'share':>6}")
    total = sum(sum(v) for v in by_file.values()) or 1.0
    for file, times in sorted(by_file.items(), key=lambda kv: -sum(kv[1])):
        print(f"{file:<44} {len(times):>5} {sum(times):>8.1f} {100 * sum(times) / total:>5.1f}%")
    print(f"\nslowest {args.top} tests:")
    for file, name, seconds, _ in sorted(tests, key=lambda t: -t[2])[: args.top]:
        print(f"{seconds:>8.1f} s  {file}::{name}")
    sys.exit(r.returncode)


if __name__ == "__main__":
    main()
