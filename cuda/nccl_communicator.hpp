// NCCL collectives between the GPUs of one tensor-parallel replica, in one process.
#pragma once

#include <memory>
#include <vector>

#include "model/parallel/communicator.hpp"

namespace eyrie {

// One communicator per listed device, rank i on devices[i]; each rank's collectives are
// enqueued on the CUDA stream its engine passes. Throws eyrie::Error with NCCL's own message
// when the group cannot be formed (and in a build without CUDA).
std::vector<std::shared_ptr<Communicator>> make_nccl_group(const std::vector<int>& devices);

namespace cuda {
class PeerExchange;
}
// The same devices' memory shared between their ranks for small sums (cuda::PeerExchange, given
// to each rank's engine in CudaEngineOptions); null where a pair cannot reach the other's memory.
// Throws in a build without CUDA.
std::shared_ptr<cuda::PeerExchange> make_peer_exchange(const std::vector<int>& devices);

}  // namespace eyrie
