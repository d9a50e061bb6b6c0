// Loads tests/data/tokenizer_cases.json.
#include "tests/tokenizer/tokenizer_cases.hpp"

#include <simdjson.h>

#include <stdexcept>

namespace eyrie::test {
namespace {

std::vector<int32_t> read_ids(simdjson::dom::array arr) {
  std::vector<int32_t> ids;
  for (const auto v : arr) ids.push_back(static_cast<int32_t>(int64_t(v)));
  return ids;
}

TokenizerCases load() {
  const std::string path = std::string(EYRIE_TEST_DATA) + "/tokenizer_cases.json";
  simdjson::dom::parser parser;
  // simdjson throws on any missing field or wrong type, which fails the test loudly.
  const simdjson::dom::element root = parser.load(path);
  TokenizerCases cases;
  for (const auto c : root["cases"].get_array()) {
    cases.encode.push_back({std::string(std::string_view(c["name"])),
                            std::string(std::string_view(c["text"])), read_ids(c["ids"]),
                            std::string(std::string_view(c["decoded"])),
                            std::string(std::string_view(c["decoded_skip_special"]))});
  }
  for (const auto c : root["decode_cases"].get_array()) {
    cases.decode.push_back({std::string(std::string_view(c["name"])), read_ids(c["ids"]),
                            bool(c["skip_special"]), std::string(std::string_view(c["text"]))});
  }
  return cases;
}

}  // namespace

const TokenizerCases& tokenizer_cases() {
  static const TokenizerCases cases = load();
  return cases;
}

const Tokenizer& falcon_tokenizer() {
  static const Tokenizer tokenizer =
      Tokenizer::from_file(std::string(EYRIE_TEST_DATA) + "/tokenizer.json");
  return tokenizer;
}

}  // namespace eyrie::test
