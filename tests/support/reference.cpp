// reference.json reader.
#include "tests/support/reference.hpp"

#include <simdjson.h>

#include <algorithm>
#include <filesystem>
#include <stdexcept>

#include "tests/support/temp_dir.hpp"

namespace eyrie::test {
namespace {

template <typename T>
std::vector<T> numbers(simdjson::dom::array a) {
  std::vector<T> out;
  for (auto v : a) {
    if constexpr (std::is_integral_v<T>) out.push_back(static_cast<T>(int64_t(v)));
    else out.push_back(double(v));
  }
  return out;
}

}  // namespace

std::vector<ReferenceCase> load_reference(const std::string& path) {
  simdjson::dom::parser parser;
  simdjson::dom::element root = parser.load(path);
  std::vector<ReferenceCase> out;
  for (simdjson::dom::object c : root["cases"].get_array()) {
    ReferenceCase r;
    r.prompt = std::string(std::string_view(c["prompt"]));
    r.ids = numbers<int32_t>(c["ids"]);
    for (auto v : c["logprobs"].get_array()) {
      if (v.is_null()) r.logprobs.push_back(std::nullopt);
      else r.logprobs.push_back(double(v));
    }
    r.top10_ids = numbers<int32_t>(c["top10_ids"]);
    r.top10_logprobs = numbers<double>(c["top10_logprobs"]);
    r.greedy_ids = numbers<int32_t>(c["greedy_ids"]);
    r.greedy_logprobs = numbers<double>(c["greedy_logprobs"]);
    r.greedy_margins = numbers<double>(c["greedy_margins"]);
    r.greedy_text = std::string(std::string_view(c["greedy_text"]));
    out.push_back(std::move(r));
  }
  return out;
}

std::vector<std::string> fixture_models() {
  std::vector<std::string> dirs;
  for (const auto& e : std::filesystem::directory_iterator(test_data("models")))
    if (e.is_directory()) dirs.push_back(e.path().string());
  std::sort(dirs.begin(), dirs.end());
  if (dirs.empty()) throw std::runtime_error("no fixture models under tests/data/models");
  return dirs;
}

std::string fixture_name(const std::string& dir) {
  std::string n = std::filesystem::path(dir).filename().string();
  for (char& ch : n)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return n;
}

}  // namespace eyrie::test
