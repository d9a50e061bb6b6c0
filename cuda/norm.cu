// LayerNorm and per-row logits statistics: one block per row, warp-shuffle reductions.
#include <cuda_bf16.h>

#include <algorithm>
#include <cfloat>
#include <string>

#include "cuda/activation_store.cuh"
#include "cuda/check.hpp"
#include "cuda/dependent_launch.cuh"
#include "cuda/fp8.hpp"
#include "cuda/kernels.hpp"
#include "cuda/residual.cuh"

namespace eyrie::cuda {
namespace {

// The block's total of v, in every thread: each warp's sum by shuffles, then every warp sums
// the warps' sums by shuffles too (one shared load a thread, where a loop over them waited on
// each in turn; the same order, so the same bits, in every thread). `shared` holds a float a
// warp, and must not be the array of the block's previous call: nothing waits before it is
// written.
__device__ float block_sum(float v, float* shared) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  float total = lane < static_cast<int>(blockDim.x / 32) ? shared[lane] : 0.f;
  for (int o = 16; o > 0; o >>= 1) total += __shfl_xor_sync(0xffffffffu, total, o);
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
  Activations form;   // of the outputs
  f16* out16;         // the last norm's values as fp16 rows too, when given
  Activations form1;  // of out1 (FirstNormOutput; else form)
  uint8_t* rest8;     // out1's e4m3 rests, when given (form1 f16_rows)
  const float* scales;
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
  __shared__ float shared[2][32];  // the mean's and the variance's warp sums
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
      xi += residual_at(res.a, res.a_bias, res.c, res.c_bias, res.halves, res.c_has_halves(), r * hidden + i, lo_offset,
                        i);
      row[i] = xi;
    }
    v[k] = xi;
    sum += xi;
  }
  const float mean = block_sum(sum, shared[0]) / static_cast<float>(hidden);
  float sq = 0.f;
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const int64_t i = threadIdx.x + static_cast<int64_t>(k) * blockDim.x;
    if (i >= hidden) continue;
    const float d = v[k] - mean;
    sq += d * d;
  }
  const float inv = rsqrtf(block_sum(sq, shared[1]) / static_cast<float>(hidden) + p.eps);
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const int64_t i = threadIdx.x + static_cast<int64_t>(k) * blockDim.x;
    if (i >= hidden) continue;
    const float norm = (v[k] - mean) * inv;
    const float n1 = norm * w1v[k] + b1v[k];
    store_activation(out1, lo_offset, r * hidden + i, n1, p.form1);
    if (p.rest8) p.rest8[r * hidden + i] = rest8(n1, p.scales[kRestQuant]);
    float last = n1;
    if (w2) {
      last = norm * w2[i] + b2[i];
      store_activation(out2, lo_offset, r * hidden + i, last, p.form);
    }
    if (p.out16) p.out16[r * hidden + i] = saturated_f16(last);
  }
}

// layer_norm_kernel with 16-byte accesses: K float4 of the row per thread, the bf16 outputs
// stored four at a time. For rows in multiples of 4 floats and 16-byte aligned arrays.
__device__ inline float4 ldg4(const float* p, int64_t i) { return __ldg(reinterpret_cast<const float4*>(p) + i); }

// kEarlyWeights: the first norm's weights are fetched with the row, ahead of the reductions,
// which a decode step's row or few wait on; a step of many rows fetches them after, from cache,
// and keeps the registers (K = 4 spilled with them) for more rows in flight per SM.
template <int K, bool kEarlyWeights>
__global__ void __launch_bounds__(1024) layer_norm_vec_kernel(NormArgs p) {
  allow_dependents();  // the products after this kernel start reading their weights
  const PendingResidual& res = p.res;
  const int64_t hidden = p.hidden, h4 = hidden / 4, lo_offset = p.lo_offset;
  __shared__ float shared[2][32];  // the mean's and the variance's warp sums
  const int64_t r = blockIdx.x;
  float4* row = reinterpret_cast<float4*>(p.x + (p.rows_idx ? p.rows_idx[r] : r) * hidden);
  float4 v[K], w1v[kEarlyWeights ? K : 1], b1v[kEarlyWeights ? K : 1];
  float sum = 0.f;
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const int64_t i = threadIdx.x + static_cast<int64_t>(k) * blockDim.x;
    const float4 zero = make_float4(0.f, 0.f, 0.f, 0.f);
    v[k] = zero;
    if (i >= h4) continue;
    if constexpr (kEarlyWeights) {
      w1v[k] = ldg4(p.w1, i);
      b1v[k] = ldg4(p.b1, i);
    }
    float4 xi = row[i];
    if (res.a) {
      const int64_t at = r * h4 + i, n4 = lo_offset / 4;
      const float4 a = ldg4(res.a, at), al = res.halves ? ldg4(res.a, n4 + at) : zero;
      const float4 ab = res.a_bias ? ldg4(res.a_bias, i) : zero;
      const bool has_c = res.c != nullptr;
      float4 c = zero, cl = zero, cb = zero;
      if (has_c) {
        c = ldg4(res.c, at);
        cl = res.c_has_halves() ? ldg4(res.c, n4 + at) : zero;
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
  const float mean = block_sum(sum, shared[0]) / static_cast<float>(hidden);
  float sq = 0.f;
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const int64_t i = threadIdx.x + static_cast<int64_t>(k) * blockDim.x;
    if (i >= h4) continue;
    const float dx = v[k].x - mean, dy = v[k].y - mean, dz = v[k].z - mean, dw = v[k].w - mean;
    sq += (dx * dx + dy * dy) + (dz * dz + dw * dw);
  }
  const float inv = rsqrtf(block_sum(sq, shared[1]) / static_cast<float>(hidden) + p.eps);
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const int64_t i = threadIdx.x + static_cast<int64_t>(k) * blockDim.x;
    if (i >= h4) continue;
    const float4 n = make_float4((v[k].x - mean) * inv, (v[k].y - mean) * inv, (v[k].z - mean) * inv,
                                 (v[k].w - mean) * inv);
    const int64_t o = r * hidden + 4 * i;
    float4 w1, b1;
    if constexpr (kEarlyWeights) {
      w1 = w1v[k];
      b1 = b1v[k];
    } else {
      w1 = ldg4(p.w1, i);
      b1 = ldg4(p.b1, i);
    }
    float4 last = make_float4(n.x * w1.x + b1.x, n.y * w1.y + b1.y, n.z * w1.z + b1.z, n.w * w1.w + b1.w);
    store_activation4(p.out1, lo_offset, o, last, p.form1);
    if (p.rest8) put_rest4(p.rest8 + o, last, p.scales[kRestQuant]);
    if (p.w2) {
      const float4 w2 = ldg4(p.w2, i), b2 = ldg4(p.b2, i);
      last = make_float4(n.x * w2.x + b2.x, n.y * w2.y + b2.y, n.z * w2.z + b2.z, n.w * w2.w + b2.w);
      store_activation4(p.out2, lo_offset, o, last, p.form);
    }
    if (p.out16) put_f16x4(p.out16 + o, last);
  }
}

bool aligned16(const void* q) { return reinterpret_cast<uintptr_t>(q) % 16 == 0; }

bool vector_ready(const NormArgs& p) {
  const PendingResidual& r = p.res;
  // Four outputs a store.
  auto out_align = [](Activations form) -> uintptr_t { return form == Activations::fp32_rows ? 16 : 8; };
  return p.hidden % 4 == 0 && aligned16(p.x) && aligned16(p.w1) && aligned16(p.b1) && aligned16(p.w2) &&
         aligned16(p.b2) && aligned16(r.a) && aligned16(r.a_bias) && aligned16(r.c) && aligned16(r.c_bias) &&
         reinterpret_cast<uintptr_t>(p.out1) % out_align(p.form1) == 0 &&
         reinterpret_cast<uintptr_t>(p.out2) % out_align(p.form) == 0 &&
         reinterpret_cast<uintptr_t>(p.out16) % 8 == 0 && reinterpret_cast<uintptr_t>(p.rest8) % 4 == 0;
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
  const bool many = rows > kManyNormRows;
  switch (k) {
    case 1:
      many ? layer_norm_vec_kernel<1, false><<<blocks, threads, 0, s>>>(p)
           : layer_norm_vec_kernel<1, true><<<blocks, threads, 0, s>>>(p);
      break;
    case 2:
      many ? layer_norm_vec_kernel<2, false><<<blocks, threads, 0, s>>>(p)
           : layer_norm_vec_kernel<2, true><<<blocks, threads, 0, s>>>(p);
      break;
    default:
      many ? layer_norm_vec_kernel<4, false><<<blocks, threads, 0, s>>>(p)
           : layer_norm_vec_kernel<4, true><<<blocks, threads, 0, s>>>(p);
      break;
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

// Running (max, sum of exp(x - max), first index of the max) over one pass of the values, so
// the row is read once; merged across threads as flash attention merges its partial softmaxes.
struct RowStats {
  float m = -FLT_MAX, s = 0.f;
  int32_t i = 0x7fffffff;

  __device__ void add(float x, int32_t at) {
    if (x > m) {
      s = s * __expf(m - x) + 1.f;
      m = x;
      i = at;
    } else {
      s += __expf(x - m);
    }
  }
  // Max with the lowest index on ties, as torch.argmax.
  __device__ void merge(float om, float os, int32_t oi) {
    const float nm = fmaxf(m, om);
    s = s * __expf(m - nm) + os * __expf(om - nm);
    if (om > m || (om == m && oi < i)) i = oi;
    m = nm;
  }
  __device__ void merge_warp() {
    for (int o = 16; o > 0; o >>= 1)
      merge(__shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o),
            __shfl_xor_sync(0xffffffffu, i, o));
  }
};

// One row per block. kVec: the row in float4s, four loads in flight per thread before their
// values are taken in (vocab a multiple of 4, logits 16-byte aligned).
template <bool kVec>
__global__ void __launch_bounds__(1024) row_stats_kernel(const float* logits, int64_t vocab, float* lse,
                                                         int32_t* argmax, float* max) {
  __shared__ float sm[32], ss[32];
  __shared__ int32_t si[32];
  const float* row = logits + blockIdx.x * vocab;
  RowStats st;
  const int64_t step = blockDim.x;
  if constexpr (kVec) {
    const float4* row4 = reinterpret_cast<const float4*>(row);
    const int64_t n4 = vocab / 4;
    int64_t j = threadIdx.x;
    for (; j + 3 * step < n4; j += 4 * step) {
      float4 v[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) v[u] = row4[j + u * step];
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const auto at = static_cast<int32_t>(4 * (j + u * step));
        st.add(v[u].x, at);
        st.add(v[u].y, at + 1);
        st.add(v[u].z, at + 2);
        st.add(v[u].w, at + 3);
      }
    }
    for (; j < n4; j += step) {
      const float4 v = row4[j];
      const auto at = static_cast<int32_t>(4 * j);
      st.add(v.x, at);
      st.add(v.y, at + 1);
      st.add(v.z, at + 2);
      st.add(v.w, at + 3);
    }
  } else {
    for (int64_t j = threadIdx.x; j < vocab; j += step) st.add(row[j], static_cast<int32_t>(j));
  }
  st.merge_warp();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) {
    sm[warp] = st.m;
    ss[warp] = st.s;
    si[warp] = st.i;
  }
  __syncthreads();
  if (warp != 0) return;
  RowStats all;
  if (lane < static_cast<int>(blockDim.x / 32)) {
    all.m = sm[lane];
    all.s = ss[lane];
    all.i = si[lane];
  }
  all.merge_warp();
  if (lane == 0) {
    lse[blockIdx.x] = all.m + logf(all.s);
    argmax[blockIdx.x] = all.i;
    max[blockIdx.x] = all.m;
  }
}

}  // namespace

void layer_norm(const float* x, const int32_t* rows_idx, int64_t rows, int64_t hidden, const float* w, const float* b,
                float eps, bf16* out, cudaStream_t s, Activations form, f16* out16) {
  if (rows == 0) return;
  // Without a pending residual the kernel only reads x.
  const NormArgs p{const_cast<float*>(x), rows_idx, {},    hidden, w,       b,      nullptr, nullptr, eps, out, nullptr,
                   rows * hidden,         form,     out16, form,   nullptr, nullptr};
  launch_layer_norm(p, rows, s);
}

void residual_layer_norm(float* x, const PendingResidual& res, int64_t rows, int64_t hidden, const float* w1,
                         const float* b1, const float* w2, const float* b2, float eps, bf16* out1, bf16* out2,
                         cudaStream_t s, Activations form, f16* out16, const FirstNormOutput* first) {
  if (rows == 0) return;
  if (first && first->rest8 && (first->form != Activations::f16_rows || !first->scales))
    throw InvalidArgument("residual_layer_norm: e4m3 rests go with fp16 rows and their scales");
  launch_layer_norm({x, nullptr, res, hidden, w1, b1, w2, b2, eps, out1, out2, rows * hidden, form, out16,
                     first ? first->form : form, first ? first->rest8 : nullptr, first ? first->scales : nullptr},
                    rows, s);
}

void row_stats(const float* logits, int64_t rows, int64_t vocab, float* lse, int32_t* argmax, float* max,
               cudaStream_t s) {
  if (rows == 0) return;
  if (vocab % 4 == 0 && aligned16(logits))
    row_stats_kernel<true><<<static_cast<unsigned>(rows), 1024, 0, s>>>(logits, vocab, lse, argmax, max);
  else
    row_stats_kernel<false><<<static_cast<unsigned>(rows), 1024, 0, s>>>(logits, vocab, lse, argmax, max);
  EYRIE_CUDA_LAUNCHED();
}

}  // namespace eyrie::cuda
