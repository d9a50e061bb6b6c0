// A device allocation filled from and read back into host vectors, and random host vectors, for
// the CUDA kernel tests.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <random>
#include <vector>

#include "cuda/check.hpp"

namespace eyrie::test {

template <typename T>
struct Device {
  T* p = nullptr;
  explicit Device(const std::vector<T>& h) {
    EYRIE_CUDA_CHECK(cudaMalloc(&p, std::max<std::size_t>(1, h.size()) * sizeof(T)));
    if (!h.empty()) EYRIE_CUDA_CHECK(cudaMemcpy(p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
  }
  explicit Device(std::size_t n) : Device(std::vector<T>(n)) {}
  ~Device() { cudaFree(p); }
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;
  std::vector<T> get(std::size_t n) const {
    std::vector<T> h(n);
    EYRIE_CUDA_CHECK(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }
};

// n values drawn uniformly from (-scale, scale), plus offset.
inline std::vector<float> random_vector(std::size_t n, std::mt19937& rng, float scale, float offset = 0.f) {
  std::uniform_real_distribution<float> u(-scale, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng) + offset;
  return v;
}

}  // namespace eyrie::test
