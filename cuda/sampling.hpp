// Token choice on the GPU for rows of a step's logits (see cuda/sampling.cu).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace eyrie::cuda {

// One row to choose a token for, with the parameters of eyrie::DeviceSampling.
struct SampleRow {
  int32_t row;     // logits row
  int32_t sample;  // 0: argmax after the penalty
  int32_t top_k;   // <= 0: off
  int32_t history_begin, history_count;  // the penalised ids, in the history array
  float temperature;  // 1: off
  float top_p;        // >= 1: off
  float repetition_penalty;  // 1: off
  double uniform;     // in [0, 1)
};

// ids[i], logprobs[i]: row rows[i].row's choice and its log_softmax under the unprocessed row
// (lse: the rows' logsumexp). work: n x vocab floats of scratch.
void sample_rows(const float* logits, const float* lse, int64_t vocab, const SampleRow* rows, int32_t n,
                 const int32_t* history, float* work, int32_t* ids, float* logprobs, cudaStream_t s);

}  // namespace eyrie::cuda
