"""Portable CPU numerics (prunelab.numerics): the same bytes on another x86-64 CPU, checked on an
emulated one (Debian's qemu-user: an Intel Haswell, AVX2 without AVX-512, on whatever CPU runs
the tests); a CPU without AVX2 refused in one line; a mode that could not take effect refused."""

import json
import platform
import shutil
import subprocess
import sys

import pytest

from helpers import BIN, ROOT, copy_project, env

QEMU = shutil.which("qemu-x86_64")
needs_qemu = pytest.mark.skipif(
    QEMU is None or platform.machine() != "x86_64",
    reason="needs Debian's qemu-user (qemu-x86_64) on an x86-64 machine: `apt-get install qemu-user` "
           "(make test installs it where it can)")
PROBE = ROOT / "tests" / "numerics_probe.py"


def params_file(tmp_path, mode: str):
    path = tmp_path / f"{mode}.yaml"
    path.write_text(f"engine:\n  cpu_numerics: {mode}\n")
    return path


def probe(params, *parts: str, cpu: str | None = None, **env_vars) -> subprocess.Popen:
    """tests/numerics_probe.py natively, or under qemu-x86_64 emulating `cpu`."""
    cmd = [sys.executable, str(PROBE), str(params), *parts]
    environment = {**env(ROOT), **env_vars}
    return subprocess.Popen(([QEMU, "-cpu", cpu] if cpu else []) + cmd, cwd=ROOT, env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def md5s(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The probe under portable numerics on this CPU and on an emulated Haswell (in parallel), and
    natively with one thread: {"here", "haswell", "native"}: {part: md5}."""
    tmp = tmp_path_factory.mktemp("numerics")
    portable, native = params_file(tmp, "portable"), params_file(tmp, "native")
    emulated = probe(portable, "prune", cpu="Haswell")  # minutes: start it first
    here = md5s(probe(portable, "prune"))
    other = md5s(probe(native, "prune", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1"))
    return {"here": here, "haswell": md5s(emulated), "native": other}


@pytest.mark.slow  # the emulated Haswell probe: about 5 minutes of qemu (make test-slow, CI)
@needs_qemu
def test_training_gives_the_same_bytes_on_another_cpu(runs):
    """A few SGD steps of ResNet-20: convolutions (oneDNN), BatchNorm and the optimiser (ATen),
    the linear layer (MKL); the weights' md5 here and on the emulated Haswell."""
    assert runs["here"]["train"] == runs["haswell"]["train"]


@pytest.mark.slow  # the emulated Haswell probe: about 5 minutes of qemu (make test-slow, CI)
@needs_qemu
@pytest.mark.parametrize("part", ["scores", "snpfi_game", "pruned"])
def test_scoring_and_pruning_give_the_same_bytes_on_another_cpu(runs, part):
    """CHIP's SVDs and HRank's ranks (scores), SNPFI's Shapley game, and the pruned networks after
    SNPFI's least-squares refit and BatchNorm re-estimation, with their logits (pruned)."""
    assert runs["here"][part] == runs["haswell"][part]


@pytest.mark.slow  # the emulated Haswell probe: about 5 minutes of qemu (make test-slow, CI)
@needs_qemu
def test_the_probe_sees_a_difference_in_numerics(runs):
    """The equalities above are not those of a constant: one thread and native kernels change
    every part's bytes (the split of every parallel sum changes with the thread count)."""
    assert all(runs["native"][k] != runs["here"][k] for k in runs["here"]), runs


def test_portable_on_a_cpu_without_avx2_names_the_key_and_the_way_out(monkeypatch):
    """verify() where CPUID (as numpy reads it) offers AVX but not AVX2: the refusal names the
    key, what the CPU offers and `native`, in one line (the emulated Sandy Bridge below: the
    same refusal from the real CPUID, in a stage)."""
    from prunelab import numerics
    from prunelab.errors import ConfigError

    monkeypatch.setattr(numerics, "_cpu_has", lambda *features: set(features) <= {"AVX", "SSE42", "SSE41", "SSE3"})
    with pytest.raises(ConfigError) as e:
        numerics.verify("portable")
    message = str(e.value)
    assert message.startswith("engine.cpu_numerics: portable needs an x86-64 CPU with AVX2 and FMA; this one (")
    assert "offers AVX at most; set engine.cpu_numerics: native" in message and "\n" not in message


@needs_qemu
def test_a_cpu_without_avx2_is_refused_in_one_line_before_any_stage_runs(tmp_path):
    """The first stage, check_params, on an emulated Sandy Bridge (AVX, no AVX2): exit 2 and one
    line naming the key and the way out; nothing is written."""
    project = copy_project(tmp_path / "p", **{"engine.cpu_numerics": "portable"})
    r = subprocess.run([QEMU, "-cpu", "SandyBridge", str(BIN / "python"), "stages/check_params.py"], cwd=project,
                       env=env(project), capture_output=True, text=True, timeout=900)
    errors = [line for line in r.stderr.splitlines() if not line.startswith("qemu-x86_64: warning")]
    assert r.returncode == 2, r.stderr[-2000:]
    assert len(errors) == 1 and errors[0].startswith("error: engine.cpu_numerics: portable needs an x86-64 CPU with "
                                                     "AVX2"), errors
    assert "engine.cpu_numerics: native" in errors[0]
    assert not (project / "results" / "params_check.txt").exists()


def test_a_portable_stage_records_its_numerics_where_a_user_looks(tmp_path):
    """A stage run as DVC runs it (a fresh process, portable by params.yaml): its checkpoint's
    meta and its MLflow run name the mode, the AVX2 kernels, 2 threads and the variables; the
    run also names the CPU it ran on."""
    import mlflow
    import torch

    project = copy_project(tmp_path / "p", **{"engine.cpu_numerics": "portable", "train.epochs": 1})
    r = subprocess.run([str(BIN / "python"), "stages/train_baseline.py"], cwd=project, env=env(project),
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    meta = torch.load(project / "models" / "b0" / "baseline.pt", weights_only=True)["meta"]["numerics"]
    assert meta["cpu_numerics"] == "portable" and meta["cpu_capability"] == "AVX2" and meta["threads"] == 2
    assert meta["variables"]["MKL_CBWR"] == "COMPATIBLE" and meta["variables"]["OMP_NUM_THREADS"] == "2"
    client = mlflow.tracking.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("prunelab").experiment_id])
    tags = run.data.tags
    assert tags["numerics.cpu_numerics"] == "portable" and tags["numerics.cpu_capability"] == "AVX2"
    assert tags["numerics.variables.ONEDNN_MAX_CPU_ISA"] == "AVX2" and tags["machine.cpu_model"]
    assert tags["machine.cpu_vendor"] == open("/proc/cpuinfo").read().split("vendor_id")[1].split(":")[1].split()[0]


def test_portable_numerics_set_after_torch_loaded_are_refused(tmp_path):
    """prepare() after torch and numpy are loaded cannot take effect: verify() says so in one
    line instead of computing other bytes (where this CPU has AVX-512, which they would use)."""
    import numpy as np

    if not np._core._multiarray_umath.__cpu_features__.get("AVX512F"):
        pytest.skip("this CPU has no AVX-512: late variables would change nothing here")
    code = ("import sys; import torch, numpy; sys.path.insert(0, {root!r}); from prunelab import numerics; "
            "numerics.prepare({params!r}); numerics.verify('portable')").format(
        root=str(ROOT), params=str(params_file(tmp_path, "portable")))
    r = subprocess.run([sys.executable, "-c", code], env=env(ROOT), capture_output=True, text=True)
    # ATen and oneDNN read their variables lazily, at the first kernel; numpy's and OpenBLAS' are read at import
    assert r.returncode != 0 and "engine.cpu_numerics: portable did not take effect (" in r.stderr
    assert "numpy's SIMD targets above AVX2 is X86_V4" in r.stderr and "OpenBLAS is " in r.stderr
    assert "call prunelab.numerics.prepare() before torch or numpy is imported" in r.stderr
