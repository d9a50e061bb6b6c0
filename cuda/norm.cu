// LayerNorm and per-row logits statistics: one block per row, warp-shuffle reductions.
#include <cuda_bf16.h>

#include <cfloat>

#include "cuda/check.hpp"
#include "cuda/kernels.hpp"

namespace eyrie::cuda {
namespace {

constexpr int kThreads = 256;

__device__ float block_sum(float v, float* shared) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  float total = 0.f;
  for (int i = 0; i < blockDim.x / 32; ++i) total += shared[i];
  return total;
}

__global__ void layer_norm_kernel(const float* x, const int32_t* rows_idx, int64_t hidden, const float* w,
                                  const float* b, float eps, bf16* out, int64_t lo_offset) {
  __shared__ float shared[32];
  const int64_t r = blockIdx.x;
  const float* row = x + (rows_idx ? rows_idx[r] : r) * hidden;
  float sum = 0.f;
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) sum += row[i];
  const float mean = block_sum(sum, shared) / static_cast<float>(hidden);
  float sq = 0.f;
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) {
    const float d = row[i] - mean;
    sq += d * d;
  }
  const float inv = rsqrtf(block_sum(sq, shared) / static_cast<float>(hidden) + eps);
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) {
    const float v = (row[i] - mean) * inv * w[i] + b[i];
    const bf16 hi = __float2bfloat16(v);
    out[r * hidden + i] = hi;
    out[lo_offset + r * hidden + i] = __float2bfloat16(v - __bfloat162float(hi));
  }
}

__global__ void row_stats_kernel(const float* logits, int64_t vocab, float* lse, int32_t* argmax, float* max) {
  __shared__ float shared[32];
  __shared__ int32_t shared_idx[32];
  const float* row = logits + blockIdx.x * vocab;
  float best = -FLT_MAX;
  int32_t best_i = 0x7fffffff;
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x)
    if (row[i] > best) {
      best = row[i];
      best_i = static_cast<int32_t>(i);
    }
  // Max with the lowest index on ties, as torch.argmax.
  for (int o = 16; o > 0; o >>= 1) {
    const float ob = __shfl_xor_sync(0xffffffffu, best, o);
    const int32_t oi = __shfl_xor_sync(0xffffffffu, best_i, o);
    if (ob > best || (ob == best && oi < best_i)) {
      best = ob;
      best_i = oi;
    }
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) {
    shared[warp] = best;
    shared_idx[warp] = best_i;
  }
  __syncthreads();
  float mx = -FLT_MAX;
  int32_t mi = 0x7fffffff;
  for (int i = 0; i < blockDim.x / 32; ++i)
    if (shared[i] > mx || (shared[i] == mx && shared_idx[i] < mi)) {
      mx = shared[i];
      mi = shared_idx[i];
    }
  float sum = 0.f;
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) sum += __expf(row[i] - mx);
  sum = block_sum(sum, shared);
  if (threadIdx.x == 0) {
    lse[blockIdx.x] = mx + logf(sum);
    argmax[blockIdx.x] = mi;
    max[blockIdx.x] = mx;
  }
}

}  // namespace

void layer_norm(const float* x, const int32_t* rows_idx, int64_t rows, int64_t hidden, const float* w,
                const float* b, float eps, bf16* out, cudaStream_t s) {
  if (rows == 0) return;
  layer_norm_kernel<<<static_cast<unsigned>(rows), kThreads, 0, s>>>(x, rows_idx, hidden, w, b, eps, out,
                                                                     rows * hidden);
  EYRIE_CUDA_LAUNCHED();
}

void row_stats(const float* logits, int64_t rows, int64_t vocab, float* lse, int32_t* argmax, float* max,
               cudaStream_t s) {
  if (rows == 0) return;
  row_stats_kernel<<<static_cast<unsigned>(rows), 1024, 0, s>>>(logits, vocab, lse, argmax, max);
  EYRIE_CUDA_LAUNCHED();
}

}  // namespace eyrie::cuda
