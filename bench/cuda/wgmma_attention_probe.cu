// Prototypes of the prefill attention on warp-group MMAs (wgmma): 128 bf16 queries (two
// warpgroups of 64) over a dense run of bf16 keys and values, online softmax, each checked against
// a float64 attention on the host. The scores and the output accumulate in wgmma's registers,
// whose layout per warp is mma.sync's m16n8 layout, so the softmax and the probabilities' packing
// are the tensor-core kernel's (cuda/attention_mma.cu). Key and value tiles sit in shared memory
// as 8x8 core matrices, with the descriptor offsets bench_wgmma_probe found (keys K-major: LBO
// 128, SBO 1024; values N-major with the transpose bit: LBO 1024, SBO 128).
//
// Variants: key tiles of 64 or 128; serial (each product waited for before the next step) or
// overlapped (a tile's P V product runs while the next tile's scores go through the softmax);
// a ring of stages with barriers; warp-specialized (a producer warp copies, two consumer
// warpgroups multiply and overlap their softmax with their products), and in FlashAttention-3's
// shape (three consumer warpgroups, 192 queries a block, registers moved to them from a producer
// warpgroup with setmaxnreg), with or without its ping-pong (the consumer warpgroups issuing
// their products in turn).
// Timed: the work of one Falcon-7B layer's 2048-token prefill attention, 1,136 blocks of 128
// queries (758 of 192) over 2,048 down to 64 keys, longest first (a causal prefill's tiles in
// the engine's order), for comparison with the engine's mma.sync kernel (no paging here). Free-
// running clocks differ from a prefill's, which runs at the power limit: compare with the
// engine's kernel under ncu, which locks both to the same clock (EYRIE_PROBE_ONLY below).
//   bench_wgmma_attention_probe [keys ...]
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <random>
#include <vector>

#include "bench/cuda/wgmma.cuh"
#include "cuda/attention_wgmma.cuh"

namespace {

using namespace eyrie::bench;
using namespace eyrie::cuda::warpgroup_attention;

using bf16 = __nv_bfloat16;
constexpr int kQueries = 128, kThreads = 256, kStages = 3;

// A causal prefill's key counts, 64 to 2,048 over the grid, longest first as the engine runs its
// tiles (so that the last wave is not held up by a long block).
__device__ int triangle_keys() {
  return (32 - static_cast<int>(blockIdx.x * 32 / gridDim.x)) * 64;
}

// This thread's share of the A fragments of the queries' rows row_a and row_b.
__device__ void load_queries(const bf16* q, uint32_t (&qf)[kHd / 16][4], int row_a, int row_b, int c2) {
  auto pair = [&](int row, int d) { return *reinterpret_cast<const uint32_t*>(q + row * kHd + d); };
#pragma unroll
  for (int kb = 0; kb < kHd / 16; ++kb) {
    qf[kb][0] = pair(row_a, kb * 16 + c2);
    qf[kb][1] = pair(row_b, kb * 16 + c2);
    qf[kb][2] = pair(row_a, kb * 16 + 8 + c2);
    qf[kb][3] = pair(row_b, kb * 16 + 8 + c2);
  }
}

// Keys k0.. k0 + kN - 1 and their values into a stage (K tile, then V tile), zeros past `keys`.
// Consecutive threads fill consecutive 16 bytes of a tile: chunk e is key (e / 64) * 8 + e % 8,
// head dims ((e / 8) % 8) * 8 onwards; a warp reads eight keys' 64-byte halves.
template <int kN>
__device__ void copy_tile(unsigned char* kt, const bf16* k, const bf16* v, int k0, int keys) {
  constexpr int kTileBytes = kN * kHd * 2;
#pragma unroll
  for (int i = 0; i < kN * 8 / kThreads; ++i) {
    const int e = threadIdx.x + i * kThreads;
    const int kk = (e / 64) * 8 + e % 8, d = ((e / 8) % 8) * 8;
    const bool valid = k0 + kk < keys;
    const int64_t at = valid ? static_cast<int64_t>(k0 + kk) * kHd + d : 0;
    copy_async16(kt + e * 16, k + at, valid);
    copy_async16(kt + kTileBytes + e * 16, v + at, valid);
  }
}

// Rows row_a and row_b of the output: the running sums over the rows' softmax masses.
__device__ void store_output(const float (&o)[32], const Softmax& sm, float* out, int row_a, int row_b, int c2) {
  float l_a = sm.l_a, l_b = sm.l_b;
#pragma unroll
  for (int sh = 1; sh <= 2; sh *= 2) {
    l_a += __shfl_xor_sync(0xffffffffu, l_a, sh);
    l_b += __shfl_xor_sync(0xffffffffu, l_b, sh);
  }
  // One reciprocal a row and a pair of columns a store, as the engine's kernel writes: a
  // division per value took the IEEE slow path and a fifth of the FA3 shape's samples.
  const float inv_a = 1.f / l_a, inv_b = 1.f / l_b;
#pragma unroll
  for (int j = 0; j < kHd / 8; ++j) {
    const int col = 8 * j + c2;
    *reinterpret_cast<float2*>(out + row_a * kHd + col) = make_float2(o[4 * j] * inv_a, o[4 * j + 1] * inv_a);
    *reinterpret_cast<float2*>(out + row_b * kHd + col) = make_float2(o[4 * j + 2] * inv_b, o[4 * j + 3] * inv_b);
  }
}

// q [128][64] bf16 already scaled by 1/sqrt(64); k, v [keys][64] bf16; out [128][64].
// With triangle, block b runs over triangle_keys() and writes its own output rows.
// With kQSmem the queries sit in shared memory (after the stages, K-major like the key tiles)
// instead of registers: 16 fewer registers a thread.
template <int kN, bool kOverlap, int kMinBlocks = 1, int kAhead = 1, bool kQSmem = false>
__global__ void __launch_bounds__(kThreads, kMinBlocks)
    attention(const bf16* q, const bf16* k, const bf16* v, int keys, float* out, bool triangle) {
  constexpr int kTileBytes = kN * kHd * 2;  // one K or V tile
  if (triangle) {
    keys = triangle_keys();
    out += static_cast<int64_t>(blockIdx.x) * kQueries * kHd;
  }
  // kStages stages of a K tile and a V tile, each as 8x8 core matrices: key kk, head dims
  // d..d+7 at (kk / 8) * 1024 + (d / 8) * 128 + (kk % 8) * 16.
  extern __shared__ __align__(1024) unsigned char smem[];
  const int t = threadIdx.x, warp = t / 32, lane = t % 32, g = lane / 4, c2 = (lane % 4) * 2;
  const int row_a = warp * 16 + g, row_b = row_a + 8;

  uint32_t qf[kHd / 16][4];
  unsigned char* const sq = smem + kStages * 2 * kTileBytes;
  if constexpr (kQSmem) {
    static_assert(kN == 64, "queries in shared memory with 64-key tiles only");
    for (int e = t; e < kQueries * 8; e += kThreads) {
      const int m = (e / 64) * 8 + e % 8, d = ((e / 8) % 8) * 8;
      copy_async16(sq + e * 16, q + m * kHd + d, true);
    }
  } else {
    load_queries(q, qf, row_a, row_b, c2);
  }
  // This warpgroup's 64 queries, for kQSmem.
  const unsigned char* const sq_wg = sq + (warp / 4) * 8192;
  auto score = [&](float(&acc)[kN / 2], const unsigned char* kt) {
    if constexpr (kQSmem) {
#pragma unroll
      for (int kb = 0; kb < kHd / 16; ++kb)
        wgmma_n64_ss<0>(reinterpret_cast<float(&)[32]>(acc), descriptor(sq_wg + kb * 256, 128, 1024),
                        descriptor(kt + kb * 256, 128, 1024));
    } else {
      scores<kN>(acc, qf, kt);
    }
  };
  const int tiles = (keys + kN - 1) / kN;
  auto fetch = [&](int tile) {
    copy_tile<kN>(smem + (tile % kStages) * 2 * kTileBytes, k, v, tile * kN, keys);
    copy_async_commit();
  };
  auto tile_k = [&](int tile) { return smem + (tile % kStages) * 2 * kTileBytes; };

  Running<kN> run;
  fetch(0);
  if constexpr (!kOverlap) {
    // Tiles are asked for kAhead ahead: tile j + kAhead's copy refills the stage of tile
    // j + kAhead - kStages, which every warpgroup is past at tile j's barrier.
    static_assert(kAhead >= 1 && kAhead < kStages, "prefetch distance");
    for (int a = 1; a < kAhead; ++a)
      if (a < tiles) fetch(a);
    for (int j = 0; j < tiles; ++j) {
      if (kAhead == 2 && j + 1 < tiles)
        copy_async_wait<1>();
      else
        copy_async_wait<0>();
      // cp.async wrote through the generic proxy; wgmma reads through the async one.
      asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
      __syncthreads();
      if (j + kAhead < tiles) fetch(j + kAhead);
      serial_tile<kN>(score, run.s, run.pf, run.o, run.sm, tile_k(j), keys - j * kN, keys - j * kN, c2);
    }
  } else {
    if (tiles > 1) fetch(1);
    if (tiles > 1)
      copy_async_wait<1>();
    else
      copy_async_wait<0>();
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    __syncthreads();
    first_scores<kN>(score, run.s, run.pf, run.sm, tile_k(0), keys, keys, c2);
    // Tile j's product with cur while tile j + 1's probabilities go into next; the loop runs
    // two tiles a turn with the arrays' roles swapped, so that no register a pending wgmma
    // reads is written.
    auto turn = [&](int j, const uint32_t(&cur)[kN / 16][4], uint32_t(&next)[kN / 16][4]) {
      const bool more = j + 1 < tiles;
      if (more) {
        copy_async_wait<0>();
        asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
        // Past this barrier every warpgroup is done with tile j - 1, whose stage the fetch of
        // tile j + 2 refills.
        __syncthreads();
        if (j + 2 < tiles) fetch(j + 2);
      }
      overlapped_turn<kN>(score, run.s, run.o, cur, next, run.sm, tile_k(j + 1), tile_k(j) + kTileBytes, more,
                          keys - (j + 1) * kN, keys - (j + 1) * kN, c2);
    };
    alternate_turns(tiles, run.pf, run.pk, turn);
  }
  store_output(run.o, run.sm, out, row_a, row_b, c2);
}

// The serial variant with the warpgroups decoupled: stages of a ring, each with a barrier that
// completes when its copies have landed and one that completes when every thread is done with
// it, in place of a block-wide barrier a tile. A warpgroup may run up to kRing - kAhead - 1
// tiles ahead of the other, so that one's softmax can overlap the other's products.
template <int kN, int kRing, int kAhead>
__global__ void __launch_bounds__(kThreads)
    attention_ring(const bf16* q, const bf16* k, const bf16* v, int keys, float* out, bool triangle) {
  constexpr int kTileBytes = kN * kHd * 2;
  if (triangle) {
    keys = triangle_keys();
    out += static_cast<int64_t>(blockIdx.x) * kQueries * kHd;
  }
  extern __shared__ __align__(1024) unsigned char smem[];
  auto* full = reinterpret_cast<uint64_t*>(smem + kRing * 2 * kTileBytes);
  uint64_t* empty = full + kRing;
  const int t = threadIdx.x, warp = t / 32, lane = t % 32, g = lane / 4, c2 = (lane % 4) * 2;
  const int row_a = warp * 16 + g, row_b = row_a + 8;
  if (t == 0) {
    for (int i = 0; i < kRing; ++i) {
      barrier_init(&full[i], kThreads);
      barrier_init(&empty[i], kThreads);
    }
  }
  __syncthreads();
  uint32_t qf[kHd / 16][4];
  load_queries(q, qf, row_a, row_b, c2);
  const int tiles = (keys + kN - 1) / kN;
  auto tile_k = [&](int tile) { return smem + (tile % kRing) * 2 * kTileBytes; };
  auto produce = [&](int tile) {
    const int st = tile % kRing;
    if (tile >= kRing) barrier_wait(&empty[st], ((tile / kRing) - 1) & 1);
    copy_tile<kN>(tile_k(tile), k, v, tile * kN, keys);
    barrier_arrive_on_copies(&full[st]);
  };
  Running<kN> run;
  for (int a = 0; a < kAhead; ++a)
    if (a < tiles) produce(a);
  for (int j = 0; j < tiles; ++j) {
    if (j + kAhead < tiles) produce(j + kAhead);
    barrier_wait(&full[j % kRing], (j / kRing) & 1);
    // The copies wrote through the generic proxy; wgmma reads through the async one.
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    serial_tile<kN>([&](float(&acc)[kN / 2], const unsigned char* kt) { scores<kN>(acc, qf, kt); }, run.s, run.pf,
                    run.o, run.sm, tile_k(j), keys - j * kN, keys - j * kN, c2);
    barrier_arrive(&empty[j % kRing]);
  }
  store_output(run.o, run.sm, out, row_a, row_b, c2);
}

// Warp-specialized: one producer warp copies every tile into a ring of stages, and the two
// consumer warpgroups only multiply and run the softmax. Each consumer warpgroup overlaps its
// own products with its softmax: tile j + 1's scores and tile j's P V are issued together, and
// tile j + 1's softmax runs while P V is on the tensor cores. One block an SM at up to 224
// registers. Stage s is free again once all consumer threads are past P V of its tile.
// With kRegs, FlashAttention-3's shape for head dim 64: kGroups consumer warpgroups (three: 192
// queries a block) and a whole producer warpgroup, which hands registers to the consumers with
// setmaxnreg (kRegs each; 24 left to the producer).
constexpr int kSpecThreads = kThreads + 32;
template <int kGroups, int kRegs>
constexpr int spec_threads() {
  return kGroups * 128 + (kRegs ? 128 : 32);
}

template <int kN>
__device__ void copy_tile_by_warp(unsigned char* kt, const bf16* k, const bf16* v, int k0, int keys, int lane) {
  constexpr int kTileBytes = kN * kHd * 2;
#pragma unroll 4
  for (int i = 0; i < kN * 8 / 32; ++i) {
    const int e = lane + i * 32;
    const int kk = (e / 64) * 8 + e % 8, d = ((e / 8) % 8) * 8;
    const bool valid = k0 + kk < keys;
    const int64_t at = valid ? static_cast<int64_t>(k0 + kk) * kHd + d : 0;
    copy_async16(kt + e * 16, k + at, valid);
    copy_async16(kt + kTileBytes + e * 16, v + at, valid);
  }
}

// The consumer warpgroups' turns on the tensor cores, FlashAttention-3's ping-pong: warpgroup g
// issues a turn's products once warpgroup g - 1 has issued its own (named barrier 1 + g), so the
// tensor cores take the groups' products one group after another while the others run their
// softmax. Group 0's first turn waits for nobody, and the last group's last turn hands over to
// nobody.
template <int kGroups>
struct TurnGate {
  int group, turn, last;
  __device__ void wait() const {
    if (group > 0 || turn > 0) asm volatile("bar.sync %0, 256;\n" ::"r"(1 + group) : "memory");
  }
  __device__ void pass() const {
    if (group < kGroups - 1 || turn < last)
      asm volatile("bar.arrive %0, 256;\n" ::"r"(1 + (group + 1) % kGroups) : "memory");
  }
};

template <int kN, int kRing, int kGroups = 2, int kRegs = 0, bool kPingPong = false>
__global__ void __launch_bounds__(spec_threads<kGroups, kRegs>(), 1)
    attention_specialized(const bf16* q, const bf16* k, const bf16* v, int keys, float* out, bool triangle) {
  constexpr int kTileBytes = kN * kHd * 2;
  constexpr int kConsumers = kGroups * 128;
  if (triangle) {
    keys = triangle_keys();
    out += static_cast<int64_t>(blockIdx.x) * kGroups * 64 * kHd;
  }
  extern __shared__ __align__(1024) unsigned char smem[];
  auto* full = reinterpret_cast<uint64_t*>(smem + kRing * 2 * kTileBytes);
  uint64_t* empty = full + kRing;
  const int t = threadIdx.x, warp = t / 32, lane = t % 32, g = lane / 4, c2 = (lane % 4) * 2;
  if (t == 0) {
    for (int i = 0; i < kRing; ++i) {
      barrier_init(&full[i], 32);
      barrier_init(&empty[i], kConsumers);
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();
  const int tiles = (keys + kN - 1) / kN;
  auto tile_k = [&](int tile) { return smem + (tile % kRing) * 2 * kTileBytes; };
  if (warp >= kConsumers / 32) {
    if constexpr (kRegs > 0) {
      asm volatile("setmaxnreg.dec.sync.aligned.u32 24;\n" ::: "memory");
      if (warp != kConsumers / 32) return;
    }
    for (int j = 0; j < tiles; ++j) {
      const int st = j % kRing;
      if (j >= kRing) barrier_wait(&empty[st], ((j / kRing) - 1) & 1);
      copy_tile_by_warp<kN>(tile_k(j), k, v, j * kN, keys, lane);
      barrier_arrive_on_copies(&full[st]);
    }
    return;
  }
  if constexpr (kRegs > 0) asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kRegs) : "memory");
  const int row_a = warp * 16 + g, row_b = row_a + 8;
  uint32_t qf[kHd / 16][4];
  // The probe's 128 query rows, again for the queries past them.
  load_queries(q, qf, row_a % kQueries, row_b % kQueries, c2);
  auto wait_full = [&](int j) {
    barrier_wait(&full[j % kRing], (j / kRing) & 1);
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
  };
  Running<kN> run;
  auto score = [&](float(&acc)[kN / 2], const unsigned char* kt) { scores<kN>(acc, qf, kt); };
  wait_full(0);
  first_scores<kN>(score, run.s, run.pf, run.sm, tile_k(0), keys, keys, c2);
  auto turn = [&](int j, const uint32_t(&cur)[kN / 16][4], uint32_t(&next)[kN / 16][4]) {
    const bool more = j + 1 < tiles;
    // The stage of tile j - 1, whose P V the last turn waited for, goes back to the producer.
    if (j > 0) barrier_arrive(&empty[(j - 1) % kRing]);
    if (more) wait_full(j + 1);
    if constexpr (kPingPong)
      overlapped_turn<kN>(score, run.s, run.o, cur, next, run.sm, tile_k(j + 1), tile_k(j) + kTileBytes, more,
                          keys - (j + 1) * kN, keys - (j + 1) * kN, c2, TurnGate<kGroups>{warp / 4, j, tiles - 1});
    else
      overlapped_turn<kN>(score, run.s, run.o, cur, next, run.sm, tile_k(j + 1), tile_k(j) + kTileBytes, more,
                          keys - (j + 1) * kN, keys - (j + 1) * kN, c2);
  };
  alternate_turns(tiles, run.pf, run.pk, turn);
  store_output(run.o, run.sm, out, row_a, row_b, c2);
}

using Kernel = void (*)(const bf16*, const bf16*, const bf16*, int, float*, bool);

struct Variant {
  const char* name;
  Kernel kernel;
  int key_tile;
  int stages = kStages;
  int extra_bytes = 0;  // the ring's barriers
  int threads = kThreads;
  int queries = kQueries;  // a block's

  int smem_bytes() const { return stages * 2 * key_tile * kHd * 2 + extra_bytes; }
};

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> key_counts;
  for (int i = 1; i < argc; ++i) key_counts.push_back(std::atoi(argv[i]));
  if (key_counts.empty()) key_counts = {64, 100, 512, 2048};
  const int max_keys = *std::max_element(key_counts.begin(), key_counts.end());
  for (int keys : key_counts)
    if (keys <= 0) {
      std::fprintf(stderr, "key counts must be positive, not %d\n", keys);
      return 2;
    }
  const Variant variants[] = {
      {"serial, 64-key tiles", attention<64, false>, 64},
      {"serial, 64-key, 2 ahead", attention<64, false, 1, 2>, 64},
      {"serial, 128-key tiles", attention<128, false>, 128},
      {"overlapped, 64-key tiles", attention<64, true>, 64},
      {"overlapped, 64-key, 2/SM", attention<64, true, 2>, 64},
      {"overlapped, 128-key tiles", attention<128, true>, 128},
      {"overlapped, Q smem, 2/SM", attention<64, true, 2, 1, true>, 64, kStages, 16384},
      {"serial, Q smem, 2 ahead", attention<64, false, 2, 2, true>, 64, kStages, 16384},
      {"ring of 4, 64-key, 2 ahead", attention_ring<64, 4, 2>, 64, 4, 64},
      {"ring of 5, 64-key, 2 ahead", attention_ring<64, 5, 2>, 64, 5, 80},
      {"ring of 3, 128-key, 1 ahead", attention_ring<128, 3, 1>, 128, 3, 48},
      {"specialized, 128-key, ring 4", attention_specialized<128, 4>, 128, 4, 64, kSpecThreads},
      {"specialized, 128-key, ring 3", attention_specialized<128, 3>, 128, 3, 48, kSpecThreads},
      {"specialized, 64-key, ring 6", attention_specialized<64, 6>, 64, 6, 96, kSpecThreads},
      {"FA3 shape, 64-key, ring 6", attention_specialized<64, 6, 3, 160>, 64, 6, 96, spec_threads<3, 160>(), 192},
      {"FA3 shape, 64-key, ring 4", attention_specialized<64, 4, 3, 160>, 64, 4, 64, spec_threads<3, 160>(), 192},
      {"FA3 shape, ping-pong, ring 4", attention_specialized<64, 4, 3, 160, true>, 64, 4, 64, spec_threads<3, 160>(),
       192},
      {"FA3 shape, ping-pong, ring 6", attention_specialized<64, 6, 3, 160, true>, 64, 6, 96, spec_threads<3, 160>(),
       192},
  };
  for (const Variant& var : variants) {
    const int bytes = var.smem_bytes();
    check("smem", cudaFuncSetAttribute(var.kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
    cudaFuncAttributes attr{};
    check("attributes", cudaFuncGetAttributes(&attr, var.kernel));
    int blocks = 0;
    check("occupancy", cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, var.kernel, var.threads, bytes));
    std::printf("%-28s %d registers, %d local bytes, %d blocks an SM\n", var.name, attr.numRegs,
                static_cast<int>(attr.localSizeBytes), blocks);
  }

  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  const float scale = 1.f / std::sqrt(static_cast<float>(kHd));
  std::vector<bf16> q(kQueries * kHd), k(max_keys * kHd), v(max_keys * kHd);
  for (auto& x : q) x = __float2bfloat16(2.f * u(rng) * scale);
  for (auto& x : k) x = __float2bfloat16(2.f * u(rng));
  for (auto& x : v) x = __float2bfloat16(u(rng));
  bf16 *dq, *dk, *dv;
  float* dout;
  check("malloc", cudaMalloc(&dq, q.size() * 2));
  check("malloc", cudaMalloc(&dk, k.size() * 2));
  check("malloc", cudaMalloc(&dv, v.size() * 2));
  constexpr int kMostQueries = 192;  // a block's, over the variants
  check("malloc", cudaMalloc(&dout, kMostQueries * kHd * 4));
  check("copy", cudaMemcpy(dq, q.data(), q.size() * 2, cudaMemcpyHostToDevice));
  check("copy", cudaMemcpy(dk, k.data(), k.size() * 2, cudaMemcpyHostToDevice));
  check("copy", cudaMemcpy(dv, v.data(), v.size() * 2, cudaMemcpyHostToDevice));
  for (int keys : key_counts) {
    if (std::getenv("EYRIE_PROBE_ONLY")) break;
    std::vector<double> want(kQueries * kHd);
    for (int r = 0; r < kQueries; ++r) {
      std::vector<double> w(keys);
      double mx = -1e300, den = 0;
      for (int p = 0; p < keys; ++p) {
        double dot = 0;
        for (int d = 0; d < kHd; ++d)
          dot += static_cast<double>(__bfloat162float(q[r * kHd + d])) * __bfloat162float(k[p * kHd + d]);
        mx = std::fmax(mx, w[p] = dot);
      }
      for (auto& x : w) den += (x = std::exp(x - mx));
      for (int d = 0; d < kHd; ++d) {
        double acc = 0;
        for (int p = 0; p < keys; ++p) acc += w[p] * __bfloat162float(v[p * kHd + d]);
        want[r * kHd + d] = acc / den;
      }
    }
    for (const Variant& var : variants) {
      // Query rows past the probe's 128 repeat them (see attention_specialized).
      std::vector<float> got(static_cast<std::size_t>(var.queries) * kHd);
      check("clear", cudaMemset(dout, 0, got.size() * 4));
      var.kernel<<<1, var.threads, var.smem_bytes()>>>(dq, dk, dv, keys, dout, false);
      check(var.name, cudaGetLastError());
      check(var.name, cudaDeviceSynchronize());
      check("copy back", cudaMemcpy(got.data(), dout, got.size() * 4, cudaMemcpyDeviceToHost));
      double worst = 0;
      for (std::size_t i = 0; i < got.size(); ++i) worst = std::fmax(worst, std::fabs(got[i] - want[i % want.size()]));
      std::printf("%-28s %5d keys: largest error %.3g\n", var.name, keys, worst);
    }
  }

  constexpr int kBlocks = 1136, kMaxKeys = 32 * 64;
  bf16 *tk, *tv;
  float* tout;
  check("malloc", cudaMalloc(&tk, kMaxKeys * kHd * 2));
  check("malloc", cudaMalloc(&tv, kMaxKeys * kHd * 2));
  // The same query rows over every variant: blocks of more queries come fewer.
  auto blocks_of = [&](const Variant& var) { return (kBlocks * kQueries + var.queries - 1) / var.queries; };
  check("malloc", cudaMalloc(&tout, static_cast<size_t>(kBlocks + 1) * kQueries * kHd * 4));
  check("clear", cudaMemset(tk, 0, kMaxKeys * kHd * 2));
  check("clear", cudaMemset(tv, 0, kMaxKeys * kHd * 2));
  cudaEvent_t start, stop;
  check("event", cudaEventCreate(&start));
  check("event", cudaEventCreate(&stop));
  // EYRIE_PROBE_ONLY=i times variant i alone, once (for a profiler).
  const char* only = std::getenv("EYRIE_PROBE_ONLY");
  const int only_index = only ? std::atoi(only) : -1;
  for (int round = 0; round < (only ? 1 : 2); ++round)
    for (int vi = 0; vi < static_cast<int>(std::size(variants)); ++vi) {
      const Variant& var = variants[vi];
      if (only && vi != only_index) continue;
      std::vector<float> times;
      for (int rep = 0; rep < (only ? 3 : 12); ++rep) {
        check("event", cudaEventRecord(start));
        var.kernel<<<blocks_of(var), var.threads, var.smem_bytes()>>>(dq, tk, tv, kMaxKeys, tout, true);
        check("event", cudaEventRecord(stop));
        check(var.name, cudaEventSynchronize(stop));
        float ms = 0;
        check("event", cudaEventElapsedTime(&ms, start, stop));
        if (rep >= (only ? 0 : 2)) times.push_back(ms * 1e3f);
      }
      std::sort(times.begin(), times.end());
      std::printf("%-28s a layer's prefill work (%d blocks): median %.1f us, best %.1f us\n", var.name, blocks_of(var),
                  times[times.size() / 2], times.front());
    }
  return 0;
}
