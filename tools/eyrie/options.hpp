// Command-line options, each declared once with its flag, value and help text.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "model/error.hpp"

namespace eyrie::cli {

struct OptionSpec {
  std::string name;        // without the leading dashes
  std::string value_name;  // empty for a flag that takes no value
  std::string help;
  bool repeatable = false;
};

class ParsedArgs {
 public:
  bool has(const std::string& name) const { return values_.count(name) > 0; }
  std::optional<std::string> get(const std::string& name) const;
  std::vector<std::string> all(const std::string& name) const;
  std::optional<int64_t> get_int(const std::string& name) const;
  std::optional<double> get_double(const std::string& name) const;
  std::optional<uint64_t> get_uint(const std::string& name) const;

 private:
  friend ParsedArgs parse_options(std::span<const OptionSpec>, std::span<char*>);
  std::map<std::string, std::vector<std::string>> values_;
};

// Throws InvalidArgument (exit code 2) for unknown options, missing values and repeats.
ParsedArgs parse_options(std::span<const OptionSpec> specs, std::span<char*> args);

std::string usage(const std::string& synopsis, const std::string& summary,
                  std::span<const OptionSpec> specs);

}  // namespace eyrie::cli
