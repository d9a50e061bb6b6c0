// The MLP's exact (erf) GELU on a split-bf16 GEMM output, shared by the elementwise kernel and
// the weight-streaming product's epilogue so that both give the same bits.
#pragma once

#include <cuda_bf16.h>

namespace eyrie::cuda {

// gelu(hi + lo + bias) in fp32.
__device__ __forceinline__ float bias_gelu_value(float hi, float lo, float bias) {
  const float v = hi + lo + bias;
  return 0.5f * v * (1.f + erff(v * 0.70710678118654752f));
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
