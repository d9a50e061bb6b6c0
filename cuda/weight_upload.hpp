// Host-to-device weight upload through a ring of pinned staging buffers.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "model/cpu/thread_pool.hpp"
#include "model/safetensors.hpp"

namespace eyrie::cuda {

// Copies stored tensors into device memory, converting them on the way (bf16 for matrices,
// fp32 for norms and biases). The host fills staging buffer k+1 (reading the memory map,
// which may fault pages in from disk, and converting) while the copy engine moves buffer k,
// so neither waits on the other; a plain cudaMemcpy from pageable memory does both in turn
// and needs a converted copy of the whole tensor first.
class StagedUpload {
 public:
  // Reports the bytes queued for the device so far after each staged chunk (finish() waits for
  // the last few buffers' copies).
  using Progress = std::function<void(std::size_t bytes_done)>;

  // Each chunk is filled by fill_threads host threads: one thread's copy out of the memory map
  // runs at a fraction of the copy engine's rate.
  explicit StagedUpload(cudaStream_t stream, Progress progress = {}, std::size_t chunk_bytes = std::size_t{16} << 20,
                        int chunks = 4, int fill_threads = 1);
  ~StagedUpload();
  StagedUpload(const StagedUpload&) = delete;
  StagedUpload& operator=(const StagedUpload&) = delete;

  // chunk_bytes: at least 16.
  // dst holds numel elements of the output type. Sources may be f32, f16 or bf16.
  void to_bf16(uint16_t* dst, const TensorView& src);
  // fp16, for products on fp16 activations: bf16 values convert exactly in fp16's normal range;
  // a tensor with values past its largest (65504) is refused, naming it.
  void to_f16(uint16_t* dst, const TensorView& src);
  void to_f32(float* dst, const TensorView& src);
  // Waits until every queued copy has reached the device; throws on a failed copy.
  void finish();

  std::size_t bytes_done() const { return done_; }

 private:
  struct Slot {
    void* host = nullptr;
    cudaEvent_t copied = nullptr;
    bool busy = false;
  };
  template <typename Out, typename Convert>
  void stream_tensor(Out* dst, const TensorView& src, Convert convert);
  Slot& next_slot();

  cudaStream_t stream_;
  Progress progress_;
  std::size_t chunk_bytes_;
  std::vector<Slot> slots_;
  std::unique_ptr<ThreadPool> fill_;
  std::size_t next_ = 0;
  std::size_t done_ = 0;
};

}  // namespace eyrie::cuda
