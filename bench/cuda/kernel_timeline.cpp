// A CUPTI injection library that writes every kernel's start and end on the GPU clock, its
// stream and its launch shape to a CSV file, kernels replayed from CUDA graphs included: the
// concurrent timeline that per-kernel profilers (ncu serializes kernels) cannot show, on
// machines without Nsight Systems. Loaded by the CUDA driver at context creation:
//   CUDA_INJECTION64_PATH=libeyrie_kernel_timeline.so EYRIE_TIMELINE=kernels.csv bench_cuda ...
// Columns: start_ns,end_ns,stream (device.stream),graph_node,grid,block,"name" (demangled). Summary:
// tools/timeline_summary.py. With EYRIE_TIMELINE_LEVEL=graphs, each CUDA graph launch is one
// record ("graph N") and its kernels none: tracing then costs too little to hide the idle time
// between decode steps, which kernel-level tracing inflates. With graphs,api the host's CUDA
// runtime calls are recorded too (stream "host", on the same clock): what fills that time.
#include <cupti.h>
#include <cxxabi.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string_view>

namespace {

constexpr size_t kBufferBytes = 8 << 20;

std::FILE* out = nullptr;
std::mutex out_mutex;

void CUPTIAPI buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
  *buffer = static_cast<uint8_t*>(std::aligned_alloc(8, kBufferBytes));
  *size = *buffer ? kBufferBytes : 0;
  *max_records = 0;
}

void CUPTIAPI buffer_completed(CUcontext, uint32_t, uint8_t* buffer, size_t, size_t valid) {
  std::lock_guard lock(out_mutex);
  CUpti_Activity* record = nullptr;
  while (out && cuptiActivityGetNextRecord(buffer, valid, &record) == CUPTI_SUCCESS) {
    if (record->kind == CUPTI_ACTIVITY_KIND_GRAPH_TRACE) {
      const auto* g = reinterpret_cast<const CUpti_ActivityGraphTrace2*>(record);
      std::fprintf(out, "%llu,%llu,%u.%u,0,0,0,\"graph %u\"\n", static_cast<unsigned long long>(g->start),
                   static_cast<unsigned long long>(g->end), g->deviceId, g->streamId, g->graphId);
      continue;
    }
    if (record->kind == CUPTI_ACTIVITY_KIND_RUNTIME) {
      const auto* a = reinterpret_cast<const CUpti_ActivityAPI*>(record);
      const char* fn = nullptr;
      if (cuptiGetCallbackName(CUPTI_CB_DOMAIN_RUNTIME_API, a->cbid, &fn) != CUPTI_SUCCESS) fn = nullptr;
      std::fprintf(out, "%llu,%llu,host,0,0,0,\"%s\"\n", static_cast<unsigned long long>(a->start),
                   static_cast<unsigned long long>(a->end), fn ? fn : "runtime call");
      continue;
    }
    if (record->kind != CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) continue;
    const auto* k = reinterpret_cast<const CUpti_ActivityKernel10*>(record);
    int status = -1;
    char* readable = k->name ? abi::__cxa_demangle(k->name, nullptr, nullptr, &status) : nullptr;
    std::fprintf(out, "%llu,%llu,%u.%u,%llu,%d,%d,\"%s\"\n", static_cast<unsigned long long>(k->start),
                 static_cast<unsigned long long>(k->end), k->deviceId, k->streamId,
                 static_cast<unsigned long long>(k->graphNodeId), k->gridX * k->gridY * k->gridZ,
                 k->blockX * k->blockY * k->blockZ, status == 0 ? readable : k->name ? k->name : "?");
    std::free(readable);
  }
  std::free(buffer);
}

void finish() {
  cuptiActivityFlushAll(1);
  std::lock_guard lock(out_mutex);
  if (out) std::fclose(out);
  out = nullptr;
}

bool report(CUptiResult r, const char* what) {
  if (r == CUPTI_SUCCESS) return true;
  const char* text = nullptr;
  cuptiGetResultString(r, &text);
  std::fprintf(stderr, "kernel timeline: %s: %s\n", what, text ? text : "unknown CUPTI error");
  return false;
}

}  // namespace

extern "C" int InitializeInjection() {
  const char* path = std::getenv("EYRIE_TIMELINE");
  out = std::fopen(path ? path : "kernels.csv", "w");
  if (!out) {
    std::fprintf(stderr, "kernel timeline: cannot write %s\n", path ? path : "kernels.csv");
    return 0;
  }
  std::fprintf(out, "start_ns,end_ns,stream,graph_node,grid,block,name\n");
  const char* level = std::getenv("EYRIE_TIMELINE_LEVEL");
  const std::string_view lv = level ? level : "";
  const bool graphs_only = lv == "graphs" || lv == "graphs,api";
  if (!report(cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed), "register callbacks") ||
      !report(cuptiActivityEnable(graphs_only ? CUPTI_ACTIVITY_KIND_GRAPH_TRACE : CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL),
              "enable records"))
    return 0;
  if (lv == "graphs,api" && !report(cuptiActivityEnable(CUPTI_ACTIVITY_KIND_RUNTIME), "enable runtime call records"))
    return 0;
  std::atexit(finish);
  return 1;
}
