// CudaEngine's setup: the memory plan, the weights (uploaded from a checkpoint or drawn at
// random on the GPU), and the step scratch.
#include "cuda/engine_impl.hpp"

namespace eyrie {

void CudaEngine::Impl::init_common() {
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
  int cc_major = 0, cc_minor = 0;
  EYRIE_CUDA_CHECK(cudaDeviceGetAttribute(&cc_major, cudaDevAttrComputeCapabilityMajor, opt.device));
  EYRIE_CUDA_CHECK(cudaDeviceGetAttribute(&cc_minor, cudaDevAttrComputeCapabilityMinor, opt.device));
  // e4m3 tensor cores from compute capability 8.9 on.
  const bool fp8_device = cc_major * 10 + cc_minor >= 89;
  qkv_f16 = mlp_f16 && opt.fp8_qkv_rows_min > 0 && fp8_device && cuda::Fp8Product::fits(cfg.hidden_size, qkv_dim);
  if (qkv_f16) fp8 = std::make_unique<cuda::Fp8Product>();
  bf16_cache =
      opt.bf16_kv_cache && opt.split_rows_max <= 0 && cuda::bf16_cache_supports(static_cast<int32_t>(cfg.head_dim));
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
  const std::size_t cache = static_cast<std::size_t>(cfg.num_layers) * (spec.num_blocks + 1) * nkv * spec.block_size *
                            cfg.head_dim * cache_elem_bytes();
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

void CudaEngine::Impl::plan_memory() {
  std::size_t free_b = 0, total_b = 0;
  EYRIE_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  const double h = static_cast<double>(cfg.hidden_size), fd = static_cast<double>(ffn);
  const double attn_w = static_cast<double>(nq * cfg.head_dim), qd = static_cast<double>(qkv_dim);
  const double per_layer = qd * h + h * attn_w + 2.0 * fd * h;
  const bool own_head = comm || !cfg.tie_word_embeddings;
  const double weights =
      2.0 * (static_cast<double>(cfg.num_layers) * per_layer + static_cast<double>(cfg.vocab_size) * h +
             (own_head ? static_cast<double>(vocab_rows) * h : 0.0)) +
      (qkv_f16 ? static_cast<double>(cfg.num_layers) * qd * h : 0.0);
  const double t = static_cast<double>(opt.max_step_tokens);
  const double vocab = static_cast<double>(cfg.vocab_size);
  const double scratch =
      (qkv_f16 ? t * h : 0.0) + 4.0 * t * (h + 2 * h + 2 * qd + attn_w + 2 * h + 2 * fd + 2 * h + h) +
      2.0 * t * (2 * h + 2 * h + 2 * attn_w + 2 * fd + h) + 12.0 * t * vocab +
      (comm ? 4.0 * t * (3.0 * static_cast<double>(vocab_rows) + static_cast<double>(plan.degree * vocab_rows)) : 0.0);
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
                gib(tokens * per_token) + ", step buffers " + gib(scratch) + ") and " + gib(free_b) + " of " +
                gib(total_b) + " are free; a context of " + std::to_string(cfg.max_position_embeddings) +
                " tokens must fit at least once");
  spec.num_blocks = spec.blocks_for(tokens);
}

void CudaEngine::Impl::upload_model(const FalconModel& model) {
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
    linear(l.qkv, lw.qkv, qkv_f16 ? cuda::WeightType::float16 : cuda::WeightType::bfloat16);
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
  prepare_fp8_qkv();
}

void CudaEngine::Impl::prepare_fp8_qkv() {
  if (!qkv_f16) return;
  for (Layer& L : layers) {
    L.qkv8.resize(static_cast<std::size_t>(L.qkv.out * L.qkv.in));
    L.qkv_scales.resize(cuda::kFp8Scales);
    cuda::quantize_weights_e4m3(reinterpret_cast<const cuda::f16*>(L.qkv.w.get()), L.qkv.out * L.qkv.in, L.qkv8.get(),
                                L.qkv_scales.get(), stream);
    cuda::rest_scales(L.ln_attn.w.get(), L.ln_attn.b.get(), cfg.hidden_size, L.qkv_scales.get(), stream);
  }
  for (Layer& L : layers) {
    float scales[cuda::kFp8Scales];
    EYRIE_CUDA_CHECK(cudaMemcpyAsync(scales, L.qkv_scales.get(), sizeof(scales), cudaMemcpyDeviceToHost, stream));
    EYRIE_CUDA_CHECK(cudaStreamSynchronize(stream));
    L.qkv8_alpha = scales[cuda::kWeightDequant] * scales[cuda::kRestDequant];
  }
}

void CudaEngine::Impl::random_model(uint64_t seed) {
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
    auto to_f16 = [&](Linear& lin) {
      cuda::bf16_to_f16_inplace(lin.w.get(), lin.out * lin.in, stream);
      lin.type = cuda::WeightType::float16;
    };
    if (qkv_f16) to_f16(l.qkv);
    if (dense_f16) to_f16(l.dense);
    if (mlp_f16) {
      to_f16(l.h_to_4h);
      to_f16(l.h4_to_h);
    }
    layers.push_back(std::move(l));
  }
  norm(ln_f);
  rnd_bf16(embed, cfg.vocab_size * h, 1.0f);
  const bool tied = cfg.tie_word_embeddings && !comm;
  if (!tied) rnd_bf16(lm_head_own, vocab_rows * h, 1.0f);
  DeviceArray<bf16>& head = tied ? embed : lm_head_own;
  lm_head = head.get();
  lm_head_type = lm_head_f16 ? cuda::WeightType::float16 : cuda::WeightType::bfloat16;
  if (tied) embed_type = lm_head_type;
  if (lm_head_f16) cuda::bf16_to_f16_inplace(head.get(), vocab_rows * h, stream);
  prepare_fp8_qkv();
  EYRIE_CUDA_CHECK(cudaStreamSynchronize(stream));
}

void CudaEngine::Impl::alloc_scratch() {
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
  if (qkv_f16) a8.resize(t * h);
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

bool CudaEngine::Impl::products_fit_fp32_rows() const {
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

}  // namespace eyrie
