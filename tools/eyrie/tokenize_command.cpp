// eyrie tokenize: ids and per-token pieces of a text, as one JSON object.
#include <cstdio>
#include <filesystem>

#include "model/tokenizer/tokenizer.hpp"
#include "net/json_writer.hpp"
#include "tools/eyrie/commands.hpp"
#include "tools/eyrie/options.hpp"

namespace eyrie::cli {
namespace {

const OptionSpec kOptions[] = {
    {"model", "DIR", "model directory holding tokenizer.json (default: the bundled model)"},
    {"text", "T", "text to tokenize (default: all of standard input)"},
    {"help", "", "show this help"},
};

}  // namespace

int tokenize_command(std::span<char*> args) {
  ParsedArgs a = parse_options(kOptions, args);
  if (a.has("help")) {
    std::fputs(usage("eyrie tokenize [--model DIR] [--text T]",
                     "Prints {\"ids\":[...],\"tokens\":[...]}, tokens being the decoded piece of each id.",
                     kOptions).c_str(), stdout);
    return 0;
  }
  const std::string dir = a.get("model").value_or(default_model_dir());
  const std::string text = a.has("text") ? a.get("text").value_or("") : read_stdin();
  Tokenizer tok = Tokenizer::from_file((std::filesystem::path(dir) / "tokenizer.json").string());
  std::vector<int32_t> ids = tok.encode(text);
  JsonWriter w;
  w.begin_object().key("ids").begin_array();
  for (int32_t id : ids) w.value(id);
  w.end_array().key("tokens").begin_array();
  for (int32_t id : ids) w.value(tok.decode(std::span<const int32_t>(&id, 1)));
  w.end_array().end_object();
  std::printf("%s\n", w.str().c_str());
  return 0;
}

}  // namespace eyrie::cli
