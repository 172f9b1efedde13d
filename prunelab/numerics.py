"""CPU numerics: the same result bytes on any x86-64 CPU with AVX2 (engine.cpu_numerics).

Why another CPU gives other bytes. A float sum depends on the order of its terms, and four
libraries choose that order at run time from what the processor offers:
- ATen's vectorised kernels (reductions, BatchNorm, the optimiser's steps) dispatch on the CPU
  capability: an AVX-512 loop adds 16 floats a step where an AVX2 loop adds 8;
- oneDNN JIT-compiles each convolution for the widest ISA it finds (jit:avx512_core, jit:avx2);
- MKL (a linear layer's GEMM, CHIP's SVDs, SNPFI's least-squares solves) picks its code path by
  ISA and by vendor; its conditional-numerical-reproducibility mode COMPATIBLE is one path for
  Intel and AMD alike (MKL_CBWR=AVX2 is not: it still branches on the vendor);
- numpy dispatches its own SIMD loops (float64 exp, log and power give other bits from its
  AVX-512 loops than from its AVX2 ones), and the OpenBLAS it and scipy ship picks kernels by
  core type (SkylakeX, Zen, Haswell): a matmul or an SVD differs between them;
and ATen, oneDNN, MKL and OpenBLAS split their parallel loops, hence their sums, by thread count.

`portable` caps each at AVX2, sets MKL's COMPATIBLE mode and pins 2 threads: the bytes are then
those of any x86-64 CPU with AVX2 and FMA, Intel or AMD (tests/test_numerics.py trains, scores
and prunes natively and on an emulated Haswell and compares the bytes). `native` leaves each
library its fastest path, and the bytes are the machine's own.

Each library reads its variable when it loads or first runs, so prepare() sets them before torch
or numpy is imported (the first statement of every stage), and verify(), once both are loaded,
checks that each took effect, or refuses to run with one line. The GPU is another matter:
cuDNN and cuBLAS repeat only on the same GPU model and software (README); on CUDA, verify()
asks PyTorch for deterministic algorithms where it has them.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys
import tempfile
from pathlib import Path

from prunelab import paramsfile
from prunelab.errors import ConfigError

MODES = ("portable", "native")
THREADS = 2  # the committed results' thread count: a sum's split, hence its bytes, depend on it
PORTABLE_ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "COMPATIBLE",
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",  # numpy's dispatch targets above AVX2
    "OPENBLAS_CORETYPE": "Haswell",
    "OMP_NUM_THREADS": str(THREADS),
    "MKL_NUM_THREADS": str(THREADS),
    "OPENBLAS_NUM_THREADS": str(THREADS),
}
# cuBLAS splits a GEMM's sum by the workspace it finds: a fixed one repeats (PyTorch's
# "Reproducibility" notes); read when CUDA initialises, harmless without a GPU.
CUDA_ENV = {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
MKL_CBWR_BRANCH = 1  # mkl_cbwr_get's query for the code path; the answers' names below (mkl_types.h)
_MKL_CBWR_NAMES = {0: "OFF", 1: "OFF", 2: "AUTO", 3: "COMPATIBLE", 4: "SSE2", 6: "SSSE3", 7: "SSE4_1", 8: "SSE4_2",
                   9: "AVX", 10: "AVX2", 11: "AVX512_MIC", 12: "AVX512", 13: "AVX512_MIC_E1", 14: "AVX512_E1"}
KEY = "engine.cpu_numerics"


def read_mode(params_file: str | Path = "params.yaml") -> str | None:
    """engine.cpu_numerics of a params file; None if the file or the value is unusable (the
    stage's params check then names the problem)."""
    try:
        engine = paramsfile.read(params_file).get("engine")
    except (ConfigError, AttributeError):
        return None
    mode = engine.get("cpu_numerics") if isinstance(engine, dict) else None
    return mode if mode in MODES else None


def prepare(params_file: str | Path = "params.yaml") -> str | None:
    """Set the environment the params file's engine.cpu_numerics asks for. Call it before torch or
    numpy is imported; verify() tells afterwards whether it took effect. Returns the mode."""
    mode = read_mode(params_file)
    os.environ.update(CUDA_ENV)
    if mode == "portable" and _kernel_lists_avx2():  # else verify() refuses, before an AVX2 kernel can run
        os.environ.update(PORTABLE_ENV)
    return mode


def _kernel_lists_avx2() -> bool:
    """Whether /proc/cpuinfo lists avx2 and fma (True where there is no such file): ATen trusts
    ATEN_CPU_CAPABILITY=avx2 without asking the CPU, and would die of an illegal instruction on one
    without AVX2. (An emulator may pass the host's file through: verify() asks the CPU itself.)"""
    try:
        with open("/proc/cpuinfo", errors="replace") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), None)
    except OSError:
        return True
    return flags is None or {"avx2", "fma"} <= set(flags)


def _onednn_isa() -> str:
    """The ISA oneDNN generates code for, from its verbose log of one small convolution, which
    oneDNN writes to file descriptor 1 (C stdio): '<vendor> AVX2', or 'unknown'."""
    import torch

    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    libc.fflush(None)  # what C already buffered goes where it was meant to
    saved = os.dup(1)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 1)
        try:
            with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                # (4, 16, 16, 16) * (16, 16, 3, 3): large enough for PyTorch to hand it to oneDNN
                torch.nn.functional.conv2d(torch.ones(4, 16, 16, 16), torch.ones(16, 16, 3, 3))
            libc.fflush(None)
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        log.seek(0)
        lines = log.read().decode(errors="replace").splitlines()
    return next((line.split("isa:", 1)[1].strip() for line in lines if ",cpu,isa:" in line), "unknown")


def _mkl_cbwr() -> str:
    """MKL's conditional-numerical-reproducibility branch ('COMPATIBLE', 'OFF', ...), asked of the
    MKL linked into PyTorch; 'unknown' where that MKL is not reachable."""
    import torch

    try:
        lib = ctypes.CDLL(str(Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"))
        get = lib.mkl_serv_cbwr_get
    except (OSError, AttributeError):
        return "unknown"
    get.restype, get.argtypes = ctypes.c_int, [ctypes.c_int]
    value = get(MKL_CBWR_BRANCH)
    return _MKL_CBWR_NAMES.get(value, str(value))


def _cpu_has(*features: str) -> bool:
    """Whether the CPU itself (CPUID, as numpy reads it at import) has every feature."""
    import numpy as np

    found = np._core._multiarray_umath.__cpu_features__
    return all(found.get(f, False) for f in features)


def _numpy_above_avx2() -> list[str]:
    """numpy's SIMD targets above AVX2 that it would run on this CPU (none once disabled)."""
    import numpy as np

    features = np._core._multiarray_umath.__cpu_features__
    return [f for f in PORTABLE_ENV["NPY_DISABLE_CPU_FEATURES"].split() if features.get(f)]


def _openblas() -> list[tuple[str, int]]:
    """(core type, threads) of every OpenBLAS loaded in this process (numpy's, scipy's)."""
    import threadpoolctl

    return [(lib.get("architecture", "unknown"), lib["num_threads"])
            for lib in threadpoolctl.threadpool_info() if lib.get("internal_api") == "openblas"]


def cpu_name() -> tuple[str, str]:
    """(vendor, model name) of this machine's CPU, from /proc/cpuinfo's first processor."""
    fields = {}
    try:
        with open("/proc/cpuinfo", errors="replace") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields.get("vendor_id", "unknown"), fields.get("model name", platform.machine() or "unknown")


def verify(mode: str) -> dict:
    """Check that `mode` took effect in this process (torch and numpy loaded after prepare()),
    pin the threads, and return what governs this process's float results: the record every
    stage keeps in its MLflow run and its JSON outputs. Raises ConfigError, naming the key, where
    `portable` is asked of a CPU that cannot give it or could not take effect."""
    import numpy  # noqa: F401  (loaded now: its OpenBLAS is then listed)
    import torch

    if mode not in MODES:
        raise ConfigError(f"{KEY}: {mode!r} is not allowed; allowed: {', '.join(MODES)}")
    capability = torch.backends.cpu.get_cpu_capability()
    if mode == "portable":
        _, model = cpu_name()
        if platform.machine() not in ("x86_64", "AMD64"):
            raise ConfigError(f"{KEY}: portable is defined for x86-64 CPUs, not {platform.machine()} ({model}); "
                              "set engine.cpu_numerics: native (its bytes are this machine's own)")
        if not _cpu_has("AVX2", "FMA3"):
            offers = next((f for f in ("AVX", "SSE42", "SSE41", "SSE3") if _cpu_has(f)), "SSE2")
            raise ConfigError(f"{KEY}: portable needs an x86-64 CPU with AVX2 and FMA; this one ({model}) offers "
                              f"{offers} at most; set engine.cpu_numerics: native (its bytes are this machine's own)")
        torch.set_num_threads(THREADS)
        found = {"ATen's CPU capability": capability, "oneDNN's ISA": _onednn_isa(), "MKL_CBWR": _mkl_cbwr(),
                 "numpy's SIMD targets above AVX2": " ".join(_numpy_above_avx2()) or "none",
                 "OpenBLAS": " ".join(sorted({f"{core}/{n}" for core, n in _openblas()} - {f"Haswell/{THREADS}"}))
                 or f"Haswell/{THREADS}",  # (core type)/(threads) of each one loaded
                 "threads": str(torch.get_num_threads())}
        wanted = {"ATen's CPU capability": "AVX2", "oneDNN's ISA": "Intel AVX2", "MKL_CBWR": "COMPATIBLE",
                  "numpy's SIMD targets above AVX2": "none", "OpenBLAS": f"Haswell/{THREADS}", "threads": str(THREADS)}
        wrong = [f"{k} is {found[k]}" for k in wanted if found[k] != wanted[k]]
        if wrong:
            raise ConfigError(f"{KEY}: portable did not take effect ({'; '.join(wrong)}): call "
                              "prunelab.numerics.prepare() before torch or numpy is imported")
    if torch.cuda.is_available():  # PyTorch's deterministic kernels where it has them, a warning where not
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    return record(mode)


def record(mode: str) -> dict:
    """What makes this process's float results what they are, for the JSON outputs: the mode, the
    kernels' ISA and the variables set. Under `portable` the same on every machine, so it can sit
    in files that must be the same bytes everywhere; the machine itself is in machine()."""
    import torch

    return {"cpu_numerics": mode, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "threads": torch.get_num_threads(),
            "variables": {k: os.environ[k] for k in sorted(PORTABLE_ENV) if k in os.environ}}


def machine() -> dict:
    """The machine a stage ran on, for its MLflow run: CPU vendor and model; on CUDA the GPU's
    name, driver, CUDA and cuDNN versions (a GPU repeats its bytes only on the same ones)."""
    import torch

    vendor, model = cpu_name()
    info = {"cpu_vendor": vendor, "cpu_model": model}
    if torch.cuda.is_available():
        info.update(gpu=torch.cuda.get_device_name(), gpu_driver=_nvidia_driver(), cuda=str(torch.version.cuda),
                    cudnn=str(torch.backends.cudnn.version()))
    return info


def _nvidia_driver() -> str:
    """The NVIDIA driver's version from NVML (shipped with the driver), or 'unknown'."""
    try:
        nvml = ctypes.CDLL("libnvidia-ml.so.1")
        buf = ctypes.create_string_buffer(96)
        if nvml.nvmlInit_v2() != 0 or nvml.nvmlSystemGetDriverVersion(buf, 96) != 0:
            return "unknown"
        nvml.nvmlShutdown()
        return buf.value.decode()
    except (OSError, AttributeError):
        return "unknown"
