// The pieces of prefill attention on warp-group MMAs (wgmma, sm_90a) that the engine's kernel
// (cuda/attention_wgmma.cu) and the probe programs (bench/cuda/wgmma_attention_probe.cu)
// share: a warpgroup of 64 query rows at head dim 64, its scores and running output in wgmma's
// accumulator registers (per warp, mma.sync's m16n8 layout: lane 4g + c holds rows g and g + 8
// of its warp's 16, columns 2c and 2c + 1 of every 8), an online softmax in log2 units, and the
// turns that overlap a tile's P V product with the next tile's softmax. Key and value tiles sit
// in shared memory as 8x8 core matrices: key kk, head dims d..d+7 at (kk / 8) * 1024 +
// (d / 8) * 128 + (kk % 8) * 16; keys K-major (LBO 128, SBO 1024), values read N-major with the
// transpose bit (LBO 1024, SBO 128). Split products (fp32 precision from bf16 MMAs, as in
// cuda/attention_mma.cu) take the probabilities as SplitProbs and a stage of four tiles: keys,
// values, then their low halves (low_halves() further on).
#pragma once

#include <cuda_bf16.h>

#include <cfloat>
#include <cstdint>

#include "cuda/activation_store.cuh"
#include "cuda/fast_math.cuh"
#include "cuda/wgmma.cuh"

namespace eyrie::cuda::warpgroup_attention {

constexpr int kHd = 64;
constexpr float kLog2e = 1.4426950408889634f;
// In log2 units: probabilities stay below 2^11.5 before the base moves.
constexpr float kSlack2 = 8.f * kLog2e;

__device__ inline uint32_t pack_bf16(float lo, float hi) {
  return as_u32(__floats2bfloat162_rn(lo, hi));
}

// Bytes from a stage's key (value) tile of `keys` keys to its low halves: past the key and the
// value tile, each keys x kHd bf16.
__host__ __device__ constexpr int low_halves(int keys) {
  return 2 * keys * kHd * 2;
}

// A tile's probabilities for split products: bf16 high halves and what they leave out, each as
// the A fragments of P V (a plain uint32_t[kN / 16][4] holds bf16 probabilities alone).
template <int kN>
struct SplitProbs {
  uint32_t hi[kN / 16][4], lo[kN / 16][4];
};

// Probabilities x, y (one row's neighbouring keys) into word w of fragment f.
template <int kF>
__device__ inline void put_probs(uint32_t (&p)[kF][4], int f, int w, float x, float y) {
  p[f][w] = pack_bf16(x, y);
}
template <int kN>
__device__ inline void put_probs(SplitProbs<kN>& p, int f, int w, float x, float y) {
  split2(x, y, p.hi[f][w], p.lo[f][w]);
}

// One warpgroup's running softmax over its warp's rows a and b (this thread's two).
struct Softmax {
  float m_a = -FLT_MAX, m_b = -FLT_MAX, l_a = 0.f, l_b = 0.f;
  float al_a = 1.f, al_b = 1.f;
  bool rescaled = false;

  // The probabilities of scores s relative to the rows' bases: row a's keys at or past
  // valid_a masked, row b's at or past valid_b. s is only read: while a product is pending,
  // writing a wgmma's accumulator registers would serialize the wgmmas.
  template <int kN, typename P>
  __device__ void step(const float (&s)[kN / 2], P& pk, int valid_a, int valid_b, int c2) {
    // A tile full for the warp's rows skips the masking's compare and select per score. The
    // choice is the warp's, whose shuffles both paths take.
    if (__all_sync(0xffffffffu, valid_a >= kN && valid_b >= kN))
      masked_step<kN, false>(s, pk, valid_a, valid_b, c2);
    else
      masked_step<kN, true>(s, pk, valid_a, valid_b, c2);
  }

  template <int kN, bool kMasked, typename P>
  __device__ void masked_step(const float (&s)[kN / 2], P& pk, int valid_a, int valid_b, int c2) {
    // Score i is row a's when i % 4 < 2, key (i / 4) * 8 + c2 + i % 2.
    auto live = [&](int i) { return !kMasked || (i / 4) * 8 + c2 + i % 2 < (i % 4 < 2 ? valid_a : valid_b); };
    float mx_a = -FLT_MAX, mx_b = -FLT_MAX;
#pragma unroll
    for (int i = 0; i < kN / 2; ++i) {
      const float x = live(i) ? s[i] : -FLT_MAX;
      if (i % 4 < 2)
        mx_a = fmaxf(mx_a, x);
      else
        mx_b = fmaxf(mx_b, x);
    }
#pragma unroll
    for (int sh = 1; sh <= 2; sh *= 2) {
      mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffffu, mx_a, sh));
      mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffffu, mx_b, sh));
    }
    mx_a *= kLog2e;
    mx_b *= kLog2e;
    rescaled = __any_sync(0xffffffffu, mx_a > m_a + kSlack2 || mx_b > m_b + kSlack2);
    if (rescaled) {
      const float mn_a = fmaxf(m_a, mx_a), mn_b = fmaxf(m_b, mx_b);
      al_a = m_a == -FLT_MAX ? 0.f : exp2_approx(m_a - mn_a);
      al_b = m_b == -FLT_MAX ? 0.f : exp2_approx(m_b - mn_b);
      l_a *= al_a;
      l_b *= al_b;
      m_a = mn_a;
      m_b = mn_b;
    }
    const float nb_a = -m_a, nb_b = -m_b;
    // Pairs (i, i + 1) are one row's neighbouring keys; pair i / 2 is word (i / 2) % 4 of key
    // block i / 8's A fragment.
#pragma unroll
    for (int i = 0; i < kN / 2; i += 2) {
      const bool a = i % 4 < 2;
      const float nb = a ? nb_a : nb_b;
      const float x = live(i) ? exp2_approx(fmaf(s[i], kLog2e, nb)) : 0.f;
      const float y = live(i + 1) ? exp2_approx(fmaf(s[i + 1], kLog2e, nb)) : 0.f;
      put_probs(pk, i / 8, (i / 2) % 4, x, y);
      if (a)
        l_a += x + y;
      else
        l_b += x + y;
    }
  }

  __device__ void rescale(float (&o)[32]) const {
    if (!rescaled) return;
#pragma unroll
    for (int j = 0; j < kHd / 8; ++j) {
      o[4 * j] *= al_a;
      o[4 * j + 1] *= al_a;
      o[4 * j + 2] *= al_b;
      o[4 * j + 3] *= al_b;
    }
  }
};

// A warpgroup's state over the key tiles, in registers: the running output (wgmma's
// accumulator layout), the softmax, a tile's scores, and the probabilities of keys
// 16kb..16kb+15 as the A fragment of P V: pf while that product runs, pk for the next tile's
// meanwhile (the serial variants use pf alone). P: bf16 probabilities, or SplitProbs<kN>.
template <int kN, typename P = uint32_t[kN / 16][4]>
struct Running {
  float o[32] = {};
  Softmax sm;
  float s[kN / 2];
  P pf, pk;
};

// s must be zero: clearing it here, among pending wgmmas, would serialize them.
template <int kN>
__device__ inline void scores(float (&s)[kN / 2], const uint32_t (&qf)[kHd / 16][4], const unsigned char* kt) {
#pragma unroll
  for (int kb = 0; kb < kHd / 16; ++kb) {  // head dims 16kb..16kb+15: two cores along them
    if constexpr (kN == 64)
      wgmma_n64<0>(s, qf[kb], descriptor(kt + kb * 256, 128, 1024));
    else
      wgmma_n128(s, qf[kb], descriptor(kt + kb * 256, 128, 1024));
  }
}

template <int kN>
__device__ inline void values(float (&o)[32], const uint32_t (&pf)[kN / 16][4], const unsigned char* vt) {
#pragma unroll
  for (int kb = 0; kb < kN / 16; ++kb)  // keys 16kb..16kb+15: two cores along them
    wgmma_n64<1>(o, pf[kb], descriptor(vt + kb * 2048, 1024, 128));
}

// Split products: (P_hi + P_lo)(V_hi + V_lo) without lo.lo, the smaller terms first.
template <int kN>
__device__ inline void values(float (&o)[32], const SplitProbs<kN>& p, const unsigned char* vt) {
  values<kN>(o, p.lo, vt);
  values<kN>(o, p.hi, vt + low_halves(kN));
  values<kN>(o, p.hi, vt);
}

// A tile's scores (keys kt) waited for, and their softmax into pf: the start of a serial tile,
// and the first tile of an overlapped loop.
template <int kN, typename Score, typename P>
__device__ inline void first_scores(Score&& score, float (&s)[kN / 2], P& pf, Softmax& sm, const unsigned char* kt,
                                    int valid_a, int valid_b, int c2) {
#pragma unroll
  for (float& x : s) x = 0.f;
  wgmma_fence();
  score(s, kt);
  wgmma_commit();
  wgmma_wait<0>();
  sm.step<kN>(s, pf, valid_a, valid_b, c2);
}

// One tile with each product waited for before the next step: scores (by score(s, kt)), the
// softmax, then P V into o. kt is the stage's K tile, its V tile after it.
template <int kN, typename Score, typename P>
__device__ inline void serial_tile(Score&& score, float (&s)[kN / 2], P& pf, float (&o)[32], Softmax& sm,
                                   const unsigned char* kt, int valid_a, int valid_b, int c2) {
  first_scores<kN>(score, s, pf, sm, kt, valid_a, valid_b, c2);
  sm.rescale(o);
  wgmma_fence();
  values<kN>(o, pf, kt + kN * kHd * 2);
  wgmma_commit();
  wgmma_wait<0>();
}

// A turn's gate for overlapped_turn (see TurnGate): none.
struct NoGate {
  __device__ void wait() const {}
  __device__ void pass() const {}
};

// One overlapped turn, once tile j + 1's keys have landed (when more): tile j's P V
// (probabilities cur, value tile vt) issued together with tile j + 1's scores (key tile
// kt_next), and tile j + 1's softmax into next while P V runs. cur and next swap roles from turn
// to turn (alternate_turns), so that no register a pending wgmma reads is written.
// gate.wait() comes before the products are issued and gate.pass() right after, so that
// warpgroups can take turns on the tensor cores.
template <int kN, typename Score, typename P, typename Gate = NoGate>
__device__ inline void overlapped_turn(Score&& score, float (&s)[kN / 2], float (&o)[32], const P& cur, P& next,
                                       Softmax& sm, const unsigned char* kt_next, const unsigned char* vt, bool more,
                                       int valid_a, int valid_b, int c2, const Gate& gate = {}) {
  if (more) {
#pragma unroll
    for (float& x : s) x = 0.f;
  }
  gate.wait();
  wgmma_fence();
  if (more) {
    score(s, kt_next);
    wgmma_commit();
  }
  values<kN>(o, cur, vt);
  wgmma_commit();
  gate.pass();
  if (more) {
    wgmma_wait<1>();
    sm.step<kN>(s, next, valid_a, valid_b, c2);
    wgmma_wait<0>();
    sm.rescale(o);
  } else {
    wgmma_wait<0>();
  }
}

// Turns j = 0 .. tiles - 1 of an overlapped loop, two at a time with the probability arrays'
// roles swapped; turn(j, cur, next).
template <typename Turn, typename P>
__device__ inline void alternate_turns(int tiles, P& pf, P& pk, Turn&& turn) {
  for (int j = 0; j < tiles; j += 2) {
    turn(j, pf, pk);
    if (j + 1 < tiles) turn(j + 1, pk, pf);
  }
}

}  // namespace eyrie::cuda::warpgroup_attention
