// Paged causal attention on warp-group MMAs (wgmma, sm_90a) for prompts on bf16 activations at
// head dim 64, in FlashAttention-3's shape for that head dim: three consumer warpgroups of 64
// query slots (192 a block) and a producer warpgroup that copies each 64-key tile of keys and
// values from the paged bf16 cache into a ring of six stages. Each consumer warpgroup overlaps
// a tile's P V product with the next tile's softmax (cuda/attention_wgmma.cuh) and holds 160
// registers a thread, handed over by the producers (setmaxnreg). The tiles, masking and outputs
// (key-split partials included) are the mma.sync kernel's (cuda/attention_mma.cu), with slots in
// threes of warpgroups instead of eight warps.
#include "cuda/attention_wgmma.hpp"

#include <cuda_bf16.h>

#include <algorithm>
#include <cfloat>
#include <string>

#include "cuda/async_copy.cuh"
#include "cuda/attention_common.cuh"
#include "cuda/attention_wgmma.cuh"
#include "cuda/check.hpp"
#include "cuda/dependent_launch.cuh"
#include "cuda/dynamic_smem.cuh"

namespace eyrie::cuda {
namespace {

using namespace warpgroup_attention;

constexpr int kKeys = 64, kGroups = 3, kRing = 6;
constexpr int kConsumers = kGroups * 128, kThreads = kConsumers + 128;
constexpr int kTileBytes = kKeys * kHd * 2;  // a K or a V tile
constexpr int kSmemBytes = kRing * 2 * kTileBytes + 2 * kRing * static_cast<int>(sizeof(uint64_t));
// A consumer thread's registers, and a producer thread's: 65,536 a block in all.
constexpr int kConsumerRegs = 160, kProducerRegs = 32;
constexpr int kProducers = kThreads - kConsumers;
// 16-byte chunks of K (and as many of V) a producer thread copies a tile.
constexpr int kCopiesPerLane = kKeys * 8 / kProducers;
static_assert(kConsumers * kConsumerRegs + kProducers * kProducerRegs == 65536, "the register file");
static_assert(kGroups * 64 == kWgmmaTileQueries, "a warpgroup takes 64 slots");

// grid: up to one block an SM, each taking one launched tile (AttentionTile) of every round of
// gridDim.x, counted from the last, which a prompt's longest tiles are; block: the consumer
// warpgroups, then the producers. Each block keeps its ring going from one tile to the next, so
// that the next tile's block-table reads and first copies overlap this tile's last products
// instead of waiting for a block to start. Slot qi of a tile is warp qi / 16's row (qi % 16) of
// its 16; lane 4g + c holds slots 16w + g and 16w + g + 8.
__global__ void __launch_bounds__(kThreads, 1)
    attention_wgmma_kernel(const bf16* q, const bf16* k_cache, const bf16* v_cache, AttentionShape a, RowMeta m,
                           const int32_t* tiles, int32_t num_tiles, bf16* out, int64_t lo_offset, float* part_o,
                           float* part_ml) {
  allow_dependents();  // the products after this kernel start reading their weights
  extern __shared__ __align__(1024) unsigned char smem[];
  auto* full = reinterpret_cast<uint64_t*>(smem + kRing * 2 * kTileBytes);
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
  auto stage = [&](int g) { return smem + (g % kRing) * 2 * kTileBytes; };

  if (warp >= kConsumers / 32) {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kProducerRegs) : "memory");
    // The producers: key tile g into stage g % kRing once every consumer is past the key tile
    // that held it. Producer warp w, lane l copies keys 16w + 8(i / 2) + l % 8, i = 0..3
    // (16-byte chunks of head dims) of each, K and V. A key's cache block comes from the lane
    // that read it from the block table (key 32(w / 2) + l of the key tile), a key tile ahead.
    // One warp reading the table where needed left its copies waiting on each entry, and the
    // consumers on the copies.
    const int pw = warp - kConsumers / 32;
    const int table_key = 32 * (pw / 2) + lane;
    const int block_shift = __ffs(a.block_size) - 1, block_mask = a.block_size - 1;
    const int64_t block_elems = static_cast<int64_t>(a.num_kv_heads) * a.block_size * kHd;
    int g = 0;
    for (int round = 0; round * static_cast<int>(gridDim.x) < num_tiles; ++round) {
      const int w = tile_of(round);
      if (w >= num_tiles) continue;
      const AttentionTile t = tile_at(w);
      const int key_tiles = key_tiles_of(t);
      const int* table = m.block_tables + static_cast<int64_t>(m.seq[t.r0]) * a.max_blocks_per_seq;
      const int64_t head_elems = static_cast<int64_t>(t.kv) * a.block_size * kHd;
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
          const int64_t at = valid ? block * block_elems + head_elems + (p & block_mask) * kHd + d : 0;
          copy_async16(kt + e * 16, k_cache + at, valid);
          copy_async16(kt + kTileBytes + e * 16, v_cache + at, valid);
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
    // The queries (bf16, already scaled) as A fragments of 16 head dims each.
    const int64_t q_a = live_a ? attention_query_row(t, a, qa) : -1;
    const int64_t q_b = live_b ? attention_query_row(t, a, qb) : -1;
    uint32_t qf[kHd / 16][4];
#pragma unroll
    for (int kb = 0; kb < kHd / 16; ++kb)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int64_t qr = r % 2 ? q_b : q_a;
        qf[kb][r] = qr >= 0 ? *reinterpret_cast<const uint32_t*>(q + qr + kb * 16 + (r / 2) * 8 + c2) : 0u;
      }
    // Keys of key tile j a row sees: up to its last (causal) and the range's end.
    auto seen = [&](int last, int j) {
      const int k0 = t.key_begin + j * kKeys;
      return min(last - k0 + 1, t.key_end - k0);
    };
    Running<kKeys> run;
    if (key_tiles > 0) {
      auto score = [&](float(&acc)[kKeys / 2], const unsigned char* kt) { scores<kKeys>(acc, qf, kt); };
      wait_full(base);
      first_scores<kKeys>(score, run.s, run.pf, run.sm, stage(base), seen(last_a, 0), seen(last_b, 0), c2);
      auto turn = [&](int j, const uint32_t(&cur)[kKeys / 16][4], uint32_t(&next)[kKeys / 16][4]) {
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

}  // namespace

bool attention_wgmma_supports(const AttentionShape& a) {
  return a.head_dim == kHd && a.bf16_products && a.bf16_cache && a.q_bf16 && !a.alibi;
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
        "attention_wgmma: takes head dim 64, bf16 products, bf16 queries, a bf16 cache and no ALiBi; "
        "got head dim " +
        std::to_string(a.head_dim) + ", bf16 products " + yes(a.bf16_products) + ", bf16 queries " + yes(a.q_bf16) +
        ", bf16 cache " + yes(a.bf16_cache) + ", ALiBi " + yes(a.alibi));
  }
  if (num_tiles <= 0) return;
  allow_dynamic_smem<attention_wgmma_kernel>(kSmemBytes);
  // The SM count of the device this thread last launched on.
  thread_local int counted_device = -1, sm_count = 0;
  int device = 0;
  EYRIE_CUDA_CHECK(cudaGetDevice(&device));
  if (device != counted_device) {
    EYRIE_CUDA_CHECK(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device));
    counted_device = device;
  }
  const int32_t blocks = std::min(num_tiles, sm_count);
  attention_wgmma_kernel<<<static_cast<unsigned>(blocks), kThreads, kSmemBytes, s>>>(
      static_cast<const bf16*>(q), static_cast<const bf16*>(k_cache), static_cast<const bf16*>(v_cache), a, m, tiles,
      num_tiles, out, lo_offset, part_o, part_ml);
  EYRIE_CUDA_LAUNCHED();
}

}  // namespace eyrie::cuda
