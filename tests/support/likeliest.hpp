// The tokens a logits row finds likeliest, for tests that compare two engines' rows there.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <span>
#include <vector>

namespace eyrie::test {

// The k likeliest token ids of `row`, likeliest first.
inline std::vector<int32_t> likeliest_tokens(std::span<const float> row, int k) {
  std::vector<int32_t> idx(row.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int32_t a, int32_t b) { return row[a] > row[b]; });
  idx.resize(static_cast<std::size_t>(k));
  return idx;
}

}  // namespace eyrie::test
