// Least-loaded choice among replicas, counting the requests each has accepted and not finished.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace eyrie {

class LeastLoaded {
 public:
  void resize(std::size_t replicas) { load_.assign(replicas, 0); }
  std::size_t size() const { return load_.size(); }
  // The replica with the fewest outstanding requests (the lowest index on a tie); counts the new one.
  std::size_t pick();
  void finished(std::size_t replica);
  int64_t load(std::size_t replica) const { return load_[replica]; }

 private:
  std::vector<int64_t> load_;
};

}  // namespace eyrie
