// Batch sizes that decode steps are padded up to. A CUDA graph is captured per step shape, so
// a server whose batch changes size every few steps would otherwise capture a graph for almost
// every step; with padding, a few graphs (prepared before the first request) serve all sizes,
// for at most a third more rows than the step carries.
#pragma once

#include <cstdint>
#include <vector>

namespace eyrie::cuda {

inline constexpr int32_t kDecodeBuckets[] = {1,  2,  3,  4,   6,   8,   12,  16,  20,  24,  32,  40,  48,
                                             56, 64, 80, 96, 112, 128, 160, 192, 224, 256};

// The smallest bucket that holds `rows`; past the largest, rows rounded up to a multiple of 64.
inline int64_t decode_bucket(int64_t rows) {
  for (int32_t b : kDecodeBuckets)
    if (b >= rows) return b;
  return (rows + 63) / 64 * 64;
}

// The buckets up to and including the first that holds max_rows.
inline std::vector<int32_t> decode_buckets_up_to(int64_t max_rows) {
  std::vector<int32_t> sizes;
  for (int64_t b = 1; sizes.empty() || sizes.back() < max_rows; b = decode_bucket(b + 1))
    sizes.push_back(static_cast<int32_t>(b));
  return sizes;
}

}  // namespace eyrie::cuda
