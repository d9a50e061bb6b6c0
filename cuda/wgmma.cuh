// Hopper's warp-group MMA (wgmma, sm_90a): shared-memory matrix descriptors, the m64n64k16 /
// m64n128k16 bf16 products with fp32 accumulators, and the fences around them.
#pragma once

#include <cstdint>

namespace eyrie::cuda {

// The shared-memory matrix descriptor: start address, leading (K-direction) and stride
// (M/N-direction) byte offsets between 8x16-byte core matrices, all in 16-byte units; no swizzle.
__device__ inline uint64_t descriptor(const void* smem, uint32_t lbo, uint32_t sbo) {
  const auto addr = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  return static_cast<uint64_t>((addr >> 4) & 0x3fff) | static_cast<uint64_t>((lbo >> 4) & 0x3fff) << 16 |
         static_cast<uint64_t>((sbo >> 4) & 0x3fff) << 32;
}

#define EYRIE_WGMMA_F4(d, i) "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3])
#define EYRIE_WGMMA_F16(d, i) \
  EYRIE_WGMMA_F4(d, i), EYRIE_WGMMA_F4(d, i + 4), EYRIE_WGMMA_F4(d, i + 8), EYRIE_WGMMA_F4(d, i + 12)
#define EYRIE_WGMMA_D32_TEXT                                                                                        \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, " \
  "%24, %25, %26, %27, %28, %29, %30, %31}"
#define EYRIE_WGMMA_D64_TEXT                                                                                        \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, " \
  "%24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, "  \
  "%46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}"

// d += A B over k16 (N = 64): A from registers (each warp's 16 rows as the m16n8k16 A
// fragment), B from a descriptor, transposed (N-major) when kTransB.
template <int kTransB>
__device__ inline void wgmma_n64(float (&d)[32], const uint32_t (&a)[4], uint64_t b) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " EYRIE_WGMMA_D32_TEXT
      ", {%32, %33, %34, %35}, %36, p, 1, 1, %38;\n}\n"
      : EYRIE_WGMMA_F16(d, 0), EYRIE_WGMMA_F16(d, 16)
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(1), "n"(kTransB));
}

// The same with A from a descriptor too.
template <int kTransB>
__device__ inline void wgmma_n64_ss(float (&d)[32], uint64_t a, uint64_t b) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " EYRIE_WGMMA_D32_TEXT ", %32, %33, p, 1, 1, 0, %35;\n}\n"
      : EYRIE_WGMMA_F16(d, 0), EYRIE_WGMMA_F16(d, 16)
      : "l"(a), "l"(b), "r"(1), "n"(kTransB));
}

// d += A B over k16 (N = 128), A from registers, B K-major from a descriptor.
__device__ inline void wgmma_n128(float (&d)[64], const uint32_t (&a)[4], uint64_t b) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " EYRIE_WGMMA_D64_TEXT
      ", {%64, %65, %66, %67}, %68, p, 1, 1, 0;\n}\n"
      : EYRIE_WGMMA_F16(d, 0), EYRIE_WGMMA_F16(d, 16), EYRIE_WGMMA_F16(d, 32), EYRIE_WGMMA_F16(d, 48)
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(1));
}

__device__ inline void wgmma_fence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ inline void wgmma_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int kPending>
__device__ inline void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
}

}  // namespace eyrie::cuda
