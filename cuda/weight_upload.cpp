#include "cuda/weight_upload.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstring>
#include <string>

#include "cuda/check.hpp"
#include "model/dtype.hpp"

namespace eyrie::cuda {

StagedUpload::StagedUpload(cudaStream_t stream, Progress progress, std::size_t chunk_bytes, int chunks,
                           int fill_threads)
    : stream_(stream),
      progress_(std::move(progress)),
      chunk_bytes_(chunk_bytes),
      fill_(std::make_unique<ThreadPool>(std::max(fill_threads, 1))) {
  if (chunk_bytes_ < 16)
    throw InvalidArgument("StagedUpload: staging buffers of " + std::to_string(chunk_bytes_) +
                          " bytes; at least 16");
  fill_->set_busy(true);
  slots_.resize(static_cast<std::size_t>(std::max(chunks, 2)));
  try {
    for (Slot& s : slots_) {
      EYRIE_CUDA_CHECK(cudaMallocHost(&s.host, chunk_bytes_));
      EYRIE_CUDA_CHECK(cudaEventCreateWithFlags(&s.copied, cudaEventDisableTiming));
    }
  } catch (...) {
    for (Slot& s : slots_) {
      if (s.host) cudaFreeHost(s.host);
      if (s.copied) cudaEventDestroy(s.copied);
    }
    throw;
  }
}

StagedUpload::~StagedUpload() {
  // The buffers may still be the source of queued copies (also one whose event was never
  // recorded, after a failure); freeing them first would be a use after free on the copy
  // engine's side.
  cudaStreamSynchronize(stream_);
  for (Slot& s : slots_) {
    cudaFreeHost(s.host);
    cudaEventDestroy(s.copied);
  }
}

StagedUpload::Slot& StagedUpload::next_slot() {
  Slot& s = slots_[next_];
  next_ = (next_ + 1) % slots_.size();
  if (s.busy) {
    EYRIE_CUDA_CHECK(cudaEventSynchronize(s.copied));
    s.busy = false;
  }
  return s;
}

template <typename Out, typename Convert>
void StagedUpload::stream_tensor(Out* dst, const TensorView& src, Convert convert) {
  const std::size_t n = static_cast<std::size_t>(src.numel());
  const std::size_t in_size = dtype_size(src.dtype);
  if (src.nbytes != n * in_size)
    throw Error("tensor '" + src.name + "' holds " + std::to_string(src.nbytes) + " bytes, not the " +
                std::to_string(n * in_size) + " its shape " + src.shape_string() + " needs");
  const std::size_t per_chunk = chunk_bytes_ / sizeof(Out);
  const auto* in = static_cast<const uint8_t*>(src.data);
  for (std::size_t first = 0; first < n; first += per_chunk) {
    const std::size_t count = std::min(per_chunk, n - first);
    Slot& s = next_slot();
    auto* out = static_cast<Out*>(s.host);
    const auto* from = in + first * in_size;
    fill_->parallel_for(static_cast<int64_t>(count), 1 << 18, [&](int64_t lo, int64_t hi) {
      convert(out + lo, from + static_cast<std::size_t>(lo) * in_size, static_cast<std::size_t>(hi - lo));
    });
    EYRIE_CUDA_CHECK(
        cudaMemcpyAsync(dst + first, s.host, count * sizeof(Out), cudaMemcpyHostToDevice, stream_));
    s.busy = true;
    EYRIE_CUDA_CHECK(cudaEventRecord(s.copied, stream_));
    done_ += count * sizeof(Out);
    if (progress_) progress_(done_);
  }
}

namespace {

// n values of type t at `in` as 16-bit values of type `as`: copied when they are already, else
// through fp32 a few thousand at a time, out[i] = narrow(value i).
template <typename Narrow>
void narrow_values(DType t, DType as, const uint8_t* in, uint16_t* out, std::size_t n, Narrow&& narrow) {
  if (t == as) {
    std::memcpy(out, in, n * 2);
    return;
  }
  std::array<float, 4096> f;
  const std::size_t in_size = dtype_size(t);
  for (std::size_t i = 0; i < n; i += f.size()) {
    const std::size_t m = std::min(f.size(), n - i);
    eyrie::to_f32(t, in + i * in_size, f.data(), m);
    for (std::size_t j = 0; j < m; ++j) out[i + j] = narrow(f[j]);
  }
}

}  // namespace

void StagedUpload::to_bf16(uint16_t* dst, const TensorView& src) {
  const DType t = src.dtype;
  stream_tensor(dst, src, [t](uint16_t* out, const uint8_t* in, std::size_t n) {
    narrow_values(t, DType::bf16, in, out, n, f32_to_bf16);
  });
}

void StagedUpload::to_f16(uint16_t* dst, const TensorView& src) {
  const DType t = src.dtype;
  std::atomic<std::size_t> beyond{0};
  std::atomic<uint32_t> largest{0};  // fp32 bits of the largest magnitude beyond the range
  stream_tensor(dst, src, [&](uint16_t* out, const uint8_t* in, std::size_t n) {
    std::size_t over = 0;
    float worst = 0.f;
    narrow_values(t, DType::f16, in, out, n, [&](float v) {
      const float a = std::fabs(v);
      // Past 65504 rounds to infinity (from 65520), or is infinite or NaN already.
      if (!(a < 65520.f)) {
        ++over;
        if (a > worst || std::isnan(a)) worst = a;
      }
      return f32_to_f16(v);
    });
    if (over == 0) return;
    beyond += over;
    uint32_t bits;
    std::memcpy(&bits, &worst, 4);
    uint32_t seen = largest.load();
    while (bits > seen && !largest.compare_exchange_weak(seen, bits)) {
    }
  });
  if (beyond.load() > 0) {
    float worst;
    const uint32_t bits = largest.load();
    std::memcpy(&worst, &bits, 4);
    throw InvalidArgument("tensor '" + src.name + "' has " + std::to_string(beyond.load()) +
                          " values beyond fp16's range (the largest magnitude " + std::to_string(worst) +
                          "; fp16 holds up to 65504), so its product cannot run on fp16 activations: load the "
                          "model with activation precision split or bf16");
  }
}

void StagedUpload::to_f32(float* dst, const TensorView& src) {
  const DType t = src.dtype;
  stream_tensor(dst, src, [t](float* out, const uint8_t* in, std::size_t n) { eyrie::to_f32(t, in, out, n); });
}

void StagedUpload::finish() {
  for (Slot& s : slots_) {
    if (!s.busy) continue;
    EYRIE_CUDA_CHECK(cudaEventSynchronize(s.copied));
    s.busy = false;
  }
}

}  // namespace eyrie::cuda
