// The tensor-core attention kernel, launched by paged_attention() for the head dims it covers.
#pragma once

#include "cuda/kernels.hpp"

namespace eyrie::cuda {

// Whether head_dim has a tensor-core variant: a multiple of 4, at most 128.
bool attention_mma_supports(int32_t head_dim);

// The most (row, head) queries one tile may hold.
int32_t attention_mma_queries(int32_t head_dim);

void attention_mma(const void* q, const void* k_cache, const void* v_cache, int32_t num_tiles, const int32_t* tiles,
                   const AttentionShape& a, const RowMeta& m, const float* slopes, bf16* out, int64_t lo_offset,
                   float* part_o, float* part_ml, cudaStream_t s);

}  // namespace eyrie::cuda
