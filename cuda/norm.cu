// LayerNorm and per-row logits statistics: one block per row, warp-shuffle reductions.
#include <cuda_bf16.h>

#include <algorithm>
#include <cfloat>
#include <string>

#include "cuda/check.hpp"
#include "cuda/dependent_launch.cuh"
#include "cuda/kernels.hpp"
#include "cuda/residual.cuh"

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
  allow_dependents();  // the products after this kernel start reading their weights
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
      // As residual_kernel: the pending outputs' low halves are rows * hidden further on.
      xi += residual_at(res.a, res.a_bias, res.c, res.c_bias, res.halves, r * hidden + i, lo_offset, i);
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

// layer_norm_kernel with 16-byte accesses: K float4 of the row per thread, the bf16 outputs
// stored four at a time. For rows in multiples of 4 floats and 16-byte aligned arrays.
__device__ inline float4 ldg4(const float* p, int64_t i) { return __ldg(reinterpret_cast<const float4*>(p) + i); }

__device__ inline void store_split4(bf16* hi, bf16* lo, float4 v) {
  const __nv_bfloat162 h01 = __floats2bfloat162_rn(v.x, v.y), h23 = __floats2bfloat162_rn(v.z, v.w);
  const __nv_bfloat162 l01 = __floats2bfloat162_rn(v.x - __low2float(h01), v.y - __high2float(h01));
  const __nv_bfloat162 l23 = __floats2bfloat162_rn(v.z - __low2float(h23), v.w - __high2float(h23));
  *reinterpret_cast<uint2*>(hi) =
      make_uint2(*reinterpret_cast<const uint32_t*>(&h01), *reinterpret_cast<const uint32_t*>(&h23));
  *reinterpret_cast<uint2*>(lo) =
      make_uint2(*reinterpret_cast<const uint32_t*>(&l01), *reinterpret_cast<const uint32_t*>(&l23));
}

template <int K>
__global__ void __launch_bounds__(1024) layer_norm_vec_kernel(NormArgs p) {
  allow_dependents();  // the products after this kernel start reading their weights
  const PendingResidual& res = p.res;
  const int64_t hidden = p.hidden, h4 = hidden / 4, lo_offset = p.lo_offset;
  __shared__ float shared[32];
  const int64_t r = blockIdx.x;
  float4* row = reinterpret_cast<float4*>(p.x + (p.rows_idx ? p.rows_idx[r] : r) * hidden);
  float4 v[K], w1v[K], b1v[K];
  float sum = 0.f;
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const int64_t i = threadIdx.x + static_cast<int64_t>(k) * blockDim.x;
    const float4 zero = make_float4(0.f, 0.f, 0.f, 0.f);
    v[k] = w1v[k] = b1v[k] = zero;
    if (i >= h4) continue;
    w1v[k] = ldg4(p.w1, i);
    b1v[k] = ldg4(p.b1, i);
    float4 xi = row[i];
    if (res.a) {
      const int64_t at = r * h4 + i, n4 = lo_offset / 4;
      const float4 a = ldg4(res.a, at), al = res.halves ? ldg4(res.a, n4 + at) : zero;
      const float4 ab = res.a_bias ? ldg4(res.a_bias, i) : zero;
      const bool has_c = res.c != nullptr;
      float4 c = zero, cl = zero, cb = zero;
      if (has_c) {
        c = ldg4(res.c, at);
        cl = res.halves ? ldg4(res.c, n4 + at) : zero;
        if (res.c_bias) cb = ldg4(res.c_bias, i);
      }
      xi.x += residual_sum(a.x, al.x, ab.x, has_c, c.x, cl.x, cb.x);
      xi.y += residual_sum(a.y, al.y, ab.y, has_c, c.y, cl.y, cb.y);
      xi.z += residual_sum(a.z, al.z, ab.z, has_c, c.z, cl.z, cb.z);
      xi.w += residual_sum(a.w, al.w, ab.w, has_c, c.w, cl.w, cb.w);
      row[i] = xi;
    }
    v[k] = xi;
    sum += (xi.x + xi.y) + (xi.z + xi.w);
  }
  const float mean = block_sum(sum, shared) / static_cast<float>(hidden);
  float sq = 0.f;
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const int64_t i = threadIdx.x + static_cast<int64_t>(k) * blockDim.x;
    if (i >= h4) continue;
    const float dx = v[k].x - mean, dy = v[k].y - mean, dz = v[k].z - mean, dw = v[k].w - mean;
    sq += (dx * dx + dy * dy) + (dz * dz + dw * dw);
  }
  const float inv = rsqrtf(block_sum(sq, shared) / static_cast<float>(hidden) + p.eps);
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const int64_t i = threadIdx.x + static_cast<int64_t>(k) * blockDim.x;
    if (i >= h4) continue;
    const float4 n = make_float4((v[k].x - mean) * inv, (v[k].y - mean) * inv, (v[k].z - mean) * inv,
                                 (v[k].w - mean) * inv);
    const int64_t o = r * hidden + 4 * i;
    store_split4(p.out1 + o, p.out1 + lo_offset + o,
                 make_float4(n.x * w1v[k].x + b1v[k].x, n.y * w1v[k].y + b1v[k].y, n.z * w1v[k].z + b1v[k].z,
                             n.w * w1v[k].w + b1v[k].w));
    if (p.w2) {
      const float4 w2 = ldg4(p.w2, i), b2 = ldg4(p.b2, i);
      store_split4(p.out2 + o, p.out2 + lo_offset + o,
                   make_float4(n.x * w2.x + b2.x, n.y * w2.y + b2.y, n.z * w2.z + b2.z, n.w * w2.w + b2.w));
    }
  }
}

bool aligned16(const void* q) { return reinterpret_cast<uintptr_t>(q) % 16 == 0; }

bool vector_ready(const NormArgs& p) {
  const PendingResidual& r = p.res;
  return p.hidden % 4 == 0 && aligned16(p.x) && aligned16(p.w1) && aligned16(p.b1) && aligned16(p.w2) &&
         aligned16(p.b2) && aligned16(r.a) && aligned16(r.a_bias) && aligned16(r.c) && aligned16(r.c_bias) &&
         reinterpret_cast<uintptr_t>(p.out1) % 8 == 0 && reinterpret_cast<uintptr_t>(p.out2) % 8 == 0;
}

// A step of many rows has blocks enough to fill the SMs: fewer threads per row, more float4
// each, so more rows' loads are in flight per SM. A step of a few rows spreads each row over as
// many threads as a block has, since then one row's latency is the kernel's.
constexpr int64_t kManyNormRows = 64;

void launch_layer_norm_vec(const NormArgs& p, int64_t rows, cudaStream_t s) {
  const int64_t h4 = p.hidden / 4;
  int k = 1;
  while (static_cast<int64_t>(k) * 1024 < h4) k *= 2;
  if (rows > kManyNormRows)
    while (k < 4 && static_cast<int64_t>(k) * 256 < h4) k *= 2;
  const auto threads = static_cast<unsigned>(std::max<int64_t>(32, ((h4 + k - 1) / k + 31) / 32 * 32));
  const auto blocks = static_cast<unsigned>(rows);
  switch (k) {
    case 1: layer_norm_vec_kernel<1><<<blocks, threads, 0, s>>>(p); break;
    case 2: layer_norm_vec_kernel<2><<<blocks, threads, 0, s>>>(p); break;
    default: layer_norm_vec_kernel<4><<<blocks, threads, 0, s>>>(p); break;
  }
  EYRIE_CUDA_LAUNCHED();
}

// Values per thread (a power of two) and threads per block for a row of `hidden`.
void launch_layer_norm(const NormArgs& p, int64_t rows, cudaStream_t s) {
  if (p.hidden > kLayerNormHiddenMax)
    throw InvalidArgument("layer_norm: hidden size " + std::to_string(p.hidden) + " is over the CUDA kernel's " +
                          std::to_string(kLayerNormHiddenMax));
  if (vector_ready(p)) {
    launch_layer_norm_vec(p, rows, s);
    return;
  }
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
