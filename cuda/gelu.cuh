// The MLP's exact (erf) GELU on a split-bf16 GEMM output, shared by the elementwise kernel and
// the weight-streaming product's epilogue so that both give the same bits.
#pragma once

#include <cuda_bf16.h>

#include "cuda/fast_math.cuh"

namespace eyrie::cuda {

// erf(x) to within 6e-7 (Abramowitz and Stegun 7.1.26): one reciprocal, one exponential and
// five fused multiply-adds, where erff takes two branches' worth of polynomial on most warps.
// A prefill's GELU runs on rows x 4 hidden elements and was bound by those instructions; a
// split-bf16 pair keeps about 16 significant bits, so 6e-7 is below what GELU's output holds.
__device__ __forceinline__ float erf_fast(float x) {
  const float ax = fabsf(x);
  const float t = __fdividef(1.f, fmaf(0.3275911f, ax, 1.f));
  float p = fmaf(1.061405429f, t, -1.453152027f);
  p = fmaf(p, t, 1.421413741f);
  p = fmaf(p, t, -0.284496736f);
  p = fmaf(p, t, 0.254829592f);
  // exp(-x^2) as 2^(-x^2 log2 e); 0 once x^2 is past the exponent range
  const float e = exp2_approx(-ax * ax * 1.4426950408889634f);
  return copysignf(fmaf(-p * t, e, 1.f), x);
}

// gelu(hi + lo + bias) in fp32: the exact (erf) GELU of Falcon's MLP.
__device__ __forceinline__ float bias_gelu_value(float hi, float lo, float bias) {
  const float v = hi + lo + bias;
  return 0.5f * v * (1.f + erf_fast(v * 0.70710678118654752f));
}

// gelu(hi + lo + bias) written as split bf16: *out_hi and *out_lo.
__device__ __forceinline__ void split_bias_gelu(float hi, float lo, float bias, __nv_bfloat16* out_hi,
                                                __nv_bfloat16* out_lo) {
  const float g = bias_gelu_value(hi, lo, bias);
  const __nv_bfloat16 h = __float2bfloat16(g);
  *out_hi = h;
  *out_lo = __float2bfloat16(g - __bfloat162float(h));
}

}  // namespace eyrie::cuda
