#!/usr/bin/env bash
# Issue 5's GPU checks in one go, on a machine with an NVIDIA GPU and CuPy (PyTorch CUDA optional):
# the CUDA cases of the test suite, then the training-step benchmark on the GPU against PyTorch CUDA.
#
#     benchmarks/gpu_checks.sh [OUTDIR]        (logs go to OUTDIR, default gpu-checks/)
#
# Environment: PYTHON (default python3), WORKERS (pytest-xdist workers, default 8; 0 runs serially),
# TEST_TIMEOUT and BENCH_TIMEOUT (seconds), CONFIGS (default lstm,gpt,lstm2), STEPS (default 20).
set -u
out=${1:-gpu-checks}
py=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi -L 2>&1 | tee "$out/gpu.txt"
$py -c "import sys, numpy, cupy; print('python', sys.version.split()[0], 'numpy', numpy.__version__, 'cupy', cupy.__version__)" 2>&1 | tee -a "$out/gpu.txt"
workers=${WORKERS:-8}
xdist=()
if [ "$workers" != 0 ]; then xdist=(-n "$workers"); fi
timeout "${TEST_TIMEOUT:-300}" $py -m pytest -q -m cuda "${xdist[@]}" -p no:cacheprovider tests >"$out/tests_cuda.log" 2>&1
echo "CUDA tests: exit $? (log: $out/tests_cuda.log)"
grep -E "^(FAILED|ERROR)|passed|failed" "$out/tests_cuda.log" | tail -60
timeout "${BENCH_TIMEOUT:-150}" $py benchmarks/bench_train_step.py --device cuda --configs "${CONFIGS:-lstm,gpt,lstm2}" \
    --steps "${STEPS:-20}" --warmup 3 2>&1 | tee "$out/bench_cuda.log"
echo "GPU benchmark: exit ${PIPESTATUS[0]}"
# The same steps with the fused CUDA kernels off (the ops' plain CuPy path): what the fusion buys.
TINYGRAD_LM_FAST=off timeout "${BENCH_TIMEOUT:-150}" $py benchmarks/bench_train_step.py --device cuda --no-torch \
    --configs "${CONFIGS:-lstm,gpt,lstm2}" --steps "${STEPS:-20}" --warmup 3 2>&1 | tee "$out/bench_cuda_unfused.log"
echo "GPU benchmark, kernels off: exit ${PIPESTATUS[0]}"
