// Lossy UTF-8 decoding (as Rust's String::from_utf8_lossy) and code point classes.
#include <gtest/gtest.h>

#include <string>

#include "model/tokenizer/unicode.hpp"

namespace eyrie::unicode {
namespace {

std::string lossy(const std::string& bytes) {
  std::string out;
  EXPECT_EQ(append_utf8_lossy(bytes, out, true), bytes.size());
  return out;
}

constexpr const char* kFffd = "\xEF\xBF\xBD";

TEST(TokenizerUnicode, LossyReplacesMaximalInvalidSubparts) {
  EXPECT_EQ(lossy("plain"), "plain");
  EXPECT_EQ(lossy("\xE2\x82\xAC"), "\xE2\x82\xAC");
  // One U+FFFD per maximal prefix of a valid sequence, then decoding resumes at the breaking byte.
  EXPECT_EQ(lossy(std::string("\xE2\x82") + "A"), std::string(kFffd) + "A");
  const std::string grin = "\xF0\x9F\x98\x80";
  EXPECT_EQ(lossy(grin.substr(0, 3) + grin), kFffd + grin);
  EXPECT_EQ(lossy("\x80\x80"), std::string(kFffd) + kFffd);
  EXPECT_EQ(lossy("\xC0\xAF"), std::string(kFffd) + kFffd);              // overlong
  EXPECT_EQ(lossy("\xED\xA0\x80"), std::string(kFffd) + kFffd + kFffd);  // surrogate
  EXPECT_EQ(lossy("\xF4\x90\x80\x80"), std::string(kFffd) + kFffd + kFffd + kFffd);
  EXPECT_EQ(lossy("\xE0\x80"), std::string(kFffd) + kFffd);
  EXPECT_EQ(lossy("\xF1\x80\x80"), kFffd);  // truncated at the end
}

TEST(TokenizerUnicode, LossyKeepsIncompleteTailUnlessFinal) {
  std::string out;
  EXPECT_EQ(append_utf8_lossy("ab\xF0\x9F", out, false), 2u);
  EXPECT_EQ(out, "ab");
  out.clear();
  EXPECT_EQ(append_utf8_lossy("ab\xF0\x41", out, false), 4u);  // already broken: not held
  EXPECT_EQ(out, std::string("ab") + kFffd + "A");
}

TEST(TokenizerUnicode, Classes) {
  EXPECT_EQ(char_class('a'), kLetter);
  EXPECT_EQ(char_class('7'), kNumber);
  EXPECT_EQ(char_class(' '), kSpace);
  EXPECT_EQ(char_class(0x3000), kSpace);
  EXPECT_EQ(char_class(0x1C), kOther);  // not White_Space, unlike Python's isspace()
  EXPECT_EQ(char_class('$'), kPunct);   // ASCII punctuation includes symbols
  EXPECT_EQ(char_class(0x201C), kPunct);
  EXPECT_EQ(char_class(0x4E2D), kLetter);
  EXPECT_EQ(char_class(0x105C0), kLetter);  // Unicode 16 (Todhri), as Oniguruma has it
  EXPECT_EQ(char_class(0x2E43), kOther);    // Unicode 9 punctuation, unknown to unicode_categories
  EXPECT_EQ(char_class(0x1F600), kOther);
}

}  // namespace
}  // namespace eyrie::unicode
