// ncclCommInitAll forms the whole group from one thread, so no rank waits for a peer thread
// that has not started yet.
#include "cuda/nccl_communicator.hpp"

#include <cuda_runtime.h>
#include <nccl.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>

#include "model/error.hpp"
#include "model/parallel/exit_waited_threads.hpp"

namespace eyrie {
namespace {

std::string devices_text(const std::vector<int>& devices) {
  std::string s;
  for (int d : devices) s += (s.empty() ? "" : ",") + std::to_string(d);
  return s;
}

// Threads still aborting communicators: waited for at exit, up to 30 s (an abort waiting on a
// CUDA graph that is never destroyed must not hang the exit). Made at the first abort, after
// the CUDA runtime and NCCL, so destroyed before their teardown.
ExitWaitedThreads& abort_threads() {
  static ExitWaitedThreads threads(std::chrono::seconds(30));
  return threads;
}

// The group's communicators, so that one rank's failure can abort all of them: a peer blocked
// in a collective waits on the other ranks' communicators, not only its own.
struct NcclGroup : std::enable_shared_from_this<NcclGroup> {
  std::vector<ncclComm_t> comms;
  std::mutex mu;
  std::atomic<bool> aborted{false};
  std::string why;

  void abort(const std::string& reason) {
    {
      std::lock_guard lock(mu);
      if (aborted) return;
      why = reason;
      aborted = true;
    }
    // ncclCommAbort releases the kernels waiting in collectives at once, but returns only when
    // no CUDA graph holds collectives of its communicator any more; the engines drop theirs when
    // their next step finds the group stopped. So it runs apart from the ranks' threads, which
    // must get on to that step.
    abort_threads().start([self = shared_from_this()] {
      for (ncclComm_t c : self->comms) ncclCommAbort(c);
    });
  }
  ~NcclGroup() {
    if (!aborted)
      for (ncclComm_t c : comms) ncclCommDestroy(c);
  }
};

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(std::shared_ptr<NcclGroup> group, int rank, int device)
      : group_(std::move(group)), rank_(rank), device_(device) {}
  int rank() const override { return rank_; }
  int size() const override { return static_cast<int>(group_->comms.size()); }

  void all_reduce_sum(float* data, std::size_t count, void* stream) override {
    check_open();
    check(ncclAllReduce(data, data, count, ncclFloat32, ncclSum, comm(), static_cast<cudaStream_t>(stream)),
          "all-reduce");
  }
  void all_gather(const float* send, float* recv, std::size_t count, void* stream) override {
    check_open();
    check(ncclAllGather(send, recv, count, ncclFloat32, comm(), static_cast<cudaStream_t>(stream)), "all-gather");
  }
  void abort(const std::string& why) override { group_->abort(why); }
  bool graph_capturable() const override { return true; }
  void throw_if_aborted() const override { check_open(); }

 private:
  ncclComm_t comm() const { return group_->comms[rank_]; }
  void check_open() const {
    if (group_->aborted) {
      std::lock_guard lock(group_->mu);
      throw GroupAborted(group_->why);
    }
  }
  void check(ncclResult_t r, const char* what) {
    if (r != ncclSuccess)
      throw Error(std::string("NCCL ") + what + " failed on GPU " + std::to_string(device_) + ": " +
                  ncclGetErrorString(r) + " (" + ncclGetLastError(comm()) + ")");
  }

  std::shared_ptr<NcclGroup> group_;
  int rank_, device_;
};

}  // namespace

std::vector<std::shared_ptr<Communicator>> make_nccl_group(const std::vector<int>& devices) {
  if (devices.empty()) throw InvalidArgument("an NCCL group needs at least one GPU");
  auto group = std::make_shared<NcclGroup>();
  std::vector<ncclComm_t> comms(devices.size());
  const ncclResult_t r = ncclCommInitAll(comms.data(), static_cast<int>(devices.size()), devices.data());
  if (r != ncclSuccess)
    throw Error("NCCL could not form a group on GPUs " + devices_text(devices) + ": " + ncclGetErrorString(r) +
                " (" + ncclGetLastError(nullptr) + ")");
  group->comms = std::move(comms);
  std::vector<std::shared_ptr<Communicator>> out;
  for (std::size_t i = 0; i < devices.size(); ++i)
    out.push_back(std::make_shared<NcclCommunicator>(group, static_cast<int>(i), devices[i]));
  return out;
}

}  // namespace eyrie
