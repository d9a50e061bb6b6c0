// Router policy.
#include "actors/router_policy.hpp"

namespace eyrie {

std::size_t LeastLoaded::pick() {
  std::size_t best = 0;
  for (std::size_t i = 1; i < load_.size(); ++i)
    if (load_[i] < load_[best]) best = i;
  ++load_[best];
  return best;
}

void LeastLoaded::finished(std::size_t replica) {
  if (replica < load_.size() && load_[replica] > 0) --load_[replica];
}

}  // namespace eyrie
