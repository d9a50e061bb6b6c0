// The host-side tiling of attention work: every (row, head) of a shard exactly once, each tile's
// heads reading one KV head. Runs without a GPU wherever the CUDA backend is built.
#include <gtest/gtest.h>

#if EYRIE_HAS_CUDA
#include <map>

#include "cuda/kernels.hpp"
#include "model/parallel/shard_plan.hpp"

namespace eyrie {
namespace {

void check_tiles(int32_t rows, int32_t heads, int32_t offset, int32_t group, int32_t max_heads, int32_t max_queries) {
  SCOPED_TRACE("rows " + std::to_string(rows) + " heads " + std::to_string(heads) + " offset " +
               std::to_string(offset) + " group " + std::to_string(group) + " max " + std::to_string(max_heads) +
               " queries " + std::to_string(max_queries));
  std::vector<int32_t> tiles;
  cuda::attention_tiles(5, rows, heads, offset, group, max_heads, max_queries, tiles);
  ASSERT_EQ(tiles.size() % 4, 0u);
  std::map<std::pair<int32_t, int32_t>, int> seen;
  for (std::size_t i = 0; i < tiles.size(); i += 4) {
    const int32_t r0 = tiles[i], nr = tiles[i + 1], h0 = tiles[i + 2], nh = tiles[i + 3];
    ASSERT_GE(nh, 1);
    EXPECT_LE(nr * nh, max_queries);
    EXPECT_EQ((offset + h0) / group, (offset + h0 + nh - 1) / group) << "tile spans two KV heads";
    for (int32_t r = r0; r < r0 + nr; ++r)
      for (int32_t h = h0; h < h0 + nh; ++h) ++seen[{r, h}];
  }
  for (int32_t r = 5; r < 5 + rows; ++r)
    for (int32_t h = 0; h < heads; ++h) EXPECT_EQ((seen[{r, h}]), 1) << "row " << r << " head " << h;
  EXPECT_EQ(seen.size(), static_cast<std::size_t>(rows * heads));
}

TEST(AttentionTiles, CoverWholeModelsAndEveryShardOfThem) {
  // Falcon-7B (71 heads, one KV head), -40B (128, 8), the tiny fixtures, decode and prefill.
  for (int32_t rows : {1, 7, 40})
    for (auto [heads, kv] : std::vector<std::pair<int32_t, int32_t>>{{71, 1}, {128, 8}, {8, 2}, {4, 4}})
      for (int32_t degree : {1, 2, 3, 5, 12})
        for (int32_t rank = 0; rank < degree && degree <= heads; ++rank) {
          FalconConfig c;
          c.num_heads = heads;
          c.num_kv_heads = kv;
          const ShardPlan p = ShardPlan::make(c, degree, rank);
          for (int32_t max_heads : {4, 16, 64})
            for (int32_t max_queries : {64, 128})
              check_tiles(rows, static_cast<int32_t>(p.q_count), static_cast<int32_t>(p.q_begin), heads / kv,
                          max_heads, max_queries);
        }
}

}  // namespace
}  // namespace eyrie
#endif
