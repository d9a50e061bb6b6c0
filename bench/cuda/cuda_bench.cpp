// Falcon decode and prefill on one GPU with random bf16 weights created on the device from a
// config.json: time to first token, time per output token, batched decode throughput, and the
// share of the memory-bandwidth roofline (device copy bandwidth measured in the same run). With
// --tp N the model is cut over GPUs 0..N-1 through NCCL; the roofline is then per GPU.
//
//   bench_cuda --config tests/data/configs/falcon-7b.json [--batches 16,64,256] [--tp 1]
//              [--split-rows-max 256] [--cuda-graphs on|off] [--concurrent-mlp-rows-max 128]
//              [--concurrent-mlp-up-rows-min 512] [--gemv-rows-max 3] [--gemv-mma-rows-max 8]
//              [--gemv-early-start-rows-min 3] [--fp32-gemv-rows-max 2]
//              [--key-split-blocks-per-sm 1] [--wgmma-attention-rows-min 512]
//              [--decode-head-split-rows-max 8] [--bf16-kv-cache on|off] [--fp16-mlp on|off]
//              [--fp16-dense on|off] [--fp16-lm-head on|off] [--fp8-qkv-rows-min 1024]
//              [--peer-exchange on|off] [--summed-output-products on|off]
//              [--prompts 128,2048] [--tpot on|off] [--sampling greedy|device|host]
//              [--profile-last-step on|off] [--warm-steps 2]
// ("none" for an empty list: --batches none --prompts none --tpot off runs nothing but setup)
// Decode is timed after --warm-steps untimed steps, in which the prompts' last positions are
// decoded instead: the engine runs a batch shape directly once and captures it into a CUDA graph
// the second time, so two leave the timed steps replaying it, as a warmed server does.
// --profile-last-step on brackets the last step of every timed prefill and decode with
// cudaProfilerStart / Stop, so `ncu --profile-from-start off` sees those steps' kernels alone.
#include <cuda_profiler_api.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "bench/cuda/int_list.hpp"
#include "cuda/check.hpp"
#include "cuda/cuda_engine.hpp"
#include "cuda/nccl_communicator.hpp"
#include "model/parallel/shard_group.hpp"
#include "model/sampling/sampler.hpp"

using Clock = std::chrono::steady_clock;
using namespace eyrie;

namespace {

bool profile_last_step = false;

// Runs one engine step, inside a profiler range when it is the last of a timed run.
void step(Engine& e, const StepBatch& b, StepOutput& out, bool last) {
  if (profile_last_step && last) EYRIE_CUDA_CHECK(cudaProfilerStart());
  e.step(b, out);
  if (profile_last_step && last) EYRIE_CUDA_CHECK(cudaProfilerStop());
}

double copy_bandwidth() {
  const std::size_t bytes = std::size_t{1} << 31;
  void *a, *b;
  EYRIE_CUDA_CHECK(cudaMalloc(&a, bytes));
  EYRIE_CUDA_CHECK(cudaMalloc(&b, bytes));
  EYRIE_CUDA_CHECK(cudaMemset(a, 1, bytes));
  cudaEvent_t t0, t1;
  cudaEventCreate(&t0);
  cudaEventCreate(&t1);
  EYRIE_CUDA_CHECK(cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice));
  cudaEventRecord(t0);
  const int reps = 10;
  for (int i = 0; i < reps; ++i) EYRIE_CUDA_CHECK(cudaMemcpy(i % 2 ? a : b, i % 2 ? b : a, bytes, cudaMemcpyDeviceToDevice));
  cudaEventRecord(t1);
  cudaEventSynchronize(t1);
  float ms = 0;
  cudaEventElapsedTime(&ms, t0, t1);
  cudaFree(a);
  cudaFree(b);
  return 2.0 * bytes * reps / (ms / 1e3);  // bytes read + written per second
}

struct Seq {
  std::vector<int32_t> tokens, blocks;
  int32_t pos = 0;
};

// Prefills every sequence (in steps of at most max_rows rows), then runs decode steps.
double prefill(Engine& e, std::vector<Seq>& seqs, int64_t max_rows) {
  StepOutput out;
  const auto t0 = Clock::now();
  std::size_t i = 0;
  while (i < seqs.size()) {
    StepBatch b;
    int64_t rows = 0;
    while (i < seqs.size() && (rows == 0 || rows + static_cast<int64_t>(seqs[i].tokens.size()) <= max_rows)) {
      b.seqs.push_back({i, 0, seqs[i].tokens, seqs[i].blocks, false, false});
      rows += static_cast<int64_t>(seqs[i].tokens.size());
      seqs[i].pos = static_cast<int32_t>(seqs[i].tokens.size());
      ++i;
    }
    step(e, b, out, i == seqs.size());
  }
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// How decode steps choose their tokens: greedy from the row statistics, or sampled
// (temperature 0.8, top-p 0.9, as the scheduler would) on the device or by the host sampler
// from copied rows.
enum class Choice { greedy, device, host };

double decode(Engine& e, std::vector<Seq>& seqs, int steps, Choice choice = Choice::greedy) {
  StepOutput out;
  std::vector<int32_t> next(seqs.size(), 1000);
  SamplingParams params;
  params.temperature = 0.8;
  params.top_p = 0.9;
  std::vector<Sampler> samplers;
  for (std::size_t i = 0; i < seqs.size(); ++i) samplers.emplace_back(params, 1 + i);
  std::vector<DeviceSampling> device(seqs.size());
  const auto t0 = Clock::now();
  for (int s = 0; s < steps; ++s) {
    StepBatch b;
    for (std::size_t i = 0; i < seqs.size(); ++i) {
      b.seqs.push_back({i, seqs[i].pos, std::span<const int32_t>(&next[i], 1), seqs[i].blocks, false,
                        choice == Choice::host});
      if (choice == Choice::device && samplers[i].device_choice(device[i], seqs[i].tokens))
        b.seqs.back().choose = &device[i];
    }
    step(e, b, out, s + 1 == steps);
    for (std::size_t i = 0; i < seqs.size(); ++i) {
      if (choice == Choice::greedy)
        next[i] = out.last_argmax(i);
      else if (out.has_choice(i))
        next[i] = out.choice_id(i);
      else
        next[i] = samplers[i]
                      .choose(out.last(i), seqs[i].tokens,
                              Sampler::RowInfo{out.last_logsumexp(i), out.last_argmax(i), out.last_max(i)})
                      .id;
      if (choice != Choice::greedy) seqs[i].tokens.push_back(next[i]);
      ++seqs[i].pos;
    }
  }
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::vector<Seq> make_seqs(const Engine& e, int batch, int prompt, int total) {
  std::vector<Seq> seqs(batch);
  const int32_t per = e.kv_spec().blocks_for(total);
  for (int b = 0; b < batch; ++b) {
    for (int t = 0; t < prompt; ++t) seqs[b].tokens.push_back(12 + (b * 7919 + t * 104729) % 65000);
    for (int32_t k = 0; k < per; ++k) seqs[b].blocks.push_back(b * per + k);
  }
  return seqs;
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path = "tests/data/configs/falcon-7b.json";
  std::vector<int> batches = {16, 64, 256};
  std::vector<int> prompts = {128, 2048};
  bool tpot = true;
  int tp = 1;
  int64_t split_rows_max = CudaEngineOptions{}.split_rows_max;
  bool graphs = true;
  Choice choice = Choice::greedy;
  int64_t concurrent_mlp_rows_max = CudaEngineOptions{}.concurrent_mlp_rows_max;
  int64_t concurrent_mlp_up_rows_min = CudaEngineOptions{}.concurrent_mlp_up_rows_min;
  int64_t gemv_rows_max = CudaEngineOptions{}.gemv_rows_max;
  int64_t fp32_gemv_rows_max = CudaEngineOptions{}.fp32_gemv_rows_max;
  int64_t gemv_mma_rows_max = CudaEngineOptions{}.gemv_mma_rows_max;
  int64_t gemv_early_start_rows_min = CudaEngineOptions{}.gemv_early_start_rows_min;
  int64_t key_split_blocks_per_sm = CudaEngineOptions{}.key_split_blocks_per_sm;
  int64_t wgmma_attention_rows_min = CudaEngineOptions{}.wgmma_attention_rows_min;
  int64_t decode_head_split_rows_max = CudaEngineOptions{}.decode_head_split_rows_max;
  bool bf16_kv_cache = CudaEngineOptions{}.bf16_kv_cache;
  bool fp16_mlp = CudaEngineOptions{}.fp16_mlp;
  bool fp16_dense = CudaEngineOptions{}.fp16_dense;
  bool fp16_lm_head = CudaEngineOptions{}.fp16_lm_head;
  int64_t fp8_qkv_rows_min = CudaEngineOptions{}.fp8_qkv_rows_min;
  bool peer_exchange = true;
  int warm_steps = 2;
  bool summed_output_products = CudaEngineOptions{}.summed_output_products;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--config")) config_path = argv[i + 1];
    if (!std::strcmp(argv[i], "--tp")) tp = std::stoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--split-rows-max")) split_rows_max = std::stoll(argv[i + 1]);
    if (!std::strcmp(argv[i], "--cuda-graphs")) graphs = std::strcmp(argv[i + 1], "off") != 0;
    if (!std::strcmp(argv[i], "--concurrent-mlp-rows-max")) concurrent_mlp_rows_max = std::stoll(argv[i + 1]);
    if (!std::strcmp(argv[i], "--concurrent-mlp-up-rows-min")) concurrent_mlp_up_rows_min = std::stoll(argv[i + 1]);
    if (!std::strcmp(argv[i], "--gemv-rows-max")) gemv_rows_max = std::stoll(argv[i + 1]);
    if (!std::strcmp(argv[i], "--fp32-gemv-rows-max")) fp32_gemv_rows_max = std::stoll(argv[i + 1]);
    if (!std::strcmp(argv[i], "--gemv-mma-rows-max")) gemv_mma_rows_max = std::stoll(argv[i + 1]);
    if (!std::strcmp(argv[i], "--gemv-early-start-rows-min")) gemv_early_start_rows_min = std::stoll(argv[i + 1]);
    if (!std::strcmp(argv[i], "--key-split-blocks-per-sm")) key_split_blocks_per_sm = std::stoll(argv[i + 1]);
    if (!std::strcmp(argv[i], "--wgmma-attention-rows-min")) wgmma_attention_rows_min = std::stoll(argv[i + 1]);
    if (!std::strcmp(argv[i], "--decode-head-split-rows-max")) decode_head_split_rows_max = std::stoll(argv[i + 1]);
    if (!std::strcmp(argv[i], "--peer-exchange")) peer_exchange = std::strcmp(argv[i + 1], "off") != 0;
    if (!std::strcmp(argv[i], "--summed-output-products"))
      summed_output_products = std::strcmp(argv[i + 1], "off") != 0;
    if (!std::strcmp(argv[i], "--bf16-kv-cache")) bf16_kv_cache = std::strcmp(argv[i + 1], "off") != 0;
    if (!std::strcmp(argv[i], "--fp16-mlp")) fp16_mlp = std::strcmp(argv[i + 1], "off") != 0;
    if (!std::strcmp(argv[i], "--fp16-dense")) fp16_dense = std::strcmp(argv[i + 1], "off") != 0;
    if (!std::strcmp(argv[i], "--fp16-lm-head")) fp16_lm_head = std::strcmp(argv[i + 1], "off") != 0;
    if (!std::strcmp(argv[i], "--fp8-qkv-rows-min")) fp8_qkv_rows_min = std::stoll(argv[i + 1]);
    if (!std::strcmp(argv[i], "--batches")) batches = int_list(argv[i + 1]);
    if (!std::strcmp(argv[i], "--warm-steps")) warm_steps = std::stoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--prompts")) prompts = int_list(argv[i + 1]);
    if (!std::strcmp(argv[i], "--sampling"))
      choice = !std::strcmp(argv[i + 1], "device") ? Choice::device
               : !std::strcmp(argv[i + 1], "host") ? Choice::host
                                                    : Choice::greedy;
    if (!std::strcmp(argv[i], "--tpot")) tpot = std::strcmp(argv[i + 1], "off") != 0;
    if (!std::strcmp(argv[i], "--profile-last-step")) profile_last_step = std::strcmp(argv[i + 1], "off") != 0;
  }
  if (warm_steps < 0 || warm_steps > 64) {
    std::fprintf(stderr, "bench_cuda: --warm-steps must be 0 to 64, got %d\n", warm_steps);
    return 2;
  }
  try {
    const double bw = copy_bandwidth();
    FalconConfig cfg = FalconConfig::from_file(config_path);
    const int max_batch = batches.empty() ? 1 : *std::max_element(batches.begin(), batches.end());
    const CudaEngineOptions opt{.block_size = 16, .kv_tokens = int64_t{max_batch} * 656 + 4096, .max_step_tokens = 8192};
    std::vector<std::shared_ptr<Engine>> shards;
    std::vector<std::shared_ptr<Communicator>> comms;
    std::shared_ptr<cuda::PeerExchange> peers;
    double wbytes = 0;  // the largest shard's: each GPU reads its own shard every step
    if (tp > 1) {
      std::vector<int> devices;
      for (int d = 0; d < tp; ++d) devices.push_back(d);
      comms = make_nccl_group(devices);
      if (peer_exchange) peers = make_peer_exchange(devices);
    } else {
      comms.push_back(nullptr);
    }
    for (int r = 0; r < tp; ++r) {
      CudaEngineOptions o = opt;
      o.device = r;
      o.split_rows_max = split_rows_max;
      o.cuda_graphs = graphs;
      o.concurrent_mlp_rows_max = concurrent_mlp_rows_max;
      o.concurrent_mlp_up_rows_min = concurrent_mlp_up_rows_min;
      o.gemv_rows_max = gemv_rows_max;
      o.fp32_gemv_rows_max = fp32_gemv_rows_max;
      o.gemv_mma_rows_max = gemv_mma_rows_max;
      o.gemv_early_start_rows_min = gemv_early_start_rows_min;
      o.key_split_blocks_per_sm = key_split_blocks_per_sm;
      o.wgmma_attention_rows_min = wgmma_attention_rows_min;
      o.decode_head_split_rows_max = decode_head_split_rows_max;
      o.bf16_kv_cache = bf16_kv_cache;
      o.fp16_mlp = fp16_mlp;
      o.fp16_dense = fp16_dense;
      o.fp16_lm_head = fp16_lm_head;
      o.fp8_qkv_rows_min = fp8_qkv_rows_min;
      o.summed_output_products = summed_output_products;
      o.peer_exchange = peers;
      auto shard = std::make_shared<CudaEngine>(cfg, 7, o, comms[r]);
      wbytes = std::max(wbytes, static_cast<double>(shard->weight_bytes()));
      shards.push_back(shard);
    }
    ShardGroup e(shards, comms);
    std::printf("device copy bandwidth: %.2f TB/s; tensor parallel %d%s; weights per GPU %.2f GB; roofline per token "
                "%.2f ms\n",
                bw / 1e12, tp, peers ? " (residual sums in peer memory)" : "", wbytes / 1e9, wbytes / bw * 1e3);

    for (int prompt : prompts) {
      auto seqs = make_seqs(e, 1, prompt, prompt + 1);
      prefill(e, seqs, 8192);  // warm-up
      double best = 1e9;
      for (int r = 0; r < 3; ++r) {
        auto s2 = make_seqs(e, 1, prompt, prompt + 1);
        best = std::min(best, prefill(e, s2, 8192));
      }
      std::printf("ttft batch 1, %d prompt tokens: %.2f ms\n", prompt, best * 1e3);
    }
    if (tpot) {
      auto seqs = make_seqs(e, 1, 128 - warm_steps, 128 + 128);
      prefill(e, seqs, 8192);
      if (warm_steps > 0) decode(e, seqs, warm_steps);
      const double t = decode(e, seqs, 128);
      std::printf("tpot batch 1 (context 128-256): %.3f ms (%.1f tok/s), %.0f%% of the roofline\n", t / 128 * 1e3,
                  128 / t, 100.0 * (wbytes / bw) / (t / 128));
    }
    for (int b : batches) {
      auto seqs = make_seqs(e, b, 512 - warm_steps, 512 + 128);
      prefill(e, seqs, 8192);
      if (warm_steps > 0) decode(e, seqs, warm_steps, choice);
      const double t = decode(e, seqs, 128, choice);
      const char* how = choice == Choice::device ? ", sampled on the GPU"
                        : choice == Choice::host ? ", sampled on the host"
                                                 : "";
      std::printf("decode batch %d (512 prompt, 128 new%s): %.2f ms/step, %.0f tok/s\n", b, how, t / 128 * 1e3,
                  b * 128 / t);
    }
  } catch (const std::exception& ex) {
    std::fprintf(stderr, "bench_cuda: %s\n", ex.what());
    return 1;
  }
  return 0;
}
