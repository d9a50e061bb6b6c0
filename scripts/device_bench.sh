#!/usr/bin/env bash
# Runs on the GPU machine (device tool) from the repo root with .device-pack carried: the CPU
# decode benchmark with memory bandwidth, and the tokenizer beside Hugging Face tokenizers.
# Results go to $OUT (or ./bench-out).
set -uo pipefail
out=${OUT:-bench-out}
mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/.device-pack:${LD_LIBRARY_PATH:-}
{
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2) x $(nproc)"
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | sed 's/^/gpu: /'
} | tee "$out/machine.txt"
export EYRIE_BENCH_DIR=/tmp EYRIE_SOURCE_DIR=$PWD
.device-pack/bench_cpu_decode --benchmark_out="$out/cpu_decode.json" --benchmark_out_format=json \
  2>&1 | tee "$out/cpu_decode.txt"
.device-pack/bench_tokenizer --benchmark_filter=Encode --benchmark_out="$out/tokenizer.json" \
  --benchmark_out_format=json 2>&1 | tee "$out/tokenizer.txt"
python3 tools/bench_hf_tokenizer.py 2>&1 | tee "$out/tokenizer_hf.txt"
