// The paged attention kernels against a float64 CPU attention on random queries and caches:
// prefill chunks, decode rows with and without their keys split over blocks, ALiBi, grouped
// and multi-query heads, head dims on tensor cores (8-128) and past them (fp32, 160), and the
// warp-group kernel for prompts at head dim 64 where the device runs it.
#include <gtest/gtest.h>

#if EYRIE_HAS_CUDA
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>

#include "cuda/attention_wgmma.hpp"
#include "cuda/check.hpp"
#include "cuda/cuda_engine.hpp"
#include "cuda/kernels.hpp"
#include "model/dtype.hpp"
#include "model/error.hpp"
#include "tests/cuda/device_buffer.hpp"

namespace eyrie {
namespace {

using test::Device;

struct Shape {
  int32_t heads, kv_heads, head_dim;
  bool alibi;
};

struct Seq {
  int32_t start, rows;
};

// q_bf16: the queries given as qkv_to_cache writes them for bf16 products (AttentionShape::q_bf16).
void check_attention(const Shape& sh, bool split_keys, uint32_t seed, bool bf16_products = false, bool q_bf16 = false) {
  SCOPED_TRACE("heads " + std::to_string(sh.heads) + "/" + std::to_string(sh.kv_heads) + " hd " +
               std::to_string(sh.head_dim) + (sh.alibi ? " alibi" : "") + (split_keys ? " split keys" : "") +
               (q_bf16 ? " bf16 queries" : ""));
  constexpr int32_t kBlock = 16;
  // A prefill chunk from 0, one mid-sequence, two decode rows with long contexts and one with a
  // short context.
  const std::vector<Seq> seqs{{0, 37}, {50, 20}, {300, 1}, {97, 1}, {10, 1}};
  const int32_t hd = sh.head_dim, group = sh.heads / sh.kv_heads;
  int32_t max_blocks = 0;
  for (const auto& s : seqs) max_blocks = std::max(max_blocks, (s.start + s.rows + kBlock - 1) / kBlock);
  const int32_t num_blocks = max_blocks * static_cast<int32_t>(seqs.size());

  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<int32_t> order(num_blocks);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<int32_t> tables(order.begin(), order.end());  // seq s owns row s of [seqs, max_blocks]
  const std::size_t cache_n = static_cast<std::size_t>(num_blocks) * sh.kv_heads * kBlock * hd;
  std::vector<float> kc(cache_n), vc(cache_n);
  for (auto& v : kc) v = 2.f * u(rng);  // scores of a few units, so the softmax is not flat
  for (auto& v : vc) v = u(rng);
  std::vector<float> slopes(sh.heads);
  for (int32_t h = 0; h < sh.heads; ++h) slopes[h] = std::pow(2.f, -8.f * (h + 1) / sh.heads);

  std::vector<int32_t> pos, seq_of, tiles;
  for (std::size_t s = 0; s < seqs.size(); ++s) {
    cuda::attention_tiles(static_cast<int32_t>(pos.size()), seqs[s].rows, sh.heads, 0, group,
                          seqs[s].rows == 1 && split_keys ? 16 : 128, cuda::attention_tile_queries(hd), tiles);
    for (int32_t i = 0; i < seqs[s].rows; ++i) {
      pos.push_back(seqs[s].start + i);
      seq_of.push_back(static_cast<int32_t>(s));
    }
  }
  const auto rows = static_cast<int64_t>(pos.size());
  std::vector<float> q(rows * sh.heads * hd);
  for (auto& v : q) v = u(rng);

  // Launched tiles: decode rows split into 5 key ranges when asked, as the engine splits every
  // decode row of a step alike: ranges past a short row's keys hold none.
  std::vector<int32_t> launch, row_split(2 * rows, 0);
  int32_t slots = 0;
  for (int64_t r = 0; r < rows; ++r) {
    row_split[2 * r] = 1;
    const bool decode = seqs[seq_of[r]].rows == 1;
    const int32_t ranges = 5;
    if (!split_keys || !decode) continue;
    row_split[2 * r] = ranges;
    row_split[2 * r + 1] = slots;
    slots += ranges;
  }
  cuda::launch_tiles(tiles, row_split, launch);

  std::vector<uint16_t> q_scaled(q.size());
  const float q_scale = 1.f / std::sqrt(static_cast<float>(hd));
  for (std::size_t i = 0; i < q.size(); ++i) q_scaled[i] = f32_to_bf16(q[i] * q_scale);
  Device<float> d_q(q), d_k(kc), d_v(vc), d_slopes(slopes);
  Device<uint16_t> d_qb(q_scaled);
  const void* qp = q_bf16 ? static_cast<const void*>(d_qb.p) : d_q.p;
  Device<int32_t> d_pos(pos), d_seq(seq_of), d_tables(tables), d_tiles(launch), d_split(row_split);
  Device<float> d_part_o(std::max<std::size_t>(1, slots) * sh.heads * hd), d_part_ml(std::max<std::size_t>(1, slots) * sh.heads * 2);
  Device<cuda::bf16> d_out(2 * rows * sh.heads * hd);
  cuda::AttentionShape a{sh.heads, sh.kv_heads, hd, 0, kBlock, max_blocks, 10000.f, sh.alibi, group, 0, bf16_products};
  a.q_bf16 = q_bf16;
  const cuda::RowMeta meta{d_seq.p, d_pos.p, d_tables.p};
  const cuda::KeySplits splits{slots > 0, d_split.p, d_part_o.p, d_part_ml.p};
  cuda::paged_attention(qp, d_k.p, d_v.p, rows, static_cast<int32_t>(launch.size() / cuda::kAttentionTileInts),
                        d_tiles.p, a, meta, d_slopes.p, d_out.p, splits, nullptr);
  EYRIE_CUDA_CHECK(cudaDeviceSynchronize());
  const auto out = d_out.get(2 * rows * sh.heads * hd);
  // The output's bits with the same keys and values cached another way (as the shape says).
  auto bits_of = [&](const std::vector<cuda::bf16>& o) {
    std::vector<uint16_t> bits(o.size());
    std::memcpy(bits.data(), o.data(), o.size() * 2);
    return bits;
  };
  auto bits_with_cache = [&](const cuda::AttentionShape& as, const std::vector<uint16_t>& k,
                             const std::vector<uint16_t>& v) {
    Device<uint16_t> d_kc(k), d_vc(v);
    Device<cuda::bf16> d_o(2 * rows * sh.heads * hd);
    cuda::paged_attention(qp, d_kc.p, d_vc.p, rows, static_cast<int32_t>(launch.size() / cuda::kAttentionTileInts),
                          d_tiles.p, as, meta, d_slopes.p, d_o.p, splits, nullptr);
    EYRIE_CUDA_CHECK(cudaDeviceSynchronize());
    return bits_of(d_o.get(2 * rows * sh.heads * hd));
  };
  // Keys and values as a bf16 cache holds them, and as a halves cache does (each row's high
  // halves, then its low).
  auto bf16_of = [](const std::vector<float>& c) {
    std::vector<uint16_t> b(c.size());
    for (std::size_t i = 0; i < c.size(); ++i) b[i] = f32_to_bf16(c[i]);
    return b;
  };
  auto halves_of = [hd](const std::vector<float>& c) {
    std::vector<uint16_t> h(2 * c.size());
    for (std::size_t row = 0; row < c.size() / hd; ++row)
      for (int32_t d = 0; d < hd; ++d) {
        const float x = c[row * hd + d];
        const uint16_t hi = f32_to_bf16(x);
        h[2 * row * hd + d] = hi;
        h[2 * row * hd + hd + d] = f32_to_bf16(x - bf16_to_f32(hi));
      }
    return h;
  };
  if (bf16_products && cuda::bf16_cache_supports(hd)) {
    // The same keys and values cached as bf16: the products round them to bf16 either way, so
    // the output has the same bits.
    const auto kb = bf16_of(kc), vb = bf16_of(vc);
    cuda::AttentionShape ab = a;
    ab.bf16_cache = true;
    EXPECT_EQ(bits_of(out), bits_with_cache(ab, kb, vb)) << "bf16 cache against fp32 cache";
  }
  if (!bf16_products && cuda::bf16_cache_supports(hd)) {
    // The same keys and values cached as split-bf16 halves: the products split them the same
    // way either way, so the output has the same bits.
    cuda::AttentionShape ah = a;
    ah.halves_cache = true;
    EXPECT_EQ(bits_of(out), bits_with_cache(ah, halves_of(kc), halves_of(vc))) << "halves cache against fp32 cache";
  }
  {
    // The output as fp32 rows (Activations::fp32_rows): the values the split output rounds into halves.
    cuda::AttentionShape af = a;
    af.out = cuda::Activations::fp32_rows;
    const int64_t count = rows * sh.heads * hd;
    Device<cuda::bf16> d_of(2 * count);
    cuda::paged_attention(qp, d_k.p, d_v.p, rows, static_cast<int32_t>(launch.size() / cuda::kAttentionTileInts),
                          d_tiles.p, af, meta, d_slopes.p, d_of.p, splits, nullptr);
    const auto bytes = d_of.get(2 * count);
    std::vector<float> whole(count);
    std::memcpy(whole.data(), bytes.data(), count * sizeof(float));
    const auto split_bits = bits_of(out);
    for (int64_t i = 0; i < count; ++i) {
      const uint16_t hi = f32_to_bf16(whole[i]), lo = f32_to_bf16(whole[i] - bf16_to_f32(hi));
      ASSERT_EQ(split_bits[i], hi) << "fp32 output, high half of element " << i;
      ASSERT_EQ(split_bits[count + i], lo) << "fp32 output, low half of element " << i;
    }
    // The output as fp16 rows (Activations::f16_rows, dense's input with fp16_dense): the same
    // values rounded to fp16 once.
    cuda::AttentionShape a16 = a;
    a16.out = cuda::Activations::f16_rows;
    Device<cuda::bf16> d_o16(count);
    cuda::paged_attention(qp, d_k.p, d_v.p, rows, static_cast<int32_t>(launch.size() / cuda::kAttentionTileInts),
                          d_tiles.p, a16, meta, d_slopes.p, d_o16.p, splits, nullptr);
    const auto bits16 = bits_of(d_o16.get(count));
    for (int64_t i = 0; i < count; ++i) {
      const __half want = __float2half_rn(whole[i]);
      uint16_t want_bits;
      std::memcpy(&want_bits, &want, 2);
      ASSERT_EQ(bits16[i], want_bits) << "fp16 output, element " << i;
    }
  }

  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  // The largest difference of an output (split halves summed) from the float64 attention.
  auto worst_of = [&](const std::vector<cuda::bf16>& got_out) {
    double worst = 0;
    for (int64_t r = 0; r < rows; ++r)
      for (int32_t h = 0; h < sh.heads; ++h) {
        const int32_t kv = h / group;
        const int32_t* table = tables.data() + static_cast<std::size_t>(seq_of[r]) * max_blocks;
        auto at = [&](int32_t p) {
          return ((static_cast<std::size_t>(table[p / kBlock]) * sh.kv_heads + kv) * kBlock + p % kBlock) * hd;
        };
        std::vector<double> w(pos[r] + 1);
        double mx = -1e300;
        for (int32_t p = 0; p <= pos[r]; ++p) {
          double dot = 0;
          for (int32_t d = 0; d < hd; ++d) dot += static_cast<double>(q[(r * sh.heads + h) * hd + d]) * kc[at(p) + d];
          w[p] = dot * scale;
          // The bias rounded to bf16, as transformers builds it in the model's dtype.
          if (sh.alibi) w[p] += static_cast<float>(__float2bfloat16(slopes[h] * static_cast<float>(p))) * scale;
          mx = std::max(mx, w[p]);
        }
        double den = 0;
        for (auto& x : w) den += (x = std::exp(x - mx));
        for (int32_t d = 0; d < hd; ++d) {
          double ref = 0;
          for (int32_t p = 0; p <= pos[r]; ++p) ref += w[p] * vc[at(p) + d];
          ref /= den;
          const std::size_t o = (r * sh.heads + h) * hd + d;
          const double got = static_cast<double>(static_cast<float>(got_out[o])) +
                             static_cast<double>(static_cast<float>(got_out[rows * sh.heads * hd + o]));
          worst = std::max(worst, std::abs(got - ref));
        }
      }
    return worst;
  };
  // fp32 accumulation over a few hundred keys, and outputs of magnitude below one; bf16
  // products round queries, keys, values and probabilities to 8 significant bits.
  EXPECT_LT(worst_of(out), bf16_products ? 1e-2 : 5e-5) << "largest absolute difference from float64";
  cuda::AttentionShape aw = a;
  (bf16_products ? aw.bf16_cache : aw.halves_cache) = true;
  aw.wgmma = true;
  int device = 0;
  EYRIE_CUDA_CHECK(cudaGetDevice(&device));
  if (cuda::attention_wgmma_supports(aw) && cuda::attention_wgmma_device(device)) {
    // The warp-group kernel on tiles of its size, keys and values cached as it reads them:
    // within the same bound.
    std::vector<int32_t> wide, wide_launch;
    for (std::size_t s = 0, first = 0; s < seqs.size(); first += seqs[s].rows, ++s)
      cuda::attention_tiles(static_cast<int32_t>(first), seqs[s].rows, sh.heads, 0, group,
                            seqs[s].rows == 1 && split_keys ? 16 : 128, cuda::kWgmmaTileQueries, wide);
    cuda::launch_tiles(wide, row_split, wide_launch);
    Device<uint16_t> d_kw(bf16_products ? bf16_of(kc) : halves_of(kc)),
        d_vw(bf16_products ? bf16_of(vc) : halves_of(vc));
    Device<int32_t> d_wide(wide_launch);
    Device<cuda::bf16> d_ow(2 * rows * sh.heads * hd);
    cuda::paged_attention(qp, d_kw.p, d_vw.p, rows, static_cast<int32_t>(wide_launch.size() / cuda::kAttentionTileInts),
                          d_wide.p, aw, meta, d_slopes.p, d_ow.p, splits, nullptr);
    EYRIE_CUDA_CHECK(cudaDeviceSynchronize());
    EXPECT_LT(worst_of(d_ow.get(2 * rows * sh.heads * hd)), bf16_products ? 1e-2 : 5e-5)
        << "warp-group kernel, largest difference";
  }
}

// Offsets of query head h and of KV head j's key (its value follows) in a fused
// query_key_value row, for AttentionShape::layout.
int64_t q_col(int32_t layout, int32_t heads, int32_t kv_heads, int32_t hd, int32_t h) {
  const int32_t g = heads / kv_heads;
  return layout == 0   ? static_cast<int64_t>((h / g) * (g + 2) + h % g) * hd
         : layout == 1 ? static_cast<int64_t>(h) * hd
                       : static_cast<int64_t>(3 * h) * hd;
}
int64_t k_col(int32_t layout, int32_t heads, int32_t kv_heads, int32_t hd, int32_t j) {
  const int32_t g = heads / kv_heads;
  return layout == 0   ? static_cast<int64_t>(j * (g + 2) + g) * hd
         : layout == 1 ? static_cast<int64_t>(heads + 2 * j) * hd
                       : static_cast<int64_t>(3 * j + 1) * hd;
}

// The KV cache's element: fp32, bf16, or a pair of bf16 halves (AttentionShape::halves_cache).
enum class CacheForm { fp32, bf16, halves };

struct QkvCase {
  int32_t heads, kv_heads, head_dim, layout;
  bool alibi;
  int32_t rows;
  bool qkv_bf16, q_bf16;
  CacheForm cache;
};

// qkv_to_cache against a float64 rotary (NeoX halves, transformers' angles) of the same inputs:
// every query element, and every key and value element in the cache slot of its row.
void check_qkv_to_cache(const QkvCase& c, uint32_t seed) {
  SCOPED_TRACE("heads " + std::to_string(c.heads) + "/" + std::to_string(c.kv_heads) + " hd " +
               std::to_string(c.head_dim) + " layout " + std::to_string(c.layout) + " rows " + std::to_string(c.rows) +
               (c.alibi ? " alibi" : "") + (c.qkv_bf16 ? " bf16 qkv" : " split qkv") + (c.q_bf16 ? " bf16 q" : "") +
               (c.cache == CacheForm::bf16     ? " bf16 cache"
                : c.cache == CacheForm::halves ? " halves cache"
                                               : ""));
  constexpr int32_t kBlock = 16;
  const int32_t hd = c.head_dim, half = hd / 2;
  const int64_t width = static_cast<int64_t>(c.heads + 2 * c.kv_heads) * hd;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-2.f, 2.f);
  // Sequences of up to 100 rows at positions 5.., their blocks shuffled over the cache: many
  // rows, without angles past ~100 radians.
  constexpr int32_t kSeqRows = 100, kFirstPos = 5;
  const int32_t seqs = (c.rows + kSeqRows - 1) / kSeqRows;
  const int32_t per_seq = (kFirstPos + kSeqRows + kBlock - 1) / kBlock, blocks = seqs * per_seq;
  std::vector<int32_t> table(blocks);  // [seqs, per_seq]
  std::iota(table.begin(), table.end(), 0);
  std::shuffle(table.begin(), table.end(), rng);
  std::vector<int32_t> pos(c.rows), seq(c.rows);
  for (int32_t r = 0; r < c.rows; ++r) {
    seq[r] = r / kSeqRows;
    pos[r] = kFirstPos + r % kSeqRows;
  }
  // The product's output as either form: bf16, or split products' fp32 rows (the high halves'
  // products) followed by the low halves' rows, which are added to them.
  std::vector<double> value(c.rows * width);
  std::vector<float> split(2 * c.rows * width);
  std::vector<uint16_t> packed(c.rows * width);
  std::vector<float> bias(width);
  for (auto& b : bias) b = 0.25f * u(rng);
  for (int64_t e = 0; e < c.rows * width; ++e) {
    const uint16_t b = f32_to_bf16(u(rng));
    packed[e] = b;
    split[e] = bf16_to_f32(b);
    split[c.rows * width + e] = std::ldexp(u(rng), -9);
    value[e] = (c.qkv_bf16 ? static_cast<double>(bf16_to_f32(b))
                           : static_cast<double>(split[e]) + static_cast<double>(split[c.rows * width + e])) +
               bias[e % width];
  }
  Device<float> d_split(split), d_bias(bias);
  Device<uint16_t> d_packed(packed);
  Device<int32_t> d_pos(pos), d_seq(seq), d_table(table);
  const std::size_t cache_n = static_cast<std::size_t>(blocks) * c.kv_heads * kBlock * hd;
  const bool bf16_cache = c.cache == CacheForm::bf16;
  const std::size_t elem = bf16_cache ? 2 : 4;
  Device<uint8_t> d_k(cache_n * elem), d_v(cache_n * elem);
  Device<float> d_q(static_cast<std::size_t>(c.rows) * c.heads * hd);
  cuda::AttentionShape a{c.heads,
                         c.kv_heads,
                         hd,
                         c.layout,
                         kBlock,
                         per_seq,
                         10000.f,
                         c.alibi,
                         c.heads / c.kv_heads,
                         0,
                         c.q_bf16 || bf16_cache};
  a.qkv_halves = !c.qkv_bf16;
  a.qkv_bf16 = c.qkv_bf16;
  a.q_bf16 = c.q_bf16;
  a.bf16_cache = bf16_cache;
  a.halves_cache = c.cache == CacheForm::halves;
  const void* qkv = c.qkv_bf16 ? static_cast<const void*>(d_packed.p) : d_split.p;
  cuda::qkv_to_cache(qkv, d_bias.p, c.rows, a, {d_seq.p, d_pos.p, d_table.p}, d_q.p, d_k.p, d_v.p, nullptr);
  EYRIE_CUDA_CHECK(cudaDeviceSynchronize());
  const auto q = d_q.get(static_cast<std::size_t>(c.rows) * c.heads * hd);
  const auto k = d_k.get(cache_n * elem), v = d_v.get(cache_n * elem);
  // Element d of the cache row that an fp32 cache would start at `row`.
  auto cache_at = [&](const std::vector<uint8_t>& cache, std::size_t row, int32_t d) {
    auto bf16_at = [&](std::size_t i) {
      uint16_t b;
      std::memcpy(&b, cache.data() + 2 * i, 2);
      return static_cast<double>(bf16_to_f32(b));
    };
    if (c.cache == CacheForm::bf16) return bf16_at(row + d);
    if (c.cache == CacheForm::halves) return bf16_at(2 * row + d) + bf16_at(2 * row + hd + d);
    float f;
    std::memcpy(&f, cache.data() + 4 * (row + d), 4);
    return static_cast<double>(f);
  };
  auto q_at = [&](std::size_t i) {
    if (!c.q_bf16) return static_cast<double>(q[i]);
    uint16_t b;
    std::memcpy(&b, reinterpret_cast<const uint8_t*>(q.data()) + 2 * i, 2);
    return static_cast<double>(bf16_to_f32(b)) * std::sqrt(static_cast<double>(hd));
  };
  // How far a value misses beyond a bf16 rounding (8 significant bits) where it was stored so.
  auto miss = [](double got, double want, bool bf16) {
    return std::abs(got - want) - (bf16 ? std::ldexp(std::abs(want), -8) : 0.0);
  };
  double worst_q = 0, worst_kv = 0;
  for (int32_t r = 0; r < c.rows; ++r) {
    const double* row = value.data() + r * width;
    auto rotated = [&](int64_t off, int32_t d) {
      if (c.alibi) return row[off + d];
      const int32_t i = d % half;
      const double angle = pos[r] / std::pow(10000.0, 2.0 * i / hd);
      const double x1 = row[off + i], x2 = row[off + i + half];
      return d < half ? x1 * std::cos(angle) - x2 * std::sin(angle) : x2 * std::cos(angle) + x1 * std::sin(angle);
    };
    for (int32_t h = 0; h < c.heads; ++h)
      for (int32_t d = 0; d < hd; ++d) {
        const double want = rotated(q_col(c.layout, c.heads, c.kv_heads, hd, h), d);
        worst_q = std::max(worst_q, miss(q_at((static_cast<std::size_t>(r) * c.heads + h) * hd + d), want, c.q_bf16));
      }
    const std::size_t slot =
        (static_cast<std::size_t>(table[seq[r] * per_seq + pos[r] / kBlock]) * c.kv_heads * kBlock + pos[r] % kBlock) *
        hd;
    for (int32_t j = 0; j < c.kv_heads; ++j)
      for (int32_t d = 0; d < hd; ++d) {
        const int64_t off = k_col(c.layout, c.heads, c.kv_heads, hd, j);
        const std::size_t at = slot + static_cast<std::size_t>(j) * kBlock * hd;
        worst_kv = std::max(worst_kv, miss(cache_at(k, at, d), rotated(off, d), bf16_cache));
        worst_kv = std::max(worst_kv, miss(cache_at(v, at, d), row[off + hd + d], bf16_cache));
      }
  }
  // fp32 angles as transformers computes them: up to 104 radians here, off by up to ~1.3e-5
  // from float64's, on values below 3.2 in magnitude.
  EXPECT_LT(worst_q, 1e-4) << "queries";
  EXPECT_LT(worst_kv, 1e-4) << "keys and values";
}

class AttentionKernel : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  }
};

TEST_F(AttentionKernel, MatchesFloat64OnRandomInputs) {
  // Head dim 6: the key-split merge's one-element-a-thread path.
  const std::vector<Shape> shapes{{8, 1, 16, false},  {8, 2, 8, true},   {71, 1, 64, false},
                                  {16, 2, 64, true},  {8, 2, 64, false}, {16, 2, 128, false},
                                  {4, 4, 160, false}, {6, 3, 32, false}, {4, 2, 6, false}};
  uint32_t seed = 1;
  for (const auto& sh : shapes)
    for (bool split : {false, true}) check_attention(sh, split, seed++);
}

TEST_F(AttentionKernel, Bf16ProductsStayWithinBf16RoundingOfFloat64) {
  const std::vector<Shape> shapes{{8, 1, 16, false}, {6, 3, 32, false}, {71, 1, 64, false},
                                  {16, 2, 64, true}, {8, 2, 64, false}, {16, 2, 128, false}};
  uint32_t seed = 50;
  for (const auto& sh : shapes)
    for (bool split : {false, true})
      for (bool q_bf16 : {false, true}) check_attention(sh, split, seed++, true, q_bf16);
}

// Kernels of more than 48 KB of shared memory, launched by one thread on one device and then on
// another, as a thread driving several tensor-parallel shards would: each device's copy of a
// kernel needs its own attribute. The fp32-stage kernel for split products, the fp32 kernel
// past head dim 128, and bf16 products (the warp-group kernel where the device has it).
TEST_F(AttentionKernel, RunsOnEveryDeviceOneThreadLaunchesOn) {
  if (cuda_device_count() < 2) GTEST_SKIP() << "one device";
  struct BackToDeviceZero {
    ~BackToDeviceZero() { cudaSetDevice(0); }
  } back;
  for (const int device : {0, 1}) {
    SCOPED_TRACE("device " + std::to_string(device));
    EYRIE_CUDA_CHECK(cudaSetDevice(device));
    check_attention({71, 1, 64, false}, true, 90);
    check_attention({4, 4, 160, false}, false, 91);
    check_attention({8, 2, 64, false}, true, 92, true, true);
  }
}

// Small device buffers for calls that must be refused before any kernel reads them.
struct RefusedCallBuffers {
  Device<float> buf{64};
  Device<cuda::bf16> out{64};
  Device<int32_t> rows{std::vector<int32_t>(8, 0)};
  cuda::RowMeta meta{rows.p, rows.p, rows.p};
};

TEST_F(AttentionKernel, RejectsBf16QueriesItCannotRead) {
  const RefusedCallBuffers d;
  for (auto [hd, bf16_products] : {std::pair{64, false}, std::pair{160, true}}) {
    cuda::AttentionShape a{2, 1, hd, 0, 16, 1, 10000.f, false, 2, 0, bf16_products};
    a.q_bf16 = true;
    EXPECT_THROW(cuda::qkv_to_cache(d.buf.p, nullptr, 1, a, d.meta, d.buf.p, d.buf.p, d.buf.p, nullptr),
                 InvalidArgument);
    EXPECT_THROW(
        cuda::paged_attention(d.buf.p, d.buf.p, d.buf.p, 1, 0, d.rows.p, a, d.meta, nullptr, d.out.p, {}, nullptr),
        InvalidArgument);
  }
}

// The warp-group kernel takes head dim 64 without ALiBi, with bf16 products on bf16 queries
// and a bf16 cache or split products on fp32 queries and a halves cache: asked for any other
// shape, paged_attention says so instead of launching it.
TEST_F(AttentionKernel, RefusesTheWarpGroupKernelForShapesItDoesNotTake) {
  const RefusedCallBuffers d;
  for (int variant = 0; variant < 5; ++variant) {
    // Variant 4: split products on a cache of fp32 rows.
    const bool split = variant == 4;
    cuda::AttentionShape a{2, 1, variant == 0 ? 32 : 64, 0, 16, 1, 10000.f, variant == 1, 2, 0, !split};
    a.q_bf16 = !split && variant != 2;
    a.bf16_cache = !split && variant != 3;
    a.wgmma = true;
    EXPECT_FALSE(cuda::attention_wgmma_supports(a)) << "variant " << variant;
    try {
      cuda::paged_attention(d.buf.p, d.buf.p, d.buf.p, 1, 1, d.rows.p, a, d.meta, nullptr, d.out.p, {}, nullptr);
      ADD_FAILURE() << "variant " << variant << " was launched";
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find("attention_wgmma: takes head dim 64"), std::string::npos) << e.what();
    }
  }
}

TEST_F(AttentionKernel, QkvToCacheRotatesAsTransformersDoes) {
  uint32_t seed = 100;
  // A decode step's rows and larger steps' (qkv_to_cache takes another kernel past 64 rows of
  // fp32 products, and from 512 of bf16).
  for (int32_t rows : {3, 200, 600})
    for (const auto& [heads, kv, hd, layout, alibi] :
         {std::tuple{8, 1, 64, 1, false}, std::tuple{8, 2, 16, 0, false}, std::tuple{4, 4, 32, 2, false},
          std::tuple{6, 3, 24, 0, false}, std::tuple{71, 1, 64, 1, false}, std::tuple{4, 4, 16, 2, true},
          std::tuple{16, 2, 128, 0, false}, std::tuple{4, 4, 160, 2, false}})
      for (bool qkv_bf16 : {false, true})
        for (CacheForm cache : {CacheForm::fp32, CacheForm::bf16, CacheForm::halves}) {
          // bf16 queries and caches come with bf16 products, which the tensor cores take up to
          // head dim 128; a halves cache comes with split products.
          const bool bf16_out = cache == CacheForm::bf16;
          if (bf16_out && hd > 128) continue;
          if (cache == CacheForm::halves && (qkv_bf16 || hd > 128 || hd % 8 != 0)) continue;
          check_qkv_to_cache({heads, kv, hd, layout, alibi, rows, qkv_bf16, bf16_out, cache}, seed++);
        }
}

}  // namespace
}  // namespace eyrie
#endif
