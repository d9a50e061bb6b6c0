// Paged causal attention on tensor cores (bf16 MMA, fp32 accumulation) with the precision of
// fp32: queries, keys, values and probabilities each enter as two bf16 halves (hi + lo) and
// every product takes three MMAs (hi.hi + hi.lo + lo.hi), since bf16 keys alone move the
// reference fixtures' logprobs by up to 0.37. Scores, probabilities and the running output stay
// in registers, in the fragment layouts of mma.sync m16n8k16 (PTX ISA, "Matrix fragments for
// mma.m16n8k16"): a score accumulator is already the probability operand of the next MMA, so
// only the key and value tiles pass through shared memory. Same tiles, masking, ALiBi and key
// splits as the fp32 kernel in attention.cu.
#include <cuda_bf16.h>

#include <cfloat>
#include <cstdint>

#include "cuda/async_copy.cuh"
#include "cuda/attention_common.cuh"
#include "cuda/attention_mma.hpp"
#include "cuda/check.hpp"
#include "cuda/dependent_launch.cuh"
#include "cuda/dynamic_smem.cuh"
#include "cuda/fast_math.cuh"

namespace eyrie::cuda {
namespace {

constexpr int kKeys = 64;  // keys per pass

// Key and value tiles as bf16 halves, [key][HD] with rows padded by 16 bytes so the eight rows
// an ldmatrix reads fall in different banks; before them, one stage of the fp32 tiles as they
// arrive from the cache, [K | V][key][HD]: each thread converts its own copies and then asks for
// the next tile's in their place, so the copy overlaps this tile's MMAs. A cache of bf16 rows is
// copied straight into padded tiles instead, in two stages from the start of the space
// (kBf16Rows below), and takes no more. Less shared memory per block lets one find room sooner
// on an SM that the weight-streaming products keep busy.
template <int HD>
struct Smem {
  static constexpr int kLd = HD + 8;
  static constexpr int kTile = kKeys * kLd;  // elements per half tile
  static constexpr int kRaw = kKeys * HD;    // floats per fp32 tile
  static constexpr size_t raw_bytes = sizeof(float) * 2 * kRaw;
  static constexpr size_t bytes = raw_bytes + sizeof(bf16) * 4 * kTile;
};

constexpr float kLog2e = 1.4426950408889634f;

// How far (in natural-log units) a score may exceed its row's softmax base before the base
// moves: probabilities stay below e^8 = 2981, well inside bf16 and fp32 range.
constexpr float kSlack = 8.f;

// c (16x8) += a (16x16, row) b (16x8, col).
__device__ inline void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// c += (a_hi + a_lo)(b_hi + b_lo), dropping lo.lo; smallest terms first. Without kSplit,
// c += a_hi b_hi alone.
template <bool kSplit>
__device__ inline void mma3(float (&c)[4], const uint32_t (&ah)[4], const uint32_t (&al)[4], uint32_t bh0,
                            uint32_t bh1, uint32_t bl0, uint32_t bl1) {
  if constexpr (kSplit) {
    mma(c, al, bh0, bh1);
    mma(c, ah, bl0, bl1);
  }
  mma(c, ah, bh0, bh1);
}

// Four 8x8 bf16 matrices; lanes 8i..8i+7 give the row addresses of matrix i.
__device__ inline void ldmatrix4(uint32_t (&r)[4], const bf16* p) {
  const auto at = static_cast<unsigned>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(at));
}

__device__ inline void ldmatrix4_trans(uint32_t (&r)[4], const bf16* p) {
  const auto at = static_cast<unsigned>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(at));
}

// grid: launched tiles (see AttentionTile); block: a warp per 16 query slots. In the fragment
// layout, lane = 4g + c holds rows g and g + 8 of its warp's 16 slots ("a" and "b" below) and,
// of every 8 columns, columns 2c and 2c + 1. Up to head dim 64, two blocks share an SM (128
// registers, a few spilled): on the H100 that beat one block at 195 registers by 4-7% at
// batch 16-256 decode. Without kSplit the low halves are neither made nor multiplied. With
// kBf16Rows keys and values arrive as bf16 rows and need no conversion: a bf16 cache, or with
// kSplit a halves cache (AttentionShape::halves_cache).
template <int HD, int kSlots, bool kSplit, bool kBf16Rows>
__global__ void __launch_bounds__(kSlots * 2, HD <= 64 ? 2 : 1)
    attention_mma_kernel(const void* q, const void* k_cache, const void* v_cache, AttentionShape a, RowMeta m,
                         const int32_t* tiles, const float* slopes, bf16* out, int64_t lo_offset, float* part_o,
                         float* part_ml) {
  allow_dependents();  // the products after this kernel start reading their weights
  using L = Smem<HD>;
  constexpr int kThreads = kSlots * 2;
  extern __shared__ __align__(128) unsigned char smem[];
  float* raw = reinterpret_cast<float*>(smem);
  bf16* sKh = reinterpret_cast<bf16*>(smem + L::raw_bytes);
  bf16* sKl = sKh + L::kTile;
  bf16* sVh = sKl + L::kTile;
  bf16* sVl = sVh + L::kTile;
  // kBf16Rows: stage s holds, from cached + s kStage, K then V (then K's and V's low halves).
  bf16* const cached = reinterpret_cast<bf16*>(smem);
  constexpr int kStage = (kSplit ? 4 : 2) * L::kTile;

  // Tiles run last to first: a prompt's tiles come in row order, each reading all keys up to its
  // last row, so the longest start first and the short ones fill in behind them instead of the
  // longest running alone at the end.
  const AttentionTile t(tiles + kAttentionTileInts * (gridDim.x - 1 - blockIdx.x), a, m, kKeys);
  const int nq = t.queries();
  const int hd = a.head_dim;
  const int* table = m.block_tables + static_cast<int64_t>(m.seq[t.r0]) * a.max_blocks_per_seq;
  const float scale = rsqrtf(static_cast<float>(hd));
  // Block sizes are powers of two (paged_attention checks): a key's block and slot by shifts.
  const int block_shift = __ffs(a.block_size) - 1, block_mask = a.block_size - 1;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, c2 = (lane % 4) * 2;
  const int q0 = warp * 16;
  const bool active = q0 < nq;
  const int qa = q0 + g, qb = qa + 8;
  const bool live_a = qa < nq, live_b = qb < nq;
  const int last_a = live_a ? t.last_key(qa) : -1, last_b = live_b ? t.last_key(qb) : -1;
  const float slope_a = a.alibi && live_a ? slopes[t.h0 + qa % t.nh] : 0.f;
  const float slope_b = a.alibi && live_b ? slopes[t.h0 + qb % t.nh] : 0.f;
  // Each of the thread's two query slots' rows, worked out once: the divisions by the tile's
  // head count cost more than the loads they address.
  const int64_t q_a = live_a ? attention_query_row(t, a, qa) : -1;
  const int64_t q_b = live_b ? attention_query_row(t, a, qb) : -1;

  // This thread's share of the warp's queries (pre-scaled), as A fragments of 16 dims each.
  uint32_t qh[HD / 16][4], ql[HD / 16][4];
#pragma unroll
  for (int kb = 0; kb < HD / 16; ++kb) {
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int64_t qr = r % 2 ? q_b : q_a;
      const int d = kb * 16 + (r / 2) * 8 + c2;
      const bool valid = qr >= 0 && d < hd;
      if (!kSplit && a.q_bf16) {
        qh[kb][r] = valid ? *reinterpret_cast<const uint32_t*>(static_cast<const bf16*>(q) + qr + d) : 0u;
        ql[kb][r] = 0u;
        continue;
      }
      float2 v = make_float2(0.f, 0.f);
      if (valid) v = *reinterpret_cast<const float2*>(static_cast<const float*>(q) + qr + d);
      split2(v.x * scale, v.y * scale, qh[kb][r], ql[kb][r]);
    }
  }
  float o[HD / 8][4];
#pragma unroll
  for (int j = 0; j < HD / 8; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.f;
  float m_a = -FLT_MAX, m_b = -FLT_MAX;
  float l_a = 0.f, l_b = 0.f;  // with kSplit: this thread's columns only
  // Without kSplit, the rows' softmax masses are the MMA of the bf16 probabilities with a
  // column of ones: the sums of the very probabilities the output's MMAs take, over all of a
  // row's keys with no shuffles, in the tensor pipe's spare cycles instead of an add per
  // probability. mass[0] and [1] are row a's, [2] and [3] row b's. With kSplit the adds stay:
  // the tensor cores' fp32 sums keep fewer bits than the split products are there to give.
  float mass[4] = {0.f, 0.f, 0.f, 0.f};
  constexpr uint32_t kOnes = 0x3f803f80u;  // bf16 1.0 twice

  // Each thread's share of a key tile's float4s.
  constexpr int kVecs = kKeys * (HD / 4) / kThreads;
  static_assert(kVecs * kThreads == kKeys * (HD / 4), "key tile must divide over the threads");
  // ldmatrix row addresses: K tiles as B of Q K^T (keys are columns), V tiles transposed as B
  // of P V (keys are the reduced dimension).
  const int k_row = (lane % 8) + ((lane / 16) % 2) * 8, k_col = ((lane / 8) % 2) * 8;
  const int v_row = (lane % 8) + ((lane / 8) % 2) * 8, v_col = ((lane / 16) % 2) * 8;
  // A key's row in the cache: cache_index with the factors that stay fixed over the tile
  // multiplied out once (a halves cache's rows are twice as long).
  constexpr int kRowScale = kBf16Rows && kSplit ? 2 : 1;
  const int64_t block_elems = static_cast<int64_t>(a.num_kv_heads) * a.block_size * hd * kRowScale;
  const int64_t head_elems = static_cast<int64_t>(t.kv) * a.block_size * hd * kRowScale;
  const int slot_elems = hd * kRowScale;
  auto key_row = [&](int p) {
    return table[p >> block_shift] * block_elems + head_elems + (p & block_mask) * slot_elems;
  };
  // Keys past the range and head-dim padding load as zeros: their probabilities are zero and
  // 0 * 0 stays finite.
  // Copies key tile k0: fp32 into the raw stage, each thread its own float4s of the tile, which
  // it alone converts below (so waiting for its own copies is enough before converting and
  // refilling them); bf16 into stage `stage`.
  auto fetch = [&](int k0, int stage) {
    const int nk = min(kKeys, t.key_end - k0);
    if constexpr (kBf16Rows) {
      // 16 bytes are 8 bf16: straight into the padded tile rows the MMAs read. A halves cache's
      // row is hd high halves, then hd low halves.
      // A fixed count of chunks per thread, so the loop unrolls without a remainder.
      constexpr int kChunks = kKeys * (HD / 8);
      bf16* sk = cached + stage * kStage;
      const auto* kc = static_cast<const bf16*>(k_cache);
      const auto* vc = static_cast<const bf16*>(v_cache);
#pragma unroll
      for (int i = 0; i < (kChunks + kThreads - 1) / kThreads; ++i) {
        const int e = threadIdx.x + i * kThreads;
        if (kChunks % kThreads != 0 && e >= kChunks) break;
        const int kk = e / (HD / 8), d = (e % (HD / 8)) * 8;
        const bool valid = kk < nk && d < hd;
        const int64_t at = valid ? key_row(k0 + kk) + d : 0;
        const int to = kk * L::kLd + d;
        copy_async16(sk + to, kc + at, valid);
        copy_async16(sk + L::kTile + to, vc + at, valid);
        if constexpr (kSplit) {
          copy_async16(sk + 2 * L::kTile + to, kc + at + hd, valid);
          copy_async16(sk + 3 * L::kTile + to, vc + at + hd, valid);
        }
      }
    } else {
      float* rk = raw;
#pragma unroll
      for (int i = 0; i < kVecs; ++i) {
        const int e = threadIdx.x + i * kThreads, kk = e / (HD / 4), d = (e % (HD / 4)) * 4;
        const bool valid = kk < nk && d < hd;
        const int64_t at = valid ? key_row(k0 + kk) + d : 0;
        copy_async16(rk + e * 4, static_cast<const float*>(k_cache) + at, valid);
        copy_async16(rk + L::kRaw + e * 4, static_cast<const float*>(v_cache) + at, valid);
      }
    }
    copy_async_commit();
  };
  if (t.key_begin < t.key_end) fetch(t.key_begin, 0);
  int stage = 0;
  for (int k0 = t.key_begin; k0 < t.key_end; k0 += kKeys, stage ^= 1) {
    const int nk = min(kKeys, t.key_end - k0);
    const bool more = k0 + kKeys < t.key_end;
    copy_async_wait<0>();
    if constexpr (kBf16Rows) {
      // One barrier a pass: past it every thread's copies of this stage have landed and every
      // warp is done with the other stage, which the next tile's copy then refills during this
      // pass's MMAs.
      __syncthreads();
      if (more) fetch(k0 + kKeys, stage ^ 1);
    }
    // The tiles the MMAs read: this stage's bf16 copies, or the fp32 stage converted.
    const bf16* kt = sKh;
    const bf16* vt = sVh;
    const bf16* klt = sKl;
    const bf16* vlt = sVl;
    if constexpr (kBf16Rows) {
      kt = cached + stage * kStage;
      vt = kt + L::kTile;
      klt = kt + 2 * L::kTile;
      vlt = kt + 3 * L::kTile;
    } else {
      const float* rk = raw;
#pragma unroll
      for (int i = 0; i < kVecs; ++i) {
        const int e = threadIdx.x + i * kThreads, kk = e / (HD / 4), d = (e % (HD / 4)) * 4;
        const int at = kk * L::kLd + d;
        if constexpr (kSplit) {
          put_split4(&sKh[at], &sKl[at], *reinterpret_cast<const float4*>(rk + e * 4));
          put_split4(&sVh[at], &sVl[at], *reinterpret_cast<const float4*>(rk + L::kRaw + e * 4));
        } else {
          put_bf16x4(&sKh[at], *reinterpret_cast<const float4*>(rk + e * 4));
          put_bf16x4(&sVh[at], *reinterpret_cast<const float4*>(rk + L::kRaw + e * 4));
        }
      }
      if (more) fetch(k0 + kKeys, 0);
      __syncthreads();
    }
    if (active) {
      // Scores: s[j] is keys 8j..8j+7 of the warp's 16 queries.
      float s[kKeys / 8][4];
#pragma unroll
      for (int j = 0; j < kKeys / 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
      for (int kb = 0; kb < HD / 16; ++kb) {
#pragma unroll
        for (int jp = 0; jp < kKeys / 16; ++jp) {
          uint32_t kh[4], kl[4] = {};
          const int at = (jp * 16 + k_row) * L::kLd + kb * 16 + k_col;
          ldmatrix4(kh, kt + at);
          if constexpr (kSplit) ldmatrix4(kl, klt + at);
          mma3<kSplit>(s[2 * jp], qh[kb], ql[kb], kh[0], kh[1], kl[0], kl[1]);
          mma3<kSplit>(s[2 * jp + 1], qh[kb], ql[kb], kh[2], kh[3], kl[2], kl[3]);
        }
      }
      // Online softmax over the row's four lanes. Only a tile past some query's last key, or
      // short of keys, needs masking: in a long prompt that is the tiles on the diagonal.
      const bool edge = nk < kKeys || k0 + kKeys - 1 > t.p0;
      if (a.alibi || edge) {
#pragma unroll
        for (int j = 0; j < kKeys / 8; ++j) {
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const int col = j * 8 + c2 + e, p = k0 + col;
            float xa = s[j][e], xb = s[j][2 + e];
            if (a.alibi) {
              xa += __bfloat162float(__float2bfloat16(slope_a * static_cast<float>(p))) * scale;
              xb += __bfloat162float(__float2bfloat16(slope_b * static_cast<float>(p))) * scale;
            }
            if (edge) {
              xa = col < nk && p <= last_a ? xa : -FLT_MAX;
              xb = col < nk && p <= last_b ? xb : -FLT_MAX;
            }
            s[j][e] = xa;
            s[j][2 + e] = xb;
          }
        }
      }
      float mx_a = -FLT_MAX, mx_b = -FLT_MAX;
#pragma unroll
      for (int j = 0; j < kKeys / 8; ++j) {
        mx_a = fmaxf(mx_a, fmaxf(s[j][0], s[j][1]));
        mx_b = fmaxf(mx_b, fmaxf(s[j][2], s[j][3]));
      }
#pragma unroll
      for (int sh = 1; sh <= 2; sh *= 2) {
        mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffffu, mx_a, sh));
        mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffffu, mx_b, sh));
      }
      // The running output, mass and base move to a new maximum only when some row of the warp
      // exceeds its base by more than kSlack: until then the probabilities, at most e^kSlack,
      // stay relative to the old base, which the output and mass share, so the quotient is
      // unchanged and most passes skip the rescaling. The warp decides as one, so the skipped
      // path is a branch and not predicated work.
      if (__any_sync(0xffffffffu, mx_a > m_a + kSlack || mx_b > m_b + kSlack)) {
        const float mn_a = fmaxf(m_a, mx_a), mn_b = fmaxf(m_b, mx_b);
        const float al_a = m_a == -FLT_MAX ? 0.f : __expf(m_a - mn_a);
        const float al_b = m_b == -FLT_MAX ? 0.f : __expf(m_b - mn_b);
        if constexpr (kSplit) {
          l_a *= al_a;
          l_b *= al_b;
        } else {
          mass[0] *= al_a;
          mass[1] *= al_a;
          mass[2] *= al_b;
          mass[3] *= al_b;
        }
        m_a = mn_a;
        m_b = mn_b;
#pragma unroll
        for (int j = 0; j < HD / 8; ++j) {
          o[j][0] *= al_a;
          o[j][1] *= al_a;
          o[j][2] *= al_b;
          o[j][3] *= al_b;
        }
      }
      // exp(x - base) as 2^(x log2 e - base log2 e), one fused multiply-add before the exp2.
      // Masked scores give 2^-inf = 0; a row with no key yet has base 0 rather than -FLT_MAX,
      // which would give 2^0.
      const float nb_a = m_a == -FLT_MAX ? 0.f : -m_a * kLog2e, nb_b = m_b == -FLT_MAX ? 0.f : -m_b * kLog2e;
      float sum_a = 0.f, sum_b = 0.f;
#pragma unroll
      for (int j = 0; j < kKeys / 8; ++j) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          s[j][e] = exp2_approx(fmaf(s[j][e], kLog2e, nb_a));
          s[j][2 + e] = exp2_approx(fmaf(s[j][2 + e], kLog2e, nb_b));
          if constexpr (kSplit) {
            sum_a += s[j][e];
            sum_b += s[j][2 + e];
          }
        }
      }
      if constexpr (kSplit) {
        l_a += sum_a;
        l_b += sum_b;
      }
      // Output: the scores of keys 16kb..16kb+15 are, as they lie, the A fragment of P.
#pragma unroll
      for (int kb = 0; kb < kKeys / 16; ++kb) {
        uint32_t ph[4], pl[4];
        split2(s[2 * kb][0], s[2 * kb][1], ph[0], pl[0]);
        split2(s[2 * kb][2], s[2 * kb][3], ph[1], pl[1]);
        split2(s[2 * kb + 1][0], s[2 * kb + 1][1], ph[2], pl[2]);
        split2(s[2 * kb + 1][2], s[2 * kb + 1][3], ph[3], pl[3]);
        if constexpr (!kSplit) mma(mass, ph, kOnes, kOnes);
#pragma unroll
        for (int jp = 0; jp < HD / 16; ++jp) {
          uint32_t vh[4], vl[4] = {};
          const int at = (kb * 16 + v_row) * L::kLd + jp * 16 + v_col;
          ldmatrix4_trans(vh, vt + at);
          if constexpr (kSplit) ldmatrix4_trans(vl, vlt + at);
          mma3<kSplit>(o[2 * jp], ph, pl, vh[0], vh[1], vl[0], vl[1]);
          mma3<kSplit>(o[2 * jp + 1], ph, pl, vh[2], vh[3], vl[2], vl[3]);
        }
      }
    }
    if constexpr (!kBf16Rows) __syncthreads();  // the converted tiles are rewritten next pass
  }
  if (!active) return;
  if constexpr (kSplit) {
#pragma unroll
    for (int sh = 1; sh <= 2; sh *= 2) {
      l_a += __shfl_xor_sync(0xffffffffu, l_a, sh);
      l_b += __shfl_xor_sync(0xffffffffu, l_b, sh);
    }
  } else {
    l_a = mass[0];
    l_b = mass[2];
  }
  // Columns c2 and c2 + 1 of every 8 are this thread's: a pair per store (hd is a multiple of 4).
  write_attention_slots<HD>(t, a, c2, qa, live_a, m_a, l_a, qb, live_b, m_b, l_b, &o[0][0], out, lo_offset, part_o,
                            part_ml);
}

template <int HD, int kSlots, bool kSplit, bool kBf16Rows>
void launch(const void* q, const void* k_cache, const void* v_cache, int32_t num_tiles, const int32_t* tiles,
            const AttentionShape& a, const RowMeta& m, const float* slopes, bf16* out, int64_t lo_offset,
            float* part_o, float* part_ml, cudaStream_t s) {
  // Rows of bf16: their two stages alone, in place of the fp32 stage and the converted tiles.
  constexpr size_t bytes = kBf16Rows ? 2 * (kSplit ? 4 : 2) * Smem<HD>::kTile * sizeof(bf16) : Smem<HD>::bytes;
  allow_dynamic_smem<attention_mma_kernel<HD, kSlots, kSplit, kBf16Rows>>(static_cast<int>(bytes));
  attention_mma_kernel<HD, kSlots, kSplit, kBf16Rows><<<static_cast<unsigned>(num_tiles), kSlots * 2, bytes, s>>>(
      q, k_cache, v_cache, a, m, tiles, slopes, out, lo_offset, part_o, part_ml);
  EYRIE_CUDA_LAUNCHED();
}

template <int HD, int kSlots>
void launch(const void* q, const void* k_cache, const void* v_cache, int32_t num_tiles, const int32_t* tiles,
            const AttentionShape& a, const RowMeta& m, const float* slopes, bf16* out, int64_t lo_offset,
            float* part_o, float* part_ml, cudaStream_t s) {
  if (!a.bf16_products && a.halves_cache)
    launch<HD, kSlots, true, true>(q, k_cache, v_cache, num_tiles, tiles, a, m, slopes, out, lo_offset, part_o,
                                   part_ml, s);
  else if (!a.bf16_products)
    launch<HD, kSlots, true, false>(q, k_cache, v_cache, num_tiles, tiles, a, m, slopes, out, lo_offset, part_o,
                                    part_ml, s);
  else if (!a.bf16_cache)
    launch<HD, kSlots, false, false>(q, k_cache, v_cache, num_tiles, tiles, a, m, slopes, out, lo_offset, part_o,
                                     part_ml, s);
  else
    launch<HD, kSlots, false, true>(q, k_cache, v_cache, num_tiles, tiles, a, m, slopes, out, lo_offset, part_o,
                                    part_ml, s);
}

}  // namespace

bool attention_mma_supports(int32_t head_dim) { return head_dim > 0 && head_dim <= 128 && head_dim % 4 == 0; }

bool bf16_cache_supports(int32_t head_dim) { return attention_mma_supports(head_dim) && head_dim % 8 == 0; }

// 128 queries share each key tile's loads; at head dim 128 the tile halves, as the queries and
// output held in registers double.
int32_t attention_mma_queries(int32_t head_dim) { return head_dim <= 64 ? 128 : 64; }

void attention_mma(const void* q, const void* k_cache, const void* v_cache, int32_t num_tiles,
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
