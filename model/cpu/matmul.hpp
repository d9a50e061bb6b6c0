// y = x W^T (+ b) with fp32 activations and bf16 / fp16 / fp32 weights read in place.
#pragma once

#include <cstdint>

#include "model/dtype.hpp"
#include "model/cpu/thread_pool.hpp"

namespace eyrie {

struct WeightMatrix {
  DType dtype = DType::f32;
  const void* data = nullptr;  // [rows, cols] row-major: torch.nn.Linear's [out, in]
  int64_t rows = 0, cols = 0;
};

// x: [m, k] fp32; w: [n, k]; bias: [n] fp32 or null; y: [m, n] fp32.
void matmul(ThreadPool& pool, const float* x, int64_t m, const WeightMatrix& w, const float* bias,
            float* y);

}  // namespace eyrie
