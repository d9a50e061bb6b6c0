// The Falcon forward pass on one GPU: bf16 weights (the MLP's, dense's, lm_head's and
// query_key_value's fp16 with fp16_mlp, fp16_dense, fp16_lm_head and fp8_qkv_rows_min) and
// paged KV cache, cuBLAS GEMMs with fp32 accumulation, fp32 residual stream; the same batched
// step interface as the CPU engine.
// As a tensor-parallel shard, rank 0's output is the step's; the other ranks leave theirs empty.
#pragma once

#include <cstddef>
#include <functional>
#include <limits>
#include <memory>
#include <string>

#include "model/error.hpp"
#include "model/falcon_model.hpp"
#include "model/parallel/communicator.hpp"
#include "model/step.hpp"

namespace eyrie {

namespace cuda {
class PeerExchange;
}

struct CudaEngineOptions {
  int device = 0;
  int32_t block_size = 16;
  int64_t kv_tokens = 0;        // 0: kv_memory_fraction of the memory left after weights and scratch
  double kv_memory_fraction = 0.9;
  int64_t max_step_tokens = 4096;  // token rows one step may carry
  // Steps of at most this many token rows run their GEMMs on split-bf16 activations (about 16
  // mantissa bits for twice the rows: free while decoding, which streams weights); larger steps
  // on plain bf16 activations and attention products, which halves tensor-core time in long
  // prefills and large batches but moves the fixtures' prompt logprobs past the 3e-2 reference
  // tolerance (0.36-0.88). Unlimited by default.
  int64_t split_rows_max = std::numeric_limits<int64_t>::max();
  // With split activations (split_rows_max > 0), the MLP's two products run on fp16 weights and
  // activations instead (activation_precision mixed): 11 mantissa bits in one tensor-core
  // product where split halves take two products, for the four fifths of a Falcon block's
  // products that the MLP holds. On the H200 with Falcon-7B: 2048-token prompts in 61.4-62.0 ms
  // against 94.2-94.4, batch-256 decode 22,604-23,019 tok/s against 16,951-17,001. The fixtures'
  // prompt logprobs land 0.011-0.023 from the float64 reference (split 0.0004-0.0014; the
  // tolerance 3e-2). query_key_value and attention stay split: their inputs rounded to fp16 alone
  // moved those logprobs by 0.03-0.06 and 0.04-0.07 (CPU engine, one product's inputs rounded at
  // a time; the MLP's 0.008-0.022). Decode steps of fp32 rows read the fp16 weights as they are.
  // Checkpoints whose MLP weights go past fp16's range (65504) are refused; activations past it
  // saturate.
  bool fp16_mlp = true;
  // With fp16_mlp, attention's output product (dense) on fp16 weights and activations too:
  // attention writes its output as fp16 rows, one product where split halves take two. On the
  // H200 with Falcon-7B: 2048-token prompts 57.2-57.6 ms against 60.0-61.3, batch-256 decode
  // 24,202-24,242 tok/s against 23,126-23,346; batch 16 and 64 1-2% slower (cuBLAS's fp16
  // products at those rows). The fixtures' prompt logprobs land 0.012-0.026 from the float64
  // reference, against 0.011-0.024 with the MLP alone on fp16. Weights as for fp16_mlp.
  bool fp16_dense = true;
  // With fp16_mlp, lm_head on fp16 weights and activations too (a table of word embeddings tied
  // to it is then kept as fp16, from which the embedding rows are read): one product on the
  // final norm's fp16 rows where split halves take two, and logits with no halves to add. On
  // the H200 with Falcon-7B: batch-256 decode 25,364-25,843 tok/s against 25,062, batch 64
  // 12,938-13,058 against 12,682-12,897. With fp16_dense too, the fixtures' prompt logprobs land
  // 0.013-0.023 from the float64 reference.
  bool fp16_lm_head = true;
  // With fp16_mlp, query_key_value's weights are fp16 too, and steps of at least this many
  // token rows (not of fp32 rows) take its product as fp16(x) W^T plus an fp8 product of the
  // rests x - fp16(x) with an e4m3 copy of the weights (cuda/fp8.hpp; on devices of compute
  // capability 8.9 and up and shapes cuBLASLt's e4m3 products take, Fp8Product::fits; else this
  // is off), at the precision of split halves or better. Smaller steps take one
  // product over fp16 halves (about 22 mantissa bits), which reads the weights once as split
  // halves do. The e4m3 copy costs a byte a weight (0.68 GB for Falcon-7B). On the H200 with
  // Falcon-7B: 2048-token prompts 50.5-51.1 ms against 51.8-52.9; batch 256 0.6-1.3% slower
  // (on fp16 halves), batch 64 within 1%; at 256 rows the fp8 product (13 us a layer) and the
  // fp16 one took longer than split halves' one bf16 product, hence the threshold. 0:
  // query_key_value stays on split-bf16 halves and bf16 weights.
  int64_t fp8_qkv_rows_min = 1024;
  // Decode steps replayed from CUDA graphs, one per batch shape (not for tensor-parallel shards
  // whose collectives run on the host, or with EYRIE_CUDA_PROFILE).
  bool cuda_graphs = true;
  // In steps of at most this many token rows, a parallel-attention block's MLP runs on a second
  // stream beside the attention chain, so the chain's short kernels overlap the MLP's weight
  // streaming (on the H100 with Falcon-7B: batch-1 decode 6.93 -> 6.17 ms per token); the
  // chain's stream has the higher priority. Larger steps are compute-bound: on the H200 with
  // Falcon-7B, forking them too left 2048-token prefills and batch-256 decode within 1-2%, and
  // made 512-token prefills on bf16 activations 3.5% faster. 0 turns it off;
  // EYRIE_CUDA_PROFILE, whose per-op times need one stream, does too.
  int64_t concurrent_mlp_rows_max = 128;
  // In steps of at least this many token rows (and more than concurrent_mlp_rows_max) on bf16
  // activations, a parallel-attention block's dense_h_to_4h and GELU run on the second stream
  // beside the attention chain; dense_4h_to_h follows on the chain's stream, where it can still
  // add itself into the residual stream. Prompts are compute-bound, but the chain's rotary and
  // attention kernels are not, and the GELU runs beside them (on the H200 with Falcon-7B:
  // 512-token prompts 5% faster, 1024-token ones 3%, 2048-token ones 0-2%). 0 turns it off;
  // EYRIE_CUDA_PROFILE does too.
  int64_t concurrent_mlp_up_rows_min = 512;
  // GEMMs of at most this many activation rows (split halves counted: a batch-1 decode step
  // has 2) run on the weight-streaming kernel (cuda::gemv, up to 4 rows) instead of cuBLAS,
  // which it beats by 5-25% per GEMM at 1-3 rows on an H200; 0 leaves every GEMM to cuBLAS.
  int64_t gemv_rows_max = 3;
  // Steps of at most this many split token rows (up to 2) run every product on that kernel,
  // whatever gemv_rows_max says, and hand it their activations as fp32 rows
  // (cuda::Activations::fp32_rows), which it reads as they are, instead of split-bf16 halves,
  // which each of its blocks adds again; at least as precise as the halves. On the H200 with
  // Falcon-7B, same-machine pairs: batch-1 decode 3.44-3.52 ms per token against 3.55-3.61 (as
  // fast as bf16 activations), batch 2 3.83-4.01 ms a step against 4.18-4.36 on cuBLAS. 0
  // turns it off.
  int64_t fp32_gemv_rows_max = 2;
  // GEMMs of more rows than gemv_rows_max and at most this many (up to 8) run on the
  // tensor-core weight-streaming kernel, with reductions in multiples of 64; 0 leaves them to
  // cuBLAS. Off by default: since the attention chain's stream outranks the MLP's, cuBLAS runs
  // 4-8 GEMM rows faster (H200, Falcon-7B: bf16 batch 4 / 8 decode 931 / 1,923 tok/s against
  // 686 / 1,305; split batch 2 / 4 458 / 920 against 311 / 584).
  int64_t gemv_mma_rows_max = 0;
  // Weight-streaming products of at least this many rows start reading weights while the
  // kernel before them finishes (programmatic dependent launch) instead of after it. On the
  // H200 with Falcon-7B, batch-2 / 4 decode (4 / 8 rows, tensor-core kernel) ran 1-3% faster
  // with it; batch 1 (2 rows) ran 5% slower with it (3.84 -> 4.03 ms per token).
  int64_t gemv_early_start_rows_min = 3;
  // Steps of at least this many token rows, other than decode steps, run attention on the
  // warp-group MMA kernel (cuda/attention_wgmma.hpp) where the device has compute capability
  // 9.0 and the engine caches keys and values at head dim 64 without ALiBi as bf16 (bf16
  // activations) or as split halves (every step split); others, and 0, on the mma.sync kernel.
  // On the H200 with Falcon-7B, a layer's attention at ncu's fixed clocks: bf16 193 us against
  // 211 at 2048 prompt tokens, 68.6 against 70.1 at 1024 and 30.2 against 30.9 at 512, where
  // whole prompts came out 0.6% slower within the spread of their times; split 323-325 against
  // 453-457 at 2048, 112 against 140 at 1024, 45-46 against 63 at 512 and 27 against 30 at 256
  // (prompts of 2048 / 1024 tokens 92.5-93.5 / 43.9-45.4 ms against 95.9-96.1 / 45.8-46.3).
  int64_t wgmma_attention_rows_min = 512;
  // Where a parallel block's attention and MLP output products both run on the weight-streaming
  // kernel, they run as one launch summing both terms (cuda::gemv_products), after the norm and
  // both products of its output on the MLP branch. Not for tensor-parallel shards, whose halved
  // products leave the attention chain longer than them: at degree 2 on two H200s (Falcon-7B),
  // batch-1 decode took 2.59 ms per token with it against 2.42-2.45 without.
  bool summed_output_products = true;
  // Decode steps with fewer attention tiles than this many per SM split their rows' keys into
  // ranges on blocks of their own, up to that many tiles. On the H200 with Falcon-7B, 2, 4 and
  // 8 ran batch 16-256 decode up to 13% slower than 1: the partial writes and the merge cost
  // more than the idle SMs.
  int64_t key_split_blocks_per_sm = 1;
  // Decode steps of at most this many rows cut each row's head group over several attention
  // tiles to fill the SMs; larger ones keep whole groups (each key converted once for all the
  // heads that read it) and leave filling the SMs to key splits. On the H200 with Falcon-7B,
  // whole groups ran batch 16 / 64 decode 8% / 10% faster; cut groups won at batch 1.
  int64_t decode_head_split_rows_max = 8;
  // Where every step runs on bf16 activations (split_rows_max <= 0), keys and values are cached
  // in bf16, which that attention rounds them to anyway: half the cache memory and its reads.
  bool bf16_kv_cache = true;
  // Called on the constructing thread as the checkpoint's weights go to the device: bytes
  // queued so far and this engine's total (once with 0 before the first chunk); not kept after
  // the constructor.
  std::function<void(std::size_t done, std::size_t total)> upload_progress = nullptr;
  // Host threads filling the upload's staging buffers; 0: the machine's, up to 8 (8 moved a
  // warm Falcon-7B checkpoint at 30 GB/s on the H200 machine, 1 at 4.5). Engines loading at
  // the same time share the machine's threads.
  int upload_threads = 0;
  // A tensor-parallel shard's group in peer memory (make_peer_exchange over the replica's
  // devices in rank order): its residual adds are summed over the group in one kernel per
  // layer, reading the peers' shares where they lie, instead of NCCL's all-reduce and the
  // kernels around it; sums too large for it still go through NCCL. Null: NCCL throughout.
  std::shared_ptr<cuda::PeerExchange> peer_exchange = nullptr;
};

// The activation precisions a CUDA engine takes, as options and the command line name them:
// "mixed" (the default: split-bf16 halves, the MLP, dense and lm_head on fp16: fp16_mlp,
// fp16_dense, fp16_lm_head; query_key_value on fp16 halves or fp16 rows and fp8 rests:
// fp8_qkv_rows_min), "split" (every product on split-bf16 halves), "bf16" (products and
// attention on bf16 activations, as other servers compute them: the fastest, and the least
// precise). Throws InvalidArgument for any other, naming `what` (the option as the caller
// spells it).
inline void set_activation_precision(CudaEngineOptions& o, const std::string& precision, const std::string& what) {
  if (precision == "mixed") return;
  if (precision == "split") {
    o.fp16_mlp = o.fp16_dense = o.fp16_lm_head = false;
  } else if (precision == "bf16") {
    o.split_rows_max = 0;
  } else {
    throw InvalidArgument(what + " must be mixed, split or bf16, got '" + precision + "'");
  }
}

// True when this build has the CUDA backend and a GPU is visible.
bool cuda_available();
int cuda_device_count();
// Whether GPU `device` runs the warp-group MMA attention kernel (compute capability 9.0), which
// prompts take where CudaEngineOptions::wgmma_attention_rows_min says so.
bool cuda_wgmma_attention_available(int device = 0);

class CudaEngine final : public Engine {
 public:
  // Uploads the checkpoint's weights (bf16; fp16 / fp32 converted on the way). With a
  // communicator, only the weights of the communicator's shard: one rank of a tensor-parallel
  // group whose engines step together, each on its own GPU.
  CudaEngine(std::shared_ptr<const FalconModel> model, CudaEngineOptions options = {},
             std::shared_ptr<Communicator> comm = nullptr);
  // Random weights created on the GPU for a config (benchmarks at full size, no file).
  CudaEngine(const FalconConfig& config, uint64_t seed, CudaEngineOptions options = {},
             std::shared_ptr<Communicator> comm = nullptr);
  ~CudaEngine() override;

  const FalconConfig& config() const override;
  const KvCacheSpec& kv_spec() const override;
  void step(const StepBatch& batch, StepOutput& out) override;
  // Greedy with a repetition penalty, temperature, top-k and top-p choices run on the GPU, so
  // only ids and logprobs reach the host (rank 0 of a tensor-parallel group).
  bool chooses_tokens() const override;
  // Decode steps are padded up to these row counts (cuda/decode_buckets.hpp), each replayed
  // from its CUDA graph once seen twice.
  std::vector<int32_t> decode_batch_sizes() const override;

  std::size_t weight_bytes() const;
  // Decode steps replayed from CUDA graphs so far, and graphs captured so far.
  int64_t graph_replays() const;
  int64_t graph_captures() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace eyrie
