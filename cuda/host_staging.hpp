// Page-locked host memory for the small copies around a step (its inputs, its outputs).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

#include "cuda/check.hpp"
#include "model/error.hpp"

namespace eyrie::cuda {

// Page-locked host bytes for a step's small copies. From pageable memory each cudaMemcpyAsync
// stages through a driver buffer and returns only once done (device to host: once the stream
// has caught up), a host round trip per copy between decode steps; from here the copies are
// queued and the step synchronises once. The copies a step queues through one staging go out
// in one batched call (copy_queued), since each call costs the host microseconds between decode
// steps. A step resets each staging before its first copy through it, when no earlier step's
// copy is pending (every step synchronises before it returns); growing synchronises the stream
// all the same.
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
    dsts_.clear();
    srcs_.clear();
    sizes_.clear();
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

  // The next `bytes` (16-byte aligned; at most kPieces pieces per reset) for the host to fill,
  // copied to `device` by the next copy_queued.
  std::byte* take_to(void* device, std::size_t bytes) {
    std::byte* staged = take(bytes);
    queue(device, staged, bytes);
    return staged;
  }

  // The next `bytes`, filled from `device` by the next copy_queued; read them once the stream
  // is synchronised.
  const std::byte* take_from(const void* device, std::size_t bytes) {
    std::byte* staged = take(bytes);
    queue(staged, device, bytes);
    return staged;
  }

  // The copies queued since the last call, in stream order after the work queued before it.
  void copy_queued(cudaStream_t s) {
    if (sizes_.size() == 1) {
      EYRIE_CUDA_CHECK(cudaMemcpyAsync(dsts_[0], srcs_[0], sizes_[0], cudaMemcpyDefault, s));
    } else if (!sizes_.empty()) {
      cudaMemcpyAttributes attr{};
      attr.srcAccessOrder = cudaMemcpySrcAccessOrderStream;
      std::size_t first = 0;
      EYRIE_CUDA_CHECK(cudaMemcpyBatchAsync(dsts_.data(), srcs_.data(), sizes_.data(), sizes_.size(), &attr, &first,
                                            1, s));
    }
    dsts_.clear();
    srcs_.clear();
    sizes_.clear();
  }

  static constexpr std::size_t kAlign = 16, kPieces = 8;

 private:
  std::byte* take(std::size_t bytes) {
    const std::size_t at = (used_ + kAlign - 1) / kAlign * kAlign;
    if (at + bytes > cap_) throw Error("step staging: " + std::to_string(at + bytes) + " bytes past its " +
                                       std::to_string(cap_) + " reserved");
    used_ = at + bytes;
    return static_cast<std::byte*>(p_) + at;
  }

  void queue(void* dst, const void* src, std::size_t bytes) {
    if (bytes == 0) return;
    dsts_.push_back(dst);
    srcs_.push_back(src);
    sizes_.push_back(bytes);
  }

  void* p_ = nullptr;
  std::size_t cap_ = 0, used_ = 0;
  std::vector<void*> dsts_;
  std::vector<const void*> srcs_;
  std::vector<std::size_t> sizes_;
};

}  // namespace eyrie::cuda
