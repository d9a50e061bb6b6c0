// Encode and decode against Hugging Face tokenizers' own results for Falcon's tokenizer.json.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "model/error.hpp"
#include "model/tokenizer/byte_level.hpp"
#include "tests/tokenizer/tokenizer_cases.hpp"

namespace eyrie {
namespace {

using test::falcon_tokenizer;
using test::tokenizer_cases;

TEST(TokenizerFixtures, HasEnoughCases) {
  EXPECT_GE(tokenizer_cases().encode.size(), 60u);
  EXPECT_GE(tokenizer_cases().decode.size(), 100u);
}

TEST(TokenizerEncode, MatchesHuggingFace) {
  for (const auto& c : tokenizer_cases().encode) {
    EXPECT_EQ(falcon_tokenizer().encode(c.text), c.ids) << "case " << c.name;
  }
}

TEST(TokenizerDecode, MatchesHuggingFace) {
  const Tokenizer& tok = falcon_tokenizer();
  for (const auto& c : tokenizer_cases().encode) {
    EXPECT_EQ(tok.decode(c.ids), c.decoded) << "case " << c.name;
    EXPECT_EQ(tok.decode(c.ids, true), c.decoded_skip_special) << "case " << c.name;
  }
  for (const auto& c : tokenizer_cases().decode) {
    EXPECT_EQ(tok.decode(c.ids, c.skip_special), c.text) << "case " << c.name;
  }
}

// Falcon's vocabulary lacks 28 byte symbols (0x03, 0x0B, 0x1C, 0xC0, 0xFF, ...); like tokenizers,
// encode drops such bytes, so only text without them comes back whole.
std::string without_unknown_bytes(const std::string& text) {
  std::string kept;
  for (const char c : text) {
    if (falcon_tokenizer().token_to_id(byte_level::encode(std::string(1, c)))) kept += c;
  }
  return kept;
}

TEST(TokenizerDecode, RoundTripsValidText) {
  size_t whole = 0;
  for (const auto& c : tokenizer_cases().encode) {
    const std::string expected = without_unknown_bytes(c.text);
    whole += expected == c.text;
    EXPECT_EQ(falcon_tokenizer().decode(falcon_tokenizer().encode(c.text)), expected)
        << "case " << c.name;
  }
  EXPECT_GE(whole, tokenizer_cases().encode.size() - 1);
}

TEST(TokenizerEncode, DropsBytesMissingFromVocabulary) {
  const Tokenizer& tok = falcon_tokenizer();
  // The byte still splits the text first: tokenizers gives [76, 77] ("a", "b"), not "ab".
  EXPECT_EQ(tok.encode("a\x1C"
                       "b"),
            (std::vector<int32_t>{76, 77}));
  EXPECT_TRUE(tok.encode("\x0B").empty());
}

TEST(TokenizerEncode, EmptyText) {
  EXPECT_TRUE(falcon_tokenizer().encode("").empty());
}

TEST(TokenizerEncode, InvalidUtf8IsReplacedBeforeEncoding) {
  const Tokenizer& tok = falcon_tokenizer();
  // Lone continuation byte, truncated 3-byte sequence, overlong encoding, byte 0xFF.
  const std::string bad = "a\x80 b\xE4\xBD c\xC0\xAF d\xFF";
  const std::string repaired =
      "a\xEF\xBF\xBD b\xEF\xBF\xBD c\xEF\xBF\xBD\xEF\xBF\xBD d\xEF\xBF\xBD";
  EXPECT_EQ(tok.encode(bad), tok.encode(repaired));
  EXPECT_EQ(tok.decode(tok.encode(bad)), repaired);
  EXPECT_EQ(tok.encode(std::string("\xF0\x9F\x98", 3)), tok.encode("\xEF\xBF\xBD"));
}

TEST(TokenizerVocab, SpecialTokensAndLookup) {
  const Tokenizer& tok = falcon_tokenizer();
  EXPECT_EQ(tok.vocab_size(), 65024);
  EXPECT_EQ(tok.token_to_id("<|endoftext|>"), 11);
  EXPECT_EQ(tok.token_to_id(">>QUESTION<<"), 6);
  EXPECT_EQ(tok.token_to_id("Hello"), 9856);
  EXPECT_EQ(tok.token_to_id("\xC4\xA0world"), 1079);  // "Ġworld"
  EXPECT_FALSE(tok.token_to_id("no such token at all"));
  EXPECT_TRUE(tok.is_special(11));
  EXPECT_TRUE(tok.is_special(0));
  EXPECT_FALSE(tok.is_special(12));
  EXPECT_EQ(tok.token_bytes(11), "<|endoftext|>");
  EXPECT_EQ(tok.token_bytes(1079), " world");
  EXPECT_EQ(tok.token_bytes(204), " ");
}

TEST(TokenizerDecode, OutOfRangeIdThrowsNamingIt) {
  const Tokenizer& tok = falcon_tokenizer();
  for (const int32_t id : {-1, 65024, 1 << 30}) {
    const std::vector<int32_t> ids{12, id};
    try {
      tok.decode(ids);
      ADD_FAILURE() << "no error for id " << id;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(std::to_string(id)), std::string::npos) << e.what();
    }
    EXPECT_THROW(tok.token_bytes(id), Error);
  }
}

}  // namespace
}  // namespace eyrie
