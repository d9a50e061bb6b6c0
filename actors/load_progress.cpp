#include "actors/load_progress.hpp"

#include <algorithm>

namespace eyrie {

LoadProgress::LoadProgress(std::size_t engines, std::size_t degree)
    : degree_(std::max<std::size_t>(1, degree)), done_(engines, 0), total_(engines, 0), known_(engines, false) {}

std::optional<std::pair<std::size_t, std::size_t>> LoadProgress::update(std::size_t engine, std::size_t done,
                                                                        std::size_t total) {
  if (engine >= done_.size()) return std::nullopt;
  done_[engine] = done;
  total_[engine] = total;
  known_[engine] = true;
  std::size_t sd = 0, st = 0;
  for (std::size_t first = 0; first < done_.size(); first += degree_) {
    if (!known_[first]) return std::nullopt;
    for (std::size_t j = first; j < std::min(first + degree_, done_.size()); ++j) {
      sd += done_[j];
      st += known_[j] ? total_[j] : total_[first];
    }
  }
  return std::make_pair(sd, st);
}

}  // namespace eyrie
