// cuBLASLt's e4m3 product for query_key_value's rests (cuda/fp8.hpp).
#include <string>

#include "cuda/check.hpp"
#include "cuda/fp8.hpp"

namespace eyrie::cuda {
namespace {

template <typename T>
void set(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr, const T& v) {
  EYRIE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d, attr, &v, sizeof(v)));
}

}  // namespace

Fp8Product::Fp8Product() {
  EYRIE_CUBLAS_CHECK(cublasLtCreate(&lt_));
}

Fp8Product::~Fp8Product() {
  for (auto& [key, p] : plans_) {
    cublasLtMatrixLayoutDestroy(p.a);
    cublasLtMatrixLayoutDestroy(p.b);
    cublasLtMatrixLayoutDestroy(p.c);
    cublasLtMatmulDescDestroy(p.op);
  }
  if (lt_) cublasLtDestroy(lt_);
}

void Fp8Product::add(const uint8_t* r8, int64_t rows, const uint8_t* w8, int64_t out_dim, int64_t in_dim, float alpha,
                     float* y, void* workspace, std::size_t workspace_bytes, cudaStream_t s) {
  if (rows == 0) return;
  if (!fits(in_dim, out_dim))
    throw InvalidArgument("fp8 product: " + std::to_string(out_dim) + " x " + std::to_string(in_dim) +
                          " weights; cuBLASLt's e4m3 products need inputs in multiples of 16 and outputs of 4");
  const auto key = std::make_tuple(rows, out_dim, in_dim);
  auto it = plans_.find(key);
  if (it == plans_.end()) {
    // Column-major as cuBLASLt sees them: y [out, rows] = w8^T [out, in] r8 [in, rows], the
    // transposed-A, plain-B form its fp8 products require.
    Plan p;
    EYRIE_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    set(p.op, CUBLASLT_MATMUL_DESC_TRANSA, CUBLAS_OP_T);
    set(p.op, CUBLASLT_MATMUL_DESC_TRANSB, CUBLAS_OP_N);
    // The rests' product is about 2^-11 of the output: fp8 accumulation's precision is plenty.
    set(p.op, CUBLASLT_MATMUL_DESC_FAST_ACCUM, static_cast<int8_t>(1));
    EYRIE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.a, CUDA_R_8F_E4M3, in_dim, out_dim, in_dim));
    EYRIE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.b, CUDA_R_8F_E4M3, in_dim, rows, in_dim));
    EYRIE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.c, CUDA_R_32F, out_dim, rows, out_dim));
    cublasLtMatmulPreference_t pref = nullptr;
    EYRIE_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    const uint64_t ws = workspace_bytes;
    EYRIE_CUBLAS_CHECK(
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(lt_, p.op, p.a, p.b, p.c, p.c, pref, 1, &result, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (st != CUBLAS_STATUS_SUCCESS || found == 0) {
      cublasLtMatrixLayoutDestroy(p.a);
      cublasLtMatrixLayoutDestroy(p.b);
      cublasLtMatrixLayoutDestroy(p.c);
      cublasLtMatmulDescDestroy(p.op);
      if (st != CUBLAS_STATUS_SUCCESS) throw_cublas(st, "cublasLtMatmulAlgoGetHeuristic (e4m3)", __FILE__, __LINE__);
      throw Error("cuBLASLt offers no e4m3 product of " + std::to_string(rows) + " rows by " + std::to_string(out_dim) +
                  " x " + std::to_string(in_dim) + " weights on this device");
    }
    p.algo = result.algo;
    it = plans_.emplace(key, p).first;
  }
  const Plan& p = it->second;
  const float beta = 1.f;
  EYRIE_CUBLAS_CHECK(cublasLtMatmul(lt_, p.op, &alpha, w8, p.a, r8, p.b, &beta, y, p.c, y, p.c, &p.algo, workspace,
                                    workspace_bytes, s));
}

}  // namespace eyrie::cuda
