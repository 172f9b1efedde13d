"""MLflow: one run per stage execution, named as the DVC stage, with params, metrics and tags.

Runs are tied to what produced them. A stage run records the md5 of every file it wrote
(`outs_md5`); `mlflow_sync`, DVC's last stage, then matches each dvc.lock entry to its run by
those files and tags the run with the entry's hash (`dvc_lock_hash`) and its dependencies'
md5s. A stage that DVC skipped, or one that logs nothing itself (the stages that take seconds:
MLflow's import alone takes 2 s), gets a run built from the tracked files (`restored_from:
dvc.lock`). So MLflow holds every result the workspace holds, and a table
built from MLflow uses exactly the runs of the workspace's dvc.lock.

MLflow is imported lazily (it is slow to import) and with its telemetry switched off.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prunelab.errors import PrunelabError

# The MLflow UI opens an experiment of this kind on its runs table (an experiment without the
# tag is shown as a GenAI experiment, on an empty traces overview).
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
# A tracking server that does not answer fails the stage within about this many seconds.
SERVER_TIMEOUT_S = 5
RESTORED = "dvc.lock"  # tag restored_from of a run rebuilt from the tracked files


class TrackingError(PrunelabError):
    """The tracking store cannot be used as configured; the message names tracking.uri."""


def _mlflow():
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    # fail fast on a tracking server that does not answer: no retries with back-off
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(SERVER_TIMEOUT_S))
    import mlflow

    # "Creating initial MLflow database tables...": two INFO lines on stderr whenever a stage
    # opens a new store, which would bury a stage's own one-line messages
    for name in ("mlflow.store.db.utils", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return mlflow


def git_commit() -> str:
    """HEAD's commit, suffixed '-dirty' when tracked files differ from it; 'unknown' outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """{'train': {'lr': 0.1}} -> {'train.lr': 0.1}"""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


# MLFLOW_TRACKING_URI as the process started with it. mlflow.set_tracking_uri writes that
# variable too (for subprocesses), so reading it later would give back our own last choice.
_USER_URI = os.environ.get("MLFLOW_TRACKING_URI")


def tracking_uri(configured: str) -> str:
    """MLFLOW_TRACKING_URI, when the process was started with it, overrides the params' tracking.uri.

    A relative SQLite path is the workspace's: relative to the folder of the params file, which
    is where DVC runs the stages, and where `dvc exp run --queue` and `--temp` run them in a
    copy of the repository under .dvc/tmp/exps/, the workspace that copy was made from (DVC
    names it in DVC_ROOT). Else a queued experiment would log into a store of its own that DVC
    deletes with the copy.
    """
    uri = _USER_URI or configured
    db = _sqlite_file(uri)
    if db is None or db.is_absolute():
        return uri
    return f"sqlite:///{_workspace(Path.cwd()) / db}"


def _workspace(cwd: Path) -> Path:
    """cwd, or where it stands in the workspace a DVC experiment's copy was made from: DVC sets
    DVC_ROOT, for every stage, to its repository's root, and for a queued experiment to the
    original repository's."""
    root = os.environ.get("DVC_ROOT")
    if not root:
        return cwd
    here = next((d for d in (cwd, *cwd.parents) if (d / ".dvc").is_dir()), None)
    return Path(root) / cwd.relative_to(here) if here is not None else cwd


def _sqlite_file(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def _not_an_mlflow_store(db: Path) -> str | None:
    """Why an existing SQLite file cannot be MLflow's store, read with the standard library (no
    MLflow import): not a database, or no MLflow schema in it; None if it looks like one."""
    import sqlite3

    try:
        # read-write, never created (the file exists): a stage killed mid-transaction leaves a hot
        # journal that the first reader must roll back, which a read-only connection cannot do
        # ("attempt to write a readonly database"); MLflow would roll it back the same way
        con = sqlite3.connect(f"file:{db}?mode=rw", uri=True, timeout=5)
        try:
            tables = {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        return str(e)
    if tables and not {"alembic_version", "experiments", "runs"} <= tables:
        return f"a SQLite database without MLflow's tables ({', '.join(sorted(tables)[:4])}...)"
    return None


def check_store(configured: str, must_exist: bool = False, open_store: bool = False) -> str:
    """The tracking URI, once its store answers; else TrackingError naming tracking.uri.

    A server gets one request with a short timeout and no retries. A SQLite file is not
    created when must_exist (a reader such as `prunelab table --from-mlflow`); one that exists
    must be a SQLite database with MLflow's tables. open_store (the params check, before any
    stage runs) also opens it with MLflow as the stages will, schema check included.
    """
    uri = tracking_uri(configured)
    db = _sqlite_file(uri)
    if db is not None:
        if must_exist and not db.is_file():
            raise TrackingError(f"tracking.uri: {uri} does not exist; run `dvc repro` first")
        if not db.parent.is_dir():
            raise TrackingError(f"tracking.uri: {uri}: no folder {db.parent}")
        why = _not_an_mlflow_store(db) if db.is_file() else None
        if why:
            raise TrackingError(f"tracking.uri: {uri} is not an MLflow store ({why[:200]}); move the file away "
                                "or point tracking.uri elsewhere")
    if (open_store and db is not None) or uri.startswith(("http://", "https://")):
        mlflow = _mlflow()
        try:
            mlflow.tracking.MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
        except Exception as e:  # noqa: BLE001 - any failure of the one request means "does not answer"
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            verb = "cannot be opened" if db is not None else "does not answer"
            raise TrackingError(f"tracking.uri: {uri} {verb} ({first})") from None
    return uri


def files_md5(paths: list[str | Path]) -> str:
    """One md5 over the given output files, folders expanded to their files: a stage's result.

    (relative path, file md5) pairs, sorted, so the same files give the same digest wherever
    they were written.
    """
    entries = []
    for p in map(Path, paths):
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        for f in files:
            entries.append(f"{os.path.normpath(f)}:{hashlib.md5(f.read_bytes()).hexdigest()}")
    return hashlib.md5("\n".join(sorted(entries)).encode()).hexdigest()


@contextmanager
def _sending(uri: str) -> Iterator[None]:
    """A store that stops answering mid-stage (a server killed, a full disk under SQLite) is one
    line naming tracking.uri, not MLflow's traceback. The stages save their work before they
    send it (pipeline.ResumableTraining), so a re-run goes on from there and fills in the run."""
    try:
        yield
    except TrackingError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever MLflow or its HTTP client raise: the store failed
        if _interrupted(e):  # Ctrl-C inside SQLAlchemy, which then fails closing its transaction
            raise KeyboardInterrupt from None
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise TrackingError(f"tracking.uri: {uri} stopped answering ({first}); the work done is saved: run "
                            "`dvc repro` again once the store answers, and the stage goes on from there") from None


def _interrupted(e: BaseException) -> bool:
    """Whether a KeyboardInterrupt is among the exceptions e was raised while handling."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return True
        seen.add(id(e))
        e = e.__context__ or e.__cause__
    return False


class StageRun:
    """The MLflow run of one stage execution; every call that fails is a TrackingError."""

    def __init__(self, mlflow, run, uri: str):
        self._mlflow, self.run_id, self.uri = mlflow, run.info.run_id, uri

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        numeric = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        with _sending(self.uri):
            self._mlflow.log_metrics(numeric, step=step)

    def logged_steps(self, key: str) -> set[int]:
        """The steps of metric `key` the run already holds (a resumed run's, to fill in the rest)."""
        with _sending(self.uri):
            return {m.step for m in self._mlflow.tracking.MlflowClient().get_metric_history(self.run_id, key)}

    def log_artifact(self, path) -> None:
        with _sending(self.uri):
            self._mlflow.log_artifact(str(path))

    def set_tags(self, tags: dict[str, Any]) -> None:
        with _sending(self.uri):
            self._mlflow.set_tags({k: str(v) for k, v in tags.items()})

    def log_dataset(self, name: str, digest: str, source: str | None) -> None:
        """The data set as the run's input: the runs table's Dataset column (name and digest)."""
        with _sending(self.uri):
            _log_dataset(self._mlflow, name, digest, source)

    def record_outputs(self, paths: list[str | Path]) -> None:
        """Tag the run with the md5 of the files it wrote: mlflow_sync finds it by them."""
        with _sending(self.uri):
            self._mlflow.set_tag("outs_md5", files_md5(paths))


def _log_dataset(mlflow, name: str, digest: str, source: str | None) -> None:
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.sources import CodeDatasetSource, LocalArtifactDatasetSource  # built at import

    src = LocalArtifactDatasetSource(str(Path(source).resolve())) if source else CodeDatasetSource(
        {"loader": "prunelab.data.load_dataset"})
    mlflow.log_input(MetaDataset(src, name=name, digest=digest[:36]), context="data")


def _experiment_id(client, name: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is None:
        return client.create_experiment(name, tags=EXPERIMENT_KIND)
    if exp.tags.get("mlflow.experimentKind") != EXPERIMENT_KIND["mlflow.experimentKind"]:
        client.set_experiment_tag(exp.experiment_id, *next(iter(EXPERIMENT_KIND.items())))
    return exp.experiment_id


def experiment_id(uri: str, experiment: str) -> str:
    """The experiment's id in the store (the MLflow UI's address names it)."""
    mlflow = _mlflow()
    return _experiment_id(mlflow.tracking.MlflowClient(tracking_uri=tracking_uri(uri)), experiment)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def close_dead_runs(client, experiment_id: str) -> list[str]:
    """Mark KILLED every RUNNING run started on this machine by a process that is gone.

    A stage killed by a signal (SIGKILL, OOM, power) cannot close its own run; the next stage
    does. Returns the closed run ids.
    """
    closed = []
    host = socket.gethostname()
    for r in client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000):
        pid = r.data.tags.get("pid", "")
        if r.data.tags.get("host") == host and pid.isdigit() and not _alive(int(pid)):
            client.set_terminated(r.info.run_id, status="KILLED")
            closed.append(r.info.run_id)
    return closed


@contextmanager
def stage_run(run_name: str, uri: str, experiment: str, params: dict, tags: dict,
              run_id: str | None = None) -> Iterator[StageRun]:
    """An MLflow run named after the DVC stage (e.g. 'prune@chip-r1'), closed even on error.

    run_id continues an existing run (a resumed stage keeps one metric history). A store that
    fails, at the start, during the stage or at its end, is one TrackingError line (_sending).
    """
    mlflow = _mlflow()
    uri = tracking_uri(uri)
    with _sending(uri):
        mlflow.set_tracking_uri(uri)
        client = mlflow.tracking.MlflowClient()
        experiment_id = _experiment_id(client, experiment)
        mlflow.set_experiment(experiment_id=experiment_id)
        close_dead_runs(client, experiment_id)
        if run_id is not None:
            try:
                client.get_run(run_id)
            except mlflow.exceptions.MlflowException:  # gone (another tracking URI, deleted): start afresh
                run_id = None
        run = mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name)
        mlflow.log_params({k: str(v) for k, v in flatten(params).items()})
        mlflow.set_tags({"git_commit": git_commit(), "host": socket.gethostname(), "pid": str(os.getpid()),
                         "dvc_stage": run_name, **({"dvc_exp_name": os.environ["DVC_EXP_NAME"]}
                                                   if os.environ.get("DVC_EXP_NAME") else {}),
                         **{k: str(v) for k, v in tags.items()}})
    try:
        yield StageRun(mlflow, run, uri)
    except BaseException:  # the run ends FAILED, as MLflow's own context manager ends it; a dead store cannot
        try:
            mlflow.end_run(status="FAILED")
        except Exception:  # noqa: BLE001, S110 - the store is what failed: the next stage closes the run (close_dead_runs)
            pass
        raise
    with _sending(uri):
        mlflow.end_run()


def tag_runs(uri: str, run_ids: list[str], tags: dict[str, str]) -> None:
    """Set tags on finished runs (a stage whose outputs several runs wrote, one per seed)."""
    client = _mlflow().tracking.MlflowClient(tracking_uri=tracking_uri(uri))
    for run_id in run_ids:
        for k, v in tags.items():
            client.set_tag(run_id, k, str(v))


# --- dvc.lock <-> MLflow runs


def lock_stages(lock_file: str | Path = "dvc.lock") -> dict[str, dict]:
    """{DVC stage name: its dvc.lock entry (cmd, deps, params, outs)}; {} without a lock."""
    import yaml

    path = Path(lock_file)
    if not path.is_file():
        return {}
    return (yaml.safe_load(path.read_text()) or {}).get("stages", {})


def lock_hash(entry: dict) -> str:
    """One hash of a dvc.lock entry: the command, every dependency's and output's md5 and the
    params it read. Two runs with the same hash computed the same result."""
    return hashlib.sha256(json.dumps(entry, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _outs_present(entry: dict) -> bool:
    return bool(entry.get("outs")) and all(Path(o["path"]).exists() for o in entry["outs"])


def _dep_tags(entry: dict) -> dict[str, str]:
    """dvc.deps.<path> = md5 of each dependency, as dvc.lock records it."""
    return {f"dvc.deps.{d['path']}": d.get("md5", "") for d in entry.get("deps", [])}


def _search(client, experiment_id: str, dvc_stage: str, extra: str = "") -> list:
    flt = f"tags.dvc_stage = '{dvc_stage}' and attributes.status = 'FINISHED'" + extra
    return client.search_runs([experiment_id], filter_string=flt, order_by=["attributes.start_time DESC"],
                              max_results=1000)


def sync_lock(uri: str, experiment: str, restore, lock_file: str | Path = "dvc.lock",
              skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Make MLflow hold a finished run for every dvc.lock stage whose outputs are here.

    For each stage (but `skip`): a run already tagged with the entry's lock hash is kept; else
    the runs that wrote exactly these output files (outs_md5) are tagged with it; else
    restore(stage name, entry) -> [(params, [(step, metrics)], tags, artifacts, dataset)] rebuilds
    its runs from the tracked files, tagged restored_from=dvc.lock (dataset: (name, digest,
    source) of the data set the stage read, or None). Returns
    {stage: 'kept' | 'linked' | 'restored'}.
    """
    mlflow = _mlflow()
    mlflow.set_tracking_uri(tracking_uri(uri))
    client = mlflow.tracking.MlflowClient()
    experiment_id = _experiment_id(client, experiment)
    close_dead_runs(client, experiment_id)
    done = {}
    for name, entry in lock_stages(lock_file).items():
        if name in skip or not _outs_present(entry):
            continue
        h = lock_hash(entry)
        link = {"dvc_lock_hash": h, **_dep_tags(entry)}
        if _search(client, experiment_id, name, f" and tags.dvc_lock_hash = '{h}'"):
            done[name] = "kept"
            continue
        outs = files_md5([o["path"] for o in entry["outs"]])
        wrote = [r for r in _search(client, experiment_id, name, f" and tags.outs_md5 = '{outs}'")
                 if "dvc_lock_hash" not in r.data.tags]
        if wrote:  # every run that wrote them: one per seed, or identical re-runs
            for r in wrote:
                for k, v in link.items():
                    client.set_tag(r.info.run_id, k, v)
            done[name] = "linked"
            continue
        for params, metrics, tags, artifacts, dataset in restore(name, entry):
            # host and pid from the start: a sync killed half-way leaves a run the next one closes
            with mlflow.start_run(experiment_id=experiment_id, run_name=name,
                                  tags={"host": socket.gethostname(), "pid": str(os.getpid())}):
                if dataset is not None:
                    _log_dataset(mlflow, *dataset)
                mlflow.log_params({k: str(v) for k, v in flatten(params).items()})
                for step, values in metrics:
                    mlflow.log_metrics(values, step=step)
                mlflow.set_tags({"git_commit": git_commit(), "dvc_stage": name, "restored_from": RESTORED,
                                 "outs_md5": outs, **link, **{k: str(v) for k, v in tags.items()}})
                for path in artifacts:
                    mlflow.log_artifact(str(path))
        done[name] = "restored"
    return done


def lock_runs(uri: str, experiment: str, stages: list[str], lock_file: str | Path = "dvc.lock") -> dict[str, list]:
    """{stage: its finished runs that match the stage's dvc.lock entry (tag dvc_lock_hash),
    newest first} for the given DVC stages. TrackingError naming the first stage that has none
    (or no lock entry)."""
    client = _mlflow().tracking.MlflowClient(tracking_uri=check_store(uri, must_exist=True))
    exp = client.get_experiment_by_name(experiment)
    entries = lock_stages(lock_file)
    out = {}
    for stage in stages:
        if stage not in entries:
            raise TrackingError(f"{stage}: not in {lock_file}; run `dvc repro` first")
        out[stage] = [] if exp is None else _search(client, exp.experiment_id, stage,
                                                     f" and tags.dvc_lock_hash = '{lock_hash(entries[stage])}'")
        if not out[stage]:
            raise TrackingError(f"{stage}: no finished MLflow run matches {lock_file} in experiment {experiment!r} "
                                f"at {tracking_uri(uri)}; `dvc repro` records it")
    return out


def artifact_json(uri: str, run, name: str) -> dict:
    """The JSON artifact `name` of an MLflow run, e.g. the evaluate record it logged."""
    mlflow = _mlflow()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=name, dst_path=tmp,
                                                       tracking_uri=tracking_uri(uri))
        except Exception as e:  # noqa: BLE001 - MLflow raises several types for a missing artifact
            raise TrackingError(f"MLflow run {run.info.run_id} has no artifact {name} ({str(e).splitlines()[0][:200]})"
                                ) from None
        return json.loads(Path(path).read_text())


def lock_seed_runs(uri: str, experiment: str, stages: list[str], metric: str = "top1",
                   lock_file: str | Path = "dvc.lock") -> dict[str, dict[str, list[tuple[int, float]]]]:
    """{stage: {seed tag: [(step, value)] of `metric`}} from the runs that match each stage's
    dvc.lock entry, the newest run per seed (a stage that fine-tunes several seeds has a run
    each)."""
    client = _mlflow().tracking.MlflowClient(tracking_uri=tracking_uri(uri))
    out: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for stage, runs in lock_runs(uri, experiment, stages, lock_file).items():
        per_seed = out.setdefault(stage, {})
        for run in runs:
            seed = run.data.tags.get("seed", "")
            if seed not in per_seed:  # newest first
                history = client.get_metric_history(run.info.run_id, metric)
                per_seed[seed] = sorted((m.step, m.value) for m in history)
    return out
