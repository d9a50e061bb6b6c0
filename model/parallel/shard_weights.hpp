// One shard's slice of a checkpoint, as the tensor roles an engine binds.
#pragma once

#include <deque>
#include <vector>

#include "model/falcon_weights.hpp"
#include "model/parallel/shard_plan.hpp"

namespace eyrie {

// Column-parallel matrices (query_key_value, dense_h_to_4h, lm_head) keep the shard's rows;
// row-parallel ones (dense, dense_4h_to_h) keep its input columns, with their bias on rank 0
// only so the all-reduce adds it once. Embeddings and LayerNorms stay whole. A whole model
// (degree 1) is the checkpoint's own views; a cut one owns copies in the checkpoint's dtype.
class ShardWeights {
 public:
  ShardWeights(const FalconConfig& c, const FalconWeights& whole, const ShardPlan& plan);
  ShardWeights(const ShardWeights&) = delete;
  ShardWeights& operator=(const ShardWeights&) = delete;

  // query_key_value is [plan.qkv_dim, hidden] in plan.qkv_layout(); lm_head is
  // [plan.vocab_shard, hidden], zero past plan.vocab_count.
  const FalconWeights& weights() const { return weights_; }

 private:
  const TensorView* own(TensorView v, std::vector<uint8_t> bytes);
  // The listed row ranges of a [rows, cols] (or [n]) tensor, then zero rows up to `rows_out`.
  const TensorView* rows(const TensorView& t, const std::vector<std::pair<int64_t, int64_t>>& ranges,
                         int64_t rows_out);
  const TensorView* cols(const TensorView& t, int64_t begin, int64_t count);

  FalconWeights weights_;
  std::deque<TensorView> views_;
  std::deque<std::vector<uint8_t>> storage_;
};

}  // namespace eyrie
