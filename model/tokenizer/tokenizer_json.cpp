// tokenizer.json parsing with simdjson's DOM API.
#include "model/tokenizer/tokenizer_json.hpp"

#include <simdjson.h>

#include <initializer_list>

#include "model/error.hpp"

namespace eyrie {
namespace {

namespace dom = simdjson::dom;

class JsonReader {
 public:
  explicit JsonReader(const std::string& path) : path_(path) {}

  [[noreturn]] void fail(std::string_view what) const { throw Error(join({path_, ": ", what})); }
  // Joins with append: GCC 12 warns falsely (-Wrestrict) on `"literal" + std::string`.
  static std::string join(std::initializer_list<std::string_view> parts) {
    std::string s;
    for (const auto p : parts) s.append(p);
    return s;
  }

  dom::element field(dom::object obj, std::string_view key, std::string_view where) const {
    dom::element value;
    if (obj.at_key(key).get(value) != simdjson::SUCCESS) {
      fail(join({"missing field '", where, key, "'"}));
    }
    return value;
  }
  dom::object object(dom::element e, std::string_view what) const {
    dom::object obj;
    if (e.get(obj) != simdjson::SUCCESS) fail(join({"'", what, "' is not an object"}));
    return obj;
  }
  dom::array array(dom::element e, std::string_view what) const {
    dom::array arr;
    if (e.get(arr) != simdjson::SUCCESS) fail(join({"'", what, "' is not an array"}));
    return arr;
  }
  std::string string(dom::element e, std::string_view what) const {
    std::string_view s;
    if (e.get(s) != simdjson::SUCCESS) fail(join({"'", what, "' is not a string"}));
    return std::string(s);
  }
  int64_t integer(dom::element e, std::string_view what) const {
    int64_t v;
    if (e.get(v) != simdjson::SUCCESS) fail(join({"'", what, "' is not an integer"}));
    return v;
  }
  // A missing key counts as the default, as serde's defaults in tokenizers do.
  bool flag(dom::object obj, std::string_view key, bool fallback, std::string_view where) const {
    dom::element e;
    if (obj.at_key(key).get(e) != simdjson::SUCCESS || e.is_null()) return fallback;
    bool v;
    if (e.get(v) != simdjson::SUCCESS) {
      fail(join({"'", where, key, "' is not a boolean"}));
    }
    return v;
  }
  bool is_null_or_missing(dom::object obj, std::string_view key) const {
    dom::element e;
    return obj.at_key(key).get(e) != simdjson::SUCCESS || e.is_null();
  }

 private:
  const std::string& path_;
};

int32_t token_id(const JsonReader& r, int64_t id, std::string_view what) {
  if (id < 0 || id > INT32_MAX)
    r.fail("id " + std::to_string(id) + " of " + std::string(what) + " is out of range");
  return static_cast<int32_t>(id);
}

void read_model(const JsonReader& r, dom::object model, TokenizerSpec& spec) {
  const std::string type = r.string(r.field(model, "type", "model."), "model.type");
  if (type != "BPE") r.fail("model type '" + type + "' is not supported (expected BPE)");
  if (!r.is_null_or_missing(model, "dropout")) r.fail("BPE dropout is not supported");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    dom::element e;
    std::string_view s;
    if (model.at_key(key).get(e) == simdjson::SUCCESS && !e.is_null() &&
        (e.get(s) != simdjson::SUCCESS || !s.empty())) {
      r.fail(std::string("model.") + key + " is not supported");
    }
  }
  if (r.flag(model, "byte_fallback", false, "model.")) r.fail("byte_fallback is not supported");
  if (r.flag(model, "ignore_merges", false, "model.")) r.fail("ignore_merges is not supported");

  for (const auto kv : r.object(r.field(model, "vocab", "model."), "model.vocab")) {
    const std::string token(kv.key);
    spec.vocab[token] = token_id(r, r.integer(kv.value, "model.vocab[" + token + "]"), token);
  }
  size_t rank = 0;
  for (const dom::element m : r.array(r.field(model, "merges", "model."), "model.merges")) {
    std::string_view text;
    dom::array pair;
    if (m.get(text) == simdjson::SUCCESS) {
      // tokenizers splits on every space and wants exactly two parts.
      const size_t space = text.find(' ');
      if (space == std::string_view::npos || text.find(' ', space + 1) != std::string_view::npos) {
        r.fail("merge " + std::to_string(rank) + " '" + std::string(text) +
               "' is not two tokens separated by one space");
      }
      spec.merges.emplace_back(std::string(text.substr(0, space)),
                               std::string(text.substr(space + 1)));
    } else if (m.get(pair) == simdjson::SUCCESS && pair.size() == 2) {
      spec.merges.emplace_back(r.string(pair.at(0).value_unsafe(), "model.merges[][0]"),
                               r.string(pair.at(1).value_unsafe(), "model.merges[][1]"));
    } else {
      r.fail("merge " + std::to_string(rank) + " is neither \"a b\" nor [\"a\", \"b\"]");
    }
    ++rank;
  }
}

void read_added_tokens(const JsonReader& r, dom::element added, TokenizerSpec& spec) {
  for (const dom::element e : r.array(added, "added_tokens")) {
    const dom::object t = r.object(e, "added_tokens[]");
    AddedToken token;
    token.content = r.string(r.field(t, "content", "added_tokens[]."), "added_tokens[].content");
    token.id = token_id(r, r.integer(r.field(t, "id", "added_tokens[]."), "added_tokens[].id"),
                        token.content);
    token.special = r.flag(t, "special", false, "added_tokens[].");
    for (const char* key : {"lstrip", "rstrip", "single_word"}) {
      if (r.flag(t, key, false, "added_tokens[].")) {
        r.fail("added token '" + token.content + "' sets " + key + ", which is not supported");
      }
    }
    spec.added_tokens.push_back(std::move(token));
  }
}

// Accepts [Punctuation(Contiguous)], ByteLevel(no prefix space, regex), [Digits(grouped)],
// [Split("[0-9][0-9][0-9]", Isolated)] in that order, alone or in a Sequence.
void read_pre_tokenizer(const JsonReader& r, dom::element pre, TokenizerSpec& spec) {
  std::vector<dom::object> steps;
  const dom::object top = r.object(pre, "pre_tokenizer");
  if (r.string(r.field(top, "type", "pre_tokenizer."), "pre_tokenizer.type") == "Sequence") {
    for (const dom::element e :
         r.array(r.field(top, "pretokenizers", "pre_tokenizer."), "pre_tokenizer.pretokenizers")) {
      steps.push_back(r.object(e, "pre_tokenizer.pretokenizers[]"));
    }
  } else {
    steps.push_back(top);
  }
  auto& opts = spec.pre_tokenizer;
  int stage = 0;  // 0 before ByteLevel, 1 after it, 2 after Digits, 3 after Split
  for (const dom::object s : steps) {
    const std::string type = r.string(r.field(s, "type", "pre_tokenizer."), "pre_tokenizer.type");
    const auto opt_string = [&](std::string_view key) {
      dom::element e;
      std::string_view v;
      return s.at_key(key).get(e) == simdjson::SUCCESS && e.get(v) == simdjson::SUCCESS
                 ? std::string(v)
                 : std::string();
    };
    const auto flag = [&](std::string_view key, bool fallback) {
      return r.flag(s, key, fallback, "pre_tokenizer.");
    };
    const auto splits_digit_triples = [&] {
      dom::element pattern;
      std::string_view regex;
      return opt_string("behavior") == "Isolated" && !flag("invert", false) &&
             s.at_key("pattern").get(pattern) == simdjson::SUCCESS &&
             pattern["Regex"].get(regex) == simdjson::SUCCESS && regex == "[0-9][0-9][0-9]";
    };
    if (type == "Punctuation" && stage == 0 && !opts.punctuation &&
        opt_string("behavior") == "Contiguous") {
      opts.punctuation = true;
    } else if (type == "ByteLevel" && stage == 0 && !flag("add_prefix_space", true) &&
               flag("use_regex", true)) {
      stage = 1;
    } else if (type == "Digits" && stage == 1 && !flag("individual_digits", false)) {
      opts.digits = true;
      stage = 2;
    } else if (type == "Split" && (stage == 1 || stage == 2) && splits_digit_triples()) {
      opts.split_digit_triples = true;
      stage = 3;
    } else {
      r.fail("pre_tokenizer step '" + type + "' (or its options or position) is not supported");
    }
  }
  if (stage == 0) r.fail("pre_tokenizer has no ByteLevel step with use_regex");
}

}  // namespace

TokenizerSpec read_tokenizer_json(const std::string& path) {
  const JsonReader r(path);
  simdjson::padded_string json;
  if (const auto err = simdjson::padded_string::load(path).get(json)) {
    r.fail(std::string("cannot read file: ") + simdjson::error_message(err));
  }
  dom::parser parser;
  dom::element root_element;
  if (const auto err = parser.parse(json).get(root_element)) {
    r.fail(std::string("malformed JSON: ") + simdjson::error_message(err));
  }
  const dom::object root = r.object(root_element, "(top level)");
  TokenizerSpec spec;
  read_model(r, r.object(r.field(root, "model", ""), "model"), spec);
  if (!r.is_null_or_missing(root, "normalizer")) r.fail("a normalizer is not supported");
  read_pre_tokenizer(r, r.field(root, "pre_tokenizer", ""), spec);
  const dom::object decoder = r.object(r.field(root, "decoder", ""), "decoder");
  if (r.string(r.field(decoder, "type", "decoder."), "decoder.type") != "ByteLevel") {
    r.fail("decoder must be ByteLevel");
  }
  if (!r.is_null_or_missing(root, "post_processor")) {
    const dom::object post = r.object(root["post_processor"].value_unsafe(), "post_processor");
    // The ByteLevel post-processor only trims offsets; anything else would add or change ids.
    if (r.string(r.field(post, "type", "post_processor."), "post_processor.type") != "ByteLevel") {
      r.fail("post_processor other than ByteLevel is not supported");
    }
  }
  dom::element added;
  if (root.at_key("added_tokens").get(added) == simdjson::SUCCESS && !added.is_null()) {
    read_added_tokens(r, added, spec);
  }
  return spec;
}

}  // namespace eyrie
