// Weight-streaming matrix product. Decode (m of 1 to a few rows) is bound by reading the weights
// once, so each weight row is converted to fp32 in registers and used for up to four
// activation rows before the next row is read.
#include "model/cpu/matmul.hpp"

#include <immintrin.h>

#include <algorithm>

namespace eyrie {
namespace {

inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const uint16_t* p, DType t) {
  __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  if (t == DType::f16) return _mm256_cvtph_ps(h);
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline float scalar_at(const void* row, DType t, int64_t i) {
  switch (t) {
    case DType::f32: return static_cast<const float*>(row)[i];
    case DType::bf16: return bf16_to_f32(static_cast<const uint16_t*>(row)[i]);
    case DType::f16: return f16_to_f32(static_cast<const uint16_t*>(row)[i]);
  }
  return 0.f;
}

// R activation rows (1..4) against one weight row; two accumulators per row hide FMA latency.
template <int R>
void dot_rows(const void* wrow, DType t, const float* const* xs, int64_t k, float* out) {
  __m256 acc0[R], acc1[R];
  for (int r = 0; r < R; ++r) acc0[r] = acc1[r] = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= k; i += 16) {
    __m256 w0, w1;
    if (t == DType::f32) {
      w0 = load8(static_cast<const float*>(wrow) + i);
      w1 = load8(static_cast<const float*>(wrow) + i + 8);
    } else {
      w0 = load8(static_cast<const uint16_t*>(wrow) + i, t);
      w1 = load8(static_cast<const uint16_t*>(wrow) + i + 8, t);
    }
    for (int r = 0; r < R; ++r) {
      acc0[r] = _mm256_fmadd_ps(w0, load8(xs[r] + i), acc0[r]);
      acc1[r] = _mm256_fmadd_ps(w1, load8(xs[r] + i + 8), acc1[r]);
    }
  }
  for (int r = 0; r < R; ++r) out[r] = hsum(_mm256_add_ps(acc0[r], acc1[r]));
  for (; i < k; ++i) {
    float w = scalar_at(wrow, t, i);
    for (int r = 0; r < R; ++r) out[r] += w * xs[r][i];
  }
}

}  // namespace

void matmul(ThreadPool& pool, const float* x, int64_t m, const WeightMatrix& w, const float* bias,
            float* y) {
  const int64_t n = w.rows, k = w.cols;
  const std::size_t row_bytes = static_cast<std::size_t>(k) * dtype_size(w.dtype);
  // Rows of x per pass over a weight slice: the slice stays in cache while x rows stream.
  constexpr int64_t kMTile = 64;
  pool.parallel_for(n, 16, [&](int64_t lo, int64_t hi) {
    for (int64_t m0 = 0; m0 < m; m0 += kMTile) {
      const int64_t m1 = std::min(m, m0 + kMTile);
      for (int64_t j = lo; j < hi; ++j) {
        const void* wrow = static_cast<const uint8_t*>(w.data) + j * row_bytes;
        const float b = bias ? bias[j] : 0.f;
        int64_t r = m0;
        for (; r + 4 <= m1; r += 4) {
          const float* xs[4] = {x + r * k, x + (r + 1) * k, x + (r + 2) * k, x + (r + 3) * k};
          float out[4];
          dot_rows<4>(wrow, w.dtype, xs, k, out);
          for (int q = 0; q < 4; ++q) y[(r + q) * n + j] = out[q] + b;
        }
        for (; r < m1; ++r) {
          const float* xs[1] = {x + r * k};
          float out[1];
          dot_rows<1>(wrow, w.dtype, xs, k, out);
          y[r * n + j] = out[0] + b;
        }
      }
    }
  });
}

}  // namespace eyrie
