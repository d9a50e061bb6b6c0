// The e4m3 weights and the rests' scales of query_key_value's fp8 product (cuda/fp8.hpp).
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <algorithm>

#include "cuda/check.hpp"
#include "cuda/fp8.hpp"

namespace eyrie::cuda {
namespace {

constexpr float kE4m3Max = 448.f;

// The largest power of two s with bound * s <= 448 (exactly: frexp, not a rounded log2), kept
// within 2^+-100; 1 for a bound that is zero or not finite.
__device__ float pow2_scale(float bound) {
  if (!(bound > 0.f) || !isfinite(bound)) return 1.f;
  int e = 0;
  frexpf(kE4m3Max / bound, &e);  // 448 / bound = m 2^e, m in [0.5, 1)
  return ldexpf(1.f, max(-100, min(100, e - 1)));
}

__device__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Magnitudes are non-negative, so their bits order as their values do.
__global__ void amax_kernel(const f16* w, int64_t n, float* amax) {
  float m = 0.f;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    m = fmaxf(m, fabsf(__half2float(w[i])));
  m = warp_max(m);
  if (threadIdx.x % 32 == 0) atomicMax(reinterpret_cast<int*>(amax), __float_as_int(m));
}

__global__ void quantize_kernel(const f16* w, int64_t n, uint8_t* w8, float* scales) {
  const float s = pow2_scale(scales[kWeightAmax]);
  if (blockIdx.x == 0 && threadIdx.x == 0) scales[kWeightDequant] = 1.f / s;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    w8[i] = __nv_cvt_float_to_fp8(__half2float(w[i]) * s, __NV_SATFINITE, __NV_E4M3);
}

__global__ void rest_scales_kernel(const float* gamma, const float* beta, int64_t hidden, float* scales) {
  __shared__ float g_warp[32], b_warp[32];
  float g = 0.f, b = 0.f;
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) {
    g = fmaxf(g, fabsf(gamma[i]));
    b = fmaxf(b, fabsf(beta[i]));
  }
  g = warp_max(g);
  b = warp_max(b);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) {
    g_warp[warp] = g;
    b_warp[warp] = b;
  }
  __syncthreads();
  if (threadIdx.x != 0) return;
  for (int k = 1; k < static_cast<int>(blockDim.x / 32); ++k) {  // warp 0's are g and b already
    g = fmaxf(g, g_warp[k]);
    b = fmaxf(b, b_warp[k]);
  }
  const float bound = sqrtf(static_cast<float>(hidden)) * g + b;
  // Half an fp16 unit in the last place at |x| <= bound, or of its subnormals; past fp16's range
  // what saturation leaves out.
  float rest = fmaxf(bound * 0x1p-11f, 0x1p-25f);
  if (bound > 65504.f) rest = fmaxf(rest, bound - 65504.f);
  const float s = pow2_scale(rest);
  scales[kRestQuant] = s;
  scales[kRestDequant] = 1.f / s;
}

unsigned grid_for(int64_t n) {
  return static_cast<unsigned>(std::clamp<int64_t>((n + 255) / 256, 1, 4096));
}

}  // namespace

void quantize_weights_e4m3(const f16* w, int64_t n, uint8_t* w8, float* scales, cudaStream_t s) {
  EYRIE_CUDA_CHECK(cudaMemsetAsync(scales + kWeightAmax, 0, sizeof(float), s));
  if (n == 0) return;
  amax_kernel<<<grid_for(n), 256, 0, s>>>(w, n, scales + kWeightAmax);
  EYRIE_CUDA_LAUNCHED();
  quantize_kernel<<<grid_for(n), 256, 0, s>>>(w, n, w8, scales);
  EYRIE_CUDA_LAUNCHED();
}

void rest_scales(const float* gamma, const float* beta, int64_t hidden, float* scales, cudaStream_t s) {
  rest_scales_kernel<<<1, 1024, 0, s>>>(gamma, beta, hidden, scales);
  EYRIE_CUDA_LAUNCHED();
}

}  // namespace eyrie::cuda
