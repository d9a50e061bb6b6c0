// Streaming JSON output with correct string escaping, for HTTP bodies and CLI output alike.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace eyrie {

// Appends s to out as a JSON string literal. Invalid UTF-8 is replaced by U+FFFD so the
// output is always valid JSON.
void append_json_string(std::string& out, std::string_view s);

// Builds one JSON value; keys and commas are placed by the writer.
class JsonWriter {
 public:
  // Room for a streamed token's frame without growing.
  JsonWriter() { out_.reserve(192); }
  JsonWriter& begin_object();
  JsonWriter& end_object();
  JsonWriter& begin_array();
  JsonWriter& end_array();
  JsonWriter& key(std::string_view k);
  JsonWriter& value(std::string_view s);
  JsonWriter& value(const char* s) { return value(std::string_view(s)); }
  JsonWriter& value(const std::string& s) { return value(std::string_view(s)); }
  JsonWriter& value(int64_t v);
  JsonWriter& value(int32_t v) { return value(static_cast<int64_t>(v)); }
  JsonWriter& value(uint64_t v);
  JsonWriter& value(double v);  // non-finite numbers are written as null
  JsonWriter& value(bool v);
  JsonWriter& null();
  template <typename T>
  JsonWriter& value(const std::optional<T>& v) { return v ? value(*v) : null(); }

  const std::string& str() const { return out_; }
  std::string take() { return std::move(out_); }

 private:
  void separate();
  std::string out_;
  std::vector<bool> first_;  // per open container: no element written yet
  bool after_key_ = false;
};

}  // namespace eyrie
