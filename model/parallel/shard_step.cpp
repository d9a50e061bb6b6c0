#include "model/parallel/shard_step.hpp"

namespace eyrie {

std::exception_ptr run_shard_step(Engine& engine, Communicator* comm, const StepBatch& batch, StepOutput& out) {
  try {
    engine.step(batch, out);
    return nullptr;
  } catch (const GroupAborted&) {
    return std::current_exception();
  } catch (const std::exception& e) {
    if (comm) comm->abort("rank " + std::to_string(comm->rank()) + ": " + e.what());
    return std::current_exception();
  } catch (...) {
    if (comm) comm->abort("rank " + std::to_string(comm->rank()) + ": unknown error");
    return std::current_exception();
  }
}

}  // namespace eyrie
