// Kernels that take more than 48 KB of dynamic shared memory have to say so with an attribute
// of the device's copy of the kernel: set once per kernel and device, whichever thread launches
// there first, so that one thread may drive several devices (tensor-parallel shards).
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>

#include "cuda/check.hpp"

namespace eyrie::cuda {

// On `device`, the current one, for a launcher that has asked which it is already.
template <auto kKernel>
void allow_dynamic_smem(int bytes, int device) {
  static std::atomic<uint64_t> set_on{0};  // a bit per device; devices past 63 set it every launch
  const uint64_t bit = device < 64 ? uint64_t{1} << device : 0;
  if (set_on.load(std::memory_order_acquire) & bit) return;
  EYRIE_CUDA_CHECK(cudaFuncSetAttribute(kKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
  set_on.fetch_or(bit, std::memory_order_acq_rel);
}

template <auto kKernel>
void allow_dynamic_smem(int bytes) {
  int device = 0;
  EYRIE_CUDA_CHECK(cudaGetDevice(&device));
  allow_dynamic_smem<kKernel>(bytes, device);
}

}  // namespace eyrie::cuda
