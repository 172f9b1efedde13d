"""Run the real stages and DVC on a throw-away copy of the project."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from collections.abc import Callable

import pytest
import torch
import yaml
from filelock import FileLock

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

sys.path.insert(0, str(ROOT / "tools"))
from write_pipelines import with_paper_vars  # noqa: E402

# Every device this machine has: tests parametrized over it run on the CPU everywhere (CI) and on
# CUDA too where there is a GPU, against the same references.
DEVICES = [pytest.param(torch.device("cpu"), id="cpu")] + (
    [pytest.param(torch.device("cuda"), id="cuda")] if torch.cuda.is_available() else [])


# Stages in the tests run natively, one thread each (env()): two xdist workers on two cores, and
# stages run in the test process itself (stage_in_process), where torch is loaded long before a
# stage could set up the portable numerics. tests/test_numerics.py runs portable stages apart.
NUMERICS = {"engine.cpu_numerics": "native"}
# One baseline unless a test asks for more: its files in models/b0/ and results/metrics/b0/, and
# its stages run without --baseline (the one there is). tests/test_pipeline.py adds a second.
ONE_BASELINE = {"baselines": [0]}


def copy_project(dst: Path, **overrides) -> Path:
    """A git + DVC repo at dst with the project's code and params.yaml updated by NUMERICS and
    overrides.

    overrides: dotted keys, e.g. {"train.epochs": 1}; a value of None deletes the key.
    """
    overrides = {**NUMERICS, **ONE_BASELINE, **overrides}
    dst.mkdir(parents=True, exist_ok=True)
    for d in ("prunelab", "stages"):
        shutil.copytree(ROOT / d, dst / d, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", dst / "dvc.yaml")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["tracking"]["uri"] = "sqlite:///mlflow.db"  # the project's own: relative, so a copy (copy_of) has its own
    set_params(params, overrides)
    fit_to_overrides(params, overrides)
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], dst)
    run([str(BIN / "dvc"), "init", "-q"], dst)
    # the project's DVC config: analytics off, the offline plots page and the plot templates
    shutil.copy(ROOT / ".dvc" / "config", dst / ".dvc" / "config")
    shutil.copytree(ROOT / ".dvc" / "plots", dst / ".dvc" / "plots")
    return dst


def fit_to_overrides(params: dict, overrides: dict) -> None:
    """Params that name criteria or settings the overrides removed follow them, unless overridden
    themselves: the sweep's schemes, the ablation's setting, the declared contrasts."""
    settings, criteria = params["prune"]["settings"], params["prune"]["criteria"]
    if "sweep" in params and "sweep.schemes" not in overrides:
        params["sweep"]["schemes"] = [s for s in params["sweep"]["schemes"] if s == "inner" or s in settings]
    if "ablation" in params and "ablation.setting" not in overrides and params["ablation"]["setting"] not in settings:
        params["ablation"]["setting"] = next(iter(settings))
    if "compare" in params and "compare.family" not in overrides:  # 'a - b @ setting'
        params["compare"]["family"] = [c for c in params["compare"]["family"]
                                       if {c.split()[0], c.split()[2]} <= set(criteria) and c.split()[4] in settings]


def copy_paper_project(dst: Path, write_vars: bool = True, **overrides) -> Path:
    """copy_project plus paper/, with paper/params.yaml updated by overrides and MLflow in paper/;
    paper/dvc.yaml's vars: rewritten for the new params as tools/write_pipelines.py writes them
    (unless write_vars is false: a user who edited the params and did not run the tool)."""
    copy_project(dst)
    shutil.copytree(ROOT / "paper", dst / "paper",
                    ignore=shutil.ignore_patterns("runs", "mlflow.db", "results", "tmp", "dvc_plots", "dvc.lock"))
    params = yaml.safe_load((ROOT / "paper" / "params.yaml").read_text())
    params["tracking"]["uri"] = "sqlite:///mlflow.db"  # relative to paper/, where its stages run
    set_params(params, {**NUMERICS, **overrides})
    # no anchors in the copy: the resolved values, which DVC and the stages read alike
    (dst / "paper" / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    if write_vars:
        paper_dvc = dst / "paper" / "dvc.yaml"
        paper_dvc.write_text(with_paper_vars(paper_dvc.read_text(), params))
    return dst


def built_once(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """A project build(path) makes once per test session, whichever xdist worker asks first (the
    other waits on a file lock): the expensive reproductions are shared, not repeated per module.
    Read it, never change it: copy_of() gives a copy to change."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "built-once"
    root.mkdir(exist_ok=True)
    path, done = root / name, root / f"{name}.done"
    with FileLock(root / f"{name}.lock"):
        if not done.exists():
            shutil.rmtree(path, ignore_errors=True)
            build(path)
            done.touch()
    return path


def copy_of(project: Path, dst: Path) -> Path:
    """A copy of a built project to change: its files, git and DVC state, and its MLflow store,
    whose runs then keep their artifacts in the copy (MLflow stores their folders' absolute paths)."""
    import sqlite3

    shutil.copytree(project, dst, symlinks=True)
    db = dst / "mlflow.db"
    if db.is_file():
        with sqlite3.connect(db) as con:
            for table, column in (("experiments", "artifact_location"), ("runs", "artifact_uri")):
                con.execute(f"UPDATE {table} SET {column} = replace({column}, ?, ?)", (str(project), str(dst)))
    return dst


def fresh_clone(dst: Path, **overrides) -> Path:
    """The repository's files as a clone has them (tracked, and new files not yet committed),
    committed in a new git repo; params updated by NUMERICS and overrides and committed, as a
    user's edit."""
    files = run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], ROOT).stdout.split()
    for f in files:
        if (ROOT / f).is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dst / f)
    run(["git", "init", "-q"], dst)
    run(["git", "add", "-A"], dst)
    run(["git", "commit", "-qm", "clone"], dst)
    overrides = {**NUMERICS, **ONE_BASELINE, **overrides}
    params = yaml.safe_load((dst / "params.yaml").read_text())
    set_params(params, overrides)
    fit_to_overrides(params, overrides)
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "commit", "-qam", "params"], dst)
    return dst


def set_params(params: dict, overrides: dict) -> None:
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        node = params
        for p in parents:
            node = node[p]
        if value is None:
            del node[leaf]
        else:
            node[leaf] = value


def edit_params(project: Path, **overrides) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    set_params(params, overrides)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def env(project: Path) -> dict:
    e = dict(os.environ)
    # one thread per process: tests run stages side by side on 2 cores, and oversubscribed OpenMP
    # threads spin-wait (several times slower); both sides of every comparison use the same setting.
    # A portable stage pins 2 threads itself: there a waiting thread sleeps instead of spinning
    # (two such stages side by side: 11.5 s instead of 15 s; the bytes do not depend on it)
    e.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    e.update(PATH=f"{BIN}{os.pathsep}{e.get('PATH', '')}", PYTHONPATH=str(project), DVC_NO_ANALYTICS="1",
             MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t",
             GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    e.pop("MLFLOW_TRACKING_URI", None)
    return e


def run(cmd: list[str], project: Path, check: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """cmd in the project (or in cwd, a folder of it such as paper/), importing the project's code."""
    r = subprocess.run(cmd, cwd=cwd or project, env=env(project), capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


def dvc(project: Path, *args: str, check: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return run([str(BIN / "dvc"), *args], project, check, cwd)


def stage(project: Path, name: str, *args: str) -> subprocess.CompletedProcess:
    return run([str(BIN / "python"), f"stages/{name}.py", *args], project, check=False)


def stage_in_process(project: Path, name: str, *args: str) -> tuple[int, str]:
    """Run stages/<name>.py as `python stages/<name>.py args` would, in this process (no interpreter
    start, no imports: milliseconds instead of seconds). Returns (exit code, stderr).

    The script runs as __main__ with project as the working directory and argv set; MLflow logs
    where the project's params say (MLFLOW_TRACKING_URI is unset meanwhile, as env() does).
    """
    import contextlib
    import io
    import runpy

    cwd, argv, uri = Path.cwd(), sys.argv, os.environ.pop("MLFLOW_TRACKING_URI", None)
    err = io.StringIO()
    code = 0
    try:
        os.chdir(project)
        sys.argv = [f"stages/{name}.py", *args]
        with contextlib.redirect_stderr(err):
            runpy.run_path(f"stages/{name}.py", run_name="__main__")
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    finally:
        os.chdir(cwd)
        sys.argv = argv
        if uri is not None:
            os.environ["MLFLOW_TRACKING_URI"] = uri
    return code, err.getvalue()
