// Weight upload from a memory-mapped checkpoint to one GPU: the staged upload (cuda::StagedUpload,
// pinned buffers, host fill overlapped with the copy engine) against the plain way (a converted
// host copy of each tensor, then a synchronous cudaMemcpy from pageable memory), with the file
// in the page cache ("warm") and evicted from it before each run ("cold"), mapped afresh each run. Writes a random
// checkpoint of the config's shape into --dir first when none is there; finishes with the
// whole CudaEngine construction (warm).
//
//   bench_upload --config tests/data/configs/falcon-7b.json --dir /tmp/falcon-7b-random
//                [--chunk-mib 16] [--chunks 4] [--fill-threads 1,4] [--repeat 2] [--cold on|off]
#include <cuda_runtime.h>
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "bench/cpu/random_checkpoint.hpp"
#include "bench/cuda/int_list.hpp"
#include "cuda/check.hpp"
#include "cuda/cuda_engine.hpp"
#include "cuda/weight_upload.hpp"
#include "model/falcon_model.hpp"

using Clock = std::chrono::steady_clock;
using namespace eyrie;

namespace {

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Drops the checkpoint's pages from the page cache (clean pages, no privileges needed).
void evict(const std::string& dir) {
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() != ".safetensors") continue;
    const int fd = ::open(e.path().c_str(), O_RDONLY);
    if (fd < 0) continue;
    ::fdatasync(fd);
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
}

void page_in(const FalconModel& m) {
  volatile uint8_t sink = 0;
  for (const auto& [name, t] : m.archive.tensors()) {
    const auto* p = static_cast<const uint8_t*>(t.data);
    for (std::size_t off = 0; off < t.nbytes; off += 4096) sink = sink + p[off];
  }
}

struct Targets {
  std::vector<void*> p;
  std::size_t bytes = 0;
  explicit Targets(const FalconModel& m) {
    for (const auto& [name, t] : m.archive.tensors()) {
      void* d = nullptr;
      EYRIE_CUDA_CHECK(cudaMalloc(&d, static_cast<std::size_t>(t.numel()) * 2));
      p.push_back(d);
      bytes += static_cast<std::size_t>(t.numel()) * 2;
    }
  }
  ~Targets() {
    for (void* d : p) cudaFree(d);
  }
};

double plain_upload(const FalconModel& m, const Targets& dst) {
  const auto t0 = Clock::now();
  std::size_t i = 0;
  for (const auto& [name, t] : m.archive.tensors()) {
    std::vector<uint16_t> h(static_cast<std::size_t>(t.numel()));
    std::memcpy(h.data(), t.data, t.nbytes);
    EYRIE_CUDA_CHECK(cudaMemcpy(dst.p[i++], h.data(), h.size() * 2, cudaMemcpyHostToDevice));
  }
  return seconds_since(t0);
}

double staged_upload(const FalconModel& m, const Targets& dst, std::size_t chunk, int chunks, int threads,
                     cudaStream_t s) {
  const auto t0 = Clock::now();
  cuda::StagedUpload up(s, {}, chunk, chunks, threads);
  std::size_t i = 0;
  for (const auto& [name, t] : m.archive.tensors()) up.to_bf16(static_cast<uint16_t*>(dst.p[i++]), t);
  up.finish();
  return seconds_since(t0);
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path = "tests/data/configs/falcon-7b.json";
  std::string dir = "/tmp/falcon-7b-random";
  std::size_t chunk_mib = 16;
  int chunks = 4, repeat = 2;
  std::vector<int> fill_threads = {1, 4};
  bool cold = true;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--config")) config_path = argv[i + 1];
    if (!std::strcmp(argv[i], "--dir")) dir = argv[i + 1];
    if (!std::strcmp(argv[i], "--chunk-mib")) chunk_mib = std::stoul(argv[i + 1]);
    if (!std::strcmp(argv[i], "--chunks")) chunks = std::stoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--fill-threads")) fill_threads = int_list(argv[i + 1]);
    if (!std::strcmp(argv[i], "--repeat")) repeat = std::stoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--cold")) cold = std::strcmp(argv[i + 1], "off") != 0;
  }
  try {
    if (!std::filesystem::exists(dir + "/model.safetensors")) {
      std::stringstream config;
      config << std::ifstream(config_path).rdbuf();
      const auto t0 = Clock::now();
      const std::size_t b = bench::write_random_checkpoint(dir, config.str());
      std::printf("wrote %.2f GB of random bf16 weights to %s in %.1f s\n", b / 1e9, dir.c_str(), seconds_since(t0));
    }
    auto model = FalconModel::load(dir);
    cudaStream_t stream;
    EYRIE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    Targets dst(*model);
    const double gb = static_cast<double>(dst.bytes) / 1e9;
    std::printf("%s: %.2f GB in %zu tensors; staging %d x %zu MiB\n", config_path.c_str(), gb,
                model->archive.tensors().size(), chunks, chunk_mib);
    std::printf("%-6s %-7s %7s %9s %9s\n", "cache", "upload", "threads", "s", "GB/s");
    for (int warm = cold ? 0 : 1; warm <= 1; ++warm) {
      for (int r = 0; r < repeat; ++r) {
        for (int v = -1; v < static_cast<int>(fill_threads.size()); ++v) {
          // A fresh mapping each run, as a starting server has; mapped pages cannot be evicted.
          model.reset();
          if (warm) page_in(*FalconModel::load(dir));
          else evict(dir);
          model = FalconModel::load(dir);
          const int threads = v < 0 ? 1 : fill_threads[v];
          const double s = v < 0 ? plain_upload(*model, dst)
                                 : staged_upload(*model, dst, chunk_mib << 20, chunks, threads, stream);
          std::printf("%-6s %-7s %7d %9.3f %9.2f\n", warm ? "warm" : "cold", v < 0 ? "plain" : "staged", threads, s,
                      gb / s);
        }
      }
    }
    page_in(*model);
    const auto t0 = Clock::now();
    CudaEngineOptions o;
    o.kv_tokens = 65536;
    { CudaEngine e(model, o); }
    std::printf("CudaEngine construction (warm, 64K-token KV cache): %.3f s\n", seconds_since(t0));
    cudaStreamDestroy(stream);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_upload: %s\n", e.what());
    return 1;
  }
  return 0;
}
