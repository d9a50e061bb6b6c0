// The peer-memory residual all-reduce: ranks sharing one GPU (each on its own stream, running
// at once) and, where there are several, one rank per GPU. Many calls in a row, of changing
// sizes, with and without split halves, biases and a second output, and inputs at any
// alignment, each against the same float arithmetic on the host: the per-rank residual sum,
// then the ranks' shares summed in rank order.
#include <gtest/gtest.h>

#if EYRIE_HAS_CUDA
#include <chrono>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <thread>

#include "cuda/check.hpp"
#include "cuda/cuda_engine.hpp"
#include "cuda/peer_exchange.hpp"
#include "tests/cuda/device_buffer.hpp"

namespace eyrie {
namespace {

using test::Device;

struct RankData {
  std::vector<float> a, ab, c, cb;
  std::unique_ptr<Device<float>> da, dab, dc, dcb, dx;
  int a_offset = 0;
  cudaStream_t stream = nullptr;
};

float share(const RankData& d, bool halves, bool with_c, bool bias, int64_t i, int64_t n, int64_t cols) {
  const float add = (d.a[i] + (halves ? d.a[n + i] : 0.f)) + (bias ? d.ab[i % cols] : 0.f);
  if (!with_c) return add;
  return ((d.c[i] + (halves ? d.c[n + i] : 0.f)) + (bias ? d.cb[i % cols] : 0.f)) + add;
}

void run_group(const std::vector<int>& devices) {
  auto exchange = cuda::PeerExchange::create(devices);
  if (!exchange) GTEST_SKIP() << "no peer access between the GPUs";
  const int ranks = static_cast<int>(devices.size());
  std::mt19937 rng(11 + ranks);
  std::uniform_real_distribution<float> u(-2.f, 2.f);
  const int64_t max_rows = 7, cols = 4544;  // up to 31,808 floats: near the most it takes
  std::vector<float> x(max_rows * cols);
  for (auto& v : x) v = u(rng);
  std::vector<RankData> data(ranks);
  for (int r = 0; r < ranks; ++r) {
    EYRIE_CUDA_CHECK(cudaSetDevice(devices[r]));
    auto fill = [&](std::size_t n) {
      std::vector<float> v(n);
      for (auto& e : v) e = u(rng);
      return v;
    };
    // Odd ranks' a one float into its allocation: inputs need no alignment.
    const int offset = r % 2;
    auto a = fill(2 * max_rows * cols + offset);
    data[r].a.assign(a.begin() + offset, a.end());
    data[r].c = fill(2 * max_rows * cols);
    data[r].ab = fill(cols);
    data[r].cb = fill(cols);
    data[r].da = std::make_unique<Device<float>>(a);
    data[r].a_offset = offset;
    data[r].dc = std::make_unique<Device<float>>(data[r].c);
    data[r].dab = std::make_unique<Device<float>>(data[r].ab);
    data[r].dcb = std::make_unique<Device<float>>(data[r].cb);
    data[r].dx = std::make_unique<Device<float>>(x);
    EYRIE_CUDA_CHECK(cudaStreamCreateWithFlags(&data[r].stream, cudaStreamNonBlocking));
  }
  // Sizes from one element to past one element per thread of the grid, so that blocks both
  // idle and loop; 60 calls, so that each staging half and the epochs come round many times.
  const int64_t rows_list[] = {1, 2, 3, 5, 7};
  for (int call = 0; call < 60; ++call) {
    const int64_t rows = rows_list[call % 5];
    const int64_t n_cols = call % 7 == 6 ? 1 : cols;  // a single column: one element per row
    const int64_t n = rows * n_cols;
    const bool halves = call % 2 == 0, with_c = call % 3 != 1, bias = call % 4 != 3;
    for (int r = 0; r < ranks; ++r) {
      EYRIE_CUDA_CHECK(cudaSetDevice(devices[r]));
      exchange->residual_all_reduce(r, data[r].dx->p, data[r].da->p + data[r].a_offset, bias ? data[r].dab->p : nullptr,
                                    with_c ? data[r].dc->p : nullptr, with_c && bias ? data[r].dcb->p : nullptr,
                                    rows, n_cols, halves, data[r].stream);
    }
    for (int64_t i = 0; i < n; ++i) {
      float sum = share(data[0], halves, with_c, bias, i, n, n_cols);
      for (int r = 1; r < ranks; ++r) sum += share(data[r], halves, with_c, bias, i, n, n_cols);
      x[i] += sum;
    }
  }
  for (int r = 0; r < ranks; ++r) {
    EYRIE_CUDA_CHECK(cudaSetDevice(devices[r]));
    EYRIE_CUDA_CHECK(cudaStreamSynchronize(data[r].stream));
    const auto got = data[r].dx->get(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) ASSERT_EQ(got[i], x[i]) << "rank " << r << ", element " << i;
    EYRIE_CUDA_CHECK(cudaStreamDestroy(data[r].stream));
  }
  EYRIE_CUDA_CHECK(cudaSetDevice(devices[0]));
}

// Each rank's kernel waits on GPU for the others', which must run beside it.
bool launches_serialized() {
  const char* v = std::getenv("CUDA_LAUNCH_BLOCKING");
  return v && std::string(v) == "1";
}

TEST(CudaPeerExchange, RanksSharingOneGpuSumLikeTheHost) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  if (launches_serialized()) GTEST_SKIP() << "CUDA_LAUNCH_BLOCKING=1 runs one kernel at a time";
  for (int ranks : {2, 3, 4}) {
    SCOPED_TRACE(std::to_string(ranks) + " ranks");
    run_group(std::vector<int>(ranks, 0));
  }
}

TEST(CudaPeerExchange, OneRankPerGpuSumLikeTheHost) {
  const int gpus = std::min(cuda_device_count(), cuda::PeerExchange::kMaxRanks);
  if (gpus < 2) GTEST_SKIP() << "fewer than two GPUs";
  std::vector<int> devices;
  for (int d = 0; d < gpus; ++d) devices.push_back(d);
  run_group(devices);
}

TEST(CudaPeerExchange, AnAbortedGroupLetsAWaitingRankGo) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  if (launches_serialized()) GTEST_SKIP() << "CUDA_LAUNCH_BLOCKING=1 returns from the launch only when it ends";
  auto exchange = cuda::PeerExchange::create({0, 0});
  ASSERT_TRUE(exchange);
  std::vector<float> zeros(64);
  Device<float> x(zeros), a(zeros);
  // Rank 0 alone: its kernel waits for rank 1, which never comes, until the abort.
  exchange->residual_all_reduce(0, x.p, a.p, nullptr, nullptr, nullptr, 1, 64, false, nullptr);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // spinning by now, not yet to start
  EXPECT_EQ(cudaStreamQuery(nullptr), cudaErrorNotReady) << "rank 0 did not wait for rank 1";
  exchange->abort();
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

TEST(CudaPeerExchange, RefusesASumLargerThanItsStaging) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  auto exchange = cuda::PeerExchange::create({0, 0});
  ASSERT_TRUE(exchange);
  EXPECT_THROW(exchange->residual_all_reduce(0, nullptr, nullptr, nullptr, nullptr, nullptr, 1,
                                             cuda::PeerExchange::kMaxFloats + 1, false, nullptr),
               InvalidArgument);
  EXPECT_THROW(exchange->residual_all_reduce(2, nullptr, nullptr, nullptr, nullptr, nullptr, 1, 8, false, nullptr),
               InvalidArgument);
}

}  // namespace
}  // namespace eyrie
#endif
