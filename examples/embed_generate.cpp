// A host application embedding eyrie: load a model, stream one generation through callbacks,
// optionally serve the HTTP API from the same runtime for a moment, then shut down.
//
//   embed_generate MODEL_DIR "prompt" [max_new_tokens]
#include <eyrie/runtime.hpp>

#include <cstdio>
#include <cstdlib>
#include <future>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s MODEL_DIR PROMPT [MAX_NEW_TOKENS]\n", argv[0]);
    return 2;
  }
  try {
    eyrie::RuntimeOptions options;
    options.model_dir = argv[1];
    auto runtime = eyrie::Runtime::create(options);

    eyrie::SamplingParams params;
    params.max_new_tokens = argc > 3 ? std::atoi(argv[3]) : 16;
    std::promise<eyrie::DoneEvent> finished;
    runtime->submit(argv[2], params,
                    {[](const eyrie::TokenEvent& t) {
                       std::fwrite(t.text.data(), 1, t.text.size(), stdout);
                       std::fflush(stdout);
                     },
                     [&finished](const eyrie::DoneEvent& d) { finished.set_value(d); }});
    eyrie::DoneEvent done = finished.get_future().get();
    std::printf("\n[%lld tokens, finish reason %s, first token after %.1f ms]\n",
                static_cast<long long>(done.completion_tokens),
                std::string(eyrie::stop_reason_name(done.reason)).c_str(), done.timing.ttft_ms);

    const uint16_t port = runtime->serve("127.0.0.1", 0);
    std::printf("[served the HTTP API on port %u]\n", port);
    runtime->shutdown(std::chrono::seconds(1));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "embed_generate: %s\n", e.what());
    return 1;
  }
}
