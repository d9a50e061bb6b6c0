// Loading errors: every bad tokenizer.json fails with eyrie::Error naming the file and the problem.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "model/error.hpp"
#include "model/tokenizer/tokenizer.hpp"

namespace eyrie {
namespace {

namespace fs = std::filesystem;

// A small but complete Falcon-style tokenizer.json; `model` and `pre` replace its parts.
std::string tokenizer_json(const std::string& model, const std::string& pre = R"({
    "type": "Sequence", "pretokenizers": [
      {"type": "Punctuation", "behavior": "Contiguous"},
      {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
      {"type": "Digits", "individual_digits": false},
      {"type": "Split", "pattern": {"Regex": "[0-9][0-9][0-9]"}, "behavior": "Isolated",
       "invert": false}]})") {
  return R"({"version": "1.0", "added_tokens": [
    {"id": 0, "content": "<|endoftext|>", "single_word": false, "lstrip": false, "rstrip": false,
     "normalized": false, "special": true}],
  "normalizer": null, "pre_tokenizer": )" +
         pre + R"(, "post_processor": null,
  "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true,
              "use_regex": true},
  "model": )" +
         model + "}";
}

const std::string kGoodModel = R"({"type": "BPE", "dropout": null, "unk_token": null,
  "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": false,
  "byte_fallback": false, "vocab": {"<|endoftext|>": 0, "a": 1, "b": 2, "c": 3, "Ġ": 4,
  "ab": 5, "abc": 6, "Ġab": 7}, "merges": ["a b", "ab c", "Ġ ab"]})";

class TokenizerErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("eyrie_tok_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& content) {
    const std::string path = (dir_ / "tokenizer.json").string();
    std::ofstream(path) << content;
    return path;
  }
  // The message of the Error that loading `path` throws.
  static std::string load_error(const std::string& path) {
    try {
      Tokenizer::from_file(path);
    } catch (const Error& e) {
      return e.what();
    }
    return "(no error)";
  }
  void expect_error(const std::string& content, const std::string& problem) {
    const std::string path = write(content);
    const std::string message = load_error(path);
    EXPECT_NE(message.find(path), std::string::npos) << message;
    EXPECT_NE(message.find(problem), std::string::npos) << message;
  }

  fs::path dir_;
};

TEST_F(TokenizerErrors, SmallValidTokenizerLoadsAndMerges) {
  const Tokenizer tok = Tokenizer::from_file(write(tokenizer_json(kGoodModel)));
  EXPECT_EQ(tok.encode("abc ab<|endoftext|>"), (std::vector<int32_t>{6, 7, 0}));
  EXPECT_EQ(tok.vocab_size(), 8);
}

TEST_F(TokenizerErrors, MissingFile) {
  const std::string path = (dir_ / "absent.json").string();
  const std::string message = load_error(path);
  EXPECT_NE(message.find(path), std::string::npos) << message;
  EXPECT_NE(message.find("cannot read"), std::string::npos) << message;
}

TEST_F(TokenizerErrors, MalformedJson) {
  expect_error(R"({"model": {"type": "BPE", "vocab": {)", "malformed JSON");
  expect_error("", "malformed JSON");
}

TEST_F(TokenizerErrors, WrongModelType) {
  expect_error(tokenizer_json(R"({"type": "WordPiece", "vocab": {}})"),
               "model type 'WordPiece' is not supported");
}

TEST_F(TokenizerErrors, MissingFields) {
  expect_error(tokenizer_json(R"({"type": "BPE", "merges": []})"), "missing field 'model.vocab'");
  expect_error(tokenizer_json(R"({"type": "BPE", "vocab": {}})"), "missing field 'model.merges'");
  expect_error(R"({"normalizer": null})", "missing field 'model'");
}

TEST_F(TokenizerErrors, MergeNamingUnknownToken) {
  std::string model = kGoodModel;
  model.replace(model.find("\"ab c\""), 6, "\"ab zz\"");
  expect_error(tokenizer_json(model), "merge 1 names token 'zz'");
}

TEST_F(TokenizerErrors, MalformedMerge) {
  std::string model = kGoodModel;
  model.replace(model.find("\"a b\""), 5, "\"a b c\"");
  expect_error(tokenizer_json(model), "merge 0 'a b c' is not two tokens");
}

TEST_F(TokenizerErrors, UnsupportedPreTokenizer) {
  expect_error(tokenizer_json(kGoodModel, R"({"type": "Whitespace"})"),
               "pre_tokenizer step 'Whitespace'");
  expect_error(tokenizer_json(kGoodModel, R"({"type": "ByteLevel", "add_prefix_space": true})"),
               "pre_tokenizer step 'ByteLevel'");
}

TEST_F(TokenizerErrors, WrongValueType) {
  std::string model = kGoodModel;
  model.replace(model.find("\"a\": 1"), 6, "\"a\": \"1\"");
  expect_error(tokenizer_json(model), "is not an integer");
}

}  // namespace
}  // namespace eyrie
