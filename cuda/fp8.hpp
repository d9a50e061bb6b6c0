// query_key_value's product in steps of many split rows (CudaEngineOptions::fp8_qkv_rows_min):
// x W^T = fp16(x) W^T + (x - fp16(x)) W^T, the first term one product on fp16 rows and fp16
// weights, the second one on e4m3 rests and an e4m3 copy of the weights. The rest is about
// 2^-11 of x, so e4m3's 3 mantissa bits there still leave x W^T within about 2^-15 of its
// size. Split-bf16 halves take two fp16-sized passes; here the second is an e4m3 one (on the
// H200 at 2048 rows of Falcon-7B, 84 us against the fp16 product's 128: bench/RESULTS.md).
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <tuple>

#include "cuda/kernels.hpp"

namespace eyrie::cuda {

// A layer's scales for the fp8 product, in device memory (the norm kernel reads the rests'):
enum Fp8Scale : int {
  kWeightDequant,  // 1 / the power of two the e4m3 weights were multiplied by
  kRestQuant,      // the power of two the rests are multiplied by before rounding to e4m3
  kRestDequant,    // its inverse
  kWeightAmax,     // the weights' largest magnitude, while they are quantized
  kFp8Scales
};

// w8 = e4m3(w * s) for n fp16 weights, s the largest power of two that keeps their largest
// magnitude within e4m3's 448; scales[kWeightDequant] = 1 / s.
void quantize_weights_e4m3(const f16* w, int64_t n, uint8_t* w8, float* scales, cudaStream_t s);

// scales[kRestQuant] and [kRestDequant] for the rests of a LayerNorm's output x = n gamma +
// beta. |n| <= sqrt(hidden) for any row, so |x| <= sqrt(hidden) max|gamma| + max|beta| =: B,
// and |x - fp16(x)| <= 2^-11 B (past fp16's range, B - 65504): the scale is the largest power
// of two that keeps that bound within 448, fixed at load time for every step.
void rest_scales(const float* gamma, const float* beta, int64_t hidden, float* scales, cudaStream_t s);

// y[rows, out] += alpha r8 w8^T: r8 [rows, in] and w8 [out, in] e4m3, fp32 y, on cuBLASLt;
// alpha = scales[kRestDequant] scales[kWeightDequant], read once at load time (a host value, as
// the scales are powers of two; cuBLASLt 13.1 on the H200 answered NOT_SUPPORTED to these
// products whenever they were given A and B scale pointers, with fp32, bf16 or fp16 outputs).
// The algorithm of each shape is chosen once and kept.
class Fp8Product {
 public:
  Fp8Product();
  ~Fp8Product();
  Fp8Product(const Fp8Product&) = delete;
  Fp8Product& operator=(const Fp8Product&) = delete;

  // Shapes cuBLASLt's fp8 products take: in_dim a multiple of 16 and out_dim of 4 (16-byte
  // leading dimensions).
  static bool fits(int64_t in_dim, int64_t out_dim) { return in_dim % 16 == 0 && out_dim % 4 == 0; }

  void add(const uint8_t* r8, int64_t rows, const uint8_t* w8, int64_t out_dim, int64_t in_dim, float alpha, float* y,
           void* workspace, std::size_t workspace_bytes, cudaStream_t s);

 private:
  struct Plan {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
  };
  cublasLtHandle_t lt_ = nullptr;
  std::map<std::tuple<int64_t, int64_t, int64_t>, Plan> plans_;
};

}  // namespace eyrie::cuda
