// A one-line progress bar on stderr, drawn only when stderr is a terminal.
#pragma once

#include <cstddef>
#include <string>

namespace eyrie::cli {

class ProgressBar {
 public:
  explicit ProgressBar(std::string label);
  ~ProgressBar();  // ends the line if anything was drawn
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  // Redraws when the whole percentage changes.
  void update(std::size_t done, std::size_t total);

 private:
  std::string label_;
  bool tty_;
  bool drawn_ = false;
  std::size_t shown_ = 101;
};

}  // namespace eyrie::cli
