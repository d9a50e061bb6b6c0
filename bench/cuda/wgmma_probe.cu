// Which shared-memory layouts Hopper's warp-group MMA (wgmma) reads as documented: one 64x64x64
// bf16 product D = A B^T per variant, against the host's, on small integers (exact in bf16 and
// fp32). For a wgmma attention kernel: Q and K tiles K-major in shared memory, the
// probabilities from registers, V N-major (its rows are keys, head dims contiguous) with the
// transpose bit. Each variant prints its largest error; 0 means the layout is the one to use.
// An N-major B read with LBO 128 and SBO 1024 (the K-major offsets) reaches past the tile: on the
// H200 it faulted with an illegal address, which ends the process, so it is not among the cases.
//   bench_wgmma_probe
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "bench/cuda/wgmma.cuh"

namespace {

using namespace eyrie::bench;

using bf16 = __nv_bfloat16;
constexpr int kM = 64, kN = 64, kK = 64;

// Byte offset of element (r, c) of a matrix stored as 8x8 core matrices (8 rows of 16 bytes),
// c the contiguous direction: core (r/8, c/8) at r/8 * row_step + c/8 * col_step.
__device__ int core_offset(int r, int c, int row_step, int col_step) {
  return (r / 8) * row_step + (c / 8) * col_step + (r % 8) * 16 + (c % 8) * 2;
}

struct Variant {
  bool a_in_registers;
  bool b_n_major;           // B stored [k][n] (n contiguous) and read with the transpose bit
  uint32_t b_lbo, b_sbo;    // the descriptor's offsets for B
};

// A [m][k] and Bt [n][k] (B^T, k contiguous) or B [k][n] (b_n_major) in global memory; one
// warpgroup; out [m][n].
template <bool kRegA, int kTransB>
__global__ void probe(const bf16* a, const bf16* b, Variant v, float* out) {
  __shared__ __align__(128) unsigned char sa[kM * kK * 2];
  __shared__ __align__(128) unsigned char sb[kN * kK * 2];
  const int t = threadIdx.x;
  // A K-major: core (m/8, k/8) at m/8 * 1024 + k/8 * 128 (LBO 128, SBO 1024).
  for (int e = t; e < kM * kK; e += blockDim.x) {
    const int m = e / kK, k = e % kK;
    *reinterpret_cast<bf16*>(sa + core_offset(m, k, 1024, 128)) = a[e];
  }
  // B: K-major (rows n, k contiguous) or N-major (rows k, n contiguous), cores 1024 apart along
  // the rows' direction and 128 along the contiguous one.
  for (int e = t; e < kN * kK; e += blockDim.x) {
    const int r = e / 64, c = e % 64;
    *reinterpret_cast<bf16*>(sb + core_offset(r, c, 1024, 128)) = b[e];
  }
  __syncthreads();
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
  float d[32];
#pragma unroll
  for (float& x : d) x = 0.f;
  const int warp = t / 32, lane = t % 32, g = lane / 4, c2 = (lane % 4) * 2;
  // Every A fragment in registers before the first MMA: registers a pending wgmma reads must not
  // be written until it is waited for.
  uint32_t ar[kK / 16][4];
  if constexpr (kRegA) {
    const int row = warp * 16 + g;
    auto pair = [&](int r, int k) {
      const bf16 lo = a[r * kK + k], hi = a[r * kK + k + 1];
      return static_cast<uint32_t>(__bfloat16_as_ushort(lo)) | static_cast<uint32_t>(__bfloat16_as_ushort(hi)) << 16;
    };
#pragma unroll
    for (int kb = 0; kb < kK / 16; ++kb) {
      ar[kb][0] = pair(row, kb * 16 + c2);
      ar[kb][1] = pair(row + 8, kb * 16 + c2);
      ar[kb][2] = pair(row, kb * 16 + 8 + c2);
      ar[kb][3] = pair(row + 8, kb * 16 + 8 + c2);
    }
  }
  wgmma_fence();
#pragma unroll
  for (int kb = 0; kb < kK / 16; ++kb) {
    // K-direction step of 16 elements: two cores along K for a K-major operand; for an N-major
    // B, 16 rows, i.e. two cores along its rows.
    const uint64_t db = descriptor(sb + (v.b_n_major ? kb * 2 * 1024 : kb * 2 * 128), v.b_lbo, v.b_sbo);
    if constexpr (kRegA) {
      wgmma_n64<kTransB>(d, ar[kb], db);
    } else {
      wgmma_n64_ss<kTransB>(d, descriptor(sa + kb * 2 * 128, 128, 1024), db);
    }
  }
  wgmma_commit();
  wgmma_wait<0>();
  // The accumulator layout: per 8 columns j, (row, col), (row, col + 1), (row + 8, col), (row + 8, col + 1).
#pragma unroll
  for (int i = 0; i < 32; ++i) {
    const int row = warp * 16 + g + 8 * ((i / 2) % 2), col = (i / 4) * 8 + c2 + i % 2;
    out[row * kN + col] = d[i];
  }
}

}  // namespace

int main() {
  std::vector<bf16> a(kM * kK), bt(kN * kK), bn(kK * kN);
  std::vector<double> want(kM * kN, 0.0);
  // Small integers: every product and sum exact.
  for (int i = 0; i < kM * kK; ++i) a[i] = __float2bfloat16(static_cast<float>((i * 7 + 3) % 9 - 4));
  for (int n = 0; n < kN; ++n)
    for (int k = 0; k < kK; ++k) {
      const float x = static_cast<float>((n * 5 + k * 3 + 1) % 7 - 3);
      bt[n * kK + k] = __float2bfloat16(x);
      bn[k * kN + n] = __float2bfloat16(x);
    }
  for (int m = 0; m < kM; ++m)
    for (int n = 0; n < kN; ++n)
      for (int k = 0; k < kK; ++k)
        want[m * kN + n] += static_cast<double>(__bfloat162float(a[m * kK + k])) * __bfloat162float(bt[n * kK + k]);
  bf16 *da, *dbt, *dbn;
  float* dout;
  check("malloc", cudaMalloc(&da, a.size() * 2));
  check("malloc", cudaMalloc(&dbt, bt.size() * 2));
  check("malloc", cudaMalloc(&dbn, bn.size() * 2));
  check("malloc", cudaMalloc(&dout, want.size() * 4));
  check("copy", cudaMemcpy(da, a.data(), a.size() * 2, cudaMemcpyHostToDevice));
  check("copy", cudaMemcpy(dbt, bt.data(), bt.size() * 2, cudaMemcpyHostToDevice));
  check("copy", cudaMemcpy(dbn, bn.data(), bn.size() * 2, cudaMemcpyHostToDevice));
  struct Case {
    const char* name;
    Variant v;
  };
  const Case cases[] = {
      {"A smem, B K-major, LBO 128 SBO 1024", {false, false, 128, 1024}},
      {"A smem, B K-major, LBO 1024 SBO 128", {false, false, 1024, 128}},
      {"A regs, B K-major, LBO 128 SBO 1024", {true, false, 128, 1024}},
      {"A regs, B N-major, LBO 1024 SBO 128", {true, true, 1024, 128}},
      {"A smem, B N-major, LBO 1024 SBO 128", {false, true, 1024, 128}},
  };
  std::vector<float> got(want.size());
  for (const auto& c : cases) {
    check("clear", cudaMemset(dout, 0, want.size() * 4));
    const bf16* b = c.v.b_n_major ? dbn : dbt;
    if (c.v.a_in_registers)
      c.v.b_n_major ? probe<true, 1><<<1, 128>>>(da, b, c.v, dout) : probe<true, 0><<<1, 128>>>(da, b, c.v, dout);
    else
      c.v.b_n_major ? probe<false, 1><<<1, 128>>>(da, b, c.v, dout) : probe<false, 0><<<1, 128>>>(da, b, c.v, dout);
    check(c.name, cudaGetLastError());
    check(c.name, cudaDeviceSynchronize());
    check("copy back", cudaMemcpy(got.data(), dout, got.size() * 4, cudaMemcpyDeviceToHost));
    double worst = 0;
    for (std::size_t i = 0; i < want.size(); ++i) worst = std::fmax(worst, std::fabs(got[i] - want[i]));
    std::printf("%-40s largest error %g\n", c.name, worst);
  }
  return 0;
}
