// Falcon block on the CPU: LayerNorm(s), fused QKV, rotary or ALiBi, paged attention, dense,
// exact-GELU MLP, parallel or sequential residuals; then ln_f and lm_head on the rows asked for.
#include "model/cpu/cpu_engine.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "model/error.hpp"
#include "model/qkv_layout.hpp"

namespace eyrie {
namespace {

WeightMatrix matrix_of(const TensorView* t) {
  return WeightMatrix{t->dtype, t->data, t->shape[0], t->shape[1]};
}

std::vector<float> f32_of(const TensorView* t) {
  if (!t) return {};
  std::vector<float> v(static_cast<std::size_t>(t->numel()));
  to_f32(t->dtype, t->data, v.data(), v.size());
  return v;
}

}  // namespace

CpuEngine::CpuEngine(std::shared_ptr<const FalconModel> model, CpuEngineOptions options,
                     std::shared_ptr<Communicator> comm)
    : model_(std::move(model)),
      comm_(std::move(comm)),
      plan_(ShardPlan::make(model_->config, comm_ ? comm_->size() : 1, comm_ ? comm_->rank() : 0)),
      shard_(std::make_unique<ShardWeights>(model_->config, model_->weights, plan_)),
      pool_(options.threads) {
  const FalconConfig& c = model_->config;
  const FalconWeights& w = shard_->weights();
  if (options.block_size <= 0) throw InvalidArgument("KV block size must be positive");
  int64_t kv_tokens = options.kv_tokens > 0 ? options.kv_tokens : 4 * c.max_position_embeddings;
  spec_.block_size = options.block_size;
  spec_.num_blocks = spec_.blocks_for(kv_tokens);

  auto linear = [](const LinearWeights& l) { return Linear{matrix_of(l.weight), f32_of(l.bias)}; };
  auto norm = [](const NormWeights& n) { return Norm{f32_of(n.weight), f32_of(n.bias)}; };
  for (const auto& lw : w.layers) {
    Layer l;
    l.ln_attn = norm(lw.ln_attn);
    l.shared_norm = lw.ln_mlp.weight == lw.ln_attn.weight;
    if (!l.shared_norm) l.ln_mlp = norm(lw.ln_mlp);
    l.qkv = linear(lw.qkv);
    l.dense = linear(lw.dense);
    l.h_to_4h = linear(lw.h_to_4h);
    l.h4_to_h = linear(lw.h4_to_h);
    layers_.push_back(std::move(l));
  }
  ln_f_ = norm(w.ln_f);
  embed_ = matrix_of(w.word_embeddings);
  lm_head_ = matrix_of(w.lm_head.weight);
  if (c.alibi) alibi_.emplace(c.num_heads);
  else rotary_.emplace(c.head_dim, c.rope_theta);

  const std::size_t per_layer = static_cast<std::size_t>(spec_.num_blocks) * plan_.kv_count *
                                spec_.block_size * c.head_dim;
  k_cache_.assign(per_layer * c.num_layers, 0.f);
  v_cache_.assign(per_layer * c.num_layers, 0.f);
}

float* CpuEngine::k_at(int64_t layer, int32_t block, int64_t kv_head, int32_t slot) {
  const FalconConfig& c = model_->config;
  std::size_t idx = (((static_cast<std::size_t>(layer) * spec_.num_blocks + block) * plan_.kv_count +
                      kv_head) * spec_.block_size + slot) * c.head_dim;
  return k_cache_.data() + idx;
}

float* CpuEngine::v_at(int64_t layer, int32_t block, int64_t kv_head, int32_t slot) {
  return v_cache_.data() + (k_at(layer, block, kv_head, slot) - k_cache_.data());
}

void CpuEngine::norm_rows(const Norm& n, const float* in, float* out, int64_t rows) {
  const int64_t h = model_->config.hidden_size;
  const float eps = static_cast<float>(model_->config.layer_norm_epsilon);
  pool_.parallel_for(rows, 4, [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r)
      layer_norm_row(in + r * h, h, n.w.data(), n.b.data(), eps, out + r * h);
  });
}

void CpuEngine::step(const StepBatch& batch, StepOutput& out) {
  validate_step(batch, model_->config, spec_);
  struct Burst {
    ThreadPool& pool;
    explicit Burst(ThreadPool& p) : pool(p) { pool.set_busy(true); }
    ~Burst() { pool.set_busy(false); }
  } burst(pool_);
  const FalconConfig& c = model_->config;
  const int64_t h = c.hidden_size;
  rows_.clear();
  for (std::size_t s = 0; s < batch.seqs.size(); ++s)
    for (std::size_t i = 0; i < batch.seqs[s].tokens.size(); ++i)
      rows_.push_back({static_cast<int32_t>(s), batch.seqs[s].start_pos + static_cast<int32_t>(i)});
  const int64_t n = static_cast<int64_t>(rows_.size());

  x_.resize(n * h);
  {
    int64_t r = 0;
    const std::size_t row_bytes = static_cast<std::size_t>(h) * dtype_size(embed_.dtype);
    for (const auto& s : batch.seqs)
      for (int32_t t : s.tokens) {
        to_f32(embed_.dtype, static_cast<const uint8_t*>(embed_.data) + t * row_bytes,
               x_.data() + r * h, h);
        ++r;
      }
  }
  for (std::size_t li = 0; li < layers_.size(); ++li)
    layer_forward(layers_[li], static_cast<int64_t>(li), batch);

  // Final LayerNorm and lm_head only on the rows whose logits were asked for.
  std::vector<int64_t> picked;
  std::size_t r = 0;
  for (const auto& s : batch.seqs) {
    if (s.all_logits)
      for (std::size_t i = 0; i < s.tokens.size(); ++i) picked.push_back(static_cast<int64_t>(r + i));
    else
      picked.push_back(static_cast<int64_t>(r + s.tokens.size() - 1));
    r += s.tokens.size();
  }
  const int64_t np = static_cast<int64_t>(picked.size());
  a_.resize(np * h);
  pool_.parallel_for(np, 4, [&](int64_t lo, int64_t hi) {
    const float eps = static_cast<float>(c.layer_norm_epsilon);
    for (int64_t i = lo; i < hi; ++i)
      layer_norm_row(x_.data() + picked[i] * h, h, ln_f_.w.data(), ln_f_.b.data(), eps,
                     a_.data() + i * h);
  });
  out.reset(batch.seqs.size(), c.vocab_size);
  for (const auto& s : batch.seqs) out.add_rows(s.all_logits ? s.tokens.size() : 1);
  lm_head(np, out);
  const float* logits = out.all_logits();
  float* lse = out.all_logsumexp();
  int32_t* arg = out.all_argmax();
  float* mx = out.all_max();
  pool_.parallel_for(np, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t row = lo; row < hi; ++row) {
      const RowStats st = row_stats(logits + row * c.vocab_size, c.vocab_size);
      lse[row] = st.logsumexp;
      arg[row] = st.argmax;
      mx[row] = st.max;
    }
  });
}

void CpuEngine::reduce(std::vector<float>& partial, int64_t count) {
  if (plan_.degree > 1) comm_->all_reduce_sum(partial.data(), static_cast<std::size_t>(count), nullptr);
}

// Each shard computes its slice of the vocabulary; the slices are gathered so every shard holds
// whole rows, padding of the last slices dropped.
void CpuEngine::lm_head(int64_t np, StepOutput& out) {
  const int64_t vocab = model_->config.vocab_size;
  if (plan_.degree == 1) {
    matmul(pool_, a_.data(), np, lm_head_, nullptr, out.all_logits());
    return;
  }
  const int64_t vs = plan_.vocab_shard;
  vocab_part_.resize(np * vs);
  vocab_all_.resize(plan_.degree * np * vs);
  matmul(pool_, a_.data(), np, lm_head_, nullptr, vocab_part_.data());
  comm_->all_gather(vocab_part_.data(), vocab_all_.data(), static_cast<std::size_t>(np * vs), nullptr);
  float* logits = out.all_logits();
  for (int r = 0; r < plan_.degree; ++r) {
    const int64_t begin = r * vs, count = std::max<int64_t>(0, std::min(vs, vocab - begin));
    for (int64_t row = 0; row < np; ++row)
      std::copy_n(vocab_all_.data() + (r * np + row) * vs, count, logits + row * vocab + begin);
  }
}

void CpuEngine::layer_forward(const Layer& L, int64_t li, const StepBatch& batch) {
  const FalconConfig& c = model_->config;
  const int64_t n = static_cast<int64_t>(rows_.size());
  const int64_t h = c.hidden_size, f = plan_.ffn_count;
  a_.resize(n * h);
  norm_rows(L.ln_attn, x_.data(), a_.data(), n);
  if (c.two_layernorms()) {
    m_.resize(n * h);
    norm_rows(L.ln_mlp, x_.data(), m_.data(), n);
  }
  qkv_.resize(n * plan_.qkv_dim(c.head_dim));
  matmul(pool_, a_.data(), n, L.qkv.w, L.qkv.b(), qkv_.data());
  write_qkv(li, batch);
  attention(li, batch);
  o_.resize(n * h);
  matmul(pool_, attn_.data(), n, L.dense.w, L.dense.b(), o_.data());

  const float* mlp_in = nullptr;
  if (c.parallel_attn) {
    mlp_in = c.two_layernorms() ? m_.data() : a_.data();
  } else {
    reduce(o_, n * h);
    for (int64_t i = 0; i < n * h; ++i) x_[i] += o_[i];
    m_.resize(n * h);
    norm_rows(L.ln_mlp, x_.data(), m_.data(), n);
    mlp_in = m_.data();
  }
  f_.resize(n * f);
  matmul(pool_, mlp_in, n, L.h_to_4h.w, L.h_to_4h.b(), f_.data());
  pool_.parallel_for(n * f, 4096, [&](int64_t lo, int64_t hi) { gelu_inplace(f_.data() + lo, hi - lo); });
  y_.resize(n * h);
  matmul(pool_, f_.data(), n, L.h4_to_h.w, L.h4_to_h.b(), y_.data());
  // Parallel attention and MLP: one all-reduce of their summed partials per layer.
  if (c.parallel_attn)
    for (int64_t i = 0; i < n * h; ++i) y_[i] += o_[i];
  reduce(y_, n * h);
  for (int64_t i = 0; i < n * h; ++i) x_[i] += y_[i];
}

void CpuEngine::write_qkv(int64_t li, const StepBatch& batch) {
  const FalconConfig& c = model_->config;
  const int64_t n = static_cast<int64_t>(rows_.size());
  const int64_t hd = c.head_dim, nh = plan_.q_count, nkv = plan_.kv_count, qd = plan_.qkv_dim(hd);
  const QkvOffsets off{plan_.qkv_layout(c), c.group_size(), hd, nh};
  q_.resize(n * nh * hd);
  pool_.parallel_for(n, 1, [&](int64_t lo, int64_t hi) {
    thread_local std::vector<float> cs, sn;
    for (int64_t r = lo; r < hi; ++r) {
      const float* row = qkv_.data() + r * qd;
      const Row& rr = rows_[r];
      const SequenceStep& s = batch.seqs[rr.seq];
      const int32_t block = s.block_table[rr.pos / spec_.block_size];
      const int32_t slot = rr.pos % spec_.block_size;
      if (rotary_) {
        cs.resize(rotary_->half());
        sn.resize(rotary_->half());
        rotary_->angles(rr.pos, cs.data(), sn.data());
      }
      for (int64_t hh = 0; hh < nh; ++hh) {
        float* q = q_.data() + (r * nh + hh) * hd;
        std::copy_n(row + off.q(hh), hd, q);
        if (rotary_) rotary_->apply(q, cs.data(), sn.data());
      }
      for (int64_t j = 0; j < nkv; ++j) {
        float* k = k_at(li, block, j, slot);
        std::copy_n(row + off.k(j), hd, k);
        if (rotary_) rotary_->apply(k, cs.data(), sn.data());
        std::copy_n(row + off.v(j), hd, v_at(li, block, j, slot));
      }
    }
  });
}

void CpuEngine::attention(int64_t li, const StepBatch& batch) {
  const FalconConfig& c = model_->config;
  const int64_t n = static_cast<int64_t>(rows_.size());
  const int64_t hd = c.head_dim, nh = plan_.q_count;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int32_t bs = spec_.block_size;
  attn_.resize(n * nh * hd);
  pool_.parallel_for(n * nh, 1, [&](int64_t lo, int64_t hi) {
    thread_local std::vector<float> scores;
    for (int64_t item = lo; item < hi; ++item) {
      const int64_t r = item / nh, head = item % nh, j = plan_.kv_of(head);
      const Row& rr = rows_[r];
      const SequenceStep& s = batch.seqs[rr.seq];
      const float* q = q_.data() + (r * nh + head) * hd;
      const int64_t len = rr.pos + 1;  // causal: keys 0..pos of this sequence
      scores.resize(len);
      float mx = -INFINITY;
      for (int64_t p = 0; p < len; ++p) {
        const float* k = k_at(li, s.block_table[p / bs], j, static_cast<int32_t>(p % bs));
        float dot = 0.f;
        for (int64_t d = 0; d < hd; ++d) dot += q[d] * k[d];
        float sc = dot * scale;
        if (alibi_) sc += alibi_->bias(plan_.q_begin + head, p) * scale;
        scores[p] = sc;
        mx = std::max(mx, sc);
      }
      float sum = 0.f;
      for (int64_t p = 0; p < len; ++p) {
        scores[p] = std::exp(scores[p] - mx);
        sum += scores[p];
      }
      float* o = attn_.data() + (r * nh + head) * hd;
      std::fill_n(o, hd, 0.f);
      const float inv = 1.0f / sum;
      for (int64_t p = 0; p < len; ++p) {
        const float* v = v_at(li, s.block_table[p / bs], j, static_cast<int32_t>(p % bs));
        const float w = scores[p] * inv;
        for (int64_t d = 0; d < hd; ++d) o[d] += w * v[d];
      }
    }
  });
}

}  // namespace eyrie
