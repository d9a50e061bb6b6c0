// Safetensors parsing: valid files, shards, and every kind of damage named in the error.
#include "model/safetensors.hpp"

#include <gtest/gtest.h>

#include "model/error.hpp"
#include "tests/support/temp_dir.hpp"

namespace eyrie {
namespace {

using test::RawTensor;
using test::TempDir;

void expect_error(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    FAIL() << "no error thrown";
  } catch (const Error& e) {
    for (const auto& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what() << " lacks " << p;
  }
}

TEST(Safetensors, ReadsTensorsInPlace) {
  TempDir dir;
  dir.write("model.safetensors",
            test::safetensors_image({{"a", "BF16", {2, 2}, test::bf16_bytes({1, 2, 3, 4})},
                                     {"b", "F32", {1}, std::string("\0\0\x80\x3f", 4)}}));
  WeightArchive w = WeightArchive::open_dir(dir.path().string());
  ASSERT_EQ(w.tensors().size(), 2u);
  const TensorView* a = w.find("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->dtype, DType::bf16);
  EXPECT_EQ(a->shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(bf16_to_f32(static_cast<const uint16_t*>(a->data)[3]), 4.0f);
  EXPECT_EQ(*static_cast<const float*>(w.find("b")->data), 1.0f);
}

TEST(Safetensors, ReadsShardsFromIndex) {
  TempDir dir;
  dir.write("s1.safetensors", test::safetensors_image({{"x", "F16", {1}, std::string("\0\x3c", 2)}}));
  dir.write("s2.safetensors", test::safetensors_image({{"y", "BF16", {1}, test::bf16_bytes({2})}}));
  dir.write("model.safetensors.index.json",
            R"({"metadata":{},"weight_map":{"x":"s1.safetensors","y":"s2.safetensors"}})");
  WeightArchive w = WeightArchive::open_dir(dir.path().string());
  EXPECT_EQ(f16_to_f32(*static_cast<const uint16_t*>(w.find("x")->data)), 1.0f);
  EXPECT_EQ(bf16_to_f32(*static_cast<const uint16_t*>(w.find("y")->data)), 2.0f);
}

TEST(Safetensors, IndexNamingWrongShardIsAnError) {
  TempDir dir;
  dir.write("s1.safetensors", test::safetensors_image({{"x", "F16", {1}, std::string("\0\x3c", 2)}}));
  dir.write("s2.safetensors", test::safetensors_image({{"y", "F16", {1}, std::string("\0\x3c", 2)}}));
  dir.write("model.safetensors.index.json",
            R"({"weight_map":{"x":"s2.safetensors","y":"s2.safetensors"}})");
  expect_error([&] { WeightArchive::open_dir(dir.path().string()); }, {"index.json", "'x'"});
}

TEST(Safetensors, MissingFiles) {
  TempDir dir;
  expect_error([&] { WeightArchive::open_dir(dir.path().string()); }, {"no model.safetensors"});
  dir.write("model.safetensors.index.json", R"({"weight_map":{"x":"gone.safetensors"}})");
  expect_error([&] { WeightArchive::open_dir(dir.path().string()); }, {"gone.safetensors", "cannot open"});
}

TEST(Safetensors, TruncatedFile) {
  TempDir dir;
  dir.write("model.safetensors", "abc");
  expect_error([&] { WeightArchive::open_dir(dir.path().string()); }, {"model.safetensors", "truncated"});
}

TEST(Safetensors, HeaderLengthPastEnd) {
  TempDir dir;
  std::string img = test::safetensors_image({{"a", "BF16", {1}, test::bf16_bytes({1})}});
  img[0] = '\xff';
  img[1] = '\xff';
  dir.write("model.safetensors", img);
  expect_error([&] { WeightArchive::open_dir(dir.path().string()); }, {"model.safetensors", "past the end"});
}

TEST(Safetensors, MalformedHeaderJson) {
  TempDir dir;
  std::string header = "{\"a\": {\"dtype\": ";
  std::string img(8, '\0');
  img[0] = static_cast<char>(header.size());
  dir.write("model.safetensors", img + header);
  expect_error([&] { WeightArchive::open_dir(dir.path().string()); }, {"model.safetensors", "malformed"});
}

TEST(Safetensors, OffsetsOutsideData) {
  TempDir dir;
  std::string img = test::safetensors_image({{"w", "BF16", {4}, test::bf16_bytes({1, 2, 3, 4})}});
  dir.write("model.safetensors", img.substr(0, img.size() - 2));
  expect_error([&] { WeightArchive::open_dir(dir.path().string()); }, {"'w'", "outside the data"});
}

TEST(Safetensors, UnsupportedDtype) {
  TempDir dir;
  dir.write("model.safetensors", test::safetensors_image({{"q", "I8", {2}, std::string(2, '\1')}}));
  expect_error([&] { WeightArchive::open_dir(dir.path().string()); }, {"'q'", "unsupported dtype I8"});
}

TEST(Safetensors, ByteCountDisagreesWithShape) {
  TempDir dir;
  dir.write("model.safetensors", test::safetensors_image({{"s", "F32", {3}, std::string(8, '\0')}}));
  expect_error([&] { WeightArchive::open_dir(dir.path().string()); }, {"'s'", "needs 12"});
}

}  // namespace
}  // namespace eyrie
