// Code point class lookup over the generated range table, and lossy UTF-8 repair.
#include "model/tokenizer/unicode.hpp"

#include <algorithm>
#include <array>

namespace eyrie::unicode {
namespace {

struct ClassRange {
  char32_t first;
  char32_t last;
  uint8_t cls;
};

constexpr ClassRange kRanges[] = {
#include "model/tokenizer/unicode_tables.inc"
};

uint8_t lookup(char32_t cp) {
  const auto* it = std::upper_bound(std::begin(kRanges), std::end(kRanges), cp,
                                    [](char32_t c, const ClassRange& r) { return c < r.first; });
  if (it == std::begin(kRanges)) return kOther;
  --it;
  return cp <= it->last ? it->cls : static_cast<uint8_t>(kOther);
}

// The Basic Multilingual Plane covers nearly all text; a flat table makes its lookup one load.
const std::array<uint8_t, 0x10000>& bmp_table() {
  static const auto table = [] {
    std::array<uint8_t, 0x10000> t{};
    for (const auto& r : kRanges) {
      if (r.first > 0xFFFF) break;
      for (char32_t c = r.first; c <= std::min<char32_t>(r.last, 0xFFFF); ++c) t[c] = r.cls;
    }
    return t;
  }();
  return table;
}

}  // namespace

uint8_t char_class(char32_t cp) {
  if (cp <= 0xFFFF) return bmp_table()[cp];
  return lookup(cp);
}

Utf8Sequence utf8_sequence_at(std::string_view bytes, size_t pos) {
  const auto b0 = static_cast<unsigned char>(bytes[pos]);
  if (b0 < 0x80) return {1, 0, false};
  size_t need;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;  // no surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
  } else {
    return {0, 1, false};
  }
  for (size_t i = 1; i < need; ++i) {
    if (pos + i >= bytes.size()) return {0, i, true};
    const auto b = static_cast<unsigned char>(bytes[pos + i]);
    const bool ok = i == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
    if (!ok) return {0, i, false};
  }
  return {need, 0, false};
}

bool is_valid_utf8(std::string_view bytes) {
  size_t pos = 0;
  while (pos < bytes.size()) {
    if (static_cast<unsigned char>(bytes[pos]) < 0x80) {
      ++pos;
      continue;
    }
    const size_t len = utf8_sequence_at(bytes, pos).length;
    if (len == 0) return false;
    pos += len;
  }
  return true;
}

size_t append_utf8_lossy(std::string_view bytes, std::string& out, bool final) {
  static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
  size_t pos = 0;
  while (pos < bytes.size()) {
    const size_t start = pos;
    while (pos < bytes.size() && static_cast<unsigned char>(bytes[pos]) < 0x80) ++pos;
    out.append(bytes.substr(start, pos - start));
    if (pos == bytes.size()) break;
    const Utf8Sequence seq = utf8_sequence_at(bytes, pos);
    if (seq.length > 0) {
      out.append(bytes.substr(pos, seq.length));
      pos += seq.length;
      continue;
    }
    if (seq.truncated && !final) return pos;
    // Decoding resumes at the byte that broke the sequence, which may start a valid one.
    out.append(kReplacement);
    pos += seq.prefix;
  }
  return pos;
}

}  // namespace eyrie::unicode
