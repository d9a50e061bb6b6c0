// A runtime serving the bundled tiny model on an ephemeral port, for integration tests.
#pragma once

#include <gtest/gtest.h>
#include <simdjson.h>

#include <memory>
#include <string>

#include "eyrie/runtime.hpp"
#include "tests/support/http_client.hpp"
#include "tests/support/temp_dir.hpp"

namespace eyrie::test {

class ServerTest : public ::testing::Test {
 protected:
  static RuntimeOptions default_options() {
    RuntimeOptions o;
    o.model_dir = test_data("models/falcon-7b-tiny");
    o.threads_per_replica = 1;
    o.kv_cache_tokens = 8192;
    o.max_total_tokens = 512;
    return o;
  }
  void start(RuntimeOptions o = default_options()) {
    rt_ = Runtime::create(o);
    port_ = rt_->serve("127.0.0.1", 0);
  }
  void TearDown() override {
    if (rt_) rt_->shutdown(std::chrono::milliseconds(0));
    rt_.reset();
  }
  // The value of a gauge or counter line in /metrics.
  double metric(const std::string& name) {
    HttpResult r = http_request(port_, "GET", "/metrics");
    auto at = r.body.find("\n" + name + " ");
    return at == std::string::npos ? -1 : std::stod(r.body.substr(at + name.size() + 2));
  }
  // Polls until no KV block is in use (frees happen at the next engine step).
  bool kv_drains() {
    for (int i = 0; i < 200; ++i) {
      if (metric("eyrie_kv_blocks_used") == 0) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

  std::unique_ptr<Runtime> rt_;
  uint16_t port_ = 0;
  simdjson::dom::parser parser_;
};

}  // namespace eyrie::test
