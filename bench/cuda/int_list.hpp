// "16,64,256" from a command line as numbers; "none" for an empty list.
#pragma once

#include <cstring>
#include <sstream>
#include <string>
#include <vector>

inline std::vector<int> int_list(const char* arg) {
  std::vector<int> v;
  if (!std::strcmp(arg, "none")) return v;
  std::stringstream ss(arg);
  for (std::string t; std::getline(ss, t, ',');) v.push_back(std::stoi(t));
  return v;
}
