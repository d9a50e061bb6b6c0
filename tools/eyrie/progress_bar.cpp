#include "tools/eyrie/progress_bar.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace eyrie::cli {

ProgressBar::ProgressBar(std::string label) : label_(std::move(label)), tty_(::isatty(2) != 0) {}

ProgressBar::~ProgressBar() {
  if (drawn_) std::fputc('\n', stderr);
}

void ProgressBar::update(std::size_t done, std::size_t total) {
  if (!tty_) return;
  const std::size_t pct = total ? std::min<std::size_t>(done * 100 / total, 100) : 100;
  if (pct == shown_) return;
  shown_ = pct;
  std::string bar(pct / 4, '#');
  bar.resize(25, ' ');
  std::fprintf(stderr, "\reyrie: %s [%s] %3zu%%", label_.c_str(), bar.c_str(), pct);
  std::fflush(stderr);
  drawn_ = true;
}

}  // namespace eyrie::cli
