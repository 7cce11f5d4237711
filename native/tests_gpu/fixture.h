// Loading a fixture checkpoint (../shared/fixtures/models/<name>) for the GPU tests without Node: a minimal JSON
// reader, safetensors files read into owned buffers, and config.json mapped to ModelConfig the way
// src/model/config.ts does for llama / mistral / qwen2 (other types: not loaded, the test skips them).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "model/model.h"

namespace lngpu {

struct Json {
  enum Kind { Null, Bool, Number, String, Array, Object } kind = Null;
  bool b = false;
  double num = 0;
  std::string str;
  std::vector<Json> arr;
  std::map<std::string, Json> obj;
  const Json* get(const std::string& k) const {
    auto it = obj.find(k);
    return it == obj.end() ? nullptr : &it->second;
  }
};
Json parse_json(const std::string& text);  // throws std::runtime_error

struct Tensor {
  std::string dtype;  // "F32", "BF16", "F16", "I32"
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;
};
// Every tensor of a .safetensors file.
std::map<std::string, Tensor> read_safetensors(const std::string& path);

struct Fixture {
  std::string name;
  ln::ModelConfig cfg;
  ln::ModelWeights w;
  std::map<std::string, Tensor> tensors;  // owns the weight bytes
  std::vector<int32_t> input_ids;
  std::vector<float> ref_logits;           // [T, V]
  std::vector<int32_t> ref_active_counts;  // [L, I]
};
// Null (with *why set) when the fixture's model type is not one the engine runs.
std::unique_ptr<Fixture> load_fixture(const std::string& dir, const std::string& name, std::string* why);

}  // namespace lngpu
