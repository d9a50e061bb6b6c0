// CudaEngine's construction and public calls; its state and the rest of its members are in
// cuda/engine_impl.hpp.
#include "cuda/engine_impl.hpp"

namespace eyrie {

int cuda_device_count() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
}

bool cuda_available() {
  return cuda_device_count() > 0;
}

bool cuda_wgmma_attention_available(int device) {
  return device >= 0 && device < cuda_device_count() && cuda::attention_wgmma_device(device);
}

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

const FalconConfig& CudaEngine::config() const {
  return impl_->cfg;
}
const KvCacheSpec& CudaEngine::kv_spec() const {
  return impl_->spec;
}
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
bool CudaEngine::chooses_tokens() const {
  return impl_->plan.rank == 0;
}
std::vector<int32_t> CudaEngine::decode_batch_sizes() const {
  // A step is padded to its bucket or to the step limit, whichever is smaller.
  const int64_t limit = impl_->opt.max_step_tokens;
  std::vector<int32_t> sizes = cuda::decode_buckets_up_to(limit);
  if (sizes.back() > limit) sizes.back() = static_cast<int32_t>(limit);
  return sizes;
}
int64_t CudaEngine::graph_replays() const {
  return impl_->graph_replays;
}
int64_t CudaEngine::graph_captures() const {
  return impl_->graph_captures;
}
std::size_t CudaEngine::weight_bytes() const {
  return impl_->weight_bytes;
}

}  // namespace eyrie
