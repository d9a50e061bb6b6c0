// Rotary embedding fused with the write into the paged KV cache, and causal attention over the
// paged cache: tensor cores (attention_mma.cu) for head dims up to 128, fp32 CUDA cores beyond.
#include <cuda_bf16.h>

#include <algorithm>
#include <cfloat>
#include <string>
#include <type_traits>
#include <vector>

#include "cuda/attention_common.cuh"
#include "cuda/attention_mma.hpp"
#include "cuda/attention_wgmma.hpp"
#include "cuda/check.hpp"
#include "cuda/dependent_launch.cuh"
#include "cuda/dynamic_smem.cuh"
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
__global__ void qkv_kernel(const void* qkv, const float* bias, int64_t rows, AttentionShape a, RowMeta m,
                           void* q, void* k_cache, void* v_cache) {
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

constexpr int kAttnThreads = 256;
constexpr int kTileQueries = 64;  // (row, head) queries per block, all reading one KV head
constexpr int kTileKeys = 64;     // keys per pass

// grid: query tiles. A tile is nr consecutive rows of one sequence times nh query heads that share
// one KV head, so each key and value is read once for all of them: decode rows take a whole
// group (Falcon-7B's 71 heads share one KV head), prefill rows 16 at a time. Flash-style: keys
// in tiles through shared memory, an online softmax per query, causal and (for ALiBi) biased.
__global__ void attention_kernel(const float* q, const float* k_cache, const float* v_cache, AttentionShape a,
                                 RowMeta m, const int32_t* tiles, const float* slopes, bf16* out,
                                 int64_t lo_offset, float* part_o, float* part_ml) {
  allow_dependents();  // the products after this kernel start reading their weights
  extern __shared__ float smem[];
  const int hd = a.head_dim;
  // sK rows are padded by one float: a warp reads 32 keys at the same d, which would otherwise
  // all fall in one shared-memory bank.
  const int hdp = hd + 1;
  float* sQ = smem;                               // [kTileQueries][hd]
  float* sO = sQ + kTileQueries * hd;             // [kTileQueries][hd]
  float* sK = sO + kTileQueries * hd;             // [kTileKeys][hdp]
  float* sV = sK + kTileKeys * hdp;               // [kTileKeys][hd]
  float* sS = sV + kTileKeys * hd;                // [kTileQueries][kTileKeys]
  float* sM = sS + kTileQueries * kTileKeys;      // running max per query
  float* sL = sM + kTileQueries;                  // running sum per query
  float* sA = sL + kTileQueries;                  // rescale of this pass
  const AttentionTile t(tiles + kAttentionTileInts * blockIdx.x, a, m, kTileKeys);
  const int nq = t.queries(), h0 = t.h0, nh = t.nh, p0 = t.p0, j = t.kv;
  const int kb = t.key_begin, ke = t.key_end;
  const int* table = m.block_tables + static_cast<int64_t>(m.seq[t.r0]) * a.max_blocks_per_seq;
  const float scale = rsqrtf(static_cast<float>(hd));
  for (int e = threadIdx.x; e < kTileQueries * hd; e += blockDim.x) {
    const int qi = e / hd, d = e % hd;
    float v = 0.f;
    if (qi < nq) v = q[(static_cast<int64_t>(t.r0 + qi / nh) * a.num_heads + h0 + qi % nh) * hd + d] * scale;
    sQ[e] = v;
    sO[e] = 0.f;
  }
  for (int i = threadIdx.x; i < kTileQueries; i += blockDim.x) {
    sM[i] = -FLT_MAX;
    sL[i] = 0.f;
  }
  __syncthreads();
  for (int k0 = kb; k0 < ke; k0 += kTileKeys) {
    const int nk = min(kTileKeys, ke - k0);
    for (int e = threadIdx.x; e < nk * hd; e += blockDim.x) {
      const int kk = e / hd, d = e % hd, p = k0 + kk;
      const int64_t at = cache_index(a, table[p / a.block_size], j, p % a.block_size) + d;
      sK[kk * hdp + d] = k_cache[at];
      sV[e] = v_cache[at];
    }
    __syncthreads();
    for (int e = threadIdx.x; e < nq * kTileKeys; e += blockDim.x) {
      const int qi = e / kTileKeys, kk = e % kTileKeys, p = k0 + kk;
      float sc = -FLT_MAX;
      if (kk < nk && p <= p0 + qi / nh) {
        float dot = 0.f;
        for (int d = 0; d < hd; ++d) dot += sQ[qi * hd + d] * sK[kk * hdp + d];
        sc = dot;
        if (a.alibi)
          sc += __bfloat162float(__float2bfloat16(slopes[h0 + qi % nh] * static_cast<float>(p))) * scale;
      }
      sS[e] = sc;
    }
    __syncthreads();
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    for (int qi = warp; qi < nq; qi += blockDim.x / 32) {
      float mx = fmaxf(sS[qi * kTileKeys + lane], sS[qi * kTileKeys + lane + 32]);
      for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
      const float m_new = fmaxf(sM[qi], mx);
      float sum = 0.f;
      for (int kk = lane; kk < kTileKeys; kk += 32) {
        const float v = sS[qi * kTileKeys + kk];
        const float pr = v == -FLT_MAX ? 0.f : expf(v - m_new);
        sS[qi * kTileKeys + kk] = pr;
        sum += pr;
      }
      for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
      if (lane == 0) {
        const float alpha = sM[qi] == -FLT_MAX ? 0.f : expf(sM[qi] - m_new);
        sA[qi] = alpha;
        sL[qi] = sL[qi] * alpha + sum;
        sM[qi] = m_new;
      }
    }
    __syncthreads();
    for (int e = threadIdx.x; e < nq * hd; e += blockDim.x) {
      const int qi = e / hd, d = e % hd;
      float acc = sO[e] * sA[qi];
      for (int kk = 0; kk < nk; ++kk) acc += sS[qi * kTileKeys + kk] * sV[kk * hd + d];
      sO[e] = acc;
    }
    __syncthreads();
  }
  for (int e = threadIdx.x; e < nq * hd; e += blockDim.x)
    write_attention_out(t, a, e / hd, e % hd, sO[e], sL[e / hd], out, lo_offset, part_o);
  for (int qi = threadIdx.x; qi < nq; qi += blockDim.x) write_attention_stats(t, a, qi, sM[qi], sL[qi], part_ml);
}

// grid: rows x (heads * hd / (V * blockDim), rounded up). Merges the key ranges of a split
// decode row: each range's output weighs by its softmax mass, rescaled to the common maximum. A
// thread takes V consecutive elements of one head: the kernel often runs beside a product that
// holds all but a few SMs, where each wave of blocks costs about as much as its work (on the
// H200, one element a thread took 42-45 us a layer at batch 16 and 64 beside dense_4h_to_h,
// 5-8 alone; four made those steps 1-2% faster).
template <int V>
__global__ void combine_splits_kernel(const float* part_o, const float* part_ml, const int32_t* row_split,
                                      AttentionShape a, bf16* out, int64_t lo_offset) {
  allow_dependents();  // the products after this kernel start reading their weights
  const int r = blockIdx.x;
  const int n = row_split[2 * r], slot = row_split[2 * r + 1];
  const int hd = a.head_dim;
  const int e = (blockIdx.y * blockDim.x + threadIdx.x) * V;  // h * hd + d
  if (n <= 1 || e >= a.num_heads * hd) return;
  const int h = e / hd, d = e % hd;
  float mx = -FLT_MAX;
  for (int sp = 0; sp < n; ++sp) {
    const float* ml = part_ml + (static_cast<int64_t>(slot + sp) * a.num_heads + h) * 2;
    if (ml[1] > 0.f) mx = fmaxf(mx, ml[0]);
  }
  float num[V] = {}, den = 0.f;
  for (int sp = 0; sp < n; ++sp) {
    const int64_t at = static_cast<int64_t>(slot + sp) * a.num_heads + h;
    const float l = part_ml[at * 2 + 1];
    if (l <= 0.f) continue;
    const float w = l * expf(part_ml[at * 2] - mx);
    float o[V];
    if constexpr (V == 4) {
      const float4 v = *reinterpret_cast<const float4*>(part_o + at * hd + d);
      o[0] = v.x, o[1] = v.y, o[2] = v.z, o[3] = v.w;
    } else {
      o[0] = part_o[at * hd + d];
    }
#pragma unroll
    for (int i = 0; i < V; ++i) num[i] += w * o[i];
    den += w;
  }
  const int64_t at = static_cast<int64_t>(r) * a.num_heads * hd + e;
  if constexpr (V == 4)
    store_activation4(out, lo_offset, at, make_float4(num[0] / den, num[1] / den, num[2] / den, num[3] / den),
                      a.out);
  else
    store_activation(out, lo_offset, at, num[0] / den, a.out);
}

// The queries' form as the attention kernels can read it.
void check_query_form(const char* where, const AttentionShape& a) {
  if (a.q_bf16 && (!a.bf16_products || !attention_mma_supports(a.head_dim)))
    throw InvalidArgument(std::string(where) + ": bf16 queries need bf16 products and a tensor-core head dim, not " +
                          std::to_string(a.head_dim));
}

}  // namespace

void qkv_to_cache(const void* qkv, const float* bias, int64_t rows, const AttentionShape& a, const RowMeta& m,
                  void* q, void* k_cache, void* v_cache, cudaStream_t s) {
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
  const dim3 grid(static_cast<unsigned>(rows), static_cast<unsigned>(rows > 64 ? std::min<int64_t>(2, per_row) : per_row));
  qkv_kernel<<<grid, kThreads, 0, s>>>(qkv, bias, rows, a, m, q, k_cache, v_cache);
  EYRIE_CUDA_LAUNCHED();
}

void paged_attention(const void* q, const void* k_cache, const void* v_cache, int64_t rows, int32_t num_tiles,
                     const int32_t* tiles, const AttentionShape& a, const RowMeta& m, const float* slopes, bf16* out,
                     const KeySplits& splits, cudaStream_t s) {
  if (rows == 0) return;
  check_query_form("paged_attention", a);
  if (a.block_size <= 0 || (a.block_size & (a.block_size - 1)) != 0)
    throw InvalidArgument("paged_attention: the KV block size must be a power of two, not " +
                          std::to_string(a.block_size));
  if (a.bf16_cache && (!bf16_cache_supports(a.head_dim) || !a.bf16_products))
    throw InvalidArgument("paged_attention: a bf16 KV cache needs bf16 products and a head dim in multiples of 8 up "
                          "to 128, not " + std::to_string(a.head_dim));
  if (a.halves_cache && (!bf16_cache_supports(a.head_dim) || a.bf16_products || a.bf16_cache))
    throw InvalidArgument("paged_attention: a halves KV cache needs split products and a head dim in multiples of 8 "
                          "up to 128, not " + std::to_string(a.head_dim));
  const int64_t lo_offset = rows * a.num_heads * a.head_dim;
  if (a.wgmma) {
    attention_wgmma(q, k_cache, v_cache, num_tiles, tiles, a, m, out, lo_offset, splits.part_o, splits.part_ml, s);
  } else if (attention_mma_supports(a.head_dim)) {
    attention_mma(q, k_cache, v_cache, num_tiles, tiles, a, m, slopes, out, lo_offset, splits.part_o, splits.part_ml,
                  s);
  } else {
    const int hd = a.head_dim;
    const size_t smem = static_cast<size_t>(2 * kTileQueries * hd + kTileKeys * (2 * hd + 1) +
                                            kTileQueries * kTileKeys + 3 * kTileQueries) *
                        sizeof(float);
    allow_dynamic_smem<attention_kernel>(200 * 1024);
    attention_kernel<<<static_cast<unsigned>(num_tiles), kAttnThreads, smem, s>>>(
        static_cast<const float*>(q), static_cast<const float*>(k_cache), static_cast<const float*>(v_cache), a, m,
        tiles, slopes, out, lo_offset, splits.part_o, splits.part_ml);
    EYRIE_CUDA_LAUNCHED();
  }
  if (splits.any) {
    constexpr unsigned kThreads = 128;
    const bool vec = a.head_dim % 4 == 0;
    const auto per_row = static_cast<unsigned>(a.num_heads * a.head_dim / (vec ? 4 : 1));
    const dim3 grid(static_cast<unsigned>(rows), (per_row + kThreads - 1) / kThreads);
    if (vec)
      combine_splits_kernel<4><<<grid, kThreads, 0, s>>>(splits.part_o, splits.part_ml, splits.row_split, a, out,
                                                          lo_offset);
    else
      combine_splits_kernel<1><<<grid, kThreads, 0, s>>>(splits.part_o, splits.part_ml, splits.row_split, a, out,
                                                          lo_offset);
    EYRIE_CUDA_LAUNCHED();
  }
}

int32_t attention_tile_queries(int32_t head_dim) {
  return attention_mma_supports(head_dim) ? attention_mma_queries(head_dim) : kTileQueries;
}

void attention_tiles(int32_t first_row, int32_t rows, int32_t num_heads, int32_t q_head_offset, int32_t group,
                     int32_t max_heads, int32_t max_queries, std::vector<int32_t>& tiles) {
  const int32_t per_tile_rows = rows == 1 ? 1 : 16;
  for (int32_t r = 0; r < rows; r += per_tile_rows) {
    const int32_t nr = std::min(per_tile_rows, rows - r);
    const int32_t heads = std::max(1, std::min({group, max_queries / nr, max_heads}));
    // Runs of local heads that share a KV head; a shard's first and last run may be partial.
    for (int32_t h = 0; h < num_heads;) {
      const int32_t run_end = std::min(num_heads, ((q_head_offset + h) / group + 1) * group - q_head_offset);
      for (int32_t t = h; t < run_end; t += heads) {
        tiles.push_back(first_row + r);
        tiles.push_back(nr);
        tiles.push_back(t);
        tiles.push_back(std::min(heads, run_end - t));
      }
      h = run_end;
    }
  }
}

void launch_tiles(const std::vector<int32_t>& tiles, const std::vector<int32_t>& row_split,
                  std::vector<int32_t>& launch) {
  launch.clear();
  for (std::size_t i = 0; i < tiles.size(); i += 4) {
    const int32_t r0 = tiles[i], ranges = tiles[i + 1] == 1 ? row_split[2 * r0] : 1;
    for (int32_t sp = 0; sp < ranges; ++sp) {
      launch.insert(launch.end(), tiles.begin() + i, tiles.begin() + i + 4);
      launch.push_back(sp);
      launch.push_back(ranges);
      launch.push_back(ranges > 1 ? row_split[2 * r0 + 1] : 0);
    }
  }
}

}  // namespace eyrie::cuda
