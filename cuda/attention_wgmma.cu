// Paged causal attention on warp-group MMAs (wgmma, sm_90a) for prompts at head dim 64, in
// FlashAttention-3's shape for that head dim: three consumer warpgroups of 64 query slots (192 a
// block), holding 160 registers a thread that the producer warpgroup hands over (setmaxnreg),
// and the producers copying each 64-key tile of keys and values from the paged cache into a
// ring of six stages. On bf16 products (a bf16 cache) each consumer warpgroup overlaps a tile's
// P V product with the next tile's softmax (cuda/attention_wgmma.cuh). On split products (a
// halves cache, fp32 queries) each product is three MMAs on bf16 halves, as in the mma.sync
// kernel, and a warpgroup's tiles run one after the other: the high and low fragments of two
// tiles' probabilities do not fit its registers beside the queries' (H200, 2048-token prompt's
// layer at ncu's clock: 326 us, against 417-422 overlapped on two warpgroups of 232 registers
// and 446-453 overlapped on three with spills; the mma.sync kernel 460-463). The tiles, masking
// and outputs (key-split partials included) are the mma.sync kernel's (cuda/attention_mma.cu),
// with slots in threes of warpgroups instead of eight warps.
#include "cuda/attention_wgmma.hpp"

#include <cuda_bf16.h>

#include <algorithm>
#include <cfloat>
#include <string>
#include <type_traits>

#include "cuda/async_copy.cuh"
#include "cuda/attention_common.cuh"
#include "cuda/attention_wgmma.cuh"
#include "cuda/check.hpp"
#include "cuda/dependent_launch.cuh"
#include "cuda/dynamic_smem.cuh"

namespace eyrie::cuda {
namespace {

using namespace warpgroup_attention;

constexpr int kKeys = 64, kRing = 6;
constexpr int kTileBytes = kKeys * kHd * 2;  // a K or a V tile (or their low halves)

constexpr int kGroups = 3, kConsumers = kGroups * 128, kThreads = kConsumers + 128, kProducers = 128;
// A consumer thread's registers, and a producer thread's: within what the block is launched with
// (65,536 over its threads), or setmaxnreg.inc would wait forever for registers no warp gives
// back.
constexpr int kConsumerRegs = 160, kProducerRegs = 32, kLaunchRegs = 65536 / kThreads;
static_assert(kConsumers * kConsumerRegs + kProducers * kProducerRegs <= kThreads * kLaunchRegs,
              "the registers the block is launched with");
static_assert(kGroups * 64 == kWgmmaTileQueries, "a warpgroup takes 64 slots");
// 16-byte chunks of K (and as many of V, and of each's low halves for split products) a
// producer thread copies a tile.
constexpr int kCopiesPerLane = kKeys * 8 / kProducers;

// The block's stages for bf16 (kSplit false) or split products.
template <bool kSplit>
struct Config {
  static constexpr int kStageBytes = (kSplit ? 4 : 2) * kTileBytes;
  static constexpr int kSmemBytes = kRing * kStageBytes + 2 * kRing * static_cast<int>(sizeof(uint64_t));
};

// grid: up to one block an SM, each taking one launched tile (AttentionTile) of every round of
// gridDim.x, counted from the last, which a prompt's longest tiles are; block: the consumer
// warpgroups, then the producers. Each block keeps its ring going from one tile to the next, so
// that the next tile's block-table reads and first copies overlap this tile's last products
// instead of waiting for a block to start. Slot qi of a tile is warp qi / 16's row (qi % 16) of
// its 16; lane 4g + c holds slots 16w + g and 16w + g + 8. q: bf16 queries already scaled, or
// with kSplit fp32 queries.
template <bool kSplit>
__global__ void __launch_bounds__(kThreads, 1)
    attention_wgmma_kernel(const void* q, const bf16* k_cache, const bf16* v_cache, AttentionShape a, RowMeta m,
                           const int32_t* tiles, int32_t num_tiles, bf16* out, int64_t lo_offset, float* part_o,
                           float* part_ml) {
  using C = Config<kSplit>;
  allow_dependents();  // the products after this kernel start reading their weights
  extern __shared__ __align__(1024) unsigned char smem[];
  auto* full = reinterpret_cast<uint64_t*>(smem + kRing * C::kStageBytes);
  uint64_t* empty = full + kRing;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (threadIdx.x == 0) {
    for (int i = 0; i < kRing; ++i) {
      barrier_init(&full[i], kProducers);
      barrier_init(&empty[i], kConsumers);
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();
  // The block's tile of each round of gridDim.x tiles, the rounds alternating in direction so
  // that the block taking a round's longest tile takes the next round's shortest.
  auto tile_of = [&](int round) {
    const int b = static_cast<int>(blockIdx.x), n = static_cast<int>(gridDim.x);
    return round * n + (round % 2 ? n - 1 - b : b);
  };
  auto tile_at = [&](int w) { return AttentionTile(tiles + kAttentionTileInts * (num_tiles - 1 - w), a, m, kKeys); };
  auto key_tiles_of = [](const AttentionTile& t) { return max(0, (t.key_end - t.key_begin + kKeys - 1) / kKeys); };
  // Key tile g of the block's run (over its tiles) sits in stage g % kRing.
  auto stage = [&](int g) { return smem + (g % kRing) * C::kStageBytes; };

  if (warp >= kConsumers / 32) {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kProducerRegs) : "memory");
    // The producers: key tile g into stage g % kRing once every consumer is past the key tile
    // that held it. Producer warp w, lane l copies keys 16w + 8(i / 2) + l % 8, i = 0..3
    // (16-byte chunks of head dims) of each, K and V. A key's cache block comes from the lane
    // that read it from the block table (key 32(w / 2) + l of the key tile), a key tile ahead.
    // One warp reading the table where needed left its copies waiting on each entry, and the
    // consumers on the copies. A halves cache's rows are each key's high halves, then its low.
    const int pw = warp - kConsumers / 32;
    const int table_key = 32 * (pw / 2) + lane;
    const int block_shift = __ffs(a.block_size) - 1, block_mask = a.block_size - 1;
    constexpr int kRowElems = (kSplit ? 2 : 1) * kHd;
    const int64_t block_elems = static_cast<int64_t>(a.num_kv_heads) * a.block_size * kRowElems;
    int g = 0;
    for (int round = 0; round * static_cast<int>(gridDim.x) < num_tiles; ++round) {
      const int w = tile_of(round);
      if (w >= num_tiles) continue;
      const AttentionTile t = tile_at(w);
      const int key_tiles = key_tiles_of(t);
      const int* table = m.block_tables + static_cast<int64_t>(m.seq[t.r0]) * a.max_blocks_per_seq;
      const int64_t head_elems = static_cast<int64_t>(t.kv) * a.block_size * kRowElems;
      auto block_of = [&](int j) {
        const int p = t.key_begin + j * kKeys + table_key;
        return p < t.key_end ? table[p >> block_shift] : 0;
      };
      int next = key_tiles > 0 ? block_of(0) : 0;
      for (int j = 0; j < key_tiles; ++j, ++g) {
        const int mine = next;
        if (j + 1 < key_tiles) next = block_of(j + 1);
        if (g >= kRing) barrier_wait(&empty[g % kRing], ((g / kRing) - 1) & 1);
        const int k0 = t.key_begin + j * kKeys, nk = min(kKeys, t.key_end - k0);
        unsigned char* kt = stage(g);
#pragma unroll
        for (int i = 0; i < kCopiesPerLane; ++i) {
          const int e = lane + (pw * kCopiesPerLane + i) * 32;
          const int kk = (e / 64) * 8 + e % 8, d = ((e / 8) % 8) * 8, p = k0 + kk;
          const int block = __shfl_sync(0xffffffffu, mine, kk % 32);
          const bool valid = kk < nk;
          const int64_t at = valid ? block * block_elems + head_elems + (p & block_mask) * kRowElems + d : 0;
          copy_async16(kt + e * 16, k_cache + at, valid);
          copy_async16(kt + kTileBytes + e * 16, v_cache + at, valid);
          if constexpr (kSplit) {
            copy_async16(kt + low_halves(kKeys) + e * 16, k_cache + at + kHd, valid);
            copy_async16(kt + low_halves(kKeys) + kTileBytes + e * 16, v_cache + at + kHd, valid);
          }
        }
        barrier_arrive_on_copies(&full[g % kRing]);
      }
    }
    return;
  }
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kConsumerRegs) : "memory");

  const int gq = lane / 4, c2 = (lane % 4) * 2;
  const int qa = warp * 16 + gq, qb = qa + 8;
  auto wait_full = [&](int g) {
    barrier_wait(&full[g % kRing], (g / kRing) & 1);
    // The copies wrote through the generic proxy; wgmma reads through the async one.
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
  };
  int base = 0;  // the block's key tiles before this tile's
  for (int round = 0; round * static_cast<int>(gridDim.x) < num_tiles; ++round) {
    const int w = tile_of(round);
    if (w >= num_tiles) continue;
    const AttentionTile t = tile_at(w);
    const int key_tiles = key_tiles_of(t), nq = t.queries();
    const bool live_a = qa < nq, live_b = qb < nq;
    const int last_a = live_a ? t.last_key(qa) : -1, last_b = live_b ? t.last_key(qb) : -1;
    // The queries as A fragments of 16 head dims each: bf16 (already scaled), or fp32 scaled
    // and split into high halves qf and low halves ql.
    const int64_t q_a = live_a ? attention_query_row(t, a, qa) : -1;
    const int64_t q_b = live_b ? attention_query_row(t, a, qb) : -1;
    uint32_t qf[kHd / 16][4], ql[kSplit ? kHd / 16 : 1][4];
#pragma unroll
    for (int kb = 0; kb < kHd / 16; ++kb)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int64_t qr = r % 2 ? q_b : q_a;
        const int64_t at = qr + kb * 16 + (r / 2) * 8 + c2;
        if constexpr (kSplit) {
          const float2 v =
              qr >= 0 ? *reinterpret_cast<const float2*>(static_cast<const float*>(q) + at) : make_float2(0.f, 0.f);
          constexpr float kScale = 0.125f;  // 1 / sqrt(kHd)
          split2(v.x * kScale, v.y * kScale, qf[kb][r], ql[kb][r]);
        } else {
          qf[kb][r] = qr >= 0 ? *reinterpret_cast<const uint32_t*>(static_cast<const bf16*>(q) + at) : 0u;
        }
      }
    // Keys of key tile j a row sees: up to its last (causal) and the range's end.
    auto seen = [&](int last, int j) {
      const int k0 = t.key_begin + j * kKeys;
      return min(last - k0 + 1, t.key_end - k0);
    };
    using Probs = std::conditional_t<kSplit, SplitProbs<kKeys>, uint32_t[kKeys / 16][4]>;
    Running<kKeys, Probs> run;
    if (key_tiles > 0) {
      // Split: (Q_hi + Q_lo)(K_hi + K_lo) without lo.lo, the smaller terms first.
      auto score = [&](float(&acc)[kKeys / 2], const unsigned char* kt) {
        if constexpr (kSplit) {
          scores<kKeys>(acc, ql, kt);
          scores<kKeys>(acc, qf, kt + low_halves(kKeys));
        }
        scores<kKeys>(acc, qf, kt);
      };
      if constexpr (kSplit) {
        // One tile's products after the other's (see the file's head).
        for (int j = 0; j < key_tiles; ++j) {
          wait_full(base + j);
          serial_tile<kKeys>(score, run.s, run.pf, run.o, run.sm, stage(base + j), seen(last_a, j), seen(last_b, j),
                             c2);
          barrier_arrive(&empty[(base + j) % kRing]);
        }
        base += key_tiles;
      } else {
        wait_full(base);
        first_scores<kKeys>(score, run.s, run.pf, run.sm, stage(base), seen(last_a, 0), seen(last_b, 0), c2);
        auto turn = [&](int j, const Probs& cur, Probs& next) {
          const bool more = j + 1 < key_tiles;
          // The stage of key tile j - 1, whose P V the last turn waited for, goes back to the
          // producers.
          if (j > 0) barrier_arrive(&empty[(base + j - 1) % kRing]);
          if (more) wait_full(base + j + 1);
          overlapped_turn<kKeys>(score, run.s, run.o, cur, next, run.sm, stage(base + j + 1),
                                 stage(base + j) + kTileBytes, more, seen(last_a, j + 1), seen(last_b, j + 1), c2);
        };
        alternate_turns(key_tiles, run.pf, run.pk, turn);
        // The last turn waited for its P V: the last stage goes back too.
        barrier_arrive(&empty[(base + key_tiles - 1) % kRing]);
        base += key_tiles;
      }
    }

    float l_a = run.sm.l_a, l_b = run.sm.l_b;
#pragma unroll
    for (int sh = 1; sh <= 2; sh *= 2) {
      l_a += __shfl_xor_sync(0xffffffffu, l_a, sh);
      l_b += __shfl_xor_sync(0xffffffffu, l_b, sh);
    }
    // The softmax keeps its bases in log2 units; a key split's merge takes natural ones.
    auto natural = [](float m2) { return m2 == -FLT_MAX ? -FLT_MAX : m2 / kLog2e; };
    write_attention_slots<kHd>(t, a, c2, qa, live_a, natural(run.sm.m_a), l_a, qb, live_b, natural(run.sm.m_b), l_b,
                               run.o, out, lo_offset, part_o, part_ml);
  }
}

template <bool kSplit>
void launch(const void* q, const void* k_cache, const void* v_cache, int32_t num_tiles, const int32_t* tiles,
            const AttentionShape& a, const RowMeta& m, bf16* out, int64_t lo_offset, float* part_o, float* part_ml,
            cudaStream_t s) {
  using C = Config<kSplit>;
  // ptxas gives a kernel with setmaxnreg the most registers its launch bounds allow; a build
  // that gave fewer would leave the consumers waiting for registers, so it is refused instead.
  static const int launch_regs = [] {
    cudaFuncAttributes f{};
    EYRIE_CUDA_CHECK(cudaFuncGetAttributes(&f, attention_wgmma_kernel<kSplit>));
    return f.numRegs;
  }();
  if (launch_regs < kLaunchRegs)
    throw Error("attention_wgmma: the kernel was built with " + std::to_string(launch_regs) +
                " registers a thread, fewer than the " + std::to_string(kLaunchRegs) + " its warpgroups share out");
  int device = 0;
  EYRIE_CUDA_CHECK(cudaGetDevice(&device));
  allow_dynamic_smem<attention_wgmma_kernel<kSplit>>(C::kSmemBytes, device);
  // The SM count of the device this thread last launched on.
  thread_local int counted_device = -1, sm_count = 0;
  if (device != counted_device) {
    EYRIE_CUDA_CHECK(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device));
    counted_device = device;
  }
  const int32_t blocks = std::min(num_tiles, sm_count);
  attention_wgmma_kernel<kSplit><<<static_cast<unsigned>(blocks), kThreads, C::kSmemBytes, s>>>(
      q, static_cast<const bf16*>(k_cache), static_cast<const bf16*>(v_cache), a, m, tiles, num_tiles, out, lo_offset,
      part_o, part_ml);
  EYRIE_CUDA_LAUNCHED();
}

}  // namespace

bool attention_wgmma_supports(const AttentionShape& a) {
  const bool bf16 = a.bf16_products && a.bf16_cache && a.q_bf16;
  const bool split = !a.bf16_products && a.halves_cache && !a.q_bf16;
  return a.head_dim == kHd && !a.alibi && (bf16 || split);
}

bool attention_wgmma_device(int device) {
  int major = 0, minor = 0;
  EYRIE_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  EYRIE_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  return major == 9 && minor == 0;
}

void attention_wgmma(const void* q, const void* k_cache, const void* v_cache, int32_t num_tiles, const int32_t* tiles,
                     const AttentionShape& a, const RowMeta& m, bf16* out, int64_t lo_offset, float* part_o,
                     float* part_ml, cudaStream_t s) {
  if (!attention_wgmma_supports(a)) {
    auto yes = [](bool b) { return std::string(b ? "yes" : "no"); };
    throw InvalidArgument(
        "attention_wgmma: takes head dim 64 without ALiBi, and bf16 products on bf16 queries and a bf16 cache or "
        "split products on fp32 queries and a halves cache; got head dim " +
        std::to_string(a.head_dim) + ", ALiBi " + yes(a.alibi) + ", bf16 products " + yes(a.bf16_products) +
        ", bf16 queries " + yes(a.q_bf16) + ", bf16 cache " + yes(a.bf16_cache) + ", halves cache " +
        yes(a.halves_cache));
  }
  if (num_tiles <= 0) return;
  if (a.bf16_products)
    launch<false>(q, k_cache, v_cache, num_tiles, tiles, a, m, out, lo_offset, part_o, part_ml, s);
  else
    launch<true>(q, k_cache, v_cache, num_tiles, tiles, a, m, out, lo_offset, part_o, part_ml, s);
}

}  // namespace eyrie::cuda
