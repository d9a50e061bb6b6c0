// The CUDA engine as tensor-parallel shards: through NCCL (a group of one on a single GPU, of
// every visible GPU where there are several), and several shards sharing one GPU through host
// copies. Each against the whole engine on the same steps. Skipped where no GPU is present.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "cuda/cuda_engine.hpp"
#include "cuda/nccl_communicator.hpp"
#include "model/parallel/communicator.hpp"
#include "model/parallel/shard_group.hpp"
#include "tests/support/reference.hpp"
#include "tests/support/temp_dir.hpp"

#if EYRIE_HAS_CUDA
#include <cuda_runtime.h>
#endif

namespace eyrie {
namespace {

// Logprobs, every vocabulary entry's: sliced GEMMs sum in another order, and the fp16 inputs of
// activation_precision mixed (the default) round those sums, lm_head's included, where one
// rounding that flips moves a whole row of logits (up to 1.7e-2 on the H200, 5.1e-3 before
// lm_head took fp16 inputs, 2e-3 with every product split; each within 3e-2 of float64).
constexpr double kShardTol = 2e-2;

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

// Up to four visible GPUs, in order.
std::vector<int> visible_gpus() {
  std::vector<int> devices;
  for (int d = 0; d < std::min(cuda_device_count(), 4); ++d) devices.push_back(d);
  return devices;
}

// Prompts prefilled (by the constructor, the only reader of `prompts`), then decoded greedily
// one token per step; each sequence has 8 cache blocks of its own.
class GreedyDecode {
 public:
  GreedyDecode(Engine& engine, const std::vector<std::vector<int32_t>>& prompts)
      : engine_(engine), blocks_(prompts.size()), next_(prompts.size()) {
    for (std::size_t s = 0; s < prompts.size(); ++s) {
      for (int32_t i = 0; i < 8; ++i) blocks_[s].push_back(static_cast<int32_t>(8 * s) + i);
      batch_.seqs.push_back({s + 1, 0, prompts[s], blocks_[s], false});
      pos_.push_back(static_cast<int32_t>(prompts[s].size()));
    }
    engine_.step(batch_, out_);
  }
  void step() {
    for (std::size_t s = 0; s < next_.size(); ++s) {
      next_[s] = out_.last_argmax(s);
      batch_.seqs[s] = {s + 1, pos_[s], std::span<const int32_t>(&next_[s], 1), blocks_[s], false};
    }
    engine_.step(batch_, out_);
    for (auto& p : pos_) ++p;
  }
  const StepOutput& out() const { return out_; }

 private:
  Engine& engine_;
  std::vector<std::vector<int32_t>> blocks_;
  std::vector<int32_t> next_, pos_;
  StepBatch batch_;
  StepOutput out_;
};

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
  // One shard per device on an NCCL group, sharing `exchange` when given.
  struct NcclShards {
    std::vector<std::shared_ptr<Communicator>> comms;
    std::vector<std::shared_ptr<Engine>> engines;
    std::vector<CudaEngine*> cuda;
  };
  NcclShards nccl_shards(const std::vector<int>& devices, bool graphs = true,
                         std::shared_ptr<cuda::PeerExchange> exchange = nullptr) const {
    NcclShards out;
    out.comms = make_nccl_group(devices);
    for (std::size_t r = 0; r < devices.size(); ++r) {
      CudaEngineOptions o = opts(devices[r]);
      o.cuda_graphs = graphs;
      o.peer_exchange = exchange;
      auto engine = std::make_shared<CudaEngine>(model_, o, out.comms[r]);
      out.cuda.push_back(engine.get());
      out.engines.push_back(engine);
    }
    return out;
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

// A shard's steps on bf16 activations with the MLP's first product and GELU on the second
// stream (concurrent_mlp_up_rows_min) give the same bits as without: the MLP's output product
// then follows on the chain's stream into the all-reduced sum, not into x.
TEST_P(CudaTensorParallel, ShardStepsWithTheMlpUpProjectionBesideTheChainKeepTheirBits) {
  std::vector<std::vector<double>> runs[2];
  for (int concurrent = 0; concurrent < 2; ++concurrent) {
    auto comm = make_nccl_group({0});
    CudaEngineOptions o = opts(0);
    o.split_rows_max = 0;
    o.concurrent_mlp_rows_max = 0;
    o.concurrent_mlp_up_rows_min = concurrent ? 1 : 0;
    CudaEngine shard(model_, o, comm[0]);
    runs[concurrent] = run_steps(shard, GetParam());
  }
  ASSERT_EQ(runs[0].size(), runs[1].size());
  for (std::size_t s = 0; s < runs[0].size(); ++s) {
    ASSERT_EQ(runs[0][s].size(), runs[1][s].size()) << "step " << s;
    for (std::size_t i = 0; i < runs[0][s].size(); ++i) ASSERT_EQ(runs[0][s][i], runs[1][s][i]) << "step " << s;
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
  const std::vector<int> devices = visible_gpus();
  if (devices.size() < 2) GTEST_SKIP() << "one GPU visible";
  for (bool peers : {false, true}) {
    SCOPED_TRACE(peers ? "residual sums in peer memory" : "residual sums through NCCL");
    auto exchange = peers ? make_peer_exchange(devices) : nullptr;
    if (peers && !exchange) GTEST_SKIP() << "no peer access between the GPUs";
    NcclShards shards = nccl_shards(devices, true, exchange);
    ShardGroup group(shards.engines, shards.comms);
    expect_close(run_steps(group, GetParam()), want_, kShardTol);
  }
}

// Decode steps of NCCL shards replayed from CUDA graphs (collectives captured with the rest)
// give the bits of direct launches, with residual sums through NCCL and in peer memory: a group
// over every visible GPU, or of one on a single GPU.
TEST_P(CudaTensorParallel, NcclShardsReplayDecodeStepsFromGraphsWithTheSameBits) {
  const std::vector<int> devices = visible_gpus();
  auto cases = test::load_reference(GetParam() + "/reference.json");
  std::vector<std::vector<float>> runs[4];
  for (int run = 0; run < 4; ++run) {
    const bool graphs = run % 2 == 1, peers = run >= 2;
    auto exchange = peers ? make_peer_exchange(devices) : nullptr;
    if (peers && !exchange) GTEST_SKIP() << "no peer access between the GPUs";
    NcclShards shards = nccl_shards(devices, graphs, exchange);
    ShardGroup group(shards.engines, shards.comms);
    GreedyDecode decode(group, {cases[0].ids, cases[1].ids});
    for (int step = 0; step < 12; ++step) {
      decode.step();
      runs[run].emplace_back(decode.out().last(0).begin(), decode.out().last(0).end());
      runs[run].emplace_back(decode.out().last(1).begin(), decode.out().last(1).end());
    }
    for (CudaEngine* e : shards.cuda) {
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
  auto cases = test::load_reference(GetParam() + "/reference.json");
  NcclShards shards = nccl_shards(visible_gpus());
  {
    ShardGroup group(shards.engines, shards.comms);
    GreedyDecode decode(group, {cases[0].ids});
    for (int step = 0; step < 4; ++step) decode.step();
    for (CudaEngine* e : shards.cuda) ASSERT_GT(e->graph_replays(), 0);
    shards.comms[0]->abort("stopped by the test");
    EXPECT_THROW(decode.step(), GroupAborted);
    EXPECT_THROW(decode.step(), GroupAborted);
  }
  shards = {};
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
