// LayerNorm and per-row logits statistics: one block per row, warp-shuffle reductions.
#include <cuda_bf16.h>

#include <algorithm>
#include <cfloat>
#include <string>

#include "cuda/check.hpp"
#include "cuda/kernels.hpp"

namespace eyrie::cuda {
namespace {

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

// One row per block, K values per thread held in registers: the row and the pending outputs
// are read once with every load in flight together, since a decode step's few rows make this
// kernel latency-bound. The pending residual add (which writes x) comes first, then one or two
// LayerNorms of the row, or of row rows_idx[r] when given (no residual then).
struct NormArgs {
  float* x;
  const int32_t* rows_idx;
  PendingResidual res;
  int64_t hidden;
  const float *w1, *b1, *w2, *b2;
  float eps;
  bf16 *out1, *out2;
  int64_t lo_offset;  // rows * hidden: where the split outputs' low halves (and the pending ones') start
};

template <int K>
__global__ void __launch_bounds__(1024) layer_norm_kernel(NormArgs p) {
  float* const x = p.x;
  const int32_t* const rows_idx = p.rows_idx;
  const PendingResidual& res = p.res;
  const int64_t hidden = p.hidden, lo_offset = p.lo_offset;
  const float *w1 = p.w1, *b1 = p.b1, *w2 = p.w2, *b2 = p.b2;
  bf16 *out1 = p.out1, *out2 = p.out2;
  __shared__ float shared[32];
  const int64_t r = blockIdx.x;
  float* row = x + (rows_idx ? rows_idx[r] : r) * hidden;
  // The first norm's weights are fetched with the row, before the reductions wait on it.
  float v[K], w1v[K], b1v[K];
  float sum = 0.f;
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const int64_t i = threadIdx.x + static_cast<int64_t>(k) * blockDim.x;
    v[k] = w1v[k] = b1v[k] = 0.f;
    if (i >= hidden) continue;
    w1v[k] = __ldg(w1 + i);
    b1v[k] = __ldg(b1 + i);
    float xi = row[i];
    if (res.a) {
      // As residual_kernel: the pending outputs are split halves, n = rows * hidden apart.
      const int64_t n = lo_offset, at = r * hidden + i;
      float add = (res.a[at] + res.a[n + at]) + (res.a_bias ? res.a_bias[i] : 0.f);
      if (res.c) add = ((res.c[at] + res.c[n + at]) + (res.c_bias ? res.c_bias[i] : 0.f)) + add;
      xi += add;
      row[i] = xi;
    }
    v[k] = xi;
    sum += xi;
  }
  const float mean = block_sum(sum, shared) / static_cast<float>(hidden);
  float sq = 0.f;
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const int64_t i = threadIdx.x + static_cast<int64_t>(k) * blockDim.x;
    if (i >= hidden) continue;
    const float d = v[k] - mean;
    sq += d * d;
  }
  const float inv = rsqrtf(block_sum(sq, shared) / static_cast<float>(hidden) + p.eps);
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const int64_t i = threadIdx.x + static_cast<int64_t>(k) * blockDim.x;
    if (i >= hidden) continue;
    const float norm = (v[k] - mean) * inv;
    const float v1 = norm * w1v[k] + b1v[k];
    const bf16 hi = __float2bfloat16(v1);
    out1[r * hidden + i] = hi;
    out1[lo_offset + r * hidden + i] = __float2bfloat16(v1 - __bfloat162float(hi));
    if (w2) {
      const float v2 = norm * w2[i] + b2[i];
      const bf16 hi2 = __float2bfloat16(v2);
      out2[r * hidden + i] = hi2;
      out2[lo_offset + r * hidden + i] = __float2bfloat16(v2 - __bfloat162float(hi2));
    }
  }
}

// Values per thread (a power of two) and threads per block for a row of `hidden`.
void launch_layer_norm(const NormArgs& p, int64_t rows, cudaStream_t s) {
  if (p.hidden > kLayerNormHiddenMax)
    throw InvalidArgument("layer_norm: hidden size " + std::to_string(p.hidden) + " is over the CUDA kernel's " +
                          std::to_string(kLayerNormHiddenMax));
  int k = 1;
  while (static_cast<int64_t>(k) * 1024 < p.hidden) k *= 2;
  const auto threads = static_cast<unsigned>(std::max<int64_t>(32, ((p.hidden + k - 1) / k + 31) / 32 * 32));
  const auto blocks = static_cast<unsigned>(rows);
  switch (k) {
    case 1: layer_norm_kernel<1><<<blocks, threads, 0, s>>>(p); break;
    case 2: layer_norm_kernel<2><<<blocks, threads, 0, s>>>(p); break;
    case 4: layer_norm_kernel<4><<<blocks, threads, 0, s>>>(p); break;
    case 8: layer_norm_kernel<8><<<blocks, threads, 0, s>>>(p); break;
    default: layer_norm_kernel<16><<<blocks, threads, 0, s>>>(p); break;
  }
  EYRIE_CUDA_LAUNCHED();
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

void layer_norm(const float* x, const int32_t* rows_idx, int64_t rows, int64_t hidden, const float* w, const float* b,
                float eps, bf16* out, cudaStream_t s) {
  if (rows == 0) return;
  // Without a pending residual the kernel only reads x.
  launch_layer_norm(
      {const_cast<float*>(x), rows_idx, {}, hidden, w, b, nullptr, nullptr, eps, out, nullptr, rows * hidden}, rows,
      s);
}

void residual_layer_norm(float* x, const PendingResidual& res, int64_t rows, int64_t hidden, const float* w1,
                         const float* b1, const float* w2, const float* b2, float eps, bf16* out1, bf16* out2,
                         cudaStream_t s) {
  if (rows == 0) return;
  launch_layer_norm({x, nullptr, res, hidden, w1, b1, w2, b2, eps, out1, out2, rows * hidden}, rows, s);
}

void row_stats(const float* logits, int64_t rows, int64_t vocab, float* lse, int32_t* argmax, float* max,
               cudaStream_t s) {
  if (rows == 0) return;
  row_stats_kernel<<<static_cast<unsigned>(rows), 1024, 0, s>>>(logits, vocab, lse, argmax, max);
  EYRIE_CUDA_LAUNCHED();
}

}  // namespace eyrie::cuda
