// query_key_value's input on fp16 weights (cuda/fp8.hpp): the norm's fp16 halves and its fp16
// rows with e4m3 rests hold the values its fp32 form stores; the rests' scale is the power of
// two the bound on a norm's output allows; the weights' e4m3 copy and the fp8 product of the
// rests take most of fp16's rounding out of x W^T, against float64.
#include <gtest/gtest.h>

#if EYRIE_HAS_CUDA
#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "cuda/check.hpp"
#include "cuda/cuda_engine.hpp"
#include "cuda/fp8.hpp"
#include "cuda/kernels.hpp"
#include "model/dtype.hpp"
#include "tests/cuda/device_buffer.hpp"

namespace eyrie {
namespace {

using test::Device;
using test::random_vector;

float e4m3_to_f32(uint8_t b) {
  const int e = (b >> 3) & 0xf, m = b & 7;
  if (e == 0xf && m == 7) return std::nanf("");
  const float mag = e == 0 ? std::ldexp(static_cast<float>(m), -9) : std::ldexp(1.f + m / 8.f, e - 7);
  return (b & 0x80) ? -mag : mag;
}

// The nearest e4m3 (ties to even), past 448 saturated, zero keeping v's sign: by search over
// the 127 finite magnitudes.
uint8_t f32_to_e4m3(float v) {
  const float c = std::min(std::abs(v), 448.f);
  uint8_t best = 0;
  float best_d = INFINITY;
  for (int b = 0; b < 127; ++b) {
    const float d = std::abs(e4m3_to_f32(static_cast<uint8_t>(b)) - c);
    if (d < best_d || (d == best_d && (b & 1) == 0)) {
      best = static_cast<uint8_t>(b);
      best_d = d;
    }
  }
  return static_cast<uint8_t>(best | (std::signbit(v) ? 0x80 : 0));
}

uint16_t sat_f16(float v) {
  return f32_to_f16(std::clamp(v, -65504.f, 65504.f));
}

struct NormCase {
  int64_t rows, hidden;
  bool two;
};

// The fp32 values of out1 (fp32_rows), and the same norm with out1 as `first` says.
struct NormRun {
  std::vector<float> whole;
  std::vector<uint16_t> out1;
  std::vector<uint8_t> rest;
  std::vector<float> scales;
};

NormRun run_norm(const NormCase& c, cuda::Activations form, bool rests, uint32_t seed) {
  std::mt19937 rng(seed);
  const std::size_t n = c.rows * c.hidden;
  const auto x = random_vector(n, rng, 3.f);
  Device<float> a(random_vector(2 * n, rng, 1.f));
  Device<float> w1(random_vector(c.hidden, rng, 0.5f, 1.f)), b1(random_vector(c.hidden, rng, 0.2f));
  Device<float> w2(random_vector(c.hidden, rng, 0.5f, 1.f)), b2(random_vector(c.hidden, rng, 0.2f));
  Device<float> x_whole(x), x_first(x);
  Device<cuda::bf16> f1(2 * n), f2(2 * n), h1(2 * n), h2(2 * n);
  Device<uint8_t> rest8(n);
  Device<float> scales(cuda::kFp8Scales);
  cuda::rest_scales(w1.p, b1.p, c.hidden, scales.p, nullptr);
  const cuda::PendingResidual res{a.p, nullptr, nullptr, nullptr};
  cuda::residual_layer_norm(x_whole.p, res, c.rows, c.hidden, w1.p, b1.p, c.two ? w2.p : nullptr,
                            c.two ? b2.p : nullptr, 1e-5f, f1.p, c.two ? f2.p : nullptr, nullptr,
                            cuda::Activations::fp32_rows);
  const cuda::FirstNormOutput first{form, rests ? rest8.p : nullptr, rests ? scales.p : nullptr};
  cuda::residual_layer_norm(x_first.p, res, c.rows, c.hidden, w1.p, b1.p, c.two ? w2.p : nullptr,
                            c.two ? b2.p : nullptr, 1e-5f, h1.p, c.two ? h2.p : nullptr, nullptr,
                            cuda::Activations::split_halves, nullptr, &first);
  EXPECT_EQ(x_whole.get(n), x_first.get(n));
  NormRun r;
  const auto bytes = f1.get(2 * n);
  r.whole.resize(n);
  std::memcpy(r.whole.data(), bytes.data(), n * sizeof(float));
  const auto got = h1.get(2 * n);
  r.out1.resize(2 * n);
  std::memcpy(r.out1.data(), got.data(), 2 * n * sizeof(uint16_t));
  r.rest = rest8.get(n);
  r.scales = scales.get(cuda::kFp8Scales);
  // The second norm's output keeps the step's form (split halves), whatever out1's is.
  if (c.two) {
    Device<float> x_split(x);
    Device<cuda::bf16> s1(2 * n), s2(2 * n);
    cuda::residual_layer_norm(x_split.p, res, c.rows, c.hidden, w1.p, b1.p, w2.p, b2.p, 1e-5f, s1.p, s2.p, nullptr);
    const auto want = s2.get(2 * n), have = h2.get(2 * n);
    EXPECT_EQ(0, std::memcmp(want.data(), have.data(), 2 * n * sizeof(cuda::bf16)));
  }
  return r;
}

constexpr NormCase kNormCases[] = {{2, 4544, false}, {3, 1001, true}, {130, 4544, true}, {70, 1001, false}};

// fp16 halves: hi = fp16(x), lo = fp16(x - hi), from the 16-byte kernel and the other.
TEST(CudaFp8Qkv, NormWritesFp16HalvesOfItsValues) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  for (const NormCase& c : kNormCases) {
    SCOPED_TRACE("rows " + std::to_string(c.rows) + " hidden " + std::to_string(c.hidden) + (c.two ? " two" : ""));
    const NormRun r = run_norm(c, cuda::Activations::f16_halves, false, 23);
    const std::size_t n = c.rows * c.hidden;
    for (std::size_t i = 0; i < n; ++i) {
      const uint16_t hi = sat_f16(r.whole[i]);
      ASSERT_EQ(r.out1[i], hi) << "element " << i;
      ASSERT_EQ(r.out1[n + i], sat_f16(r.whole[i] - f16_to_f32(hi))) << "element " << i;
    }
  }
}

// fp16 rows and e4m3 rests: the rows as fp16 rounds the values, the rests as e4m3 rounds what
// that left out times the scale, and the two together within 2^-4 of the rest (e4m3's 3
// mantissa bits) or e4m3's subnormal step, scaled back.
TEST(CudaFp8Qkv, NormWritesFp16RowsAndE4m3Rests) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  for (const NormCase& c : kNormCases) {
    SCOPED_TRACE("rows " + std::to_string(c.rows) + " hidden " + std::to_string(c.hidden) + (c.two ? " two" : ""));
    const NormRun r = run_norm(c, cuda::Activations::f16_rows, true, 29);
    const float s = r.scales[cuda::kRestQuant];
    EXPECT_EQ(r.scales[cuda::kRestDequant], 1.f / s);
    const std::size_t n = c.rows * c.hidden;
    double worst_f16 = 0, worst_both = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const uint16_t hi = sat_f16(r.whole[i]);
      ASSERT_EQ(r.out1[i], hi) << "element " << i;
      const float rest = r.whole[i] - f16_to_f32(hi);
      ASSERT_EQ(r.rest[i], f32_to_e4m3(rest * s)) << "element " << i << " rest " << rest;
      const double both = f16_to_f32(hi) + static_cast<double>(e4m3_to_f32(r.rest[i])) / s;
      const double err = std::abs(both - r.whole[i]);
      ASSERT_LE(err, std::abs(rest) / 16 + std::ldexp(1.0, -10) / s) << "element " << i;
      worst_f16 = std::max(worst_f16, static_cast<double>(std::abs(rest)));
      worst_both = std::max(worst_both, err);
    }
    EXPECT_LT(worst_both, worst_f16 / 8);
  }
}

// The rests' scale: the largest power of two s with 2^-11 B s <= 448, B = sqrt(hidden)
// max|gamma| + max|beta|; and past fp16's range, B - 65504 in place of 2^-11 B.
TEST(CudaFp8Qkv, RestScaleIsThePowerOfTwoTheNormsBoundAllows) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  std::mt19937 rng(31);
  for (const auto& [hidden, gmax, bmax] :
       {std::tuple<int64_t, float, float>{4544, 1.3f, 0.2f}, {1001, 40.f, 3.f}, {64, 1.f, 0.f}, {8192, 9000.f, 1.f}}) {
    SCOPED_TRACE("hidden " + std::to_string(hidden) + " max gamma " + std::to_string(gmax));
    auto g = random_vector(hidden, rng, gmax / 2), b = random_vector(hidden, rng, bmax / 2);
    g[hidden / 3] = -gmax;
    b[hidden / 2] = bmax;
    Device<float> dg(g), db(b), scales(cuda::kFp8Scales);
    cuda::rest_scales(dg.p, db.p, hidden, scales.p, nullptr);
    const auto got = scales.get(cuda::kFp8Scales);
    const double bound = std::sqrt(static_cast<double>(hidden)) * gmax + bmax;
    double rest = std::max(bound * std::ldexp(1.0, -11), std::ldexp(1.0, -25));
    if (bound > 65504) rest = std::max(rest, bound - 65504);
    const double s = got[cuda::kRestQuant];
    int e = 0;
    EXPECT_EQ(std::frexp(s, &e), 0.5) << "a power of two";
    EXPECT_LE(rest * s, 448.0 * (1 + 1e-6));
    EXPECT_GT(rest * s * 2, 448.0 * (1 - 1e-6));
    EXPECT_EQ(got[cuda::kRestDequant], static_cast<float>(1.0 / s));
  }
}

// y = fp16 rows' product (float64 here) + the fp8 product of the rests on the e4m3 weights,
// against float64 x W^T with the fp16 weights: most of fp16's rounding gone, for rows below,
// at and past a tensor-core tile, at Falcon-7B's query_key_value width and a narrower one.
TEST(CudaFp8Qkv, Fp8ProductOfTheRestsTakesOutMostOfFp16Rounding) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  std::mt19937 rng(37);
  cuda::Fp8Product product;
  Device<uint8_t> workspace(32 << 20);
  for (const auto& [rows, out_dim, in_dim] :
       {std::tuple<int64_t, int64_t, int64_t>{3, 4672, 4544}, {130, 4672, 4544}, {257, 192, 1024}}) {
    SCOPED_TRACE("rows " + std::to_string(rows) + " weights " + std::to_string(out_dim) + " x " +
                 std::to_string(in_dim));
    const std::size_t n = rows * in_dim, wn = out_dim * in_dim;
    const auto x = random_vector(n, rng, 3.f);
    Device<float> dx(x);
    Device<float> gamma(random_vector(in_dim, rng, 0.5f, 1.f)), beta(random_vector(in_dim, rng, 0.2f));
    std::vector<uint16_t> w16(wn);
    std::normal_distribution<float> normal(0.f, 0.02f);
    for (auto& w : w16) w = f32_to_f16(normal(rng));
    Device<uint16_t> dw(w16);
    Device<uint8_t> w8(wn), rest8(n);
    Device<float> scales(cuda::kFp8Scales), whole(n);
    Device<uint16_t> a16(n);
    cuda::quantize_weights_e4m3(reinterpret_cast<const cuda::f16*>(dw.p), wn, w8.p, scales.p, nullptr);
    cuda::rest_scales(gamma.p, beta.p, in_dim, scales.p, nullptr);
    cuda::layer_norm(dx.p, nullptr, rows, in_dim, gamma.p, beta.p, 1e-5f, reinterpret_cast<cuda::bf16*>(whole.p),
                     nullptr, cuda::Activations::fp32_rows);
    const cuda::FirstNormOutput first{cuda::Activations::f16_rows, rest8.p, scales.p};
    Device<float> dx2(x);
    cuda::residual_layer_norm(dx2.p, {}, rows, in_dim, gamma.p, beta.p, nullptr, nullptr, 1e-5f,
                              reinterpret_cast<cuda::bf16*>(a16.p), nullptr, nullptr, cuda::Activations::split_halves,
                              nullptr, &first);
    const auto xs = whole.get(n);
    const auto hi = a16.get(n);
    // The e4m3 weights: each the nearest e4m3 of w times the power of two the largest allows.
    const auto sc = scales.get(cuda::kFp8Scales);
    const auto w8h = w8.get(wn);
    float wmax = 0;
    for (uint16_t w : w16) wmax = std::max(wmax, std::abs(f16_to_f32(w)));
    const float ws = 1.f / sc[cuda::kWeightDequant];
    EXPECT_LE(wmax * ws, 448.f);
    EXPECT_GT(wmax * ws * 2, 448.f);
    for (std::size_t i = 0; i < wn; i += 97) ASSERT_EQ(w8h[i], f32_to_e4m3(f16_to_f32(w16[i]) * ws)) << "weight " << i;
    std::vector<float> y0(rows * out_dim);
    std::vector<double> want(rows * out_dim), scale(rows * out_dim);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t o = 0; o < out_dim; ++o) {
        double f16_sum = 0, sum = 0, mag = 0;
        for (int64_t k = 0; k < in_dim; ++k) {
          const double w = f16_to_f32(w16[o * in_dim + k]);
          f16_sum += f16_to_f32(hi[r * in_dim + k]) * w;
          sum += static_cast<double>(xs[r * in_dim + k]) * w;
          mag += std::abs(xs[r * in_dim + k] * w);
        }
        y0[r * out_dim + o] = static_cast<float>(f16_sum);
        want[r * out_dim + o] = sum;
        scale[r * out_dim + o] = mag;
      }
    Device<float> y(y0);
    const auto sc2 = scales.get(cuda::kFp8Scales);
    product.add(rest8.p, rows, w8.p, out_dim, in_dim, sc2[cuda::kWeightDequant] * sc2[cuda::kRestDequant], y.p,
                workspace.p, 32 << 20, nullptr);
    const auto got = y.get(rows * out_dim);
    double worst_f16 = 0, worst = 0;
    for (std::size_t i = 0; i < got.size(); ++i) {
      worst_f16 = std::max(worst_f16, std::abs(y0[i] - want[i]) / scale[i]);
      worst = std::max(worst, std::abs(got[i] - want[i]) / scale[i]);
    }
    std::printf("rows %lld: worst error relative to sum |x w|: fp16 rows %.2e, with the fp8 rests %.2e\n",
                static_cast<long long>(rows), worst_f16, worst);
    EXPECT_LT(worst, worst_f16 / 8);
    EXPECT_LT(worst, std::ldexp(1.0, -14));
  }
}

TEST(CudaFp8Qkv, RefusesShapesCublasLtCannotTake) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  cuda::Fp8Product product;
  EXPECT_FALSE(cuda::Fp8Product::fits(1001, 64));
  try {
    product.add(nullptr, 4, nullptr, 64, 1001, 1.f, nullptr, nullptr, 0, nullptr);
    FAIL() << "no error";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("multiples of 16"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace eyrie
#endif
