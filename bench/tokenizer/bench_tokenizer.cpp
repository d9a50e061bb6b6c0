// Encode throughput of the Falcon tokenizer on English text; tools/tokenizer_fixtures/bench_hf.mjs
// builds the same text and times Hugging Face tokenizers on it.
#include <benchmark/benchmark.h>

#include <cctype>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "model/tokenizer/detokenizer.hpp"
#include "model/tokenizer/tokenizer.hpp"

namespace {

// Paths are compiled in; EYRIE_SOURCE_DIR moves them when the binary runs from another checkout.
std::string source_path(const char* compiled, const char* relative) {
  const char* root = std::getenv("EYRIE_SOURCE_DIR");
  return root ? std::string(root) + "/" + relative : std::string(compiled);
}

// About 400 KB: the sample's lines, rotated, numbered and with shifting capitalisation on every
// pass, so that pieces keep changing instead of repeating one paragraph verbatim.
std::string english_text() {
  std::ifstream in(source_path(EYRIE_BENCH_TEXT, "bench/tokenizer/english_sample.txt"));
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) lines.push_back(line);
  }
  std::string text;
  for (size_t pass = 0; text.size() < 400 * 1024; ++pass) {
    for (size_t i = 0; i < lines.size(); ++i) {
      std::string line = lines[(i + pass * 7) % lines.size()];
      size_t word = 0;
      for (size_t p = 0; p < line.size(); ++p) {
        if (p == 0 || line[p - 1] == ' ') {
          if ((word + pass) % 7 == 0) line[p] = static_cast<char>(std::toupper(line[p]));
          ++word;
        }
      }
      text += "Section " + std::to_string(pass) + "." + std::to_string(i) + ": " + line + "\n";
    }
  }
  return text;
}

const eyrie::Tokenizer& tokenizer() {
  static const eyrie::Tokenizer tok = eyrie::Tokenizer::from_file(source_path(EYRIE_TOKENIZER_JSON, "tests/data/tokenizer.json"));
  return tok;
}

void BM_EncodeEnglish(benchmark::State& state) {
  const std::string text = english_text();
  size_t tokens = 0;
  for (auto _ : state) {
    const auto ids = tokenizer().encode(text);
    tokens = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
  state.counters["text_bytes"] = static_cast<double>(text.size());
  state.counters["tokens"] = static_cast<double>(tokens);
}
BENCHMARK(BM_EncodeEnglish)->Unit(benchmark::kMillisecond);

// Serving calls encode once per request line, not once per 400 KB.
void BM_EncodeEnglishLines(benchmark::State& state) {
  const std::string text = english_text();
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line + "\n");
  for (auto _ : state) {
    for (const auto& line : lines) benchmark::DoNotOptimize(tokenizer().encode(line).data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}
BENCHMARK(BM_EncodeEnglishLines)->Unit(benchmark::kMillisecond);

void BM_DecodeIncremental(benchmark::State& state) {
  const auto ids = tokenizer().encode(english_text());
  size_t bytes = 0;
  for (auto _ : state) {
    eyrie::IncrementalDetokenizer detok(tokenizer());
    bytes = 0;
    for (const int32_t id : ids) bytes += detok.push(id).size();
    bytes += detok.flush().size();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
}
BENCHMARK(BM_DecodeIncremental)->Unit(benchmark::kMillisecond);

void BM_Load(benchmark::State& state) {
  for (auto _ : state) {
    benchmark::DoNotOptimize(eyrie::Tokenizer::from_file(source_path(EYRIE_TOKENIZER_JSON, "tests/data/tokenizer.json")).vocab_size());
  }
}
BENCHMARK(BM_Load)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
