// A block's addition to the residual stream, shared by the residual kernel and the LayerNorms
// that take a pending residual in their pass, so that all of them give x the same bits.
#pragma once

#include <cstdint>

namespace eyrie::cuda {

// (a + a_lo) + a_bias, and with c the MLP's (c + c_lo) + c_bias before it, as transformers
// adds a parallel block's attention and MLP outputs.
__device__ __forceinline__ float residual_sum(float a, float a_lo, float a_bias, bool has_c, float c, float c_lo,
                                              float c_bias) {
  const float add = (a + a_lo) + a_bias;
  return has_c ? ((c + c_lo) + c_bias) + add : add;
}

// residual_sum of element `at` of GEMM outputs a and c (c may be null) whose low halves, where
// a_halves and c_halves say they have them, sit `lo` elements further on; col indexes the biases
// (either may be null).
__device__ __forceinline__ float residual_at(const float* a, const float* a_bias, const float* c, const float* c_bias,
                                             bool a_halves, bool c_halves, int64_t at, int64_t lo, int64_t col) {
  const bool has_c = c != nullptr;
  return residual_sum(a[at], a_halves ? a[lo + at] : 0.f, a_bias ? a_bias[col] : 0.f, has_c, has_c ? c[at] : 0.f,
                      has_c && c_halves ? c[lo + at] : 0.f, has_c && c_bias ? c_bias[col] : 0.f);
}

}  // namespace eyrie::cuda
