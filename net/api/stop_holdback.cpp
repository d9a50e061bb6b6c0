// StopHoldback: releases streamed text up to where a stop sequence could still begin.
#include "net/api/stop_holdback.hpp"

#include <algorithm>

namespace eyrie::net {

StopHoldback::StopHoldback(std::vector<std::string> stops) : stops_(std::move(stops)) {
  std::erase_if(stops_, [](const std::string& s) { return s.empty(); });
}

std::string StopHoldback::push(std::string_view piece) {
  if (stopped_) return {};
  held_.append(piece);
  std::size_t cut = std::string::npos;
  for (const auto& s : stops_) cut = std::min(cut, held_.find(s));
  if (cut != std::string::npos) {
    stopped_ = true;
    std::string out = held_.substr(0, cut);
    held_.clear();
    return out;
  }
  // Keep the longest tail that a stop sequence begins with; it may yet complete one. A stop
  // sequence begins at a character boundary, so the tail never splits a UTF-8 character.
  std::size_t keep = 0;
  for (const auto& s : stops_)
    for (std::size_t len = std::min(s.size() - 1, held_.size()); len > keep; --len)
      if (std::string_view(held_).substr(held_.size() - len) == std::string_view(s).substr(0, len)) {
        keep = len;
        break;
      }
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

std::string StopHoldback::finish() {
  std::string out = stopped_ ? std::string() : std::move(held_);
  held_.clear();
  return out;
}

}  // namespace eyrie::net
