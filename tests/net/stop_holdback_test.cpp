// StopHoldback: streamed pieces concatenate to the text up to the first stop sequence, wherever
// the pieces cut it, and no byte of a stop sequence is ever released.
#include "net/api/stop_holdback.hpp"

#include <gtest/gtest.h>

namespace eyrie::net {
namespace {

std::string stream(StopHoldback& h, const std::vector<std::string>& pieces, std::vector<std::string>* sent = nullptr) {
  std::string out;
  for (const auto& p : pieces) {
    std::string s = h.push(p);
    if (sent) sent->push_back(s);
    out += s;
  }
  return out + h.finish();
}

TEST(StopHoldback, WithoutStopsEveryPieceGoesOutAtOnce) {
  StopHoldback h({});
  EXPECT_EQ(h.push("Hello"), "Hello");
  EXPECT_EQ(h.push(" world"), " world");
  EXPECT_EQ(h.finish(), "");
}

TEST(StopHoldback, StopSplitOverPiecesIsNeverSent) {
  StopHoldback h({"###"});
  std::vector<std::string> sent;
  EXPECT_EQ(stream(h, {"Answer: 4", "#", "#", "# more"}, &sent), "Answer: 4");
  EXPECT_TRUE(h.stopped());
  for (const auto& s : sent) EXPECT_EQ(s.find('#'), std::string::npos) << s;
}

TEST(StopHoldback, FalseStartIsReleasedOnceItCannotBeAStop) {
  StopHoldback h({"\nUser:"});
  EXPECT_EQ(h.push("one\nUs"), "one");
  EXPECT_EQ(h.push("ed to"), "\nUsed to");
  EXPECT_EQ(h.push(" it\n"), " it");
  EXPECT_EQ(h.finish(), "\n");  // the end of the generation: nothing more can complete a stop
}

TEST(StopHoldback, EarliestOfSeveralStopsCuts) {
  StopHoldback h({"zz", "b c"});
  EXPECT_EQ(stream(h, {"a b", " c zz"}), "a ");
}

TEST(StopHoldback, StopInsideOnePieceKeepsTheTextBeforeIt) {
  StopHoldback h({"MF"});
  EXPECT_EQ(h.push(" funnel dehorsMF trailing"), " funnel dehors");
  EXPECT_EQ(h.push("later"), "");
  EXPECT_EQ(h.finish(), "");
}

TEST(StopHoldback, StopAtTheVeryStart) {
  StopHoldback h({"."});
  EXPECT_EQ(stream(h, {".", "abc"}), "");
}

TEST(StopHoldback, MultiByteCharactersAreNotCut) {
  StopHoldback h({"éé"});
  EXPECT_EQ(h.push("caf\xc3\xa9"), "caf");  // "é" may begin the stop: held whole
  EXPECT_EQ(h.push("!"), "\xc3\xa9!");
  EXPECT_EQ(stream(h, {"\xc3\xa9", "\xc3\xa9", "x"}), "");
}

TEST(StopHoldback, EmptyStopStringsAreIgnored) {
  StopHoldback h({"", "END"});
  EXPECT_EQ(stream(h, {"a", "b", "EN", "D", "c"}), "ab");
}

}  // namespace
}  // namespace eyrie::net
