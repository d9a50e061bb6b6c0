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

// An NR x MR register block: NR weight rows against MR activation rows, one accumulator per
// output. Each weight vector is converted once and used MR times; each activation vector is
// loaded once and used NR times. Every output sums its products in the same order whatever the
// block shape, so a row's result does not depend on the batch it ran in.
template <int NR, int MR>
void block_dot(const void* const* wrows, DType t, const float* const* xs, int64_t k,
               float* out /* [NR][MR] */) {
  __m256 acc[NR][MR];
  for (int a = 0; a < NR; ++a)
    for (int b = 0; b < MR; ++b) acc[a][b] = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= k; i += 8) {
    __m256 w[NR];
    for (int a = 0; a < NR; ++a)
      w[a] = t == DType::f32 ? load8(static_cast<const float*>(wrows[a]) + i)
                             : load8(static_cast<const uint16_t*>(wrows[a]) + i, t);
    for (int b = 0; b < MR; ++b) {
      const __m256 x = load8(xs[b] + i);
      for (int a = 0; a < NR; ++a) acc[a][b] = _mm256_fmadd_ps(w[a], x, acc[a][b]);
    }
  }
  for (int a = 0; a < NR; ++a)
    for (int b = 0; b < MR; ++b) {
      float v = hsum(acc[a][b]);
      for (int64_t j = i; j < k; ++j) v += scalar_at(wrows[a], t, j) * xs[b][j];
      out[a * MR + b] = v;
    }
}

template <int NR, int MR>
void run_block(const WeightMatrix& w, std::size_t row_bytes, int64_t j, const float* x, int64_t r,
               const float* bias, float* y) {
  const int64_t n = w.rows, k = w.cols;
  const void* wrows[NR];
  const float* xs[MR];
  for (int a = 0; a < NR; ++a) wrows[a] = static_cast<const uint8_t*>(w.data) + (j + a) * row_bytes;
  for (int b = 0; b < MR; ++b) xs[b] = x + (r + b) * k;
  float out[NR * MR];
  block_dot<NR, MR>(wrows, w.dtype, xs, k, out);
  for (int a = 0; a < NR; ++a)
    for (int b = 0; b < MR; ++b) y[(r + b) * n + j + a] = out[a * MR + b] + (bias ? bias[j + a] : 0.f);
}

// Rows [m0, m1) of x against weight rows [lo, hi): blocks of NR weight rows, then single rows.
template <int NR, int MR>
void run_rows(const WeightMatrix& w, std::size_t row_bytes, int64_t lo, int64_t hi, const float* x,
              int64_t r, const float* bias, float* y) {
  int64_t j = lo;
  for (; j + NR <= hi; j += NR) run_block<NR, MR>(w, row_bytes, j, x, r, bias, y);
  for (; j < hi; ++j) run_block<1, MR>(w, row_bytes, j, x, r, bias, y);
}

}  // namespace

void matmul(ThreadPool& pool, const float* x, int64_t m, const WeightMatrix& w, const float* bias,
            float* y) {
  const int64_t n = w.rows;
  const std::size_t row_bytes = static_cast<std::size_t>(w.cols) * dtype_size(w.dtype);
  // Rows of x per pass over a weight slice: the slice stays in cache while x rows stream.
  constexpr int64_t kMTile = 64;
  pool.parallel_for(n, 16, [&](int64_t lo, int64_t hi) {
    for (int64_t m0 = 0; m0 < m; m0 += kMTile) {
      const int64_t m1 = std::min(m, m0 + kMTile);
      int64_t r = m0;
      for (; r + 4 <= m1; r += 4) run_rows<2, 4>(w, row_bytes, lo, hi, x, r, bias, y);
      for (; r < m1; ++r) run_rows<4, 1>(w, row_bytes, lo, hi, x, r, bias, y);
    }
  });
}

}  // namespace eyrie
