// cuBLAS GEMM throughput on Falcon-7B's layer shapes at prefill row counts: the engine's call
// (cublasGemmEx, default algorithm) against each candidate cuBLASLt's heuristic offers for the
// same problem, in TFLOP/s. Shows whether a shape is poorly served by the default choice. Each
// product writes what the engine's writes on bf16 activations: bf16 for query_key_value and
// dense_h_to_4h, fp32 added into the residual stream (beta 1) for dense and dense_4h_to_h; and
// "dense+4h_to_h" is those two as one product over both inputs side by side (K = 4544 + 18176).
//
// With --sustained L, also a prefill's steady state: a layer's four products back to back for L
// layers, as long as a prompt keeps the GPU at its power limit, where one product timed alone
// runs at higher clocks. Each of a product's candidates is timed in that stream, the other three
// products on the default; then the fastest candidate of each product together.
//
// With --gelu-epilogue on, instead: dense_h_to_4h with cuBLASLt's GELU epilogue against the
// engine's product and in-place GELU after it, and which GELU the epilogue computes: its bf16
// outputs against the exact (erf) form and the tanh approximation of the same fp32 products.
//
// With --fp16 on, instead: the MLP's, dense's, query_key_value's and lm_head's products on fp16
// operands (activation_precision mixed), beside some of the same products on bf16, and the two
// output products as one (dense+4h_to_h, K = 4544 + 18176).
//
//   bench_gemm [--rows 2048,4096] [--candidates 8] [--iters 20] [--sustained 32] [--gelu-epilogue on]
//              [--fp16 on]
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "bench/cuda/event_timing.hpp"
#include "bench/cuda/int_list.hpp"
#include "cuda/check.hpp"
#include "cuda/kernels.hpp"
#include "model/dtype.hpp"

using namespace eyrie;

namespace {

struct Shape {
  const char* name;
  int out, in;
  cudaDataType out_type;
  float beta;
  cudaDataType in_type = CUDA_R_16BF;  // of both operands
};

void lt_check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) throw Error(std::string(what) + ": cuBLASLt status " + std::to_string(s));
}

// One product's operands and its cuBLASLt description at one row count.
struct Product {
  Shape sh;
  int rows = 0;
  cuda::bf16 *w = nullptr, *x = nullptr;
  void* y = nullptr;
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  std::vector<cublasLtMatmulHeuristicResult_t> found;

  Product(const Shape& s, int r, cublasLtHandle_t lt, std::size_t ws_bytes, int candidates,
          cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_DEFAULT)
      : sh(s), rows(r) {
    EYRIE_CUDA_CHECK(cudaMalloc(&w, std::size_t{2} * sh.out * sh.in));
    EYRIE_CUDA_CHECK(cudaMalloc(&x, std::size_t{2} * rows * sh.in));
    EYRIE_CUDA_CHECK(cudaMalloc(&y, std::size_t{4} * rows * sh.out));
    cuda::fill_random_bf16(w, std::int64_t{sh.out} * sh.in, 1, 0.05f, 0.f, nullptr);
    cuda::fill_random_bf16(x, std::int64_t{rows} * sh.in, 2, 1.f, 0.f, nullptr);
    if (sh.in_type == CUDA_R_16F) {
      cuda::bf16_to_f16_inplace(w, std::int64_t{sh.out} * sh.in, nullptr);
      cuda::bf16_to_f16_inplace(x, std::int64_t{rows} * sh.in, nullptr);
    }
    EYRIE_CUDA_CHECK(cudaMemset(y, 0, std::size_t{4} * rows * sh.out));
    lt_check(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "desc");
    const cublasOperation_t trans_a = CUBLAS_OP_T;
    lt_check(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a, sizeof trans_a), "transa");
    lt_check(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof epilogue),
             "epilogue");
    lt_check(cublasLtMatrixLayoutCreate(&a, sh.in_type, sh.in, sh.out, sh.in), "layout a");
    lt_check(cublasLtMatrixLayoutCreate(&b, sh.in_type, sh.in, rows, sh.in), "layout b");
    lt_check(cublasLtMatrixLayoutCreate(&c, sh.out_type, sh.out, rows, sh.out), "layout c");
    cublasLtMatmulPreference_t pref;
    lt_check(cublasLtMatmulPreferenceCreate(&pref), "pref");
    lt_check(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes,
                                                  sizeof ws_bytes),
             "pref ws");
    found.resize(candidates);
    int count = 0;
    lt_check(cublasLtMatmulAlgoGetHeuristic(lt, desc, a, b, c, c, pref, candidates, found.data(), &count), "heuristic");
    found.resize(count);
    cublasLtMatmulPreferenceDestroy(pref);
  }
  Product(const Product&) = delete;
  Product& operator=(const Product&) = delete;
  ~Product() {
    cublasLtMatrixLayoutDestroy(a);
    cublasLtMatrixLayoutDestroy(b);
    cublasLtMatrixLayoutDestroy(c);
    cublasLtMatmulDescDestroy(desc);
    cudaFree(w);
    cudaFree(x);
    cudaFree(y);
  }

  double flop() const { return 2.0 * sh.out * sh.in * static_cast<double>(rows); }

  // Candidate `cand` of the heuristic's, or the engine's cublasGemmEx call for cand < 0.
  void run(cublasHandle_t blas, cublasLtHandle_t lt, void* ws, std::size_t ws_bytes, int cand) const {
    const float alpha = 1.f, beta = sh.beta;
    if (cand < 0) {
      EYRIE_CUBLAS_CHECK(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, sh.out, rows, sh.in, &alpha, w, sh.in_type, sh.in,
                                      x, sh.in_type, sh.in, &beta, y, sh.out_type, sh.out, CUBLAS_COMPUTE_32F,
                                      CUBLAS_GEMM_DEFAULT));
      return;
    }
    lt_check(cublasLtMatmul(lt, desc, &alpha, w, a, x, b, &beta, y, c, y, c, &found[cand].algo, ws, ws_bytes, nullptr),
             "matmul");
  }

  // What distinguishes the candidate: cuBLASLt's tile, stage and cluster-shape ids, split-K.
  std::string describe(int cand) const {
    auto attr = [&](cublasLtMatmulAlgoConfigAttributes_t at) {
      int32_t v = 0;
      std::size_t got = 0;
      cublasLtMatmulAlgoConfigGetAttribute(&found[cand].algo, at, &v, sizeof v, &got);
      return v;
    };
    return "tile " + std::to_string(attr(CUBLASLT_ALGO_CONFIG_TILE_ID)) + " stages " +
           std::to_string(attr(CUBLASLT_ALGO_CONFIG_STAGES_ID)) + " cluster " +
           std::to_string(attr(CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID)) + " splitk " +
           std::to_string(attr(CUBLASLT_ALGO_CONFIG_SPLITK_NUM));
  }
};

// dense_h_to_4h at `rows` rows: time with the GELU epilogue against the product then the
// in-place GELU, and the epilogue's outputs against both GELU forms of the fp32 products.
void gelu_epilogue(int rows, int iters, cublasHandle_t blas, cublasLtHandle_t lt, void* ws, std::size_t ws_bytes) {
  const Shape up{"h_to_4h", 18176, 4544, CUDA_R_16BF, 0.f};
  const Product plain(up, rows, lt, ws_bytes, 1);
  const Product fused(up, rows, lt, ws_bytes, 1, CUBLASLT_EPILOGUE_GELU);
  if (fused.found.empty()) throw Error("cuBLASLt offers no algorithm for the GELU epilogue");
  const double apart =
      time_us(1, iters,
              [&](int) {
                plain.run(blas, lt, ws, ws_bytes, -1);
                cuda::bias_gelu_inplace(static_cast<cuda::bf16*>(plain.y), nullptr, rows, up.out, nullptr);
              }) /
      1e3;
  const double product = time_us(1, iters, [&](int) { plain.run(blas, lt, ws, ws_bytes, -1); }) / 1e3;
  const double epilogue = time_us(1, iters, [&](int) { fused.run(blas, lt, ws, ws_bytes, 0); }) / 1e3;
  std::printf("h_to_4h %d rows: product %.3f ms, then GELU in place %.3f ms; GELU epilogue %.3f ms (%s)\n", rows,
              product, apart, epilogue, fused.describe(0).c_str());

  const Shape up32{"h_to_4h fp32", 18176, 4544, CUDA_R_32F, 0.f};
  const Product exact(up32, rows, lt, ws_bytes, 1);  // the same operands: same seeds and shape
  exact.run(blas, lt, ws, ws_bytes, -1);
  fused.run(blas, lt, ws, ws_bytes, 0);
  EYRIE_CUDA_CHECK(cudaDeviceSynchronize());
  const std::size_t n = std::size_t{18176} * rows;
  std::vector<float> y(n);
  std::vector<uint16_t> g(n);  // bf16 bits
  EYRIE_CUDA_CHECK(cudaMemcpy(y.data(), exact.y, n * sizeof(float), cudaMemcpyDeviceToHost));
  EYRIE_CUDA_CHECK(cudaMemcpy(g.data(), fused.y, n * sizeof(uint16_t), cudaMemcpyDeviceToHost));
  std::size_t erf_diff = 0, tanh_diff = 0;
  double erf_max = 0, tanh_max = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double v = y[i];
    const double by_erf = 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0)));
    const double by_tanh = 0.5 * v * (1.0 + std::tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
    const float got = bf16_to_f32(g[i]);
    erf_diff += got != round_to_bf16(static_cast<float>(by_erf));
    tanh_diff += got != round_to_bf16(static_cast<float>(by_tanh));
    erf_max = std::max(erf_max, std::fabs(got - by_erf));
    tanh_max = std::max(tanh_max, std::fabs(got - by_tanh));
  }
  std::printf(
      "GELU epilogue against the fp32 products' GELU rounded to bf16: erf form %zu of %zu differ (max |d| %.3g), "
      "tanh form %zu differ (max |d| %.3g)\n",
      erf_diff, n, erf_max, tanh_diff, tanh_max);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> rows_list = {2048, 4096};
  int candidates = 8, iters = 20, sustained = 0;
  bool gelu = false, fp16 = false;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--fp16")) fp16 = !std::strcmp(argv[i + 1], "on");
    if (!std::strcmp(argv[i], "--rows")) rows_list = int_list(argv[i + 1]);
    if (!std::strcmp(argv[i], "--candidates")) candidates = std::stoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--iters")) iters = std::stoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--sustained")) sustained = std::stoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--gelu-epilogue")) gelu = !std::strcmp(argv[i + 1], "on");
  }
  if (candidates < 1 || iters < 1 || sustained < 0) {
    std::fprintf(stderr, "bench_gemm: --candidates and --iters must be at least 1, --sustained at least 0\n");
    return 2;
  }
  try {
    const std::vector<Shape> bf16_shapes = {{"qkv", 4672, 4544, CUDA_R_16BF, 0.f},
                                            {"dense", 4544, 4544, CUDA_R_32F, 1.f},
                                            {"h_to_4h", 18176, 4544, CUDA_R_16BF, 0.f},
                                            {"4h_to_h", 4544, 18176, CUDA_R_32F, 1.f},
                                            {"dense+4h_to_h", 4544, 22720, CUDA_R_32F, 1.f}};
    // The MLP's and dense's products on fp16 (activation_precision mixed) as the engine writes
    // them, fp32 outputs, and against fp16 outputs and bf16 operands.
    const std::vector<Shape> fp16_shapes = {{"h_to_4h", 18176, 4544, CUDA_R_32F, 0.f, CUDA_R_16F},
                                            {"4h_to_h", 4544, 18176, CUDA_R_32F, 0.f, CUDA_R_16F},
                                            {"h_to_4h f16", 18176, 4544, CUDA_R_16F, 0.f, CUDA_R_16F},
                                            {"4h_to_h +=", 4544, 18176, CUDA_R_32F, 1.f, CUDA_R_16F},
                                            {"h_to_4h bf16", 18176, 4544, CUDA_R_32F, 0.f},
                                            {"4h_to_h bf16", 4544, 18176, CUDA_R_32F, 0.f},
                                            {"dense", 4544, 4544, CUDA_R_32F, 0.f, CUDA_R_16F},
                                            {"dense bf16", 4544, 4544, CUDA_R_32F, 0.f},
                                            {"dense+4h_to_h", 4544, 22720, CUDA_R_32F, 0.f, CUDA_R_16F},
                                            {"qkv", 4672, 4544, CUDA_R_32F, 0.f, CUDA_R_16F},
                                            {"qkv bf16", 4672, 4544, CUDA_R_32F, 0.f},
                                            {"lm_head", 65024, 4544, CUDA_R_32F, 0.f, CUDA_R_16F}};
    const std::vector<Shape>& shapes = fp16 ? fp16_shapes : bf16_shapes;
    cublasHandle_t blas;
    cublasLtHandle_t lt;
    EYRIE_CUBLAS_CHECK(cublasCreate(&blas));
    lt_check(cublasLtCreate(&lt), "cublasLtCreate");
    const std::size_t ws_bytes = 32 << 20;
    void* ws;
    EYRIE_CUDA_CHECK(cudaMalloc(&ws, ws_bytes));
    EYRIE_CUBLAS_CHECK(cublasSetWorkspace(blas, ws, ws_bytes));
    for (int rows : rows_list) {
      if (gelu) {
        gelu_epilogue(rows, iters, blas, lt, ws, ws_bytes);
        continue;
      }
      for (const Shape& sh : shapes) {
        const Product p(sh, rows, lt, ws_bytes, candidates);
        const double ex_ms = time_us(1, iters, [&](int) { p.run(blas, lt, ws, ws_bytes, -1); }) / 1e3;
        std::printf("%-13s %5d rows: GemmEx %7.3f ms %6.1f TFLOP/s | Lt:", sh.name, rows, ex_ms,
                    p.flop() / ex_ms / 1e9);
        for (int i = 0; i < static_cast<int>(p.found.size()); ++i) {
          const double ms = time_us(1, iters, [&](int) { p.run(blas, lt, ws, ws_bytes, i); }) / 1e3;
          std::printf(" %.1f", p.flop() / ms / 1e9);
        }
        std::printf(" TFLOP/s\n");
      }
      if (sustained == 0 || fp16) continue;

      // The layer's four products in the engine's order, each on its candidate (-1: default).
      std::vector<const Product*> layer;
      std::vector<std::unique_ptr<Product>> owned;
      for (int s : {0, 1, 2, 3}) {
        owned.push_back(std::make_unique<Product>(shapes[s], rows, lt, ws_bytes, candidates));
        layer.push_back(owned.back().get());
      }
      double layer_flop = 0;
      for (const Product* p : layer) layer_flop += p->flop();
      auto per_layer_ms = [&](const std::array<int, 4>& cand) {
        const int passes = 3;
        return time_us(1, passes,
                       [&](int) {
                         for (int l = 0; l < sustained; ++l)
                           for (int s = 0; s < 4; ++s) layer[s]->run(blas, lt, ws, ws_bytes, cand[s]);
                       }) /
               1e3 / sustained;
      };
      const double base = per_layer_ms({-1, -1, -1, -1});
      std::printf("sustained, %d rows, %d layers: default %.3f ms a layer, %.1f TFLOP/s\n", rows, sustained, base,
                  layer_flop / base / 1e9);
      std::array<int, 4> best = {-1, -1, -1, -1};
      for (int s = 0; s < 4; ++s) {
        double best_ms = per_layer_ms({-1, -1, -1, -1});
        std::printf("  %-8s default %.3f ms a layer\n", shapes[s].name, best_ms);
        for (int i = 0; i < static_cast<int>(layer[s]->found.size()); ++i) {
          std::array<int, 4> cand = {-1, -1, -1, -1};
          cand[s] = i;
          const double ms = per_layer_ms(cand);
          std::printf("  %-8s candidate %d (%s): %.3f ms a layer\n", shapes[s].name, i, layer[s]->describe(i).c_str(),
                      ms);
          if (ms < best_ms) best_ms = ms, best[s] = i;
        }
      }
      const double both = per_layer_ms(best);
      const double again = per_layer_ms({-1, -1, -1, -1});
      std::printf(
          "sustained, %d rows: fastest of each (%d %d %d %d) %.3f ms a layer, %.1f TFLOP/s; default again %.3f\n", rows,
          best[0], best[1], best[2], best[3], both, layer_flop / both / 1e9, again);
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
