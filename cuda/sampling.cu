// Token choice on the GPU, one block per row, with the semantics of eyrie::Sampler (repetition
// penalty, temperature, top-k, top-p, then a draw in vocabulary order) so that only the chosen
// id and its logprob cross to the host. The k-th largest value and the top-p boundary are found
// by radix selection over order-preserving keys of the float logits, so nothing is sorted: the
// top-p cut counts probability mass per key bucket, and ties at the boundary are removed in
// vocabulary order, as the host's stable sort does.
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#include <cfloat>
#include <cmath>

#include "cuda/check.hpp"
#include "cuda/sampling.hpp"

namespace eyrie::cuda {
namespace {

constexpr int kThreads = 1024;
// Keys are selected 11, 11, then 10 bits at a time: wide digits spread the histogram atomics of
// a row whose values share few exponents over many bins.
constexpr int kBins = 2048;
constexpr int kDigits = 3;
__device__ inline int digit_shift(int level) { return level == 0 ? 21 : level == 1 ? 10 : 0; }
__device__ inline int digit_bins(int level) { return level == 2 ? 1024 : 2048; }

// Keys in the order of the floats they encode (-inf lowest); -0 and +0 share one key, as they
// compare equal in the host's sort.
__device__ inline uint32_t order_key(float v) {
  uint32_t u = __float_as_uint(v);
  if ((u & 0x7fffffffu) == 0) u = 0;
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__device__ inline float key_value(uint32_t k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

struct MaxIndex {
  float v;
  int32_t i;
};
// The larger value; the lower index among equal values, as torch.argmax.
struct MaxIndexOp {
  __device__ MaxIndex operator()(const MaxIndex& a, const MaxIndex& b) const {
    return (b.v > a.v || (b.v == a.v && b.i < a.i)) ? b : a;
  }
};
struct MaxOp {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

using ReduceD = cub::BlockReduce<double, kThreads>;
using ReduceF = cub::BlockReduce<float, kThreads>;
using ReduceI = cub::BlockReduce<int32_t, kThreads>;
using ReduceMI = cub::BlockReduce<MaxIndex, kThreads>;
using ScanD = cub::BlockScan<double, kThreads>;
using ScanI = cub::BlockScan<int32_t, kThreads>;

struct Shared {
  union {
    ReduceD::TempStorage rd;
    ReduceF::TempStorage rf;
    ReduceI::TempStorage ri;
    ReduceMI::TempStorage rmi;
    ScanD::TempStorage sd;
    ScanI::TempStorage si;
  } cub;
  double mass[kBins];
  int32_t count[kBins];
  double warp_d[kThreads / 32];
  int32_t warp_i[kThreads / 32];
  double d0;
  float f0;
  int32_t i0, i1;
};

// Passes whose result does not depend on order stride over the row with the whole block, so
// loads coalesce. Passes that follow vocabulary order (tie ranks, the draw) give warp w the
// w-th contiguous segment, read 32 values at a time, lane l at offset l.
struct Segment {
  int64_t begin, end;
  __device__ explicit Segment(int64_t n) {
    constexpr int kWarps = kThreads / 32;
    const int64_t per = ((n + kWarps - 1) / kWarps + 31) / 32 * 32;
    begin = min(n, static_cast<int64_t>(threadIdx.x / 32) * per);
    end = min(n, begin + per);
  }
};

__device__ inline double warp_sum(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ int32_t block_argmax(const float* w, int64_t n, Shared& sh) {
  MaxIndex best{-INFINITY, 0x7fffffff};
  for (int64_t i = threadIdx.x; i < n; i += kThreads)
    if (w[i] > best.v) best = {w[i], static_cast<int32_t>(i)};
  const MaxIndex m = ReduceMI(sh.cub.rmi).Reduce(best, MaxIndexOp());
  if (threadIdx.x == 0) sh.i0 = m.i == 0x7fffffff ? 0 : m.i;
  __syncthreads();
  const int32_t id = sh.i0;
  __syncthreads();
  return id;
}

__device__ float block_max(const float* w, int64_t n, Shared& sh) {
  float mx = -INFINITY;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) mx = fmaxf(mx, w[i]);
  mx = ReduceF(sh.cub.rf).Reduce(mx, MaxOp());
  if (threadIdx.x == 0) sh.f0 = mx;
  __syncthreads();
  mx = sh.f0;
  __syncthreads();
  return mx;
}

// The k-th largest value of the row, repeats counted (as nth_element with std::greater).
__device__ float kth_largest(const float* w, int64_t n, int32_t k, Shared& sh) {
  uint32_t prefix = 0, mask = 0;
  int32_t need = k;  // how many of the values still matching the prefix lie at or above the k-th
  for (int level = 0; level < kDigits; ++level) {
    const int shift = digit_shift(level), bins = digit_bins(level), per = bins / kThreads;
    for (int b = threadIdx.x; b < bins; b += kThreads) sh.count[b] = 0;
    __syncthreads();
    for (int64_t i = threadIdx.x; i < n; i += kThreads) {
      const uint32_t key = order_key(w[i]);
      if ((key & mask) == prefix) atomicAdd(&sh.count[(key >> shift) & (bins - 1)], 1);
    }
    __syncthreads();
    // Thread t owns the bins t*per.. counted from the top; the bin where the count from the
    // top reaches `need` holds the k-th value.
    const int top = bins - 1 - static_cast<int>(threadIdx.x) * per;
    int32_t mine = 0;
    for (int j = 0; j < per; ++j) mine += sh.count[top - j];
    int32_t above = 0;
    ScanI(sh.cub.si).ExclusiveSum(mine, above);
    if (threadIdx.x == 0) sh.i0 = -1;
    __syncthreads();
    for (int j = 0; j < per; ++j) {
      const int32_t c = sh.count[top - j];
      if (above < need && need <= above + c) {
        sh.i0 = top - j;
        sh.i1 = need - above;
      }
      above += c;
    }
    __syncthreads();
    prefix |= static_cast<uint32_t>(max(sh.i0, 0)) << shift;
    mask |= static_cast<uint32_t>(bins - 1) << shift;
    if (sh.i0 >= 0) need = sh.i1;
    __syncthreads();
  }
  return key_value(prefix);
}

// transformers' TopP: in ascending (value, index) order, the longest prefix whose cumulative
// probability stays within 1 - p is masked; the largest value is always kept.
__device__ void top_p(float* w, int64_t n, float p, Shared& sh) {
  const float mxf = block_max(w, n, sh);
  const double mx = mxf;
  double z = 0;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) z += exp(static_cast<double>(w[i]) - mx);
  z = ReduceD(sh.cub.rd).Sum(z);
  if (threadIdx.x == 0) sh.d0 = z;
  __syncthreads();
  z = sh.d0;
  __syncthreads();
  const double cut = 1.0 - static_cast<double>(p);
  // The bin holding the first element whose cumulative mass passes the cut, one digit of the
  // key at a time; `below` is the mass of every key under the current prefix.
  uint32_t prefix = 0, mask = 0;
  double below = 0;
  for (int level = 0; level < kDigits; ++level) {
    const int shift = digit_shift(level), bins = digit_bins(level), per = bins / kThreads;
    for (int b = threadIdx.x; b < bins; b += kThreads) {
      sh.mass[b] = 0;
      sh.count[b] = 0;
    }
    __syncthreads();
    for (int64_t i = threadIdx.x; i < n; i += kThreads) {
      const uint32_t key = order_key(w[i]);
      if ((key & mask) != prefix) continue;
      const unsigned b = (key >> shift) & static_cast<unsigned>(bins - 1);
      atomicAdd(&sh.mass[b], exp(static_cast<double>(w[i]) - mx) / z);
      atomicAdd(&sh.count[b], 1);
    }
    __syncthreads();
    const int first = static_cast<int>(threadIdx.x) * per;
    double mine = 0;
    for (int j = 0; j < per; ++j) mine += sh.mass[first + j];
    double before = 0;
    ScanD(sh.cub.sd).ExclusiveSum(mine, before);
    before += below;
    if (threadIdx.x == 0) sh.i0 = sh.i1 = -1;
    __syncthreads();
    double acc = before;
    for (int j = 0; j < per; ++j) {
      const int b = first + j;
      if (sh.count[b] == 0) continue;
      atomicMax(&sh.i1, b);
      if (acc <= cut && acc + sh.mass[b] > cut) {
        sh.i0 = b;
        sh.d0 = acc;
      }
      acc += sh.mass[b];
    }
    __syncthreads();
    if (sh.i0 < 0) {  // rounding left the whole mass within the cut: keep the largest bin
      acc = before;
      for (int j = 0; j < per; ++j) {
        const int b = first + j;
        if (b == sh.i1) {
          sh.i0 = b;
          sh.d0 = acc;
        }
        acc += sh.mass[b];
      }
      __syncthreads();
    }
    prefix |= static_cast<uint32_t>(sh.i0) << shift;
    mask |= static_cast<uint32_t>(bins - 1) << shift;
    below = sh.d0;
    __syncthreads();
  }
  // prefix is the boundary value; of its ties, the first `removed` in vocabulary order go too.
  const float boundary = key_value(prefix);
  const Segment seg(n);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  int32_t ties = 0;
  for (int64_t i0 = seg.begin; i0 < seg.end; i0 += 32) {
    const int64_t i = i0 + lane;
    ties += __popc(__ballot_sync(0xffffffffu, i < seg.end && w[i] == boundary));
  }
  if (lane == 0) sh.warp_i[warp] = ties;
  __syncthreads();
  if (threadIdx.x == 0) {
    int32_t total = 0;
    for (int k = 0; k < kThreads / 32; ++k) {
      const int32_t c = sh.warp_i[k];
      sh.warp_i[k] = total;
      total += c;
    }
    const double each = exp(static_cast<double>(boundary) - mx) / z;
    int32_t removed = 0;
    double acc = below;
    while (removed + 1 < total && acc + each <= cut) {
      acc += each;
      ++removed;
    }
    sh.i0 = removed;
  }
  __syncthreads();
  const int32_t removed = sh.i0;
  int32_t rank = sh.warp_i[warp];
  for (int64_t i0 = seg.begin; i0 < seg.end; i0 += 32) {
    const int64_t i = i0 + lane;
    const bool in = i < seg.end;
    const bool tie = in && w[i] == boundary;
    const unsigned ballot = __ballot_sync(0xffffffffu, tie);
    if (in && (w[i] < boundary || (tie && rank + __popc(ballot & ((1u << lane) - 1u)) < removed)))
      w[i] = -INFINITY;
    rank += __popc(ballot);
  }
  __syncthreads();
}

// Draws from softmax(w): the first index, in vocabulary order, whose running sum of exp(w - max)
// passes uniform * total (as the host sampler walks the row).
__device__ int32_t draw(const float* w, int64_t n, double uniform, Shared& sh) {
  const float mx = block_max(w, n, sh);
  const Segment seg(n);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  double mine = 0;
  for (int64_t i = seg.begin + lane; i < seg.end; i += 32) mine += expf(w[i] - mx);
  mine = warp_sum(mine);
  if (lane == 0) sh.warp_d[warp] = mine;
  __syncthreads();
  if (threadIdx.x == 0) {
    double total = 0;
    for (int k = 0; k < kThreads / 32; ++k) total += sh.warp_d[k];
    const double u = uniform * total;
    sh.i0 = -1;
    sh.i1 = -1;
    double before = 0;
    for (int k = 0; k < kThreads / 32; ++k) {
      if (sh.warp_d[k] > 0 && before <= u && u < before + sh.warp_d[k]) {
        sh.i0 = k;
        sh.d0 = before;
        break;
      }
      before += sh.warp_d[k];
    }
    sh.warp_d[0] = u;
  }
  __syncthreads();
  if (warp == sh.i0) {
    const double u = sh.warp_d[0];
    double base = sh.d0;
    for (int64_t i0 = seg.begin; i0 < seg.end; i0 += 32) {
      const int64_t i = i0 + lane;
      const float e = i < seg.end ? expf(w[i] - mx) : 0.f;
      double incl = e;
      for (int o = 1; o < 32; o <<= 1) {
        const double t = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += t;
      }
      const unsigned hit = __ballot_sync(0xffffffffu, e > 0 && u < base + incl);
      if (hit) {
        if (lane == __ffs(hit) - 1) sh.i1 = static_cast<int32_t>(i);
        break;
      }
      base += __shfl_sync(0xffffffffu, incl, 31);
    }
  }
  __syncthreads();
  const int32_t id = sh.i1;
  __syncthreads();
  return id;
}

__global__ void __launch_bounds__(kThreads)
    sample_kernel(const float* logits, const float* lse, int64_t vocab, const SampleRow* rows,
                  const int32_t* history, float* work, int32_t* ids, float* logprobs) {
  __shared__ Shared sh;
  const SampleRow sr = rows[blockIdx.x];
  const float* lg = logits + static_cast<int64_t>(sr.row) * vocab;
  float* w = work + static_cast<int64_t>(blockIdx.x) * vocab;
  const int64_t n = vocab;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) w[i] = lg[i];
  __syncthreads();
  if (sr.repetition_penalty != 1.f) {
    // Each seen id once or many times gives the same value: it is computed from the raw row.
    for (int32_t j = threadIdx.x; j < sr.history_count; j += kThreads) {
      const int32_t id = history[sr.history_begin + j];
      if (id < 0 || id >= vocab) continue;
      const float v = lg[id];
      w[id] = v < 0 ? v * sr.repetition_penalty : v / sr.repetition_penalty;
    }
    __syncthreads();
  }
  int32_t id;
  if (!sr.sample) {
    id = block_argmax(w, n, sh);
  } else {
    if (sr.temperature != 1.f)
      for (int64_t i = threadIdx.x; i < n; i += kThreads) w[i] /= sr.temperature;
    if (sr.top_k > 0 && sr.top_k < vocab) {
      const float kth = kth_largest(w, n, sr.top_k, sh);
      for (int64_t i = threadIdx.x; i < n; i += kThreads)
        if (w[i] < kth) w[i] = -INFINITY;
    }
    if (sr.top_p < 1.f) top_p(w, n, sr.top_p, sh);
    id = draw(w, n, sr.uniform, sh);
    if (id < 0) id = block_argmax(w, n, sh);  // rounding left the draw past the end
  }
  if (threadIdx.x == 0) {
    ids[blockIdx.x] = id;
    logprobs[blockIdx.x] = lg[id] - lse[sr.row];
  }
}

}  // namespace

void sample_rows(const float* logits, const float* lse, int64_t vocab, const SampleRow* rows, int32_t n,
                 const int32_t* history, float* work, int32_t* ids, float* logprobs, cudaStream_t s) {
  if (n == 0) return;
  sample_kernel<<<static_cast<unsigned>(n), kThreads, 0, s>>>(logits, lse, vocab, rows, history, work, ids,
                                                              logprobs);
  EYRIE_CUDA_LAUNCHED();
}

}  // namespace eyrie::cuda
