// Stop-sequence search over a bounded window of recent text.
#include "model/sampling/stop_matcher.hpp"

#include <algorithm>

namespace eyrie {

StopMatcher::StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {
  for (const auto& s : stops_) keep_ = std::max(keep_, s.size());
  if (keep_ > 0) --keep_;
}

std::optional<std::string> StopMatcher::push(std::string_view text) {
  if (stops_.empty() || text.empty()) return std::nullopt;
  const std::size_t old = tail_.size();
  tail_.append(text);
  // Only matches that end inside the new text are new; earlier ones were reported already.
  std::optional<std::string> hit;
  std::size_t best_end = std::string::npos;
  for (const auto& s : stops_) {
    std::size_t from = old >= s.size() ? old - s.size() + 1 : 0;
    std::size_t at = tail_.find(s, from);
    if (at != std::string::npos && at + s.size() < best_end) {
      best_end = at + s.size();
      hit = s;
    }
  }
  if (tail_.size() > keep_) tail_.erase(0, tail_.size() - keep_);
  return hit;
}

}  // namespace eyrie
