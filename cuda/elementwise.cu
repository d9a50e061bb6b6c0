// Embedding gather, bias + GELU, residual adds and random fills.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "cuda/activation_store.cuh"
#include "cuda/check.hpp"
#include "cuda/dependent_launch.cuh"
#include "cuda/gelu.cuh"
#include "cuda/kernels.hpp"
#include "cuda/residual.cuh"

namespace eyrie::cuda {
namespace {

template <typename T>
__global__ void embed_kernel(const T* emb, const int32_t* tokens, int64_t hidden, float* out) {
  const int64_t r = blockIdx.x;
  const T* src = emb + static_cast<int64_t>(tokens[r]) * hidden;
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) out[r * hidden + i] = static_cast<float>(src[i]);
}

// grid: (column groups, rows in steps of gridDim.y); each thread V consecutive columns of a row,
// so the bias is read once per thread and no element index is divided by the row width. With
// kHalves, x's low halves are added and out gets low halves too; without, out is high halves
// only ([rows, cols]), which is all a GEMM on bf16 activations reads.
template <int V, bool kHalves>
__global__ void bias_gelu_kernel(const float* x, const float* bias, int64_t rows, int64_t cols, bf16* out) {
  allow_dependents();  // the products after this kernel start reading their weights
  const int64_t c = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * V;
  if (c >= cols) return;
  const int64_t n = rows * cols;
  float b[V], hi[V], lo[V];
  for (int v = 0; v < V; ++v) b[v] = bias ? bias[c + v] : 0.f;
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const int64_t i = r * cols + c;
    if constexpr (V == 4) {
      const float4 h4 = *reinterpret_cast<const float4*>(x + i);
      hi[0] = h4.x, hi[1] = h4.y, hi[2] = h4.z, hi[3] = h4.w;
      if constexpr (kHalves) {
        const float4 l4 = *reinterpret_cast<const float4*>(x + n + i);
        lo[0] = l4.x, lo[1] = l4.y, lo[2] = l4.z, lo[3] = l4.w;
      }
    } else {
      hi[0] = x[i];
      if constexpr (kHalves) lo[0] = x[n + i];
    }
    __nv_bfloat16 gh[V], gl[V];
    for (int v = 0; v < V; ++v) {
      if constexpr (kHalves) {
        split_bias_gelu(hi[v], lo[v], b[v], &gh[v], &gl[v]);
      } else {
        gh[v] = __float2bfloat16(bias_gelu_value(hi[v], 0.f, b[v]));
      }
    }
    if constexpr (V == 4) {
      *reinterpret_cast<uint2*>(out + i) = *reinterpret_cast<const uint2*>(gh);
      if constexpr (kHalves) *reinterpret_cast<uint2*>(out + n + i) = *reinterpret_cast<const uint2*>(gl);
    } else {
      out[i] = gh[0];
      if constexpr (kHalves) out[n + i] = gl[0];
    }
  }
}

// As bias_gelu_kernel without halves, on bf16 input written over in place; V = 8 moves 16 bytes.
// With kPairs, a thread takes two rows at a time and loads both before working on either: a
// prompt's GELU has as much arithmetic as memory traffic, and one row's arithmetic then
// overlaps the other's load. A step of fewer rows keeps a row per thread, for more threads.
template <int V, bool kPairs>
__global__ void bias_gelu_inplace_kernel(bf16* x, const float* bias, int64_t rows, int64_t cols) {
  allow_dependents();  // the products after this kernel start reading their weights
  const int64_t c = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * V;
  if (c >= cols) return;
  float b[V];
  for (int v = 0; v < V; ++v) b[v] = bias ? bias[c + v] : 0.f;
  struct Chunk {
    __nv_bfloat16 g[V];
  };
  auto load = [&](const bf16* p) {
    Chunk k;
    if constexpr (V == 8)
      *reinterpret_cast<uint4*>(k.g) = *reinterpret_cast<const uint4*>(p);
    else
      k.g[0] = *p;
    return k;
  };
  auto gelu_store = [&](Chunk k, bf16* p) {
    for (int v = 0; v < V; ++v) k.g[v] = __float2bfloat16(bias_gelu_value(__bfloat162float(k.g[v]), 0.f, b[v]));
    if constexpr (V == 8)
      *reinterpret_cast<uint4*>(p) = *reinterpret_cast<const uint4*>(k.g);
    else
      *p = k.g[0];
  };
  constexpr int kRows = kPairs ? 2 : 1;
  for (int64_t r = kRows * static_cast<int64_t>(blockIdx.y); r < rows; r += kRows * static_cast<int64_t>(gridDim.y)) {
    bf16* p0 = x + r * cols + c;
    bf16* p1 = p0 + cols;
    const bool second = kPairs && r + 1 < rows;
    const Chunk k0 = load(p0);
    const Chunk k1 = second ? load(p1) : k0;
    gelu_store(k0, p0);
    if (second) gelu_store(k1, p1);
  }
}

template <int V>
__global__ void bias_gelu_f16_kernel(const float* x, const float* bias, int64_t rows, int64_t cols, __half* out) {
  allow_dependents();  // the product after this kernel starts reading its weights
  const int64_t c = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * V;
  if (c >= cols) return;
  float b[V];
  for (int v = 0; v < V; ++v) b[v] = bias ? bias[c + v] : 0.f;
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const int64_t i = r * cols + c;
    float in[V];
    if constexpr (V == 4) {
      const float4 h4 = *reinterpret_cast<const float4*>(x + i);
      in[0] = h4.x, in[1] = h4.y, in[2] = h4.z, in[3] = h4.w;
    } else {
      in[0] = x[i];
    }
    __half g[V];
    for (int v = 0; v < V; ++v) g[v] = saturated_f16(bias_gelu_value(in[v], 0.f, b[v]));
    if constexpr (V == 4)
      *reinterpret_cast<uint2*>(out + i) = *reinterpret_cast<const uint2*>(g);
    else
      out[i] = g[0];
  }
}

__global__ void bf16_to_f16_kernel(uint16_t* p, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float v = __uint_as_float(static_cast<uint32_t>(p[i]) << 16);
    p[i] = __half_as_ushort(saturated_f16(v));
  }
}

// grid: (rows gathered, column chunks); W-byte words, W 16 or 4.
template <typename Word>
__global__ void gather_rows_kernel(const Word* src, const int32_t* rows, int64_t words, Word* dst) {
  const Word* from = src + static_cast<int64_t>(rows[blockIdx.x]) * words;
  Word* to = dst + static_cast<int64_t>(blockIdx.x) * words;
  for (int64_t i = blockIdx.y * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < words;
       i += static_cast<int64_t>(gridDim.y) * blockDim.x)
    to[i] = from[i];
}

__global__ void residual_kernel(float* x, const float* a, const float* ab, const float* c, const float* cb,
                                int64_t cols, int64_t n, bool halves, bool c_halves) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    x[i] += residual_at(a, ab, c, cb, halves, c_halves, i, n, i % cols);
  }
}

__global__ void combine_kernel(const float* y, int64_t n, bool halves, float* out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i] = y[i] + (halves ? y[n + i] : 0.f);
}

__device__ float hash_uniform(uint64_t seed, int64_t i) {
  uint64_t z = seed + 0x9e3779b97f4a7c15ull * static_cast<uint64_t>(i + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return static_cast<float>(z >> 40) / 16777216.0f - 0.5f;  // [-0.5, 0.5)
}

__global__ void fill_bf16_kernel(bf16* dst, int64_t n, uint64_t seed, float scale, float offset) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dst[i] = __float2bfloat16(offset + 2.f * scale * hash_uniform(seed, i));
}

__global__ void fill_f32_kernel(float* dst, int64_t n, uint64_t seed, float scale, float offset) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dst[i] = offset + 2.f * scale * hash_uniform(seed, i);
}

unsigned grid_for(int64_t n) { return static_cast<unsigned>(std::min<int64_t>((n + 255) / 256, 65536)); }

}  // namespace

void embed_rows(const bf16* emb, const int32_t* tokens, int64_t rows, int64_t hidden, float* out, cudaStream_t s,
                WeightType type) {
  if (rows == 0) return;
  if (type == WeightType::float16)
    embed_kernel<<<static_cast<unsigned>(rows), 256, 0, s>>>(reinterpret_cast<const f16*>(emb), tokens, hidden, out);
  else
    embed_kernel<<<static_cast<unsigned>(rows), 256, 0, s>>>(emb, tokens, hidden, out);
  EYRIE_CUDA_LAUNCHED();
}

// The bias + GELU kernels' grid: 256 threads of V columns each across a row, rows in steps of
// the grid's height.
constexpr int kGeluThreads = 256;
constexpr int64_t kGeluPairRows = 1024;
dim3 gelu_grid(int64_t rows, int64_t cols, int v) {
  return dim3(static_cast<unsigned>((cols / v + kGeluThreads - 1) / kGeluThreads),
              static_cast<unsigned>(std::min<int64_t>(rows, 65535)));
}

template <int V, bool kHalves>
void launch_bias_gelu(const float* x, const float* bias, int64_t rows, int64_t cols, bf16* out, cudaStream_t s) {
  bias_gelu_kernel<V, kHalves><<<gelu_grid(rows, cols, V), kGeluThreads, 0, s>>>(x, bias, rows, cols, out);
  EYRIE_CUDA_LAUNCHED();
}

void bias_gelu(const float* x, const float* bias, int64_t rows, int64_t cols, bf16* out, cudaStream_t s,
               bool halves) {
  if (rows * cols == 0) return;
  const bool vec = cols % 4 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(out) % 8 == 0 && reinterpret_cast<uintptr_t>(bias) % 16 == 0;
  if (vec && halves)
    launch_bias_gelu<4, true>(x, bias, rows, cols, out, s);
  else if (vec)
    launch_bias_gelu<4, false>(x, bias, rows, cols, out, s);
  else if (halves)
    launch_bias_gelu<1, true>(x, bias, rows, cols, out, s);
  else
    launch_bias_gelu<1, false>(x, bias, rows, cols, out, s);
}

void bias_gelu_f16(const float* x, const float* bias, int64_t rows, int64_t cols, f16* out, cudaStream_t s) {
  if (rows * cols == 0) return;
  const bool vec = cols % 4 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(out) % 8 == 0 && reinterpret_cast<uintptr_t>(bias) % 16 == 0;
  if (vec)
    bias_gelu_f16_kernel<4><<<gelu_grid(rows, cols, 4), kGeluThreads, 0, s>>>(x, bias, rows, cols, out);
  else
    bias_gelu_f16_kernel<1><<<gelu_grid(rows, cols, 1), kGeluThreads, 0, s>>>(x, bias, rows, cols, out);
  EYRIE_CUDA_LAUNCHED();
}

void bias_gelu_inplace(bf16* x, const float* bias, int64_t rows, int64_t cols, cudaStream_t s) {
  if (rows * cols == 0) return;
  const bool vec = cols % 8 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(bias) % 16 == 0;
  // Row pairs from a prompt's row count: at 128 rows they halve the threads of a latency-bound
  // launch.
  const bool pairs = rows >= kGeluPairRows;
  const int64_t grid_rows = pairs ? (rows + 1) / 2 : rows;
  const int v = vec ? 8 : 1;
  const dim3 grid = gelu_grid(grid_rows, cols, v);
  if (vec)
    pairs ? bias_gelu_inplace_kernel<8, true><<<grid, kGeluThreads, 0, s>>>(x, bias, rows, cols)
          : bias_gelu_inplace_kernel<8, false><<<grid, kGeluThreads, 0, s>>>(x, bias, rows, cols);
  else
    pairs ? bias_gelu_inplace_kernel<1, true><<<grid, kGeluThreads, 0, s>>>(x, bias, rows, cols)
          : bias_gelu_inplace_kernel<1, false><<<grid, kGeluThreads, 0, s>>>(x, bias, rows, cols);
  EYRIE_CUDA_LAUNCHED();
}

void residual_add(float* x, const float* a, const float* ab, const float* c, const float* cb, int64_t rows,
                  int64_t cols, cudaStream_t s, bool halves, bool c_halves) {
  const int64_t n = rows * cols;
  if (n == 0) return;
  residual_kernel<<<grid_for(n), 256, 0, s>>>(x, a, ab, c, cb, cols, n, halves, halves && c_halves);
  EYRIE_CUDA_LAUNCHED();
}

namespace {
__global__ void add_kernel(float* x, const float* p, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    x[i] += p[i];
}
}  // namespace

void gather_rows(const void* src, const int32_t* rows, int64_t count, int64_t row_bytes, void* dst, cudaStream_t s) {
  if (count == 0) return;
  if (row_bytes <= 0 || row_bytes % 4 != 0)
    throw InvalidArgument("gather_rows: rows must be a positive multiple of 4 bytes, not " +
                          std::to_string(row_bytes));
  constexpr unsigned kThreads = 256;
  const bool wide = row_bytes % 16 == 0 && reinterpret_cast<uintptr_t>(src) % 16 == 0 &&
                    reinterpret_cast<uintptr_t>(dst) % 16 == 0;
  const int64_t words = row_bytes / (wide ? 16 : 4);
  const dim3 grid(static_cast<unsigned>(count),
                  static_cast<unsigned>(std::min<int64_t>((words + kThreads - 1) / kThreads, 65535)));
  if (wide)
    gather_rows_kernel<<<grid, kThreads, 0, s>>>(static_cast<const uint4*>(src), rows, words, static_cast<uint4*>(dst));
  else
    gather_rows_kernel<<<grid, kThreads, 0, s>>>(static_cast<const uint32_t*>(src), rows, words,
                                                 static_cast<uint32_t*>(dst));
  EYRIE_CUDA_LAUNCHED();
}

void add_inplace(float* x, const float* p, int64_t n, cudaStream_t s) {
  if (n == 0) return;
  add_kernel<<<grid_for(n), 256, 0, s>>>(x, p, n);
  EYRIE_CUDA_LAUNCHED();
}

void combine_halves(const float* y, int64_t rows, int64_t cols, float* out, cudaStream_t s, bool halves) {
  const int64_t n = rows * cols;
  if (n == 0) return;
  combine_kernel<<<grid_for(n), 256, 0, s>>>(y, n, halves, out);
  EYRIE_CUDA_LAUNCHED();
}

void fill_random_bf16(bf16* dst, int64_t n, uint64_t seed, float scale, float offset, cudaStream_t s) {
  fill_bf16_kernel<<<grid_for(n), 256, 0, s>>>(dst, n, seed, scale, offset);
  EYRIE_CUDA_LAUNCHED();
}

void bf16_to_f16_inplace(void* p, int64_t n, cudaStream_t s) {
  if (n == 0) return;
  bf16_to_f16_kernel<<<grid_for(n), 256, 0, s>>>(static_cast<uint16_t*>(p), n);
  EYRIE_CUDA_LAUNCHED();
}

void fill_random_f32(float* dst, int64_t n, uint64_t seed, float scale, float offset, cudaStream_t s) {
  fill_f32_kernel<<<grid_for(n), 256, 0, s>>>(dst, n, seed, scale, offset);
  EYRIE_CUDA_LAUNCHED();
}

}  // namespace eyrie::cuda
