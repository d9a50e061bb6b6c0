// eyrie: entry point and subcommand dispatch. Exit codes: 0 success, 2 bad arguments, 1 other errors.
#include <cstdio>
#include <cstring>
#include <exception>
#include <iostream>
#include <string>

#include "model/error.hpp"
#include "tools/eyrie/commands.hpp"

namespace {

const char* kUsage =
    "usage: eyrie <command> [options]\n"
    "\n"
    "commands:\n"
    "  serve      serve the HTTP and WebSocket APIs (TGI, SageMaker, /ws)\n"
    "  generate   generate text from a prompt, streaming it to stdout (or one JSON object)\n"
    "  tokenize   print the token ids and pieces of a text as JSON\n"
    "\n"
    "Run 'eyrie <command> --help' for the options of a command.\n";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  const std::string cmd = argv[1];
  std::span<char*> rest(argv + 2, static_cast<std::size_t>(argc - 2));
  try {
    if (cmd == "--help" || cmd == "-h" || cmd == "help") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (cmd == "serve") return eyrie::cli::serve_command(rest);
    if (cmd == "generate") return eyrie::cli::generate_command(rest);
    if (cmd == "tokenize") return eyrie::cli::tokenize_command(rest);
    std::fprintf(stderr, "eyrie: unknown command '%s'\n\n%s", cmd.c_str(), kUsage);
    return 2;
  } catch (const eyrie::InvalidArgument& e) {
    std::fprintf(stderr, "eyrie %s: %s\n", cmd.c_str(), e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "eyrie %s: error: %s\n", cmd.c_str(), e.what());
    return 1;
  }
}
