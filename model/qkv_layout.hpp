// Where each head sits in a fused query_key_value output row, for the three Falcon layouts.
#pragma once

#include <cstdint>

#include "model/falcon_config.hpp"

namespace eyrie {

// Offsets, in elements of one query_key_value row, of query head h and of KV head j's key; its
// value follows the key. multi_query covers any number of KV heads: all query heads, then each
// KV head's key and value (Falcon-7B has one; a tensor-parallel shard may keep several).
struct QkvOffsets {
  FalconConfig::QkvLayout layout;
  int64_t group;      // query heads per KV head (grouped layout)
  int64_t head_dim;
  int64_t num_heads;  // query heads in the row

  int64_t q(int64_t h) const {
    switch (layout) {
      case FalconConfig::QkvLayout::grouped: return ((h / group) * (group + 2) + h % group) * head_dim;
      case FalconConfig::QkvLayout::multi_query: return h * head_dim;
      case FalconConfig::QkvLayout::interleaved: return 3 * h * head_dim;
    }
    return 0;
  }
  int64_t k(int64_t j) const {
    switch (layout) {
      case FalconConfig::QkvLayout::grouped: return (j * (group + 2) + group) * head_dim;
      case FalconConfig::QkvLayout::multi_query: return (num_heads + 2 * j) * head_dim;
      case FalconConfig::QkvLayout::interleaved: return (3 * j + 1) * head_dim;
    }
    return 0;
  }
  int64_t v(int64_t j) const { return k(j) + head_dim; }
};

}  // namespace eyrie
