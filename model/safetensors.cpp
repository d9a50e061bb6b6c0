// Safetensors parsing: header length, JSON header, dtype and bounds checks for every tensor.
#include "model/safetensors.hpp"

#include <simdjson.h>

#include <filesystem>
#include <set>

#include "model/error.hpp"

namespace eyrie {
namespace {

namespace dom = simdjson::dom;

bool parse_dtype(std::string_view s, DType& out) {
  if (s == "BF16") out = DType::bf16;
  else if (s == "F16") out = DType::f16;
  else if (s == "F32") out = DType::f32;
  else return false;
  return true;
}

uint64_t read_le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string TensorView::shape_string() const {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

void WeightArchive::add_file(const std::string& path) {
  auto file = MappedFile::open(path);
  paths_.push_back(std::make_unique<std::string>(path));
  const std::string* fname = paths_.back().get();
  const uint8_t* base = file->data();
  const std::size_t size = file->size();
  if (size < 8) throw Error(path + ": truncated safetensors file (" + std::to_string(size) + " bytes, no header length)");
  uint64_t header_len = read_le64(base);
  if (header_len > size - 8)
    throw Error(path + ": safetensors header length " + std::to_string(header_len) +
                " runs past the end of the file (" + std::to_string(size) + " bytes)");
  const uint8_t* data = base + 8 + header_len;
  const std::size_t data_size = size - 8 - header_len;

  dom::parser parser;
  simdjson::padded_string header(reinterpret_cast<const char*>(base + 8), header_len);
  dom::element root;
  if (auto err = parser.parse(header).get(root))
    throw Error(path + ": malformed safetensors header JSON: " + simdjson::error_message(err));
  dom::object obj;
  if (root.get(obj)) throw Error(path + ": safetensors header is not a JSON object");

  for (auto field : obj) {
    std::string name(field.key);
    if (name == "__metadata__") continue;
    auto where = path + ": tensor '" + name + "'";
    dom::object t;
    if (field.value.get(t)) throw Error(where + ": header entry is not an object");
    std::string_view dtype_s;
    if (t["dtype"].get(dtype_s)) throw Error(where + ": missing or non-string 'dtype'");
    TensorView v;
    v.name = name;
    v.file = fname;
    if (!parse_dtype(dtype_s, v.dtype))
      throw Error(where + ": unsupported dtype " + std::string(dtype_s) + " (supported: BF16, F16, F32)");
    dom::array shape, offsets;
    if (t["shape"].get(shape)) throw Error(where + ": missing or non-array 'shape'");
    for (auto d : shape) {
      int64_t n;
      if (d.get(n) || n < 0) throw Error(where + ": shape entries must be non-negative integers");
      v.shape.push_back(n);
    }
    if (t["data_offsets"].get(offsets) || offsets.size() != 2)
      throw Error(where + ": 'data_offsets' must be an array of two integers");
    uint64_t begin, end;
    if (offsets.at(0).get(begin) || offsets.at(1).get(end))
      throw Error(where + ": 'data_offsets' must be non-negative integers");
    if (begin > end || end > data_size)
      throw Error(where + ": data offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                  ") lie outside the data section (" + std::to_string(data_size) + " bytes)");
    uint64_t expect = static_cast<uint64_t>(v.numel()) * dtype_size(v.dtype);
    if (end - begin != expect)
      throw Error(where + ": holds " + std::to_string(end - begin) + " bytes but shape " +
                  v.shape_string() + " of " + std::string(dtype_name(v.dtype)) + " needs " +
                  std::to_string(expect));
    v.data = data + begin;
    v.nbytes = end - begin;
    if (tensors_.count(name)) throw Error(where + ": tensor appears in more than one file");
    tensors_.emplace(name, std::move(v));
  }
  files_.push_back(std::move(file));
}

WeightArchive WeightArchive::open_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  WeightArchive a;
  fs::path single = fs::path(dir) / "model.safetensors";
  fs::path index = fs::path(dir) / "model.safetensors.index.json";
  if (fs::exists(index)) {
    dom::parser parser;
    dom::element root;
    simdjson::padded_string json;
    if (simdjson::padded_string::load(index.string()).get(json))
      throw Error(index.string() + ": cannot read");
    if (auto err = parser.parse(json).get(root))
      throw Error(index.string() + ": malformed JSON: " + simdjson::error_message(err));
    dom::object map;
    if (root["weight_map"].get(map)) throw Error(index.string() + ": missing object 'weight_map'");
    std::set<std::string> shards;
    for (auto kv : map) {
      std::string_view f;
      if (kv.value.get(f)) throw Error(index.string() + ": weight_map entry '" + std::string(kv.key) + "' is not a file name");
      if (f.find('/') != std::string_view::npos)
        throw Error(index.string() + ": shard name '" + std::string(f) + "' must be a plain file name");
      shards.insert(std::string(f));
    }
    for (const auto& s : shards) a.add_file((fs::path(dir) / s).string());
    for (auto kv : map) {
      std::string_view f;
      if (kv.value.get(f)) continue;
      const TensorView* t = a.find(std::string(kv.key));
      if (!t || *t->file != (fs::path(dir) / f).string())
        throw Error(index.string() + ": tensor '" + std::string(kv.key) + "' is not in shard " + std::string(f));
    }
  } else if (fs::exists(single)) {
    a.add_file(single.string());
  } else {
    throw Error(dir + ": no model.safetensors or model.safetensors.index.json");
  }
  return a;
}

const TensorView* WeightArchive::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

}  // namespace eyrie
