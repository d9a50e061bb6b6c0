// cuBLAS GEMM throughput on Falcon-7B's layer shapes at prefill row counts: the engine's call
// (cublasGemmEx, default algorithm) against each candidate cuBLASLt's heuristic offers for the
// same problem, in TFLOP/s. Shows whether a shape is poorly served by the default choice. Each
// product writes what the engine's writes on bf16 activations: bf16 for query_key_value and
// dense_h_to_4h, fp32 added into the residual stream (beta 1) for dense and dense_4h_to_h; and
// "dense+4h_to_h" is those two as one product over both inputs side by side (K = 4544 + 18176).
//
//   bench_gemm [--rows 2048,4096] [--candidates 8] [--iters 20]
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "bench/cuda/event_timing.hpp"
#include "bench/cuda/int_list.hpp"
#include "cuda/check.hpp"
#include "cuda/kernels.hpp"

using namespace eyrie;

namespace {

struct Shape {
  const char* name;
  int out, in;
  cudaDataType out_type;
  float beta;
};

void lt_check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) throw Error(std::string(what) + ": cuBLASLt status " + std::to_string(s));
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> rows_list = {2048, 4096};
  int candidates = 8, iters = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--rows")) rows_list = int_list(argv[i + 1]);
    if (!std::strcmp(argv[i], "--candidates")) candidates = std::stoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--iters")) iters = std::stoi(argv[i + 1]);
  }
  try {
    const std::vector<Shape> shapes = {{"qkv", 4672, 4544, CUDA_R_16BF, 0.f},
                                       {"dense", 4544, 4544, CUDA_R_32F, 1.f},
                                       {"h_to_4h", 18176, 4544, CUDA_R_16BF, 0.f},
                                       {"4h_to_h", 4544, 18176, CUDA_R_32F, 1.f},
                                       {"dense+4h_to_h", 4544, 22720, CUDA_R_32F, 1.f}};
    cublasHandle_t blas;
    cublasLtHandle_t lt;
    EYRIE_CUBLAS_CHECK(cublasCreate(&blas));
    lt_check(cublasLtCreate(&lt), "cublasLtCreate");
    const std::size_t ws_bytes = 32 << 20;
    void* ws;
    EYRIE_CUDA_CHECK(cudaMalloc(&ws, ws_bytes));
    EYRIE_CUBLAS_CHECK(cublasSetWorkspace(blas, ws, ws_bytes));
    for (const Shape& sh : shapes) {
      for (int rows : rows_list) {
        cuda::bf16 *w, *x;
        void* y;
        EYRIE_CUDA_CHECK(cudaMalloc(&w, std::size_t{2} * sh.out * sh.in));
        EYRIE_CUDA_CHECK(cudaMalloc(&x, std::size_t{2} * rows * sh.in));
        EYRIE_CUDA_CHECK(cudaMalloc(&y, std::size_t{4} * rows * sh.out));
        cuda::fill_random_bf16(w, std::int64_t{sh.out} * sh.in, 1, 0.05f, 0.f, nullptr);
        cuda::fill_random_bf16(x, std::int64_t{rows} * sh.in, 2, 1.f, 0.f, nullptr);
        const double flop = 2.0 * sh.out * sh.in * static_cast<double>(rows);
        const float alpha = 1.f, beta = sh.beta;
        EYRIE_CUDA_CHECK(cudaMemset(y, 0, std::size_t{4} * rows * sh.out));
        const double ex_ms =
            time_us(1, iters,
                    [&](int) {
                      EYRIE_CUBLAS_CHECK(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, sh.out, rows, sh.in, &alpha, w,
                                                      CUDA_R_16BF, sh.in, x, CUDA_R_16BF, sh.in, &beta, y, sh.out_type,
                                                      sh.out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
                    }) /
            1e3;
        std::printf("%-13s %5d rows: GemmEx %7.3f ms %6.1f TFLOP/s | Lt:", sh.name, rows, ex_ms, flop / ex_ms / 1e9);

        cublasLtMatmulDesc_t desc;
        cublasLtMatrixLayout_t a, b, c;
        lt_check(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "desc");
        const cublasOperation_t trans_a = CUBLAS_OP_T;
        lt_check(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a, sizeof trans_a), "transa");
        lt_check(cublasLtMatrixLayoutCreate(&a, CUDA_R_16BF, sh.in, sh.out, sh.in), "layout a");
        lt_check(cublasLtMatrixLayoutCreate(&b, CUDA_R_16BF, sh.in, rows, sh.in), "layout b");
        lt_check(cublasLtMatrixLayoutCreate(&c, sh.out_type, sh.out, rows, sh.out), "layout c");
        cublasLtMatmulPreference_t pref;
        lt_check(cublasLtMatmulPreferenceCreate(&pref), "pref");
        lt_check(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes,
                                                      sizeof ws_bytes),
                 "pref ws");
        std::vector<cublasLtMatmulHeuristicResult_t> found(candidates);
        int count = 0;
        lt_check(cublasLtMatmulAlgoGetHeuristic(lt, desc, a, b, c, c, pref, candidates, found.data(), &count),
                 "heuristic");
        for (int i = 0; i < count; ++i) {
          const double ms = time_us(1, iters, [&](int) {
            lt_check(cublasLtMatmul(lt, desc, &alpha, w, a, x, b, &beta, y, c, y, c, &found[i].algo, ws, ws_bytes,
                                    nullptr),
                     "matmul");
          }) / 1e3;
          std::printf(" %.1f", flop / ms / 1e9);
        }
        std::printf(" TFLOP/s\n");
        cublasLtMatmulPreferenceDestroy(pref);
        cublasLtMatrixLayoutDestroy(a);
        cublasLtMatrixLayoutDestroy(b);
        cublasLtMatrixLayoutDestroy(c);
        cublasLtMatmulDescDestroy(desc);
        cudaFree(w);
        cudaFree(x);
        cudaFree(y);
      }
    }
    cudaFree(ws);
    cublasLtDestroy(lt);
    cublasDestroy(blas);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_gemm: %s\n", e.what());
    return 1;
  }
  return 0;
}
