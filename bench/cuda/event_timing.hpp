// Device time per call of a function that queues GPU work on the default stream, from events.
#pragma once

#include <cuda_runtime.h>

#include <functional>

#include "cuda/check.hpp"

// Microseconds per call of f(copy), averaged over iters calls cycling over `copies` (each
// called once before timing, as a warm-up): copies of the inputs let a benchmark read more
// than L2 holds, as a model's layers do.
inline double time_us(int copies, int iters, const std::function<void(int)>& f) {
  for (int i = 0; i < copies; ++i) f(i);
  cudaEvent_t t0, t1;
  EYRIE_CUDA_CHECK(cudaEventCreate(&t0));
  EYRIE_CUDA_CHECK(cudaEventCreate(&t1));
  EYRIE_CUDA_CHECK(cudaEventRecord(t0));
  for (int i = 0; i < iters; ++i) f(i % copies);
  EYRIE_CUDA_CHECK(cudaEventRecord(t1));
  EYRIE_CUDA_CHECK(cudaEventSynchronize(t1));
  float ms = 0;
  cudaEventElapsedTime(&ms, t0, t1);
  cudaEventDestroy(t0);
  cudaEventDestroy(t1);
  return ms * 1e3 / iters;
}
