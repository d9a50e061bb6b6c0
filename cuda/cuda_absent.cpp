// The CUDA backend's entry points in a build without CUDA: they say so instead of failing later.
#include "cuda/cuda_engine.hpp"
#include "cuda/nccl_communicator.hpp"
#include "model/error.hpp"

namespace eyrie {

namespace {
const char* kNoCuda = "this eyrie was built without the CUDA backend (EYRIE_CUDA=OFF or no nvcc found)";
}

struct CudaEngine::Impl {};

bool cuda_available() { return false; }
int cuda_device_count() { return 0; }
bool cuda_wgmma_attention_available(int) {
  return false;
}
CudaEngine::CudaEngine(std::shared_ptr<const FalconModel>, CudaEngineOptions, std::shared_ptr<Communicator>) {
  throw Error(kNoCuda);
}
CudaEngine::CudaEngine(const FalconConfig&, uint64_t, CudaEngineOptions, std::shared_ptr<Communicator>) {
  throw Error(kNoCuda);
}
CudaEngine::~CudaEngine() = default;
const FalconConfig& CudaEngine::config() const { throw Error(kNoCuda); }
const KvCacheSpec& CudaEngine::kv_spec() const { throw Error(kNoCuda); }
void CudaEngine::step(const StepBatch&, StepOutput&) { throw Error(kNoCuda); }
bool CudaEngine::chooses_tokens() const { return false; }
std::size_t CudaEngine::weight_bytes() const { return 0; }
std::vector<int32_t> CudaEngine::decode_batch_sizes() const { return {}; }
int64_t CudaEngine::graph_replays() const { return 0; }
int64_t CudaEngine::graph_captures() const { return 0; }
std::vector<std::shared_ptr<Communicator>> make_nccl_group(const std::vector<int>&) { throw Error(kNoCuda); }
std::shared_ptr<cuda::PeerExchange> make_peer_exchange(const std::vector<int>&) { throw Error(kNoCuda); }

}  // namespace eyrie
