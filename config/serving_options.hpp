// eyrie serve's settings: declared once, read from serving.properties, OPTION_<KEY> environment
// variables and command-line flags, in that order of increasing precedence.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace eyrie {

struct OptionDecl {
  std::string key;        // as in serving.properties after "option.", e.g. max_rolling_batch_size
  enum class Type { string, integer, number, boolean } type;
  std::string default_value;
  std::string help;
  bool no_effect = false;  // accepted for compatibility with existing files, otherwise ignored
};

const std::vector<OptionDecl>& serving_option_decls();

// Resolved values by key; every declared key is present.
class ServingOptions {
 public:
  // Throws eyrie::InvalidArgument naming the file / variable / flag and key at fault.
  static ServingOptions resolve(const std::optional<std::string>& properties_path,
                                const std::map<std::string, std::string>& environment,
                                const std::map<std::string, std::string>& flags);

  const std::string& str(const std::string& key) const;
  int64_t integer(const std::string& key) const;
  double number(const std::string& key) const;
  bool boolean(const std::string& key) const;
  // Where each value came from ("default", "serving.properties", "OPTION_X", "--x"), for logs.
  const std::string& source(const std::string& key) const;

 private:
  std::map<std::string, std::string> values_, sources_;
};

// The process environment as a map (for resolve()).
std::map<std::string, std::string> current_environment();

}  // namespace eyrie
