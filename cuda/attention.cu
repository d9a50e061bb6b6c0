// Rotary embedding fused with the write into the paged KV cache, and causal attention over the
// paged cache: one block per (token row, query head), online over the sequence's keys.
#include <cuda_bf16.h>

#include <cfloat>

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
    case 1: return static_cast<int64_t>(a.num_heads) * a.head_dim;
    default: return static_cast<int64_t>(3 * j + 1) * a.head_dim;
  }
}

// Rotates element d of a head vector (NeoX half split) at position pos, fp32 as transformers.
__device__ float rotated(const float* v, int d, int hd, int pos, float theta) {
  const int half = hd / 2, i = d % half;
  const float inv_freq = 1.0f / powf(theta, static_cast<float>(2 * i) / static_cast<float>(hd));
  float sn, cs;
  sincosf(inv_freq * static_cast<float>(pos), &sn, &cs);
  return d < half ? v[d] * cs - v[d + half] * sn : v[d] * cs + v[d - half] * sn;
}

__device__ int64_t cache_index(const AttentionShape& a, int block, int kv_head, int slot) {
  return ((static_cast<int64_t>(block) * a.num_kv_heads + kv_head) * a.block_size + slot) * a.head_dim;
}

// grid: rows; block: threads over (heads + kv heads) x head_dim.
__global__ void qkv_kernel(const float* qkv, const float* bias, int64_t rows, AttentionShape a, RowMeta m,
                           float* q, float* k_cache, float* v_cache) {
  extern __shared__ float row[];  // qkv row with bias
  const int64_t r = blockIdx.x;
  const int64_t width = static_cast<int64_t>(a.num_heads + 2 * a.num_kv_heads) * a.head_dim;
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x)
    row[i] = (qkv[r * width + i] + qkv[(rows + r) * width + i]) + (bias ? bias[i] : 0.f);
  __syncthreads();
  const int pos = m.pos[r];
  const int seq = m.seq[r];
  const int block = m.block_tables[static_cast<int64_t>(seq) * a.max_blocks_per_seq + pos / a.block_size];
  const int slot = pos % a.block_size;
  const int hd = a.head_dim;
  for (int64_t i = threadIdx.x; i < static_cast<int64_t>(a.num_heads) * hd; i += blockDim.x) {
    const int h = static_cast<int>(i / hd), d = static_cast<int>(i % hd);
    const float* v = row + q_offset(a, h);
    q[r * a.num_heads * hd + i] = a.alibi ? v[d] : rotated(v, d, hd, pos, a.rope_theta);
  }
  for (int64_t i = threadIdx.x; i < static_cast<int64_t>(a.num_kv_heads) * hd; i += blockDim.x) {
    const int j = static_cast<int>(i / hd), d = static_cast<int>(i % hd);
    const float* kv = row + k_offset(a, j);
    const float kval = a.alibi ? kv[d] : rotated(kv, d, hd, pos, a.rope_theta);
    k_cache[cache_index(a, block, j, slot) + d] = kval;
    v_cache[cache_index(a, block, j, slot) + d] = kv[hd + d];
  }
}

constexpr int kAttnThreads = 128;

// grid: (rows, heads). Scores for all keys in shared memory, then softmax, then the weighted sum.
__global__ void attention_kernel(const float* q, const float* k_cache, const float* v_cache, AttentionShape a,
                                 RowMeta m, const float* slopes, bf16* out, int64_t lo_offset) {
  extern __shared__ float smem[];
  const int hd = a.head_dim;
  float* qs = smem;             // [hd]
  float* scores = smem + hd;    // [len]
  __shared__ float red[32];
  const int64_t r = blockIdx.x;
  const int h = blockIdx.y;
  const int j = h / (a.num_heads / a.num_kv_heads);
  const int pos = m.pos[r];
  const int len = pos + 1;
  const int* table = m.block_tables + static_cast<int64_t>(m.seq[r]) * a.max_blocks_per_seq;
  const float scale = rsqrtf(static_cast<float>(hd));
  for (int d = threadIdx.x; d < hd; d += blockDim.x) qs[d] = q[(r * a.num_heads + h) * hd + d];
  __syncthreads();
  float local_max = -FLT_MAX;
  for (int p = threadIdx.x; p < len; p += blockDim.x) {
    const float* k = k_cache + cache_index(a, table[p / a.block_size], j, p % a.block_size);
    float dot = 0.f;
    for (int d = 0; d < hd; ++d) dot += qs[d] * k[d];
    float sc = dot * scale;
    if (a.alibi) sc += __bfloat162float(__float2bfloat16(slopes[h] * static_cast<float>(p))) * scale;
    scores[p] = sc;
    local_max = fmaxf(local_max, sc);
  }
  for (int o = 16; o > 0; o >>= 1) local_max = fmaxf(local_max, __shfl_xor_sync(0xffffffffu, local_max, o));
  if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = local_max;
  __syncthreads();
  float mx = -FLT_MAX;
  for (int i = 0; i < blockDim.x / 32; ++i) mx = fmaxf(mx, red[i]);
  __syncthreads();
  float local_sum = 0.f;
  for (int p = threadIdx.x; p < len; p += blockDim.x) {
    const float e = expf(scores[p] - mx);
    scores[p] = e;
    local_sum += e;
  }
  for (int o = 16; o > 0; o >>= 1) local_sum += __shfl_xor_sync(0xffffffffu, local_sum, o);
  if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = local_sum;
  __syncthreads();
  float sum = 0.f;
  for (int i = 0; i < blockDim.x / 32; ++i) sum += red[i];
  const float inv = 1.f / sum;
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float acc = 0.f;
    for (int p = 0; p < len; ++p) {
      const float* v = v_cache + cache_index(a, table[p / a.block_size], j, p % a.block_size);
      acc += scores[p] * v[d];
    }
    const float v = acc * inv;
    const bf16 hi = __float2bfloat16(v);
    out[(r * a.num_heads + h) * hd + d] = hi;
    out[lo_offset + (r * a.num_heads + h) * hd + d] = __float2bfloat16(v - __bfloat162float(hi));
  }
}

}  // namespace

void qkv_to_cache(const float* qkv, const float* bias, int64_t rows, const AttentionShape& a, const RowMeta& m,
                  float* q, float* k_cache, float* v_cache, cudaStream_t s) {
  if (rows == 0) return;
  const size_t smem = static_cast<size_t>(a.num_heads + 2 * a.num_kv_heads) * a.head_dim * sizeof(float);
  if (smem > 48 * 1024)
    EYRIE_CUDA_CHECK(cudaFuncSetAttribute(qkv_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  qkv_kernel<<<static_cast<unsigned>(rows), 256, smem, s>>>(qkv, bias, rows, a, m, q, k_cache, v_cache);
  EYRIE_CUDA_LAUNCHED();
}

void paged_attention(const float* q, const float* k_cache, const float* v_cache, int64_t rows, int32_t max_len,
                     const AttentionShape& a, const RowMeta& m, const float* slopes, bf16* out, cudaStream_t s) {
  if (rows == 0) return;
  const size_t smem = static_cast<size_t>(a.head_dim + max_len) * sizeof(float);
  if (smem > 48 * 1024)
    EYRIE_CUDA_CHECK(cudaFuncSetAttribute(attention_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(smem)));
  dim3 grid(static_cast<unsigned>(rows), static_cast<unsigned>(a.num_heads));
  attention_kernel<<<grid, kAttnThreads, smem, s>>>(q, k_cache, v_cache, a, m, slopes, out,
                                                    rows * a.num_heads * a.head_dim);
  EYRIE_CUDA_LAUNCHED();
}

}  // namespace eyrie::cuda
