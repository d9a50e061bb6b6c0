// Weight-streaming products for steps of a few rows (decode at small batch), where a GEMM is a
// read of the weights and cuBLAS leaves part of the memory bandwidth unused.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "cuda/check.hpp"
#include "cuda/dependent_launch.cuh"
#include "cuda/gelu.cuh"
#include "cuda/kernels.hpp"

namespace eyrie::cuda {
namespace {

constexpr int kMaxWarps = 8;

// What the tensor-core kernel writes. rows: y, a row per input row; on split-bf16 pairs (the
// high halves, then the low, as the GEMMs take them) each half's product, which sum to W (x_hi +
// x_lo). gelu_rows / gelu_pairs: bf16 GELU values to g instead, as bias_gelu writes them from
// what the rows would have given y.
enum class Epilogue { rows, gelu_rows, gelu_pairs };

// gelu(sum + bias) as bias_gelu writes it for unsplit rows.
__device__ __forceinline__ bf16 row_gelu(float sum, const float* bias, int64_t o) {
  return __float2bfloat16(bias_gelu_value(sum, 0.f, bias ? bias[o] : 0.f));
}

// Weights are read once per step: keep them out of L1, where the activations stay, and first
// out of L2 (evict_first), where what the attention chain reads beside the products (the KV
// cache, the step's activations) then stays.
__device__ __forceinline__ uint64_t weight_policy() {
  uint64_t policy = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(policy));
#endif
  return policy;
}

__device__ __forceinline__ uint4 load_weights(const uint4* p, uint64_t policy) {
  uint4 v;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm("ld.global.nc.L1::no_allocate.L2::cache_hint.v4.u32 {%0, %1, %2, %3}, [%4], %5;"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p), "l"(policy));
#else
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p));
#endif
  return v;
}

__device__ __forceinline__ void prefetch_l2(const uint4* p) { asm volatile("prefetch.global.L2 [%0];" ::"l"(p)); }

__device__ __forceinline__ void widen(const uint4& v, float (&f)[8]) {
  const uint32_t u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    f[2 * j] = __uint_as_float(u[j] << 16);
    f[2 * j + 1] = __uint_as_float(u[j] & 0xffff0000u);
  }
}

__device__ __forceinline__ void widen_f16(const uint4& v, float (&f)[8]) {
  const uint32_t u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const float2 p = __half22float2(*reinterpret_cast<const __half2*>(&u[j]));
    f[2 * j] = p.x;
    f[2 * j + 1] = p.y;
  }
}

// One product of a launch, on blocks first_block.. of its grid: the sum of one or two terms,
// each x (rows as the launch says, split pairs included) times a weight matrix of out_dim rows,
// over a reduction of `chunks` 16-byte chunks of its own. Written as y (plus the biases) or, with
// g, as bf16 GELU values (bias before the GELU).
struct Term {
  const bf16* x;
  const bf16* w;
  int64_t chunks;
  bool f16;  // fp16 weights
};

struct Part {
  Term term[2];
  int terms;
  unsigned first_block;
  int64_t out_dim;
  float* y;
  bf16* g;
  const float *bias, *bias2;
};

struct Job {
  Part part[2];
  int parts;
  bool wait;  // for the kernels ahead in the stream (see GemvTiling::beside_previous)
};

// Block b of its part computes outputs b*kOutPerBlock.. of all R input rows (on pairs, of their
// A = R/2 sums, which fp32 rows hold as they are); its threads stride over each term's
// reduction in 16-byte chunks of weights, kUnroll chunks of each weight row in flight, then sum
// across the block in a fixed order (the same bits on every run, so graph replays match direct
// launches).
template <int R, int kOutPerBlock, int kUnroll, Activations kIn>
__global__ void __launch_bounds__(kMaxWarps * 32) gemv_kernel(const Job job) {
  constexpr bool kPairs = kIn != Activations::bf16_rows;
  static_assert(!kPairs || R % 2 == 0, "split-bf16 pairs come in twos");
  constexpr int A = kPairs ? R / 2 : R;  // accumulated rows
  // Read from the parameters where used (a reference, not a copy): held in registers, the two
  // parts' pointers would cost the loop registers it needs for weights in flight.
  const Part& p = job.part[job.parts > 1 && blockIdx.x >= job.part[1].first_block ? 1 : 0];
  const int64_t o0 = static_cast<int64_t>(blockIdx.x - p.first_block) * kOutPerBlock;
  const int64_t stride = static_cast<int64_t>(blockDim.x) * kUnroll;
  uint4 wc[kUnroll][kOutPerBlock];
  const uint64_t policy = weight_policy();
  auto load = [&](const Term& t, int64_t c0) {
    const uint4* wv = reinterpret_cast<const uint4*>(t.w);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t c = c0 + u * blockDim.x;
#pragma unroll
      for (int j = 0; j < kOutPerBlock; ++j)
        wc[u][j] = c < t.chunks && o0 + j < p.out_dim ? load_weights(wv + (o0 + j) * t.chunks + c, policy)
                                                      : make_uint4(0, 0, 0, 0);
    }
  };
  // The first weights are on their way while the kernel before this one finishes; each pass
  // then asks for the next pass's weights (the next term's first) as soon as it is done with its own.
  load(p.term[0], threadIdx.x);
  if (job.wait) wait_for_prerequisites();
  // Dependents launch once this kernel's inputs are complete, so that a product launched
  // beside this one (GemvTiling::beside_previous) finds the inputs they share complete too.
  allow_dependents();
  float acc[kOutPerBlock][A] = {};
  for (int ti = 0; ti < p.terms; ++ti) {
    const Term& t = p.term[ti];
    // A thread past the first term's chunks never reached the load of the second's.
    if (ti && threadIdx.x >= p.term[0].chunks) load(t, threadIdx.x);
    const uint4* xv = reinterpret_cast<const uint4*>(t.x);
    const int64_t chunks = t.chunks;
    const bool f16_weights = t.f16;
    for (int64_t c0 = threadIdx.x; c0 < chunks; c0 += stride) {
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int64_t c = c0 + u * blockDim.x;
        if (c >= chunks) break;
        float xf[A][8];
        if constexpr (kIn == Activations::fp32_rows) {
          const float4* x4 = reinterpret_cast<const float4*>(t.x) + 2 * c;
#pragma unroll
          for (int r = 0; r < A; ++r) {
            const float4 v0 = __ldg(x4 + 2 * r * chunks), v1 = __ldg(x4 + 2 * r * chunks + 1);
            const float v[8] = {v0.x, v0.y, v0.z, v0.w, v1.x, v1.y, v1.z, v1.w};
#pragma unroll
            for (int e = 0; e < 8; ++e) xf[r][e] = v[e];
          }
        } else {
#pragma unroll
          for (int r = 0; r < A; ++r) widen(__ldg(xv + r * chunks + c), xf[r]);
        }
        if constexpr (kIn == Activations::split_halves) {
          // hi + lo is exact in fp32: the pair's value, multiplied once.
#pragma unroll
          for (int r = 0; r < A; ++r) {
            float lo[8];
            widen(__ldg(xv + (A + r) * chunks + c), lo);
#pragma unroll
            for (int e = 0; e < 8; ++e) xf[r][e] += lo[e];
          }
        }
#pragma unroll
        for (int j = 0; j < kOutPerBlock; ++j) {
          float wf[8];
          if (f16_weights)
            widen_f16(wc[u][j], wf);
          else
            widen(wc[u][j], wf);
#pragma unroll
          for (int r = 0; r < A; ++r)
#pragma unroll
            for (int e = 0; e < 8; ++e) acc[j][r] = fmaf(wf[e], xf[r][e], acc[j][r]);
        }
      }
      if (c0 + stride < chunks)
        load(t, c0 + stride);
      else if (ti + 1 < p.terms)
        load(p.term[1], threadIdx.x);
    }
  }
  __shared__ float partial[kMaxWarps][kOutPerBlock * A];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
  for (int j = 0; j < kOutPerBlock; ++j)
#pragma unroll
    for (int r = 0; r < A; ++r) {
      float v = acc[j][r];
      for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
      if (lane == 0) partial[warp][j * A + r] = v;
    }
  __syncthreads();
  if (threadIdx.x < kOutPerBlock * A) {
    const int j = threadIdx.x / A, r = threadIdx.x % A;
    const int64_t o = o0 + j, out_dim = p.out_dim;
    float s = 0.f;
    for (unsigned wi = 0; wi < blockDim.x / 32; ++wi) s += partial[wi][threadIdx.x];
    if (o < out_dim) {
      if (p.g) {
        if constexpr (kIn == Activations::fp32_rows)
          reinterpret_cast<float*>(p.g)[r * out_dim + o] = bias_gelu_value(s, 0.f, p.bias ? p.bias[o] : 0.f);
        else if constexpr (kPairs)
          split_bias_gelu(s, 0.f, p.bias ? p.bias[o] : 0.f, p.g + r * out_dim + o, p.g + (A + r) * out_dim + o);
        else
          p.g[r * out_dim + o] = row_gelu(s, p.bias, o);
      } else {
        if (p.bias) s += p.bias[o];
        if (p.bias2) s += p.bias2[o];
        p.y[r * out_dim + o] = s;
        if constexpr (kPairs) p.y[(A + r) * out_dim + o] = 0.f;
      }
    }
  }
}

template <int R, int kOutPerBlock, int kUnroll>
void launch(const Job& job, unsigned blocks, int threads, Activations form, bool early, cudaStream_t s) {
  const auto block = static_cast<unsigned>(threads);
  if constexpr (R % 2 == 0) {
    constexpr auto kHalves = Activations::split_halves, kFp32 = Activations::fp32_rows;
    if (form == kHalves) {
      launch_after_trigger(early, gemv_kernel<R, kOutPerBlock, kUnroll, kHalves>, blocks, block, s, job);
      return;
    }
    if (form == kFp32) {
      launch_after_trigger(early, gemv_kernel<R, kOutPerBlock, kUnroll, kFp32>, blocks, block, s, job);
      return;
    }
  }
  launch_after_trigger(early, gemv_kernel<R, kOutPerBlock, kUnroll, Activations::bf16_rows>, blocks, block, s, job);
}

template <int R, int kOutPerBlock>
void launch(const Job& job, unsigned blocks, const GemvTiling& t, Activations form, cudaStream_t s) {
  if (t.unroll == 4)
    launch<R, kOutPerBlock, 4>(job, blocks, t.threads, form, t.early_start || t.beside_previous, s);
  else
    launch<R, kOutPerBlock, 2>(job, blocks, t.threads, form, t.early_start || t.beside_previous, s);
}

template <int R>
void launch(const Job& job, unsigned blocks, const GemvTiling& t, Activations form, cudaStream_t s) {
  switch (t.outputs_per_block) {
    case 1: launch<R, 1>(job, blocks, t, form, s); break;
    case 2: launch<R, 2>(job, blocks, t, form, s); break;
    default: launch<R, 4>(job, blocks, t, form, s); break;
  }
}

// c (16x8) += a (16x16, row) b (16x8, col), bf16 in, fp32 accumulation.
__device__ __forceinline__ void mma_bf16(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                         uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// The tensor-core variant, for up to 8 rows: a block owns 16 weight rows and its warps take
// interleaved 64-wide slices of the reduction. In a slice, the thread with lane = 4g + t loads
// k = 32h + 8t .. 32h + 8t + 7 (h = 0, 1; one 16-byte load each, so each load instruction
// reads whole 64-byte runs of 8 rows) of weight rows g and g+8 and of activation row g. The
// MMA's k order is permuted the same way for both operands (its k 2t, 2t+1 / 2t+8, 2t+9 are the
// real k 32h+8t+4s + 0, 1 / 2, 3 for the slice's four MMAs h, s), so loaded registers are the
// fragments as they stand: no shuffles and no shared memory before the cross-warp sum. Rows at
// or past `rows` read as zero. Outputs as gemv_kernel's, GELU epilogue included.
template <int kUnroll, Epilogue kOut>
__global__ void __launch_bounds__(kMaxWarps * 32)
    gemv_mma_kernel(const bf16* x, int rows, const bf16* w, int64_t out_dim, int64_t slices, float* y,
                    const float* bias, bf16* g) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gid = lane / 4, tig = lane % 4;
  const int warps = blockDim.x / 32;
  const int64_t o0 = static_cast<int64_t>(blockIdx.x) * 16;
  const int64_t row_chunks = slices * 8;  // 16-byte chunks per row
  const bool lo_ok = o0 + gid < out_dim, hi_ok = o0 + gid + 8 < out_dim, x_ok = gid < rows;
  const uint4* w_lo = reinterpret_cast<const uint4*>(w) + (o0 + gid) * row_chunks + tig;
  const uint4* w_hi = w_lo + 8 * row_chunks;
  const uint4* xv = reinterpret_cast<const uint4*>(x) + gid * row_chunks + tig;
  const uint4 zero = make_uint4(0, 0, 0, 0);
  const uint64_t policy = weight_policy();
  // The first weights head for L2 while the kernel before this one finishes.
#pragma unroll
  for (int u = 0; u < kUnroll; ++u) {
    const int64_t sl = warp + static_cast<int64_t>(u) * warps;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      if (sl < slices && lo_ok) prefetch_l2(w_lo + sl * 8 + 4 * h);
      if (sl < slices && hi_ok) prefetch_l2(w_hi + sl * 8 + 4 * h);
    }
  }
  wait_for_prerequisites();
  allow_dependents();  // as in gemv_kernel: once the inputs are complete
  float c[4] = {};
  for (int64_t s0 = warp; s0 < slices; s0 += static_cast<int64_t>(warps) * kUnroll) {
    uint4 a_lo[kUnroll][2], a_hi[kUnroll][2];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t sl = s0 + static_cast<int64_t>(u) * warps;
      const bool in = sl < slices;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        a_lo[u][h] = in && lo_ok ? load_weights(w_lo + sl * 8 + 4 * h, policy) : zero;
        a_hi[u][h] = in && hi_ok ? load_weights(w_hi + sl * 8 + 4 * h, policy) : zero;
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t sl = s0 + static_cast<int64_t>(u) * warps;
      if (sl >= slices) break;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const uint4 b = x_ok ? __ldg(xv + sl * 8 + 4 * h) : zero;
        mma_bf16(c, a_lo[u][h].x, a_hi[u][h].x, a_lo[u][h].y, a_hi[u][h].y, b.x, b.y);
        mma_bf16(c, a_lo[u][h].z, a_hi[u][h].z, a_lo[u][h].w, a_hi[u][h].w, b.z, b.w);
      }
    }
  }
  __shared__ float red[kMaxWarps][16][8];
  __shared__ float sums[16][8];
  red[warp][gid][2 * tig] = c[0];
  red[warp][gid][2 * tig + 1] = c[1];
  red[warp][gid + 8][2 * tig] = c[2];
  red[warp][gid + 8][2 * tig + 1] = c[3];
  __syncthreads();
  if (threadIdx.x < 128) {
    const int o = threadIdx.x % 16, n = threadIdx.x / 16;
    float sum = 0.f;
    for (int wi = 0; wi < warps; ++wi) sum += red[wi][o][n];
    if constexpr (kOut == Epilogue::gelu_pairs)
      sums[o][n] = sum;
    else if (n < rows && o0 + o < out_dim && kOut == Epilogue::gelu_rows)
      g[n * out_dim + o0 + o] = row_gelu(sum, bias, o0 + o);
    else if (n < rows && o0 + o < out_dim)
      y[n * out_dim + o0 + o] = sum;
  }
  if constexpr (kOut == Epilogue::gelu_pairs) {
    __syncthreads();
    const int pairs = rows / 2;
    if (threadIdx.x < 16 * pairs) {
      const int o = threadIdx.x % 16, r = threadIdx.x / 16;
      const int64_t oo = o0 + o;
      if (oo < out_dim)
        split_bias_gelu(sums[o][r], sums[o][pairs + r], bias ? bias[oo] : 0.f, g + r * out_dim + oo,
                        g + (pairs + r) * out_dim + oo);
    }
  }
}

// Where a tensor-core launch writes: y, or with the GELU epilogue g (bias optional).
struct GemvOut {
  float* y = nullptr;
  const float* bias = nullptr;
  bf16* g = nullptr;
  Activations form = Activations::bf16_rows;  // of the input rows (split_halves: see Epilogue) and of g
  WeightType w_type = WeightType::bfloat16;
};

template <int kUnroll>
void launch_mma(const bf16* x, int64_t rows, const bf16* w, int64_t out_dim, int64_t in_dim, const GemvOut& out,
                int warps, bool early, cudaStream_t s) {
  const auto blocks = static_cast<unsigned>((out_dim + 15) / 16);
  const auto threads = static_cast<unsigned>(warps * 32);
  if (out.g && out.form == Activations::split_halves)
    launch_after_trigger(early, gemv_mma_kernel<kUnroll, Epilogue::gelu_pairs>, blocks, threads, s, x,
                         static_cast<int>(rows), w, out_dim, in_dim / 64, static_cast<float*>(nullptr), out.bias,
                         out.g);
  else if (out.g)
    launch_after_trigger(early, gemv_mma_kernel<kUnroll, Epilogue::gelu_rows>, blocks, threads, s, x,
                         static_cast<int>(rows), w, out_dim, in_dim / 64, static_cast<float*>(nullptr), out.bias,
                         out.g);
  else
    launch_after_trigger(early, gemv_mma_kernel<kUnroll, Epilogue::rows>, blocks, threads, s, x,
                         static_cast<int>(rows), w, out_dim, in_dim / 64, out.y, static_cast<const float*>(nullptr),
                         static_cast<bf16*>(nullptr));
}

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

}  // namespace

bool gemv_fits(int64_t rows, int64_t in_dim, const bf16* x, const bf16* w) {
  return rows >= 1 && rows <= kGemvRowsMax && in_dim % 8 == 0 && aligned16(x) && aligned16(w);
}

bool gemv_mma_fits(int64_t rows, int64_t in_dim, const bf16* x, const bf16* w) {
  return rows >= 1 && rows <= kGemvMmaRowsMax && in_dim % 64 == 0 && aligned16(x) && aligned16(w);
}

namespace {

void launch_mma_rows(const bf16* x, int64_t rows, const bf16* w, int64_t out_dim, int64_t in_dim, const GemvOut& out,
                     cudaStream_t s, const GemvTiling& t) {
  if ((t.threads != 128 && t.threads != 256) || (t.unroll != 1 && t.unroll != 2 && t.unroll != 4))
    throw InvalidArgument("gemv: tensor-core tiling of " + std::to_string(t.threads) + " threads, unroll " +
                          std::to_string(t.unroll) + " is not one the kernel has (128 or 256; 1, 2 or 4)");
  if (rows < 1 || rows > kGemvMmaRowsMax || in_dim % 64)
    throw InvalidArgument("gemv: the tensor-core kernel takes 1 to " + std::to_string(kGemvMmaRowsMax) +
                          " rows and a reduction in multiples of 64, not " + std::to_string(rows) + " x " +
                          std::to_string(in_dim));
  if (out.form == Activations::fp32_rows)
    throw InvalidArgument("gemv: the tensor-core kernel reads bf16 rows or split halves, not fp32 rows");
  if (out.w_type != WeightType::bfloat16)
    throw InvalidArgument("gemv: the tensor-core kernel reads bf16 weights, not fp16");
  switch (t.unroll) {
    case 1: launch_mma<1>(x, rows, w, out_dim, in_dim, out, t.threads / 32, t.early_start, s); break;
    case 2: launch_mma<2>(x, rows, w, out_dim, in_dim, out, t.threads / 32, t.early_start, s); break;
    default: launch_mma<4>(x, rows, w, out_dim, in_dim, out, t.threads / 32, t.early_start, s); break;
  }
}

void check_tiling(const GemvTiling& t) {
  if (t.threads < 32 || t.threads > kMaxWarps * 32 || t.threads % 32 ||
      (t.outputs_per_block != 1 && t.outputs_per_block != 2 && t.outputs_per_block != 4) ||
      (t.unroll != 2 && t.unroll != 4))
    throw InvalidArgument("gemv: tiling of " + std::to_string(t.threads) + " threads, " +
                          std::to_string(t.outputs_per_block) + " outputs per block, unroll " +
                          std::to_string(t.unroll) + " is not one the kernel has");
}

unsigned blocks_for(const GemvProduct& p, const GemvTiling& t) {
  return static_cast<unsigned>((p.out_dim + t.outputs_per_block - 1) / t.outputs_per_block);
}

Part part_of(const GemvProduct& p, unsigned first_block) {
  const bool two = p.term2.w != nullptr;
  auto f16 = [](const GemvTerm& t) { return t.w_type == WeightType::float16; };
  return Part{
      .term = {Term{p.term.x, p.term.w, p.term.in_dim / 8, f16(p.term)},
               two ? Term{p.term2.x, p.term2.w, p.term2.in_dim / 8, f16(p.term2)} : Term{nullptr, nullptr, 0, false}},
      .terms = two ? 2 : 1,
      .first_block = first_block,
      .out_dim = p.out_dim,
      .y = p.y,
      .g = p.g,
      .bias = p.bias,
      .bias2 = p.bias2};
}

// The FMA kernel over one or two products (second may be null), already checked.
void launch_products(int64_t rows, Activations form, const GemvProduct& first, const GemvProduct* second,
                     cudaStream_t s, const GemvTiling& t) {
  check_tiling(t);
  Job job{};
  job.wait = !t.beside_previous;
  const unsigned first_blocks = blocks_for(first, t);
  job.part[0] = part_of(first, 0);
  job.parts = 1;
  unsigned blocks = first_blocks;
  if (second) {
    job.part[1] = part_of(*second, first_blocks);
    job.parts = 2;
    blocks += blocks_for(*second, t);
  }
  switch (rows) {
    case 1: launch<1>(job, blocks, t, form, s); break;
    case 2: launch<2>(job, blocks, t, form, s); break;
    case 3: launch<3>(job, blocks, t, form, s); break;
    case 4: launch<4>(job, blocks, t, form, s); break;
    default: throw InvalidArgument("gemv: " + std::to_string(rows) + " rows, at most " + std::to_string(kGemvRowsMax));
  }
}

void launch_rows(const bf16* x, int64_t rows, const bf16* w, int64_t out_dim, int64_t in_dim, const GemvOut& out,
                 cudaStream_t s, const GemvTiling& t) {
  if (t.tensor_cores) {
    launch_mma_rows(x, rows, w, out_dim, in_dim, out, s, t);
    return;
  }
  const GemvProduct p{.term = {x, w, in_dim, out.w_type}, .out_dim = out_dim, .y = out.y, .g = out.g, .bias = out.bias};
  launch_products(rows, out.form, p, nullptr, s, t);
}

void check_product(const GemvProduct& p, int64_t rows, const char* which) {
  const std::string at = std::string("gemv_products: the ") + which + " product";
  if (p.out_dim < 1) throw InvalidArgument(at + " has " + std::to_string(p.out_dim) + " outputs");
  if ((p.y == nullptr) == (p.g == nullptr)) throw InvalidArgument(at + " needs exactly one of y and g");
  if (p.g && p.term2.w) throw InvalidArgument(at + ": a GELU output takes one term");
  if (p.g && p.bias2) throw InvalidArgument(at + ": a GELU output takes one bias");
  for (const GemvTerm* term : {&p.term, &p.term2}) {
    if (term == &p.term2 && !term->w) continue;
    if (!term->x || !term->w || term->in_dim < 1 || !gemv_fits(rows, term->in_dim, term->x, term->w))
      throw InvalidArgument(at + ": a term of reduction " + std::to_string(term->in_dim) +
                            " that the kernel cannot read (a positive multiple of 8, 16-byte aligned x and W)");
  }
}

// fp16 rows and halves go to cuBLAS's fp16 products; this kernel reads bf16, split halves or
// fp32 rows.
void refuse_f16_rows(Activations form, const char* what) {
  if (form == Activations::f16_rows || form == Activations::f16_halves)
    throw InvalidArgument(std::string(what) + ": reads bf16, split or fp32 rows, not fp16");
}

}  // namespace

void gemv(const bf16* x, int64_t rows, const bf16* w, int64_t out_dim, int64_t in_dim, float* y, cudaStream_t s,
          const GemvTiling& t, WeightType w_type) {
  if (rows == 0 || out_dim == 0) return;
  launch_rows(x, rows, w, out_dim, in_dim, GemvOut{.y = y, .w_type = w_type}, s, t);
}

void gemv_pairs(const bf16* x, int64_t rows, const bf16* w, int64_t out_dim, int64_t in_dim, float* y, cudaStream_t s,
                const GemvTiling& t, Activations form, WeightType w_type) {
  refuse_f16_rows(form, "gemv_pairs");
  if (form == Activations::bf16_rows) throw InvalidArgument("gemv_pairs: reads split rows, halves or fp32, not bf16");
  if (rows % 2) throw InvalidArgument("gemv_pairs: " + std::to_string(rows) + " rows; split-bf16 rows come in pairs");
  if (rows == 0 || out_dim == 0) return;
  launch_rows(x, rows, w, out_dim, in_dim, GemvOut{.y = y, .form = form, .w_type = w_type}, s, t);
}

void gemv_bias_gelu(const bf16* x, int64_t rows, const bf16* w, int64_t out_dim, int64_t in_dim, const float* bias,
                    bf16* g, cudaStream_t s, const GemvTiling& t, Activations form, WeightType w_type) {
  refuse_f16_rows(form, "gemv_bias_gelu");
  if (form != Activations::bf16_rows && rows % 2)
    throw InvalidArgument("gemv_bias_gelu: " + std::to_string(rows) + " rows; split-bf16 rows come in pairs");
  if (rows == 0 || out_dim == 0) return;
  launch_rows(x, rows, w, out_dim, in_dim, GemvOut{.bias = bias, .g = g, .form = form, .w_type = w_type}, s, t);
}

void gemv_products(int64_t rows, Activations form, const GemvProduct& first, const GemvProduct* second,
                   cudaStream_t s, const GemvTiling& t) {
  refuse_f16_rows(form, "gemv_products");
  const bool pairs = form != Activations::bf16_rows;
  if (rows < 1 || rows > kGemvRowsMax || (pairs && rows % 2))
    throw InvalidArgument("gemv_products: " + std::to_string(rows) + " rows; the kernel takes 1 to " +
                          std::to_string(kGemvRowsMax) + (pairs ? ", in split-bf16 pairs" : ""));
  if (t.tensor_cores) throw InvalidArgument("gemv_products: runs on the FMA kernel, not the tensor-core one");
  check_product(first, rows, "first");
  if (second) check_product(*second, rows, "second");
  launch_products(rows, form, first, second, s, t);
}

}  // namespace eyrie::cuda
