// Option parsing and help text.
#include "tools/eyrie/options.hpp"

#include <cerrno>
#include <cmath>
#include <cstdlib>

namespace eyrie::cli {

std::optional<std::string> ParsedArgs::get(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end() || it->second.empty()) return std::nullopt;
  return it->second.back();
}

std::vector<std::string> ParsedArgs::all(const std::string& name) const {
  auto it = values_.find(name);
  return it == values_.end() ? std::vector<std::string>{} : it->second;
}

std::optional<int64_t> ParsedArgs::get_int(const std::string& name) const {
  auto v = get(name);
  if (!v) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  long long n = std::strtoll(v->c_str(), &end, 10);
  if (v->empty() || *end != '\0' || errno == ERANGE)
    throw InvalidArgument("--" + name + ": '" + *v + "' is not an integer");
  return n;
}

std::optional<uint64_t> ParsedArgs::get_uint(const std::string& name) const {
  auto v = get(name);
  if (!v) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  unsigned long long n = std::strtoull(v->c_str(), &end, 10);
  if (v->empty() || (*v)[0] == '-' || *end != '\0' || errno == ERANGE)
    throw InvalidArgument("--" + name + ": '" + *v + "' is not a non-negative integer");
  return n;
}

std::optional<double> ParsedArgs::get_double(const std::string& name) const {
  auto v = get(name);
  if (!v) return std::nullopt;
  char* end = nullptr;
  double d = std::strtod(v->c_str(), &end);
  if (v->empty() || *end != '\0' || !std::isfinite(d))
    throw InvalidArgument("--" + name + ": '" + *v + "' is not a number");
  return d;
}

ParsedArgs parse_options(std::span<const OptionSpec> specs, std::span<char*> args) {
  ParsedArgs out;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string a = args[i];
    if (a.rfind("--", 0) != 0 || a.size() == 2)
      throw InvalidArgument("unexpected argument '" + a + "' (options start with --)");
    std::string name = a.substr(2);
    std::optional<std::string> inline_value;
    if (auto eq = name.find('='); eq != std::string::npos) {
      inline_value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    const OptionSpec* spec = nullptr;
    for (const auto& s : specs)
      if (s.name == name) spec = &s;
    if (!spec) throw InvalidArgument("unknown option --" + name);
    if (out.values_.count(name) && !spec->repeatable)
      throw InvalidArgument("option --" + name + " given more than once");
    auto& slot = out.values_[name];
    if (spec->value_name.empty()) {
      if (inline_value) throw InvalidArgument("option --" + name + " takes no value");
      continue;
    }
    if (inline_value) {
      slot.push_back(*inline_value);
    } else {
      if (i + 1 >= args.size()) throw InvalidArgument("option --" + name + " needs a value (" + spec->value_name + ")");
      slot.push_back(args[++i]);
    }
  }
  return out;
}

std::string usage(const std::string& synopsis, const std::string& summary,
                  std::span<const OptionSpec> specs) {
  std::string s = "usage: " + synopsis + "\n\n" + summary + "\n\noptions:\n";
  for (const auto& o : specs) {
    std::string flag = "  --" + o.name + (o.value_name.empty() ? "" : " " + o.value_name);
    if (flag.size() < 28) flag.resize(28, ' ');
    else flag += "\n" + std::string(28, ' ');
    s += flag + o.help + (o.repeatable ? " (repeatable)" : "") + "\n";
  }
  return s;
}

}  // namespace eyrie::cli
