// Paged causal attention on tensor cores (bf16 MMA, fp32 accumulation) with the precision of
// fp32: queries, keys, values and probabilities each enter as two bf16 halves (hi + lo) and
// every product takes three MMAs (hi.hi + hi.lo + lo.hi), since bf16 keys alone move the
// reference fixtures' logprobs by up to 0.37. Same tiles, masking, ALiBi and key splits as the
// fp32 kernel in attention.cu.
#include <cuda_bf16.h>
#include <mma.h>

#include <cfloat>

#include "cuda/attention_common.cuh"
#include "cuda/attention_mma.hpp"
#include "cuda/check.hpp"

namespace eyrie::cuda {
namespace {

using namespace nvcuda;

constexpr int kKeys = 64;  // keys per pass

// Shared-memory layout for a head dim padded to HD and kSlots (row, head) queries, 16 per warp.
// Row strides are padded (16 bytes) so the 16 rows a fragment load touches fall in different
// banks; every region and fragment start stays 32-byte aligned as WMMA requires.
template <int HD, int kSlots>
struct Smem {
  static constexpr int kLdH = HD + 8;     // bf16 query / key / value rows
  static constexpr int kLdS = kKeys + 4;  // fp32 scores
  static constexpr int kLdP = kKeys + 8;  // bf16 probabilities
  static constexpr int kLdO = HD + 4;     // fp32 running output
  static constexpr size_t q_hi = 0;
  static constexpr size_t q_lo = q_hi + sizeof(bf16) * kSlots * kLdH;
  static constexpr size_t k_hi = q_lo + sizeof(bf16) * kSlots * kLdH;
  static constexpr size_t k_lo = k_hi + sizeof(bf16) * kKeys * kLdH;
  static constexpr size_t v_hi = k_lo + sizeof(bf16) * kKeys * kLdH;
  static constexpr size_t v_lo = v_hi + sizeof(bf16) * kKeys * kLdH;
  static constexpr size_t s = v_lo + sizeof(bf16) * kKeys * kLdH;
  static constexpr size_t p_hi = s + sizeof(float) * kSlots * kLdS;
  static constexpr size_t p_lo = p_hi + sizeof(bf16) * kSlots * kLdP;
  static constexpr size_t o = p_lo + sizeof(bf16) * kSlots * kLdP;
  static constexpr size_t stats = o + sizeof(float) * kSlots * kLdO;  // max, mass per slot
  static constexpr size_t bytes = stats + sizeof(float) * 2 * kSlots;
};

__device__ inline void put_split(bf16* hi, bf16* lo, float v) {
  const bf16 h = __float2bfloat16(v);
  *hi = h;
  *lo = __float2bfloat16(v - __bfloat162float(h));
}

// Four floats as bf16 halves, stored 8 bytes at a time (dst 8-byte aligned).
__device__ inline void put_split4(bf16* hi, bf16* lo, float4 v) {
  const __nv_bfloat162 h01 = __floats2bfloat162_rn(v.x, v.y), h23 = __floats2bfloat162_rn(v.z, v.w);
  const __nv_bfloat162 l01 = __floats2bfloat162_rn(v.x - __low2float(h01), v.y - __high2float(h01));
  const __nv_bfloat162 l23 = __floats2bfloat162_rn(v.z - __low2float(h23), v.w - __high2float(h23));
  *reinterpret_cast<uint2*>(hi) = make_uint2(*reinterpret_cast<const uint32_t*>(&h01), *reinterpret_cast<const uint32_t*>(&h23));
  *reinterpret_cast<uint2*>(lo) = make_uint2(*reinterpret_cast<const uint32_t*>(&l01), *reinterpret_cast<const uint32_t*>(&l23));
}

using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major>;
using FragBCol = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major>;
using FragBRow = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major>;
using FragC = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

// c += (a_hi + a_lo)(b_hi + b_lo), dropping lo.lo; smallest terms first.
template <typename FragB>
__device__ inline void mma3(FragC& c, const FragA& ah, const FragA& al, const FragB& bh, const FragB& bl) {
  wmma::mma_sync(c, al, bh, c);
  wmma::mma_sync(c, ah, bl, c);
  wmma::mma_sync(c, ah, bh, c);
}

// grid: launched tiles (see AttentionTile); block: a warp per 16 query slots, warp w owning slots
// 16w..16w+15 through scores, softmax and output, so only the key/value loads need the block.
template <int HD, int kSlots>
__global__ void __launch_bounds__(kSlots * 2)
    attention_mma_kernel(const float* q, const float* k_cache, const float* v_cache, AttentionShape a, RowMeta m,
                         const int32_t* tiles, const float* slopes, bf16* out, int64_t lo_offset, float* part_o,
                         float* part_ml) {
  using L = Smem<HD, kSlots>;
  constexpr int kThreads = kSlots * 2;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* sQh = reinterpret_cast<bf16*>(smem + L::q_hi);
  bf16* sQl = reinterpret_cast<bf16*>(smem + L::q_lo);
  bf16* sKh = reinterpret_cast<bf16*>(smem + L::k_hi);
  bf16* sKl = reinterpret_cast<bf16*>(smem + L::k_lo);
  bf16* sVh = reinterpret_cast<bf16*>(smem + L::v_hi);
  bf16* sVl = reinterpret_cast<bf16*>(smem + L::v_lo);
  float* sS = reinterpret_cast<float*>(smem + L::s);
  bf16* sPh = reinterpret_cast<bf16*>(smem + L::p_hi);
  bf16* sPl = reinterpret_cast<bf16*>(smem + L::p_lo);
  float* sO = reinterpret_cast<float*>(smem + L::o);
  float* sM = reinterpret_cast<float*>(smem + L::stats);
  float* sL = sM + kSlots;

  const AttentionTile t(tiles + kAttentionTileInts * blockIdx.x, a, m, kKeys);
  const int nq = t.queries();
  const int hd = a.head_dim;
  const int* table = m.block_tables + static_cast<int64_t>(m.seq[t.r0]) * a.max_blocks_per_seq;
  const float scale = rsqrtf(static_cast<float>(hd));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

  // Queries (pre-scaled) as halves; unused slots and the head-dim padding stay zero.
  for (int e = threadIdx.x; e < kSlots * HD; e += kThreads) {
    const int qi = e / HD, d = e % HD;
    float v = 0.f;
    if (qi < nq && d < hd)
      v = q[(static_cast<int64_t>(t.r0 + qi / t.nh) * a.num_heads + t.h0 + qi % t.nh) * hd + d] * scale;
    put_split(&sQh[qi * L::kLdH + d], &sQl[qi * L::kLdH + d], v);
    sO[qi * L::kLdO + d] = 0.f;
  }
  for (int i = threadIdx.x; i < kSlots; i += kThreads) {
    sM[i] = -FLT_MAX;
    sL[i] = 0.f;
  }
  __syncthreads();

  const int q0 = warp * 16;  // this warp's first query slot
  const bool active = q0 < nq;
  // This warp's queries stay in registers for the whole key loop, up to head dim 64 (at 128
  // they would spill; they are then loaded once per key tile).
  constexpr bool kHoistQ = HD <= 64;
  constexpr int kQFrags = kHoistQ ? HD / 16 : 1;
  FragA qh[kQFrags], ql[kQFrags];
  if (kHoistQ && active) {
#pragma unroll
    for (int k = 0; k < kQFrags; ++k) {
      wmma::load_matrix_sync(qh[k], sQh + q0 * L::kLdH + k * 16, L::kLdH);
      wmma::load_matrix_sync(ql[k], sQl + q0 * L::kLdH + k * 16, L::kLdH);
    }
  }
  // Each thread's share of a key tile's float4s.
  constexpr int kVecs = kKeys * (HD / 4) / kThreads;
  static_assert(kVecs * kThreads == kKeys * (HD / 4), "key tile must divide over the threads");
  // Keys past the range and head-dim padding load as zeros: their probabilities are zero and
  // 0 * 0 stays finite.
  for (int k0 = t.key_begin; k0 < t.key_end; k0 += kKeys) {
    const int nk = min(kKeys, t.key_end - k0);
    // In batches of at most 8 float4 pairs, so head dim 128 does not spill.
    constexpr int kBatch = kVecs < 8 ? kVecs : 8;
#pragma unroll
    for (int i0 = 0; i0 < kVecs; i0 += kBatch) {
      float4 kv[kBatch], vv[kBatch];
#pragma unroll
      for (int i = 0; i < kBatch; ++i) {
        const int e = threadIdx.x + (i0 + i) * kThreads, kk = e / (HD / 4), d = (e % (HD / 4)) * 4;
        kv[i] = vv[i] = make_float4(0.f, 0.f, 0.f, 0.f);
        if (kk < nk && d < hd) {
          const int p = k0 + kk;
          const int64_t at = cache_index(a, table[p / a.block_size], t.kv, p % a.block_size) + d;
          kv[i] = __ldg(reinterpret_cast<const float4*>(k_cache + at));
          vv[i] = __ldg(reinterpret_cast<const float4*>(v_cache + at));
        }
      }
#pragma unroll
      for (int i = 0; i < kBatch; ++i) {
        const int e = threadIdx.x + (i0 + i) * kThreads, kk = e / (HD / 4), d = (e % (HD / 4)) * 4;
        const int o = kk * L::kLdH + d;
        put_split4(&sKh[o], &sKl[o], kv[i]);
        put_split4(&sVh[o], &sVl[o], vv[i]);
      }
    }
    __syncthreads();
    if (active) {
      // Scores of this warp's 16 queries against the 64 keys: four independent accumulators,
      // each key fragment loaded once per warp.
      FragC c[kKeys / 16];
#pragma unroll
      for (int n = 0; n < kKeys / 16; ++n) wmma::fill_fragment(c[n], 0.f);
#pragma unroll
      for (int k = 0; k < HD / 16; ++k) {
        const int qk = kHoistQ ? k : 0;
        if (!kHoistQ) {
          wmma::load_matrix_sync(qh[0], sQh + q0 * L::kLdH + k * 16, L::kLdH);
          wmma::load_matrix_sync(ql[0], sQl + q0 * L::kLdH + k * 16, L::kLdH);
        }
        FragBCol kh, kl;
#pragma unroll
        for (int n = 0; n < kKeys / 16; ++n) {
          wmma::load_matrix_sync(kh, sKh + n * 16 * L::kLdH + k * 16, L::kLdH);
          wmma::load_matrix_sync(kl, sKl + n * 16 * L::kLdH + k * 16, L::kLdH);
          mma3(c[n], qh[qk], ql[qk], kh, kl);
        }
      }
#pragma unroll
      for (int n = 0; n < kKeys / 16; ++n)
        wmma::store_matrix_sync(sS + q0 * L::kLdS + n * 16, c[n], L::kLdS, wmma::mem_row_major);
      __syncwarp();
      // Online softmax: lanes 2i and 2i+1 take half of query q0 + i's keys each, 16 bytes at a
      // time; the odd lane starts half way round its columns so the pair hits different banks.
      // The running output row is rescaled here so the MMAs below accumulate onto it.
      {
        const int qi = q0 + lane / 2, half = lane % 2;
        const bool live = qi < nq;
        const int limit = live ? t.last_key(qi) - k0 - half * 32 : -1;  // last visible column
        const int keys = min(nk - half * 32, limit + 1);
        const float slope = a.alibi && live ? slopes[t.h0 + qi % t.nh] : 0.f;
        const float* srow = sS + qi * L::kLdS + half * 32;
        float sc[32];
        float mx = -FLT_MAX;
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          const int c0 = ((j + 4 * half) & 7) * 4;
          const float4 v = *reinterpret_cast<const float4*>(srow + c0);
          sc[4 * j] = v.x;
          sc[4 * j + 1] = v.y;
          sc[4 * j + 2] = v.z;
          sc[4 * j + 3] = v.w;
#pragma unroll
          for (int u = 0; u < 4; ++u) {
            float& x = sc[4 * j + u];
            if (a.alibi)
              x += __bfloat162float(__float2bfloat16(slope * static_cast<float>(k0 + half * 32 + c0 + u))) * scale;
            x = c0 + u < keys ? x : -FLT_MAX;
            mx = fmaxf(mx, x);
          }
        }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        const float m_old = live ? sM[qi] : -FLT_MAX;
        const float m_new = fmaxf(m_old, mx);
        float sum = 0.f;
        bf16* ph = sPh + qi * L::kLdP + half * 32;
        bf16* pl = sPl + qi * L::kLdP + half * 32;
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          const int c0 = ((j + 4 * half) & 7) * 4;
          float4 pr;
          float* prs = &pr.x;
#pragma unroll
          for (int u = 0; u < 4; ++u) {
            const float x = sc[4 * j + u];
            prs[u] = x == -FLT_MAX ? 0.f : __expf(x - m_new);
            sum += prs[u];
          }
          put_split4(ph + c0, pl + c0, pr);
        }
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        const float alpha = m_old == -FLT_MAX ? 0.f : __expf(m_old - m_new);
        float* orow = sO + qi * L::kLdO + half * (HD / 2);
#pragma unroll
        for (int j = 0; j < HD / 8; ++j) {
          float4* o4 = reinterpret_cast<float4*>(orow) + ((j + (HD / 16) * half) % (HD / 8));
          float4 v = *o4;
          v.x *= alpha;
          v.y *= alpha;
          v.z *= alpha;
          v.w *= alpha;
          *o4 = v;
        }
        if (live && half == 0) {
          sL[qi] = sL[qi] * alpha + sum;
          sM[qi] = m_new;
        }
      }
      __syncwarp();
      FragC o[HD / 16];
#pragma unroll
      for (int n = 0; n < HD / 16; ++n)
        wmma::load_matrix_sync(o[n], sO + q0 * L::kLdO + n * 16, L::kLdO, wmma::mem_row_major);
#pragma unroll
      for (int k = 0; k < kKeys / 16; ++k) {
        FragA ph, pl;
        FragBRow vh, vl;
        wmma::load_matrix_sync(ph, sPh + q0 * L::kLdP + k * 16, L::kLdP);
        wmma::load_matrix_sync(pl, sPl + q0 * L::kLdP + k * 16, L::kLdP);
#pragma unroll
        for (int n = 0; n < HD / 16; ++n) {
          wmma::load_matrix_sync(vh, sVh + k * 16 * L::kLdH + n * 16, L::kLdH);
          wmma::load_matrix_sync(vl, sVl + k * 16 * L::kLdH + n * 16, L::kLdH);
          mma3(o[n], ph, pl, vh, vl);
        }
      }
#pragma unroll
      for (int n = 0; n < HD / 16; ++n)
        wmma::store_matrix_sync(sO + q0 * L::kLdO + n * 16, o[n], L::kLdO, wmma::mem_row_major);
    }
    __syncthreads();
  }
  for (int e = threadIdx.x; e < nq * hd; e += kThreads) {
    const int qi = e / hd, d = e % hd;
    write_attention_out(t, a, qi, d, sO[qi * L::kLdO + d], sL[qi], out, lo_offset, part_o);
  }
  for (int qi = threadIdx.x; qi < nq; qi += kThreads) write_attention_stats(t, a, qi, sM[qi], sL[qi], part_ml);
}

template <int HD, int kSlots>
void launch(const float* q, const float* k_cache, const float* v_cache, int32_t num_tiles, const int32_t* tiles,
            const AttentionShape& a, const RowMeta& m, const float* slopes, bf16* out, int64_t lo_offset,
            float* part_o, float* part_ml, cudaStream_t s) {
  constexpr size_t bytes = Smem<HD, kSlots>::bytes;
  thread_local bool configured = false;  // each worker thread drives one device
  if (!configured) {
    EYRIE_CUDA_CHECK(cudaFuncSetAttribute(attention_mma_kernel<HD, kSlots>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(bytes)));
    configured = true;
  }
  attention_mma_kernel<HD, kSlots><<<static_cast<unsigned>(num_tiles), kSlots * 2, bytes, s>>>(
      q, k_cache, v_cache, a, m, tiles, slopes, out, lo_offset, part_o, part_ml);
  EYRIE_CUDA_LAUNCHED();
}

}  // namespace

bool attention_mma_supports(int32_t head_dim) { return head_dim > 0 && head_dim <= 128 && head_dim % 4 == 0; }

// 128 queries share each key tile's loads where shared memory holds them (184 KB at head dim
// 64); at 128 the tile halves.
int32_t attention_mma_queries(int32_t head_dim) { return head_dim <= 64 ? 128 : 64; }

void attention_mma(const float* q, const float* k_cache, const float* v_cache, int32_t num_tiles,
                   const int32_t* tiles, const AttentionShape& a, const RowMeta& m, const float* slopes, bf16* out,
                   int64_t lo_offset, float* part_o, float* part_ml, cudaStream_t s) {
  if (a.head_dim <= 16)
    launch<16, 128>(q, k_cache, v_cache, num_tiles, tiles, a, m, slopes, out, lo_offset, part_o, part_ml, s);
  else if (a.head_dim <= 32)
    launch<32, 128>(q, k_cache, v_cache, num_tiles, tiles, a, m, slopes, out, lo_offset, part_o, part_ml, s);
  else if (a.head_dim <= 64)
    launch<64, 128>(q, k_cache, v_cache, num_tiles, tiles, a, m, slopes, out, lo_offset, part_o, part_ml, s);
  else
    launch<128, 64>(q, k_cache, v_cache, num_tiles, tiles, a, m, slopes, out, lo_offset, part_o, part_ml, s);
}

}  // namespace eyrie::cuda
