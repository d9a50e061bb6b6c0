// Block allocation for the paged KV cache.
#include "model/kv_cache.hpp"

#include <string>

#include "model/error.hpp"

namespace eyrie {

BlockAllocator::BlockAllocator(int32_t num_blocks) : in_use_(num_blocks, 0), total_(num_blocks) {
  free_.reserve(num_blocks);
  // Handing out low ids first keeps a lightly loaded cache compact.
  for (int32_t b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
}

bool BlockAllocator::allocate(int32_t n, std::vector<int32_t>& out) {
  if (n < 0 || n > free_blocks()) return false;
  for (int32_t i = 0; i < n; ++i) {
    int32_t b = free_.back();
    free_.pop_back();
    in_use_[b] = 1;
    out.push_back(b);
  }
  return true;
}

void BlockAllocator::release(std::span<const int32_t> blocks) {
  for (int32_t b : blocks) {
    if (b < 0 || b >= total_ || !in_use_[b])
      throw Error("KV block " + std::to_string(b) + " released but not allocated");
    in_use_[b] = 0;
    free_.push_back(b);
  }
}

}  // namespace eyrie
