// Block allocator accounting.
#include "model/kv_cache.hpp"

#include <gtest/gtest.h>

#include "model/error.hpp"

namespace eyrie {
namespace {

TEST(BlockAllocator, AllOrNothing) {
  BlockAllocator a(4);
  std::vector<int32_t> got;
  EXPECT_TRUE(a.allocate(3, got));
  EXPECT_EQ(got, (std::vector<int32_t>{0, 1, 2}));
  EXPECT_FALSE(a.allocate(2, got));
  EXPECT_EQ(got.size(), 3u);
  EXPECT_EQ(a.free_blocks(), 1);
  a.release(got);
  EXPECT_EQ(a.free_blocks(), 4);
}

TEST(BlockAllocator, DoubleReleaseIsAnError) {
  BlockAllocator a(2);
  std::vector<int32_t> got;
  ASSERT_TRUE(a.allocate(1, got));
  a.release(got);
  EXPECT_THROW(a.release(got), Error);
  std::vector<int32_t> bad{9};
  EXPECT_THROW(a.release(bad), Error);
}

TEST(KvCacheSpec, BlocksFor) {
  KvCacheSpec s{16, 10};
  EXPECT_EQ(s.blocks_for(0), 0);
  EXPECT_EQ(s.blocks_for(1), 1);
  EXPECT_EQ(s.blocks_for(16), 1);
  EXPECT_EQ(s.blocks_for(17), 2);
}

}  // namespace
}  // namespace eyrie
