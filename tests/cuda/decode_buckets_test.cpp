// Decode batch buckets: every row count has one that holds it with at most a third more rows,
// and the prepared list ends at the first bucket holding the batch. Runs without a GPU.
#include "cuda/decode_buckets.hpp"

#include <gtest/gtest.h>

namespace eyrie {
namespace {

TEST(DecodeBuckets, EveryRowCountFitsWithAtMostAThirdMoreRows) {
  int64_t previous = 0;
  for (int64_t rows = 1; rows <= 1000; ++rows) {
    const int64_t b = cuda::decode_bucket(rows);
    EXPECT_GE(b, rows);
    EXPECT_LE(3 * b, 4 * rows + 3) << rows << " rows";
    EXPECT_GE(b, previous);
    previous = b;
  }
  EXPECT_EQ(cuda::decode_bucket(1), 1);
  EXPECT_EQ(cuda::decode_bucket(5), 6);
  EXPECT_EQ(cuda::decode_bucket(256), 256);
  EXPECT_EQ(cuda::decode_bucket(257), 320);
}

TEST(DecodeBuckets, ListEndsAtTheFirstBucketHoldingTheBatch) {
  const std::vector<int32_t> to_5 = {1, 2, 3, 4, 6};
  EXPECT_EQ(cuda::decode_buckets_up_to(5), to_5);
  EXPECT_EQ(cuda::decode_buckets_up_to(100).back(), 112);
  EXPECT_EQ(cuda::decode_buckets_up_to(1), std::vector<int32_t>{1});
}

}  // namespace
}  // namespace eyrie
