// Subcommands of the eyrie program; each returns the process exit code.
#pragma once

#include <span>
#include <string>

namespace eyrie::cli {

int tokenize_command(std::span<char*> args);
int generate_command(std::span<char*> args);
int serve_command(std::span<char*> args);

// Model directory used when --model is not given.
std::string default_model_dir();
// Reads all of standard input (prompt or text when no flag gives it).
std::string read_stdin();

}  // namespace eyrie::cli
