// Launchers of the Falcon kernels; all take a stream and check their launch.
//
// GEMM inputs are "split bf16": an fp32 activation x is stored as two bf16 rows, hi = bf16(x)
// at row r and lo = bf16(x - hi) at row rows + r, so one GEMM over 2 x rows (the weights still
// read once) gives W.hi and W.lo, whose sum carries ~16 mantissa bits instead of bf16's 8. The
// consumers of GEMM outputs add the two halves.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

namespace eyrie::cuda {

using bf16 = __nv_bfloat16;
using f16 = __half;

// The element type of a weight matrix: bf16, or fp16 for products on fp16 activations (the
// MLP's, dense's and lm_head's with CudaEngineOptions::fp16_mlp, fp16_dense, fp16_lm_head),
// which carry 11 mantissa bits in one tensor-core product where split-bf16 halves carry 16 in
// two.
enum class WeightType : uint8_t { bfloat16, float16 };

// How kernels hand activation rows to the products that read them. fp32_rows is for steps of
// split rows whose every product runs on the FMA weight-streaming kernel (gemv_pairs), which
// multiplies each pair's sum: it reads that sum as written instead of adding the two halves
// again in every block, and the sum is at least as precise as the halves (on the H200,
// Falcon-7B's batch-1 decode 3% faster). The rows take the halves' bytes, in the same buffers.
enum class Activations : uint8_t {
  bf16_rows,     // [rows, cols] bf16: products on bf16 activations
  split_halves,  // [2 x rows, cols] split-bf16 halves (above)
  fp32_rows,     // [rows, cols] fp32: split rows stored whole
  // [rows, cols] fp16 (saturated), for a cuBLAS product on fp16 weights: the attention output
  // before dense with CudaEngineOptions::fp16_dense. The weight-streaming kernels refuse it.
  f16_rows,
  // [2 x rows, cols] fp16 halves, hi = fp16(x) at row r and lo = fp16(x - hi) at row rows + r
  // (both saturated): query_key_value's input on fp16 weights (CudaEngineOptions::
  // fp8_qkv_rows_min) in steps too small for its fp8 product, one cuBLAS product over 2 x rows
  // as for split_halves, carrying about 22 mantissa bits (lo's subnormals below |x| = 2^-3
  // hold 2^-25 absolute). The weight-streaming kernels refuse it.
  f16_halves,
};

// out[r, :] = fp32(emb[tokens[r], :]), emb of `type` (fp16 in the same bytes: a table tied to an
// lm_head on fp16 weights).
void embed_rows(const bf16* emb, const int32_t* tokens, int64_t rows, int64_t hidden, float* out, cudaStream_t s,
                WeightType type = WeightType::bfloat16);

// out = LayerNorm(x[src(r)]) as `form` stores it (split_halves: [2 x rows, hidden]);
// src(r) = rows_idx ? rows_idx[r] : r. With out16, the same values as fp16 rows [rows, hidden]
// too (past fp16's range its largest value of their sign), for a product on fp16 activations.
void layer_norm(const float* x, const int32_t* rows_idx, int64_t rows, int64_t hidden, const float* w, const float* b,
                float eps, bf16* out, cudaStream_t s, Activations form = Activations::split_halves,
                f16* out16 = nullptr);

// Widest row the LayerNorm kernels take (Falcon-180B's is 14848).
inline constexpr int64_t kLayerNormHiddenMax = 16384;

// A residual_add() folded into the LayerNorm that reads its result; a == nullptr: none.
struct PendingResidual {
  const float* a = nullptr;
  const float* a_bias = nullptr;
  const float* c = nullptr;
  const float* c_bias = nullptr;
  bool halves = true;  // false: a and c have no low halves (GEMMs on bf16 activations write none)
  // With halves, false where c alone has none: an fp16 product's output in a step of split rows.
  bool c_halves = true;
  __host__ __device__ bool c_has_halves() const { return halves && c_halves; }
};

// Where a norm's first output (query_key_value's input) is stored in a form of its own: as
// fp16 halves, or with rest8 as fp16 rows plus e4m3((x - fp16(x)) scales[kRestQuant]) rows
// [rows, hidden] for the fp8 product (cuda/fp8.hpp).
struct FirstNormOutput {
  Activations form;
  uint8_t* rest8 = nullptr;
  const float* scales = nullptr;
};

// x += the pending residual (as residual_add), then out1 = LayerNorm(x) with (w1, b1) and,
// when w2 is given, out2 with (w2, b2): one pass over each row, the two norms sharing its mean
// and variance (new-architecture blocks' ln_attn and ln_mlp); the same arithmetic as
// residual_add followed by layer_norm. form as for layer_norm; out16, as for layer_norm, takes
// the last norm's values (out2's when w2 is given, else out1's).
// With first, out1 is stored as it says instead.
void residual_layer_norm(float* x, const PendingResidual& res, int64_t rows, int64_t hidden, const float* w1,
                         const float* b1, const float* w2, const float* b2, float eps, bf16* out1, bf16* out2,
                         cudaStream_t s, Activations form = Activations::split_halves, f16* out16 = nullptr,
                         const FirstNormOutput* first = nullptr);

// Geometry of the fused query_key_value row and of the paged cache, for the kernels below.
struct AttentionShape {
  int32_t num_heads, num_kv_heads, head_dim;  // this shard's query and KV heads
  int32_t layout;  // 0 grouped (new architecture), 1 query heads then each KV head's k and v, 2 interleaved
  int32_t block_size;
  int32_t max_blocks_per_seq;  // stride of the block table
  float rope_theta;
  bool alibi;
  // The model's query heads per KV head, and the model-wide index of this shard's first query
  // head: local head h reads local KV head (offset + h) / group - offset / group.
  int32_t group;
  int32_t q_head_offset;
  // Products on bf16 queries, keys, values and probabilities, one MMA each, as other servers
  // compute attention (activation_precision bf16); else on split halves, three MMAs each.
  bool bf16_products = false;
  // The query_key_value GEMM output has low halves (split activations); else high rows only.
  bool qkv_halves = true;
  // Keys and values cached as bf16 rather than fp32: half the memory and reads, for engines
  // whose attention takes bf16 products anyway (with bf16_products; tensor-core head dims in
  // multiples of 8, see bf16_cache_supports()).
  bool bf16_cache = false;
  // Keys and values cached as split-bf16 halves, each cache row's hd high halves then its hd low
  // halves (the bytes of an fp32 row): what split products multiply, with no conversion of fp32
  // rows on every pass, and the same bits (without bf16_products; head dims as bf16_cache).
  bool halves_cache = false;
  // How the attention output is stored for the product after it.
  Activations out = Activations::split_halves;
  // The query_key_value GEMM output is bf16 (without halves), as a product on bf16 activations
  // may write it: half the bytes of fp32 to write and read again.
  bool qkv_bf16 = false;
  // Queries stored as bf16, already multiplied by 1/sqrt(head_dim): the very values the
  // tensor-core attention's bf16 products take (with bf16_products, head dims
  // attention_mma_supports() takes).
  bool q_bf16 = false;
  // Tiles of up to kWgmmaTileQueries slots for the warp-group MMA kernel (cuda/attention_wgmma.hpp),
  // on a device and a shape it takes; else tiles of up to attention_tile_queries() slots.
  bool wgmma = false;
};

// Whether a bf16 KV cache can serve this head dim.
bool bf16_cache_supports(int32_t head_dim);

// Per token row of a step: its sequence (index into the block tables) and position.
struct RowMeta {
  const int32_t* seq;
  const int32_t* pos;
  const int32_t* block_tables;  // [num_seqs, max_blocks_per_seq]
};

// Splits qkv (two halves, or bf16 when a.qkv_bf16; + bias) into queries [rows, heads, hd]
// (rotated; fp32, or scaled bf16 when a.q_bf16) and writes rotated keys and values into the
// layer's cache [block, kv_head, slot, hd]. The cache is fp32 (bf16 keys alone move the
// reference fixtures' logprobs by up to 0.37), split-bf16 halves when a.halves_cache, or bf16
// when a.bf16_cache.
void qkv_to_cache(const void* qkv, const float* bias, int64_t rows, const AttentionShape& a, const RowMeta& m, void* q,
                  void* k_cache, void* v_cache, cudaStream_t s);

// Decode rows whose keys are split over several blocks (flash-decoding): a decode row alone
// would otherwise walk its whole context in one block while most SMs idle. Each launched tile is
// seven ints: attention_tiles()'s four, then the key range index, the row's number of ranges
// and its first partial slot (0, 1, 0 when not split). Partials of slot i, head h live at
// part_o[(i * heads + h) * hd] and part_ml[(i * heads + h) * 2] (max, sum); row_split holds
// (ranges, first slot) per row.
struct KeySplits {
  bool any = false;
  const int32_t* row_split = nullptr;
  float* part_o = nullptr;
  float* part_ml = nullptr;
};
inline constexpr int32_t kAttentionTileInts = 7;
inline constexpr int32_t kMaxKeySplits = 16;
inline constexpr int32_t kKeySplitSlots = 512;  // split ranges per step, over all rows
inline constexpr int32_t kKeySplitUnit = 64;    // keys per range at least (one key tile)

// Causal attention of each row over its sequence's cached keys 0..pos (queries as
// qkv_to_cache writes them); out: split bf16 [2 x rows, heads*hd].
void paged_attention(const void* q, const void* k_cache, const void* v_cache, int64_t rows, int32_t num_tiles,
                     const int32_t* tiles, const AttentionShape& a, const RowMeta& m, const float* alibi_slopes,
                     bf16* out, const KeySplits& splits, cudaStream_t s);
// The most (row, head) queries one attention tile may hold at this head dim.
int32_t attention_tile_queries(int32_t head_dim);
// Appends the attention tiles of `rows` consecutive rows of one sequence starting at first_row:
// (first row, rows, first head, heads), at most max_heads heads and max_queries queries, all
// sharing one KV head. num_heads, q_head_offset and group as in AttentionShape.
void attention_tiles(int32_t first_row, int32_t rows, int32_t num_heads, int32_t q_head_offset, int32_t group,
                     int32_t max_heads, int32_t max_queries, std::vector<int32_t>& tiles);
// The launched tiles (kAttentionTileInts each) for attention_tiles()'s: a single-row tile once
// per key range of its row, as row_split gives them (ranges, first partial slot; 1 range: not
// split). Replaces launch.
void launch_tiles(const std::vector<int32_t>& tiles, const std::vector<int32_t>& row_split,
                  std::vector<int32_t>& launch);

// out = split bf16 of gelu(x_hi + x_lo + bias), exact erf GELU; x is a [2 x rows, cols] GEMM output.
// With halves false, x is [rows, cols] (x_lo is zero) and out gets the high halves alone,
// [rows, cols]: the next GEMM, on bf16 activations, reads no others.
void bias_gelu(const float* x, const float* bias, int64_t rows, int64_t cols, bf16* out, cudaStream_t s,
               bool halves = true);

// out = fp16(gelu(x + bias)), x a [rows, cols] fp32 GEMM output without halves: the input of an
// fp16 product. Values past fp16's range saturate to its largest. bias may be null.
void bias_gelu_f16(const float* x, const float* bias, int64_t rows, int64_t cols, f16* out, cudaStream_t s);

// x = bf16(gelu(x + bias)) in place, x [rows, cols] bf16: the MLP's activation when its
// product on bf16 activations was written in bf16. bias may be null.
void bias_gelu_inplace(bf16* x, const float* bias, int64_t rows, int64_t cols, cudaStream_t s);

// y[rows, out] = x[rows, in] W^T with W [out, in] bf16, fp32 accumulation: a weight-streaming
// kernel for steps of a few rows, which reads the weights closer to the memory bandwidth than
// cuBLAS does at one or two decode rows (bench_gemv; cuBLAS's tensor cores win from about four
// rows). gemv_fits() says whether the shapes and alignment allow it (in a multiple of 8, 16-byte
// aligned x and W).
inline constexpr int64_t kGemvRowsMax = 4;
bool gemv_fits(int64_t rows, int64_t in_dim, const bf16* x, const bf16* w);
// The tensor-core variant (GemvTiling::tensor_cores) takes up to 8 rows, the B operand of
// m16n8k16 MMAs whose A operand is the weights as loaded; reductions in multiples of 64.
inline constexpr int64_t kGemvMmaRowsMax = 8;
bool gemv_mma_fits(int64_t rows, int64_t in_dim, const bf16* x, const bf16* w);
struct GemvTiling {
  int threads = 64;           // per block: 32 to 256, whole warps (tensor cores: 128 or 256)
  int outputs_per_block = 2;  // weight rows a block reads side by side: 1, 2 or 4 (tensor cores: 16)
  int unroll = 2;             // 16-byte chunks of each weight row a thread has in flight: 2 or 4
                              // (tensor cores: 64-wide slices per warp, 1, 2 or 4)
  bool tensor_cores = false;
  // Launched to start reading weights while the kernel before it in the stream finishes (see
  // cuda/dependent_launch.cuh); else after it, as an ordinary launch.
  bool early_start = false;
  // Launched early and never waiting for the kernel ahead of it in the stream, a weight-
  // streaming product itself (which lets dependents launch only once its own inputs are
  // complete): the two run side by side throughout. Only for a product that reads nothing that
  // kernel writes and writes nothing it reads or writes, and whose inputs are that kernel's
  // inputs or older (FMA kernel only; the tensor-core one waits).
  bool beside_previous = false;
};
inline constexpr GemvTiling kGemvMmaTiling{.threads = 256, .outputs_per_block = 16, .unroll = 2, .tensor_cores = true};
// w_type: the FMA kernel reads fp16 weights too (the tensor-core one bf16 alone).
void gemv(const bf16* x, int64_t rows, const bf16* w, int64_t out_dim, int64_t in_dim, float* y, cudaStream_t s,
          const GemvTiling& tiling = {}, WeightType w_type = WeightType::bfloat16);
// gemv over split-bf16 rows (an even count: the high halves, then the low): the two halves of
// each row of y sum to W (x_hi + x_lo), y laid out as gemv's over the same rows. The FMA
// kernel adds each pair's halves before its multiply-adds (half as many) and writes the sum to
// the high half, zeros to the low; the tensor-core kernel multiplies each half. With form
// fp32_rows, x holds the rows / 2 pairs' sums (FMA kernel only): the same y, bit for bit.
void gemv_pairs(const bf16* x, int64_t rows, const bf16* w, int64_t out_dim, int64_t in_dim, float* y, cudaStream_t s,
                const GemvTiling& tiling = {}, Activations form = Activations::split_halves,
                WeightType w_type = WeightType::bfloat16);
// gemv (gemv_pairs unless form is bf16_rows) then bias_gelu in one kernel: g gets the bits
// bias_gelu would write from that product's y (with halves, as form stores them; for fp32,
// the value bias_gelu splits), without y's round trip through memory or a second launch. bias
// may be null.
void gemv_bias_gelu(const bf16* x, int64_t rows, const bf16* w, int64_t out_dim, int64_t in_dim, const float* bias,
                    bf16* g, cudaStream_t s, const GemvTiling& tiling = {},
                    Activations form = Activations::split_halves, WeightType w_type = WeightType::bfloat16);
// One term of a gemv_products product: x [rows, in_dim] times W [out_dim, in_dim]^T.
struct GemvTerm {
  const bf16* x = nullptr;
  const bf16* w = nullptr;  // of w_type, fp16 in the same bytes
  int64_t in_dim = 0;
  WeightType w_type = WeightType::bfloat16;
};
// A product of gemv_products: term, plus term2 where its w is set, summed in fp32 (each row of
// both terms' x is the same row of the step), then written to y (+ bias + bias2, either may be
// null) as gemv / gemv_pairs lay it out, or to g as gemv_bias_gelu writes it (one term, bias).
struct GemvProduct {
  GemvTerm term, term2;
  int64_t out_dim = 0;
  float* y = nullptr;
  bf16* g = nullptr;
  const float* bias = nullptr;
  const float* bias2 = nullptr;
};
// One or two products (second may be null) over the same rows, in one launch of the FMA
// kernel, each on blocks of its own: one ramp and one tail where separate launches have two.
// form: how x and g store the rows, counted as for gemv_pairs unless bf16. The tiling must not
// ask for tensor cores.
void gemv_products(int64_t rows, Activations form, const GemvProduct& first, const GemvProduct* second, cudaStream_t s,
                   const GemvTiling& tiling = {});

// x += a + a_bias (+ c + c_bias when c is given): the block's residual adds; a and c are
// [2 x rows, cols] GEMM outputs whose halves are summed (with halves false, [rows, cols]; with
// c_halves false, c alone is [rows, cols], as PendingResidual says).
void residual_add(float* x, const float* a, const float* a_bias, const float* c, const float* c_bias, int64_t rows,
                  int64_t cols, cudaStream_t s, bool halves = true, bool c_halves = true);

// dst row k = src row rows[k], for k < count; rows of row_bytes bytes, a multiple of 4.
void gather_rows(const void* src, const int32_t* rows, int64_t count, int64_t row_bytes, void* dst, cudaStream_t s);

// x[i] += p[i]: a tensor-parallel layer's all-reduced output into the residual stream.
void add_inplace(float* x, const float* p, int64_t n, cudaStream_t s);

// out[r] = y[r] + y[rows + r]: the two halves of a GEMM over split rows (halves false: y[r]).
void combine_halves(const float* y, int64_t rows, int64_t cols, float* out, cudaStream_t s, bool halves = true);

// Per row of logits: logsumexp, the first argmax and the max.
void row_stats(const float* logits, int64_t rows, int64_t vocab, float* lse, int32_t* argmax, float* max,
               cudaStream_t s);

// Fills n bf16 values with a deterministic hash-based uniform(-scale, scale) + offset.
void fill_random_bf16(bf16* dst, int64_t n, uint64_t seed, float scale, float offset, cudaStream_t s);
// bf16 values converted to fp16 in place (the same bytes), saturating as bias_gelu_f16 does.
void bf16_to_f16_inplace(void* p, int64_t n, cudaStream_t s);
void fill_random_f32(float* dst, int64_t n, uint64_t seed, float scale, float offset, cudaStream_t s);

}  // namespace eyrie::cuda
