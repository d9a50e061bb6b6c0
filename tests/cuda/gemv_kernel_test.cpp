// The weight-streaming product for a few rows against a float64 product on the host: every row
// count it takes, reduction lengths shorter and longer than one pass of the block, output
// counts that do not fill the last block, and the shapes it must refuse.
#include <gtest/gtest.h>

#if EYRIE_HAS_CUDA
#include <cmath>
#include <cstring>
#include <random>
#include <tuple>

#include "cuda/check.hpp"
#include "cuda/cuda_engine.hpp"
#include "cuda/kernels.hpp"
#include "model/dtype.hpp"
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

// Rows of random fp32 values as the kernels take them: plain bf16 rows, or split-bf16 pairs
// (the high halves, then the low). value[r * in_dim + k] is what row r's element k stands for.
struct Rows {
  std::vector<cuda::bf16> x;
  std::vector<double> value;
};

Rows random_rows(int64_t rows, int64_t in_dim, bool halves, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  const int64_t n = halves ? rows / 2 : rows;
  Rows r{std::vector<cuda::bf16>(rows * in_dim), std::vector<double>(n * in_dim)};
  for (int64_t i = 0; i < n * in_dim; ++i) {
    const float f = u(rng);
    const cuda::bf16 hi = __float2bfloat16(f);
    r.x[i] = hi;
    r.value[i] = __bfloat162float(hi);
    if (halves) {
      const cuda::bf16 lo = __float2bfloat16(f - __bfloat162float(hi));
      r.x[n * in_dim + i] = lo;
      r.value[i] += __bfloat162float(lo);
    }
  }
  return r;
}

// Split-bf16 pairs (each row of random fp32 values as bf16 high halves and the bf16 of what
// they leave): the halves of y sum to the float64 product with the unsplit values; the FMA
// kernel, which adds each pair before multiplying, leaves the low halves zero.
void check_gemv_pairs(int64_t pairs, int64_t out_dim, int64_t in_dim, uint32_t seed, const cuda::GemvTiling& t = {}) {
  SCOPED_TRACE("pairs " + std::to_string(pairs) + " out " + std::to_string(out_dim) + " in " +
               std::to_string(in_dim) + (t.tensor_cores ? " tensor cores" : ""));
  std::mt19937 rng(seed);
  const auto [x, v] = random_rows(2 * pairs, in_dim, true, rng);
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
            cuda::gemv_bias_gelu(dx.p, rows, dw.p, out_dim, in_dim, bias, fused.p, nullptr, t,
                                 halves ? cuda::Activations::split_halves : cuda::Activations::bf16_rows);
            const auto want = separate.get(rows * out_dim), got = fused.get(rows * out_dim);
            for (int64_t i = 0; i < rows * out_dim; ++i)
              ASSERT_EQ(__bfloat16_as_ushort(got[i]), __bfloat16_as_ushort(want[i])) << "element " << i;
          }
  Device<cuda::bf16> x(64), w(64), g(64);
  EXPECT_THROW(cuda::gemv_bias_gelu(x.p, 3, w.p, 1, 8, nullptr, g.p, nullptr), InvalidArgument);
  Device<float> y(64);
  EXPECT_THROW(cuda::gemv_pairs(x.p, 3, w.p, 1, 8, y.p, nullptr), InvalidArgument);
}

// Two products in one launch: a GELU output (the same bits as gemv_bias_gelu alone) beside a
// sum of two terms of different reductions with both biases (the float64 sum, the low halves of
// split rows zero), on every row count, plain and split, for tilings whose blocks leave the
// products' last blocks part-empty and whose threads outnumber a term's chunks.
TEST(CudaGemvKernel, ProductsInOneLaunchMatchFloat64AndSeparateLaunches) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  std::mt19937 rng(77);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (bool halves : {false, true})
    for (int64_t rows = 1; rows <= cuda::kGemvRowsMax; ++rows)
      for (const auto& [in1, in2] : {std::pair<int64_t, int64_t>{64, 4544}, {4544, 184}, {8, 18176}})
        for (const cuda::GemvTiling& t : {cuda::GemvTiling{}, cuda::GemvTiling{128, 4, 4}, cuda::GemvTiling{32, 1, 2},
                                          cuda::GemvTiling{256, 2, 2}}) {
          if (halves && rows % 2) continue;
          const int64_t n = halves ? rows / 2 : rows, out_sum = 37, out_gelu = 131;
          SCOPED_TRACE("rows " + std::to_string(rows) + " in " + std::to_string(in1) + " + " + std::to_string(in2) +
                       " threads " + std::to_string(t.threads) + " halves " + std::to_string(halves));
          const Rows x1 = random_rows(rows, in1, halves, rng), x2 = random_rows(rows, in2, halves, rng);
          const auto w1 = random_bf16(out_sum * in1, rng), w2 = random_bf16(out_sum * in2, rng);
          const auto wg = random_bf16(out_gelu * in1, rng);
          std::vector<float> b1(out_sum), b2(out_sum), bg(out_gelu);
          for (auto* b : {&b1, &b2, &bg})
            for (float& v : *b) v = u(rng);
          Device<cuda::bf16> dx1(x1.x), dx2(x2.x), dw1(w1), dw2(w2), dwg(wg), g(rows * out_gelu),
              g_alone(rows * out_gelu);
          Device<float> db1(b1), db2(b2), dbg(bg), y(rows * out_sum);
          const cuda::GemvProduct gelu{
              .term = {dx1.p, dwg.p, in1}, .term2 = {}, .out_dim = out_gelu, .g = g.p, .bias = dbg.p};
          const cuda::GemvProduct sum{.term = {dx1.p, dw1.p, in1},
                                      .term2 = {dx2.p, dw2.p, in2},
                                      .out_dim = out_sum,
                                      .y = y.p,
                                      .bias = db1.p,
                                      .bias2 = db2.p};
          const auto form = halves ? cuda::Activations::split_halves : cuda::Activations::bf16_rows;
          cuda::gemv_products(rows, form, gelu, &sum, nullptr, t);
          cuda::gemv_bias_gelu(dx1.p, rows, dwg.p, out_gelu, in1, dbg.p, g_alone.p, nullptr, t, form);
          const auto got_g = g.get(rows * out_gelu), want_g = g_alone.get(rows * out_gelu);
          for (int64_t i = 0; i < rows * out_gelu; ++i)
            ASSERT_EQ(__bfloat16_as_ushort(got_g[i]), __bfloat16_as_ushort(want_g[i])) << "GELU element " << i;
          const auto got = y.get(rows * out_sum);
          for (int64_t r = 0; r < n; ++r)
            for (int64_t o = 0; o < out_sum; ++o) {
              double exact = static_cast<double>(b1[o]) + b2[o], magnitude = std::fabs(exact);
              for (const auto& [x, w, in] : {std::tuple{&x1, &w1, in1}, std::tuple{&x2, &w2, in2}})
                for (int64_t k = 0; k < in; ++k) {
                  const double p = x->value[r * in + k] * __bfloat162float((*w)[o * in + k]);
                  exact += p;
                  magnitude += std::fabs(p);
                }
              ASSERT_NEAR(got[r * out_sum + o], exact, 1e-5 * magnitude + 1e-6) << "row " << r << " output " << o;
              if (halves) {
                ASSERT_EQ(got[(n + r) * out_sum + o], 0.f) << "low half of row " << r << " output " << o;
              }
            }
        }
}

TEST(CudaGemvKernel, ProductsInOneLaunchRefuseWhatTheKernelCannotDo) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  Device<cuda::bf16> x(64), w(64), g(64);
  Device<float> y(64);
  const cuda::GemvProduct ok{.term = {x.p, w.p, 8}, .term2 = {}, .out_dim = 1, .y = y.p};
  EXPECT_NO_THROW(cuda::gemv_products(2, cuda::Activations::split_halves, ok, &ok, nullptr));
  EXPECT_THROW(cuda::gemv_products(3, cuda::Activations::split_halves, ok, nullptr, nullptr),
               InvalidArgument);  // halves come in pairs
  EXPECT_THROW(cuda::gemv_products(cuda::kGemvRowsMax + 1, cuda::Activations::bf16_rows, ok, nullptr, nullptr),
               InvalidArgument);
  EXPECT_THROW(cuda::gemv_products(1, cuda::Activations::bf16_rows, ok, nullptr, nullptr, cuda::kGemvMmaTiling),
               InvalidArgument);
  auto bad = ok;
  bad.g = g.p;  // both outputs
  EXPECT_THROW(cuda::gemv_products(1, cuda::Activations::bf16_rows, ok, &bad, nullptr), InvalidArgument);
  bad = ok;
  bad.term.in_dim = 12;  // not whole 16-byte chunks
  EXPECT_THROW(cuda::gemv_products(1, cuda::Activations::bf16_rows, bad, nullptr, nullptr), InvalidArgument);
  bad = ok;
  bad.term2 = {x.p + 1, w.p, 8};  // misaligned
  EXPECT_THROW(cuda::gemv_products(1, cuda::Activations::bf16_rows, bad, nullptr, nullptr), InvalidArgument);
  bad = ok;
  bad.y = nullptr;
  bad.g = g.p;
  bad.term2 = {x.p, w.p, 8};  // a GELU of two terms
  EXPECT_THROW(cuda::gemv_products(1, cuda::Activations::bf16_rows, bad, nullptr, nullptr), InvalidArgument);
  bad = ok;
  bad.out_dim = 0;
  EXPECT_THROW(cuda::gemv_products(1, cuda::Activations::bf16_rows, bad, nullptr, nullptr), InvalidArgument);
}

// Split rows given whole (Activations::fp32_rows): each pair's sum as one fp32 row gives the very
// bits the pairs give, since the kernel adds a pair's halves exactly before multiplying. The
// GELU values are those the split epilogue rounds into halves. For one and two pairs, one and
// two terms, tilings whose blocks leave the last part-empty.
TEST(CudaGemvKernel, Fp32RowsGiveTheBitsOfTheirSplitPairs) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  std::mt19937 rng(91);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (int64_t pairs = 1; pairs <= cuda::kGemvRowsMax / 2; ++pairs)
    for (const auto& [out_dim, in_dim] : {std::pair<int64_t, int64_t>{1, 8}, {37, 4544}, {4672, 4544}, {130, 18176}})
      for (const cuda::GemvTiling& t : {cuda::GemvTiling{}, cuda::GemvTiling{128, 4, 4}, cuda::GemvTiling{32, 1, 2}}) {
        SCOPED_TRACE("pairs " + std::to_string(pairs) + " out " + std::to_string(out_dim) + " in " +
                     std::to_string(in_dim) + " threads " + std::to_string(t.threads));
        const int64_t rows = 2 * pairs;
        const Rows x = random_rows(rows, in_dim, true, rng), x2 = random_rows(rows, 64, true, rng);
        // hi + lo in fp32 is exact: the values the halves stand for.
        std::vector<float> whole(x.value.begin(), x.value.end()), whole2(x2.value.begin(), x2.value.end());
        const auto w = random_bf16(out_dim * in_dim, rng), w2 = random_bf16(out_dim * 64, rng);
        std::vector<float> b(out_dim);
        for (float& v : b) v = u(rng);
        Device<cuda::bf16> dx(x.x), dx2(x2.x), dw(w), dw2(w2), g_split(rows * out_dim), g_whole(rows * out_dim);
        Device<float> dwhole(whole), dwhole2(whole2), db(b), y_split(rows * out_dim), y_whole(rows * out_dim);
        const auto* xw = reinterpret_cast<const cuda::bf16*>(dwhole.p);
        const auto* xw2 = reinterpret_cast<const cuda::bf16*>(dwhole2.p);
        const auto same_y = [&](const char* what) {
          const auto want = y_split.get(rows * out_dim), got = y_whole.get(rows * out_dim);
          for (int64_t i = 0; i < rows * out_dim; ++i) ASSERT_EQ(got[i], want[i]) << what << " element " << i;
        };
        cuda::gemv_pairs(dx.p, rows, dw.p, out_dim, in_dim, y_split.p, nullptr, t);
        cuda::gemv_pairs(xw, rows, dw.p, out_dim, in_dim, y_whole.p, nullptr, t, cuda::Activations::fp32_rows);
        same_y("gemv_pairs");
        const cuda::GemvProduct two_split{.term = {dx.p, dw.p, in_dim},
                                          .term2 = {dx2.p, dw2.p, 64},
                                          .out_dim = out_dim,
                                          .y = y_split.p,
                                          .bias = db.p};
        const cuda::GemvProduct two_whole{
            .term = {xw, dw.p, in_dim}, .term2 = {xw2, dw2.p, 64}, .out_dim = out_dim, .y = y_whole.p, .bias = db.p};
        cuda::gemv_products(rows, cuda::Activations::split_halves, two_split, nullptr, nullptr, t);
        cuda::gemv_products(rows, cuda::Activations::fp32_rows, two_whole, nullptr, nullptr, t);
        same_y("two terms");
        cuda::gemv_bias_gelu(dx.p, rows, dw.p, out_dim, in_dim, db.p, g_split.p, nullptr, t);
        cuda::gemv_bias_gelu(xw, rows, dw.p, out_dim, in_dim, db.p, g_whole.p, nullptr, t,
                             cuda::Activations::fp32_rows);
        const auto halves = g_split.get(rows * out_dim);
        const auto bytes = g_whole.get(rows * out_dim);
        std::vector<float> g(pairs * out_dim);
        std::memcpy(g.data(), bytes.data(), g.size() * sizeof(float));
        for (int64_t i = 0; i < pairs * out_dim; ++i) {
          const cuda::bf16 hi = __float2bfloat16(g[i]), lo = __float2bfloat16(g[i] - __bfloat162float(hi));
          ASSERT_EQ(__bfloat16_as_ushort(halves[i]), __bfloat16_as_ushort(hi)) << "GELU high half " << i;
          ASSERT_EQ(__bfloat16_as_ushort(halves[pairs * out_dim + i]), __bfloat16_as_ushort(lo))
              << "GELU low half " << i;
        }
      }
  Device<cuda::bf16> x(64), w(64);
  Device<float> y(64);
  EXPECT_THROW(cuda::gemv_pairs(x.p, 2, w.p, 1, 64, y.p, nullptr, {}, cuda::Activations::bf16_rows), InvalidArgument);
  EXPECT_THROW(cuda::gemv_pairs(x.p, 2, w.p, 1, 64, y.p, nullptr, cuda::kGemvMmaTiling, cuda::Activations::fp32_rows),
               InvalidArgument);
  // fp16 rows are cuBLAS's to multiply.
  EXPECT_THROW(cuda::gemv_pairs(x.p, 2, w.p, 1, 64, y.p, nullptr, {}, cuda::Activations::f16_rows), InvalidArgument);
  const cuda::GemvProduct p{.term = {x.p, w.p, 64}, .term2 = {}, .out_dim = 1, .y = y.p};
  EXPECT_THROW(cuda::gemv_products(2, cuda::Activations::f16_rows, p, nullptr, nullptr), InvalidArgument);
}

// fp16 weights (the MLP's with fp16_mlp) on every form of activation rows the FMA kernel reads,
// against float64; a two-term product with a bf16 and an fp16 term; the GELU epilogue giving the
// bits of the product it stands for; and the tensor-core kernel, which reads bf16 alone, refusing.
TEST(CudaGemvKernel, Fp16WeightsMatchFloat64Products) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  std::mt19937 rng(123);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  auto random_f16 = [&](std::size_t n) {
    std::vector<uint16_t> v(n);
    for (auto& x : v) x = f32_to_f16(u(rng));
    return v;
  };
  constexpr auto kF16 = cuda::WeightType::float16;
  for (const auto form : {cuda::Activations::bf16_rows, cuda::Activations::split_halves, cuda::Activations::fp32_rows})
    for (int64_t rows = 1; rows <= cuda::kGemvRowsMax; ++rows)
      for (const auto& [out_dim, in_dim] : {std::pair<int64_t, int64_t>{37, 4544}, {9, 18176}, {130, 72}}) {
        const bool pairs = form != cuda::Activations::bf16_rows;
        if (pairs && rows % 2) continue;
        const int64_t n = pairs ? rows / 2 : rows;
        SCOPED_TRACE("form " + std::to_string(static_cast<int>(form)) + " rows " + std::to_string(rows) + " out " +
                     std::to_string(out_dim) + " in " + std::to_string(in_dim));
        const Rows x = random_rows(rows, in_dim, pairs, rng), x2 = random_rows(rows, 64, pairs, rng);
        std::vector<float> whole(x.value.begin(), x.value.end()), whole2(x2.value.begin(), x2.value.end());
        const auto w = random_f16(out_dim * in_dim);
        const auto w2 = random_bf16(out_dim * 64, rng);
        Device<cuda::bf16> dx(x.x), dx2(x2.x), dw2(w2), g(rows * out_dim);
        Device<uint16_t> dw(w);
        Device<float> dwhole(whole), dwhole2(whole2), y(rows * out_dim), y2(rows * out_dim);
        const bool fp32 = form == cuda::Activations::fp32_rows;
        const auto* xin = fp32 ? reinterpret_cast<const cuda::bf16*>(dwhole.p) : dx.p;
        const auto* xin2 = fp32 ? reinterpret_cast<const cuda::bf16*>(dwhole2.p) : dx2.p;
        const auto* wf = reinterpret_cast<const cuda::bf16*>(dw.p);
        if (pairs)
          cuda::gemv_pairs(xin, rows, wf, out_dim, in_dim, y.p, nullptr, {}, form, kF16);
        else
          cuda::gemv(xin, rows, wf, out_dim, in_dim, y.p, nullptr, {}, kF16);
        const cuda::GemvProduct two{
            .term = {xin2, dw2.p, 64}, .term2 = {xin, wf, in_dim, kF16}, .out_dim = out_dim, .y = y2.p};
        cuda::gemv_products(rows, form, two, nullptr, nullptr, {});
        const auto got = y.get(rows * out_dim), got2 = y2.get(rows * out_dim);
        for (int64_t r = 0; r < n; ++r)
          for (int64_t o = 0; o < out_dim; ++o) {
            double exact = 0, magnitude = 0, exact2 = 0, magnitude2 = 0;
            for (int64_t k = 0; k < in_dim; ++k) {
              const double p = x.value[r * in_dim + k] * f16_to_f32(w[o * in_dim + k]);
              exact += p;
              magnitude += std::fabs(p);
            }
            for (int64_t k = 0; k < 64; ++k) {
              const double p = x2.value[r * 64 + k] * __bfloat162float(w2[o * 64 + k]);
              exact2 += p;
              magnitude2 += std::fabs(p);
            }
            ASSERT_NEAR(got[r * out_dim + o], exact, 1e-5 * magnitude + 1e-6) << "row " << r << " output " << o;
            ASSERT_NEAR(got2[r * out_dim + o], exact + exact2, 1e-5 * (magnitude + magnitude2) + 1e-6)
                << "two terms, row " << r << " output " << o;
          }
        // The GELU epilogue on fp16 weights: the bits bias_gelu writes from the product's y.
        cuda::gemv_bias_gelu(xin, rows, wf, out_dim, in_dim, nullptr, g.p, nullptr, {}, form, kF16);
        if (!fp32) {
          Device<cuda::bf16> want(rows * out_dim);
          cuda::bias_gelu(y.p, nullptr, n, out_dim, want.p, nullptr, pairs);
          const auto a = g.get(rows * out_dim), b = want.get(rows * out_dim);
          for (int64_t i = 0; i < rows * out_dim; ++i)
            ASSERT_EQ(__bfloat16_as_ushort(a[i]), __bfloat16_as_ushort(b[i])) << "GELU element " << i;
        }
      }
  Device<cuda::bf16> x(64), w(64);
  Device<float> y(64);
  EXPECT_THROW(cuda::gemv(x.p, 1, w.p, 1, 64, y.p, nullptr, cuda::kGemvMmaTiling, kF16), InvalidArgument);
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
