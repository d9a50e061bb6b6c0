// Collectives for shards on threads of one process: a generation-counting barrier over shared
// pointers. Sums run in rank order on one rank per slice, so every rank sees the same result.
#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <mutex>

#include "model/error.hpp"
#include "model/parallel/communicator.hpp"

namespace eyrie {
namespace {

class Group {
 public:
  explicit Group(int size) : size_(size), send_(size) {}

  int size() const { return size_; }

  // Waits until every rank has arrived; throws if the group was aborted before or meanwhile.
  void barrier() {
    std::unique_lock lock(mu_);
    if (aborted_) throw GroupAborted(why_);
    const uint64_t gen = generation_;
    if (++arrived_ == size_) {
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
      return;
    }
    cv_.wait(lock, [&] { return generation_ != gen || aborted_; });
    if (generation_ == gen) throw GroupAborted(why_);
  }

  void abort(const std::string& why) {
    std::lock_guard lock(mu_);
    if (aborted_) return;
    aborted_ = true;
    why_ = why;
    cv_.notify_all();
  }

  void all_reduce_sum(int rank, float* data, std::size_t count) {
    send_[rank] = data;
    barrier();
    if (rank == 0) scratch_.resize(count);
    barrier();
    const std::size_t per = (count + size_ - 1) / size_;
    const std::size_t lo = std::min(count, per * rank), hi = std::min(count, lo + per);
    for (std::size_t i = lo; i < hi; ++i) {
      float s = send_[0][i];
      for (int r = 1; r < size_; ++r) s += send_[r][i];
      scratch_[i] = s;
    }
    barrier();
    std::memcpy(data, scratch_.data(), count * sizeof(float));
    barrier();  // nobody reuses scratch_ before all have copied it out
  }

  void all_gather(int rank, const float* send, float* recv, std::size_t count) {
    send_[rank] = const_cast<float*>(send);
    barrier();
    for (int r = 0; r < size_; ++r) std::memcpy(recv + r * count, send_[r], count * sizeof(float));
    barrier();  // senders keep their buffers intact until everyone has read them
  }

 private:
  const int size_;
  std::mutex mu_;
  std::condition_variable cv_;
  int arrived_ = 0;
  uint64_t generation_ = 0;
  bool aborted_ = false;
  std::string why_;
  std::vector<float*> send_;
  std::vector<float> scratch_;
};

class InProcessCommunicator final : public Communicator {
 public:
  InProcessCommunicator(std::shared_ptr<Group> group, int rank) : group_(std::move(group)), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return group_->size(); }
  void all_reduce_sum(float* data, std::size_t count, void*) override {
    if (size() > 1) group_->all_reduce_sum(rank_, data, count);
  }
  void all_gather(const float* send, float* recv, std::size_t count, void*) override {
    if (size() == 1) {
      if (recv != send) std::memcpy(recv, send, count * sizeof(float));
      return;
    }
    group_->all_gather(rank_, send, recv, count);
  }
  void abort(const std::string& why) override { group_->abort(why); }

 private:
  std::shared_ptr<Group> group_;
  int rank_;
};

}  // namespace

std::vector<std::shared_ptr<Communicator>> make_in_process_group(int size) {
  if (size < 1) throw InvalidArgument("a communicator group needs at least one rank, got " + std::to_string(size));
  auto group = std::make_shared<Group>(size);
  std::vector<std::shared_ptr<Communicator>> out;
  for (int r = 0; r < size; ++r) out.push_back(std::make_shared<InProcessCommunicator>(group, r));
  return out;
}

}  // namespace eyrie
