// Embedding gather, bias + GELU, residual adds and random fills.
#include <cuda_bf16.h>

#include "cuda/check.hpp"
#include "cuda/dependent_launch.cuh"
#include "cuda/gelu.cuh"
#include "cuda/kernels.hpp"
#include "cuda/residual.cuh"

namespace eyrie::cuda {
namespace {

__global__ void embed_kernel(const bf16* emb, const int32_t* tokens, int64_t hidden, float* out) {
  const int64_t r = blockIdx.x;
  const bf16* src = emb + static_cast<int64_t>(tokens[r]) * hidden;
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) out[r * hidden + i] = __bfloat162float(src[i]);
}

__global__ void bias_gelu_kernel(const float* x, const float* bias, int64_t cols, int64_t n, bool halves, bf16* out) {
  allow_dependents();  // the products after this kernel start reading their weights
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    split_bias_gelu(x[i], halves ? x[n + i] : 0.f, bias ? bias[i % cols] : 0.f, out + i, out + n + i);
  }
}

__global__ void residual_kernel(float* x, const float* a, const float* ab, const float* c, const float* cb,
                                int64_t cols, int64_t n, bool halves) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    x[i] += residual_at(a, ab, c, cb, halves, i, n, i % cols);
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

void embed_rows(const bf16* emb, const int32_t* tokens, int64_t rows, int64_t hidden, float* out,
                cudaStream_t s) {
  if (rows == 0) return;
  embed_kernel<<<static_cast<unsigned>(rows), 256, 0, s>>>(emb, tokens, hidden, out);
  EYRIE_CUDA_LAUNCHED();
}

void bias_gelu(const float* x, const float* bias, int64_t rows, int64_t cols, bf16* out, cudaStream_t s,
               bool halves) {
  const int64_t n = rows * cols;
  if (n == 0) return;
  bias_gelu_kernel<<<grid_for(n), 256, 0, s>>>(x, bias, cols, n, halves, out);
  EYRIE_CUDA_LAUNCHED();
}

void residual_add(float* x, const float* a, const float* ab, const float* c, const float* cb, int64_t rows,
                  int64_t cols, cudaStream_t s, bool halves) {
  const int64_t n = rows * cols;
  if (n == 0) return;
  residual_kernel<<<grid_for(n), 256, 0, s>>>(x, a, ab, c, cb, cols, n, halves);
  EYRIE_CUDA_LAUNCHED();
}

namespace {
__global__ void add_kernel(float* x, const float* p, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    x[i] += p[i];
}
}  // namespace

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

void fill_random_f32(float* dst, int64_t n, uint64_t seed, float scale, float offset, cudaStream_t s) {
  fill_f32_kernel<<<grid_for(n), 256, 0, s>>>(dst, n, seed, scale, offset);
  EYRIE_CUDA_LAUNCHED();
}

}  // namespace eyrie::cuda
