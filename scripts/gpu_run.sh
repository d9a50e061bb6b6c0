#!/usr/bin/env bash
# Runs on the GPU machine from the repo root with .device-pack carried: every GPU test, the CUDA
# benchmark (mixed, split and bf16 activations) and the Hugging Face baseline on the same shapes; on a machine with several GPUs
# also the benchmark at tensor-parallel degree 2 (residual sums in peer memory and through NCCL).
# With EYRIE_SERVE_RUN=1, a transformers-written Falcon-7B-shaped checkpoint is served by one
# replica (and by two where there are two GPUs) to the WebSocket load generator, against the
# scheduler and engine alone. Output also goes to $OUT.
set -uo pipefail
out=${OUT:-gpu-out}
mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/.device-pack:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export EYRIE_TEST_DATA=$PWD/tests/data PYTHONUNBUFFERED=1
# Multi-GPU machines of the device tool must keep NVLink multicast off.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
config=${EYRIE_BENCH_CONFIG:-tests/data/configs/falcon-7b.json}
gpus=$(nvidia-smi -L | wc -l)
date -u | tee "$out/date.txt"
timeout 300 .device-pack/eyrie_tests --gtest_filter='*Cuda*:*AttentionKernel*:*Nccl*:*PeerExchange*:*TensorParallel*' \
  2>&1 | tee "$out/gpu_tests.txt" | grep -aE "^\[  (  OK|FAILED) |PASSED|FAILED"
.device-pack/bench_cuda --config "$config" --batches "${EYRIE_BENCH_BATCHES:-16,64,256}" 2>&1 | tee "$out/bench_cuda.txt"
# Every product on split halves (activation_precision=split).
.device-pack/bench_cuda --config "$config" --fp16-mlp off --batches "${EYRIE_BENCH_BATCHES:-16,64,256}" \
  2>&1 | tee "$out/bench_cuda_split.txt"
# The same shapes with bf16 activations (activation_precision=bf16), as other servers compute.
.device-pack/bench_cuda --config "$config" --split-rows-max 0 --batches "${EYRIE_BENCH_BATCHES:-16,64,256}" \
  2>&1 | tee "$out/bench_cuda_bf16.txt"
if [ "$gpus" -ge 2 ]; then
  for peers in on off; do
    .device-pack/bench_cuda --config "$config" --tp 2 --peer-exchange $peers --batches "${EYRIE_BENCH_BATCHES:-16,64,256}" \
      2>&1 | tee "$out/bench_cuda_tp2_peers_$peers.txt"
  done
fi
if [ "${EYRIE_SERVE_RUN:-0}" = 1 ]; then
  python3 - "$config" <<'PY'
import sys
import torch
from transformers import FalconConfig, FalconForCausalLM
with torch.device("cuda"):
    m = FalconForCausalLM._from_config(FalconConfig.from_json_file(sys.argv[1]), dtype=torch.bfloat16)
m.save_pretrained("/tmp/eyrie-serve-model", safe_serialization=True)
PY
  cp tests/data/tokenizer.json /tmp/eyrie-serve-model/
  for r in $(seq 1 $((gpus < 2 ? gpus : 2))); do
    .device-pack/bench_ws_load --device cuda --model /tmp/eyrie-serve-model --replicas $r --repeat 2 \
      2>&1 | tee "$out/ws_load_replicas_$r.txt"
  done
fi
python3 tools/bench_hf_falcon.py --config "$config" --batches "${EYRIE_HF_BATCHES:-16,64}" 2>&1 | grep "^hf" | tee "$out/bench_hf.txt"
