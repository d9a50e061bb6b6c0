// Asynchronous copies into shared memory (cp.async) and the shared-memory barriers (mbarrier)
// that tell a consumer a stage has landed or a producer that it is free again.
#pragma once

#include <cstdint>

namespace eyrie::cuda {

__device__ inline uint32_t smem_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes from global to shared memory without passing through registers; zeros when !valid.
__device__ inline void copy_async16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_address(dst)), "l"(src), "r"(valid ? 16 : 0)
               : "memory");
}

__device__ inline void copy_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}

template <int kPending>
__device__ inline void copy_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

__device__ inline void barrier_init(uint64_t* b, int count) {
  asm volatile("mbarrier.init.shared.b64 [%0], %1;\n" ::"r"(smem_address(b)), "r"(count) : "memory");
}

__device__ inline void barrier_arrive(uint64_t* b) {
  asm volatile("mbarrier.arrive.shared.b64 _, [%0];\n" ::"r"(smem_address(b)) : "memory");
}

// Arrives on b once this thread's cp.async copies so far have landed (counted in b's init).
__device__ inline void barrier_arrive_on_copies(uint64_t* b) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared.b64 [%0];\n" ::"r"(smem_address(b)) : "memory");
}

// Until the phase of the given parity has completed.
__device__ inline void barrier_wait(uint64_t* b, uint32_t parity) {
  asm volatile(
      "{\n.reg .pred done;\nWAIT:\n"
      "mbarrier.try_wait.parity.shared.b64 done, [%0], %1;\n"
      "@!done bra WAIT;\n}\n" ::"r"(smem_address(b)),
      "r"(parity)
      : "memory");
}

}  // namespace eyrie::cuda
