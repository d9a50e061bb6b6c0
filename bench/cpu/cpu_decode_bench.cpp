// CPU decode throughput on a ~1 GB random-weight Falcon-shaped model, beside the machine's
// memory-read bandwidth measured in the same run. Decode streams every weight once per step,
// so the share of that bandwidth it reaches is the figure of merit.
#include <benchmark/benchmark.h>
#include <immintrin.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <numeric>

#include "bench/cpu/random_checkpoint.hpp"
#include "model/cpu/cpu_engine.hpp"

namespace eyrie::bench {
namespace {

// ~1.03 GB of bf16 weights: 9 layers of hidden 2048 with Falcon-7B's block, tied 65024 vocab.
const char* kConfig = R"({"model_type":"falcon","vocab_size":65024,"hidden_size":2048,
  "num_attention_heads":32,"num_hidden_layers":9,"multi_query":true,"parallel_attn":true,
  "bias":false,"alibi":false,"max_position_embeddings":2048})";

double g_read_bandwidth = 0;  // bytes/s, set by BM_MemoryRead

int bench_threads() {
  const char* t = std::getenv("EYRIE_THREADS");
  return t ? std::atoi(t) : 0;
}

struct Setup {
  std::string dir;
  std::shared_ptr<const FalconModel> model;
  std::unique_ptr<CpuEngine> engine;
  std::size_t matrix_bytes = 0;  // weights a decode step reads

  Setup() {
    const char* base = std::getenv("EYRIE_BENCH_DIR");
    dir = (std::filesystem::path(base ? base : std::filesystem::temp_directory_path().string()) /
           "eyrie-bench-1gb").string();
    if (!std::filesystem::exists(dir + "/model.safetensors")) write_random_checkpoint(dir, kConfig);
    model = FalconModel::load(dir);
    engine = std::make_unique<CpuEngine>(model, CpuEngineOptions{.threads = bench_threads(),
                                                                 .block_size = 16,
                                                                 .kv_tokens = 16 * 512});
    // The embedding table is read one row per token; as the tied lm_head it is read whole.
    matrix_bytes = model->weight_bytes();
  }
};

Setup& setup() {
  static Setup s;
  return s;
}

void BM_MemoryRead(benchmark::State& state) {
  ThreadPool pool(bench_threads());
  const std::size_t n = std::size_t{1} << 28;  // 1 GiB of floats
  std::vector<float> buf(n);
  std::iota(buf.begin(), buf.begin() + 1024, 1.0f);
  pool.parallel_for(static_cast<int64_t>(n), 1 << 16, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) buf[i] = static_cast<float>(i & 1023);
  });
  std::vector<float> partial(1024);
  auto t0 = std::chrono::steady_clock::now();
  int64_t iters = 0;
  for (auto _ : state) {
    pool.parallel_for(static_cast<int64_t>(n / 8), 1 << 15, [&](int64_t lo, int64_t hi) {
      __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
      int64_t i = lo;
      for (; i + 2 <= hi; i += 2) {
        acc0 = _mm256_add_ps(acc0, _mm256_loadu_ps(buf.data() + i * 8));
        acc1 = _mm256_add_ps(acc1, _mm256_loadu_ps(buf.data() + i * 8 + 8));
      }
      float out[8];
      _mm256_storeu_ps(out, _mm256_add_ps(acc0, acc1));
      partial[(lo >> 15) & 1023] = out[0];
    });
    benchmark::DoNotOptimize(partial.data());
    ++iters;
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  g_read_bandwidth = static_cast<double>(n * sizeof(float)) * iters / secs;
  state.SetBytesProcessed(static_cast<int64_t>(n * sizeof(float)) * iters);
  state.counters["threads"] = pool.size();
  state.counters["read_GBps"] = g_read_bandwidth / 1e9;
}
BENCHMARK(BM_MemoryRead)->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(2.0);

void BM_Decode(benchmark::State& state) {
  Setup& s = setup();
  const int batch = static_cast<int>(state.range(0));
  const int context = 128;
  const auto& spec = s.engine->kv_spec();
  std::vector<std::vector<int32_t>> blocks(batch), prompts(batch);
  StepBatch step;
  for (int b = 0; b < batch; ++b) {
    for (int32_t i = 0; i < spec.blocks_for(2 * context); ++i)
      blocks[b].push_back(b * spec.blocks_for(2 * context) + i);
    for (int i = 0; i < context; ++i) prompts[b].push_back((b * 7919 + i * 104729) % 65000 + 12);
    step.seqs.push_back({static_cast<uint64_t>(b), 0, prompts[b], blocks[b], false});
  }
  StepOutput out;
  s.engine->step(step, out);  // prefill the context
  std::vector<int32_t> next(batch, 42);
  int32_t pos = context;
  auto t0 = std::chrono::steady_clock::now();
  int64_t iters = 0;
  for (auto _ : state) {
    for (int b = 0; b < batch; ++b)
      step.seqs[b] = {static_cast<uint64_t>(b), pos, std::span<const int32_t>(&next[b], 1), blocks[b], false};
    s.engine->step(step, out);
    benchmark::DoNotOptimize(out.last(0).data());
    // Keep the context between 128 and 256 tokens so every iteration costs the same.
    pos = pos + 1 < 2 * context ? pos + 1 : context;
    ++iters;
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double weight_bps = static_cast<double>(s.matrix_bytes) * iters / secs;
  state.counters["tok_per_s"] = batch * iters / secs;
  state.counters["weights_GBps"] = weight_bps / 1e9;
  state.counters["weight_GB"] = static_cast<double>(s.matrix_bytes) / 1e9;
  if (g_read_bandwidth > 0) state.counters["share_of_read_bw"] = weight_bps / g_read_bandwidth;
  state.counters["threads"] = s.engine->threads();
}
BENCHMARK(BM_Decode)->Arg(1)->Arg(4)->Arg(16)->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(3.0);

}  // namespace
}  // namespace eyrie::bench

BENCHMARK_MAIN();
