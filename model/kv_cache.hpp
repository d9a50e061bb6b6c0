// Paged KV cache geometry and the allocator of its fixed-size blocks.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace eyrie {

struct KvCacheSpec {
  int32_t block_size = 16;  // token positions per block
  int32_t num_blocks = 0;

  int32_t blocks_for(int64_t tokens) const {
    return static_cast<int32_t>((tokens + block_size - 1) / block_size);
  }
};

// Free list of block ids. Not thread-safe: one scheduler owns it.
class BlockAllocator {
 public:
  explicit BlockAllocator(int32_t num_blocks);
  // Appends n blocks to out, or none at all when fewer than n are free.
  bool allocate(int32_t n, std::vector<int32_t>& out);
  void release(std::span<const int32_t> blocks);
  int32_t free_blocks() const { return static_cast<int32_t>(free_.size()); }
  int32_t total_blocks() const { return total_; }

 private:
  std::vector<int32_t> free_;
  std::vector<uint8_t> in_use_;
  int32_t total_;
};

}  // namespace eyrie
