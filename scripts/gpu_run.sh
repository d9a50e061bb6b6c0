#!/usr/bin/env bash
# Runs on the GPU machine from the repo root with .device-pack carried: the GPU tests, the CUDA
# benchmark and the Hugging Face baseline on the same shapes. Output also goes to $OUT.
set -uo pipefail
out=${OUT:-gpu-out}
mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/.device-pack:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export EYRIE_TEST_DATA=$PWD/tests/data PYTHONUNBUFFERED=1
config=${EYRIE_BENCH_CONFIG:-tests/data/configs/falcon-7b.json}
date -u | tee "$out/date.txt"
.device-pack/eyrie_tests --gtest_filter='*Cuda*' 2>&1 | tee "$out/gpu_tests.txt" | grep -aE "^\[  (  OK|FAILED) |PASSED|FAILED"
.device-pack/bench_cuda --config "$config" --batches "${EYRIE_BENCH_BATCHES:-16,64,256}" 2>&1 | tee "$out/bench_cuda.txt"
python3 tools/bench_hf_falcon.py --config "$config" --batches "${EYRIE_HF_BATCHES:-16,64}" 2>&1 | grep "^hf" | tee "$out/bench_hf.txt"
