// Loading progress summed over replicas and their shards, as the runtime reports it.
#include "actors/load_progress.hpp"

#include <gtest/gtest.h>

namespace eyrie {
namespace {

using Sum = std::optional<std::pair<std::size_t, std::size_t>>;

TEST(LoadProgress, WaitsForEveryReplicaThenSumsThem) {
  LoadProgress p(2, 1);  // two replicas of one shard
  EXPECT_EQ(p.update(0, 0, 100), Sum{});
  EXPECT_EQ(p.update(0, 40, 100), Sum{});
  EXPECT_EQ(p.update(1, 0, 100), (Sum{{40, 200}}));
  EXPECT_EQ(p.update(1, 100, 100), (Sum{{140, 200}}));
  EXPECT_EQ(p.update(0, 100, 100), (Sum{{200, 200}}));
}

TEST(LoadProgress, CountsShardsNotYetStartedAtTheirReplicasFirst) {
  LoadProgress p(4, 2);  // two replicas of two shards, each replica's shards in turn
  EXPECT_EQ(p.update(0, 10, 50), Sum{});
  EXPECT_EQ(p.update(2, 20, 60), (Sum{{30, 2 * 50 + 2 * 60}}));
  EXPECT_EQ(p.update(0, 50, 50), (Sum{{70, 220}}));
  EXPECT_EQ(p.update(1, 5, 52), (Sum{{75, 50 + 52 + 120}}));
  EXPECT_EQ(p.update(3, 61, 61), (Sum{{50 + 5 + 20 + 61, 50 + 52 + 60 + 61}}));
}

TEST(LoadProgress, IgnoresEnginesItDoesNotHave) {
  LoadProgress p(1, 1);
  EXPECT_EQ(p.update(3, 1, 1), Sum{});
  EXPECT_EQ(p.update(0, 1, 2), (Sum{{1, 2}}));
}

}  // namespace
}  // namespace eyrie
