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

}  // namespace eyrie
