#include "cuda/peer_exchange.hpp"

#include <algorithm>
#include <string>

#include "cuda/check.hpp"
#include "cuda/nccl_communicator.hpp"
#include "cuda/residual.cuh"

namespace eyrie {
namespace cuda {
namespace {

constexpr int kThreads = 256;

struct PeerArgs {
  float* staging[PeerExchange::kMaxRanks];  // each rank's, both halves
  uint32_t* flags[PeerExchange::kMaxRanks];
  uint32_t* epochs;
  const volatile uint32_t* aborted;
  int rank, ranks;
  float* x;
  const float *a, *a_bias, *c, *c_bias;
  int64_t cols, n, lo;
  bool halves, c_halves;
};

__device__ __forceinline__ uint32_t load_acquire(const uint32_t* p) {
  uint32_t v;
  asm volatile("ld.acquire.sys.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}

__device__ __forceinline__ void store_release(uint32_t* p, uint32_t v) {
  asm volatile("st.release.sys.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}

// Block b of every rank handles the same elements, so each block meets its peers' block b
// alone: write this rank's share, flag it to each peer, wait for theirs, sum. Calls alternate
// staging halves; a rank writes a half again two calls later, by when every peer has passed
// the call in between, and so has finished reading it.
__global__ void peer_residual_kernel(PeerArgs p) {
  __shared__ uint32_t epoch;
  __shared__ int stop;
  if (threadIdx.x == 0) {
    epoch = p.epochs[blockIdx.x] + 1;
    p.epochs[blockIdx.x] = epoch;
    stop = 0;
  }
  __syncthreads();
  const uint32_t e = epoch;
  const int64_t half = (e & 1) * PeerExchange::kMaxFloats;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  float* mine = p.staging[p.rank] + half;
  for (int64_t i = first; i < p.n; i += stride)
    mine[i] = residual_at(p.a, p.a_bias, p.c, p.c_bias, p.halves, p.c_halves, i, p.lo, i % p.cols);
  __threadfence_system();
  __syncthreads();
  const int peer = threadIdx.x;
  if (peer < p.ranks && peer != p.rank) {
    store_release(p.flags[peer] + blockIdx.x * PeerExchange::kMaxRanks + p.rank, e);
    const uint32_t* theirs = p.flags[p.rank] + blockIdx.x * PeerExchange::kMaxRanks + peer;
    for (uint32_t spins = 0; static_cast<int32_t>(load_acquire(theirs) - e) < 0;) {
      if ((++spins & 1023) == 0 && *p.aborted) {
        stop = 1;
        break;
      }
    }
  }
  __syncthreads();
  if (stop) return;
  for (int64_t i = first; i < p.n; i += stride) {
    // Past L1: a line of this half may be there from two calls ago.
    float sum = __ldcg(p.staging[0] + half + i);
    for (int r = 1; r < p.ranks; ++r) sum += __ldcg(p.staging[r] + half + i);
    p.x[i] += sum;
  }
}

// False when the driver refuses (too many peers, say): the group then sums through NCCL.
bool enable_peer_access(int from, int to) {
  EYRIE_CUDA_CHECK(cudaSetDevice(from));
  const cudaError_t e = cudaDeviceEnablePeerAccess(to, 0);
  if (e != cudaSuccess) cudaGetLastError();
  return e == cudaSuccess || e == cudaErrorPeerAccessAlreadyEnabled;
}

// The calling thread's current device, as it was, on every way out.
class KeepDevice {
 public:
  KeepDevice() { EYRIE_CUDA_CHECK(cudaGetDevice(&device_)); }
  ~KeepDevice() { cudaSetDevice(device_); }
  KeepDevice(const KeepDevice&) = delete;
  KeepDevice& operator=(const KeepDevice&) = delete;

 private:
  int device_ = 0;
};

}  // namespace

std::shared_ptr<PeerExchange> PeerExchange::create(const std::vector<int>& devices) {
  if (devices.empty() || devices.size() > static_cast<std::size_t>(kMaxRanks)) return nullptr;
  for (int from : devices)
    for (int to : devices) {
      if (from == to) continue;
      int ok = 0;
      EYRIE_CUDA_CHECK(cudaDeviceCanAccessPeer(&ok, from, to));
      if (!ok) return nullptr;
    }
  KeepDevice keep;
  for (int from : devices)
    for (int to : devices)
      if (from != to && !enable_peer_access(from, to)) return nullptr;
  std::shared_ptr<PeerExchange> x(new PeerExchange());
  EYRIE_CUDA_CHECK(cudaHostAlloc(&x->aborted_, sizeof(uint32_t), cudaHostAllocMapped | cudaHostAllocPortable));
  *x->aborted_ = 0;
  for (int d : devices) {
    Rank r;
    r.device = d;
    x->ranks_.push_back(r);  // owned from here on, so a failure below frees what was allocated
    Rank& rank = x->ranks_.back();
    EYRIE_CUDA_CHECK(cudaSetDevice(d));
    EYRIE_CUDA_CHECK(cudaMalloc(&rank.staging, 2 * kMaxFloats * sizeof(float)));
    EYRIE_CUDA_CHECK(cudaMalloc(&rank.flags, kMaxBlocks * kMaxRanks * sizeof(uint32_t)));
    EYRIE_CUDA_CHECK(cudaMalloc(&rank.epochs, kMaxBlocks * sizeof(uint32_t)));
    EYRIE_CUDA_CHECK(cudaMemset(rank.flags, 0, kMaxBlocks * kMaxRanks * sizeof(uint32_t)));
    EYRIE_CUDA_CHECK(cudaMemset(rank.epochs, 0, kMaxBlocks * sizeof(uint32_t)));
  }
  for (int d : devices) {
    EYRIE_CUDA_CHECK(cudaSetDevice(d));
    EYRIE_CUDA_CHECK(cudaDeviceSynchronize());
  }
  return x;
}

PeerExchange::~PeerExchange() {
  int current = 0;
  const bool known = cudaGetDevice(&current) == cudaSuccess;
  for (const Rank& r : ranks_) {
    cudaSetDevice(r.device);
    cudaFree(r.staging);
    cudaFree(r.flags);
    cudaFree(r.epochs);
  }
  if (aborted_) cudaFreeHost(aborted_);
  if (known) cudaSetDevice(current);
}

void PeerExchange::abort() {
  if (aborted_) *reinterpret_cast<volatile uint32_t*>(aborted_) = 1;
}

void PeerExchange::residual_all_reduce(int rank, float* x, const float* a, const float* a_bias, const float* c,
                                       const float* c_bias, int64_t rows, int64_t cols, bool halves, cudaStream_t s,
                                       bool c_halves) {
  const int64_t n = rows * cols;
  if (n == 0) return;
  if (!fits(n) || rank < 0 || rank >= size())
    throw InvalidArgument("peer all-reduce of " + std::to_string(n) + " floats on rank " + std::to_string(rank) +
                          " of " + std::to_string(size()) + " (at most " + std::to_string(kMaxFloats) + ")");
  PeerArgs p{};
  for (int r = 0; r < size(); ++r) {
    p.staging[r] = ranks_[r].staging;
    p.flags[r] = ranks_[r].flags;
  }
  p.epochs = ranks_[rank].epochs;
  p.aborted = aborted_;
  p.rank = rank;
  p.ranks = size();
  p.x = x;
  p.a = a;
  p.a_bias = a_bias;
  p.c = c;
  p.c_bias = c_bias;
  p.cols = cols;
  p.n = n;
  p.lo = halves ? n : 0;
  p.halves = halves;
  p.c_halves = halves && c_halves;
  const int blocks = static_cast<int>(std::clamp<int64_t>((n + kThreads - 1) / kThreads, 1, kMaxBlocks));
  peer_residual_kernel<<<blocks, kThreads, 0, s>>>(p);
  EYRIE_CUDA_LAUNCHED();
}

}  // namespace cuda

std::shared_ptr<cuda::PeerExchange> make_peer_exchange(const std::vector<int>& devices) {
  return cuda::PeerExchange::create(devices);
}

}  // namespace eyrie
