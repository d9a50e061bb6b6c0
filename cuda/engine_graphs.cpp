// Decode steps replayed from CUDA graphs, captured in pieces per batch shape.
#include "cuda/engine_impl.hpp"

namespace eyrie {

void CudaEngine::Impl::drop_graphs() {
  for (auto& [k, gr] : graphs) destroy(gr);
  graphs.clear();
  graph_seen.clear();
}

void CudaEngine::Impl::destroy(Graph& gr) {
  for (cudaGraphExec_t e : gr.pieces) cudaGraphExecDestroy(e);
  gr.pieces.clear();
}

void CudaEngine::Impl::graph_cut() {
  if (!capturing) return;
  cudaGraph_t g = nullptr;
  EYRIE_CUDA_CHECK(cudaStreamEndCapture(stream, &g));
  captured.push_back(g);
  EYRIE_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
}

void CudaEngine::Impl::drop_captured() {
  for (cudaGraph_t g : captured) cudaGraphDestroy(g);
  captured.clear();
}

CudaEngine::Impl::StepBuffers CudaEngine::Impl::step_buffers() const {
  return {x.get(),
          qkv.get(),
          q.get(),
          o.get(),
          f.get(),
          y.get(),
          logits_split.get(),
          logits.get(),
          lse.get(),
          rowmax.get(),
          argmax.get(),
          a.get(),
          m.get(),
          attn.get(),
          fb.get(),
          lnf.get(),
          d_index.at[0],
          d_index.at[1],
          d_index.at[2],
          d_index.at[3],
          d_index.at[4],
          d_index.at[5],
          d_index.at[6],
          partial.get(),
          logits_part.get(),
          logits_all.get()};
}

void CudaEngine::Impl::run_graph(const GraphKey& key, const std::function<void()>& forward) {
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

}  // namespace eyrie
