#!/usr/bin/env bash
# Packs built programs and the shared libraries the GPU machine lacks into .device-pack/, for the
# device tool's `carry`, stripped: the tree that travels (sources, test data and the pack) must
# stay under 64 MiB. Usage: scripts/device_pack.sh [BUILD_DIR [PROGRAM ...]] (programs by name,
# every built one when none is given); prints the carry list.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${1:-build}
shift || true
all="tools/eyrie tests/eyrie_tests bench/bench_cpu_decode bench/tokenizer/bench_tokenizer bench/bench_ws_load
     bench/bench_cuda bench/bench_gemv bench/bench_gemm bench/bench_upload bench/bench_wgmma_probe
     bench/bench_wgmma_attention_probe"
pack=.device-pack
rm -rf "$pack"
mkdir -p "$pack"
for f in $all; do
  name=$(basename "$f")
  if [ $# -gt 0 ] && ! printf '%s\n' "$@" | grep -qx "$name"; then continue; fi
  [ -x "$build_dir/$f" ] && cp "$build_dir/$f" "$pack/" && strip "$pack/$name"
done
# The kernel timeline library, loaded through CUDA_INJECTION64_PATH (bench/cuda/kernel_timeline.cpp).
if [ $# -eq 0 ] || printf '%s\n' "$@" | grep -qx eyrie_kernel_timeline; then
  lib="$build_dir/bench/libeyrie_kernel_timeline.so"
  [ -f "$lib" ] && cp "$lib" "$pack/" && strip "$pack/libeyrie_kernel_timeline.so"
fi
# Libraries from Debian packages that the GPU machine does not have; the CUDA runtime is static,
# cuBLAS and NCCL are found there.
for bin in "$pack"/*; do
  ldd "$bin" | awk '/=> \//{print $3}' | grep -E 'libcaf_|libsimdjson|libbenchmark|libgtest|libboost' || true
done | sort -u | while read -r lib; do cp -L "$lib" "$pack/"; done
du -sh "$pack" >&2
echo "$pack"
