// The weight-streaming product against cuBLAS on Falcon-7B's decode GEMM shapes, for each
// activation row count and each tiling the kernel has: microseconds and weight bytes read per
// second. The weights rotate over copies larger than L2 together, as a model's layers do. Then
// a layer's products launched as the engine launches them at batch 1 (cuda::gemv_products).
//
//   bench_gemv [--rows 1,2,3,4,6,8] [--iters 40]
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <stdexcept>
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
  int64_t out, in;
};

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> rows_list = {1, 2, 3, 4, 6, 8};
  int iters = 40;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--rows")) rows_list = int_list(argv[i + 1]);
    if (!std::strcmp(argv[i], "--iters")) iters = std::stoi(argv[i + 1]);
  }
  try {
    for (int rows : rows_list)
      if (rows < 1)
        throw std::invalid_argument("--rows: " + std::to_string(rows) + " rows; each count must be positive");
    // Activations and outputs for the most rows asked for (8 at least, for the layer launches).
    const int64_t max_rows =
        std::max<int64_t>(8, rows_list.empty() ? 0 : *std::max_element(rows_list.begin(), rows_list.end()));
    const std::vector<Shape> shapes = {{"qkv", 4672, 4544},
                                       {"dense", 4544, 4544},
                                       {"h_to_4h", 18176, 4544},
                                       {"4h_to_h", 4544, 18176},
                                       {"lm_head", 65024, 4544}};
    std::vector<cuda::GemvTiling> tilings;
    for (int threads : {64, 128, 256})
      for (int opb : {1, 2, 4})
        for (int unroll : {2, 4}) tilings.push_back({threads, opb, unroll});
    for (int threads : {128, 256})
      for (int unroll : {1, 2, 4}) tilings.push_back({threads, 16, unroll, true});
    cublasHandle_t blas;
    EYRIE_CUBLAS_CHECK(cublasCreate(&blas));
    for (const Shape& sh : shapes) {
      const std::size_t wbytes = static_cast<std::size_t>(sh.out * sh.in) * 2;
      const int copies = static_cast<int>(std::max<std::size_t>(2, (std::size_t{512} << 20) / wbytes + 1));
      std::vector<cuda::bf16*> w(copies);
      for (int c = 0; c < copies; ++c) {
        EYRIE_CUDA_CHECK(cudaMalloc(&w[c], wbytes));
        cuda::fill_random_bf16(w[c], sh.out * sh.in, 11 + c, 0.05f, 0.f, nullptr);
      }
      cuda::bf16* x;
      float* y;
      EYRIE_CUDA_CHECK(cudaMalloc(&x, max_rows * sh.in * 2));
      EYRIE_CUDA_CHECK(cudaMalloc(&y, max_rows * sh.out * 4));
      cuda::fill_random_bf16(x, max_rows * sh.in, 3, 1.f, 0.f, nullptr);
      for (int rows : rows_list) {
        const auto tb = [&](double us) { return wbytes / (us * 1e-6) / 1e12; };
        const double blas_us = time_us(copies, iters, [&](int c) {
          const float alpha = 1.f, beta = 0.f;
          EYRIE_CUBLAS_CHECK(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(sh.out), rows,
                                          static_cast<int>(sh.in), &alpha, w[c], CUDA_R_16BF, static_cast<int>(sh.in),
                                          x, CUDA_R_16BF, static_cast<int>(sh.in), &beta, y, CUDA_R_32F,
                                          static_cast<int>(sh.out), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        });
        // The best three of each kernel, fp32 FMAs and tensor cores, against cuBLAS.
        std::printf("%-8s rows %d: cublas %7.1f us %.2f TB/s", sh.name, rows, blas_us, tb(blas_us));
        for (bool tc : {false, true}) {
          if (tc ? !cuda::gemv_mma_fits(rows, sh.in, x, w[0]) : !cuda::gemv_fits(rows, sh.in, x, w[0])) continue;
          std::vector<std::pair<double, std::string>> results;
          for (const auto& t : tilings) {
            if (t.tensor_cores != tc) continue;
            const double us =
                time_us(copies, iters, [&](int c) { cuda::gemv(x, rows, w[c], sh.out, sh.in, y, nullptr, t); });
            results.push_back({us, std::to_string(t.threads) + "/" + std::to_string(t.outputs_per_block) + "/" +
                                       std::to_string(t.unroll)});
          }
          std::sort(results.begin(), results.end());
          std::printf(" | %s", tc ? "mma" : "fma");
          for (std::size_t i = 0; i < 3 && i < results.size(); ++i)
            std::printf(" %s %.1f us %.2f TB/s;", results[i].second.c_str(), results[i].first, tb(results[i].first));
        }
        std::printf("\n");
      }
      for (auto* p : w) cudaFree(p);
      cudaFree(x);
      cudaFree(y);
    }
    // A decode layer's products as the engine launches them at batch 1: query_key_value beside
    // dense_h_to_4h (GELU epilogue) in one launch, and dense + dense_4h_to_h summed in one; each
    // tiling of the FMA kernel, the default tiling first, against the two products launched
    // apart with the default tiling. An even row count runs twice: as independent rows, and as
    // split-bf16 pairs (half as many rows of the step, each a high and a low half), and as those
    // pairs given whole as fp32 rows (the same bytes read as fp32).
    const int64_t h = 4544, qkv = 4672, ffn = 18176;
    const std::size_t layer_bytes = static_cast<std::size_t>(qkv * h + ffn * h) * 2;
    const int copies = static_cast<int>((std::size_t{512} << 20) / layer_bytes + 2);
    std::vector<cuda::bf16*> wq(copies), wf(copies), wd(copies), wo(copies);
    for (int c = 0; c < copies; ++c) {
      for (auto* v : {&wq, &wf, &wd, &wo}) {
        const int64_t n = v == &wq ? qkv * h : v == &wd ? h * h : ffn * h;
        EYRIE_CUDA_CHECK(cudaMalloc(&(*v)[c], n * 2));
        cuda::fill_random_bf16((*v)[c], n, 21 + c, 0.05f, 0.f, nullptr);
      }
    }
    cuda::bf16 *x, *xf, *g;
    float* y;
    EYRIE_CUDA_CHECK(cudaMalloc(&x, 8 * h * 2));
    EYRIE_CUDA_CHECK(cudaMalloc(&xf, 8 * ffn * 2));
    EYRIE_CUDA_CHECK(cudaMalloc(&g, 8 * ffn * 2));
    EYRIE_CUDA_CHECK(cudaMalloc(&y, 8 * qkv * 4));
    cuda::fill_random_bf16(x, 8 * h, 3, 1.f, 0.f, nullptr);
    cuda::fill_random_bf16(xf, 8 * ffn, 4, 1.f, 0.f, nullptr);
    std::vector<cuda::GemvTiling> fma{cuda::GemvTiling{}};
    for (const auto& t : tilings)
      if (!t.tensor_cores) fma.push_back(t);
    for (int rows : rows_list) {
      if (rows > cuda::kGemvRowsMax) continue;
      for (int variant = 0; variant < (rows % 2 == 0 ? 6 : 2); ++variant) {
        const bool outputs = variant % 2 == 1, pairs = variant >= 2;
        const auto form = variant >= 4 ? cuda::Activations::fp32_rows
                          : pairs      ? cuda::Activations::split_halves
                                       : cuda::Activations::bf16_rows;
        const double bytes = outputs ? static_cast<double>(h * h + h * ffn) * 2 : static_cast<double>(layer_bytes);
        const auto tb = [&](double us) { return bytes / (us * 1e-6) / 1e12; };
        const auto run = [&](int c, const cuda::GemvTiling& t) {
          if (outputs) {
            const cuda::GemvProduct p{.term = {x, wd[c], h}, .term2 = {xf, wo[c], ffn}, .out_dim = h, .y = y};
            cuda::gemv_products(rows, form, p, nullptr, nullptr, t);
          } else {
            const cuda::GemvProduct a{.term = {x, wq[c], h}, .term2 = {}, .out_dim = qkv, .y = y};
            const cuda::GemvProduct b{.term = {x, wf[c], h}, .term2 = {}, .out_dim = ffn, .g = g};
            cuda::gemv_products(rows, form, a, &b, nullptr, t);
          }
        };
        const double apart = time_us(copies, iters, [&](int c) {
          if (outputs) {
            if (pairs) {
              cuda::gemv_pairs(x, rows, wd[c], h, h, y, nullptr, {}, form);
              cuda::gemv_pairs(xf, rows, wo[c], h, ffn, y, nullptr, {}, form);
            } else {
              cuda::gemv(x, rows, wd[c], h, h, y, nullptr);
              cuda::gemv(xf, rows, wo[c], h, ffn, y, nullptr);
            }
          } else {
            if (pairs)
              cuda::gemv_pairs(x, rows, wq[c], qkv, h, y, nullptr, {}, form);
            else
              cuda::gemv(x, rows, wq[c], qkv, h, y, nullptr);
            cuda::gemv_bias_gelu(x, rows, wf[c], ffn, h, nullptr, g, nullptr, {}, form);
          }
        });
        std::vector<std::pair<double, std::string>> results;
        for (std::size_t i = 0; i < fma.size(); ++i) {
          const auto& t = fma[i];
          const double us = time_us(copies, iters, [&](int c) { run(c, t); });
          results.push_back({us, std::to_string(t.threads) + "/" + std::to_string(t.outputs_per_block) + "/" +
                                     std::to_string(t.unroll)});
        }
        std::printf("%-13s rows %d%s: apart %.1f us %.2f TB/s | one launch, default %s %.1f us %.2f TB/s |",
                    outputs ? "dense+4h_to_h" : "qkv+h_to_4h", rows,
                    form == cuda::Activations::fp32_rows ? " (pairs as fp32)"
                    : pairs                              ? " (pairs)"
                                                         : "",
                    apart, tb(apart), results[0].second.c_str(), results[0].first, tb(results[0].first));
        std::sort(results.begin(), results.end());
        for (std::size_t i = 0; i < 3 && i < results.size(); ++i)
          std::printf(" %s %.1f us %.2f TB/s;", results[i].second.c_str(), results[i].first, tb(results[i].first));
        std::printf("\n");
      }
    }
    for (auto* v : {&wq, &wf, &wd, &wo})
      for (auto* p : *v) cudaFree(p);
    cudaFree(x);
    cudaFree(xf);
    cudaFree(g);
    cudaFree(y);
    cublasDestroy(blas);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_gemv: %s\n", e.what());
    return 1;
  }
}
