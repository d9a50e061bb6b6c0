// The eyrie program end to end: output shapes, reference continuations and exit codes.
#include <gtest/gtest.h>
#include <simdjson.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "tests/support/reference.hpp"
#include "tests/support/temp_dir.hpp"

namespace eyrie {
namespace {

struct CliRun {
  int code;
  std::string out;
};

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) {
    if (c == '\'') q.append("'\\''");
    else q.push_back(c);
  }
  q.push_back('\'');
  return q;
}

// Runs the eyrie binary with a shell-quoted argument list; stderr goes to the test log.
CliRun eyrie(const std::vector<std::string>& args, const std::string& stdin_text = "") {
  std::string cmd = "printf %s ";
  cmd.append(quote(stdin_text)).append(" | ").append(EYRIE_BIN);
  for (const auto& a : args) cmd.append(" ").append(quote(a));
  CliRun r{0, ""};
  FILE* p = popen(cmd.c_str(), "r");
  std::array<char, 4096> buf;
  std::size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

TEST(Cli, GenerateJsonMatchesTransformersGreedy) {
  for (const auto& dir : test::fixture_models()) {
    auto cases = test::load_reference(dir + "/reference.json");
    const auto& rc = cases[0];
    // Only compare as far as the reference has no near-tie.
    std::size_t n = 0;
    while (n < rc.greedy_margins.size() && rc.greedy_margins[n] > 1e-3) ++n;
    ASSERT_GT(n, 0u);
    CliRun r = eyrie({"generate", "--model", dir, "--prompt", rc.prompt, "--max-new-tokens",
                   std::to_string(n), "--json", "--threads", "2"});
    ASSERT_EQ(r.code, 0) << dir;
    simdjson::dom::parser parser;
    simdjson::dom::element doc = parser.parse(r.out);
    simdjson::dom::object details = doc["details"];
    EXPECT_EQ(std::string_view(details["finish_reason"]), "length");
    EXPECT_EQ(int64_t(details["generated_tokens"]), static_cast<int64_t>(n));
    EXPECT_TRUE(details["seed"].is_null());
    std::size_t i = 0;
    for (simdjson::dom::object t : details["tokens"].get_array()) {
      EXPECT_EQ(int64_t(t["id"]), rc.greedy_ids[i]) << dir << " token " << i;
      EXPECT_NEAR(double(t["logprob"]), rc.greedy_logprobs[i], 1e-3);
      ++i;
    }
    std::size_t k = 0;
    for (simdjson::dom::object t : details["prefill"].get_array()) {
      EXPECT_EQ(int64_t(t["id"]), rc.ids[k]);
      if (k == 0) EXPECT_TRUE(t["logprob"].is_null());
      else EXPECT_NEAR(double(t["logprob"]), *rc.logprobs[k], 1e-3);
      ++k;
    }
    EXPECT_EQ(k, rc.ids.size());
  }
}

TEST(Cli, StreamedTextEqualsJsonText) {
  CliRun json = eyrie({"generate", "--prompt", "Hello", "--max-new-tokens", "8", "--json"});
  CliRun text = eyrie({"generate", "--prompt", "Hello", "--max-new-tokens", "8"});
  ASSERT_EQ(json.code, 0);
  ASSERT_EQ(text.code, 0);
  simdjson::dom::parser parser;
  std::string_view generated = parser.parse(json.out)["generated_text"];
  EXPECT_EQ(text.out, std::string(generated) + "\n");
}

TEST(Cli, SeededSamplingRepeatsAndReportsSeed) {
  std::vector<std::string> args{"generate", "--prompt", "Once", "--temperature", "0.9",
                                "--top-p", "0.9", "--seed", "1234", "--max-new-tokens", "12", "--json"};
  CliRun a = eyrie(args), b = eyrie(args);
  ASSERT_EQ(a.code, 0);
  EXPECT_EQ(a.out, b.out);
  simdjson::dom::parser parser;
  EXPECT_EQ(uint64_t(parser.parse(a.out)["details"]["seed"]), 1234u);
}

TEST(Cli, StopSequenceEndsGeneration) {
  // The bundled model's greedy continuation of this prompt starts " funnel dehors".
  CliRun r = eyrie({"generate", "--prompt", "The capital of France is", "--stop", "dehors",
                 "--max-new-tokens", "20", "--json"});
  ASSERT_EQ(r.code, 0);
  simdjson::dom::parser parser;
  simdjson::dom::element doc = parser.parse(r.out);
  EXPECT_EQ(std::string_view(doc["details"]["finish_reason"]), "stop_sequence");
  EXPECT_EQ(std::string_view(doc["generated_text"]), " funnel dehors");
}

TEST(Cli, EosTokenFromConfigEndsGeneration) {
  // The bundled model with its EOS id moved to its first greedy token for this prompt.
  const std::string fixture = test::test_data("models/falcon-7b-tiny");
  test::TempDir dir;
  std::ifstream in(fixture + "/config.json");
  std::string config((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string key = "\"eos_token_id\": 11";
  ASSERT_NE(config.find(key), std::string::npos);
  config.replace(config.find(key), key.size(), "\"eos_token_id\": 26263");
  dir.write("config.json", config);
  std::filesystem::create_symlink(fixture + "/model.safetensors", dir.file("model.safetensors"));
  std::filesystem::create_symlink(fixture + "/tokenizer.json", dir.file("tokenizer.json"));
  CliRun r = eyrie({"generate", "--model", dir.path().string(), "--prompt",
                    "The capital of France is", "--json"});
  ASSERT_EQ(r.code, 0);
  simdjson::dom::parser parser;
  simdjson::dom::element doc = parser.parse(r.out);
  EXPECT_EQ(std::string_view(doc["details"]["finish_reason"]), "eos_token");
  EXPECT_EQ(int64_t(doc["details"]["generated_tokens"]), 1);
}

TEST(Cli, TokenizeFromFlagAndStdin) {
  CliRun a = eyrie({"tokenize", "--text", "Hello world"});
  CliRun b = eyrie({"tokenize"}, "Hello world");
  ASSERT_EQ(a.code, 0);
  EXPECT_EQ(a.out, b.out);
  simdjson::dom::parser parser;
  simdjson::dom::element doc = parser.parse(a.out);
  std::string joined;
  for (std::string_view t : doc["tokens"].get_array()) joined += t;
  EXPECT_EQ(joined, "Hello world");
  EXPECT_EQ(doc["ids"].get_array().size(), doc["tokens"].get_array().size());
}

TEST(Cli, ExitCodes) {
  EXPECT_EQ(eyrie({"generate", "--help"}).code, 0);
  EXPECT_EQ(eyrie({"tokenize", "--help"}).code, 0);
  EXPECT_EQ(eyrie({}).code, 2);
  EXPECT_EQ(eyrie({"frobnicate"}).code, 2);
  EXPECT_EQ(eyrie({"generate", "--prompt", "x", "--bogus"}).code, 2);
  EXPECT_EQ(eyrie({"generate", "--prompt", "x", "--max-new-tokens", "ten"}).code, 2);
  EXPECT_EQ(eyrie({"generate", "--prompt", "x", "--top-p", "2"}).code, 2);
  EXPECT_EQ(eyrie({"generate", "--prompt", "x", "--max-new-tokens", "1", "--activation-precision", "bf16"}).code, 0);
  EXPECT_EQ(eyrie({"generate", "--prompt", "x", "--activation-precision", "fp8"}).code, 2);
  EXPECT_EQ(eyrie({"generate", "--prompt", ""}).code, 2);
  EXPECT_EQ(eyrie({"generate", "--prompt", "x", "--max-new-tokens", "5000"}).code, 2);
  EXPECT_EQ(eyrie({"generate", "--prompt", "x", "--model", "/nonexistent"}).code, 1);
  test::TempDir dir;
  dir.write("config.json", "{not json");
  EXPECT_EQ(eyrie({"generate", "--prompt", "x", "--model", dir.path().string()}).code, 1);
}

}  // namespace
}  // namespace eyrie
