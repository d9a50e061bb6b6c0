// LayerNorm, GELU, rotary and ALiBi on the CPU.
#include "model/cpu/ops.hpp"

#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "model/dtype.hpp"

namespace eyrie {

void layer_norm_row(const float* x, int64_t n, const float* w, const float* b, float eps,
                    float* out) {
  double mean = 0;
  for (int64_t i = 0; i < n; ++i) mean += x[i];
  mean /= static_cast<double>(n);
  double var = 0;
  for (int64_t i = 0; i < n; ++i) {
    double d = x[i] - mean;
    var += d * d;
  }
  var /= static_cast<double>(n);
  const float inv = static_cast<float>(1.0 / std::sqrt(var + eps));
  const float mu = static_cast<float>(mean);
  for (int64_t i = 0; i < n; ++i) out[i] = (x[i] - mu) * inv * w[i] + b[i];
}

void gelu_inplace(float* x, int64_t n) {
  constexpr float kInvSqrt2 = 0.70710678118654752f;
  for (int64_t i = 0; i < n; ++i) x[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * kInvSqrt2));
}

namespace {

// exp(x) for x <= 0: 2^k * p(r) with x = k ln2 + r, |r| <= ln2 / 2, degree-6 polynomial.
inline __m256 exp256(__m256 x) {
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
  const __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

}  // namespace

RowStats row_stats(const float* x, int64_t n) {
  __m256 vmax = _mm256_set1_ps(-INFINITY);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(x + i));
  float lanes[8];
  _mm256_storeu_ps(lanes, vmax);
  float mx = -INFINITY;
  for (float v : lanes) mx = std::max(mx, v);
  for (; i < n; ++i) mx = std::max(mx, x[i]);
  int32_t arg = 0;
  while (arg < n && x[arg] != mx) ++arg;
  if (arg == n) arg = 0;  // all NaN
  if (!std::isfinite(mx)) return {mx, arg, mx};
  const __m256 m = _mm256_set1_ps(mx);
  __m256 acc = _mm256_setzero_ps();
  i = 0;
  for (; i + 8 <= n; i += 8) acc = _mm256_add_ps(acc, exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), m)));
  _mm256_storeu_ps(lanes, acc);
  double sum = 0;
  for (float v : lanes) sum += v;
  for (; i < n; ++i) sum += std::exp(x[i] - mx);
  return {mx + static_cast<float>(std::log(sum)), arg, mx};
}

RotaryTable::RotaryTable(int64_t head_dim, double theta) : half_(head_dim / 2) {
  inv_freq_.resize(half_);
  const float base = static_cast<float>(theta);
  for (int64_t i = 0; i < half_; ++i) {
    float expo = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    inv_freq_[i] = 1.0f / std::pow(base, expo);
  }
}

void RotaryTable::angles(int64_t pos, float* cos_out, float* sin_out) const {
  const float p = static_cast<float>(pos);
  for (int64_t i = 0; i < half_; ++i) {
    const float f = inv_freq_[i] * p;
    cos_out[i] = std::cos(f);
    sin_out[i] = std::sin(f);
  }
}

void RotaryTable::apply(float* v, const float* cos, const float* sin) const {
  for (int64_t i = 0; i < half_; ++i) {
    const float a = v[i], b = v[i + half_];
    v[i] = a * cos[i] - b * sin[i];
    v[i + half_] = b * cos[i] + a * sin[i];
  }
}

AlibiTable::AlibiTable(int64_t num_heads) {
  // The slope recipe of build_alibi_tensor: powers of 2^(-8/n) for the nearest power of two
  // n, then odd powers of the next base for the remaining heads.
  int64_t closest = 1;
  while (closest * 2 <= num_heads) closest *= 2;
  const float base = static_cast<float>(std::pow(2.0, -std::pow(2.0, -(std::log2(closest) - 3))));
  for (int64_t i = 1; i <= closest; ++i) slopes_.push_back(std::pow(base, static_cast<float>(i)));
  if (closest != num_heads) {
    const float extra =
        static_cast<float>(std::pow(2.0, -std::pow(2.0, -(std::log2(2 * closest) - 3))));
    const int64_t remaining = std::min(closest, num_heads - closest);
    for (int64_t i = 0; i < remaining; ++i)
      slopes_.push_back(std::pow(extra, static_cast<float>(2 * i + 1)));
  }
  for (auto& s : slopes_) s = round_to_bf16(s);
}

float AlibiTable::bias(int64_t head, int64_t key_pos) const {
  return round_to_bf16(slopes_[head] * static_cast<float>(key_pos));
}

}  // namespace eyrie
