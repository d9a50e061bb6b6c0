// serving.properties, OPTION_ variables and flags, with errors that name the key.
#include "config/serving_options.hpp"

#include <gtest/gtest.h>

#include "model/error.hpp"
#include "tests/support/temp_dir.hpp"

namespace eyrie {
namespace {

std::string error_of(const std::optional<std::string>& path, std::map<std::string, std::string> env,
                     std::map<std::string, std::string> flags) {
  try {
    ServingOptions::resolve(path, env, flags);
  } catch (const InvalidArgument& e) {
    return e.what();
  }
  return "";
}

TEST(ServingOptions, DefaultsFileEnvironmentFlagsInOrder) {
  test::TempDir dir;
  dir.write("serving.properties",
            "# comment\nengine=Python\noption.model_id=/models/falcon\noption.port = 9000\n"
            "option.max_rolling_batch_size=8\noption.rolling_batch=auto\n");
  auto o = ServingOptions::resolve(dir.file("serving.properties"),
                                   {{"OPTION_PORT", "9100"}, {"OPTION_QUEUE_SIZE", "3"}, {"PATH", "/bin"}},
                                   {{"queue-size", "5"}});
  EXPECT_EQ(o.str("model_id"), "/models/falcon");
  EXPECT_EQ(o.integer("port"), 9100);
  EXPECT_EQ(o.source("port"), "OPTION_PORT");
  EXPECT_EQ(o.integer("queue_size"), 5);
  EXPECT_EQ(o.source("queue_size"), "--queue-size");
  EXPECT_EQ(o.integer("max_rolling_batch_size"), 8);
  EXPECT_EQ(o.str("host"), "127.0.0.1");
  EXPECT_EQ(o.source("host"), "default");
}

TEST(ServingOptions, ErrorsNameTheKeyAndPlace) {
  test::TempDir dir;
  dir.write("a.properties", "option.max_rolling_batchsize=8\n");
  EXPECT_NE(error_of(dir.file("a.properties"), {}, {}).find("a.properties:1: unknown option 'max_rolling_batchsize'"),
            std::string::npos);
  dir.write("b.properties", "option.port=eighty\n");
  EXPECT_NE(error_of(dir.file("b.properties"), {}, {}).find("'port' must be an integer"), std::string::npos);
  dir.write("c.properties", "just words\n");
  EXPECT_NE(error_of(dir.file("c.properties"), {}, {}).find("expected key=value"), std::string::npos);
  dir.write("d.properties", "model_id=/x\n");
  EXPECT_NE(error_of(dir.file("d.properties"), {}, {}).find("unknown key 'model_id'"), std::string::npos);
  EXPECT_NE(error_of(std::nullopt, {{"OPTION_PORT", "70000"}}, {}).find("OPTION_PORT"), std::string::npos);
  EXPECT_NE(error_of(std::nullopt, {}, {{"bogus", "1"}}).find("--bogus: unknown option 'bogus'"), std::string::npos);
  EXPECT_NE(error_of(std::nullopt, {}, {{"dtype", "int4"}}).find("dtype"), std::string::npos);
  EXPECT_NE(error_of(std::nullopt, {}, {{"trust-remote-code", "yes"}}).find("true or false"), std::string::npos);
  EXPECT_NE(error_of(std::nullopt, {}, {{"device", "tpu"}}).find("cpu or cuda"), std::string::npos);
  EXPECT_NE(error_of(std::nullopt, {{"OPTION_ACTIVATION_PRECISION", "fp8"}}, {})
                .find("OPTION_ACTIVATION_PRECISION: 'activation_precision' must be mixed, split or bf16, got 'fp8'"),
            std::string::npos);
  EXPECT_NE(error_of("/nonexistent/serving.properties", {}, {}).find("cannot read"), std::string::npos);
  EXPECT_NE(error_of(std::nullopt, {{"OPTION_PEER_SUMS", "maybe"}}, {}).find("true or false"), std::string::npos);
}

TEST(ServingOptions, PeerSumsAreOnUnlessTurnedOff) {
  EXPECT_TRUE(ServingOptions::resolve(std::nullopt, {}, {}).boolean("peer_sums"));
  EXPECT_FALSE(ServingOptions::resolve(std::nullopt, {{"OPTION_PEER_SUMS", "false"}}, {}).boolean("peer_sums"));
  EXPECT_FALSE(ServingOptions::resolve(std::nullopt, {}, {{"peer-sums", "false"}}).boolean("peer_sums"));
}

}  // namespace
}  // namespace eyrie
