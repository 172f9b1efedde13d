#!/usr/bin/env bash
# Every GPU check in one command: the CUDA variants of the tests, then the training-speed and
# CHIP-scoring benchmarks on the GPU, and where a training step's time goes (step_profile.py). GPU time is scarce, so a failing step does not stop the
# ones after it; each step's output is also saved under $OUT (or gpu-results/).
#
#   bash benchmarks/gpu.sh            # from the repository root, with torch, torchvision, numpy,
#                                     # scikit-learn, tqdm, pyyaml and pytest installed
# Needs no dvc or mlflow and no network.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-results}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
status=0

step() {  # step NAME COMMAND...: run, show and save the output; remember a failure, go on
    local name=$1
    shift
    echo "=== $name: $*"
    "$@" 2>&1 | tee "$out/$name.log"
    local rc=${PIPESTATUS[0]}
    [ "$rc" -eq 0 ] || { echo "=== $name failed with exit code $rc"; status=1; }
}

date -u +"%Y-%m-%d %H:%M UTC" | tee "$out/date.txt"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
"$python" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device visible to torch'; \
print('torch', torch.__version__, 'CUDA', torch.version.cuda)" || exit 1

step tests "$python" -m pytest -p no:cacheprovider -q -n 0 -k cuda \
    tests/test_criteria.py tests/test_data.py tests/test_engine.py tests/test_latency.py tests/test_distributed.py
step train_speed "$python" benchmarks/train_speed.py --device cuda --epochs 2
step train_speed_compiled "$python" benchmarks/train_speed.py --device cuda --epochs 2 --compile --warmup 40
step train_speed_cudagraphs "$python" benchmarks/train_speed.py --device cuda --epochs 2 --compile --compile-mode reduce-overhead --warmup 40
step ci_speed "$python" benchmarks/ci_speed.py --device cuda
step step_profile "$python" benchmarks/step_profile.py
exit $status
