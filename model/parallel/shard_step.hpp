// One shard's part of a tensor-parallel step.
#pragma once

#include <exception>

#include "model/parallel/communicator.hpp"
#include "model/step.hpp"

namespace eyrie {

// Runs `engine`'s share of the step and returns its failure, or null. A shard that fails stops
// the group (comm may be null for a whole model), so its peers return too instead of waiting in
// a collective for it. The batch must have been validated: every shard refuses a bad batch
// alike, before any exchange, so that refusal needs no stop.
std::exception_ptr run_shard_step(Engine& engine, Communicator* comm, const StepBatch& batch, StepOutput& out);

}  // namespace eyrie
