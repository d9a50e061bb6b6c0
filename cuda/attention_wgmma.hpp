// The warp-group MMA attention kernel for prompts (sm_90a), launched by paged_attention() for
// shapes it covers when AttentionShape::wgmma asks for it.
#pragma once

#include "cuda/kernels.hpp"

namespace eyrie::cuda {

// The most (row, head) query slots one of its tiles may hold: three warpgroups of 64.
inline constexpr int32_t kWgmmaTileQueries = 192;

// Whether the kernel covers the shape: head dim 64 without ALiBi, and bf16 products on bf16
// queries and a bf16 cache, or split products on fp32 queries and a halves cache.
bool attention_wgmma_supports(const AttentionShape& a);

// Whether the device runs sm_90a code (compute capability 9.0).
bool attention_wgmma_device(int device);

void attention_wgmma(const void* q, const void* k_cache, const void* v_cache, int32_t num_tiles, const int32_t* tiles,
                     const AttentionShape& a, const RowMeta& m, bf16* out, int64_t lo_offset, float* part_o,
                     float* part_ml, cudaStream_t s);

}  // namespace eyrie::cuda
