"""Resume notices code: a resume state saved by other code (a changed dvc.yaml code dependency
of the stage) is not used; the stage trains from the start and says so in one line (CPU)."""

import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

from helpers import BIN, ROOT, copy_project, env, stage
from prunelab import checkpoint, pipeline

SMALL = {"model.arch": "resnet20", "train.epochs": 3, "prune.settings": {"r1": "[0.]+[0.15]*2+[0.4]*9"}}
OUTPUTS = ("models/b0/baseline.pt", "results/metrics/b0/train_baseline.json", "results/metrics/b0/train_baseline.csv")

# A change to prunelab/engine.py (a dep of train_baseline in dvc.yaml) that changes the result:
# every parameter starts 0.001 higher. A state saved by the old code then leads elsewhere than a
# clean run of the new code, so resuming from it cannot give the clean run's bytes.
NEW_CODE = '''

_unchanged_fit = fit


def fit(model, *args, **kwargs):  # test_resume_code: changed code
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1e-3)
    return _unchanged_fit(model, *args, **kwargs)
'''


def test_a_state_saved_by_other_code_is_not_resumed(tmp_path):
    clean, killed = copy_project(tmp_path / "clean", **SMALL), copy_project(tmp_path / "killed", **SMALL)
    proc = subprocess.Popen([str(BIN / "python"), "stages/train_baseline.py"], cwd=killed, env=env(killed),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    resume = killed / "models" / "b0" / ".baseline.pt.resume"
    while not resume.is_file():  # the event: the state after the first epoch
        assert proc.poll() is None, "the stage exited without writing its resume state"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "models" / "b0" / "baseline.pt").exists()

    for project in (clean, killed):
        with open(project / "prunelab" / "engine.py", "a") as f:
            f.write(NEW_CODE)
    reference = stage(clean, "train_baseline")
    assert reference.returncode == 0, reference.stderr
    r = stage(killed, "train_baseline")
    assert r.returncode == 0, r.stderr
    notices = [line for line in r.stderr.splitlines() if "code dependencies changed" in line]
    assert len(notices) == 1 and "prunelab/engine.py" in notices[0], r.stderr
    for out in OUTPUTS:
        assert (killed / out).read_bytes() == (clean / out).read_bytes(), out
    assert not resume.exists()


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_code_fingerprint_covers_the_declared_code_of_matrix_and_foreach_stages():
    # matrix stage of the default pipeline: script and library file, no templated (data) deps
    ft = pipeline.code_fingerprint("finetune", ROOT / "dvc.yaml")
    assert ft["stages/finetune.py"] == _md5(ROOT / "stages" / "finetune.py")
    assert ft["prunelab/engine.py"] == _md5(ROOT / "prunelab" / "engine.py")
    assert not any("${" in k for k in ft)
    # a folder dep stands for every .py file under it
    tb = pipeline.code_fingerprint("train_baseline", ROOT / "dvc.yaml")
    models = {f"prunelab/models/{Path(d, n).relative_to(ROOT / 'prunelab' / 'models').as_posix()}": _md5(Path(d, n))
              for d, _, names in os.walk(ROOT / "prunelab" / "models") for n in names if n.endswith(".py")}
    assert models and models.items() <= tb.items()
    assert {k for k in tb if k.startswith("prunelab/models/")} == set(models)
    # foreach stage of the paper pipeline: deps under do:, relative to paper/
    paper = pipeline.code_fingerprint("finetune", ROOT / "paper" / "dvc.yaml")
    assert paper["../prunelab/engine.py"] == _md5(ROOT / "prunelab" / "engine.py")
    assert paper["../stages/finetune.py"] == _md5(ROOT / "stages" / "finetune.py")
    assert pipeline.code_fingerprint("finetune", ROOT / "no-such-dvc.yaml") == {}


def test_resume_file_refuses_a_state_of_other_code_and_names_the_file(tmp_path):
    out = tmp_path / "m.pt"
    checkpoint.ResumeFile(out, "f", {"a.py": "1", "b.py": "2"}).save({"epoch": 0}, curve=[])
    same = checkpoint.ResumeFile(out, "f", {"a.py": "1", "b.py": "2"})
    assert same.load()["train"] == {"epoch": 0} and same.changed_code == []
    other = checkpoint.ResumeFile(out, "f", {"a.py": "1", "b.py": "3", "c.py": "4"})
    assert other.load() is None and other.changed_code == ["b.py", "c.py"]
