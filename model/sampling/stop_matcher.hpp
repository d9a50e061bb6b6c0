// Detects stop sequences in streamed text, including ones split across tokens.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace eyrie {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);
  // Appends newly generated text; returns the stop sequence once one has appeared.
  std::optional<std::string> push(std::string_view text);

 private:
  std::vector<std::string> stops_;
  std::string tail_;  // the last (longest stop - 1) bytes seen, enough to join a split match
  std::size_t keep_ = 0;
};

}  // namespace eyrie
