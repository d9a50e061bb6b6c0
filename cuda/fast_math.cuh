// Fast-math pieces shared by the kernels, where their accuracy is known to be enough.
#pragma once

namespace eyrie::cuda {

// 2^x, the MUFU approximation __expf itself ends in.
__device__ inline float exp2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

}  // namespace eyrie::cuda
