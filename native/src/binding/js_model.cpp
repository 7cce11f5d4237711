// NativeModel: builds an ln::Model from a spec the TypeScript loader prepares (config + tensor byte ranges in
// checkpoint files), re-validating every range against the mapped files, and runs forwards off the JS thread.
#include "binding/js_model.h"

#include <cstring>
#include <map>
#include <stdexcept>

#include "binding/js_intervention.h"
#include "binding/js_util.h"
#include "core/oom.h"
#include "binding/model_spec.h"
#include "kernels/gemm.h"
#include "runtime/cpu_runtime.h"
#include "runtime/cuda_runtime.h"

namespace lnjs {

Napi::FunctionReference* NativeModel::constructor = nullptr;

ln::Runtime& ModelHolder::live(const char* what) {
  if (!runtime) throw std::runtime_error(std::string(what) + ": the model was disposed");
  return *runtime;
}

// The device of a spec: 'cpu' or 'cuda:N' (the TypeScript side resolves 'auto' and 'cuda' to one of these).
static int parse_device(Napi::Env env, const std::string& d) {
  if (d == "cpu") return -1;
  if (d.rfind("cuda:", 0) == 0 && d.size() > 5 && d.size() <= 8 &&
      d.find_first_not_of("0123456789", 5) == std::string::npos)
    return std::stoi(d.substr(5));
  throw Napi::TypeError::New(env, "model spec: device must be 'cpu' or 'cuda:N', got '" + d + "'");
}

// new NativeModel({ config, files: string[], tensors: [{ role, layer, file, offset, nbytes, dtype, shape }],
//                   threads, compute: 'f32' | 'bf16', device?: 'cpu' | 'cuda:N' })
NativeModel::NativeModel(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeModel>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "NativeModel(spec): spec must be an object");
  Napi::Object spec = info[0].As<Napi::Object>();
  ParsedModelSpec parsed = parse_model_spec(env, spec, "model spec");
  auto holder = std::make_shared<ModelHolder>();
  holder->files = std::move(parsed.files);
  const int64_t threads = parsed.threads;
  std::string compute = string_field(spec, "compute", "model spec");
  if (compute != "f32" && compute != "bf16")
    throw Napi::TypeError::New(env, "model spec: compute must be 'f32' or 'bf16', got '" + compute + "'");
  const int device = spec.Has("device") && !spec.Get("device").IsUndefined()
                         ? parse_device(env, string_field(spec, "device", "model spec"))
                         : -1;
  const ln::Compute mode = compute == "bf16" ? ln::Compute::BF16 : ln::Compute::F32;
  try {
    holder->runtime = device < 0 ? ln::make_cpu_runtime(parsed.config, parsed.weights, int(threads), mode)
                                 : ln::make_cuda_runtime(parsed.config, parsed.weights, device, mode);
  } catch (const ln::OutOfMemory& e) {
    throw Napi::Error::New(env, e.what());  // names what was being allocated and its size
  } catch (const std::bad_alloc&) {
    throw Napi::Error::New(env, std::string("model: out of memory while ") +
                                    (device < 0 ? "preparing the CPU model" : "uploading the weights to the GPU"));
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, std::string("model: ") + e.what());
  }
  holder->config = holder->runtime->config();
  if (device >= 0) holder->files.clear();  // the device holds its own copy: unmap the checkpoint now
  holder_ = holder;
}

Napi::Value NativeModel::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  std::lock_guard<std::mutex> lk(holder_->mu);
  ln::Runtime* rt = holder_->runtime.get();
  if (!rt) throw Napi::Error::New(env, "info: the model was disposed");
  ln::Model* cpu = ln::cpu_model(*rt);
  o.Set("device", rt->device() == ln::DeviceKind::Cpu ? "cpu" : "cuda");
  o.Set("describe", rt->describe());
  o.Set("threads", cpu ? double(cpu->n_threads()) : 0.0);
  o.Set("compute", rt->compute() == ln::Compute::BF16 ? "bf16" : "f32");
  o.Set("kernel", ln::kernel_name(ln::active_kernel()));
  const ln::MemoryReport m = rt->memory();
  o.Set("scratchBytes", double(m.activations));
  Napi::Object mem = Napi::Object::New(env);
  mem.Set("weights", double(m.weights));
  mem.Set("kvCache", double(m.kv_cache));
  mem.Set("activations", double(m.activations));
  mem.Set("scratch", double(m.scratch));
  mem.Set("deviceUsed", double(m.device_used));
  mem.Set("deviceTotal", double(m.device_total));
  o.Set("memory", mem);
  return o;
}

// dispose(): frees the runtime (device memory, scratch) and unmaps the checkpoint once no forward runs. Waits
// for a running forward (it holds the mutex); later forwards are refused. Idempotent.
Napi::Value NativeModel::Dispose(const Napi::CallbackInfo& info) {
  std::unique_ptr<ln::Runtime> rt;
  std::vector<std::shared_ptr<ln::MappedFile>> files;
  {
    std::lock_guard<std::mutex> lk(holder_->mu);
    rt = std::move(holder_->runtime);
    files = std::move(holder_->files);
  }
  rt.reset();  // outside the lock: device frees may synchronise
  files.clear();
  return info.Env().Undefined();
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
  std::vector<int32_t> tokens, seq_lens, targets, slots, penalty_ids;
  std::vector<int64_t> penalty_offsets;
  double repetition_penalty = 1.0;
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
      req.repetition_penalty = repetition_penalty;
      if (!penalty_offsets.empty()) {
        req.penalty_ids = penalty_ids.data();
        req.penalty_offsets = penalty_offsets.data();
      }
      req.cache = cache_.get();
      req.cache_slots = cache_ ? slots.data() : nullptr;
      req.stats = stats.get();
      req.count_mask = count_mask.empty() ? nullptr : count_mask.data();
      req.last_layer = last_layer;
      req.capture_site = capture_site;
      req.capture_layer = capture_layer;
      req.intervention = intervention.get();
      req.intervene_mask = intervene_mask.empty() ? nullptr : intervene_mask.data();
      holder_->live("forward").forward(req, result_);
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
    if (mode == ln::LogitsMode::Greedy) o.Set("next", next_object(env, result_.next));
    deferred_.Resolve(o);
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  static Napi::Value to_float32(Napi::Env env, const std::vector<float>& v) {
    Napi::Float32Array a = Napi::Float32Array::New(env, v.size());
    if (!v.empty()) std::memcpy(a.Data(), v.data(), v.size() * sizeof(float));
    return a;
  }
  // { tokens: Int32Array, logits: Float32Array, firstNonFinite: Int32Array, nonFiniteValues: Float32Array,
  //   allZero: Uint8Array }, one entry per sequence (model/next_token.h).
  static Napi::Object next_object(Napi::Env env, const std::vector<ln::NextToken>& next) {
    const size_t n = next.size();
    Napi::Int32Array tokens = Napi::Int32Array::New(env, n), bad = Napi::Int32Array::New(env, n);
    Napi::Float32Array logits = Napi::Float32Array::New(env, n), bad_values = Napi::Float32Array::New(env, n);
    Napi::Uint8Array zero = Napi::Uint8Array::New(env, n);
    for (size_t i = 0; i < n; ++i) {
      tokens[i] = next[i].token;
      logits[i] = next[i].logit;
      bad[i] = next[i].first_nonfinite;
      bad_values[i] = next[i].nonfinite_value;
      zero[i] = uint8_t(next[i].all_zero);
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("tokens", tokens);
    o.Set("logits", logits);
    o.Set("firstNonFinite", bad);
    o.Set("nonFiniteValues", bad_values);
    o.Set("allZero", zero);
    return o;
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
  const ln::ModelConfig& c = holder->config;
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

// forward(tokens: Int32Array, seqLens: Int32Array, { logits: 0|1|2|3 (3: last final-normed hidden), targets?: Int32Array, cache?: NativeKvCache,
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
    if (!cache) throw Napi::Error::New(env, "forward: options.cache was disposed");
  }
  auto* w = new ForwardWorker(env, holder_, cache);
  try {
    w->tokens = int32_array(env, info[0], "forward: tokens");
    w->seq_lens = int32_array(env, info[1], "forward: seqLens");
    w->mode = ln::LogitsMode(int_field(opts, "logits", "forward options", 0, 4));
    if (given(opts, "repetitionPenalty")) w->repetition_penalty = number_field(opts, "repetitionPenalty", "forward options");
    if (given(opts, "penaltyIds") || given(opts, "penaltyOffsets")) {
      w->penalty_ids = int32_array(env, field(opts, "penaltyIds", "forward options (with penaltyOffsets)"), "forward: options.penaltyIds");
      const std::vector<int32_t> offsets =
          int32_array(env, field(opts, "penaltyOffsets", "forward options (with penaltyIds)"), "forward: options.penaltyOffsets");
      if (offsets.size() != w->seq_lens.size() + 1 || offsets.back() != int32_t(w->penalty_ids.size()))
        throw Napi::RangeError::New(env, "forward: penaltyOffsets needs one entry per sequence plus one, the last equal to "
                                         "the length of penaltyIds (" + std::to_string(w->penalty_ids.size()) + ")");
      w->penalty_offsets.assign(offsets.begin(), offsets.end());
    }
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
                                 {InstanceMethod("forward", &NativeModel::Forward), InstanceMethod("info", &NativeModel::Info),
                                  InstanceMethod("dispose", &NativeModel::Dispose)});
  constructor = new Napi::FunctionReference(Napi::Persistent(f));
  return f;
}

}  // namespace lnjs
