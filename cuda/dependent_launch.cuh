// Programmatic dependent launch: a kernel launched with launch_after_trigger may start while
// the kernel before it in the stream still runs, once that kernel's blocks have all called
// allow_dependents(); it must call wait_for_prerequisites() before it reads anything the
// earlier kernels write (or writes anything they read). The weight-streaming products use the
// time before the wait to start reading their weights, which no kernel writes. Outside such a
// launch both calls do nothing.
#pragma once

#include <cuda_runtime.h>

#include "cuda/check.hpp"

namespace eyrie::cuda {

// griddepcontrol exists from sm_90; older targets launch in order anyway.
__device__ __forceinline__ void allow_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void wait_for_prerequisites() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

// early: with programmatic stream serialization; else an ordinary launch.
template <typename... Params, typename... Args>
void launch_after_trigger(bool early, void (*kernel)(Params...), unsigned blocks, unsigned threads, cudaStream_t s,
                          Args&&... args) {
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = early ? 1 : 0;
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(blocks);
  cfg.blockDim = dim3(threads);
  cfg.stream = s;
  cfg.attrs = &attr;
  cfg.numAttrs = 1;
  EYRIE_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}

}  // namespace eyrie::cuda
