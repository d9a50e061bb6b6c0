// CudaEngine's state and the members its source files share: cuda/cuda_engine.cpp (construction
// and the public calls), engine_setup.cpp (memory plan, weights, scratch), engine_step.cpp (a
// step's plan and its forward pass), engine_products.cpp (which kernel or cuBLAS call takes each
// product), engine_graphs.cpp (decode steps' CUDA graphs).
#pragma once

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
#include <functional>
#include <map>
#include <optional>
#include <thread>
#include <tuple>
#include <vector>

#include "cuda/attention_mma.hpp"
#include "cuda/attention_wgmma.hpp"
#include "cuda/check.hpp"
#include "cuda/decode_buckets.hpp"
#include "cuda/device_array.hpp"
#include "cuda/fp8.hpp"
#include "cuda/host_staging.hpp"
#include "cuda/kernels.hpp"
#include "cuda/op_profiler.hpp"
#include "cuda/peer_exchange.hpp"
#include "cuda/sampling.hpp"
#include "cuda/weight_upload.hpp"
#include "model/cpu/ops.hpp"
#include "model/error.hpp"
#include "model/parallel/shard_weights.hpp"

namespace eyrie {

struct CudaEngine::Impl {
  using bf16 = cuda::bf16;
  template <typename T>
  using DeviceArray = cuda::DeviceArray<T>;

  // The uploaded weights of a layer: matrices in bf16 (or fp16, by `type`), vectors in fp32.
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
    // With qkv_f16: qkv's weights in e4m3, the scales of its fp8 product (cuda::Fp8Scale), and
    // that product's alpha.
    DeviceArray<uint8_t> qkv8;
    DeviceArray<float> qkv_scales;
    float qkv8_alpha = 1.f;
  };

  cuda::OpProfiler prof;
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
  // And query_key_value's (CudaEngineOptions::fp8_qkv_rows_min), with its e4m3 copy and the
  // product on it.
  bool qkv_f16 = false;
  std::unique_ptr<cuda::Fp8Product> fp8;
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
  // query_key_value's input's e4m3 rests, for its fp8 product (qkv_f16).
  DeviceArray<uint8_t> a8;
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

  void init_common();

  // Sizes the KV cache and checks that weights, cache and scratch fit in the device's free
  // memory before anything large is allocated; the error gives the numbers.
  void plan_memory();

  // Allocates every weight, then streams them through pinned staging buffers (see
  // cuda::StagedUpload), reporting progress against the total.
  void upload_model(const FalconModel& model);

  void random_model(uint64_t seed);

  // With qkv_f16, each layer's e4m3 copy of its query_key_value weights and the scales of its
  // fp8 product, from the fp16 weights and ln_attn.
  void prepare_fp8_qkv();

  void alloc_scratch();

  // The most heads of a group one attention tile takes in a step of `decoding` single-row
  // tiles. Few: their head groups split over more blocks so the SMs stay busy; more: whole
  // groups per block, so each key is read and converted once for all heads that share it, and
  // key splits fill the SMs.
  int32_t tile_heads(int64_t decoding) const;

  // Ranges a single-row tile's keys split into, given `base` such tiles: enough that the tiles
  // reach key_split_blocks_per_sm a multiprocessor.
  int32_t key_ranges(int32_t base) const;

  // Expands h_tiles into the launched tiles, splitting the keys of decode rows over several
  // blocks when the step has too few tiles to fill the SMs. Returns whether any row was split.
  bool plan_key_splits(const StepBatch& batch, int64_t n);

  // Whether the last layer takes the picked rows alone past attention: in a step that picks
  // fewer rows than it has (a prompt's last row), the other rows' outputs reach no logits and
  // no later layer, while their keys and values, written before, are all the cache needs. Then
  // h_kept lists the rows of the activations kept: the picks, and the same rows' low halves
  // for split rows; and `f` must hold them while they move (keep_rows: 4 bytes a value at most).
  bool plan_last_layer_rows(int64_t n);

  // Moves rows `kept` (np of them, or 2 np with a step's split halves) of an activation buffer
  // of `width` elements a row in the step's form to its front, as np rows in the same form.
  void keep_rows(void* buf, int64_t width, const int32_t* kept, int64_t np);

  // Rows kept[0 .. count) of buf, row_bytes each, moved to its front through `f`.
  void keep_row_bytes(void* buf, int64_t row_bytes, const int32_t* kept, int64_t count);

  // y = x W^T over split-bf16 rows (see cuda/kernels.hpp): both halves of the n rows when the
  // step is split, else only the high halves, and y has no low halves (its consumers are told).
  // On the main stream, or on the MLP branch's stream and cuBLAS handle; early: on the
  // weight-streaming kernel, reading its first weights while the kernel before it finishes.
  void gemm_rows(const bf16* xin, int64_t n, const bf16* w, int64_t out_dim, int64_t in_dim, float* yout,
                 bool on_mlp_stream = false, bool early = false, cuda::WeightType w_type = cuda::WeightType::bfloat16);

  // Whether the FMA weight-streaming kernel takes every product of a step of split rows
  // (cuda::gemv_fits over all weights and the activations they read).
  bool products_fit_fp32_rows() const;

  // The weight-streaming kernel that takes a product of this many rows, if one does.
  std::optional<cuda::GemvTiling> streaming_tiling(int64_t rows, int64_t in_dim, const bf16* xin, const bf16* w,
                                                   cuda::WeightType w_type = cuda::WeightType::bfloat16) const;

  // y[rows, out] = x[rows, in] W^T, fp32 accumulation and output: a few rows by a
  // weight-streaming kernel (split-bf16 pairs added before their products: cuda::gemv_pairs),
  // more by cuBLAS.
  void product(cublasHandle_t handle, cudaStream_t s, const bf16* xin, int64_t rows, const bf16* w, int64_t out_dim,
               int64_t in_dim, float* yout, bool pairs, bool early = false,
               cuda::WeightType w_type = cuda::WeightType::bfloat16);

  // Whether l's product over these rows can add itself into the residual stream x (cuBLAS's
  // beta = 1): unsplit rows of a bias-free Linear on one GPU, on cuBLAS. The LayerNorm after
  // it then reads x alone instead of x and the product's output; the product, compute-bound,
  // reads x in its epilogue at little cost.
  bool adds_into_x(const Linear& l, const bf16* xin, int64_t n) const;

  // x += xin l^T, for rows adds_into_x() allows (xin fp16 rows for fp16 weights).
  void add_product_into_x(const void* xin, int64_t n, const Linear& l, bool on_mlp_stream = false);

  // y = x W^T (+ y when beta is 1) on cuBLAS, fp32 accumulation, y written as y_type (fp32 or
  // bf16); x and W of in_type (bf16, or fp16).
  static void blas_product(cublasHandle_t handle, const void* xin, int64_t rows, const void* w, int64_t out_dim,
                           int64_t in_dim, void* y, cudaDataType y_type, float beta = 0.f,
                           cudaDataType in_type = CUDA_R_16BF);

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

  void drop_graphs();

  static void destroy(Graph& gr);

  // The pieces captured so far of the graph being captured; empty when none is.
  std::vector<cudaGraph_t> captured;
  bool capturing = false;

  // Where a step's work may be cut into graph pieces: while capturing, what the stream has
  // captured since the last cut becomes a piece of its own. Elsewhere a no-op.
  void graph_cut();

  void drop_captured();

  // Every allocation a step's kernels touch; a graph is replayed only while all are unchanged.
  StepBuffers step_buffers() const;

  // A shape seen once runs directly; seen again, it is captured, then replayed.
  void run_graph(const GraphKey& key, const std::function<void()>& forward);

  // The tiling on which a parallel block's two output products (attention's dense, the MLP's
  // dense_4h_to_h) run as one weight-streaming product of both terms (see sum_outputs), where
  // they do.
  std::optional<cuda::GemvTiling> summed_outputs(const Layer& L, int64_t n) const;

  // y = dense(attn) + dense_4h_to_h(gelu) with both biases, in one launch: one ramp and one tail
  // in place of two, and one output for the residual (or the all-reduce) to read.
  void sum_outputs(const Layer& L, int64_t n, const cuda::GemvTiling& t);

  // y = dense_4h_to_h(gelu(dense_h_to_4h(in))), on the main stream or the MLP branch; without
  // `output`, the GELU values alone, in fb; with into_x, x += that product instead of y (see
  // adds_into_x()). On fp16 rows (mlp_on_f16_rows()) the input is in16 instead, which the
  // norm that wrote `in` filled.
  void mlp(const Layer& L, const bf16* in, int64_t n, bool on_mlp_stream, bool output = true, bool beside_qkv = false,
           bool into_x = false);

  // y = dense_4h_to_h(fb), or with into_x, x += that product.
  void mlp_down(const Layer& L, int64_t n, bool on_mlp_stream, bool into_x);

  // Whether this step's MLP runs on fp16 rows (cuBLAS): with fp16 weights, every step but those
  // of fp32 rows, whose weight-streaming products read the fp16 weights as they are.
  bool mlp_on_f16_rows() const { return mlp_f16 && acts != cuda::Activations::fp32_rows; }
  // Likewise dense, on attention's output stored as fp16 rows.
  bool dense_on_f16_rows() const { return dense_f16 && acts != cuda::Activations::fp32_rows; }
  // And lm_head, on the final norm's fp16 rows.
  bool lm_head_on_f16_rows() const { return lm_head_f16 && acts != cuda::Activations::fp32_rows; }

  // x += r.a + r.a_bias (+ r.c + r.c_bias). A shard's a and c are partial sums over its heads
  // and MLP columns: added up first, so a parallel block needs one all-reduce.
  void add_to_residual(const cuda::PendingResidual& r, int64_t n);

  // Every shard's vocabulary slice of the picked rows, gathered into whole rows of `logits`;
  // the padding of the last slices is dropped.
  void gather_logits(int64_t np, bool halves);

  void step(const StepBatch& batch, StepOutput& out);

  // Launches the token choices the batch asks for on the last rows of their sequences; the ids
  // and logprobs arrive in h_choice_* once step_out's copies are made and the stream is synchronised.
  void choose_tokens(const StepBatch& batch, const StepOutput& out);
};

}  // namespace eyrie
