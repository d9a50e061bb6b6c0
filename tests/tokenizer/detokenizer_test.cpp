// Streaming detokenization: pieces are valid UTF-8 and add up to decode().
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "model/error.hpp"
#include "model/tokenizer/detokenizer.hpp"
#include "model/tokenizer/unicode.hpp"
#include "tests/tokenizer/tokenizer_cases.hpp"

namespace eyrie {
namespace {

using test::falcon_tokenizer;
using test::tokenizer_cases;

// Streams ids one by one and checks every piece; returns the concatenation.
std::string stream(const std::vector<int32_t>& ids, bool skip_special, const std::string& name) {
  IncrementalDetokenizer detok(falcon_tokenizer(), skip_special);
  std::string text;
  for (const int32_t id : ids) {
    const std::string piece = detok.push(id);
    EXPECT_TRUE(unicode::is_valid_utf8(piece)) << "case " << name;
    text += piece;
  }
  const std::string tail = detok.flush();
  EXPECT_TRUE(unicode::is_valid_utf8(tail)) << "case " << name;
  return text + tail;
}

TEST(IncrementalDetokenizer, PiecesConcatenateToDecode) {
  const Tokenizer& tok = falcon_tokenizer();
  for (const auto& c : tokenizer_cases().encode) {
    for (const bool skip : {false, true}) {
      EXPECT_EQ(stream(c.ids, skip, c.name), tok.decode(c.ids, skip)) << "case " << c.name;
    }
  }
  for (const auto& c : tokenizer_cases().decode) {
    EXPECT_EQ(stream(c.ids, c.skip_special, c.name), c.text) << "case " << c.name;
  }
}

TEST(IncrementalDetokenizer, HoldsBackCharacterSplitAcrossTokens) {
  const Tokenizer& tok = falcon_tokenizer();
  // Each of these is encoded with tokens that end inside a multi-byte character.
  for (const std::string text : {"🍕", "你好", "👨‍👩‍👧‍👦"}) {
    const std::vector<int32_t> ids = tok.encode(text);
    ASSERT_GT(ids.size(), 1u) << text;
    IncrementalDetokenizer detok(tok);
    EXPECT_EQ(detok.push(ids[0]), "") << text;  // no whole character yet
    std::string out;
    for (size_t i = 1; i < ids.size(); ++i) out += detok.push(ids[i]);
    EXPECT_EQ(out + detok.flush(), text);
  }
}

TEST(IncrementalDetokenizer, FlushReplacesIncompleteTail) {
  const Tokenizer& tok = falcon_tokenizer();
  const std::vector<int32_t> ids = tok.encode("ok 🍕");
  IncrementalDetokenizer detok(tok);
  std::string out;
  for (size_t i = 0; i + 1 < ids.size(); ++i) out += detok.push(ids[i]);
  out += detok.flush();
  EXPECT_EQ(out, tok.decode(std::vector<int32_t>(ids.begin(), ids.end() - 1)));
  EXPECT_EQ(out.substr(out.size() - 3), "\xEF\xBF\xBD");
  EXPECT_EQ(detok.flush(), "");
}

TEST(IncrementalDetokenizer, SkipsSpecialTokens) {
  const Tokenizer& tok = falcon_tokenizer();
  IncrementalDetokenizer detok(tok, true);
  EXPECT_EQ(detok.push(11), "");
  EXPECT_EQ(detok.push(9856), "Hello");
  IncrementalDetokenizer keep(tok);
  EXPECT_EQ(keep.push(11), "<|endoftext|>");
}

TEST(IncrementalDetokenizer, OutOfRangeIdThrows) {
  IncrementalDetokenizer detok(falcon_tokenizer());
  EXPECT_THROW(detok.push(70000), Error);
  EXPECT_EQ(detok.push(9856), "Hello");
}

}  // namespace
}  // namespace eyrie
