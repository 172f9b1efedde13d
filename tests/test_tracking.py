"""The tracking store: fails fast with one line naming tracking.uri; readers create nothing;
a stage's result is identified by the md5s of the files it wrote."""

import hashlib
import socket

import pytest

from helpers import ROOT, copy_project, stage
from prunelab import tracking


def _closed_port() -> int:
    """A loopback port nothing listens on: bound, then released."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mlflow_s_own_setting_of_the_variable_does_not_override_the_params(tmp_path, monkeypatch):
    """mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI; a later stage in the same process
    must still log where its own params say."""
    monkeypatch.setattr(tracking, "_USER_URI", None)  # a process started without the variable
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with tracking.stage_run("a", f"sqlite:///{tmp_path / 'a.db'}", "e", {}, {}):
        pass
    assert tracking.tracking_uri(f"sqlite:///{tmp_path / 'b.db'}") == f"sqlite:///{tmp_path / 'b.db'}"


def test_a_server_that_does_not_answer_is_one_error_naming_tracking_uri():
    uri = f"http://127.0.0.1:{_closed_port()}/"
    with pytest.raises(tracking.TrackingError) as e:
        tracking.check_store(uri)
    assert str(e.value).startswith(f"tracking.uri: {uri} does not answer (") and "\n" not in str(e.value)


def test_a_reader_does_not_create_the_sqlite_store(tmp_path):
    db = tmp_path / "mlflow.db"
    with pytest.raises(tracking.TrackingError, match="does not exist"):
        tracking.check_store(f"sqlite:///{db}", must_exist=True)
    assert not db.exists()
    with pytest.raises(tracking.TrackingError, match="no folder"):
        tracking.check_store(f"sqlite:///{tmp_path / 'missing' / 'mlflow.db'}")


def test_a_stage_stops_before_loading_anything_when_the_server_does_not_answer(tmp_path):
    project = copy_project(tmp_path / "p", **{"tracking.uri": f"http://127.0.0.1:{_closed_port()}/"})
    r = stage(project, "train_baseline")
    assert r.returncode == 2
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("error: tracking.uri: http://127.0.0.1:") and "does not answer" in line
    assert not (project / "models").exists() and not (project / "results").exists()


def test_files_md5_is_the_md5_of_the_sorted_path_md5_pairs(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b.txt").write_bytes(b"bee")
    (tmp_path / "a.txt").write_bytes(b"ay")
    md5 = lambda b: hashlib.md5(b).hexdigest()  # noqa: E731
    pairs = sorted([f"{tmp_path / 'a.txt'}:{md5(b'ay')}", f"{tmp_path / 'd' / 'b.txt'}:{md5(b'bee')}"])
    assert tracking.files_md5([tmp_path / "d", tmp_path / "a.txt"]) == md5("\n".join(pairs).encode())
    (tmp_path / "d" / "b.txt").write_bytes(b"bee!")
    assert tracking.files_md5([tmp_path / "d", tmp_path / "a.txt"]) != md5("\n".join(pairs).encode())


@pytest.mark.parametrize("content", ["garbage", "sqlite without mlflow"])
def test_a_file_that_is_not_an_mlflow_store_stops_check_params_and_deletes_nothing(tmp_path, content):
    """check_params opens the store as the stages will: a garbage mlflow.db, or a SQLite database
    without MLflow's tables, is one line naming tracking.uri and exit 2; the file and the earlier
    results stay as they were."""
    import sqlite3

    project = copy_project(tmp_path / "p")
    db = project / "mlflow.db"
    if content == "garbage":
        db.write_bytes(b"not a database " * 100)
    else:
        with sqlite3.connect(db) as con:
            con.execute("CREATE TABLE notes (x)")
    before = db.read_bytes()
    (project / "results").mkdir()
    (project / "results" / "kept.txt").write_text("an earlier result")
    r = stage(project, "check_params")
    assert r.returncode == 2, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith(f"error: tracking.uri: sqlite:///{db} is not an MLflow store ("), line
    assert db.read_bytes() == before and (project / "results" / "kept.txt").read_text() == "an earlier result"
    assert not (project / "results" / "params_check.txt").exists()


def test_a_relative_sqlite_store_is_the_workspace_s_also_in_a_dvc_experiment_s_copy(tmp_path, monkeypatch):
    """DVC runs a queued experiment's stages in a copy of the repository under .dvc/tmp/exps/ and
    names the original in DVC_ROOT; a relative tracking.uri then still means the workspace's store
    (else every queued run would log into a store DVC deletes with the copy)."""
    monkeypatch.setattr(tracking, "_USER_URI", None)
    workspace, copy = tmp_path / "ws", tmp_path / "ws" / ".dvc" / "tmp" / "exps" / "tmpabc"
    for d in (workspace / ".dvc", copy / ".dvc", copy / "paper" / ".dvc"):
        d.mkdir(parents=True)
    monkeypatch.chdir(copy)
    monkeypatch.setenv("DVC_ROOT", str(workspace))
    assert tracking.tracking_uri("sqlite:///mlflow.db") == f"sqlite:///{workspace / 'mlflow.db'}"
    monkeypatch.chdir(copy / "paper")  # paper/ is a DVC project of its own: DVC_ROOT is the original paper/
    monkeypatch.setenv("DVC_ROOT", str(workspace / "paper"))
    assert tracking.tracking_uri("sqlite:///mlflow.db") == f"sqlite:///{workspace / 'paper' / 'mlflow.db'}"
    monkeypatch.delenv("DVC_ROOT")  # a stage run by hand: relative to where it runs
    assert tracking.tracking_uri("sqlite:///mlflow.db") == f"sqlite:///{copy / 'paper' / 'mlflow.db'}"
    assert tracking.tracking_uri(f"sqlite:///{tmp_path / 'x.db'}") == f"sqlite:///{tmp_path / 'x.db'}"


def test_a_store_that_dies_mid_training_costs_the_logging_not_the_epoch(tmp_path, monkeypatch):
    """The tracking server stops answering when epoch 1's metrics are sent: the stage ends with one
    line naming tracking.uri; epoch 1's training state was saved before the send, so the next run
    resumes after it, sends epoch 1's metrics it never received, and the run's history holds each
    epoch once (pipeline.ResumableTraining; training replaced by a counter, the store a SQLite file)."""
    import yaml

    from prunelab import checkpoint, config, pipeline

    params = config.validate({**yaml.safe_load(open(ROOT / "params.yaml")),
                              "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "e"}})
    monkeypatch.chdir(tmp_path)  # no dvc.yaml here: no code fingerprint
    epochs, trained = 4, []

    def train() -> str:
        with pipeline.ResumableTraining(params, "train_baseline", None, {}, {}, output, []) as job:
            for epoch in range(job.state["epoch"] + 1 if job.state else 0, epochs):
                trained.append(epoch)
                job.on_epoch(epoch, {"top1": float(epoch)})
                job.save_state({"epoch": epoch})
            return job.run.run_id

    sent = tracking.StageRun.log_metrics

    def dies_at_epoch_1(self, metrics, step=None):
        if step == 1:
            with tracking._sending(self.uri):
                raise ConnectionError("Connection refused")
        sent(self, metrics, step)

    output = tmp_path / "m.pt"
    monkeypatch.setattr(tracking.StageRun, "log_metrics", dies_at_epoch_1)
    with pytest.raises(tracking.TrackingError) as e:
        train()
    assert str(e.value).startswith(f"tracking.uri: sqlite:///{tmp_path / 'mlflow.db'} stopped answering "
                                   "(Connection refused); the work done is saved") and "\n" not in str(e.value)
    resume = checkpoint.ResumeFile(output, config.params_hash({"sections": {}, "inputs": []}))
    assert resume.load()["train"] == {"epoch": 1} and trained == [0, 1]

    monkeypatch.setattr(tracking.StageRun, "log_metrics", sent)
    run_id = train()
    assert trained == [0, 1, 2, 3] and resume.load() is None
    import mlflow

    client = mlflow.tracking.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert sorted(m.step for m in client.get_metric_history(run_id, "top1")) == [0, 1, 2, 3]
    assert len(client.search_runs([client.get_experiment_by_name("e").experiment_id])) == 1


def test_ctrl_c_inside_the_store_s_client_stays_an_interruption():
    """SIGINT landing inside SQLAlchemy: it fails closing its transaction ("This transaction is
    closed") while handling the KeyboardInterrupt. That is Ctrl-C (exit 130, one line), not a
    store that stopped answering (exit 2); a store error with no interruption behind it still is."""
    from prunelab import tracking

    def closing_fails():
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise RuntimeError("This transaction is closed")  # noqa: B904 - raised while handling, as SQLAlchemy does

    with pytest.raises(KeyboardInterrupt), tracking._sending("sqlite:///mlflow.db"):
        closing_fails()
    with pytest.raises(tracking.TrackingError, match="stopped answering"), tracking._sending("sqlite:///mlflow.db"):
        raise RuntimeError("database is locked")


def test_a_store_left_with_a_hot_journal_by_a_killed_writer_is_accepted(tmp_path):
    """A writer killed mid-transaction (SIGKILL, its changes spilled to the file) leaves a hot
    rollback journal beside the store. The store check rolls it back, as MLflow would, instead of
    calling the file "not an MLflow store" ("attempt to write a readonly database")."""
    import sqlite3
    import subprocess
    import sys

    db = tmp_path / "mlflow.db"
    with sqlite3.connect(db) as con:
        for table in ("alembic_version", "experiments", "runs"):
            con.execute(f"CREATE TABLE {table} (x)")
    writer = ("import os, signal, sqlite3, sys\n"
              "con = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
              "con.execute('PRAGMA cache_size=1'); con.execute('BEGIN')\n"
              "con.executemany('INSERT INTO runs VALUES (?)', [('x' * 500,)] * 2000)\n"
              "os.kill(os.getpid(), signal.SIGKILL)\n")
    subprocess.run([sys.executable, "-c", writer, str(db)], check=False)
    assert (tmp_path / "mlflow.db-journal").stat().st_size > 0  # the hot journal the killed writer left
    assert tracking.check_store(f"sqlite:///{db}") == f"sqlite:///{db}"
    with sqlite3.connect(db) as con:  # rolled back: the killed transaction's rows are gone
        assert con.execute("SELECT count(*) FROM runs").fetchone() == (0,)
