// Collectives between the shards of one tensor-parallel replica. Buffers live where the shard's
// engine keeps its activations: host memory for the CPU engine, device memory for CUDA.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "model/error.hpp"

namespace eyrie {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Sums `count` floats over the group, in place. Every rank ends with the same bits, so the
  // replicated residual stream stays identical on all shards. `stream` is the CUDA stream that
  // orders device buffers; host communicators ignore it.
  virtual void all_reduce_sum(float* data, std::size_t count, void* stream) = 0;
  // recv = rank 0's `count` floats, then rank 1's, ...; recv holds size() x count.
  virtual void all_gather(const float* send, float* recv, std::size_t count, void* stream) = 0;
  // Fails every collective in flight and every later one, on all ranks: a shard that cannot
  // finish a step must not leave its peers waiting forever.
  virtual void abort(const std::string& why) = 0;
  // True where a collective is device work enqueued on `stream` and nothing else, so that a
  // CUDA graph captured around it replays it (NCCL). Host communicators work on the calling
  // thread and cannot be captured.
  virtual bool graph_capturable() const { return false; }
  // Throws GroupAborted once the group has been stopped. Collectives check on their own; a
  // replayed graph's do not.
  virtual void throw_if_aborted() const {}
};

// Thrown by a collective of an aborted group.
class GroupAborted : public Error {
 public:
  explicit GroupAborted(const std::string& why) : Error("tensor-parallel group stopped: " + why) {}
};

// A group of `size` ranks in one process whose shards run on CPU threads, one thread per rank.
std::vector<std::shared_ptr<Communicator>> make_in_process_group(int size);

}  // namespace eyrie
