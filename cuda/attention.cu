// Causal attention over the paged KV cache: warp-group MMAs (attention_wgmma.cu) for long
// prompts at head dim 64, tensor cores (attention_mma.cu) for head dims up to 128, fp32 CUDA
// cores beyond; the merge of key-split partials, and the tiles a step launches.
#include <cuda_bf16.h>

#include <algorithm>
#include <cfloat>
#include <string>
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

}  // namespace

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
