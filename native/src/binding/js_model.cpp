// NativeModel: builds an ln::Model from a spec the TypeScript loader prepares (config + tensor byte ranges in
// checkpoint files), re-validating every range against the mapped files, and runs forwards off the JS thread.
#include "binding/js_model.h"

#include <cstring>
#include <map>
#include <stdexcept>

#include "binding/js_intervention.h"
#include "binding/js_util.h"

namespace lnjs {

Napi::FunctionReference* NativeModel::constructor = nullptr;

static ln::ModelConfig parse_config(const Napi::Object& c) {
  const std::string w = "model spec config";
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
  cfg.rope_type = ln::RopeType(int_field(c, "ropeType", w, 0, 1));
  cfg.rope_factor = float(number_field(c, "ropeFactor", w));
  cfg.rope_low_freq_factor = float(number_field(c, "ropeLowFreqFactor", w));
  cfg.rope_high_freq_factor = float(number_field(c, "ropeHighFreqFactor", w));
  cfg.rope_original_max_positions = int32_t(int_field(c, "ropeOriginalMaxPositions", w, 1, big));
  cfg.tie_embeddings = bool_field(c, "tieEmbeddings", w);
  cfg.qkv_bias = bool_field(c, "qkvBias", w);
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
      {"w_up", &ln::LayerWeights::w_up},           {"w_down", &ln::LayerWeights::w_down}};
  auto it = roles.find(role);
  return it == roles.end() ? nullptr : &(l.*(it->second));
}

// new NativeModel({ config, files: string[], tensors: [{ role, layer, file, offset, nbytes, dtype, shape }],
//                   threads, compute: 'f32' | 'bf16' })
NativeModel::NativeModel(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeModel>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "NativeModel(spec): spec must be an object");
  Napi::Object spec = info[0].As<Napi::Object>();
  Napi::Value cv = field(spec, "config", "model spec");
  if (!cv.IsObject()) throw Napi::TypeError::New(env, "model spec: 'config' must be an object");
  ln::ModelConfig cfg = parse_config(cv.As<Napi::Object>());
  std::string bad = ln::validate_config(cfg);
  if (!bad.empty()) throw Napi::Error::New(env, "model config: " + bad);

  auto holder = std::make_shared<ModelHolder>();
  Napi::Value fv = field(spec, "files", "model spec");
  if (!fv.IsArray()) throw Napi::TypeError::New(env, "model spec: 'files' must be an array of paths");
  Napi::Array files = fv.As<Napi::Array>();
  for (uint32_t i = 0; i < files.Length(); ++i) {
    Napi::Value p = files.Get(i);
    if (!p.IsString()) throw Napi::TypeError::New(env, "model spec: files[" + std::to_string(i) + "] must be a string");
    try {
      holder->files.push_back(ln::MappedFile::open(p.As<Napi::String>().Utf8Value()));
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, e.what());
    }
  }

  ln::ModelWeights weights;
  weights.layers.resize(size_t(cfg.n_layers));
  Napi::Value tv = field(spec, "tensors", "model spec");
  if (!tv.IsArray()) throw Napi::TypeError::New(env, "model spec: 'tensors' must be an array");
  Napi::Array tensors = tv.As<Napi::Array>();
  for (uint32_t i = 0; i < tensors.Length(); ++i) {
    Napi::Value t = tensors.Get(i);
    std::string where = "model spec tensors[" + std::to_string(i) + "]";
    if (!t.IsObject()) throw Napi::TypeError::New(env, where + " must be an object");
    Napi::Object o = t.As<Napi::Object>();
    std::string role = string_field(o, "role", where);
    int64_t layer = int_field(o, "layer", where, -1, cfg.n_layers - 1);
    where += " (" + role + (layer >= 0 ? " of layer " + std::to_string(layer) : std::string()) + ")";
    int64_t file = int_field(o, "file", where, 0, int64_t(holder->files.size()) - 1);
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
        throw Napi::RangeError::New(env, where + ": bad shape entry " + std::to_string(x));
      dims[d] = int64_t(x);
    }
    const ln::MappedFile& mf = *holder->files[size_t(file)];
    if (dims[0] * dims[1] * ln::dtype_size(dtype) != nbytes)
      throw Napi::Error::New(env, mf.path() + ": " + where + ": shape × dtype size is " +
                                      std::to_string(dims[0] * dims[1] * ln::dtype_size(dtype)) + " bytes but the byte range holds " +
                                      std::to_string(nbytes));
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
  if (!bad.empty()) throw Napi::Error::New(env, "model weights: " + bad);

  int64_t threads = int_field(spec, "threads", "model spec", 1, 1024);
  std::string compute = string_field(spec, "compute", "model spec");
  if (compute != "f32" && compute != "bf16")
    throw Napi::TypeError::New(env, "model spec: compute must be 'f32' or 'bf16', got '" + compute + "'");
  try {
    holder->model = std::make_unique<ln::Model>(cfg, weights, int(threads),
                                                compute == "bf16" ? ln::Compute::BF16 : ln::Compute::F32);
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, std::string("model: ") + e.what());
  }
  holder_ = holder;
}

Napi::Value NativeModel::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("threads", holder_->model->n_threads());
  o.Set("compute", holder_->model->compute() == ln::Compute::BF16 ? "bf16" : "f32");
  o.Set("kernel", ln::kernel_name(ln::active_kernel()));
  o.Set("scratchBytes", double(holder_->model->scratch_bytes()));
  return o;
}

// Runs one forward on a libuv worker thread; the request's arrays are copies owned by the worker.
class ForwardWorker : public Napi::AsyncWorker {
 public:
  ForwardWorker(Napi::Env env, std::shared_ptr<ModelHolder> h, std::shared_ptr<ln::KvCache> cache)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), holder_(std::move(h)),
        cache_(std::move(cache)) {}
  ~ForwardWorker() override {
    if (stats_busy) --*stats_busy;  // on the JS thread, after OnOK / OnError (or when never queued)
  }
  Napi::Promise promise() { return deferred_.Promise(); }
  std::vector<int32_t> tokens, seq_lens, targets, slots;
  ln::LogitsMode mode = ln::LogitsMode::Last;
  std::shared_ptr<ln::ActivationStats> stats;
  std::shared_ptr<int> stats_busy;  // NativeStats' count of forwards in flight, incremented by Forward()
  std::vector<uint8_t> count_mask;
  int32_t last_layer = -1;
  ln::Site capture_site = ln::Site::Act;
  int32_t capture_layer = -1;
  std::shared_ptr<const ln::Intervention> intervention;  // kept alive by the worker
  std::vector<uint8_t> intervene_mask;

  void Execute() override {
    try {
      std::lock_guard<std::mutex> lk(holder_->mu);
      ln::ForwardRequest req;
      req.tokens = tokens.data();
      req.n_tokens = int64_t(tokens.size());
      req.seq_lens = seq_lens.data();
      req.n_seqs = int32_t(seq_lens.size());
      req.logits = mode;
      req.targets = targets.empty() ? nullptr : targets.data();
      req.cache = cache_.get();
      req.cache_slots = cache_ ? slots.data() : nullptr;
      req.stats = stats.get();
      req.count_mask = count_mask.empty() ? nullptr : count_mask.data();
      req.last_layer = last_layer;
      req.capture_site = capture_site;
      req.capture_layer = capture_layer;
      req.intervention = intervention.get();
      req.intervene_mask = intervene_mask.empty() ? nullptr : intervene_mask.data();
      holder_->model->forward(req, result_);
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::Object o = Napi::Object::New(env);
    o.Set("logits", to_float32(env, result_.logits));
    o.Set("targetLogprobs", targets.empty() ? env.Null() : to_float32(env, result_.target_logprobs));
    o.Set("capture", capture_layer < 0 ? env.Null() : to_float32(env, result_.capture));
    deferred_.Resolve(o);
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  static Napi::Value to_float32(Napi::Env env, const std::vector<float>& v) {
    Napi::Float32Array a = Napi::Float32Array::New(env, v.size());
    if (!v.empty()) std::memcpy(a.Data(), v.data(), v.size() * sizeof(float));
    return a;
  }
  Napi::Promise::Deferred deferred_;
  std::shared_ptr<ModelHolder> holder_;
  std::shared_ptr<ln::KvCache> cache_;
  ln::ForwardResult result_;
};

static bool given(const Napi::Object& o, const char* name) {
  return o.Has(name) && !o.Get(name).IsUndefined() && !o.Get(name).IsNull();
}

// The profiling options of forward(): stats, countMask, lastLayer, capture. Ranges that depend on the request
// (last layer vs logits/targets/cache, capture layer vs last layer) are checked by Model::forward.
static void parse_profiling(Napi::Env env, const Napi::Object& opts, ForwardWorker& w,
                            const std::shared_ptr<ModelHolder>& holder) {
  const ln::ModelConfig& c = holder->model->config();
  if (given(opts, "stats")) {
    Napi::Value sv = opts.Get("stats");
    if (!sv.IsObject() || !sv.As<Napi::Object>().InstanceOf(NativeStats::constructor->Value()))
      throw Napi::TypeError::New(env, "forward: options.stats must be a NativeStats");
    NativeStats* ns = NativeStats::Unwrap(sv.As<Napi::Object>());
    if (ns->holder() != holder) throw Napi::Error::New(env, "forward: options.stats belongs to another model");
    w.stats = ns->stats();
    w.stats_busy = ns->busy();
    ++*w.stats_busy;  // given back by the worker's destructor (also when the options are rejected below)
  }
  if (given(opts, "countMask")) {
    if (!w.stats) throw Napi::TypeError::New(env, "forward: options.countMask needs options.stats");
    Napi::Value mv = opts.Get("countMask");
    if (!mv.IsTypedArray() || mv.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
      throw Napi::TypeError::New(env, "forward: options.countMask must be a Uint8Array");
    Napi::Uint8Array m = mv.As<Napi::Uint8Array>();
    if (m.ElementLength() != w.tokens.size())
      throw Napi::RangeError::New(env, "forward: countMask must have one entry per token (" + std::to_string(w.tokens.size()) +
                                           "), got " + std::to_string(m.ElementLength()));
    w.count_mask.assign(m.Data(), m.Data() + m.ElementLength());
  }
  if (given(opts, "lastLayer")) w.last_layer = int32_t(int_field(opts, "lastLayer", "forward options", -1, c.n_layers - 1));
  if (given(opts, "capture")) {
    Napi::Value cv = opts.Get("capture");
    if (!cv.IsObject()) throw Napi::TypeError::New(env, "forward: options.capture must be { site, layer }");
    Napi::Object co = cv.As<Napi::Object>();
    w.capture_site = parse_site_value(env, field(co, "site", "forward: options.capture"), "forward: options.capture.site");
    w.capture_layer = int32_t(int_field(co, "layer", "forward: options.capture", 0, c.n_layers - 1));
  }
}

// options.intervention (a NativeIntervention of this model) and options.interveneMask (one position-class byte
// per token; needs an intervention).
static void parse_intervention(Napi::Env env, const Napi::Object& opts, ForwardWorker& w,
                               const std::shared_ptr<ModelHolder>& holder) {
  if (given(opts, "intervention")) {
    Napi::Value iv = opts.Get("intervention");
    if (!iv.IsObject() || !iv.As<Napi::Object>().InstanceOf(NativeIntervention::constructor->Value()))
      throw Napi::TypeError::New(env, "forward: options.intervention must be a NativeIntervention");
    NativeIntervention* ni = NativeIntervention::Unwrap(iv.As<Napi::Object>());
    if (ni->holder() != holder) throw Napi::Error::New(env, "forward: options.intervention belongs to another model");
    w.intervention = ni->intervention();
  }
  if (given(opts, "interveneMask")) {
    if (!w.intervention) throw Napi::TypeError::New(env, "forward: options.interveneMask needs options.intervention");
    Napi::Value mv = opts.Get("interveneMask");
    if (!mv.IsTypedArray() || mv.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
      throw Napi::TypeError::New(env, "forward: options.interveneMask must be a Uint8Array");
    Napi::Uint8Array m = mv.As<Napi::Uint8Array>();
    if (m.ElementLength() != w.tokens.size())
      throw Napi::RangeError::New(env, "forward: interveneMask must have one entry per token (" +
                                           std::to_string(w.tokens.size()) + "), got " + std::to_string(m.ElementLength()));
    w.intervene_mask.assign(m.Data(), m.Data() + m.ElementLength());
  }
}

// forward(tokens: Int32Array, seqLens: Int32Array, { logits: 0|1|2, targets?: Int32Array, cache?: NativeKvCache,
//         cacheSlots?: Int32Array, stats?: NativeStats, countMask?: Uint8Array, lastLayer?: number,
//         capture?: { site, layer }, intervention?: NativeIntervention, interveneMask?: Uint8Array })
//   -> Promise<{ logits: Float32Array, targetLogprobs: Float32Array | null, capture: Float32Array | null }>
// Shapes are checked here; token ranges, positions and capacity by Model::forward before any state changes.
Napi::Value NativeModel::Forward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[2].IsObject())
    throw Napi::TypeError::New(env, "forward(tokens, seqLens, options): options must be an object");
  Napi::Object opts = info[2].As<Napi::Object>();
  std::shared_ptr<ln::KvCache> cache;
  if (opts.Has("cache") && !opts.Get("cache").IsUndefined() && !opts.Get("cache").IsNull()) {
    Napi::Value cv = opts.Get("cache");
    if (!cv.IsObject() || !cv.As<Napi::Object>().InstanceOf(NativeKvCache::constructor->Value()))
      throw Napi::TypeError::New(env, "forward: options.cache must be a NativeKvCache");
    NativeKvCache* kc = NativeKvCache::Unwrap(cv.As<Napi::Object>());
    if (kc->holder() != holder_) throw Napi::Error::New(env, "forward: options.cache belongs to another model");
    cache = kc->cache();
  }
  auto* w = new ForwardWorker(env, holder_, cache);
  try {
    w->tokens = int32_array(env, info[0], "forward: tokens");
    w->seq_lens = int32_array(env, info[1], "forward: seqLens");
    w->mode = ln::LogitsMode(int_field(opts, "logits", "forward options", 0, 2));
    if (opts.Has("targets") && !opts.Get("targets").IsUndefined()) {
      w->targets = int32_array(env, opts.Get("targets"), "forward: options.targets");
      if (w->targets.size() != w->tokens.size())
        throw Napi::RangeError::New(env, "forward: targets must have one entry per token (" +
                                             std::to_string(w->tokens.size()) + "), got " + std::to_string(w->targets.size()));
    }
    if (w->tokens.empty()) throw Napi::RangeError::New(env, "forward: tokens is empty");
    if (w->seq_lens.empty()) throw Napi::RangeError::New(env, "forward: seqLens is empty");
    parse_profiling(env, opts, *w, holder_);
    parse_intervention(env, opts, *w, holder_);
    if (cache) {
      w->slots = int32_array(env, field(opts, "cacheSlots", "forward options (with a cache)"), "forward: options.cacheSlots");
      if (w->slots.size() != w->seq_lens.size())
        throw Napi::RangeError::New(env, "forward: cacheSlots needs one slot per sequence (" +
                                             std::to_string(w->seq_lens.size()) + "), got " + std::to_string(w->slots.size()));
    }
  } catch (...) {
    delete w;
    throw;
  }
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

Napi::Function NativeModel::Init(Napi::Env env) {
  Napi::Function f = DefineClass(env, "NativeModel",
                                 {InstanceMethod("forward", &NativeModel::Forward), InstanceMethod("info", &NativeModel::Info)});
  constructor = new Napi::FunctionReference(Napi::Persistent(f));
  return f;
}

}  // namespace lnjs
