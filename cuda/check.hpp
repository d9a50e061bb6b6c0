// Checked CUDA and cuBLAS calls: failures throw eyrie::Error with the decoded status and call site.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <string>

#include "model/error.hpp"

namespace eyrie::cuda {

[[noreturn]] void throw_cuda(cudaError_t e, const char* what, const char* file, int line);
[[noreturn]] void throw_cublas(cublasStatus_t s, const char* what, const char* file, int line);

}  // namespace eyrie::cuda

#define EYRIE_CUDA_CHECK(call)                                                        \
  do {                                                                                \
    cudaError_t eyrie_e_ = (call);                                                    \
    if (eyrie_e_ != cudaSuccess) ::eyrie::cuda::throw_cuda(eyrie_e_, #call, __FILE__, __LINE__); \
  } while (0)

#define EYRIE_CUBLAS_CHECK(call)                                                      \
  do {                                                                                \
    cublasStatus_t eyrie_s_ = (call);                                                 \
    if (eyrie_s_ != CUBLAS_STATUS_SUCCESS)                                            \
      ::eyrie::cuda::throw_cublas(eyrie_s_, #call, __FILE__, __LINE__);               \
  } while (0)

// After a kernel launch: a bad configuration shows up here, not at the next sync.
#define EYRIE_CUDA_LAUNCHED() EYRIE_CUDA_CHECK(cudaGetLastError())
