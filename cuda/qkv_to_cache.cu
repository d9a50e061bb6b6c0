// Rotary embedding of a step's queries and keys, fused with the write of keys and values into
// the paged KV cache (qkv_to_cache).
#include <cuda_bf16.h>

#include <algorithm>
#include <string>
#include <type_traits>

#include "cuda/attention_common.cuh"
#include "cuda/check.hpp"
#include "cuda/kernels.hpp"

namespace eyrie::cuda {
namespace {

__device__ int64_t q_offset(const AttentionShape& a, int h) {
  const int g = a.num_heads / a.num_kv_heads;
  switch (a.layout) {
    case 0: return static_cast<int64_t>((h / g) * (g + 2) + h % g) * a.head_dim;
    case 1: return static_cast<int64_t>(h) * a.head_dim;
    default: return static_cast<int64_t>(3 * h) * a.head_dim;
  }
}

__device__ int64_t k_offset(const AttentionShape& a, int j) {
  const int g = a.num_heads / a.num_kv_heads;
  switch (a.layout) {
    case 0: return static_cast<int64_t>(j * (g + 2) + g) * a.head_dim;
    case 1: return static_cast<int64_t>(a.num_heads + 2 * j) * a.head_dim;
    default: return static_cast<int64_t>(3 * j + 1) * a.head_dim;
  }
}

// Rotary pair i's angle at position pos, as transformers computes it in fp32.
__device__ inline void rotary_angle(const AttentionShape& a, int i, int pos, float& sn, float& cs) {
  const float inv_freq = 1.0f / powf(a.rope_theta, static_cast<float>(2 * i) / static_cast<float>(a.head_dim));
  sincosf(inv_freq * static_cast<float>(pos), &sn, &cs);
}

// A cache row (`row`: the index an fp32 row would start at) as the activation stores write it:
// fp32, bf16, or split-bf16 halves with each row's hd high halves before its low ones.
struct CacheRow {
  bf16* at;
  int64_t lo_offset;
  Activations form;
};

__device__ inline CacheRow cache_row(const AttentionShape& a, void* cache, int64_t row) {
  if (a.halves_cache) return {static_cast<bf16*>(cache) + 2 * row, a.head_dim, Activations::split_halves};
  if (a.bf16_cache) return {static_cast<bf16*>(cache) + row, 0, Activations::bf16_rows};
  return {reinterpret_cast<bf16*>(static_cast<float*>(cache) + row), 0, Activations::fp32_rows};
}

// grid: rows x pair groups; thread: pairs (i, i + hd/2) of query or key heads, each rotated
// together (NeoX half split, fp32 as transformers) with one angle, and for key heads the same
// pair of the value. A decode step's row or few spread each row over many small blocks; a
// prompt's many rows take few blocks per row, each thread then visiting several heads at the
// same pair index i, whose angle it computes once.
__global__ void qkv_kernel(const void* qkv, const float* bias, int64_t rows, AttentionShape a, RowMeta m, void* q,
                           void* k_cache, void* v_cache) {
  const int hd = a.head_dim, half = (hd + 1) / 2;
  const int64_t total = static_cast<int64_t>(a.num_heads + a.num_kv_heads) * half;
  const int64_t r = blockIdx.x;
  const int64_t width = static_cast<int64_t>(a.num_heads + 2 * a.num_kv_heads) * hd;
  const int pos = m.pos[r];
  const int64_t at0 =
      cache_index(a, m.block_tables[static_cast<int64_t>(m.seq[r]) * a.max_blocks_per_seq + pos / a.block_size], 0,
                  pos % a.block_size);
  const float* qkv32 = static_cast<const float*>(qkv);
  auto value = [&](int64_t c) {
    const float v = a.qkv_bf16 ? __bfloat162float(static_cast<const bf16*>(qkv)[r * width + c])
                               : qkv32[r * width + c] + (a.qkv_halves ? qkv32[(rows + r) * width + c] : 0.f);
    return v + (bias ? bias[c] : 0.f);
  };
  const float q_scale = rsqrtf(static_cast<float>(hd));
  auto put = [&](void* cache, int64_t row, int i, float v) {
    const CacheRow c = cache_row(a, cache, row);
    store_activation(c.at, c.lo_offset, i, v, c.form);
  };
  int angle_of = -1;
  float sn = 0.f, cs = 1.f;
  for (int64_t pair = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x; pair < total;
       pair += static_cast<int64_t>(gridDim.y) * blockDim.x) {
    const int h = static_cast<int>(pair / half), i = static_cast<int>(pair % half);
    const bool query = h < a.num_heads;
    const int64_t off = query ? q_offset(a, h) : k_offset(a, h - a.num_heads);
    // An odd head dim (ALiBi models only) leaves the last element unpaired.
    const bool second = i + half < hd;
    const float x1 = value(off + i), x2 = second ? value(off + i + half) : 0.f;
    float o1 = x1, o2 = x2;
    if (!a.alibi) {
      if (i != angle_of) {
        rotary_angle(a, i, pos, sn, cs);
        angle_of = i;
      }
      o1 = x1 * cs - x2 * sn;
      o2 = x2 * cs + x1 * sn;
    }
    if (query) {
      const int64_t row = (r * a.num_heads + h) * hd;
      if (a.q_bf16) {
        bf16* qh = static_cast<bf16*>(q) + row;
        qh[i] = __float2bfloat16(o1 * q_scale);
        if (second) qh[i + half] = __float2bfloat16(o2 * q_scale);
      } else {
        float* qh = static_cast<float*>(q) + row;
        qh[i] = o1;
        if (second) qh[i + half] = o2;
      }
      continue;
    }
    // Head j's slot lies j * block_size * hd past head 0's (cache_index).
    const int64_t at = at0 + static_cast<int64_t>(h - a.num_heads) * a.block_size * hd;
    put(k_cache, at, i, o1);
    put(v_cache, at, i, value(off + hd + i));
    if (second) {
      put(k_cache, at, i + half, o2);
      put(v_cache, at, i + half, value(off + hd + i + half));
    }
  }
}

// Four consecutive cache elements from v (see cache_row).
__device__ inline void put4(const AttentionShape& a, void* cache, int64_t row, int i, const float (&v)[4]) {
  const CacheRow c = cache_row(a, cache, row);
  store_activation4(c.at, c.lo_offset, i, make_float4(v[0], v[1], v[2], v[3]), c.form);
}

// v += four biases, when given.
__device__ inline void add_bias4(const float* bias, float (&v)[4]) {
  if (!bias) return;
  const float4 b = *reinterpret_cast<const float4*>(bias);
  v[0] += b.x;
  v[1] += b.y;
  v[2] += b.z;
  v[3] += b.w;
}

// Four bf16 values (8 bytes) as floats, plus four biases when given.
__device__ inline void load4(const bf16* p, const float* bias, float (&v)[4]) {
  const uint2 u = *reinterpret_cast<const uint2*>(p);
  const __nv_bfloat162 p01 = *reinterpret_cast<const __nv_bfloat162*>(&u.x);
  const __nv_bfloat162 p23 = *reinterpret_cast<const __nv_bfloat162*>(&u.y);
  v[0] = __low2float(p01);
  v[1] = __high2float(p01);
  v[2] = __low2float(p23);
  v[3] = __high2float(p23);
  add_bias4(bias, v);
}

// Four fp32 values, plus the low parts of split products' outputs (lo, when given) and four
// biases (when given), added in qkv_kernel's order.
__device__ inline void load4(const float* p, const float* lo, const float* bias, float (&v)[4]) {
  float4 x = *reinterpret_cast<const float4*>(p);
  if (lo) {
    const float4 l = *reinterpret_cast<const float4*>(lo);
    x = make_float4(x.x + l.x, x.y + l.y, x.z + l.z, x.w + l.w);
  }
  v[0] = x.x;
  v[1] = x.y;
  v[2] = x.z;
  v[3] = x.w;
  add_bias4(bias, v);
}

constexpr int kQkvRowThreads = 128;
constexpr int64_t kQkvRowsKernelRows = 512;
// From this many rows an fp32 query_key_value output takes qkv_rows_kernel too: past 64 rows
// qkv_kernel gives each thread nine pairs in turn, and a batch-256 decode step's 256 rows took
// 12 us a layer on an H200, bound by the latency of those loads.
constexpr int64_t kQkvRowsKernelFp32Rows = 65;
constexpr int kQkvRowHalfMax = 128;  // half the head dim, at most

// qkv_kernel for head dims in multiples of 8 up to 256, with the same arithmetic, on a bf16
// query_key_value output (AttentionShape::qkv_bf16) or an fp32 one, whose split products' low
// parts (AttentionShape::qkv_halves) follow its rows. qkv_kernel's scattered two-byte accesses
// and its angles, one per thread and head pass, left a prompt's rows latency-bound (43 us a
// layer for 2048 Falcon-7B rows, 0.9 TB/s). Here a block's row has its angles worked out once,
// into shared memory, and each item is four adjacent pairs of one head (8-byte loads and
// stores); small blocks keep enough of them resident to hide the loads' latency.
// grid: rows x item chunks; thread: items of heads * hd / 8, strided by the row's threads.
template <typename In>
__global__ void __launch_bounds__(kQkvRowThreads)
    qkv_rows_kernel(const In* __restrict__ qkv, int64_t rows, const float* __restrict__ bias, AttentionShape a,
                    RowMeta m, void* __restrict__ q, void* __restrict__ k_cache, void* __restrict__ v_cache) {
  __shared__ float2 angle[kQkvRowHalfMax];  // (cos, sin) of pair i at this row's position
  const int hd = a.head_dim, half = hd / 2, groups = half / 4;
  const int64_t r = blockIdx.x;
  const int pos = m.pos[r];
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    float sn = 0.f, cs = 1.f;
    if (!a.alibi) rotary_angle(a, i, pos, sn, cs);
    angle[i] = make_float2(cs, sn);
  }
  const int64_t at0 =
      cache_index(a, m.block_tables[static_cast<int64_t>(m.seq[r]) * a.max_blocks_per_seq + pos / a.block_size], 0,
                  pos % a.block_size);
  const int64_t width = static_cast<int64_t>(a.num_heads + 2 * a.num_kv_heads) * hd;
  const In* row = qkv + r * width;
  const In* lo_row = a.qkv_halves ? qkv + (rows + r) * width : nullptr;
  // The four values at column c: bf16, or fp32 with their low parts.
  auto load = [&](int64_t c, float(&v)[4]) {
    if constexpr (std::is_same_v<In, float>)
      load4(row + c, lo_row ? lo_row + c : nullptr, bias ? bias + c : nullptr, v);
    else
      load4(row + c, bias ? bias + c : nullptr, v);
  };
  const float q_scale = rsqrtf(static_cast<float>(hd));
  const int items = (a.num_heads + a.num_kv_heads) * groups;
  __syncthreads();
  for (int item = blockIdx.y * blockDim.x + threadIdx.x; item < items; item += gridDim.y * blockDim.x) {
    const int h = item / groups, i = 4 * (item % groups);
    const bool query = h < a.num_heads;
    const int64_t off = query ? q_offset(a, h) : k_offset(a, h - a.num_heads);
    float x1[4], x2[4], v1[4], v2[4];
    load(off + i, x1);
    load(off + half + i, x2);
    if (!query) {
      load(off + hd + i, v1);
      load(off + hd + half + i, v2);
    }
    float o1[4], o2[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const float2 cs = angle[i + k];
      o1[k] = x1[k] * cs.x - x2[k] * cs.y;
      o2[k] = x2[k] * cs.x + x1[k] * cs.y;
    }
    if (query) {
      const int64_t qrow = (r * a.num_heads + h) * hd;
      if (a.q_bf16) {
        bf16* qh = static_cast<bf16*>(q) + qrow;
        put_bf16x4(qh + i, make_float4(o1[0] * q_scale, o1[1] * q_scale, o1[2] * q_scale, o1[3] * q_scale));
        put_bf16x4(qh + half + i, make_float4(o2[0] * q_scale, o2[1] * q_scale, o2[2] * q_scale, o2[3] * q_scale));
      } else {
        float* qh = static_cast<float*>(q) + qrow;
        *reinterpret_cast<float4*>(qh + i) = make_float4(o1[0], o1[1], o1[2], o1[3]);
        *reinterpret_cast<float4*>(qh + half + i) = make_float4(o2[0], o2[1], o2[2], o2[3]);
      }
      continue;
    }
    const int64_t at = at0 + static_cast<int64_t>(h - a.num_heads) * a.block_size * hd;
    put4(a, k_cache, at, i, o1);
    put4(a, k_cache, at, half + i, o2);
    put4(a, v_cache, at, i, v1);
    put4(a, v_cache, at, half + i, v2);
  }
}

}  // namespace

void qkv_to_cache(const void* qkv, const float* bias, int64_t rows, const AttentionShape& a, const RowMeta& m, void* q,
                  void* k_cache, void* v_cache, cudaStream_t s) {
  if (rows == 0) return;
  check_query_form("qkv_to_cache", a);
  if (a.qkv_bf16 && a.qkv_halves)
    throw InvalidArgument("qkv_to_cache: a bf16 query_key_value output has no low halves");
  // qkv_rows_kernel from a long prompt's row count on a bf16 output: at 128 rows qkv_kernel ran
  // Falcon-7B's TTFT 128 faster (4.72-4.81 ms against 4.82-4.90 on an H200); at 2048, 0.55 ms of
  // kernel time against 1.39 a prompt.
  if (a.head_dim % 8 == 0 && a.head_dim / 2 <= kQkvRowHalfMax &&
      rows >= (a.qkv_bf16 ? kQkvRowsKernelRows : kQkvRowsKernelFp32Rows)) {
    // One or two blocks a row.
    const int64_t items = static_cast<int64_t>(a.num_heads + a.num_kv_heads) * (a.head_dim / 8);
    const int64_t chunks =
        std::clamp<int64_t>((4096 + rows - 1) / rows, 1, (items + kQkvRowThreads - 1) / kQkvRowThreads);
    const dim3 grid(static_cast<unsigned>(rows), static_cast<unsigned>(chunks));
    if (a.qkv_bf16)
      qkv_rows_kernel<<<grid, kQkvRowThreads, 0, s>>>(static_cast<const bf16*>(qkv), rows, bias, a, m, q, k_cache,
                                                      v_cache);
    else
      qkv_rows_kernel<<<grid, kQkvRowThreads, 0, s>>>(static_cast<const float*>(qkv), rows, bias, a, m, q, k_cache,
                                                      v_cache);
    EYRIE_CUDA_LAUNCHED();
    return;
  }
  constexpr int kThreads = 128;
  const int64_t pairs = static_cast<int64_t>(a.num_heads + a.num_kv_heads) * ((a.head_dim + 1) / 2);
  // Up to 64 rows, a thread per pair (the blocks of a decode step's rows fill the SMs); past
  // that, two blocks per row, so a thread's pairs share their angle when 256 is a multiple of
  // half the head dim.
  const int64_t per_row = (pairs + kThreads - 1) / kThreads;
  const dim3 grid(static_cast<unsigned>(rows),
                  static_cast<unsigned>(rows > 64 ? std::min<int64_t>(2, per_row) : per_row));
  qkv_kernel<<<grid, kThreads, 0, s>>>(qkv, bias, rows, a, m, q, k_cache, v_cache);
  EYRIE_CUDA_LAUNCHED();
}

}  // namespace eyrie::cuda
