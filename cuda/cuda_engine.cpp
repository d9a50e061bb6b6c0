// CudaEngine: weight upload, per-step metadata, and the block sequence of kernels and GEMMs.
#include "cuda/cuda_engine.hpp"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <thread>
#include <tuple>
#include <vector>

#include "cuda/attention_mma.hpp"
#include "cuda/attention_wgmma.hpp"
#include "cuda/check.hpp"
#include "cuda/decode_buckets.hpp"
#include "cuda/host_staging.hpp"
#include "cuda/kernels.hpp"
#include "cuda/peer_exchange.hpp"
#include "cuda/sampling.hpp"
#include "cuda/weight_upload.hpp"
#include "model/cpu/ops.hpp"
#include "model/error.hpp"
#include "model/parallel/shard_weights.hpp"

namespace eyrie {

using cuda::bf16;

namespace {

// Owning device allocation.
template <typename T>
class DeviceArray {
 public:
  DeviceArray() = default;
  explicit DeviceArray(std::size_t n) { resize(n); }
  ~DeviceArray() { if (p_) cudaFree(p_); }
  DeviceArray(DeviceArray&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr; o.n_ = 0; }
  DeviceArray& operator=(DeviceArray&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(n_, o.n_);
    return *this;
  }
  void resize(std::size_t n) {
    if (n <= n_) return;
    if (p_) cudaFree(p_);
    p_ = nullptr;
    n_ = 0;
    EYRIE_CUDA_CHECK(cudaMalloc(&p_, std::max<std::size_t>(n, 1) * sizeof(T)));
    n_ = n;
  }
  T* get() const { return p_; }
  std::size_t size() const { return n_; }

 private:
  T* p_ = nullptr;
  std::size_t n_ = 0;
};

struct Linear {
  DeviceArray<bf16> w;  // [out, in], of `type` (fp16 in the same bytes)
  DeviceArray<float> b;
  int64_t in = 0, out = 0;
  bool has_bias = false;
  cuda::WeightType type = cuda::WeightType::bfloat16;
  const float* bias() const { return has_bias ? b.get() : nullptr; }
};

struct Norm {
  DeviceArray<float> w, b;
};

struct Layer {
  Norm ln_attn, ln_mlp;
  bool shared_norm = false;
  Linear qkv, dense, h_to_4h, h4_to_h;
};

}  // namespace

int cuda_device_count() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
}

bool cuda_available() { return cuda_device_count() > 0; }

bool cuda_wgmma_attention_available(int device) {
  return device >= 0 && device < cuda_device_count() && cuda::attention_wgmma_device(device);
}

// With EYRIE_CUDA_PROFILE set, times each kind of work with events and prints totals at exit,
// decode-only steps apart from steps with prompt rows.
class OpProfiler {
 public:
  OpProfiler() : on_(std::getenv("EYRIE_CUDA_PROFILE") != nullptr) {}
  ~OpProfiler() {
    if (!on_) return;
    for (const auto& [name, ms] : total_) std::fprintf(stderr, "eyrie cuda profile: %-20s %10.2f\n", name.c_str(), ms);
  }
  bool on() const { return on_; }
  void mark(const char* name, cudaStream_t s) {
    if (!on_) return;
    cudaEvent_t e;
    cudaEventCreate(&e);
    cudaEventRecord(e, s);
    marks_.push_back({name, e});
  }
  // After the step's stream has been synchronised.
  void collect(bool decode_step) {
    if (!on_) return;
    const std::string kind = decode_step ? "decode/" : "prefill/";
    ++total_[kind + "steps"];
    for (std::size_t i = 0; i + 1 < marks_.size(); ++i) {
      float ms = 0;
      cudaEventElapsedTime(&ms, marks_[i].second, marks_[i + 1].second);
      total_[kind + marks_[i].first] += ms;
    }
    for (auto& m : marks_) cudaEventDestroy(m.second);
    marks_.clear();
  }

 private:
  bool on_;
  std::vector<std::pair<std::string, cudaEvent_t>> marks_;
  std::map<std::string, double> total_;
};

struct CudaEngine::Impl {
  OpProfiler prof;
  FalconConfig cfg;
  CudaEngineOptions opt;
  // A tensor-parallel shard (comm set) computes plan's heads, MLP columns and vocabulary rows.
  std::shared_ptr<Communicator> comm;
  ShardPlan plan;
  bool split = true;  // this step's GEMMs carry split-bf16 activations
  // How this step's kernels hand activations to its products: bf16 unless split; fp32 rows in
  // steps of at most fp32_gemv_rows_max rows where the engine's products all fit the FMA
  // weight-streaming kernel (fp32_rows_fit), which then takes each of them.
  cuda::Activations acts = cuda::Activations::split_halves;
  bool fp32_rows_fit = false;
  // The MLP's weights are fp16 and its products, but for steps of fp32 rows, run on fp16
  // activations (CudaEngineOptions::fp16_mlp).
  bool mlp_f16 = false;
  // So are dense's, which then reads attention's output as fp16 rows (CudaEngineOptions::fp16_dense).
  bool dense_f16 = false;
  // And lm_head's (CudaEngineOptions::fp16_lm_head), and the embedding table's where it is lm_head.
  bool lm_head_f16 = false;
  cuda::WeightType embed_type = cuda::WeightType::bfloat16, lm_head_type = cuda::WeightType::bfloat16;
  DeviceArray<uint8_t> blas_workspace;
  int64_t nq = 0, nkv = 0, qkv_dim = 0, ffn = 0, vocab_rows = 0;
  KvCacheSpec spec;
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  // The concurrent MLP branch: its stream, cuBLAS handle and workspace, the fork and join, and
  // the end of query_key_value where that runs on the branch too.
  cudaStream_t mlp_stream = nullptr;
  cublasHandle_t mlp_blas = nullptr;
  DeviceArray<uint8_t> mlp_workspace;
  cudaEvent_t fork_event = nullptr, join_event = nullptr, qkv_event = nullptr;
  int32_t sm_count = 1;
  // Attention tiling for this head dim: the tensor-core kernel gives each warp 16 queries, so
  // its tiles take heads in multiples of 16; at most tile_queries (row, head) queries a tile.
  int32_t head_multiple = 1, tile_queries = 64;
  // Steps that qualify (opt.wgmma_attention_rows_min) run attention on the warp-group kernel,
  // whose tiles take up to cuda::kWgmmaTileQueries queries: this device and shape allow it.
  bool wgmma_attention = false;
  std::vector<Layer> layers;
  Norm ln_f;
  DeviceArray<bf16> embed, lm_head_own;
  const bf16* lm_head = nullptr;
  // [layer][block][kv_head][slot][hd], fp32; split-bf16 halves in the same bytes for an engine
  // whose every step is split; or bf16 for one whose every step runs on bf16 activations (its
  // attention rounds keys and values to bf16 anyway). One block more than
  // spec.num_blocks, pad_block, for the rows that pad a decode step up to its bucket.
  DeviceArray<uint8_t> k_cache, v_cache;
  int32_t pad_block = 0;
  // The block-table stride of a step: a power of two from that of a context of
  // max_position_embeddings up, so decode steps keep one graph as their sequences grow.
  int32_t table_stride = 8;
  // The KV cache's element: fp32, bf16 (bf16_cache) or a pair of bf16 halves (halves_cache).
  bool bf16_cache = false, halves_cache = false;
  std::size_t cache_elem_bytes() const { return bf16_cache ? 2 : 4; }
  DeviceArray<float> alibi_slopes;
  std::size_t weight_bytes = 0;

  // Step scratch sized for opt.max_step_tokens rows.
  // A step's index arrays share one allocation, so that one copy takes them all to the device
  // (each copy call costs the host microseconds between decode steps). StepIndex::Part orders
  // them: the block tables, whose length varies most between steps of one decode graph, last,
  // so the others sit where the graph's kernels read them.
  struct StepIndex {
    enum Part { tokens, pos, seq, pick, kept, row_split, tiles, last_row_split, last_tiles, tables, parts };
    std::array<int32_t*, parts> at{};
    DeviceArray<int32_t> all;
    static std::size_t padded(std::size_t n) { return (n + 3) / 4 * 4; }  // 16-byte aligned parts
    // Room for parts of these sizes; where each part starts.
    void place(const std::array<std::size_t, parts>& sizes) {
      std::size_t total = 0;
      for (std::size_t size : sizes) total += padded(size);
      all.resize(total);
      std::size_t offset = 0;
      for (int k = 0; k < parts; ++k) {
        at[k] = all.get() + offset;
        offset += padded(sizes[k]);
      }
    }
  } d_index;
  DeviceArray<float> part_o, part_ml;  // key-split partials, see cuda::KeySplits
  DeviceArray<float> x, qkv, q, o, f, y, partial, logits_split, logits_part, logits_all, logits, lse, rowmax;
  DeviceArray<int32_t> argmax;
  DeviceArray<bf16> a, m, attn, fb, lnf;
  // A norm's output as fp16 rows for the product on fp16 weights after it: the MLP's input
  // (mlp_f16), then lm_head's (lm_head_f16).
  DeviceArray<cuda::f16> in16;
  std::vector<int32_t> h_tokens, h_pos, h_seq, h_tables, h_pick, h_tiles, h_launch_tiles, h_row_split;
  // The last layer's rows past attention when a step picks some out (plan_last_layer_rows).
  std::vector<int32_t> h_kept, h_last_tiles, h_last_row_split;
  bool last_key_split = false;
  // Token choices made on the device (SequenceStep::choose).
  DeviceArray<cuda::SampleRow> d_sample;
  DeviceArray<int32_t> d_history, d_choice_id;
  DeviceArray<float> d_choice_logprob, sample_work;
  std::vector<cuda::SampleRow> h_sample;
  std::vector<int32_t> h_history, h_sample_seq;
  // Pinned staging of a step's inputs (the forward's, the token choices') and outputs.
  cuda::HostStaging step_in, choice_in, step_out;
  const int32_t* h_choice_id = nullptr;
  const float* h_choice_logprob = nullptr;

  void init_common() {
    if (cfg.hidden_size > cuda::kLayerNormHiddenMax)
      throw InvalidArgument("hidden_size " + std::to_string(cfg.hidden_size) + " is over the CUDA backend's limit of " +
                            std::to_string(cuda::kLayerNormHiddenMax));
    if (opt.peer_exchange && (!comm || opt.peer_exchange->size() != comm->size()))
      throw InvalidArgument("a peer exchange of " + std::to_string(opt.peer_exchange->size()) +
                            " ranks needs a communicator of as many" +
                            (comm ? ", got " + std::to_string(comm->size()) : std::string(", got none")));
    plan = ShardPlan::make(cfg, comm ? comm->size() : 1, comm ? comm->rank() : 0);
    nq = plan.q_count;
    nkv = plan.kv_count;
    qkv_dim = plan.qkv_dim(cfg.head_dim);
    ffn = plan.ffn_count;
    vocab_rows = comm ? plan.vocab_shard : cfg.vocab_size;
    EYRIE_CUDA_CHECK(cudaSetDevice(opt.device));
    EYRIE_CUDA_CHECK(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, opt.device));
    head_multiple = cuda::attention_mma_supports(static_cast<int32_t>(cfg.head_dim)) ? 16 : 1;
    tile_queries = cuda::attention_tile_queries(static_cast<int32_t>(cfg.head_dim));
    // The attention chain's stream outranks the MLP branch's: its short kernels, each waiting on
    // the one before, take SMs as soon as the MLP's weight-streaming blocks free them instead of
    // queueing behind all of them (which serialized attention after the MLP at batch 1).
    int least_priority = 0, greatest_priority = 0;
    EYRIE_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least_priority, &greatest_priority));
    EYRIE_CUDA_CHECK(cudaStreamCreateWithPriority(&stream, cudaStreamNonBlocking, greatest_priority));
    EYRIE_CUBLAS_CHECK(cublasCreate(&blas));
    EYRIE_CUBLAS_CHECK(cublasSetStream(blas, stream));
    // A workspace of our own, so that GEMMs captured into CUDA graphs allocate nothing.
    blas_workspace.resize(32 << 20);
    EYRIE_CUBLAS_CHECK(cublasSetWorkspace(blas, blas_workspace.get(), blas_workspace.size()));
    if ((opt.concurrent_mlp_rows_max > 0 || opt.concurrent_mlp_up_rows_min > 0) && cfg.parallel_attn) {
      EYRIE_CUDA_CHECK(cudaStreamCreateWithPriority(&mlp_stream, cudaStreamNonBlocking, least_priority));
      EYRIE_CUBLAS_CHECK(cublasCreate(&mlp_blas));
      EYRIE_CUBLAS_CHECK(cublasSetStream(mlp_blas, mlp_stream));
      mlp_workspace.resize(32 << 20);
      EYRIE_CUBLAS_CHECK(cublasSetWorkspace(mlp_blas, mlp_workspace.get(), mlp_workspace.size()));
      EYRIE_CUDA_CHECK(cudaEventCreateWithFlags(&fork_event, cudaEventDisableTiming));
      EYRIE_CUDA_CHECK(cudaEventCreateWithFlags(&join_event, cudaEventDisableTiming));
      EYRIE_CUDA_CHECK(cudaEventCreateWithFlags(&qkv_event, cudaEventDisableTiming));
    }
    if (opt.block_size <= 0 || (opt.block_size & (opt.block_size - 1)) != 0)
      throw InvalidArgument("the CUDA engine's KV block size must be a power of two (kv_block_size), not " +
                            std::to_string(opt.block_size));
    spec.block_size = opt.block_size;
    mlp_f16 = opt.fp16_mlp && opt.split_rows_max > 0;
    dense_f16 = mlp_f16 && opt.fp16_dense;
    lm_head_f16 = mlp_f16 && opt.fp16_lm_head;
    bf16_cache = opt.bf16_kv_cache && opt.split_rows_max <= 0 &&
                 cuda::bf16_cache_supports(static_cast<int32_t>(cfg.head_dim));
    // Where every step is split, keys and values are cached as the halves its attention
    // multiplies, in the bytes of fp32.
    halves_cache =
        opt.split_rows_max >= opt.max_step_tokens && cuda::bf16_cache_supports(static_cast<int32_t>(cfg.head_dim));
    // An engine with a bf16 cache runs every step on bf16 products and bf16 queries, one with a
    // halves cache every step on split products and fp32 queries: the shape its prompts give
    // the warp-group kernel, which says whether it takes it (a cache of fp32 rows it does not).
    cuda::AttentionShape prompts{};
    prompts.head_dim = static_cast<int32_t>(cfg.head_dim);
    prompts.alibi = cfg.alibi;
    prompts.bf16_products = prompts.bf16_cache = bf16_cache;
    prompts.halves_cache = halves_cache;
    prompts.q_bf16 = bf16_cache && cuda::attention_mma_supports(prompts.head_dim);
    wgmma_attention = opt.wgmma_attention_rows_min > 0 && cuda::attention_wgmma_supports(prompts) &&
                      cuda::attention_wgmma_device(opt.device);
    plan_memory();
    pad_block = spec.num_blocks;
    const std::size_t cache = static_cast<std::size_t>(cfg.num_layers) * (spec.num_blocks + 1) * nkv *
                              spec.block_size * cfg.head_dim * cache_elem_bytes();
    k_cache.resize(cache);
    v_cache.resize(cache);
    // pad_block needs no clearing: a padding row sits at position 0, so it reads slot 0 alone,
    // which it writes first (every padding row the same token, so the same key and value).
    while (table_stride * static_cast<int64_t>(spec.block_size) < cfg.max_position_embeddings) table_stride *= 2;
    if (cfg.alibi) {
      AlibiTable t(cfg.num_heads);
      std::vector<float> slopes(nq);
      for (int64_t h = 0; h < nq; ++h) slopes[h] = t.bias(plan.q_begin + h, 1);  // bf16(slope)
      alibi_slopes.resize(slopes.size());
      EYRIE_CUDA_CHECK(cudaMemcpy(alibi_slopes.get(), slopes.data(), slopes.size() * 4, cudaMemcpyHostToDevice));
    }
  }

  // Sizes the KV cache and checks that weights, cache and scratch fit in the device's free
  // memory before anything large is allocated; the error gives the numbers.
  void plan_memory() {
    std::size_t free_b = 0, total_b = 0;
    EYRIE_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    const double h = static_cast<double>(cfg.hidden_size), fd = static_cast<double>(ffn);
    const double attn_w = static_cast<double>(nq * cfg.head_dim), qd = static_cast<double>(qkv_dim);
    const double per_layer = qd * h + h * attn_w + 2.0 * fd * h;
    const bool own_head = comm || !cfg.tie_word_embeddings;
    const double weights = 2.0 * (static_cast<double>(cfg.num_layers) * per_layer +
                                  static_cast<double>(cfg.vocab_size) * h +
                                  (own_head ? static_cast<double>(vocab_rows) * h : 0.0));
    const double t = static_cast<double>(opt.max_step_tokens);
    const double vocab = static_cast<double>(cfg.vocab_size);
    const double scratch =
        4.0 * t * (h + 2 * h + 2 * qd + attn_w + 2 * h + 2 * fd + 2 * h + h) +
        2.0 * t * (2 * h + 2 * h + 2 * attn_w + 2 * fd + h) + 12.0 * t * vocab +
        (comm ? 4.0 * t * (3.0 * static_cast<double>(vocab_rows) + static_cast<double>(plan.degree * vocab_rows))
              : 0.0);
    const double per_token = 2.0 * static_cast<double>(cache_elem_bytes()) * cfg.num_layers * nkv * cfg.head_dim;
    const double reserve = 512.0 * (1 << 20);  // cuBLAS workspace, CUDA context growth
    int64_t tokens = opt.kv_tokens;
    if (tokens <= 0) {
      const double left = static_cast<double>(free_b) - weights - scratch - reserve;
      tokens = left > 0 ? static_cast<int64_t>(opt.kv_memory_fraction * left / per_token) : 0;
      // Past 16M positions more blocks only grow the allocator's tables.
      tokens = std::min<int64_t>(tokens, int64_t{1} << 24);
    }
    const double needed = weights + scratch + reserve + static_cast<double>(tokens) * per_token;
    auto gib = [](double b) { return std::to_string(b / (1 << 30)).substr(0, 6) + " GiB"; };
    if (tokens < cfg.max_position_embeddings || needed > static_cast<double>(free_b))
      throw Error("the model does not fit on GPU " + std::to_string(opt.device) + ": it needs " + gib(needed) +
                  " (weights " + gib(weights) + ", KV cache for " + std::to_string(tokens) + " tokens " +
                  gib(tokens * per_token) + ", step buffers " + gib(scratch) + ") and " + gib(free_b) +
                  " of " + gib(total_b) + " are free; a context of " +
                  std::to_string(cfg.max_position_embeddings) + " tokens must fit at least once");
    spec.num_blocks = spec.blocks_for(tokens);
  }

  // Allocates every weight, then streams them through pinned staging buffers (see
  // cuda::StagedUpload), reporting progress against the total.
  void upload_model(const FalconModel& model) {
    const ShardWeights shard(cfg, model.weights, plan);
    const FalconWeights& w = shard.weights();
    struct Job {
      const TensorView* src;
      bf16* matrix;  // else vector
      float* vector;
      cuda::WeightType type = cuda::WeightType::bfloat16;
    };
    std::vector<Job> jobs;
    auto matrix = [&](DeviceArray<bf16>& dst, const TensorView& t, cuda::WeightType type = cuda::WeightType::bfloat16) {
      dst.resize(static_cast<std::size_t>(t.numel()));
      jobs.push_back({&t, dst.get(), nullptr, type});
    };
    auto vector = [&](DeviceArray<float>& dst, const TensorView& t) {
      dst.resize(static_cast<std::size_t>(t.numel()));
      jobs.push_back({&t, nullptr, dst.get()});
    };
    auto linear = [&](Linear& l, const LinearWeights& lw, cuda::WeightType type = cuda::WeightType::bfloat16) {
      l.type = type;
      matrix(l.w, *lw.weight, type);
      l.in = lw.in;
      l.out = lw.out;
      l.has_bias = lw.bias != nullptr;
      if (l.has_bias) vector(l.b, *lw.bias);
    };
    auto norm = [&](Norm& n, const NormWeights& nw) {
      vector(n.w, *nw.weight);
      vector(n.b, *nw.bias);
    };
    for (const auto& lw : w.layers) {
      Layer l;
      norm(l.ln_attn, lw.ln_attn);
      l.shared_norm = lw.ln_mlp.weight == lw.ln_attn.weight;
      if (!l.shared_norm) norm(l.ln_mlp, lw.ln_mlp);
      linear(l.qkv, lw.qkv);
      linear(l.dense, lw.dense, dense_f16 ? cuda::WeightType::float16 : cuda::WeightType::bfloat16);
      const auto mlp_type = mlp_f16 ? cuda::WeightType::float16 : cuda::WeightType::bfloat16;
      linear(l.h_to_4h, lw.h_to_4h, mlp_type);
      linear(l.h4_to_h, lw.h4_to_h, mlp_type);
      layers.push_back(std::move(l));
    }
    norm(ln_f, w.ln_f);
    lm_head_type = lm_head_f16 ? cuda::WeightType::float16 : cuda::WeightType::bfloat16;
    const bool tied = w.lm_head.weight == w.word_embeddings;
    embed_type = tied ? lm_head_type : cuda::WeightType::bfloat16;
    matrix(embed, *w.word_embeddings, embed_type);
    if (!tied) {
      matrix(lm_head_own, *w.lm_head.weight, lm_head_type);
      lm_head = lm_head_own.get();
    } else {
      lm_head = embed.get();
    }
    std::size_t total = 0;
    for (const Job& j : jobs) total += static_cast<std::size_t>(j.src->numel()) * (j.matrix ? 2 : 4);
    cuda::StagedUpload::Progress progress;
    if (opt.upload_progress) {
      opt.upload_progress(0, total);
      progress = [&](std::size_t done) { opt.upload_progress(done, total); };
    }
    const int fill_threads = opt.upload_threads > 0
                                 ? opt.upload_threads
                                 : static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, 8u));
    cuda::StagedUpload up(stream, progress, std::size_t{16} << 20, 4, fill_threads);
    for (const Job& j : jobs) {
      if (j.matrix && j.type == cuda::WeightType::float16)
        up.to_f16(reinterpret_cast<uint16_t*>(j.matrix), *j.src);
      else if (j.matrix)
        up.to_bf16(reinterpret_cast<uint16_t*>(j.matrix), *j.src);
      else
        up.to_f32(j.vector, *j.src);
    }
    up.finish();
    weight_bytes = up.bytes_done();
    // The callback may point at the caller's stack; it has no use past the upload.
    opt.upload_progress = nullptr;
  }

  void random_model(uint64_t seed) {
    const int64_t h = cfg.hidden_size, hd = cfg.head_dim;
    auto rnd_bf16 = [&](DeviceArray<bf16>& d, int64_t n, float scale) {
      d.resize(n);
      cuda::fill_random_bf16(d.get(), n, seed++, scale, 0.f, stream);
      weight_bytes += n * 2;
    };
    auto rnd_f32 = [&](DeviceArray<float>& d, int64_t n, float scale, float offset) {
      d.resize(n);
      cuda::fill_random_f32(d.get(), n, seed++, scale, offset, stream);
      weight_bytes += n * 4;
    };
    // Scaled by the whole model's fan-in, so shards draw from the same distribution.
    auto linear = [&](Linear& l, int64_t out, int64_t in, int64_t fan_in, bool row_parallel) {
      rnd_bf16(l.w, out * in, 1.0f / std::sqrt(static_cast<float>(fan_in)));
      l.in = in;
      l.out = out;
      l.has_bias = cfg.bias && (!row_parallel || plan.rank == 0);
      if (l.has_bias) rnd_f32(l.b, out, 0.05f, 0.f);
    };
    auto norm = [&](Norm& n) {
      rnd_f32(n.w, h, 0.1f, 1.0f);
      rnd_f32(n.b, h, 0.05f, 0.f);
    };
    for (int64_t i = 0; i < cfg.num_layers; ++i) {
      Layer l;
      norm(l.ln_attn);
      l.shared_norm = !cfg.two_layernorms() && cfg.parallel_attn;
      if (!l.shared_norm) norm(l.ln_mlp);
      linear(l.qkv, qkv_dim, h, h, false);
      linear(l.dense, h, nq * hd, h, true);
      linear(l.h_to_4h, ffn, h, h, false);
      linear(l.h4_to_h, h, ffn, cfg.ffn_hidden_size, true);
      for (Linear* lin : {&l.dense, &l.h_to_4h, &l.h4_to_h}) {
        if (lin == &l.dense ? !dense_f16 : !mlp_f16) continue;
        cuda::bf16_to_f16_inplace(lin->w.get(), lin->out * lin->in, stream);
        lin->type = cuda::WeightType::float16;
      }
      layers.push_back(std::move(l));
    }
    norm(ln_f);
    rnd_bf16(embed, cfg.vocab_size * h, 1.0f);
    lm_head_type = lm_head_f16 ? cuda::WeightType::float16 : cuda::WeightType::bfloat16;
    if (cfg.tie_word_embeddings && !comm) {
      lm_head = embed.get();
      embed_type = lm_head_type;
    } else {
      rnd_bf16(lm_head_own, vocab_rows * h, 1.0f);
      lm_head = lm_head_own.get();
    }
    if (lm_head_f16) cuda::bf16_to_f16_inplace(const_cast<bf16*>(lm_head), vocab_rows * h, stream);
    EYRIE_CUDA_CHECK(cudaStreamSynchronize(stream));
  }

  void alloc_scratch() {
    const int64_t t = opt.max_step_tokens, h = cfg.hidden_size;
    // GEMM inputs and outputs hold two halves (split bf16), see cuda/kernels.hpp.
    x.resize(t * h);
    a.resize(2 * t * h);
    m.resize(2 * t * h);
    qkv.resize(2 * t * qkv_dim);
    q.resize(t * nq * cfg.head_dim);
    attn.resize(2 * t * nq * cfg.head_dim);
    o.resize(2 * t * h);
    f.resize(2 * t * ffn);
    fb.resize(2 * t * ffn);
    y.resize(2 * t * h);
    if (comm) partial.resize(t * h);
    part_o.resize(static_cast<std::size_t>(cuda::kKeySplitSlots) * nq * cfg.head_dim);
    part_ml.resize(static_cast<std::size_t>(cuda::kKeySplitSlots) * nq * 2);
    // Buffers sized by a step's picked rows, sequences and tiles, at their largest up front (the
    // memory plan counts them): a decode graph holds their addresses, and one that grew would
    // void every graph captured so far, those of the warm-up included.
    lnf.resize(2 * t * h);
    if (mlp_f16) in16.resize(t * h);
    logits_split.resize(2 * t * vocab_rows);
    logits.resize(t * cfg.vocab_size);
    lse.resize(t);
    argmax.resize(t);
    rowmax.resize(t);
    if (comm) {
      logits_part.resize(t * vocab_rows);
      logits_all.resize(plan.degree * t * vocab_rows);
    }
    // Bounds on a step's tiles (attention_tiles): a decode row takes a tile per KV group, or
    // with at most 8 decode rows its groups cut into tiles of at least 4 heads; prompt rows take
    // tiles of 16 rows by up to 8 heads of a group; split decode rows take a tile per key range.
    const int64_t tiles = t * (nkv + 1) + (t / 16 + 1) * (nq / 8 + nkv) + 8 * (nq / 4 + nkv) + cuda::kKeySplitSlots;
    const auto ut = static_cast<std::size_t>(t);
    d_index.place({ut, ut, ut, ut, 2 * ut, static_cast<std::size_t>(tiles) * cuda::kAttentionTileInts,
                   (ut + 1) * static_cast<std::size_t>(table_stride)});
    fp32_rows_fit = products_fit_fp32_rows();
  }

  // The most heads of a group one attention tile takes in a step of `decoding` single-row
  // tiles. Few: their head groups split over more blocks so the SMs stay busy; more: whole
  // groups per block, so each key is read and converted once for all heads that share it, and
  // key splits fill the SMs.
  int32_t tile_heads(int64_t decoding) const {
    const int32_t group = static_cast<int32_t>(cfg.group_size());
    const int32_t tiles_per_row = decoding <= opt.decode_head_split_rows_max
                                      ? std::max(1, 2 * sm_count / static_cast<int32_t>(std::max<int64_t>(1, decoding)))
                                      : 1;
    const int32_t max_heads = std::max(4, (group + tiles_per_row - 1) / tiles_per_row);
    return (max_heads + head_multiple - 1) / head_multiple * head_multiple;
  }

  // Ranges a single-row tile's keys split into, given `base` such tiles: enough that the tiles
  // reach key_split_blocks_per_sm a multiprocessor.
  int32_t key_ranges(int32_t base) const {
    const int64_t target = opt.key_split_blocks_per_sm * sm_count;
    return base > 0 && base < target
               ? static_cast<int32_t>(std::min<int64_t>(cuda::kMaxKeySplits, (target + base - 1) / base))
               : 1;
  }

  // Expands h_tiles into the launched tiles, splitting the keys of decode rows over several
  // blocks when the step has too few tiles to fill the SMs. Returns whether any row was split.
  bool plan_key_splits(const StepBatch& batch, int64_t n) {
    // Fewer tiles than the target (key_split_blocks_per_sm): decode rows split their keys into
    // ranges, merged by a second kernel, until the tiles reach it.
    const int32_t want = key_ranges(static_cast<int32_t>(h_tiles.size() / 4));
    h_row_split.assign(2 * n, 0);
    int32_t slots = 0;
    const auto seqs = static_cast<std::size_t>(batch.seqs.size());
    for (int64_t r = 0; r < n; ++r) {
      h_row_split[2 * r] = 1;
      // Padding rows (past the batch's sequences) decode too.
      const auto s = static_cast<std::size_t>(h_seq[r]);
      if (want < 2 || (s < seqs && batch.seqs[s].tokens.size() != 1)) continue;
      // Every decode row takes the same number of ranges, however short its context (a range
      // past its keys does nothing), so that the launch, and a decode graph, depend on the
      // step's row count alone.
      const int32_t ranges = want;
      if (slots + ranges > cuda::kKeySplitSlots) continue;
      h_row_split[2 * r] = ranges;
      h_row_split[2 * r + 1] = slots;
      slots += ranges;
    }
    cuda::launch_tiles(h_tiles, h_row_split, h_launch_tiles);
    return slots > 0;
  }

  // Whether the last layer takes the picked rows alone past attention: in a step that picks
  // fewer rows than it has (a prompt's last row), the other rows' outputs reach no logits and
  // no later layer, while their keys and values, written before, are all the cache needs. Then
  // h_kept lists the rows of the activations kept: the picks, and the same rows' low halves
  // for split rows; and `f` must hold them while they move (keep_rows: 4 bytes a value at most).
  bool plan_last_layer_rows(int64_t n) {
    h_kept.clear();
    h_last_tiles.clear();
    h_last_row_split.clear();
    const auto np = static_cast<int64_t>(h_pick.size());
    if (np == 0 || np >= n) return false;
    const int64_t widest = std::max<int64_t>(nq * cfg.head_dim, cfg.hidden_size);
    if (static_cast<std::size_t>(np * widest * 4) > f.size() * sizeof(float)) return false;
    h_kept = h_pick;
    if (split)
      for (int64_t k = 0; k < np; ++k) h_kept.push_back(static_cast<int32_t>(n + h_pick[k]));
    // Their attention as decode rows: single-row tiles of the picked rows, keys split into
    // ranges (h_last_row_split, indexed by row as h_row_split is) to fill the SMs.
    std::vector<int32_t> tiles;
    const int32_t group = static_cast<int32_t>(cfg.group_size()), heads = tile_heads(np);
    for (const int32_t r : h_pick)
      cuda::attention_tiles(r, 1, static_cast<int32_t>(nq), static_cast<int32_t>(plan.q_begin), group, heads,
                            tile_queries, tiles);
    const int32_t ranges = key_ranges(static_cast<int32_t>(tiles.size() / 4));
    h_last_row_split.assign(2 * n, 0);
    int32_t slots = 0;
    for (const int32_t r : h_pick) {
      h_last_row_split[2 * r] = 1;
      if (ranges < 2 || slots + ranges > cuda::kKeySplitSlots) continue;
      h_last_row_split[2 * r] = ranges;
      h_last_row_split[2 * r + 1] = slots;
      slots += ranges;
    }
    last_key_split = slots > 0;
    cuda::launch_tiles(tiles, h_last_row_split, h_last_tiles);
    return true;
  }

  // Moves rows `kept` (np of them, or 2 np with a step's split halves) of an activation buffer
  // of `width` elements a row in the step's form to its front, as np rows in the same form.
  void keep_rows(void* buf, int64_t width, const int32_t* kept, int64_t np) {
    const int64_t elem = acts == cuda::Activations::fp32_rows ? 4 : 2;
    keep_row_bytes(buf, width * elem, kept, acts == cuda::Activations::split_halves ? 2 * np : np);
  }

  // Rows kept[0 .. count) of buf, row_bytes each, moved to its front through `f`.
  void keep_row_bytes(void* buf, int64_t row_bytes, const int32_t* kept, int64_t count) {
    cuda::gather_rows(buf, kept, count, row_bytes, f.get(), stream);
    EYRIE_CUDA_CHECK(cudaMemcpyAsync(buf, f.get(), count * row_bytes, cudaMemcpyDeviceToDevice, stream));
  }

  // y = x W^T over split-bf16 rows (see cuda/kernels.hpp): both halves of the n rows when the
  // step is split, else only the high halves, and y has no low halves (its consumers are told).
  // On the main stream, or on the MLP branch's stream and cuBLAS handle; early: on the
  // weight-streaming kernel, reading its first weights while the kernel before it finishes.
  void gemm_rows(const bf16* xin, int64_t n, const bf16* w, int64_t out_dim, int64_t in_dim, float* yout,
                 bool on_mlp_stream = false, bool early = false, cuda::WeightType w_type = cuda::WeightType::bfloat16) {
    product(on_mlp_stream ? mlp_blas : blas, on_mlp_stream ? mlp_stream : stream, xin, split ? 2 * n : n, w, out_dim,
            in_dim, yout, split, early, w_type);
  }

  // Whether the FMA weight-streaming kernel takes every product of a step of split rows
  // (cuda::gemv_fits over all weights and the activations they read).
  bool products_fit_fp32_rows() const {
    if (opt.fp32_gemv_rows_max < 1) return false;
    const int64_t h = cfg.hidden_size;
    const bf16* mlp_in = cfg.parallel_attn && !cfg.two_layernorms() ? a.get() : m.get();
    for (const Layer& L : layers)
      if (!cuda::gemv_fits(2, h, a.get(), L.qkv.w.get()) ||
          !cuda::gemv_fits(2, L.dense.in, attn.get(), L.dense.w.get()) ||
          !cuda::gemv_fits(2, h, mlp_in, L.h_to_4h.w.get()) || !cuda::gemv_fits(2, ffn, fb.get(), L.h4_to_h.w.get()))
        return false;
    return cuda::gemv_fits(2, h, lnf.get(), lm_head);
  }

  // The weight-streaming kernel that takes a product of this many rows, if one does.
  std::optional<cuda::GemvTiling> streaming_tiling(int64_t rows, int64_t in_dim, const bf16* xin, const bf16* w,
                                                   cuda::WeightType w_type = cuda::WeightType::bfloat16) const {
    std::optional<cuda::GemvTiling> t;
    if ((rows <= opt.gemv_rows_max || acts == cuda::Activations::fp32_rows) && cuda::gemv_fits(rows, in_dim, xin, w))
      t = cuda::GemvTiling{};
    else if (rows <= opt.gemv_mma_rows_max && w_type == cuda::WeightType::bfloat16 &&
             cuda::gemv_mma_fits(rows, in_dim, xin, w))
      t = cuda::kGemvMmaTiling;
    if (t) t->early_start = rows >= opt.gemv_early_start_rows_min;
    return t;
  }

  // y[rows, out] = x[rows, in] W^T, fp32 accumulation and output: a few rows by a
  // weight-streaming kernel (split-bf16 pairs added before their products: cuda::gemv_pairs),
  // more by cuBLAS.
  void product(cublasHandle_t handle, cudaStream_t s, const bf16* xin, int64_t rows, const bf16* w, int64_t out_dim,
               int64_t in_dim, float* yout, bool pairs, bool early = false,
               cuda::WeightType w_type = cuda::WeightType::bfloat16) {
    if (auto t = streaming_tiling(rows, in_dim, xin, w, w_type)) {
      t->early_start = t->early_start || early;
      if (pairs)
        cuda::gemv_pairs(xin, rows, w, out_dim, in_dim, yout, s, *t, acts, w_type);
      else
        cuda::gemv(xin, rows, w, out_dim, in_dim, yout, s, *t, w_type);
      return;
    }
    if (acts == cuda::Activations::fp32_rows) throw Error("CUDA engine: a product of fp32 rows fell to cuBLAS");
    if (w_type != cuda::WeightType::bfloat16) throw Error("CUDA engine: a product of fp16 weights on bf16 activations");
    blas_product(handle, xin, rows, w, out_dim, in_dim, yout, CUDA_R_32F);
  }

  // Whether l's product over these rows can add itself into the residual stream x (cuBLAS's
  // beta = 1): unsplit rows of a bias-free Linear on one GPU, on cuBLAS. The LayerNorm after
  // it then reads x alone instead of x and the product's output; the product, compute-bound,
  // reads x in its epilogue at little cost.
  bool adds_into_x(const Linear& l, const bf16* xin, int64_t n) const {
    return !split && !comm && !l.has_bias && !streaming_tiling(n, l.in, xin, l.w.get());
  }

  // x += xin l^T, for rows adds_into_x() allows (xin fp16 rows for fp16 weights).
  void add_product_into_x(const void* xin, int64_t n, const Linear& l, bool on_mlp_stream = false) {
    blas_product(on_mlp_stream ? mlp_blas : blas, xin, n, l.w.get(), l.out, l.in, x.get(), CUDA_R_32F, 1.f,
                 l.type == cuda::WeightType::float16 ? CUDA_R_16F : CUDA_R_16BF);
  }

  // y = x W^T (+ y when beta is 1) on cuBLAS, fp32 accumulation, y written as y_type (fp32 or
  // bf16); x and W of in_type (bf16, or fp16).
  static void blas_product(cublasHandle_t handle, const void* xin, int64_t rows, const void* w, int64_t out_dim,
                           int64_t in_dim, void* y, cudaDataType y_type, float beta = 0.f,
                           cudaDataType in_type = CUDA_R_16BF) {
    const float alpha = 1.f;
    EYRIE_CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(out_dim), static_cast<int>(rows),
                                    static_cast<int>(in_dim), &alpha, w, in_type, static_cast<int>(in_dim), xin,
                                    in_type, static_cast<int>(in_dim), &beta, y, y_type, static_cast<int>(out_dim),
                                    CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  }

  struct GraphKey {
    int64_t rows, max_blocks, tiles;
    bool key_split;
    bool operator<(const GraphKey& o) const {
      return std::tie(rows, max_blocks, tiles, key_split) < std::tie(o.rows, o.max_blocks, o.tiles, o.key_split);
    }
  };
  using StepBuffers = std::array<const void*, 26>;
  // A decode step's graph comes in pieces launched one after the other: launching a graph
  // costs the host time in proportion to its nodes (tens of microseconds for a whole step), and
  // the GPU starts on a piece only once its launch returns. The first piece (the embedding and
  // the first layer) is small, so the GPU is busy with it while the host launches the rest.
  struct Graph {
    std::vector<cudaGraphExec_t> pieces;
    StepBuffers buffers;  // the allocations it was captured with
  };
  std::map<GraphKey, Graph> graphs;
  std::map<GraphKey, int> graph_seen;
  int64_t graph_replays = 0, graph_captures = 0;

  void drop_graphs() {
    for (auto& [k, gr] : graphs) destroy(gr);
    graphs.clear();
    graph_seen.clear();
  }

  static void destroy(Graph& gr) {
    for (cudaGraphExec_t e : gr.pieces) cudaGraphExecDestroy(e);
    gr.pieces.clear();
  }

  // The pieces captured so far of the graph being captured; empty when none is.
  std::vector<cudaGraph_t> captured;
  bool capturing = false;

  // Where a step's work may be cut into graph pieces: while capturing, what the stream has
  // captured since the last cut becomes a piece of its own. Elsewhere a no-op.
  void graph_cut() {
    if (!capturing) return;
    cudaGraph_t g = nullptr;
    EYRIE_CUDA_CHECK(cudaStreamEndCapture(stream, &g));
    captured.push_back(g);
    EYRIE_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  }

  void drop_captured() {
    for (cudaGraph_t g : captured) cudaGraphDestroy(g);
    captured.clear();
  }

  // Every allocation a step's kernels touch; a graph is replayed only while all are unchanged.
  StepBuffers step_buffers() const {
    return {x.get(), qkv.get(), q.get(), o.get(), f.get(), y.get(), logits_split.get(), logits.get(), lse.get(),
            rowmax.get(), argmax.get(), a.get(), m.get(), attn.get(), fb.get(), lnf.get(), d_index.at[0],
            d_index.at[1], d_index.at[2], d_index.at[3], d_index.at[4], d_index.at[5], d_index.at[6],
            partial.get(), logits_part.get(), logits_all.get()};
  }

  // A shape seen once runs directly; seen again, it is captured, then replayed.
  template <typename F>
  void run_graph(const GraphKey& key, F&& forward) {
    auto it = graphs.find(key);
    if (it != graphs.end() && it->second.buffers != step_buffers()) {
      destroy(it->second);
      graphs.erase(it);
      it = graphs.end();
    }
    if (it == graphs.end()) {
      if (++graph_seen[key] < 2) {
        forward();
        return;
      }
      // Shapes come and go; keep the recent ones (room for every warmed bucket and more).
      if (graphs.size() >= 160) drop_graphs();
      cudaGraph_t g = nullptr;
      EYRIE_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
      capturing = true;
      try {
        forward();
        capturing = false;
        EYRIE_CUDA_CHECK(cudaStreamEndCapture(stream, &g));
        captured.push_back(g);
      } catch (...) {
        if (capturing && cudaStreamEndCapture(stream, &g) == cudaSuccess && g) cudaGraphDestroy(g);
        capturing = false;
        drop_captured();
        throw;
      }
      Graph entry;
      for (cudaGraph_t piece : captured) {
        // Kernel nodes keep the priority of the stream they were captured on (see the streams).
        cudaGraphExec_t exec = nullptr;
        const cudaError_t err = cudaGraphInstantiate(&exec, piece, cudaGraphInstantiateFlagUseNodePriority);
        if (err != cudaSuccess) {
          destroy(entry);
          drop_captured();
          EYRIE_CUDA_CHECK(err);
        }
        entry.pieces.push_back(exec);
      }
      drop_captured();
      entry.buffers = step_buffers();
      it = graphs.emplace(key, std::move(entry)).first;
      ++graph_captures;
    }
    for (cudaGraphExec_t piece : it->second.pieces) EYRIE_CUDA_CHECK(cudaGraphLaunch(piece, stream));
    ++graph_replays;
  }

  // The tiling on which a parallel block's two output products (attention's dense, the MLP's
  // dense_4h_to_h) run as one weight-streaming product of both terms (see sum_outputs), where
  // they do.
  std::optional<cuda::GemvTiling> summed_outputs(const Layer& L, int64_t n) const {
    if (!opt.summed_output_products || !cfg.parallel_attn || comm || mlp_on_f16_rows()) return std::nullopt;
    const int64_t rows = split ? 2 * n : n;
    const auto t = streaming_tiling(rows, ffn, fb.get(), L.h4_to_h.w.get(), L.h4_to_h.type);
    const auto td = streaming_tiling(rows, L.dense.in, attn.get(), L.dense.w.get(), L.dense.type);
    if (!t || !td || t->tensor_cores || td->tensor_cores) return std::nullopt;
    return t;
  }

  // y = dense(attn) + dense_4h_to_h(gelu) with both biases, in one launch: one ramp and one tail
  // in place of two, and one output for the residual (or the all-reduce) to read.
  void sum_outputs(const Layer& L, int64_t n, const cuda::GemvTiling& t) {
    const cuda::GemvProduct p{.term = {attn.get(), L.dense.w.get(), L.dense.in, L.dense.type},
                              .term2 = {fb.get(), L.h4_to_h.w.get(), ffn, L.h4_to_h.type},
                              .out_dim = cfg.hidden_size,
                              .y = y.get(),
                              .bias = L.dense.bias(),
                              .bias2 = L.h4_to_h.bias()};
    cuda::gemv_products(split ? 2 * n : n, acts, p, nullptr, stream, t);
  }

  // y = dense_4h_to_h(gelu(dense_h_to_4h(in))), on the main stream or the MLP branch; without
  // `output`, the GELU values alone, in fb; with into_x, x += that product instead of y (see
  // adds_into_x()). On fp16 rows (mlp_on_f16_rows()) the input is in16 instead, which the
  // norm that wrote `in` filled.
  void mlp(const Layer& L, const bf16* in, int64_t n, bool on_mlp_stream, bool output = true, bool beside_qkv = false,
           bool into_x = false) {
    prof.mark("gemm_mlp", stream);
    const int64_t rows = split ? 2 * n : n;
    if (mlp_on_f16_rows()) {
      // The input's fp16 rows, the product in fp32, its GELU written in fp16.
      cudaStream_t s = on_mlp_stream ? mlp_stream : stream;
      blas_product(on_mlp_stream ? mlp_blas : blas, in16.get(), n, L.h_to_4h.w.get(), ffn, cfg.hidden_size, f.get(),
                   CUDA_R_32F, 0.f, CUDA_R_16F);
      prof.mark("gelu", stream);
      cuda::bias_gelu_f16(f.get(), L.h_to_4h.bias(), n, ffn, reinterpret_cast<cuda::f16*>(fb.get()), s);
    } else if (auto t = streaming_tiling(rows, cfg.hidden_size, in, L.h_to_4h.w.get(), L.h_to_4h.type)) {
      // A few decode rows: the GELU rides on the weight-streaming kernel's epilogue. Beside
      // query_key_value, which reads the same normed input (see GemvTiling::beside_previous).
      t->beside_previous = beside_qkv;
      cuda::gemv_bias_gelu(in, rows, L.h_to_4h.w.get(), ffn, cfg.hidden_size, L.h_to_4h.bias(), fb.get(),
                           on_mlp_stream ? mlp_stream : stream, *t, acts, L.h_to_4h.type);
    } else if (!split) {
      // bf16 activations on cuBLAS: the product is written in bf16, as transformers' bf16 Linear
      // writes it, and the GELU runs in place: half the bytes of an fp32 output and its re-read.
      blas_product(on_mlp_stream ? mlp_blas : blas, in, n, L.h_to_4h.w.get(), ffn, cfg.hidden_size, fb.get(),
                   CUDA_R_16BF);
      prof.mark("gelu", stream);
      cuda::bias_gelu_inplace(fb.get(), L.h_to_4h.bias(), n, ffn, on_mlp_stream ? mlp_stream : stream);
    } else {
      gemm_rows(in, n, L.h_to_4h.w.get(), ffn, cfg.hidden_size, f.get(), on_mlp_stream);
      prof.mark("gelu", stream);
      cuda::bias_gelu(f.get(), L.h_to_4h.bias(), n, ffn, fb.get(), on_mlp_stream ? mlp_stream : stream, split);
    }
    if (output) mlp_down(L, n, on_mlp_stream, into_x);
  }

  // y = dense_4h_to_h(fb), or with into_x, x += that product.
  void mlp_down(const Layer& L, int64_t n, bool on_mlp_stream, bool into_x) {
    prof.mark("gemm_mlp", stream);
    if (into_x) {
      add_product_into_x(fb.get(), n, L.h4_to_h, on_mlp_stream);
    } else if (mlp_on_f16_rows()) {
      // y without low halves: the residual that adds it is told so.
      blas_product(on_mlp_stream ? mlp_blas : blas, fb.get(), n, L.h4_to_h.w.get(), cfg.hidden_size, ffn, y.get(),
                   CUDA_R_32F, 0.f, CUDA_R_16F);
    } else {
      gemm_rows(fb.get(), n, L.h4_to_h.w.get(), cfg.hidden_size, ffn, y.get(), on_mlp_stream, false, L.h4_to_h.type);
    }
  }

  // Whether this step's MLP runs on fp16 rows (cuBLAS): with fp16 weights, every step but those
  // of fp32 rows, whose weight-streaming products read the fp16 weights as they are.
  bool mlp_on_f16_rows() const { return mlp_f16 && acts != cuda::Activations::fp32_rows; }
  // Likewise dense, on attention's output stored as fp16 rows.
  bool dense_on_f16_rows() const { return dense_f16 && acts != cuda::Activations::fp32_rows; }
  // And lm_head, on the final norm's fp16 rows.
  bool lm_head_on_f16_rows() const { return lm_head_f16 && acts != cuda::Activations::fp32_rows; }

  // x += r.a + r.a_bias (+ r.c + r.c_bias). A shard's a and c are partial sums over its heads
  // and MLP columns: added up first, so a parallel block needs one all-reduce.
  void add_to_residual(const cuda::PendingResidual& r, int64_t n) {
    const int64_t h = cfg.hidden_size;
    if (!comm) {
      cuda::residual_add(x.get(), r.a, r.a_bias, r.c, r.c_bias, n, h, stream, r.halves, r.c_halves);
      return;
    }
    if (opt.peer_exchange && opt.peer_exchange->fits(n * h)) {
      prof.mark("all_reduce", stream);
      opt.peer_exchange->residual_all_reduce(comm->rank(), x.get(), r.a, r.a_bias, r.c, r.c_bias, n, h, r.halves,
                                             stream, r.c_halves);
      prof.mark("residual", stream);
      return;
    }
    EYRIE_CUDA_CHECK(cudaMemsetAsync(partial.get(), 0, n * h * sizeof(float), stream));
    cuda::residual_add(partial.get(), r.a, r.a_bias, r.c, r.c_bias, n, h, stream, r.halves, r.c_halves);
    prof.mark("all_reduce", stream);
    comm->all_reduce_sum(partial.get(), static_cast<std::size_t>(n * h), stream);
    prof.mark("residual", stream);
    cuda::add_inplace(x.get(), partial.get(), n * h, stream);
  }

  // Every shard's vocabulary slice of the picked rows, gathered into whole rows of `logits`;
  // the padding of the last slices is dropped.
  void gather_logits(int64_t np, bool halves) {
    const int64_t vs = vocab_rows, vocab = cfg.vocab_size;
    cuda::combine_halves(logits_split.get(), np, vs, logits_part.get(), stream, halves);
    prof.mark("all_gather", stream);
    comm->all_gather(logits_part.get(), logits_all.get(), static_cast<std::size_t>(np * vs), stream);
    prof.mark("lm_head", stream);
    for (int r = 0; r < plan.degree; ++r) {
      const int64_t begin = r * vs, count = std::max<int64_t>(0, std::min(vs, vocab - begin));
      if (count == 0) continue;
      EYRIE_CUDA_CHECK(cudaMemcpy2DAsync(logits.get() + begin, vocab * sizeof(float), logits_all.get() + r * np * vs,
                                         vs * sizeof(float), count * sizeof(float), np, cudaMemcpyDeviceToDevice,
                                         stream));
    }
  }

  void step(const StepBatch& batch, StepOutput& out) {
    validate_step(batch, cfg, spec);
    // Steps may come from a thread other than the constructor's (the replica's worker).
    EYRIE_CUDA_CHECK(cudaSetDevice(opt.device));
    const int64_t h = cfg.hidden_size;
    h_tokens.clear();
    h_pos.clear();
    h_seq.clear();
    h_pick.clear();
    h_tiles.clear();
    int32_t max_blocks = 1;
    int32_t decoding = 0;
    int64_t step_rows = 0;
    bool decode_only = !batch.seqs.empty();
    for (const auto& s : batch.seqs) {
      max_blocks = std::max<int32_t>(max_blocks, static_cast<int32_t>(s.block_table.size()));
      decoding += s.tokens.size() == 1;
      step_rows += static_cast<int64_t>(s.tokens.size());
      decode_only = decode_only && s.tokens.size() == 1 && !s.all_logits;
    }
    max_blocks = std::max(table_stride, static_cast<int32_t>(std::bit_ceil(static_cast<uint32_t>(max_blocks))));
    // Decode steps run at a bucketed row count (see cuda/decode_buckets.hpp): the rows past the
    // batch's are token 0 at position 0 of a sequence of their own, whose blocks are pad_block.
    // With graphs off too, so that a step computes the same with and without them; the padded
    // count is the step's for every threshold below (split_rows_max, head splits), as the
    // graph of a bucket serves every batch size in it.
    const auto real_seqs = static_cast<int64_t>(batch.seqs.size());
    const int64_t pad_rows =
        decode_only ? std::max(real_seqs, std::min(cuda::decode_bucket(real_seqs), opt.max_step_tokens)) - real_seqs
                    : 0;
    if (decode_only) decoding = static_cast<int32_t>(real_seqs + pad_rows);
    const int32_t group = static_cast<int32_t>(cfg.group_size());
    const int32_t max_heads = tile_heads(decoding);
    const bool wgmma_step = wgmma_attention && !decode_only && step_rows >= opt.wgmma_attention_rows_min;
    const int32_t step_tile_queries = wgmma_step ? cuda::kWgmmaTileQueries : tile_queries;
    h_tables.assign((batch.seqs.size() + (pad_rows > 0 ? 1 : 0)) * max_blocks, pad_block);
    for (std::size_t si = 0; si < batch.seqs.size(); ++si) {
      const auto& s = batch.seqs[si];
      std::copy(s.block_table.begin(), s.block_table.end(), h_tables.begin() + si * max_blocks);
      cuda::attention_tiles(static_cast<int32_t>(h_tokens.size()), static_cast<int32_t>(s.tokens.size()),
                            static_cast<int32_t>(nq), static_cast<int32_t>(plan.q_begin), group, max_heads,
                            step_tile_queries, h_tiles);
      for (std::size_t i = 0; i < s.tokens.size(); ++i) {
        h_tokens.push_back(s.tokens[i]);
        h_pos.push_back(s.start_pos + static_cast<int32_t>(i));
        h_seq.push_back(static_cast<int32_t>(si));
        if (s.all_logits || i + 1 == s.tokens.size()) h_pick.push_back(static_cast<int32_t>(h_tokens.size() - 1));
      }
    }
    for (int64_t k = 0; k < pad_rows; ++k) {
      cuda::attention_tiles(static_cast<int32_t>(h_tokens.size()), 1, static_cast<int32_t>(nq),
                            static_cast<int32_t>(plan.q_begin), group, max_heads, step_tile_queries, h_tiles);
      h_pick.push_back(static_cast<int32_t>(h_tokens.size()));
      h_tokens.push_back(0);
      h_pos.push_back(0);
      h_seq.push_back(static_cast<int32_t>(real_seqs));
    }
    const int64_t n = static_cast<int64_t>(h_tokens.size());
    split = n <= opt.split_rows_max;
    const bool fp32_rows = fp32_rows_fit && n <= std::min(opt.fp32_gemv_rows_max, cuda::kGemvRowsMax / 2);
    acts = !split      ? cuda::Activations::bf16_rows
           : fp32_rows ? cuda::Activations::fp32_rows
                       : cuda::Activations::split_halves;
    if (n > opt.max_step_tokens)
      throw InvalidArgument("step: " + std::to_string(n) + " token rows exceed this engine's limit of " +
                            std::to_string(opt.max_step_tokens));
    const bool key_split = plan_key_splits(batch, n);
    const bool last_picked = plan_last_layer_rows(n);
    using Index = StepIndex;
    const std::array<const std::vector<int32_t>*, Index::parts> index{
        &h_tokens,         &h_pos,        &h_seq,   &h_pick, &h_kept, &h_row_split, &h_launch_tiles,
        &h_last_row_split, &h_last_tiles, &h_tables};
    std::array<std::size_t, Index::parts> index_sizes{};
    for (int k = 0; k < Index::parts; ++k) index_sizes[k] = index[k]->size();
    d_index.place(index_sizes);
    const std::size_t index_bytes = (d_index.at[Index::tables] - d_index.at[0] + h_tables.size()) * 4;
    step_in.reset(index_bytes, stream);
    std::byte* staged = step_in.take_to(d_index.at[0], index_bytes);
    for (int k = 0; k < Index::parts; ++k)
      std::memcpy(staged + (d_index.at[k] - d_index.at[0]) * 4, index[k]->data(), index[k]->size() * 4);
    step_in.copy_queued(stream);
    const int32_t *d_tokens = d_index.at[Index::tokens], *d_pos = d_index.at[Index::pos],
                  *d_seq = d_index.at[Index::seq], *d_pick = d_index.at[Index::pick], *d_kept = d_index.at[Index::kept],
                  *d_tiles = d_index.at[Index::tiles];
    const cuda::KeySplits splits{key_split, d_index.at[Index::row_split], part_o.get(), part_ml.get()};
    const cuda::KeySplits last_splits{last_key_split, d_index.at[Index::last_row_split], part_o.get(), part_ml.get()};

    const FalconConfig::QkvLayout layout = plan.qkv_layout(cfg);
    cuda::AttentionShape as{static_cast<int32_t>(nq),
                            static_cast<int32_t>(nkv),
                            static_cast<int32_t>(cfg.head_dim),
                            layout == FalconConfig::QkvLayout::grouped       ? 0
                            : layout == FalconConfig::QkvLayout::multi_query ? 1
                                                                             : 2,
                            spec.block_size,
                            max_blocks,
                            static_cast<float>(cfg.rope_theta),
                            cfg.alibi,
                            group,
                            static_cast<int32_t>(plan.q_begin),
                            !split,
                            split,
                            bf16_cache,
                            halves_cache,
                            acts};
    as.q_bf16 = as.bf16_products && cuda::attention_mma_supports(as.head_dim);
    as.wgmma = wgmma_step;
    if (dense_on_f16_rows()) as.out = cuda::Activations::f16_rows;
    cuda::RowMeta meta{d_seq, d_pos, d_index.at[Index::tables]};
    const float eps = static_cast<float>(cfg.layer_norm_epsilon);
    const std::size_t layer_cache =
        static_cast<std::size_t>(spec.num_blocks + 1) * nkv * spec.block_size * cfg.head_dim;

    // At most max_step_tokens picks: the buffers they fill are allocated for that many (alloc_scratch).
    const int64_t np = static_cast<int64_t>(h_pick.size());

    // The device work of the step, from embedding to row statistics: run directly, or replayed
    // from a CUDA graph for decode steps (one launch instead of ~10 per layer).
    auto forward = [&] {
    prof.mark("embed", stream);
    cuda::embed_rows(embed.get(), d_tokens, n, h, x.get(), stream, embed_type);
    // A block's residual add waits to be done by the next LayerNorm, in the same pass over x
    // (tensor-parallel shards add an all-reduced sum instead).
    cuda::PendingResidual pending;
    for (std::size_t li = 0; li < layers.size(); ++li) {
      const Layer& L = layers[li];
      prof.mark("norm", stream);
      const bool two = cfg.two_layernorms();
      // The rows past attention: in the last layer of a step with rows picked out, those alone.
      const bool last = last_picked && li + 1 == layers.size();
      const int64_t rows = last ? np : n;
      const auto summed_tiling = summed_outputs(L, rows);
      const bool summed = summed_tiling.has_value();
      // Parallel blocks: the MLP needs only the normed input, so it can start now (but for
      // picked rows, once they are picked).
      const bool fork = mlp_stream && n <= opt.concurrent_mlp_rows_max && !prof.on() && !last;
      // Larger steps of bf16 rows: the MLP's first product and its GELU alone on the branch.
      // With split rows, forking made 2048-token prompts 1% slower on the H200.
      const bool fork_up = mlp_stream && !fork && !split && opt.concurrent_mlp_up_rows_min > 0 &&
                           n >= opt.concurrent_mlp_up_rows_min && !prof.on() && !last;
      // With the output products summed, the norm and both products of its output go on the
      // branch: query_key_value, launched to read its first weights during the norm, then
      // dense_h_to_4h, launched to run beside it, so that the product the attention chain waits
      // for has its blocks on the SMs first.
      const bool products_first = fork && summed;
      if (products_first) {
        EYRIE_CUDA_CHECK(cudaEventRecord(fork_event, stream));
        EYRIE_CUDA_CHECK(cudaStreamWaitEvent(mlp_stream, fork_event, 0));
      }
      // A parallel block's MLP on fp16 rows reads this norm's last output as those rows.
      const bool norm16 = mlp_on_f16_rows() && cfg.parallel_attn;
      cuda::residual_layer_norm(x.get(), pending, n, h, L.ln_attn.w.get(), L.ln_attn.b.get(),
                                two ? L.ln_mlp.w.get() : nullptr, two ? L.ln_mlp.b.get() : nullptr, eps, a.get(),
                                two ? m.get() : nullptr, products_first ? mlp_stream : stream, acts,
                                norm16 ? in16.get() : nullptr);
      pending = {};
      // query_key_value's output in bf16 where the activations are and cuBLAS takes the product:
      // rotary reads half the bytes, and its queries are rounded to bf16 anyway.
      as.qkv_bf16 = !split && !streaming_tiling(n, h, a.get(), L.qkv.w.get());
      auto qkv_product = [&](bool on_mlp_stream, bool early) {
        if (as.qkv_bf16)
          blas_product(on_mlp_stream ? mlp_blas : blas, a.get(), n, L.qkv.w.get(), L.qkv.out, h, qkv.get(),
                       CUDA_R_16BF);
        else
          gemm_rows(a.get(), n, L.qkv.w.get(), L.qkv.out, h, qkv.get(), on_mlp_stream, early);
      };
      if (products_first) {
        qkv_product(true, true);
        EYRIE_CUDA_CHECK(cudaEventRecord(qkv_event, mlp_stream));
        EYRIE_CUDA_CHECK(cudaStreamWaitEvent(stream, qkv_event, 0));
      } else if (fork || fork_up) {
        EYRIE_CUDA_CHECK(cudaEventRecord(fork_event, stream));
        EYRIE_CUDA_CHECK(cudaStreamWaitEvent(mlp_stream, fork_event, 0));
      }
      if (fork || fork_up) {
        mlp(L, cfg.two_layernorms() ? m.get() : a.get(), n, true, fork && !summed, products_first);
        EYRIE_CUDA_CHECK(cudaEventRecord(join_event, mlp_stream));
      }
      if (!products_first) {
        prof.mark("gemm_qkv", stream);
        qkv_product(false, false);
      }
      uint8_t* kc = k_cache.get() + li * layer_cache * cache_elem_bytes();
      uint8_t* vc = v_cache.get() + li * layer_cache * cache_elem_bytes();
      prof.mark("rotary_kv", stream);
      cuda::qkv_to_cache(qkv.get(), L.qkv.bias(), n, as, meta, q.get(), kc, vc, stream);
      prof.mark("attention", stream);
      const auto& launched = last ? h_last_tiles : h_launch_tiles;
      // The last layer's picked rows run as decode rows, on tiles of tile_queries slots.
      cuda::AttentionShape tiled = as;
      tiled.wgmma = as.wgmma && !last;
      cuda::paged_attention(q.get(), kc, vc, n, static_cast<int32_t>(launched.size() / cuda::kAttentionTileInts),
                            last ? d_index.at[Index::last_tiles] : d_tiles, tiled, meta, alibi_slopes.get(), attn.get(),
                            last ? last_splits : splits, stream);
      if (last) {
        if (dense_on_f16_rows())
          keep_row_bytes(attn.get(), nq * cfg.head_dim * static_cast<int64_t>(sizeof(cuda::f16)), d_kept, np);
        else
          keep_rows(attn.get(), nq * cfg.head_dim, d_kept, np);
        // The MLP's input: its fp16 rows where it runs on them.
        if (norm16)
          keep_row_bytes(in16.get(), h * static_cast<int64_t>(sizeof(cuda::f16)), d_kept, np);
        else if (cfg.parallel_attn)
          keep_rows(two ? m.get() : a.get(), h, d_kept, np);
        keep_row_bytes(x.get(), h * static_cast<int64_t>(sizeof(float)), d_kept, np);
      }
      // The output products that add themselves into x, with no output of their own for the
      // residual to add; the MLP's only off the branch, whose product would race the chain's.
      const bool dense_into_x = !summed && adds_into_x(L.dense, attn.get(), rows);
      const bool mlp_into_x = !summed && !fork && adds_into_x(L.h4_to_h, fb.get(), rows);
      if (!summed) {
        prof.mark("gemm_dense", stream);
        if (dense_into_x)
          add_product_into_x(attn.get(), rows, L.dense);
        else if (dense_on_f16_rows())  // o without low halves: the residual that adds it is told so
          blas_product(blas, attn.get(), rows, L.dense.w.get(), h, L.dense.in, o.get(), CUDA_R_32F, 0.f, CUDA_R_16F);
        else
          gemm_rows(attn.get(), rows, L.dense.w.get(), h, L.dense.in, o.get(), false, false, L.dense.type);
      }
      prof.mark("other", stream);
      // A product on fp16 rows writes no low halves. (dense on them implies the MLP on them, so
      // no residual has an a without halves beside a c with them.)
      const bool dense_halves = split && !dense_on_f16_rows();
      const bool mlp_halves = split && !mlp_on_f16_rows();
      const bf16* mlp_in = a.get();
      cuda::f16* const seq_norm16 = mlp_on_f16_rows() ? in16.get() : nullptr;
      if (cfg.parallel_attn) {
        if (cfg.two_layernorms()) mlp_in = m.get();
      } else if (comm) {
        add_to_residual({o.get(), L.dense.bias(), nullptr, nullptr, dense_halves}, rows);
        cuda::layer_norm(x.get(), nullptr, rows, h, L.ln_mlp.w.get(), L.ln_mlp.b.get(), eps, m.get(), stream, acts,
                         seq_norm16);
        mlp_in = m.get();
      } else {
        const cuda::PendingResidual attn_res =
            dense_into_x ? cuda::PendingResidual{}
                         : cuda::PendingResidual{o.get(), L.dense.bias(), nullptr, nullptr, dense_halves};
        cuda::residual_layer_norm(x.get(), attn_res, rows, h, L.ln_mlp.w.get(), L.ln_mlp.b.get(), nullptr, nullptr, eps,
                                  m.get(), nullptr, stream, acts, seq_norm16);
        mlp_in = m.get();
      }
      if (fork || fork_up) EYRIE_CUDA_CHECK(cudaStreamWaitEvent(stream, join_event, 0));
      if (fork_up && !summed)
        mlp_down(L, rows, false, mlp_into_x);
      else if (!fork && !fork_up)
        mlp(L, mlp_in, rows, false, !summed, false, mlp_into_x);
      if (summed) {
        prof.mark("gemm_out", stream);
        sum_outputs(L, rows, *summed_tiling);
      }
      prof.mark("residual", stream);
      // What is left to add: a product added into x has no bias (adds_into_x), so it drops out
      // with its bias.
      const float* dense_out = cfg.parallel_attn && !dense_into_x ? o.get() : nullptr;
      const float* mlp_out = mlp_into_x ? nullptr : y.get();
      const cuda::PendingResidual res =
          summed ? cuda::PendingResidual{y.get(), nullptr, nullptr, nullptr, split}
          : dense_out
              ? cuda::PendingResidual{dense_out, L.dense.bias(), mlp_out, L.h4_to_h.bias(), dense_halves, mlp_halves}
              : cuda::PendingResidual{mlp_out, L.h4_to_h.bias(), nullptr, nullptr, mlp_halves};
      if (!comm && li + 1 < layers.size())
        pending = res;
      else if (res.a)
        add_to_residual(res, rows);
      if (li == 0) graph_cut();
    }
    prof.mark("lm_head", stream);
    // After a last layer of picked rows, x holds those alone, in order.
    const bool head16 = lm_head_on_f16_rows();
    cuda::layer_norm(x.get(), last_picked ? nullptr : d_pick, np, h, ln_f.w.get(), ln_f.b.get(), eps, lnf.get(), stream,
                     acts, head16 ? in16.get() : nullptr);
    // A whole vocabulary without halves to add goes straight to the logits.
    const bool logit_halves = split && !head16;
    float* const head_out = comm || logit_halves ? logits_split.get() : logits.get();
    if (head16)
      blas_product(blas, in16.get(), np, lm_head, vocab_rows, h, head_out, CUDA_R_32F, 0.f, CUDA_R_16F);
    else
      gemm_rows(lnf.get(), np, lm_head, vocab_rows, h, head_out, false, false, lm_head_type);
    if (comm)
      gather_logits(np, logit_halves);
    else if (logit_halves)
      cuda::combine_halves(logits_split.get(), np, cfg.vocab_size, logits.get(), stream);
    cuda::row_stats(logits.get(), np, cfg.vocab_size, lse.get(), argmax.get(), rowmax.get(), stream);
    };
    // Every rank of a group sees the same step shapes, so all capture the same steps and
    // replay their collectives in the same order.
    if (decode_only && (!comm || comm->graph_capturable()) && !prof.on() && opt.cuda_graphs) {
      if (comm) comm->throw_if_aborted();
      run_graph(GraphKey{n, max_blocks, static_cast<int64_t>(h_launch_tiles.size()), key_split}, forward);
    } else {
      forward();
    }

    if (plan.rank != 0) {
      EYRIE_CUDA_CHECK(cudaStreamSynchronize(stream));
      prof.collect(decode_only);
      return;
    }
    out.reset(batch.seqs.size(), cfg.vocab_size);
    for (const auto& s : batch.seqs) out.add_rows(s.all_logits ? s.tokens.size() : 1);
    prof.mark("to_host", stream);
    // Only the rows someone reads cross to the host: greedy decoding needs the row statistics alone.
    for (std::size_t si = 0; si < batch.seqs.size(); ++si) {
      if (!batch.seqs[si].logits_to_host) continue;
      const std::size_t first = out.first_row(si), count = out.num_rows(si);
      const std::size_t bytes = count * static_cast<std::size_t>(cfg.vocab_size) * 4;
      EYRIE_CUDA_CHECK(cudaMemcpyAsync(out.all_logits() + first * cfg.vocab_size,
                                       logits.get() + first * cfg.vocab_size, bytes, cudaMemcpyDeviceToHost, stream));
    }
    // The padding rows' picks come last and stay on the device.
    const auto picked = static_cast<std::size_t>(np - pad_rows);
    step_out.reset((3 * picked + 2 * batch.seqs.size()) * 4, stream);
    choose_tokens(batch, out);
    const std::byte* h_lse = step_out.take_from(lse.get(), picked * 4);
    const std::byte* h_argmax = step_out.take_from(argmax.get(), picked * 4);
    const std::byte* h_max = step_out.take_from(rowmax.get(), picked * 4);
    step_out.copy_queued(stream);
    prof.mark("end", stream);
    EYRIE_CUDA_CHECK(cudaStreamSynchronize(stream));
    std::memcpy(out.all_logsumexp(), h_lse, picked * 4);
    std::memcpy(out.all_argmax(), h_argmax, picked * 4);
    std::memcpy(out.all_max(), h_max, picked * 4);
    for (std::size_t k = 0; k < h_sample_seq.size(); ++k)
      out.set_choice(h_sample_seq[k], h_choice_id[k], h_choice_logprob[k]);
    prof.collect(decode_only);
  }

  // Launches the token choices the batch asks for on the last rows of their sequences; the ids
  // and logprobs arrive in h_choice_* once step_out's copies are made and the stream is synchronised.
  void choose_tokens(const StepBatch& batch, const StepOutput& out) {
    h_sample.clear();
    h_history.clear();
    h_sample_seq.clear();
    for (std::size_t si = 0; si < batch.seqs.size(); ++si) {
      const DeviceSampling* c = batch.seqs[si].choose;
      if (!c) continue;
      cuda::SampleRow r{};
      r.row = static_cast<int32_t>(out.first_row(si) + out.num_rows(si) - 1);
      r.sample = c->sample;
      r.top_k = c->top_k;
      r.temperature = c->temperature;
      r.top_p = c->top_p;
      r.repetition_penalty = c->repetition_penalty;
      r.uniform = c->uniform;
      r.history_begin = static_cast<int32_t>(h_history.size());
      if (c->repetition_penalty != 1.f) h_history.insert(h_history.end(), c->history.begin(), c->history.end());
      r.history_count = static_cast<int32_t>(h_history.size()) - r.history_begin;
      h_sample.push_back(r);
      h_sample_seq.push_back(static_cast<int32_t>(si));
    }
    const auto n = static_cast<int32_t>(h_sample.size());
    if (n == 0) return;
    prof.mark("sampling", stream);
    d_sample.resize(n);
    d_history.resize(h_history.size());
    d_choice_id.resize(n);
    d_choice_logprob.resize(n);
    sample_work.resize(static_cast<std::size_t>(n) * cfg.vocab_size);
    choice_in.reset(n * sizeof(cuda::SampleRow) + h_history.size() * 4, stream);
    auto put = [&](void* d, const void* h, std::size_t bytes) { std::memcpy(choice_in.take_to(d, bytes), h, bytes); };
    put(d_sample.get(), h_sample.data(), n * sizeof(cuda::SampleRow));
    if (!h_history.empty()) put(d_history.get(), h_history.data(), h_history.size() * 4);
    choice_in.copy_queued(stream);
    cuda::sample_rows(logits.get(), lse.get(), cfg.vocab_size, d_sample.get(), n, d_history.get(), sample_work.get(),
                      d_choice_id.get(), d_choice_logprob.get(), stream);
    // Fetched with the row statistics, in the step's one batch of copies to the host.
    h_choice_id = reinterpret_cast<const int32_t*>(step_out.take_from(d_choice_id.get(), n * 4));
    h_choice_logprob = reinterpret_cast<const float*>(step_out.take_from(d_choice_logprob.get(), n * 4));
    prof.mark("to_host", stream);
  }
};

CudaEngine::CudaEngine(std::shared_ptr<const FalconModel> model, CudaEngineOptions options,
                       std::shared_ptr<Communicator> comm)
    : impl_(std::make_unique<Impl>()) {
  if (!cuda_available()) throw Error("no CUDA device is available");
  impl_->cfg = model->config;
  impl_->opt = options;
  impl_->comm = std::move(comm);
  impl_->init_common();
  impl_->upload_model(*model);
  impl_->alloc_scratch();
}

CudaEngine::CudaEngine(const FalconConfig& config, uint64_t seed, CudaEngineOptions options,
                       std::shared_ptr<Communicator> comm)
    : impl_(std::make_unique<Impl>()) {
  if (!cuda_available()) throw Error("no CUDA device is available");
  impl_->cfg = config;
  impl_->opt = options;
  impl_->comm = std::move(comm);
  impl_->init_common();
  impl_->random_model(seed);
  impl_->alloc_scratch();
}

CudaEngine::~CudaEngine() {
  impl_->drop_graphs();
  if (impl_->blas) cublasDestroy(impl_->blas);
  if (impl_->mlp_blas) cublasDestroy(impl_->mlp_blas);
  if (impl_->mlp_stream) cudaStreamDestroy(impl_->mlp_stream);
  if (impl_->fork_event) cudaEventDestroy(impl_->fork_event);
  if (impl_->join_event) cudaEventDestroy(impl_->join_event);
  if (impl_->qkv_event) cudaEventDestroy(impl_->qkv_event);
  if (impl_->stream) cudaStreamDestroy(impl_->stream);
}

const FalconConfig& CudaEngine::config() const { return impl_->cfg; }
const KvCacheSpec& CudaEngine::kv_spec() const { return impl_->spec; }
void CudaEngine::step(const StepBatch& batch, StepOutput& out) {
  try {
    impl_->step(batch, out);
  } catch (...) {
    // Peers spinning on this rank's share of a sum would wait forever.
    if (impl_->opt.peer_exchange) impl_->opt.peer_exchange->abort();
    // A stopped NCCL group is reclaimed only once no graph holds its collectives.
    if (impl_->comm) impl_->drop_graphs();
    throw;
  }
}
bool CudaEngine::chooses_tokens() const { return impl_->plan.rank == 0; }
std::vector<int32_t> CudaEngine::decode_batch_sizes() const {
  // A step is padded to its bucket or to the step limit, whichever is smaller.
  const int64_t limit = impl_->opt.max_step_tokens;
  std::vector<int32_t> sizes = cuda::decode_buckets_up_to(limit);
  if (sizes.back() > limit) sizes.back() = static_cast<int32_t>(limit);
  return sizes;
}
int64_t CudaEngine::graph_replays() const { return impl_->graph_replays; }
int64_t CudaEngine::graph_captures() const { return impl_->graph_captures; }
std::size_t CudaEngine::weight_bytes() const { return impl_->weight_bytes; }

}  // namespace eyrie
