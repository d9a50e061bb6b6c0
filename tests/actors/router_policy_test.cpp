// Least-loaded routing.
#include "actors/router_policy.hpp"

#include <gtest/gtest.h>

namespace eyrie {
namespace {

TEST(LeastLoaded, SpreadsAndFollowsCompletions) {
  LeastLoaded p;
  p.resize(3);
  EXPECT_EQ(p.pick(), 0u);
  EXPECT_EQ(p.pick(), 1u);
  EXPECT_EQ(p.pick(), 2u);
  EXPECT_EQ(p.pick(), 0u);
  p.finished(1);
  EXPECT_EQ(p.pick(), 1u);
  p.finished(2);
  p.finished(2);
  p.finished(2);  // never below zero
  EXPECT_EQ(p.load(2), 0);
  EXPECT_EQ(p.pick(), 2u);
  p.finished(99);  // unknown replicas are ignored
  EXPECT_EQ(p.load(0), 2);
}

}  // namespace
}  // namespace eyrie
