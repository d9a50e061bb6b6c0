// Page-locked host memory for the small copies around a step (its inputs, its outputs).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <string>

#include "cuda/check.hpp"
#include "model/error.hpp"

namespace eyrie::cuda {

// Page-locked host bytes for a step's small copies. From pageable memory each cudaMemcpyAsync
// stages through a driver buffer and returns only once done (device to host: once the stream
// has caught up), a host round trip per copy between decode steps; from here the copies are
// queued and the step synchronises once. A step resets each staging before its first copy
// through it, when no earlier step's copy is pending (every step synchronises before it
// returns); growing synchronises the stream all the same.
class HostStaging {
 public:
  HostStaging() = default;
  HostStaging(const HostStaging&) = delete;
  HostStaging& operator=(const HostStaging&) = delete;
  ~HostStaging() {
    if (p_) cudaFreeHost(p_);
  }
  // Room for `bytes` taken in pieces of any size; forgets what was taken.
  void reset(std::size_t bytes, cudaStream_t s) {
    used_ = 0;
    bytes += kPieces * kAlign;
    if (bytes <= cap_) return;
    EYRIE_CUDA_CHECK(cudaStreamSynchronize(s));
    if (p_) cudaFreeHost(p_);
    p_ = nullptr;
    cap_ = 0;
    const std::size_t grown = std::max(bytes, std::size_t{64} << 10);
    EYRIE_CUDA_CHECK(cudaMallocHost(&p_, grown));
    cap_ = grown;
  }
  // The next `bytes`, 16-byte aligned; at most kPieces pieces per reset.
  std::byte* take(std::size_t bytes) {
    const std::size_t at = (used_ + kAlign - 1) / kAlign * kAlign;
    if (at + bytes > cap_) throw Error("step staging: " + std::to_string(at + bytes) + " bytes past its " +
                                       std::to_string(cap_) + " reserved");
    used_ = at + bytes;
    return static_cast<std::byte*>(p_) + at;
  }

  static constexpr std::size_t kAlign = 16, kPieces = 8;

 private:
  void* p_ = nullptr;
  std::size_t cap_ = 0, used_ = 0;
};

}  // namespace eyrie::cuda
