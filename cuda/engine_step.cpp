// A CudaEngine step: its tiles, key splits and picked rows planned on the host, then the forward
// pass (run directly or replayed from a graph), the logits' statistics and the token choices.
#include "cuda/engine_impl.hpp"

namespace eyrie {

int32_t CudaEngine::Impl::tile_heads(int64_t decoding) const {
  const int32_t group = static_cast<int32_t>(cfg.group_size());
  const int32_t tiles_per_row = decoding <= opt.decode_head_split_rows_max
                                    ? std::max(1, 2 * sm_count / static_cast<int32_t>(std::max<int64_t>(1, decoding)))
                                    : 1;
  const int32_t max_heads = std::max(4, (group + tiles_per_row - 1) / tiles_per_row);
  return (max_heads + head_multiple - 1) / head_multiple * head_multiple;
}

int32_t CudaEngine::Impl::key_ranges(int32_t base) const {
  const int64_t target = opt.key_split_blocks_per_sm * sm_count;
  return base > 0 && base < target
             ? static_cast<int32_t>(std::min<int64_t>(cuda::kMaxKeySplits, (target + base - 1) / base))
             : 1;
}

bool CudaEngine::Impl::plan_key_splits(const StepBatch& batch, int64_t n) {
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

bool CudaEngine::Impl::plan_last_layer_rows(int64_t n) {
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

void CudaEngine::Impl::step(const StepBatch& batch, StepOutput& out) {
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
      decode_only ? std::max(real_seqs, std::min(cuda::decode_bucket(real_seqs), opt.max_step_tokens)) - real_seqs : 0;
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
  // query_key_value's input and product on fp16 weights (qkv_f16): fp16 rows and their e4m3
  // rests (fp8 product) in steps of enough rows, fp16 halves in other split steps, fp16 rows
  // in steps of bf16 rows; steps of fp32 rows stream the fp16 weights as the other products do.
  const bool qkv_rests = qkv_f16 && acts != cuda::Activations::fp32_rows && n >= opt.fp8_qkv_rows_min;
  std::optional<cuda::FirstNormOutput> qkv_in;
  if (qkv_f16 && acts != cuda::Activations::fp32_rows)
    qkv_in = cuda::FirstNormOutput{split && !qkv_rests ? cuda::Activations::f16_halves : cuda::Activations::f16_rows,
                                   nullptr, nullptr};
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
  const int32_t *d_tokens = d_index.at[Index::tokens], *d_pos = d_index.at[Index::pos], *d_seq = d_index.at[Index::seq],
                *d_pick = d_index.at[Index::pick], *d_kept = d_index.at[Index::kept],
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
                          split && !(qkv_in && qkv_in->form == cuda::Activations::f16_rows),
                          bf16_cache,
                          halves_cache,
                          acts};
  as.q_bf16 = as.bf16_products && cuda::attention_mma_supports(as.head_dim);
  as.wgmma = wgmma_step;
  if (dense_on_f16_rows()) as.out = cuda::Activations::f16_rows;
  cuda::RowMeta meta{d_seq, d_pos, d_index.at[Index::tables]};
  const float eps = static_cast<float>(cfg.layer_norm_epsilon);
  const std::size_t layer_cache = static_cast<std::size_t>(spec.num_blocks + 1) * nkv * spec.block_size * cfg.head_dim;

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
      if (qkv_in && qkv_rests) {
        qkv_in->rest8 = a8.get();
        qkv_in->scales = L.qkv_scales.get();
      }
      cuda::residual_layer_norm(x.get(), pending, n, h, L.ln_attn.w.get(), L.ln_attn.b.get(),
                                two ? L.ln_mlp.w.get() : nullptr, two ? L.ln_mlp.b.get() : nullptr, eps, a.get(),
                                two ? m.get() : nullptr, products_first ? mlp_stream : stream, acts,
                                norm16 ? in16.get() : nullptr, qkv_in ? &*qkv_in : nullptr);
      pending = {};
      // query_key_value's output in bf16 where the activations are and cuBLAS takes the product:
      // rotary reads half the bytes, and its queries are rounded to bf16 anyway.
      as.qkv_bf16 = !split && !qkv_in && !streaming_tiling(n, h, a.get(), L.qkv.w.get());
      auto qkv_product = [&](bool on_mlp_stream, bool early) {
        cublasHandle_t handle = on_mlp_stream ? mlp_blas : blas;
        if (qkv_in) {
          const bool halves = qkv_in->form == cuda::Activations::f16_halves;
          blas_product(handle, a.get(), halves ? 2 * n : n, L.qkv.w.get(), L.qkv.out, h, qkv.get(), CUDA_R_32F, 0.f,
                       CUDA_R_16F);
          if (qkv_rests) {
            DeviceArray<uint8_t>& ws = on_mlp_stream ? mlp_workspace : blas_workspace;
            fp8->add(a8.get(), n, L.qkv8.get(), L.qkv.out, h, L.qkv8_alpha, qkv.get(), ws.get(), ws.size(),
                     on_mlp_stream ? mlp_stream : stream);
          }
        } else if (as.qkv_bf16) {
          blas_product(handle, a.get(), n, L.qkv.w.get(), L.qkv.out, h, qkv.get(), CUDA_R_16BF);
        } else {
          gemm_rows(a.get(), n, L.qkv.w.get(), L.qkv.out, h, qkv.get(), on_mlp_stream, early, L.qkv.type);
        }
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
    EYRIE_CUDA_CHECK(cudaMemcpyAsync(out.all_logits() + first * cfg.vocab_size, logits.get() + first * cfg.vocab_size,
                                     bytes, cudaMemcpyDeviceToHost, stream));
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

void CudaEngine::Impl::choose_tokens(const StepBatch& batch, const StepOutput& out) {
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

}  // namespace eyrie
