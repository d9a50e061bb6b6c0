// Code point classes for pre-tokenization and UTF-8 decoding that repairs invalid input the way
// Rust's String::from_utf8_lossy does.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace eyrie::unicode {

// The low two bits are the GPT-2 regex class; the punctuation flag is independent of them.
enum CharClass : uint8_t {
  kOther = 0,   // neither \s, \p{L} nor \p{N}
  kLetter = 1,  // \p{L}
  kNumber = 2,  // \p{N}
  kSpace = 3,   // \s (White_Space)
  kRegexMask = 3,
  kPunct = 4,  // ASCII punctuation or general category P*
};

uint8_t char_class(char32_t cp);

// Decodes the code point starting at text[pos] of text that is known to be valid UTF-8 and
// advances pos past it.
inline char32_t next_code_point(std::string_view text, size_t& pos) {
  const auto b0 = static_cast<unsigned char>(text[pos]);
  if (b0 < 0x80) {
    ++pos;
    return b0;
  }
  auto cont = [&](size_t i) { return static_cast<char32_t>(text[pos + i]) & 0x3F; };
  char32_t cp;
  if (b0 < 0xE0) {
    cp = (static_cast<char32_t>(b0 & 0x1F) << 6) | cont(1);
    pos += 2;
  } else if (b0 < 0xF0) {
    cp = (static_cast<char32_t>(b0 & 0x0F) << 12) | (cont(1) << 6) | cont(2);
    pos += 3;
  } else {
    cp = (static_cast<char32_t>(b0 & 0x07) << 18) | (cont(1) << 12) | (cont(2) << 6) | cont(3);
    pos += 4;
  }
  return cp;
}

// What starts at bytes[pos]: a well-formed sequence of `length` bytes, or (length 0) a broken one
// whose first `prefix` bytes (at least 1) are to be replaced by one U+FFFD. `truncated` says the
// input ended while the broken sequence could still have become valid.
struct Utf8Sequence {
  size_t length = 0;
  size_t prefix = 0;
  bool truncated = false;
};
Utf8Sequence utf8_sequence_at(std::string_view bytes, size_t pos);

bool is_valid_utf8(std::string_view bytes);

// Appends bytes to out with every maximal invalid subsequence replaced by U+FFFD, as
// String::from_utf8_lossy does. Unless `final`, a trailing incomplete sequence is left unconsumed
// because later bytes may complete it. Returns the number of bytes consumed.
size_t append_utf8_lossy(std::string_view bytes, std::string& out, bool final);

}  // namespace eyrie::unicode
