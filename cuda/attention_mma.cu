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

constexpr int kSlots = 64;  // (row, head) queries per tile, 16 per warp
constexpr int kKeys = 64;   // keys per pass
constexpr int kWarps = kSlots / 16;
constexpr int kThreads = kWarps * 32;

// Shared-memory layout for a head dim padded to HD. Row strides are padded (16 bytes for bf16
// rows, 16 for fp32) so the 16 rows a fragment load touches fall in different banks; every
// region and fragment start stays 32-byte aligned as WMMA requires.
template <int HD>
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

// grid: launched tiles (see AttentionTile); block: 4 warps, warp w owning query slots
// 16w..16w+15 through scores, softmax and output, so only the key/value loads need the block.
template <int HD>
__global__ void __launch_bounds__(kThreads)
    attention_mma_kernel(const float* q, const float* k_cache, const float* v_cache, AttentionShape a, RowMeta m,
                         const int32_t* tiles, const float* slopes, bf16* out, int64_t lo_offset, float* part_o,
                         float* part_ml) {
  using L = Smem<HD>;
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

  // Queries (pre-scaled) as halves; unused slots and the head-dim padding stay zero, as do the
  // padding columns of keys and values, so they add nothing to any product.
  for (int e = threadIdx.x; e < kSlots * HD; e += kThreads) {
    const int qi = e / HD, d = e % HD;
    float v = 0.f;
    if (qi < nq && d < hd)
      v = q[(static_cast<int64_t>(t.r0 + qi / t.nh) * a.num_heads + t.h0 + qi % t.nh) * hd + d] * scale;
    put_split(&sQh[qi * L::kLdH + d], &sQl[qi * L::kLdH + d], v);
    sO[qi * L::kLdO + d] = 0.f;
  }
  for (int e = threadIdx.x; e < kKeys * (HD - hd); e += kThreads) {
    const int kk = e / (HD - hd), d = hd + e % (HD - hd);
    sKh[kk * L::kLdH + d] = sKl[kk * L::kLdH + d] = sVh[kk * L::kLdH + d] = sVl[kk * L::kLdH + d] =
        __float2bfloat16(0.f);
  }
  for (int i = threadIdx.x; i < kSlots; i += kThreads) {
    sM[i] = -FLT_MAX;
    sL[i] = 0.f;
  }
  __syncthreads();

  const int q0 = warp * 16;  // this warp's first query slot
  const bool active = q0 < nq;
  const int vec = hd / 4;
  for (int k0 = t.key_begin; k0 < t.key_end; k0 += kKeys) {
    const int nk = min(kKeys, t.key_end - k0);
    // Keys past the range load as zeros: their probabilities are zero and 0 * 0 stays finite.
    for (int e = threadIdx.x; e < kKeys * vec; e += kThreads) {
      const int kk = e / vec, d = (e % vec) * 4;
      float4 kv = make_float4(0.f, 0.f, 0.f, 0.f), vv = kv;
      if (kk < nk) {
        const int p = k0 + kk;
        const int64_t at = cache_index(a, table[p / a.block_size], t.kv, p % a.block_size) + d;
        kv = *reinterpret_cast<const float4*>(k_cache + at);
        vv = *reinterpret_cast<const float4*>(v_cache + at);
      }
      const int o = kk * L::kLdH + d;
      put_split(&sKh[o], &sKl[o], kv.x);
      put_split(&sKh[o + 1], &sKl[o + 1], kv.y);
      put_split(&sKh[o + 2], &sKl[o + 2], kv.z);
      put_split(&sKh[o + 3], &sKl[o + 3], kv.w);
      put_split(&sVh[o], &sVl[o], vv.x);
      put_split(&sVh[o + 1], &sVl[o + 1], vv.y);
      put_split(&sVh[o + 2], &sVl[o + 2], vv.z);
      put_split(&sVh[o + 3], &sVl[o + 3], vv.w);
    }
    __syncthreads();
    if (active) {
      // Scores of this warp's 16 queries against the 64 keys.
      FragA qh, ql;
      FragBCol kh, kl;
      for (int n = 0; n < kKeys / 16; ++n) {
        FragC c;
        wmma::fill_fragment(c, 0.f);
        for (int k = 0; k < HD / 16; ++k) {
          wmma::load_matrix_sync(qh, sQh + q0 * L::kLdH + k * 16, L::kLdH);
          wmma::load_matrix_sync(ql, sQl + q0 * L::kLdH + k * 16, L::kLdH);
          wmma::load_matrix_sync(kh, sKh + n * 16 * L::kLdH + k * 16, L::kLdH);
          wmma::load_matrix_sync(kl, sKl + n * 16 * L::kLdH + k * 16, L::kLdH);
          mma3(c, qh, ql, kh, kl);
        }
        wmma::store_matrix_sync(sS + q0 * L::kLdS + n * 16, c, L::kLdS, wmma::mem_row_major);
      }
      __syncwarp();
      // Online softmax, one query at a time across the warp (two keys per lane); the running
      // output row is rescaled here so the MMAs below can accumulate onto it.
      for (int i = 0; i < 16; ++i) {
        const int qi = q0 + i;
        float sc[2];
        for (int c = 0; c < 2; ++c) {
          const int kk = lane + 32 * c, p = k0 + kk;
          float v = -FLT_MAX;
          if (qi < nq && kk < nk && p <= t.last_key(qi)) {
            v = sS[qi * L::kLdS + kk];
            if (a.alibi)
              v += __bfloat162float(__float2bfloat16(slopes[t.h0 + qi % t.nh] * static_cast<float>(p))) * scale;
          }
          sc[c] = v;
        }
        float mx = fmaxf(sc[0], sc[1]);
        for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
        const float m_old = sM[qi];
        const float m_new = fmaxf(m_old, mx);
        float sum = 0.f;
        for (int c = 0; c < 2; ++c) {
          const float pr = sc[c] == -FLT_MAX ? 0.f : expf(sc[c] - m_new);
          put_split(&sPh[qi * L::kLdP + lane + 32 * c], &sPl[qi * L::kLdP + lane + 32 * c], pr);
          sum += pr;
        }
        for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
        const float alpha = m_old == -FLT_MAX ? 0.f : expf(m_old - m_new);
        for (int d = lane; d < HD; d += 32) sO[qi * L::kLdO + d] *= alpha;
        __syncwarp();
        if (lane == 0) {
          sL[qi] = sL[qi] * alpha + sum;
          sM[qi] = m_new;
        }
      }
      __syncwarp();
      FragA ph, pl;
      FragBRow vh, vl;
      for (int n = 0; n < HD / 16; ++n) {
        FragC c;
        wmma::load_matrix_sync(c, sO + q0 * L::kLdO + n * 16, L::kLdO, wmma::mem_row_major);
        for (int k = 0; k < kKeys / 16; ++k) {
          wmma::load_matrix_sync(ph, sPh + q0 * L::kLdP + k * 16, L::kLdP);
          wmma::load_matrix_sync(pl, sPl + q0 * L::kLdP + k * 16, L::kLdP);
          wmma::load_matrix_sync(vh, sVh + k * 16 * L::kLdH + n * 16, L::kLdH);
          wmma::load_matrix_sync(vl, sVl + k * 16 * L::kLdH + n * 16, L::kLdH);
          mma3(c, ph, pl, vh, vl);
        }
        wmma::store_matrix_sync(sO + q0 * L::kLdO + n * 16, c, L::kLdO, wmma::mem_row_major);
      }
    }
    __syncthreads();
  }
  for (int e = threadIdx.x; e < nq * hd; e += kThreads) {
    const int qi = e / hd, d = e % hd;
    write_attention_out(t, a, qi, d, sO[qi * L::kLdO + d], sL[qi], out, lo_offset, part_o);
  }
  for (int qi = threadIdx.x; qi < nq; qi += kThreads) write_attention_stats(t, a, qi, sM[qi], sL[qi], part_ml);
}

template <int HD>
void launch(const float* q, const float* k_cache, const float* v_cache, int32_t num_tiles, const int32_t* tiles,
            const AttentionShape& a, const RowMeta& m, const float* slopes, bf16* out, int64_t lo_offset,
            float* part_o, float* part_ml, cudaStream_t s) {
  constexpr size_t bytes = Smem<HD>::bytes;
  thread_local bool configured = false;  // each worker thread drives one device
  if (!configured) {
    EYRIE_CUDA_CHECK(cudaFuncSetAttribute(attention_mma_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(bytes)));
    configured = true;
  }
  attention_mma_kernel<HD><<<static_cast<unsigned>(num_tiles), kThreads, bytes, s>>>(
      q, k_cache, v_cache, a, m, tiles, slopes, out, lo_offset, part_o, part_ml);
  EYRIE_CUDA_LAUNCHED();
}

}  // namespace

bool attention_mma_supports(int32_t head_dim) { return head_dim > 0 && head_dim <= 128 && head_dim % 4 == 0; }

void attention_mma(const float* q, const float* k_cache, const float* v_cache, int32_t num_tiles,
                   const int32_t* tiles, const AttentionShape& a, const RowMeta& m, const float* slopes, bf16* out,
                   int64_t lo_offset, float* part_o, float* part_ml, cudaStream_t s) {
  if (a.head_dim <= 16)
    launch<16>(q, k_cache, v_cache, num_tiles, tiles, a, m, slopes, out, lo_offset, part_o, part_ml, s);
  else if (a.head_dim <= 32)
    launch<32>(q, k_cache, v_cache, num_tiles, tiles, a, m, slopes, out, lo_offset, part_o, part_ml, s);
  else if (a.head_dim <= 64)
    launch<64>(q, k_cache, v_cache, num_tiles, tiles, a, m, slopes, out, lo_offset, part_o, part_ml, s);
  else
    launch<128>(q, k_cache, v_cache, num_tiles, tiles, a, m, slopes, out, lo_offset, part_o, part_ml, s);
}

}  // namespace eyrie::cuda
