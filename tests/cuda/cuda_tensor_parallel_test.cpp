// The CUDA engine as tensor-parallel shards: through NCCL (a group of one on a single GPU, of
// every visible GPU where there are several), and several shards sharing one GPU through host
// copies. Each against the whole engine on the same steps. Skipped where no GPU is present.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "cuda/cuda_engine.hpp"
#include "cuda/nccl_communicator.hpp"
#include "cuda/peer_exchange.hpp"
#include "model/parallel/communicator.hpp"
#include "model/parallel/shard_group.hpp"
#include "tests/support/reference.hpp"
#include "tests/support/temp_dir.hpp"

#if EYRIE_HAS_CUDA
#include <cuda_runtime.h>
#endif

namespace eyrie {
namespace {

constexpr double kShardTol = 2e-3;  // logprobs: sliced bf16 GEMMs sum in another order

#if EYRIE_HAS_CUDA
// Device buffers through the host around an in-process group: NCCL refuses two ranks on one
// GPU, and these tests must cut a model several ways on a machine with one.
class StagedCommunicator final : public Communicator {
 public:
  explicit StagedCommunicator(std::shared_ptr<Communicator> inner) : inner_(std::move(inner)) {}
  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  void all_reduce_sum(float* data, std::size_t count, void* stream) override {
    auto s = static_cast<cudaStream_t>(stream);
    a_.resize(count);
    copy(a_.data(), data, count, cudaMemcpyDeviceToHost, s);
    inner_->all_reduce_sum(a_.data(), count, nullptr);
    copy(data, a_.data(), count, cudaMemcpyHostToDevice, s);
  }
  void all_gather(const float* send, float* recv, std::size_t count, void* stream) override {
    auto s = static_cast<cudaStream_t>(stream);
    a_.resize(count);
    b_.resize(count * size());
    copy(a_.data(), send, count, cudaMemcpyDeviceToHost, s);
    inner_->all_gather(a_.data(), b_.data(), count, nullptr);
    copy(recv, b_.data(), count * size(), cudaMemcpyHostToDevice, s);
  }
  void abort(const std::string& why) override { inner_->abort(why); }

 private:
  static void copy(float* dst, const float* src, std::size_t n, cudaMemcpyKind kind, cudaStream_t s) {
    if (cudaMemcpyAsync(dst, src, n * sizeof(float), kind, s) != cudaSuccess || cudaStreamSynchronize(s) != cudaSuccess)
      throw Error("staged copy failed");
  }
  std::shared_ptr<Communicator> inner_;
  std::vector<float> a_, b_;
};
#endif

// Log-probabilities of every row of a step, flattened.
std::vector<double> logprobs(const StepOutput& out, std::size_t seqs) {
  std::vector<double> v;
  for (std::size_t s = 0; s < seqs; ++s)
    for (std::size_t i = 0; i < out.num_rows(s); ++i) {
      auto row = out.row(s, i);
      for (float x : row) v.push_back(double(x) - out.logsumexp(s, i));
    }
  return v;
}

// Two steps of two sequences: a whole prompt with every row's logits beside half of another,
// then a decode beside the other half. Returns both steps' log-probabilities.
std::vector<std::vector<double>> run_steps(Engine& engine, const std::string& fixture) {
  auto cases = test::load_reference(fixture + "/reference.json");
  const auto& a = cases[0].ids;
  const auto& b = cases[1].ids;
  std::vector<int32_t> ba, bb;
  for (int32_t i = 0; i < 8; ++i) ba.push_back(i), bb.push_back(8 + i);
  const std::size_t half = b.size() / 2;
  const int32_t next[1] = {cases[0].greedy_ids[0]};
  StepBatch s1, s2;
  s1.seqs.push_back({1, 0, a, ba, true});
  s1.seqs.push_back({2, 0, std::span<const int32_t>(b).subspan(0, half), bb, false});
  s2.seqs.push_back({1, static_cast<int32_t>(a.size()), std::span<const int32_t>(next, 1), ba, false});
  s2.seqs.push_back({2, static_cast<int32_t>(half), std::span<const int32_t>(b).subspan(half), bb, false});
  std::vector<std::vector<double>> result;
  for (const StepBatch* batch : {&s1, &s2}) {
    StepOutput out;
    engine.step(*batch, out);
    result.push_back(logprobs(out, batch->seqs.size()));
  }
  return result;
}

void expect_close(const std::vector<std::vector<double>>& got, const std::vector<std::vector<double>>& want,
                  double tol) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t s = 0; s < want.size(); ++s) {
    ASSERT_EQ(got[s].size(), want[s].size()) << "step " << s;
    double worst = 0;
    for (std::size_t i = 0; i < want[s].size(); ++i) worst = std::max(worst, std::abs(got[s][i] - want[s][i]));
    EXPECT_LT(worst, tol) << "step " << s;
  }
}

class CudaTensorParallel : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
    model_ = FalconModel::load(GetParam());
    whole_ = std::make_unique<CudaEngine>(model_, opts(0));
    want_ = run_steps(*whole_, GetParam());
  }
  static CudaEngineOptions opts(int device) {
    CudaEngineOptions o;
    o.device = device;
    o.kv_tokens = 2048;
    o.max_step_tokens = 512;
    return o;
  }
  std::shared_ptr<const FalconModel> model_;
  std::unique_ptr<CudaEngine> whole_;
  std::vector<std::vector<double>> want_;
};

TEST_P(CudaTensorParallel, NcclGroupOfOneRunsTheShardPath) {
  for (bool peers : {false, true}) {
    SCOPED_TRACE(peers ? "residual sums in peer memory" : "residual sums through NCCL");
    auto comm = make_nccl_group({0});
    CudaEngineOptions o = opts(0);
    o.peer_exchange = peers ? make_peer_exchange({0}) : nullptr;
    CudaEngine shard(model_, o, comm[0]);
    expect_close(run_steps(shard, GetParam()), want_, kShardTol);
  }
}

TEST_P(CudaTensorParallel, ShardsSharingOneGpuMatchTheWholeEngine) {
#if EYRIE_HAS_CUDA
  // Without a peer exchange: its kernels wait on GPU for the other ranks' kernels, which one
  // GPU cannot promise while a rank's thread synchronizes the device (a buffer freed while
  // growing). The kernel alone is tested with ranks sharing a GPU.
  for (int degree : {2, 3, 4}) {
    SCOPED_TRACE("degree " + std::to_string(degree));
    auto inner = make_in_process_group(degree);
    std::vector<std::shared_ptr<Communicator>> comms;
    std::vector<std::shared_ptr<Engine>> shards;
    for (int r = 0; r < degree; ++r) {
      comms.push_back(std::make_shared<StagedCommunicator>(inner[r]));
      shards.push_back(std::make_shared<CudaEngine>(model_, opts(0), comms[r]));
    }
    ShardGroup group(shards, comms);
    expect_close(run_steps(group, GetParam()), want_, kShardTol);
  }
#endif
}

TEST_P(CudaTensorParallel, NcclShardsOnEveryVisibleGpuMatchTheWholeEngine) {
  const int gpus = std::min(cuda_device_count(), 4);
  if (gpus < 2) GTEST_SKIP() << "one GPU visible";
  std::vector<int> devices;
  for (int d = 0; d < gpus; ++d) devices.push_back(d);
  for (bool peers : {false, true}) {
    SCOPED_TRACE(peers ? "residual sums in peer memory" : "residual sums through NCCL");
    auto comms = make_nccl_group(devices);
    auto exchange = peers ? make_peer_exchange(devices) : nullptr;
    if (peers && !exchange) GTEST_SKIP() << "no peer access between the GPUs";
    std::vector<std::shared_ptr<Engine>> shards;
    for (int r = 0; r < gpus; ++r) {
      CudaEngineOptions o = opts(r);
      o.peer_exchange = exchange;
      shards.push_back(std::make_shared<CudaEngine>(model_, o, comms[r]));
    }
    ShardGroup group(shards, comms);
    expect_close(run_steps(group, GetParam()), want_, kShardTol);
  }
}

// Decode steps of NCCL shards replayed from CUDA graphs (collectives captured with the rest)
// give the bits of direct launches, with residual sums through NCCL and in peer memory: a group
// over every visible GPU, or of one on a single GPU.
TEST_P(CudaTensorParallel, NcclShardsReplayDecodeStepsFromGraphsWithTheSameBits) {
  std::vector<int> devices;
  for (int d = 0; d < std::min(cuda_device_count(), 4); ++d) devices.push_back(d);
  auto cases = test::load_reference(GetParam() + "/reference.json");
  const auto& a = cases[0].ids;
  const auto& b = cases[1].ids;
  std::vector<std::vector<float>> runs[4];
  for (int run = 0; run < 4; ++run) {
    const bool graphs = run % 2 == 1, peers = run >= 2;
    auto comms = make_nccl_group(devices);
    auto exchange = peers ? make_peer_exchange(devices) : nullptr;
    if (peers && !exchange) GTEST_SKIP() << "no peer access between the GPUs";
    std::vector<std::shared_ptr<Engine>> shards;
    std::vector<CudaEngine*> engines;
    for (std::size_t r = 0; r < devices.size(); ++r) {
      CudaEngineOptions o = opts(devices[r]);
      o.cuda_graphs = graphs;
      o.peer_exchange = exchange;
      auto engine = std::make_shared<CudaEngine>(model_, o, comms[r]);
      engines.push_back(engine.get());
      shards.push_back(engine);
    }
    ShardGroup group(shards, comms);
    std::vector<int32_t> ba, bb;
    for (int32_t i = 0; i < 8; ++i) ba.push_back(i), bb.push_back(8 + i);
    StepBatch batch;
    batch.seqs.push_back({1, 0, a, ba, false});
    batch.seqs.push_back({2, 0, b, bb, false});
    StepOutput out;
    group.step(batch, out);
    int32_t pa = static_cast<int32_t>(a.size()), pb = static_cast<int32_t>(b.size());
    for (int step = 0; step < 12; ++step) {
      const int32_t ta[1] = {out.last_argmax(0)}, tb[1] = {out.last_argmax(1)};
      batch.seqs[0] = {1, pa++, std::span<const int32_t>(ta, 1), ba, false};
      batch.seqs[1] = {2, pb++, std::span<const int32_t>(tb, 1), bb, false};
      group.step(batch, out);
      runs[run].emplace_back(out.last(0).begin(), out.last(0).end());
      runs[run].emplace_back(out.last(1).begin(), out.last(1).end());
    }
    for (CudaEngine* e : engines) {
      if (graphs)
        EXPECT_GT(e->graph_replays(), 0) << "run " << run;
      else
        EXPECT_EQ(e->graph_replays(), 0) << "run " << run;
    }
  }
  for (int base : {0, 2}) {
    ASSERT_EQ(runs[base].size(), runs[base + 1].size());
    for (std::size_t i = 0; i < runs[base].size(); ++i)
      ASSERT_EQ(runs[base][i], runs[base + 1][i]) << (base ? "peer memory" : "NCCL") << ", row " << i;
  }
}

// A group stopped after its decode steps were captured into CUDA graphs: NCCL reclaims its
// communicators only once no graph holds their collectives, so stopping must not wait for that
// on the ranks' threads. The next step fails on every rank, and the shards then close.
TEST_P(CudaTensorParallel, AStoppedGroupWithCapturedGraphsFailsItsNextStep) {
  std::vector<int> devices;
  for (int d = 0; d < std::min(cuda_device_count(), 4); ++d) devices.push_back(d);
  auto cases = test::load_reference(GetParam() + "/reference.json");
  const auto& a = cases[0].ids;
  auto comms = make_nccl_group(devices);
  std::vector<std::shared_ptr<Engine>> shards;
  std::vector<CudaEngine*> engines;
  for (std::size_t r = 0; r < devices.size(); ++r) {
    auto engine = std::make_shared<CudaEngine>(model_, opts(devices[r]), comms[r]);
    engines.push_back(engine.get());
    shards.push_back(engine);
  }
  {
    ShardGroup group(shards, comms);
    std::vector<int32_t> blocks;
    for (int32_t i = 0; i < 8; ++i) blocks.push_back(i);
    StepBatch batch;
    batch.seqs.push_back({1, 0, a, blocks, false});
    StepOutput out;
    group.step(batch, out);
    int32_t pos = static_cast<int32_t>(a.size());
    for (int step = 0; step < 4; ++step) {
      const int32_t t[1] = {out.last_argmax(0)};
      batch.seqs[0] = {1, pos++, std::span<const int32_t>(t, 1), blocks, false};
      group.step(batch, out);
    }
    for (CudaEngine* e : engines) ASSERT_GT(e->graph_replays(), 0);
    comms[0]->abort("stopped by the test");
    const int32_t t[1] = {out.last_argmax(0)};
    batch.seqs[0] = {1, pos, std::span<const int32_t>(t, 1), blocks, false};
    EXPECT_THROW(group.step(batch, out), GroupAborted);
    EXPECT_THROW(group.step(batch, out), GroupAborted);
  }
  engines.clear();
  shards.clear();
  comms.clear();
}

TEST(NcclGroup, AGroupNcclCannotFormSaysSoInNcclsWords) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  try {
    make_nccl_group({0, 0});  // two ranks on one GPU: NCCL refuses
    FAIL() << "NCCL formed a group with two ranks on one GPU";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("NCCL could not form a group on GPUs 0,0"), std::string::npos) << what;
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CudaTensorParallel, ::testing::ValuesIn(test::fixture_models()),
                         [](const auto& p) { return test::fixture_name(p.param); });

}  // namespace
}  // namespace eyrie
