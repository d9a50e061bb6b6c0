// How one replica's model is cut over `degree` tensor-parallel shards (Megatron-style): query
// heads and their KV heads, MLP columns, and lm_head rows per shard.
#pragma once

#include <cstdint>

#include "model/falcon_config.hpp"

namespace eyrie {

struct ShardPlan {
  int rank = 0, degree = 1;
  // Global query heads [q_begin, q_begin + q_count) and the KV heads they read,
  // [kv_begin, kv_begin + kv_count). A KV head read by several shards is kept by each.
  int64_t q_begin = 0, q_count = 0;
  int64_t kv_begin = 0, kv_count = 0;
  int64_t group = 1;  // global query heads per KV head
  // Columns of dense_h_to_4h (rows of dense_4h_to_h's input).
  int64_t ffn_begin = 0, ffn_count = 0;
  // Rows of lm_head: every shard computes vocab_shard rows starting at vocab_begin, of which the
  // first vocab_count are real and the rest pad the last shards to an equal width.
  int64_t vocab_begin = 0, vocab_count = 0, vocab_shard = 0;

  // The plan of `rank`; throws InvalidArgument when the model cannot be cut `degree` ways.
  static ShardPlan make(const FalconConfig& c, int degree, int rank);

  // Local KV head read by local query head h.
  int64_t kv_of(int64_t h) const { return (q_begin + h) / group - kv_begin; }
  // Width of this shard's fused query_key_value output.
  int64_t qkv_dim(int64_t head_dim) const { return (q_count + 2 * kv_count) * head_dim; }
  // Layout of this shard's fused query_key_value rows: the checkpoint's own when whole; cut,
  // its query heads first, then each KV head's key and value (multi_query generalised).
  FalconConfig::QkvLayout qkv_layout(const FalconConfig& c) const {
    return degree == 1 ? c.qkv_layout() : FalconConfig::QkvLayout::multi_query;
  }
};

}  // namespace eyrie
