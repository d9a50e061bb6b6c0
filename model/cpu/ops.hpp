// Element-wise and normalisation ops of the Falcon block on fp32 rows.
#pragma once

#include <cstdint>
#include <vector>

namespace eyrie {

// out[i] = (x[i] - mean) / sqrt(var + eps) * w[i] + b[i], one row of n.
void layer_norm_row(const float* x, int64_t n, const float* w, const float* b, float eps,
                    float* out);

// Exact GELU, 0.5 x (1 + erf(x / sqrt 2)), as torch.nn.GELU() computes it.
void gelu_inplace(float* x, int64_t n);

// log(sum(exp(x))) of one row, in fp32 with a vectorised exp (relative error ~1e-7), and the
// index of the row's first maximum.
struct RowStats {
  float logsumexp;
  int32_t argmax;
  float max;
};
RowStats row_stats(const float* x, int64_t n);
inline float logsumexp_row(const float* x, int64_t n) { return row_stats(x, n).logsumexp; }

// cos/sin of the NeoX half-split rotary embedding, computed in fp32 as transformers does.
class RotaryTable {
 public:
  RotaryTable(int64_t head_dim, double theta);
  int64_t half() const { return half_; }
  // cos and sin of every frequency at a position (half() values each), shared by all heads.
  void angles(int64_t pos, float* cos_out, float* sin_out) const;
  // Rotates one head vector in place with angles from angles().
  void apply(float* v, const float* cos, const float* sin) const;

 private:
  int64_t half_;
  std::vector<float> inv_freq_;
};

// ALiBi slopes per head; bias(h, key_pos) reproduces transformers' bf16 rounding.
class AlibiTable {
 public:
  explicit AlibiTable(int64_t num_heads);
  float bias(int64_t head, int64_t key_pos) const;

 private:
  std::vector<float> slopes_;  // already rounded to bf16
};

}  // namespace eyrie
