#!/usr/bin/env bash
# Packs built programs and the shared libraries the GPU machine lacks into .device-pack/, for the
# device tool's `carry`. Usage: scripts/device_pack.sh [BUILD_DIR]; prints the carry list.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${1:-build}
pack=.device-pack
rm -rf "$pack"
mkdir -p "$pack"
for f in tools/eyrie tests/eyrie_tests bench/bench_cpu_decode bench/tokenizer/bench_tokenizer bench/bench_ws_load bench/bench_cuda bench/bench_gemv bench/bench_gemm bench/bench_upload; do
  [ -x "$build_dir/$f" ] && cp "$build_dir/$f" "$pack/"
done
# Libraries from Debian packages that the GPU machine does not have; the CUDA runtime is static,
# cuBLAS and NCCL are found there.
for bin in "$pack"/*; do
  ldd "$bin" | awk '/=> \//{print $3}' | grep -E 'libcaf_|libsimdjson|libbenchmark|libgtest|libboost' || true
done | sort -u | while read -r lib; do cp -L "$lib" "$pack/"; done
du -sh "$pack" >&2
echo "$pack"
