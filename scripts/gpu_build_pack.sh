#!/usr/bin/env bash
# Builds the CUDA configuration here (sm_90) and packs what the GPU machine needs into
# .device-pack/: by default what scripts/gpu_run.sh runs; name other programs to pack those
# (eyrie, bench_gemv, bench_gemm, bench_upload, bench_cpu_decode, eyrie_kernel_timeline, ...).
# Then, through the device tool, with carry [".device-pack"]:
#   bash scripts/gpu_run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
programs=("$@")
[ ${#programs[@]} -eq 0 ] && programs=(eyrie_tests bench_cuda bench_ws_load)
cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release -DEYRIE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 >/dev/null
cmake --build build-cuda -j "$(nproc)" --target "${programs[@]}"
scripts/device_pack.sh build-cuda "${programs[@]}"
