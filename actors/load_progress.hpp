// Weight-loading progress summed over a runtime's GPUs, for one progress bar.
#pragma once

#include <cstddef>
#include <optional>
#include <utility>
#include <vector>

namespace eyrie {

// Engines are numbered replica by replica, `degree` shards each. Replicas load at the same time;
// a replica's shards one after another, so a shard not yet started counts at the size of its
// replica's first. Nothing is reported until every replica's first shard has given its total.
class LoadProgress {
 public:
  LoadProgress(std::size_t engines, std::size_t degree);
  // Engine i has queued `done` of its `total` bytes. Returns (done, total) over all engines
  // once every replica has started.
  std::optional<std::pair<std::size_t, std::size_t>> update(std::size_t engine, std::size_t done, std::size_t total);

 private:
  std::size_t degree_;
  std::vector<std::size_t> done_, total_;
  std::vector<bool> known_;
};

}  // namespace eyrie
