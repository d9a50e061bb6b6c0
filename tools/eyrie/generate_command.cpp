// eyrie generate: text from a prompt on the CPU engine, streamed, or as TGI's /generate JSON.
#include <cstdio>
#include <filesystem>

#include "cuda/cuda_engine.hpp"
#include "model/cpu/cpu_engine.hpp"
#include "actors/generator.hpp"
#include "net/json_writer.hpp"
#include "tools/eyrie/commands.hpp"
#include "tools/eyrie/options.hpp"
#include "tools/eyrie/progress_bar.hpp"

namespace eyrie::cli {
namespace {

const OptionSpec kOptions[] = {
    {"model", "DIR", "Hugging Face model directory (default: the bundled model)"},
    {"prompt", "T", "prompt text (default: all of standard input)"},
    {"max-new-tokens", "N", "tokens to generate at most (default 20)"},
    {"temperature", "F", "sampling temperature; absent or 0 means greedy"},
    {"top-k", "K", "sample among the K most likely tokens"},
    {"top-p", "P", "sample from the smallest set of tokens with probability >= P"},
    {"typical-p", "P", "locally typical sampling with mass P"},
    {"repetition-penalty", "R", "penalise tokens already in the text (1 = off)"},
    {"stop", "S", "stop when the generated text contains S", true},
    {"seed", "S", "random seed for sampling (same seed, same text)"},
    {"do-sample", "", "sample even when no other option asks for it"},
    {"json", "", "print one JSON object shaped like TGI's /generate response with details"},
    {"threads", "N", "CPU threads (default: all)"},
    {"device", "D", "cpu (default) or cuda"},
    {"activation-precision", "P",
     "cuda: mixed (default; GEMM activations as two bf16 halves, the MLP's, dense's and lm_head's as fp16), split (all "
     "halves) or bf16"},
    {"help", "", "show this help"},
};

void write_token(JsonWriter& w, const TokenDetail& t, bool with_special) {
  w.begin_object().key("id").value(t.id).key("text").value(t.text).key("logprob");
  if (t.logprob) w.value(static_cast<double>(*t.logprob));
  else w.null();
  if (with_special) w.key("special").value(t.special);
  w.end_object();
}

}  // namespace

int generate_command(std::span<char*> args) {
  ParsedArgs a = parse_options(kOptions, args);
  if (a.has("help")) {
    std::fputs(usage("eyrie generate [--model DIR] --prompt T [options]",
                     "Generates a continuation of the prompt and streams it to stdout.", kOptions)
                   .c_str(),
               stdout);
    return 0;
  }
  GenerateRequest req;
  req.prompt = a.has("prompt") ? a.get("prompt").value_or("") : read_stdin();
  SamplingParams& p = req.params;
  p.max_new_tokens = a.get_int("max-new-tokens").value_or(20);
  p.temperature = a.get_double("temperature");
  p.top_k = a.get_int("top-k");
  p.top_p = a.get_double("top-p");
  p.typical_p = a.get_double("typical-p");
  p.repetition_penalty = a.get_double("repetition-penalty");
  p.seed = a.get_uint("seed");
  p.do_sample = a.has("do-sample");
  p.stop = a.all("stop");
  p.validate();
  const bool json = a.has("json");
  req.prefill_details = json;
  const int64_t threads = a.get_int("threads").value_or(0);
  if (threads < 0) throw InvalidArgument("--threads must be >= 0");

  const std::string dir = a.get("model").value_or(default_model_dir());
  auto model = FalconModel::load(dir);
  Tokenizer tok = Tokenizer::from_file((std::filesystem::path(dir) / "tokenizer.json").string());
  const std::string device = a.get("device").value_or("cpu");
  const std::string precision = a.get("activation-precision").value_or("mixed");
  CudaEngineOptions co;
  set_activation_precision(co, precision, "--activation-precision");
  std::unique_ptr<Engine> engine;
  if (device == "cuda") {
    co.kv_tokens = model->config.max_position_embeddings;
    co.max_step_tokens = model->config.max_position_embeddings;
    ProgressBar upload("uploading weights to the GPU");
    co.upload_progress = [&upload](std::size_t d, std::size_t t) { upload.update(d, t); };
    engine = std::make_unique<CudaEngine>(model, co);
  } else if (device == "cpu") {
    CpuEngineOptions eo;
    eo.threads = static_cast<int>(threads);
    eo.kv_tokens = model->config.max_position_embeddings;
    engine = std::make_unique<CpuEngine>(model, eo);
  } else {
    throw InvalidArgument("--device must be cpu or cuda, got '" + device + "'");
  }
  Generator gen(*engine, tok);

  TokenCallback stream;
  if (!json)
    stream = [](const TokenDetail&, std::string_view piece) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
    };
  DoneEvent r = gen.run(req, stream);
  if (!json) {
    std::fputc('\n', stdout);
    return 0;
  }
  JsonWriter w;
  w.begin_object().key("generated_text").value(r.generated_text).key("details").begin_object();
  w.key("finish_reason").value(stop_reason_name(r.reason));
  w.key("generated_tokens").value(static_cast<int64_t>(r.tokens.size()));
  w.key("seed").value(r.seed);
  w.key("prefill").begin_array();
  for (const auto& t : r.prefill) write_token(w, t, false);
  w.end_array().key("tokens").begin_array();
  for (const auto& t : r.tokens) write_token(w, t, true);
  w.end_array().end_object().end_object();
  std::printf("%s\n", w.str().c_str());
  return 0;
}

}  // namespace eyrie::cli
