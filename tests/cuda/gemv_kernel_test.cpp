// The weight-streaming product for a few rows against a float64 product on the host: every row
// count it takes, reduction lengths shorter and longer than one pass of the block, output
// counts that do not fill the last block, and the shapes it must refuse.
#include <gtest/gtest.h>

#if EYRIE_HAS_CUDA
#include <cmath>
#include <random>

#include "cuda/check.hpp"
#include "cuda/cuda_engine.hpp"
#include "cuda/kernels.hpp"
#include "tests/cuda/device_buffer.hpp"

namespace eyrie {
namespace {

using test::Device;

std::vector<cuda::bf16> random_bf16(std::size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<cuda::bf16> v(n);
  for (auto& x : v) x = __float2bfloat16(u(rng));
  return v;
}

void check_gemv(int64_t rows, int64_t out_dim, int64_t in_dim, uint32_t seed, const cuda::GemvTiling& t = {}) {
  SCOPED_TRACE("rows " + std::to_string(rows) + " out " + std::to_string(out_dim) + " in " + std::to_string(in_dim) +
               (t.tensor_cores ? " tensor cores" : ""));
  std::mt19937 rng(seed);
  const auto x = random_bf16(rows * in_dim, rng), w = random_bf16(out_dim * in_dim, rng);
  Device<cuda::bf16> dx(x), dw(w);
  Device<float> dy(rows * out_dim);
  ASSERT_TRUE(t.tensor_cores ? cuda::gemv_mma_fits(rows, in_dim, dx.p, dw.p) : cuda::gemv_fits(rows, in_dim, dx.p, dw.p));
  cuda::gemv(dx.p, rows, dw.p, out_dim, in_dim, dy.p, nullptr, t);
  const auto y = dy.get(rows * out_dim);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < out_dim; ++o) {
      double exact = 0, magnitude = 0;
      for (int64_t k = 0; k < in_dim; ++k) {
        const double p = static_cast<double>(__bfloat162float(x[r * in_dim + k])) * __bfloat162float(w[o * in_dim + k]);
        exact += p;
        magnitude += std::fabs(p);
      }
      ASSERT_NEAR(y[r * out_dim + o], exact, 1e-5 * magnitude + 1e-6) << "row " << r << " output " << o;
    }
}

// Split-bf16 pairs (each row of random fp32 values as bf16 high halves and the bf16 of what
// they leave): the halves of y sum to the float64 product with the unsplit values; the FMA
// kernel, which adds each pair before multiplying, leaves the low halves zero.
void check_gemv_pairs(int64_t pairs, int64_t out_dim, int64_t in_dim, uint32_t seed, const cuda::GemvTiling& t = {}) {
  SCOPED_TRACE("pairs " + std::to_string(pairs) + " out " + std::to_string(out_dim) + " in " +
               std::to_string(in_dim) + (t.tensor_cores ? " tensor cores" : ""));
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<cuda::bf16> x(2 * pairs * in_dim);
  std::vector<double> v(pairs * in_dim);
  for (int64_t i = 0; i < pairs * in_dim; ++i) {
    const float f = u(rng);
    const cuda::bf16 hi = __float2bfloat16(f);
    const cuda::bf16 lo = __float2bfloat16(f - __bfloat162float(hi));
    x[i] = hi;
    x[pairs * in_dim + i] = lo;
    v[i] = static_cast<double>(__bfloat162float(hi)) + __bfloat162float(lo);
  }
  const auto w = random_bf16(out_dim * in_dim, rng);
  Device<cuda::bf16> dx(x), dw(w);
  Device<float> dy(2 * pairs * out_dim);
  cuda::gemv_pairs(dx.p, 2 * pairs, dw.p, out_dim, in_dim, dy.p, nullptr, t);
  const auto y = dy.get(2 * pairs * out_dim);
  for (int64_t r = 0; r < pairs; ++r)
    for (int64_t o = 0; o < out_dim; ++o) {
      double exact = 0, magnitude = 0;
      for (int64_t k = 0; k < in_dim; ++k) {
        const double p = v[r * in_dim + k] * __bfloat162float(w[o * in_dim + k]);
        exact += p;
        magnitude += std::fabs(p);
      }
      const float hi = y[r * out_dim + o], lo = y[(pairs + r) * out_dim + o];
      ASSERT_NEAR(static_cast<double>(hi) + lo, exact, 1e-5 * magnitude + 1e-6) << "pair " << r << " output " << o;
      if (!t.tensor_cores) {
        ASSERT_EQ(lo, 0.f) << "pair " << r << " output " << o;
      }
    }
}

TEST(CudaGemvKernel, MatchesFloat64Products) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  uint32_t seed = 1;
  for (int64_t rows = 1; rows <= cuda::kGemvRowsMax; ++rows) check_gemv(rows, 37, 4544, seed++);
  for (const auto& [out_dim, in_dim] :
       {std::pair<int64_t, int64_t>{1, 8}, {5, 64}, {6, 2056}, {4672, 4544}, {9, 18176}})
    for (int64_t rows : {int64_t{1}, int64_t{2}, cuda::kGemvRowsMax}) check_gemv(rows, out_dim, in_dim, seed++);
}

TEST(CudaGemvKernel, SplitPairsMatchFloat64Products) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  uint32_t seed = 50;
  for (const auto& [out_dim, in_dim] : {std::pair<int64_t, int64_t>{1, 8}, {37, 4544}, {4672, 4544}, {9, 18176}})
    for (const cuda::GemvTiling& t : {cuda::GemvTiling{}, cuda::GemvTiling{128, 4, 4}, cuda::GemvTiling{32, 1, 2}})
      for (int64_t pairs = 1; pairs <= cuda::kGemvRowsMax / 2; ++pairs)
        check_gemv_pairs(pairs, out_dim, in_dim, seed++, t);
  for (const auto& [out_dim, in_dim] : {std::pair<int64_t, int64_t>{5, 128}, {300, 4544}})
    for (int64_t pairs : {int64_t{1}, int64_t{2}, cuda::kGemvMmaRowsMax / 2})
      check_gemv_pairs(pairs, out_dim, in_dim, seed++, cuda::kGemvMmaTiling);
}

// The tensor-core kernel: every row count, slices that do not divide evenly among the warps,
// output counts that leave the last 16-row block part-empty, each tiling.
TEST(CudaGemvKernel, TensorCoreKernelMatchesFloat64Products) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  uint32_t seed = 100;
  for (int64_t rows = 1; rows <= cuda::kGemvMmaRowsMax; ++rows) check_gemv(rows, 37, 4544, seed++, cuda::kGemvMmaTiling);
  for (const auto& [out_dim, in_dim] :
       {std::pair<int64_t, int64_t>{1, 64}, {5, 128}, {16, 640}, {300, 4544}, {9, 18176}})
    for (int64_t rows : {int64_t{1}, int64_t{3}, cuda::kGemvMmaRowsMax})
      for (int threads : {128, 256})
        for (int unroll : {1, 2, 4}) check_gemv(rows, out_dim, in_dim, seed++, {threads, 16, unroll, true});
  check_gemv(cuda::kGemvMmaRowsMax, 4672, 4544, seed++, cuda::kGemvMmaTiling);
}

// The GELU epilogue gives bias_gelu's bits from gemv's output, on split-bf16 pairs and on plain
// rows, for each row count, tiling, with and without bias, including output counts that leave a
// block part-empty.
TEST(CudaGemvKernel, GeluEpilogueMatchesSeparateKernels) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  std::mt19937 rng(11);
  for (bool halves : {true, false})
    for (int64_t rows : {int64_t{1}, int64_t{2}, int64_t{3}, int64_t{4}, int64_t{6}, int64_t{8}})
      for (const auto& [out_dim, in_dim] : {std::pair<int64_t, int64_t>{7, 64}, {1001, 4544}, {130, 18176}})
        for (const cuda::GemvTiling& t : {cuda::GemvTiling{}, cuda::GemvTiling{128, 4, 4}, cuda::GemvTiling{32, 1, 2},
                                           cuda::kGemvMmaTiling, cuda::GemvTiling{128, 16, 4, true}})
          for (bool with_bias : {false, true}) {
            if ((!t.tensor_cores && rows > cuda::kGemvRowsMax) || (halves && rows % 2)) continue;
            SCOPED_TRACE("rows " + std::to_string(rows) + " out " + std::to_string(out_dim) + " in " +
                         std::to_string(in_dim) + " threads " + std::to_string(t.threads) + " bias " +
                         std::to_string(with_bias) + " halves " + std::to_string(halves));
            const auto x = random_bf16(rows * in_dim, rng), w = random_bf16(out_dim * in_dim, rng);
            std::uniform_real_distribution<float> u(-1.f, 1.f);
            std::vector<float> b(out_dim);
            for (float& v : b) v = u(rng);
            Device<cuda::bf16> dx(x), dw(w), fused(rows * out_dim), separate(rows * out_dim);
            Device<float> db(b), dy(rows * out_dim);
            const float* bias = with_bias ? db.p : nullptr;
            if (halves)
              cuda::gemv_pairs(dx.p, rows, dw.p, out_dim, in_dim, dy.p, nullptr, t);
            else
              cuda::gemv(dx.p, rows, dw.p, out_dim, in_dim, dy.p, nullptr, t);
            cuda::bias_gelu(dy.p, bias, halves ? rows / 2 : rows, out_dim, separate.p, nullptr, halves);
            cuda::gemv_bias_gelu(dx.p, rows, dw.p, out_dim, in_dim, bias, fused.p, nullptr, t, halves);
            const auto want = separate.get(rows * out_dim), got = fused.get(rows * out_dim);
            for (int64_t i = 0; i < rows * out_dim; ++i)
              ASSERT_EQ(__bfloat16_as_ushort(got[i]), __bfloat16_as_ushort(want[i])) << "element " << i;
          }
  Device<cuda::bf16> x(64), w(64), g(64);
  EXPECT_THROW(cuda::gemv_bias_gelu(x.p, 3, w.p, 1, 8, nullptr, g.p, nullptr), InvalidArgument);
  Device<float> y(64);
  EXPECT_THROW(cuda::gemv_pairs(x.p, 3, w.p, 1, 8, y.p, nullptr), InvalidArgument);
}

TEST(CudaGemvKernel, RefusesShapesItCannotRead) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  Device<cuda::bf16> x(64), w(64);
  EXPECT_FALSE(cuda::gemv_fits(cuda::kGemvRowsMax + 1, 8, x.p, w.p));
  EXPECT_FALSE(cuda::gemv_fits(0, 8, x.p, w.p));
  EXPECT_FALSE(cuda::gemv_fits(1, 12, x.p, w.p));     // reduction not in whole 16-byte chunks
  EXPECT_FALSE(cuda::gemv_fits(1, 8, x.p + 1, w.p));  // misaligned activations
  EXPECT_FALSE(cuda::gemv_fits(1, 8, x.p, w.p + 3));  // misaligned weights
  EXPECT_TRUE(cuda::gemv_fits(1, 8, x.p + 8, w.p + 8));
  EXPECT_THROW(cuda::gemv(x.p, cuda::kGemvRowsMax + 1, w.p, 1, 8, nullptr, nullptr), InvalidArgument);
  EXPECT_FALSE(cuda::gemv_mma_fits(cuda::kGemvMmaRowsMax + 1, 64, x.p, w.p));
  EXPECT_FALSE(cuda::gemv_mma_fits(1, 56, x.p, w.p));  // reduction not in whole 64-wide slices
  EXPECT_TRUE(cuda::gemv_mma_fits(cuda::kGemvMmaRowsMax, 64, x.p, w.p));
  EXPECT_THROW(cuda::gemv(x.p, 1, w.p, 1, 56, nullptr, nullptr, cuda::kGemvMmaTiling), InvalidArgument);
  EXPECT_THROW(cuda::gemv(x.p, 1, w.p, 1, 64, nullptr, nullptr, {64, 16, 2, true}), InvalidArgument);
}

}  // namespace
}  // namespace eyrie
#endif
