// Cutting tensors by rows and columns, in the checkpoint's dtype.
#include "model/parallel/shard_weights.hpp"

#include <cstring>

#include "model/qkv_layout.hpp"

namespace eyrie {

const TensorView* ShardWeights::own(TensorView v, std::vector<uint8_t> bytes) {
  storage_.push_back(std::move(bytes));
  v.data = storage_.back().data();
  v.nbytes = storage_.back().size();
  views_.push_back(std::move(v));
  return &views_.back();
}

const TensorView* ShardWeights::rows(const TensorView& t, const std::vector<std::pair<int64_t, int64_t>>& ranges,
                                     int64_t rows_out) {
  const int64_t cols = t.shape.size() > 1 ? t.shape[1] : 1;
  const std::size_t row_bytes = static_cast<std::size_t>(cols) * dtype_size(t.dtype);
  std::vector<uint8_t> bytes(static_cast<std::size_t>(rows_out) * row_bytes, 0);
  std::size_t at = 0;
  for (const auto& [begin, count] : ranges) {
    std::memcpy(bytes.data() + at, static_cast<const uint8_t*>(t.data) + begin * row_bytes, count * row_bytes);
    at += count * row_bytes;
  }
  TensorView v = t;
  v.shape[0] = rows_out;
  return own(std::move(v), std::move(bytes));
}

const TensorView* ShardWeights::cols(const TensorView& t, int64_t begin, int64_t count) {
  const std::size_t es = dtype_size(t.dtype);
  const int64_t rows_n = t.shape[0], cols_n = t.shape[1];
  std::vector<uint8_t> bytes(static_cast<std::size_t>(rows_n * count) * es);
  for (int64_t r = 0; r < rows_n; ++r)
    std::memcpy(bytes.data() + r * count * es, static_cast<const uint8_t*>(t.data) + (r * cols_n + begin) * es,
                count * es);
  TensorView v = t;
  v.shape[1] = count;
  return own(std::move(v), std::move(bytes));
}

ShardWeights::ShardWeights(const FalconConfig& c, const FalconWeights& whole, const ShardPlan& p) {
  weights_ = whole;
  if (p.degree == 1) return;
  const int64_t hd = c.head_dim;
  const QkvOffsets src{c.qkv_layout(), c.group_size(), hd, c.num_heads};
  std::vector<std::pair<int64_t, int64_t>> qkv_rows;
  for (int64_t h = 0; h < p.q_count; ++h) qkv_rows.push_back({src.q(p.q_begin + h), hd});
  for (int64_t j = 0; j < p.kv_count; ++j) {
    qkv_rows.push_back({src.k(p.kv_begin + j), hd});
    qkv_rows.push_back({src.v(p.kv_begin + j), hd});
  }
  const int64_t qkv_dim = p.qkv_dim(hd);
  const std::vector<std::pair<int64_t, int64_t>> ffn_rows{{p.ffn_begin, p.ffn_count}};
  auto row_parallel_bias = [&](const TensorView* b) { return p.rank == 0 ? b : nullptr; };
  for (auto& l : weights_.layers) {
    l.qkv.weight = rows(*l.qkv.weight, qkv_rows, qkv_dim);
    if (l.qkv.bias) l.qkv.bias = rows(*l.qkv.bias, qkv_rows, qkv_dim);
    l.qkv.out = qkv_dim;
    l.dense.weight = cols(*l.dense.weight, p.q_begin * hd, p.q_count * hd);
    l.dense.bias = row_parallel_bias(l.dense.bias);
    l.dense.in = p.q_count * hd;
    l.h_to_4h.weight = rows(*l.h_to_4h.weight, ffn_rows, p.ffn_count);
    if (l.h_to_4h.bias) l.h_to_4h.bias = rows(*l.h_to_4h.bias, ffn_rows, p.ffn_count);
    l.h_to_4h.out = p.ffn_count;
    l.h4_to_h.weight = cols(*l.h4_to_h.weight, p.ffn_begin, p.ffn_count);
    l.h4_to_h.bias = row_parallel_bias(l.h4_to_h.bias);
    l.h4_to_h.in = p.ffn_count;
  }
  weights_.lm_head.weight = rows(*whole.lm_head.weight, {{p.vocab_begin, p.vocab_count}}, p.vocab_shard);
  weights_.lm_head.out = p.vocab_shard;
}

}  // namespace eyrie
