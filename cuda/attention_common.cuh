// Helpers shared by the attention kernels and the cache writer: the paged-cache address of a key,
// the key range a launched tile covers, the writes of outputs (bf16 packing:
// cuda/activation_store.cuh), and the host's check of the queries' form.
#pragma once

#include <string>

#include "cuda/activation_store.cuh"
#include "cuda/attention_mma.hpp"
#include "cuda/kernels.hpp"
#include "model/error.hpp"

namespace eyrie::cuda {

__device__ inline int64_t cache_index(const AttentionShape& a, int block, int kv_head, int slot) {
  return ((static_cast<int64_t>(block) * a.num_kv_heads + kv_head) * a.block_size + slot) * a.head_dim;
}

// A launched tile, decoded: rows r0.. r0+nr-1 of one sequence times heads h0.. h0+nh-1, all
// reading local KV head kv; query slot qi is row r0 + qi / nh, head h0 + qi % nh. Keys
// [key_begin, key_end): a decode row split over several blocks takes one range, in whole tiles
// of `unit` keys.
struct AttentionTile {
  int r0, nr, h0, nh, split, nsplit, slot;
  int kv, p0, key_begin, key_end;

  __device__ AttentionTile(const int32_t* t, const AttentionShape& a, const RowMeta& m, int unit)
      : r0(t[0]), nr(t[1]), h0(t[2]), nh(t[3]), split(t[4]), nsplit(t[5]), slot(t[6]) {
    kv = (a.q_head_offset + h0) / a.group - a.q_head_offset / a.group;
    p0 = m.pos[r0];
    key_begin = 0;
    key_end = p0 + nr;
    if (nsplit > 1) {
      const int chunk = ((key_end + nsplit - 1) / nsplit + unit - 1) / unit * unit;
      key_begin = split * chunk;
      key_end = min(key_end, key_begin + chunk);
    }
  }
  __device__ int queries() const { return nr * nh; }
  // The last key position query slot qi may see.
  __device__ int last_key(int qi) const { return p0 + qi / nh; }
};

// Element d of query slot qi's attention output, o the unnormalised sum and l its softmax mass:
// the result as a.out stores it, or for a split decode row this key range's partial.
__device__ inline void write_attention_out(const AttentionTile& t, const AttentionShape& a, int qi, int d, float o,
                                           float l, bf16* out, int64_t lo_offset, float* part_o) {
  const int hd = a.head_dim;
  if (t.nsplit > 1) {  // nr == 1: query qi is head h0 + qi
    part_o[(static_cast<int64_t>(t.slot + t.split) * a.num_heads + t.h0 + qi) * hd + d] = l > 0.f ? o / l : 0.f;
    return;
  }
  const int64_t at = (static_cast<int64_t>(t.r0 + qi / t.nh) * a.num_heads + t.h0 + qi % t.nh) * hd + d;
  store_activation(out, lo_offset, at, o / l, a.out);
}

// Where query slot qi's row of head_dim elements starts in the queries, and in the output of
// all but split decode rows.
__device__ inline int64_t attention_query_row(const AttentionTile& t, const AttentionShape& a, int qi) {
  return (static_cast<int64_t>(t.r0 + qi / t.nh) * a.num_heads + t.h0 + qi % t.nh) * a.head_dim;
}

// Where query slot qi's output row starts: for a split decode row, in this key range's partials.
__device__ inline int64_t attention_slot_row(const AttentionTile& t, const AttentionShape& a, int qi) {
  if (t.nsplit > 1)  // nr == 1: query qi is head h0 + qi
    return (static_cast<int64_t>(t.slot + t.split) * a.num_heads + t.h0 + qi) * a.head_dim;
  return attention_query_row(t, a, qi);
}

// Elements d and d + 1 (d even) of the output row that starts at `row` (attention_slot_row), o
// the unnormalised sums and inv_l the reciprocal of their softmax mass (0 where it is 0), one
// store each.
__device__ inline void write_attention_out2(const AttentionTile& t, const AttentionShape& a, int64_t row, int d,
                                            float o0, float o1, float inv_l, bf16* out, int64_t lo_offset,
                                            float* part_o) {
  const float v0 = o0 * inv_l, v1 = o1 * inv_l;
  if (t.nsplit > 1) {
    *reinterpret_cast<float2*>(part_o + row + d) = make_float2(v0, v1);
    return;
  }
  store_activation2(out, lo_offset, row + d, v0, v1, a.out);
}

// A split decode row's softmax max and mass over this tile's key range.
__device__ inline void write_attention_stats(const AttentionTile& t, const AttentionShape& a, int qi, float m,
                                             float l, float* part_ml) {
  if (t.nsplit <= 1) return;
  float* ml = part_ml + (static_cast<int64_t>(t.slot + t.split) * a.num_heads + t.h0 + qi) * 2;
  ml[0] = m;
  ml[1] = l;
}

// The end of a tile for the two query slots qa and qb whose output columns c2 and c2 + 1 of
// every 8 a thread holds, as MMA accumulators lie: o[4j], o[4j + 1] of slot qa and o[4j + 2],
// o[4j + 3] of qb. The outputs divided by their softmax masses, then, for a split decode row, the
// slots' maxima (natural units) and masses from the thread with c2 == 0.
template <int kHd>
__device__ __forceinline__ void write_attention_slots(const AttentionTile& t, const AttentionShape& a, int c2, int qa,
                                                      bool live_a, float m_a, float l_a, int qb, bool live_b, float m_b,
                                                      float l_b, const float* o, bf16* out, int64_t lo_offset,
                                                      float* part_o, float* part_ml) {
  const int64_t row_a = live_a ? attention_slot_row(t, a, qa) : 0;
  const int64_t row_b = live_b ? attention_slot_row(t, a, qb) : 0;
  const float inv_a = l_a > 0.f ? 1.f / l_a : 0.f, inv_b = l_b > 0.f ? 1.f / l_b : 0.f;
#pragma unroll
  for (int j = 0; j < kHd / 8; ++j) {
    const int d = j * 8 + c2;
    if (d >= a.head_dim) continue;
    if (live_a) write_attention_out2(t, a, row_a, d, o[4 * j], o[4 * j + 1], inv_a, out, lo_offset, part_o);
    if (live_b) write_attention_out2(t, a, row_b, d, o[4 * j + 2], o[4 * j + 3], inv_b, out, lo_offset, part_o);
  }
  if (c2 == 0) {
    if (live_a) write_attention_stats(t, a, qa, m_a, l_a, part_ml);
    if (live_b) write_attention_stats(t, a, qb, m_b, l_b, part_ml);
  }
}

// The queries' form as the attention kernels can read it.
inline void check_query_form(const char* where, const AttentionShape& a) {
  if (a.q_bf16 && (!a.bf16_products || !attention_mma_supports(a.head_dim)))
    throw InvalidArgument(std::string(where) + ": bf16 queries need bf16 products and a tensor-core head dim, not " +
                          std::to_string(a.head_dim));
}

}  // namespace eyrie::cuda
