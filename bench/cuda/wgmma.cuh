// The probe programs' view of the warp-group MMA helpers (cuda/wgmma.cuh) and the cp.async /
// mbarrier ones (cuda/async_copy.cuh), plus their CUDA error check.
#pragma once

#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>

#include "cuda/async_copy.cuh"
#include "cuda/wgmma.cuh"

namespace eyrie::bench {

using namespace eyrie::cuda;

// Ends the program with what failed, for a probe that has nothing to recover.
inline void check(const char* what, cudaError_t e) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}

}  // namespace eyrie::bench
