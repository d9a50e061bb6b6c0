// Model directory loading.
#include "model/falcon_model.hpp"

#include <filesystem>

#include "model/error.hpp"

namespace eyrie {

std::shared_ptr<const FalconModel> FalconModel::load(const std::string& dir) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(dir)) throw Error(dir + ": model directory does not exist");
  auto m = std::make_shared<FalconModel>();
  m->dir = dir;
  m->config = FalconConfig::from_file((fs::path(dir) / "config.json").string());
  m->archive = WeightArchive::open_dir(dir);
  m->weights = bind_falcon_weights(m->config, m->archive, dir);
  return m;
}

std::size_t FalconModel::weight_bytes() const {
  std::size_t n = 0;
  for (const auto& [name, t] : archive.tensors()) n += t.nbytes;
  return n;
}

}  // namespace eyrie
