// The GPUs of one tensor-parallel replica, in one process, reading each other's memory (peer
// access over NVLink or PCIe). A layer's residual add is summed over the group by one kernel
// per rank that reads the peers' shares where they lie, in place of what it takes through
// NCCL: a memset, the residual kernel, the all-reduce and an add, per layer and rank.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace eyrie::cuda {

class PeerExchange {
 public:
  static constexpr int kMaxRanks = 8;
  // Sums of more floats go through NCCL. On two H200s over NVLink, batch-1 decode (sums of
  // 4.5K and 8K floats, Falcon-7B and -40B) took 3-4% off the step; batch 16 (73K and 131K)
  // ran 10-12% slower than with NCCL's all-reduce.
  static constexpr int64_t kMaxFloats = int64_t{1} << 15;
  static constexpr int kMaxBlocks = 32;

  // Null when a pair of the devices cannot reach each other's memory, or the driver will not
  // open it. Leaves the calling thread's current device as it was. Ranks may share a device
  // (tests), provided each has its own stream and steps on its own thread.
  static std::shared_ptr<PeerExchange> create(const std::vector<int>& devices);
  ~PeerExchange();
  PeerExchange(const PeerExchange&) = delete;
  PeerExchange& operator=(const PeerExchange&) = delete;

  int size() const { return static_cast<int>(ranks_.size()); }
  bool fits(int64_t floats) const { return floats <= kMaxFloats; }

  // On the rank's device and stream: x += the sum over ranks, in rank order, of each rank's
  // residual_sum of a (+ a_bias) and c (+ c_bias) ([2 x rows, cols] split halves, or [rows,
  // cols] without; with c_halves false, c alone without). Every rank calls it with the same rows and cols in the same
  // order; all end with the same bits in x. Launches one kernel and nothing else (CUDA graphs can hold it).
  void residual_all_reduce(int rank, float* x, const float* a, const float* a_bias, const float* c, const float* c_bias,
                           int64_t rows, int64_t cols, bool halves, cudaStream_t s, bool c_halves = true);

  // Makes every kernel waiting on a peer return, now and later: a rank that failed will not
  // come. The sums are then not made; the group is no longer usable.
  void abort();

 private:
  struct Rank {
    int device = 0;
    float* staging = nullptr;    // 2 x kMaxFloats: calls alternate halves
    uint32_t* flags = nullptr;   // [kMaxBlocks][kMaxRanks]: written by peers, the epoch they reached
    uint32_t* epochs = nullptr;  // [kMaxBlocks]: this rank's calls so far, per block
  };
  PeerExchange() = default;
  std::vector<Rank> ranks_;
  uint32_t* aborted_ = nullptr;  // mapped host memory, read by spinning kernels
};

}  // namespace eyrie::cuda
