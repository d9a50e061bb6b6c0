// `eyrie serve` as a process: it logs its address, serves, and exits 0 on SIGTERM; bad settings
// exit 2 naming the key.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "tests/support/http_client.hpp"

namespace eyrie {
namespace {

struct Child {
  pid_t pid = -1;
  FILE* err = nullptr;  // the child's stderr
};

Child spawn_serve(const std::vector<std::string>& args, const std::vector<std::string>& env = {}) {
  int fds[2];
  EXPECT_EQ(pipe(fds), 0);
  Child c;
  c.pid = fork();
  if (c.pid == 0) {
    dup2(fds[1], 2);
    close(fds[0]);
    for (const auto& e : env) putenv(const_cast<char*>(e.c_str()));
    std::vector<char*> argv{const_cast<char*>(EYRIE_BIN), const_cast<char*>("serve")};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(EYRIE_BIN, argv.data());
    _exit(127);
  }
  close(fds[1]);
  c.err = fdopen(fds[0], "r");
  return c;
}

int wait_exit(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string read_all(FILE* f) {
  std::string s;
  char buf[512];
  while (fgets(buf, sizeof buf, f)) s += buf;
  return s;
}

TEST(ServeProcess, ServesThenDrainsOnSigterm) {
  Child c = spawn_serve({"--port", "0", "--threads", "1"});
  int port = 0;
  char line[1024];
  std::string log;
  while (port == 0 && fgets(line, sizeof line, c.err)) {
    log += line;
    if (const char* at = std::strstr(line, "listening on http://127.0.0.1:")) port = std::atoi(at + 30);
  }
  ASSERT_GT(port, 0) << log;
  EXPECT_NE(log.find("ready in"), std::string::npos);
  test::HttpResult r = test::http_request(static_cast<uint16_t>(port), "POST", "/generate",
                                          R"({"inputs":"The capital of France is","parameters":{"max_new_tokens":2}})");
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.body.find(" funnel dehors"), std::string::npos);
  kill(c.pid, SIGTERM);
  log += read_all(c.err);
  EXPECT_EQ(wait_exit(c.pid), 0) << log;
  EXPECT_NE(log.find("SIGTERM received"), std::string::npos);
  fclose(c.err);
}

TEST(ServeProcess, BadSettingsExitTwoNamingTheKey) {
  struct Case {
    std::vector<std::string> args, env;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {{"--bogus", "1"}, {}, "unknown option --bogus"},
      {{"--port", "99999"}, {}, "'port' is out of range"},
      {{}, {"OPTION_MAX_ROLLING_BATCH_SIZE=lots"}, "OPTION_MAX_ROLLING_BATCH_SIZE"},
      {{"--config", "/nonexistent.properties"}, {}, "cannot read"},
  };
  for (const auto& k : cases) {
    Child c = spawn_serve(k.args, k.env);
    std::string err = read_all(c.err);
    EXPECT_EQ(wait_exit(c.pid), 2) << err;
    EXPECT_NE(err.find(k.expect), std::string::npos) << err;
    fclose(c.err);
  }
}

}  // namespace
}  // namespace eyrie
