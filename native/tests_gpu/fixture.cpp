#include "fixture.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace lngpu {
namespace {

struct Parser {
  const std::string& s;
  size_t i = 0;
  [[noreturn]] void fail(const char* what) {
    throw std::runtime_error(std::string("json: ") + what + " at offset " + std::to_string(i));
  }
  void ws() {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r')) ++i;
  }
  Json value() {
    ws();
    if (i >= s.size()) fail("unexpected end");
    Json j;
    const char c = s[i];
    if (c == '{') {
      j.kind = Json::Object;
      ++i;
      ws();
      if (s[i] == '}') {
        ++i;
        return j;
      }
      for (;;) {
        ws();
        Json k = value();
        if (k.kind != Json::String) fail("object key");
        ws();
        if (s[i++] != ':') fail("expected :");
        j.obj[k.str] = value();
        ws();
        if (s[i] == ',') {
          ++i;
          continue;
        }
        if (s[i++] != '}') fail("expected }");
        return j;
      }
    }
    if (c == '[') {
      j.kind = Json::Array;
      ++i;
      ws();
      if (s[i] == ']') {
        ++i;
        return j;
      }
      for (;;) {
        j.arr.push_back(value());
        ws();
        if (s[i] == ',') {
          ++i;
          continue;
        }
        if (s[i++] != ']') fail("expected ]");
        return j;
      }
    }
    if (c == '"') {
      j.kind = Json::String;
      ++i;
      while (i < s.size() && s[i] != '"') {
        if (s[i] == '\\') {
          ++i;
          const char e = s[i];
          if (e == 'u') {
            j.str += '?';  // not needed for configs / headers
            i += 4;
          } else {
            j.str += e == 'n' ? '\n' : e == 't' ? '\t' : e;
          }
          ++i;
        } else {
          j.str += s[i++];
        }
      }
      ++i;
      return j;
    }
    if (s.compare(i, 4, "true") == 0) {
      j.kind = Json::Bool;
      j.b = true;
      i += 4;
      return j;
    }
    if (s.compare(i, 5, "false") == 0) {
      j.kind = Json::Bool;
      i += 5;
      return j;
    }
    if (s.compare(i, 4, "null") == 0) {
      i += 4;
      return j;
    }
    j.kind = Json::Number;
    size_t end = 0;
    j.num = std::stod(s.substr(i, 40), &end);
    if (end == 0) fail("bad value");
    i += end;
    return j;
  }
};

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

ln::DType dtype_of(const std::string& d, const std::string& name) {
  if (d == "F32") return ln::DType::F32;
  if (d == "BF16") return ln::DType::BF16;
  if (d == "F16") return ln::DType::F16;
  throw std::runtime_error("tensor " + name + ": unsupported dtype " + d);
}

}  // namespace

Json parse_json(const std::string& text) {
  Parser p{text};
  return p.value();
}

std::map<std::string, Tensor> read_safetensors(const std::string& path) {
  const std::string bytes = read_file(path);
  if (bytes.size() < 8) throw std::runtime_error(path + ": too short");
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  const Json h = parse_json(bytes.substr(8, size_t(n)));
  std::map<std::string, Tensor> out;
  for (const auto& [name, v] : h.obj) {
    if (name == "__metadata__") continue;
    Tensor t;
    t.dtype = v.get("dtype")->str;
    for (const Json& d : v.get("shape")->arr) t.shape.push_back(int64_t(d.num));
    const size_t b = size_t(v.get("data_offsets")->arr[0].num), e = size_t(v.get("data_offsets")->arr[1].num);
    t.data.assign(bytes.begin() + 8 + int64_t(n) + int64_t(b), bytes.begin() + 8 + int64_t(n) + int64_t(e));
    out[name] = std::move(t);
  }
  return out;
}

std::unique_ptr<Fixture> load_fixture(const std::string& dir, const std::string& name, std::string* why) {
  const std::string root = dir + "/" + name + "/";
  const Json c = parse_json(read_file(root + "config.json"));
  const std::string type = c.get("model_type") ? c.get("model_type")->str : "";
  // The config mapping of src/model/config.ts and src/engine/native-spec.ts, for the fixtures' fields.
  const bool gemma2 = type == "gemma2", cohere = type == "cohere", qwen3 = type == "qwen3";
  if (type != "llama" && type != "mistral" && type != "qwen2" && !qwen3 && !gemma2 && !cohere) {
    *why = "model_type " + type + " is not run by the engine";
    return nullptr;
  }
  std::string rope_type;
  if (const Json* rs = c.get("rope_scaling"); rs && rs->kind == Json::Object) {
    const Json* t = rs->get("rope_type") ? rs->get("rope_type") : rs->get("type");
    rope_type = t ? t->str : "?";
    if (rope_type != "llama3" && rope_type != "yarn") {
      *why = "rope_scaling " + rope_type + " is not read by this loader";
      return nullptr;
    }
  }
  auto f = std::make_unique<Fixture>();
  f->name = name;
  ln::ModelConfig& m = f->cfg;
  auto num = [&](const char* k, double def) { return c.get(k) && c.get(k)->kind == Json::Number ? c.get(k)->num : def; };
  m.hidden = int32_t(num("hidden_size", 0));
  m.intermediate = int32_t(num("intermediate_size", 0));
  m.n_layers = int32_t(num("num_hidden_layers", 0));
  m.n_heads = int32_t(num("num_attention_heads", 0));
  m.n_kv_heads = int32_t(num("num_key_value_heads", m.n_heads));
  m.head_dim = int32_t(num("head_dim", gemma2 ? 256 : qwen3 ? 128 : m.n_heads ? m.hidden / m.n_heads : 0));
  m.vocab = int32_t(num("vocab_size", 0));
  m.max_positions = int32_t(num("max_position_embeddings", type == "llama" ? 2048 : type == "mistral" ? 131072 : 32768));
  m.rms_eps = float(cohere ? num("layer_norm_eps", 1e-5) : num("rms_norm_eps", 1e-6));
  m.rope_theta = float(num("rope_theta", 10000));
  const Json* tied = c.get("tie_word_embeddings");
  m.tie_embeddings = tied ? tied->b : (gemma2 || cohere);
  m.qkv_bias = type == "qwen2";
  if (rope_type == "llama3") {
    const Json* rs = c.get("rope_scaling");
    m.rope_type = ln::RopeType::Llama3;
    m.rope_factor = float(rs->get("factor")->num);
    m.rope_low_freq_factor = float(rs->get("low_freq_factor")->num);
    m.rope_high_freq_factor = float(rs->get("high_freq_factor")->num);
    m.rope_original_max_positions = int32_t(rs->get("original_max_position_embeddings")->num);
  } else if (rope_type == "yarn") {  // the fixture's fields: factor and original_max_position_embeddings
    const Json* rs = c.get("rope_scaling");
    m.rope_type = ln::RopeType::Yarn;
    const double factor = rs->get("factor")->num;
    m.rope_factor = float(factor);
    m.rope_original_max_positions = int32_t(rs->get("original_max_position_embeddings")->num);
    m.rope_attention_factor = float(factor <= 1 ? 1.0 : 0.1 * std::log(factor) + 1.0);
  }
  m.qk_norm = qwen3;
  if (gemma2) {
    m.norm = ln::NormType::RmsOnePlus;
    m.act = ln::Activation::GeluTanh;
    m.post_norms = true;
    m.embed_scale = float(std::sqrt(double(m.hidden)));
    m.query_scale = float(1.0 / std::sqrt(num("query_pre_attn_scalar", 256)));
    m.attn_softcap = float(num("attn_logit_softcapping", 50));
    m.final_softcap = float(num("final_logit_softcapping", 30));
    m.sliding_period = 2;
  }
  if (cohere) {
    m.norm = ln::NormType::Layer;
    m.parallel_block = true;
    m.rope_interleaved = true;
    m.logit_scale = float(num("logit_scale", 0.0625));
  }
  if (type == "mistral" || gemma2) {
    const int32_t w = int32_t(num("sliding_window", gemma2 ? 4096 : 0));
    if (w > 0 && w < m.max_positions) m.sliding_window = w;
  }

  // Weights: model.safetensors or the shards of model.safetensors.index.json.
  std::vector<std::string> files;
  std::ifstream single(root + "model.safetensors");
  if (single) {
    files.push_back(root + "model.safetensors");
  } else {
    const Json idx = parse_json(read_file(root + "model.safetensors.index.json"));
    for (const auto& [k, v] : idx.get("weight_map")->obj)
      if (std::find(files.begin(), files.end(), root + v.str) == files.end()) files.push_back(root + v.str);
  }
  for (const std::string& p : files)
    for (auto& [k, t] : read_safetensors(p)) f->tensors[k] = std::move(t);
  auto ref = [&](const std::string& n) {
    ln::WeightRef r;
    auto it = f->tensors.find(n);
    if (it == f->tensors.end()) return r;
    const Tensor& t = it->second;
    r.data = t.data.data();
    r.dtype = dtype_of(t.dtype, n);
    r.rows = t.shape.empty() ? 1 : t.shape[0];
    r.cols = t.shape.size() > 1 ? t.shape[1] : 1;
    return r;
  };
  f->w.embed = ref("model.embed_tokens.weight");
  f->w.final_norm = ref("model.norm.weight");
  f->w.lm_head = m.tie_embeddings ? f->w.embed : ref("lm_head.weight");
  for (int l = 0; l < m.n_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    ln::LayerWeights L;
    L.attn_norm = ref(p + "input_layernorm.weight");
    L.wq = ref(p + "self_attn.q_proj.weight");
    L.wk = ref(p + "self_attn.k_proj.weight");
    L.wv = ref(p + "self_attn.v_proj.weight");
    L.wo = ref(p + "self_attn.o_proj.weight");
    if (m.qkv_bias) {
      L.bq = ref(p + "self_attn.q_proj.bias");
      L.bk = ref(p + "self_attn.k_proj.bias");
      L.bv = ref(p + "self_attn.v_proj.bias");
    }
    if (gemma2) {  // post_attention_layernorm is the norm of the attention's output there
      L.attn_post_norm = ref(p + "post_attention_layernorm.weight");
      L.ffn_norm = ref(p + "pre_feedforward_layernorm.weight");
      L.ffn_post_norm = ref(p + "post_feedforward_layernorm.weight");
    } else if (!cohere) {
      L.ffn_norm = ref(p + "post_attention_layernorm.weight");
    }
    if (qwen3) {
      L.q_norm = ref(p + "self_attn.q_norm.weight");
      L.k_norm = ref(p + "self_attn.k_norm.weight");
    }
    L.w_gate = ref(p + "mlp.gate_proj.weight");
    L.w_up = ref(p + "mlp.up_proj.weight");
    L.w_down = ref(p + "mlp.down_proj.weight");
    f->w.layers.push_back(L);
  }
  const std::string bad = ln::validate_weights(m, f->w);
  if (!bad.empty()) throw std::runtime_error(name + ": " + bad);

  const auto r = read_safetensors(root + "reference.safetensors");
  auto ints = [&](const std::string& n) {
    const Tensor& t = r.at(n);
    std::vector<int32_t> v(t.data.size() / 4);
    std::memcpy(v.data(), t.data.data(), v.size() * 4);
    return v;
  };
  f->input_ids = ints("input_ids");
  f->ref_active_counts = ints("active_counts");
  const Tensor& lg = r.at("logits");
  if (lg.dtype != "F32") throw std::runtime_error(name + ": reference logits are " + lg.dtype);
  f->ref_logits.resize(lg.data.size() / 4);
  std::memcpy(f->ref_logits.data(), lg.data.data(), lg.data.size());
  return f;
}

}  // namespace lngpu
