// Shared pieces of the subcommands.
#include <iostream>
#include <iterator>

#include "tools/eyrie/commands.hpp"

#ifndef EYRIE_DEFAULT_MODEL
#define EYRIE_DEFAULT_MODEL "tests/data/models/falcon-7b-tiny"
#endif

namespace eyrie::cli {

std::string default_model_dir() {
  if (const char* env = std::getenv("EYRIE_MODEL"); env && *env) return env;
  return EYRIE_DEFAULT_MODEL;
}

std::string read_stdin() {
  return std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
}

}  // namespace eyrie::cli
