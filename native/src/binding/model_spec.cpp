// Parsing of the model spec shared by NativeModel and NativeTrainer (see model_spec.h).
#include "binding/model_spec.h"

#include <map>

#include "binding/js_util.h"

namespace lnjs {

static ln::ModelConfig parse_config(const Napi::Object& c, const std::string& w) {
  const int64_t big = int64_t(1) << 30;
  ln::ModelConfig cfg;
  cfg.hidden = int32_t(int_field(c, "hidden", w, 1, big));
  cfg.intermediate = int32_t(int_field(c, "intermediate", w, 1, big));
  cfg.n_layers = int32_t(int_field(c, "nLayers", w, 1, 100000));
  cfg.n_heads = int32_t(int_field(c, "nHeads", w, 1, 100000));
  cfg.n_kv_heads = int32_t(int_field(c, "nKvHeads", w, 1, 100000));
  cfg.head_dim = int32_t(int_field(c, "headDim", w, 1, 100000));
  cfg.vocab = int32_t(int_field(c, "vocab", w, 1, big));
  cfg.max_positions = int32_t(int_field(c, "maxPositions", w, 1, big));
  cfg.rms_eps = float(number_field(c, "rmsEps", w));
  cfg.rope_theta = float(number_field(c, "ropeTheta", w));
  cfg.rope_type = ln::RopeType(int_field(c, "ropeType", w, 0, 3));
  cfg.rope_factor = float(number_field(c, "ropeFactor", w));
  cfg.rope_low_freq_factor = float(number_field(c, "ropeLowFreqFactor", w));
  cfg.rope_high_freq_factor = float(number_field(c, "ropeHighFreqFactor", w));
  cfg.rope_original_max_positions = int32_t(int_field(c, "ropeOriginalMaxPositions", w, 1, big));
  cfg.tie_embeddings = bool_field(c, "tieEmbeddings", w);
  cfg.qkv_bias = bool_field(c, "qkvBias", w);
  cfg.rope_attention_factor = float(number_field(c, "ropeAttentionFactor", w));
  cfg.rope_beta_fast = float(number_field(c, "ropeBetaFast", w));
  cfg.rope_beta_slow = float(number_field(c, "ropeBetaSlow", w));
  cfg.norm = ln::NormType(int_field(c, "norm", w, 0, 2));
  cfg.act = ln::Activation(int_field(c, "act", w, 0, 1));
  cfg.qk_norm = bool_field(c, "qkNorm", w);
  cfg.parallel_block = bool_field(c, "parallelBlock", w);
  cfg.post_norms = bool_field(c, "postNorms", w);
  cfg.rope_interleaved = bool_field(c, "ropeInterleaved", w);
  cfg.embed_scale = float(number_field(c, "embedScale", w));
  cfg.query_scale = float(number_field(c, "queryScale", w));
  cfg.attn_softcap = float(number_field(c, "attnSoftcap", w));
  cfg.final_softcap = float(number_field(c, "finalSoftcap", w));
  cfg.logit_scale = float(number_field(c, "logitScale", w));
  cfg.sliding_window = int32_t(int_field(c, "slidingWindow", w, 0, big));
  cfg.sliding_period = int32_t(int_field(c, "slidingPeriod", w, 1, 1000));
  return cfg;
}

static ln::DType parse_dtype(Napi::Env env, const std::string& s, const std::string& where) {
  if (s == "F32") return ln::DType::F32;
  if (s == "F16") return ln::DType::F16;
  if (s == "BF16") return ln::DType::BF16;
  throw Napi::TypeError::New(env, where + ": dtype must be F32, F16 or BF16, got " + s);
}

// Slot in ModelWeights for a (role, layer) pair.
static ln::WeightRef* weight_slot(ln::ModelWeights& w, const std::string& role, int64_t layer) {
  if (layer < 0) {
    if (role == "embed") return &w.embed;
    if (role == "final_norm") return &w.final_norm;
    if (role == "lm_head") return &w.lm_head;
    return nullptr;
  }
  if (layer >= int64_t(w.layers.size())) return nullptr;
  ln::LayerWeights& l = w.layers[size_t(layer)];
  static const std::map<std::string, ln::WeightRef ln::LayerWeights::*> roles = {
      {"attn_norm", &ln::LayerWeights::attn_norm}, {"wq", &ln::LayerWeights::wq},
      {"wk", &ln::LayerWeights::wk},               {"wv", &ln::LayerWeights::wv},
      {"wo", &ln::LayerWeights::wo},               {"bq", &ln::LayerWeights::bq},
      {"bk", &ln::LayerWeights::bk},               {"bv", &ln::LayerWeights::bv},
      {"ffn_norm", &ln::LayerWeights::ffn_norm},   {"w_gate", &ln::LayerWeights::w_gate},
      {"q_norm", &ln::LayerWeights::q_norm},       {"k_norm", &ln::LayerWeights::k_norm},
      {"attn_post_norm", &ln::LayerWeights::attn_post_norm}, {"ffn_post_norm", &ln::LayerWeights::ffn_post_norm},
      {"w_up", &ln::LayerWeights::w_up},           {"w_down", &ln::LayerWeights::w_down}};
  auto it = roles.find(role);
  return it == roles.end() ? nullptr : &(l.*(it->second));
}

ParsedModelSpec parse_model_spec(Napi::Env env, const Napi::Object& spec, const std::string& what) {
  ParsedModelSpec out;
  Napi::Value cv = field(spec, "config", what);
  if (!cv.IsObject()) throw Napi::TypeError::New(env, what + ": 'config' must be an object");
  ln::ModelConfig& cfg = out.config;
  cfg = parse_config(cv.As<Napi::Object>(), what + " config");
  std::string bad = ln::validate_config(cfg);
  if (!bad.empty()) throw Napi::Error::New(env, what + " config: " + bad);

    Napi::Value fv = field(spec, "files", what);
  if (!fv.IsArray()) throw Napi::TypeError::New(env, what + ": 'files' must be an array of paths");
  Napi::Array files = fv.As<Napi::Array>();
  for (uint32_t i = 0; i < files.Length(); ++i) {
    Napi::Value p = files.Get(i);
    if (!p.IsString()) throw Napi::TypeError::New(env, what + ": files[" + std::to_string(i) + "] must be a string");
    try {
      out.files.push_back(ln::MappedFile::open(p.As<Napi::String>().Utf8Value()));
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, e.what());
    }
  }

  ln::ModelWeights& weights = out.weights;
  weights.layers.resize(size_t(cfg.n_layers));
  Napi::Value tv = field(spec, "tensors", what);
  if (!tv.IsArray()) throw Napi::TypeError::New(env, what + ": 'tensors' must be an array");
  Napi::Array tensors = tv.As<Napi::Array>();
  for (uint32_t i = 0; i < tensors.Length(); ++i) {
    Napi::Value t = tensors.Get(i);
    std::string where = what + " tensors[" + std::to_string(i) + "]";
    if (!t.IsObject()) throw Napi::TypeError::New(env, where + " must be an object");
    Napi::Object o = t.As<Napi::Object>();
    std::string role = string_field(o, "role", where);
    int64_t layer = int_field(o, "layer", where, -1, cfg.n_layers - 1);
    where += " (" + role + (layer >= 0 ? " of layer " + std::to_string(layer) : std::string()) + ")";
    int64_t file = int_field(o, "file", where, 0, int64_t(out.files.size()) - 1);
    int64_t offset = int_field(o, "offset", where, 0, int64_t(1) << 53);
    int64_t nbytes = int_field(o, "nbytes", where, 0, int64_t(1) << 53);
    ln::DType dtype = parse_dtype(env, string_field(o, "dtype", where), where);
    Napi::Value sv = field(o, "shape", where);
    if (!sv.IsArray()) throw Napi::TypeError::New(env, where + ": 'shape' must be an array");
    Napi::Array shape = sv.As<Napi::Array>();
    if (shape.Length() < 1 || shape.Length() > 2)
      throw Napi::Error::New(env, where + ": expected a 1-D or 2-D tensor, got " + std::to_string(shape.Length()) + " dims");
    int64_t dims[2] = {1, 1};
    for (uint32_t d = 0; d < shape.Length(); ++d) {
      Napi::Value dv = shape.Get(d);
      if (!dv.IsNumber()) throw Napi::TypeError::New(env, where + ": shape entries must be numbers");
      double x = dv.As<Napi::Number>().DoubleValue();
      if (!(x >= 1 && x <= double(int64_t(1) << 40)) || x != double(int64_t(x)))
        throw Napi::RangeError::New(env, where + ": bad shape entry " + lnjs::number_text(x));
      dims[d] = int64_t(x);
    }
    const ln::MappedFile& mf = *out.files[size_t(file)];
    // Dimensions of up to 2^40 each: their product in bytes can pass int64 (signed overflow, and a product that
    // wrapped around could even equal nbytes), so it is formed only when it fits (nbytes is at most 2^53).
    const bool overflow = double(dims[0]) * double(dims[1]) * double(ln::dtype_size(dtype)) > 0x1p62;
    const int64_t bytes = overflow ? 0 : dims[0] * dims[1] * ln::dtype_size(dtype);
    if (overflow || bytes != nbytes)
      throw Napi::Error::New(env, mf.path() + ": " + where + ": shape × dtype size is " +
                                      (overflow ? std::string("over 2^62") : std::to_string(bytes)) +
                                      " bytes but the byte range holds " + std::to_string(nbytes));
    if (offset + nbytes > mf.size())
      throw Napi::Error::New(env, mf.path() + ": " + where + ": byte range [" + std::to_string(offset) + ", " +
                                      std::to_string(offset + nbytes) + ") lies outside the file of " +
                                      std::to_string(mf.size()) + " bytes");
    ln::WeightRef* slot = weight_slot(weights, role, layer);
    if (!slot) throw Napi::Error::New(env, where + ": unknown tensor role");
    if (!slot->empty()) throw Napi::Error::New(env, where + ": given twice");
    slot->data = mf.data() + offset;
    slot->dtype = dtype;
    slot->rows = dims[0];
    slot->cols = dims[1];
  }
  if (cfg.tie_embeddings && weights.lm_head.empty()) weights.lm_head = weights.embed;
  bad = ln::validate_weights(cfg, weights);
  if (!bad.empty()) throw Napi::Error::New(env, what + " weights: " + bad);

  out.threads = int_field(spec, "threads", what, 1, 1024);
  return out;
}

}  // namespace lnjs
