// The LayerNorm that takes the previous block's residual add into its pass over the row gives
// the same bits as the residual add followed by separate LayerNorms, for every combination of
// pending outputs, biases and a second norm, at widths below, at and past one block of threads,
// for a few rows and for many (each has its own threads per row), with 16-byte accesses and
// without (widths not a multiple of 4); and LayerNorm itself agrees with float64, as do the
// logits' row statistics.
#include <gtest/gtest.h>

#if EYRIE_HAS_CUDA
#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "cuda/check.hpp"
#include "cuda/cuda_engine.hpp"
#include "cuda/kernels.hpp"
#include "model/dtype.hpp"
#include "tests/cuda/device_buffer.hpp"

namespace eyrie {
namespace {

using test::Device;
using test::random_vector;

std::vector<uint16_t> bits(const std::vector<cuda::bf16>& v) {
  std::vector<uint16_t> out(v.size());
  std::memcpy(out.data(), v.data(), v.size() * sizeof(uint16_t));
  return out;
}

struct Case {
  bool pending, second_output, bias, second_norm;
};

void check_fused_norm(int64_t rows, int64_t hidden, const Case& c, uint32_t seed) {
  SCOPED_TRACE("rows " + std::to_string(rows) + " hidden " + std::to_string(hidden) + " pending " +
               std::to_string(c.pending) + " second output " + std::to_string(c.second_output) + " bias " +
               std::to_string(c.bias) + " second norm " + std::to_string(c.second_norm));
  std::mt19937 rng(seed);
  const std::size_t n = rows * hidden;
  const auto x = random_vector(n, rng, 3.f);
  Device<float> a(random_vector(2 * n, rng, 1.f)), a_bias(random_vector(hidden, rng, 0.5f));
  Device<float> o(random_vector(2 * n, rng, 1.f)), o_bias(random_vector(hidden, rng, 0.5f));
  Device<float> w1(random_vector(hidden, rng, 0.5f, 1.f)), b1(random_vector(hidden, rng, 0.2f));
  Device<float> w2(random_vector(hidden, rng, 0.5f, 1.f)), b2(random_vector(hidden, rng, 0.2f));

  cuda::PendingResidual res;
  if (c.pending) {
    res.a = a.p;
    res.a_bias = c.bias ? a_bias.p : nullptr;
    if (c.second_output) {
      res.c = o.p;
      res.c_bias = c.bias ? o_bias.p : nullptr;
    }
  }
  cudaStream_t s = nullptr;

  Device<float> x_ref(x);
  Device<cuda::bf16> ref1(2 * n), ref2(2 * n);
  if (res.a) cuda::residual_add(x_ref.p, res.a, res.a_bias, res.c, res.c_bias, rows, hidden, s);
  cuda::layer_norm(x_ref.p, nullptr, rows, hidden, w1.p, b1.p, 1e-5f, ref1.p, s);
  if (c.second_norm) cuda::layer_norm(x_ref.p, nullptr, rows, hidden, w2.p, b2.p, 1e-5f, ref2.p, s);

  Device<float> x_fused(x);
  Device<cuda::bf16> out1(2 * n), out2(2 * n);
  cuda::residual_layer_norm(x_fused.p, res, rows, hidden, w1.p, b1.p, c.second_norm ? w2.p : nullptr,
                            c.second_norm ? b2.p : nullptr, 1e-5f, out1.p, c.second_norm ? out2.p : nullptr, s);
  EYRIE_CUDA_CHECK(cudaDeviceSynchronize());

  EXPECT_EQ(x_ref.get(n), x_fused.get(n));
  EXPECT_EQ(bits(ref1.get(2 * n)), bits(out1.get(2 * n)));
  if (c.second_norm) {
    EXPECT_EQ(bits(ref2.get(2 * n)), bits(out2.get(2 * n)));
  }
  // The pending add really happened: without it the normed rows would differ.
  if (res.a) {
    EXPECT_NE(x, x_fused.get(n));
  }
}

TEST(CudaNormKernel, FusedResidualLayerNormMatchesSeparateKernels) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  uint32_t seed = 1;
  for (const auto& [rows, hidden] :
       {std::pair<int64_t, int64_t>{1, 64}, {3, 256}, {7, 1000}, {5, 1001}, {2, 4544}, {300, 4544}, {130, 1001},
        {33, 8192}, {2, 14848}, {1, 16384}})
    for (const Case& c :
         {Case{false, false, false, false}, Case{false, false, false, true}, Case{true, false, true, false},
          Case{true, false, false, false}, Case{true, true, true, true}, Case{true, true, false, true}})
      check_fused_norm(rows, hidden, c, seed++);
}

// GEMM outputs without low halves (bf16 activations): the kernels that sum halves read only
// the high rows, and give the bits they give when the low halves are there and zero.
TEST(CudaNormKernel, OutputsWithoutLowHalvesActAsZeroLowHalves) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  std::mt19937 rng(9);
  for (const auto& [rows, hidden] : {std::pair<int64_t, int64_t>{3, 4544}, {130, 1001}}) {
    SCOPED_TRACE("rows " + std::to_string(rows) + " hidden " + std::to_string(hidden));
    const std::size_t n = rows * hidden;
    const auto x = random_vector(n, rng, 3.f), hi_a = random_vector(n, rng, 1.f), hi_c = random_vector(n, rng, 1.f);
    const auto bias = random_vector(hidden, rng, 0.5f), w = random_vector(hidden, rng, 0.5f, 1.f),
               b = random_vector(hidden, rng, 0.2f);
    // Zero low halves after the high rows, against the high rows alone followed by garbage
    // that must not be read (NaN would show through any sum).
    auto with_lo = [&](const std::vector<float>& hi, float lo) {
      std::vector<float> v(hi);
      v.resize(2 * n, lo);
      return v;
    };
    Device<float> a0(with_lo(hi_a, 0.f)), c0(with_lo(hi_c, 0.f)), a1(with_lo(hi_a, NAN)), c1(with_lo(hi_c, NAN));
    Device<float> dbias(bias), dw(w), db(b);

    Device<float> x_add0(x), x_add1(x);
    cuda::residual_add(x_add0.p, a0.p, dbias.p, c0.p, dbias.p, rows, hidden, nullptr);
    cuda::residual_add(x_add1.p, a1.p, dbias.p, c1.p, dbias.p, rows, hidden, nullptr, false);
    EXPECT_EQ(x_add0.get(n), x_add1.get(n));

    Device<float> x_norm0(x), x_norm1(x);
    Device<cuda::bf16> out0(2 * n), out1(2 * n);
    cuda::residual_layer_norm(x_norm0.p, {a0.p, dbias.p, c0.p, dbias.p}, rows, hidden, dw.p, db.p, nullptr, nullptr,
                              1e-5f, out0.p, nullptr, nullptr);
    cuda::residual_layer_norm(x_norm1.p, {a1.p, dbias.p, c1.p, dbias.p, false}, rows, hidden, dw.p, db.p, nullptr,
                              nullptr, 1e-5f, out1.p, nullptr, nullptr);
    EXPECT_EQ(x_norm0.get(n), x_norm1.get(n));
    EXPECT_EQ(bits(out0.get(2 * n)), bits(out1.get(2 * n)));
    // Without output halves: the same high halves, and nothing written past them.
    const std::vector<cuda::bf16> sentinel(2 * n, __float2bfloat16(-7.f));
    Device<float> x_norm2(x);
    Device<cuda::bf16> out2(sentinel);
    cuda::residual_layer_norm(x_norm2.p, {a1.p, dbias.p, c1.p, dbias.p, false}, rows, hidden, dw.p, db.p, nullptr,
                              nullptr, 1e-5f, out2.p, nullptr, nullptr, cuda::Activations::bf16_rows);
    const auto high_only = out2.get(2 * n), want_norm = out0.get(n);
    EXPECT_EQ(bits({high_only.begin(), high_only.begin() + n}), bits(want_norm));
    EXPECT_EQ(bits({high_only.begin() + n, high_only.end()}), bits({sentinel.begin() + n, sentinel.end()}));

    Device<cuda::bf16> g0(2 * n), g1(sentinel);
    cuda::bias_gelu(a0.p, dbias.p, rows, hidden, g0.p, nullptr);
    cuda::bias_gelu(a1.p, dbias.p, rows, hidden, g1.p, nullptr, false);
    const auto gelu_high = g1.get(2 * n), want_gelu = g0.get(n);
    EXPECT_EQ(bits({gelu_high.begin(), gelu_high.begin() + n}), bits(want_gelu));
    EXPECT_EQ(bits({gelu_high.begin() + n, gelu_high.end()}), bits({sentinel.begin() + n, sentinel.end()}));

    Device<float> s0(n), s1(n);
    cuda::combine_halves(a0.p, rows, hidden, s0.p, nullptr);
    cuda::combine_halves(a1.p, rows, hidden, s1.p, nullptr, false);
    EXPECT_EQ(s0.get(n), s1.get(n));
  }
}

// Outputs as fp32 rows (cuda::Activations::fp32_rows) are the values the split outputs round into
// halves, with the residual add, both norms and picked rows, on 16-byte accesses and without.
TEST(CudaNormKernel, Fp32OutputsAreTheValuesOfTheSplitHalves) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  std::mt19937 rng(12);
  for (const auto& [rows, hidden] :
       {std::pair<int64_t, int64_t>{1, 4544}, {2, 64}, {3, 1001}, {1, 16384}, {130, 4544}, {70, 1001}}) {
    SCOPED_TRACE("rows " + std::to_string(rows) + " hidden " + std::to_string(hidden));
    const std::size_t n = rows * hidden;
    const auto x = random_vector(n, rng, 3.f);
    Device<float> a(random_vector(2 * n, rng, 1.f)), a_bias(random_vector(hidden, rng, 0.5f));
    Device<float> w1(random_vector(hidden, rng, 0.5f, 1.f)), b1(random_vector(hidden, rng, 0.2f));
    Device<float> w2(random_vector(hidden, rng, 0.5f, 1.f)), b2(random_vector(hidden, rng, 0.2f));
    const auto halves_match = [&](const std::vector<cuda::bf16>& split, const std::vector<cuda::bf16>& whole_bytes,
                                  std::size_t count, const char* what) {
      std::vector<float> whole(count);
      std::memcpy(whole.data(), whole_bytes.data(), count * sizeof(float));
      for (std::size_t i = 0; i < count; ++i) {
        const cuda::bf16 hi = __float2bfloat16(whole[i]), lo = __float2bfloat16(whole[i] - __bfloat162float(hi));
        ASSERT_EQ(__bfloat16_as_ushort(split[i]), __bfloat16_as_ushort(hi)) << what << " high half " << i;
        ASSERT_EQ(__bfloat16_as_ushort(split[count + i]), __bfloat16_as_ushort(lo)) << what << " low half " << i;
      }
    };
    Device<float> x_split(x), x_whole(x);
    Device<cuda::bf16> s1(2 * n), s2(2 * n), f1(2 * n), f2(2 * n);
    const cuda::PendingResidual res{a.p, a_bias.p, nullptr, nullptr};
    cuda::residual_layer_norm(x_split.p, res, rows, hidden, w1.p, b1.p, w2.p, b2.p, 1e-5f, s1.p, s2.p, nullptr);
    cuda::residual_layer_norm(x_whole.p, res, rows, hidden, w1.p, b1.p, w2.p, b2.p, 1e-5f, f1.p, f2.p, nullptr,
                              cuda::Activations::fp32_rows);
    EXPECT_EQ(x_split.get(n), x_whole.get(n));
    halves_match(s1.get(2 * n), f1.get(2 * n), n, "first norm");
    halves_match(s2.get(2 * n), f2.get(2 * n), n, "second norm");
    // The final norm's picked rows: the last row, then the first.
    Device<int32_t> pick(std::vector<int32_t>{static_cast<int32_t>(rows - 1), 0});
    Device<cuda::bf16> ps(4 * hidden), pf(4 * hidden);
    cuda::layer_norm(x_split.p, pick.p, 2, hidden, w1.p, b1.p, 1e-5f, ps.p, nullptr);
    cuda::layer_norm(x_split.p, pick.p, 2, hidden, w1.p, b1.p, 1e-5f, pf.p, nullptr, cuda::Activations::fp32_rows);
    halves_match(ps.get(4 * hidden), pf.get(4 * hidden), 2 * hidden, "picked rows");
  }
}

TEST(CudaNormKernel, LayerNormMatchesFloat64) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  std::mt19937 rng(5);
  for (const auto& [rows, hidden] : {std::pair<int64_t, int64_t>{1, 64}, {2, 4544}, {300, 4544}, {5, 1001},
                                     {130, 1001}, {70, 16384}, {2, 14848}}) {
    SCOPED_TRACE("rows " + std::to_string(rows) + " hidden " + std::to_string(hidden));
    const std::size_t n = rows * hidden;
    const auto x = random_vector(n, rng, 4.f, 1.f), w = random_vector(hidden, rng, 0.5f, 1.f),
               b = random_vector(hidden, rng, 0.2f);
    Device<float> dx(x), dw(w), db(b);
    Device<cuda::bf16> out(2 * n);
    cuda::layer_norm(dx.p, nullptr, rows, hidden, dw.p, db.p, 1e-5f, out.p, nullptr);
    const auto got = out.get(2 * n);
    double worst = 0;
    for (int64_t r = 0; r < rows; ++r) {
      double mean = 0, var = 0;
      for (int64_t i = 0; i < hidden; ++i) mean += x[r * hidden + i];
      mean /= static_cast<double>(hidden);
      for (int64_t i = 0; i < hidden; ++i) var += (x[r * hidden + i] - mean) * (x[r * hidden + i] - mean);
      const double inv = 1.0 / std::sqrt(var / static_cast<double>(hidden) + 1e-5);
      for (int64_t i = 0; i < hidden; ++i) {
        const double want = (x[r * hidden + i] - mean) * inv * w[i] + b[i];
        const std::size_t at = r * hidden + i;
        const double have = static_cast<double>(__bfloat162float(got[at])) + __bfloat162float(got[n + at]);
        worst = std::max(worst, std::abs(have - want));
      }
    }
    EXPECT_LT(worst, 2e-5) << "largest absolute difference from float64";
  }
}

// GELU in place on a bf16 product gives bias_gelu's bits for the same values as fp32 input,
// with 16-byte accesses (widths in multiples of 8) and without, a row or two rows a thread;
// both, and bias_gelu's split-bf16 halves, are the exact (erf) GELU of float64 within what
// their bits hold.
TEST(CudaNormKernel, GeluInPlaceOnBf16MatchesBiasGelu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  std::mt19937 rng(13);
  // A prompt's row counts (1024 and up) take rows in pairs; an odd count leaves one alone.
  for (const auto& [rows, cols] : {std::pair<int64_t, int64_t>{3, 18176}, {130, 1001}, {1025, 72}, {1024, 1001}}) {
    SCOPED_TRACE("rows " + std::to_string(rows) + " cols " + std::to_string(cols));
    const std::size_t n = rows * cols;
    const auto raw = random_vector(n, rng, 4.f);
    std::vector<cuda::bf16> x(n);
    std::vector<float> xf(n);
    for (std::size_t i = 0; i < n; ++i) {
      x[i] = __float2bfloat16(raw[i]);
      xf[i] = __bfloat162float(x[i]);
    }
    Device<float> dxf(xf), bias(random_vector(cols, rng, 0.5f));
    Device<cuda::bf16> inplace(x), separate(n);
    cuda::bias_gelu_inplace(inplace.p, bias.p, rows, cols, nullptr);
    cuda::bias_gelu(dxf.p, bias.p, rows, cols, separate.p, nullptr, false);
    const auto got = inplace.get(n);
    EXPECT_EQ(bits(got), bits(separate.get(n)));
    // And exact GELU in float64, within bf16 rounding.
    const auto b = bias.get(cols);
    for (std::size_t i = 0; i < n; ++i) {
      const double v = static_cast<double>(xf[i]) + b[i % cols];
      const double want = 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0)));
      ASSERT_NEAR(__bfloat162float(got[i]), want, 1e-6 + std::abs(want) / 128) << "element " << i;
    }
    // As split-bf16 halves, about 16 significant bits: within 2^-15 of float64.
    std::vector<float> x2(2 * n, 0.f);
    std::copy(xf.begin(), xf.end(), x2.begin());
    Device<float> dx2(x2);
    Device<cuda::bf16> halves(2 * n);
    cuda::bias_gelu(dx2.p, bias.p, rows, cols, halves.p, nullptr, true);
    const auto hl = halves.get(2 * n);
    for (std::size_t i = 0; i < n; ++i) {
      const double v = static_cast<double>(xf[i]) + b[i % cols];
      const double want = 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0)));
      const double have = static_cast<double>(__bfloat162float(hl[i])) + __bfloat162float(hl[n + i]);
      ASSERT_NEAR(have, want, 2e-6 + std::abs(want) / 32768) << "element " << i << " as halves";
    }
  }
}

// The MLP's GELU in fp16 from an fp32 product's rows: the exact GELU of float64 within fp16
// rounding, saturating past fp16's range, NaN kept NaN.
TEST(CudaNormKernel, GeluInFp16MatchesFloat64) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  std::mt19937 rng(17);
  for (const auto& [rows, cols] : {std::pair<int64_t, int64_t>{3, 4544}, {5, 1001}, {1, 8}}) {
    SCOPED_TRACE("rows " + std::to_string(rows) + " cols " + std::to_string(cols));
    const std::size_t n = rows * cols;
    auto value = random_vector(n, rng, 8.f);
    value[0] = 1e5f;
    value[n - 1] = -7e4f;
    if (n > 2) value[1] = std::nanf("");
    Device<float> dx(value), bias(random_vector(cols, rng, 0.5f));
    Device<uint16_t> g(n);
    cuda::bias_gelu_f16(dx.p, bias.p, rows, cols, reinterpret_cast<cuda::f16*>(g.p), nullptr);
    const auto got = g.get(n);
    const auto b = bias.get(cols);
    for (std::size_t i = 0; i < n; ++i) {
      if (std::isnan(value[i])) {
        ASSERT_EQ(got[i] & 0x7c00, 0x7c00) << "element " << i << " NaN";
        ASSERT_NE(got[i] & 0x3ff, 0) << "element " << i << " NaN";
        continue;
      }
      const double v = static_cast<double>(value[i]) + b[i % cols];
      const double want = std::clamp(0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0))), -65504.0, 65504.0);
      ASSERT_NEAR(f16_to_f32(got[i]), want, 1e-7 + std::abs(want) / 1024) << "element " << i;
    }
  }
}

// A norm's fp16 rows (for a product on fp16 activations) are the values its fp32 form stores,
// each rounded once to fp16 and saturated at 65504: the last norm's when there are two, from
// the 16-byte kernel and from the one for widths off a multiple of 4, for few rows and many.
TEST(CudaNormKernel, Fp16RowsOfANormAreItsValuesRoundedOnce) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  std::mt19937 rng(19);
  for (const auto& [rows, hidden] : {std::pair<int64_t, int64_t>{2, 4544}, {3, 1001}, {130, 4544}, {70, 1001}})
    for (const bool two : {false, true}) {
      SCOPED_TRACE("rows " + std::to_string(rows) + " hidden " + std::to_string(hidden) + (two ? " two norms" : ""));
      const std::size_t n = rows * hidden;
      const auto x = random_vector(n, rng, 3.f);
      Device<float> a(random_vector(2 * n, rng, 1.f));
      auto b1 = random_vector(hidden, rng, 0.2f), b2 = random_vector(hidden, rng, 0.2f);
      // Columns past fp16's range in the norm the fp16 rows take.
      (two ? b2 : b1)[0] = 7e4f;
      (two ? b2 : b1)[hidden - 1] = -1e5f;
      Device<float> w1(random_vector(hidden, rng, 0.5f, 1.f)), w2(random_vector(hidden, rng, 0.5f, 1.f));
      Device<float> db1(b1), db2(b2);
      Device<float> x_whole(x), x_16(x);
      Device<cuda::bf16> f1(2 * n), f2(2 * n), h1(2 * n), h2(2 * n);
      Device<uint16_t> out16(n);
      const cuda::PendingResidual res{a.p, nullptr, nullptr, nullptr};
      cuda::residual_layer_norm(x_whole.p, res, rows, hidden, w1.p, db1.p, two ? w2.p : nullptr, two ? db2.p : nullptr,
                                1e-5f, f1.p, two ? f2.p : nullptr, nullptr, cuda::Activations::fp32_rows);
      cuda::residual_layer_norm(x_16.p, res, rows, hidden, w1.p, db1.p, two ? w2.p : nullptr, two ? db2.p : nullptr,
                                1e-5f, h1.p, two ? h2.p : nullptr, nullptr, cuda::Activations::split_halves,
                                reinterpret_cast<cuda::f16*>(out16.p));
      EXPECT_EQ(x_whole.get(n), x_16.get(n));
      const auto bytes = (two ? f2 : f1).get(2 * n);
      std::vector<float> whole(n);
      std::memcpy(whole.data(), bytes.data(), n * sizeof(float));
      const auto got = out16.get(n);
      int saturated = 0;
      for (std::size_t i = 0; i < n; ++i) {
        saturated += std::abs(whole[i]) > 65504.f;
        ASSERT_EQ(got[i], f32_to_f16(std::clamp(whole[i], -65504.f, 65504.f))) << "element " << i;
      }
      EXPECT_EQ(saturated, 2 * rows);
    }
}

// Logsumexp, first argmax and max of each row against float64, with the max planted twice in
// some rows (the first index wins, as torch.argmax); widths in and out of multiples of 4.
TEST(CudaNormKernel, RowStatsMatchFloat64AndTakeTheFirstMax) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  std::mt19937 rng(11);
  for (const auto& [rows, vocab] : {std::pair<int64_t, int64_t>{1, 65024}, {3, 65024}, {256, 65024}, {2, 1001},
                                     {5, 37}, {1, 4}}) {
    SCOPED_TRACE("rows " + std::to_string(rows) + " vocab " + std::to_string(vocab));
    auto x = random_vector(rows * vocab, rng, 8.f);
    std::vector<int64_t> want_arg(rows);
    for (int64_t r = 0; r < rows; ++r) {
      float* row = x.data() + r * vocab;
      // The second maximum: none; half a row away (another thread); in the same float4; or one
      // pass of 1,024 threads' float4s later (the same thread's next load).
      const int64_t first = (r * 7919) % vocab;
      const int64_t seconds[] = {-1, (first + vocab / 2) % vocab, first ^ 1, first + 4096};
      const int64_t second = seconds[r % 4] < vocab ? seconds[r % 4] : -1;
      row[first] = 9.5f;
      if (second >= 0) row[second] = 9.5f;
      want_arg[r] = second >= 0 ? std::min(first, second) : first;
    }
    Device<float> dx(x), lse(rows), mx(rows);
    Device<int32_t> arg(rows);
    cuda::row_stats(dx.p, rows, vocab, lse.p, arg.p, mx.p, nullptr);
    const auto got_lse = lse.get(rows), got_max = mx.get(rows);
    const auto got_arg = arg.get(rows);
    for (int64_t r = 0; r < rows; ++r) {
      double sum = 0;
      for (int64_t i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(x[r * vocab + i]) - 9.5);
      EXPECT_NEAR(got_lse[r], 9.5 + std::log(sum), 2e-5 * (9.5 + std::log(sum))) << "row " << r;
      EXPECT_EQ(got_arg[r], want_arg[r]) << "row " << r;
      EXPECT_EQ(got_max[r], 9.5f) << "row " << r;
    }
  }
}

TEST(CudaNormKernel, RefusesRowsWiderThanItHolds) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  EXPECT_THROW(
      cuda::layer_norm(nullptr, nullptr, 1, cuda::kLayerNormHiddenMax + 1, nullptr, nullptr, 1e-5f, nullptr, nullptr),
      InvalidArgument);
}

}  // namespace
}  // namespace eyrie
#endif
