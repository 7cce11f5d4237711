// NativeTrainer: the training seam (native/src/train/training_runtime.h) for JS: the CPU trainer (train/trainer.h)
// or, with options.device, the CUDA trainer. Built from the same spec as NativeModel (config + tensor byte ranges
// in memory-mapped checkpoint files, re-validated here) plus the list of trainable tensors (dense / rows / cols /
// lora) and options (seed, classification head, device, compute). forwardBackward, forwardBackwardCls and step run
// off the JS thread; while one runs, every other call is refused.
#include <napi.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <mutex>

#include "core/oom.h"
#include "binding/js_util.h"
#include "binding/model_spec.h"
#include "core/mapped_file.h"
#include "train/gemm_backward.h"
#include "runtime/cuda_runtime.h"
#include "train/trainer.h"
#include "train/training_runtime.h"

namespace lnjs {

namespace {

// Runs f(), turning a C++ exception (a CUDA error of the device trainer) into a JS Error naming the call.
template <class F>
auto guarded(Napi::Env env, const char* what, F f) -> decltype(f()) {
  try {
    return f();
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, std::string(what) + ": " + e.what());
  }
}

struct TrainerHolder {
  std::vector<std::shared_ptr<ln::MappedFile>> files;
  std::unique_ptr<ln::train::TrainingRuntime> trainer;
  std::mutex mu;
  int busy = 0;  // async calls in flight (touched on the JS thread only)
};

}  // namespace

class NativeTrainer : public Napi::ObjectWrap<NativeTrainer> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit NativeTrainer(const Napi::CallbackInfo& info);

 private:
  Napi::Value ForwardBackward(const Napi::CallbackInfo& info);
  Napi::Value Step(const Napi::CallbackInfo& info);
  Napi::Value ZeroGrad(const Napi::CallbackInfo& info);
  Napi::Value GradNorm(const Napi::CallbackInfo& info);
  Napi::Value Params(const Napi::CallbackInfo& info);
  Napi::Value Read(const Napi::CallbackInfo& info);
  Napi::Value Write(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value SetStepCount(const Napi::CallbackInfo& info);
  Napi::Value ForwardBackwardCls(const Napi::CallbackInfo& info);
  Napi::Value ResetOptimizer(const Napi::CallbackInfo& info);
  Napi::Value ClockSteps(const Napi::CallbackInfo& info);
  Napi::Value StepTimes(const Napi::CallbackInfo& info);
  static Napi::Value LoraDelta(const Napi::CallbackInfo& info);
  void require_idle(Napi::Env env, const char* what) const {
    if (h_->busy > 0) throw Napi::Error::New(env, std::string(what) + ": a forwardBackward/step is still running");
  }
  ln::train::Arena arena(Napi::Env env, const std::string& which);
  std::shared_ptr<TrainerHolder> h_;
};

// new NativeTrainer(spec: NativeModelSpec, trainable: [{ role, layer, mode: 'dense'|'rows'|'cols'|'lora', index?,
//                    r?, alpha?, dropout? (lora) }], options?: { denseThenMask?, seed?, numLabels?,
//                    device?: number (CUDA device index; absent: the CPU), compute?: 'f32' | 'bf16' (CUDA only,
//                    default 'bf16'), recompute?: boolean (CUDA only: activation recomputation) })
NativeTrainer::NativeTrainer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeTrainer>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsArray())
    throw Napi::TypeError::New(env, "NativeTrainer(spec, trainable): spec must be an object, trainable an array");
  ParsedModelSpec parsed = parse_model_spec(env, info[0].As<Napi::Object>(), "trainer spec");
  const ln::ModelConfig& cfg = parsed.config;
  auto h = std::make_shared<TrainerHolder>();
  h->files = std::move(parsed.files);
  const int64_t threads = parsed.threads;

  std::vector<ln::train::TrainableSpec> tspec;
  Napi::Array ta = info[1].As<Napi::Array>();
  for (uint32_t i = 0; i < ta.Length(); ++i) {
    std::string where = "trainable[" + std::to_string(i) + "]";
    Napi::Value v = ta.Get(i);
    if (!v.IsObject()) throw Napi::TypeError::New(env, where + " must be an object");
    Napi::Object o = v.As<Napi::Object>();
    ln::train::TrainableSpec s;
    s.role = string_field(o, "role", where);
    s.layer = int32_t(int_field(o, "layer", where, -1, cfg.n_layers - 1));
    std::string mode = string_field(o, "mode", where);
    if (mode == "dense") s.mode = ln::train::ParamMode::Dense;
    else if (mode == "rows") s.mode = ln::train::ParamMode::Rows;
    else if (mode == "cols") s.mode = ln::train::ParamMode::Cols;
    else if (mode == "lora") s.mode = ln::train::ParamMode::Lora;
    else throw Napi::TypeError::New(env, where + ": mode must be 'dense', 'rows', 'cols' or 'lora', got '" + mode + "'");
    if (o.Has("index") && !o.Get("index").IsUndefined()) s.index = int32_array(env, o.Get("index"), where + ".index");
    if (s.mode == ln::train::ParamMode::Lora) {  // ranges are checked by the trainer (with the tensor's shape)
      s.lora_r = int32_t(int_field(o, "r", where, 1, 1 << 20));
      s.lora_alpha = float(number_field(o, "alpha", where));
      s.lora_dropout = o.Has("dropout") && !o.Get("dropout").IsUndefined() ? float(number_field(o, "dropout", where)) : 0.f;
      s.lora_init_std = o.Has("initStd") && !o.Get("initStd").IsUndefined() ? float(number_field(o, "initStd", where)) : 0.f;
    }
    tspec.push_back(std::move(s));
  }
  int device = -1;  // CUDA device index (-1: the CPU trainer)
  ln::Compute compute = ln::Compute::BF16;
  try {
    ln::train::TrainerOptions topt;
    if (info.Length() > 2 && info[2].IsObject()) {
      Napi::Object oo = info[2].As<Napi::Object>();
      if (oo.Has("denseThenMask") && !oo.Get("denseThenMask").IsUndefined())
        topt.dense_then_mask = bool_field(oo, "denseThenMask", "trainer options");
      if (oo.Has("seed") && !oo.Get("seed").IsUndefined())
        topt.seed = uint64_t(int_field(oo, "seed", "trainer options", 0, int64_t(1) << 53));
      if (oo.Has("numLabels") && !oo.Get("numLabels").IsUndefined())
        topt.num_labels = int32_t(int_field(oo, "numLabels", "trainer options", 0, 1 << 20));
      if (oo.Has("headBias") && !oo.Get("headBias").IsUndefined())
        topt.head_bias = bool_field(oo, "headBias", "trainer options");
      if (oo.Has("device") && !oo.Get("device").IsUndefined())
        device = int(int_field(oo, "device", "trainer options", 0, 1 << 16));
      if (oo.Has("recompute") && !oo.Get("recompute").IsUndefined()) {
        topt.recompute = bool_field(oo, "recompute", "trainer options");
        if (topt.recompute && device < 0)
          throw Napi::TypeError::New(env, "trainer options: recompute is for a CUDA device (set device); the CPU trainer "
                                          "keeps its activations in host memory");
      }
      if (oo.Has("compute") && !oo.Get("compute").IsUndefined()) {
        const std::string c = string_field(oo, "compute", "trainer options");
        if (c != "f32" && c != "bf16")
          throw Napi::TypeError::New(env, "trainer options: compute must be 'f32' or 'bf16', got '" + c + "'");
        if (device < 0) throw Napi::TypeError::New(env, "trainer options: compute is for a CUDA device (set device)");
        compute = c == "f32" ? ln::Compute::F32 : ln::Compute::BF16;
      }
    }
    if (device < 0) {
      h->trainer = std::make_unique<ln::train::Trainer>(cfg, parsed.weights, int(threads), tspec, topt);
    } else {
      const std::string problem = ln::cuda_device_problem(device);
      if (!problem.empty()) throw std::runtime_error("CUDA device " + std::to_string(device) + " is not usable: " + problem);
      h->trainer = ln::train::make_cuda_trainer(cfg, parsed.weights, device, compute, tspec, topt);
      h->files.clear();  // the device holds its own copy of the weights: unmap the checkpoint
    }
  } catch (const Napi::Error&) {
    throw;
  } catch (const ln::OutOfMemory& e) {
    throw Napi::Error::New(env, e.what());  // names what was being allocated and its size
  } catch (const std::bad_alloc&) {
    throw Napi::Error::New(env, std::string("out of memory while ") +
                                    (device < 0 ? "preparing the CPU trainer" : "setting up the CUDA trainer"));
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
  h_ = h;
}

class FbWorker : public Napi::AsyncWorker {
 public:
  FbWorker(Napi::Env env, std::shared_ptr<TrainerHolder> h)
      : Napi::AsyncWorker(env), deferred(Napi::Promise::Deferred::New(env)), h_(std::move(h)) { ++h_->busy; }
  ~FbWorker() override { --h_->busy; }
  Napi::Promise::Deferred deferred;
  std::vector<int32_t> tokens, targets, lens;
  double denominator = 0;
  bool backward = true;
  bool is_step = false;
  bool is_cls = false;  // forwardBackwardCls: `targets` holds the per-sequence labels
  int64_t step = -1, micro = -1;
  ln::train::AdamWConfig adam;
  void Execute() override {
    try {
      std::lock_guard<std::mutex> lk(h_->mu);
      if (is_step) {
        norm_ = h_->trainer->step(adam);
        return;
      }
      if (is_cls) {
        logits_.resize(lens.size() * size_t(h_->trainer->num_labels()));
        res_ = h_->trainer->forward_backward_cls(tokens.data(), lens.data(), int32_t(lens.size()), int64_t(tokens.size()),
                                                 targets.data(), denominator, backward, logits_.data(), step, micro);
        return;
      }
      res_ = h_->trainer->forward_backward(tokens.data(), targets.data(), lens.data(), int32_t(lens.size()),
                                           int64_t(tokens.size()), denominator, backward, step, micro);
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (is_step) {
      deferred.Resolve(Napi::Number::New(env, norm_));
      return;
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("lossSum", res_.sum);
    o.Set("count", double(res_.count));
    if (is_cls) {
      Napi::Float32Array lg = Napi::Float32Array::New(env, logits_.size());
      if (!logits_.empty()) std::memcpy(lg.Data(), logits_.data(), logits_.size() * sizeof(float));
      o.Set("logits", lg);
    }
    deferred.Resolve(o);
  }
  void OnError(const Napi::Error& e) override { deferred.Reject(e.Value()); }

 private:
  std::shared_ptr<TrainerHolder> h_;
  ln::train::BatchLoss res_;
  std::vector<float> logits_;
  double norm_ = 0;
};

// The optional { step, micro } of forward options: the LoRA dropout masks' optimizer step and micro-batch
// (default: the trainer's step count and backward passes since zeroGrad).
static void read_dropout_position(const Napi::Object& o, const std::string& where, int64_t& step, int64_t& micro) {
  if (o.Has("step") && !o.Get("step").IsUndefined()) step = int_field(o, "step", where, 0, int64_t(1) << 53);
  if (o.Has("micro") && !o.Get("micro").IsUndefined()) micro = int_field(o, "micro", where, 0, int64_t(1) << 53);
}

// The options both passes take: { backward, denominator?, step?, micro? }.
static void read_pass_options(Napi::Env env, Napi::Object o, const std::string& what, FbWorker& w) {
  w.backward = bool_field(o, "backward", what + " options");
  if (o.Has("denominator") && !o.Get("denominator").IsUndefined()) {
    w.denominator = number_field(o, "denominator", what + " options");
    if (!(w.denominator > 0)) throw Napi::RangeError::New(env, what + ": denominator must be > 0");
  }
  read_dropout_position(o, what + " options", w.step, w.micro);
}

// forwardBackward(tokens, targets, seqLens: Int32Array, { denominator?: number, backward: boolean, step?, micro? })
//   -> Promise<{ lossSum, count }>
Napi::Value NativeTrainer::ForwardBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[3].IsObject())
    throw Napi::TypeError::New(env, "forwardBackward(tokens, targets, seqLens, options): options must be an object");
  Napi::Object o = info[3].As<Napi::Object>();
  auto* w = new FbWorker(env, h_);
  try {
    w->tokens = int32_array(env, info[0], "forwardBackward: tokens");
    w->targets = int32_array(env, info[1], "forwardBackward: targets");
    w->lens = int32_array(env, info[2], "forwardBackward: seqLens");
    if (w->targets.size() != w->tokens.size())
      throw Napi::RangeError::New(env, "forwardBackward: targets must have one entry per token");
    if (w->tokens.empty() || w->lens.empty()) throw Napi::RangeError::New(env, "forwardBackward: empty batch");
    read_pass_options(env, o, "forwardBackward", *w);
  } catch (...) {
    delete w;
    throw;
  }
  Napi::Promise p = w->deferred.Promise();
  w->Queue();
  return p;
}

// step({ lr, beta1, beta2, eps, weightDecay, clip }) -> Promise<grad norm before clipping>
Napi::Value NativeTrainer::Step(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "step(options): options must be an object");
  Napi::Object o = info[0].As<Napi::Object>();
  const std::string w = "step options";
  ln::train::AdamWConfig c;
  c.lr = float(number_field(o, "lr", w));
  c.beta1 = float(number_field(o, "beta1", w));
  c.beta2 = float(number_field(o, "beta2", w));
  c.eps = float(number_field(o, "eps", w));
  c.weight_decay = float(number_field(o, "weightDecay", w));
  c.clip = float(number_field(o, "clip", w));
  auto* wk = new FbWorker(env, h_);
  wk->is_step = true;
  wk->adam = c;
  Napi::Promise p = wk->deferred.Promise();
  wk->Queue();
  return p;
}

Napi::Value NativeTrainer::ZeroGrad(const Napi::CallbackInfo& info) {
  require_idle(info.Env(), "zeroGrad");
  guarded(info.Env(), "zeroGrad", [&] { h_->trainer->zero_grad(); return 0; });
  return info.Env().Undefined();
}

Napi::Value NativeTrainer::GradNorm(const Napi::CallbackInfo& info) {
  require_idle(info.Env(), "gradNorm");
  return Napi::Number::New(info.Env(), guarded(info.Env(), "gradNorm", [&] { return h_->trainer->grad_norm(); }));
}

// params() -> [{ role, layer, mode, rows, cols, size, index: Int32Array | null }] (trainable ones have size > 0)
Napi::Value NativeTrainer::Params(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const ln::train::TrainingRuntime& t = *h_->trainer;
  Napi::Array a = Napi::Array::New(env);
  uint32_t k = 0;
  for (int i = 0; i < t.n_params(); ++i) {
    const ln::train::Param& p = t.param(i);
    Napi::Object o = Napi::Object::New(env);
    o.Set("id", i);
    o.Set("role", p.role);
    o.Set("layer", p.layer);
    static const char* modes[] = {"frozen", "dense", "rows", "cols", "lora", "lora_a", "lora_b"};
    o.Set("mode", modes[int(p.mode)]);
    if (p.stored.empty() && p.size > 0) {  // LoRA A [r, K], B [N, r] (masked: rows `index`), head [C, hidden]
      int64_t rows = p.mrows;
      if (p.mode == ln::train::ParamMode::LoraB && !p.index.empty())
        rows = t.param(t.find(p.role.substr(0, p.role.find('.')), p.layer)).stored.rows;
      o.Set("present", true);
      o.Set("rows", double(rows));
      o.Set("cols", double(p.mcols));
    } else {
      o.Set("present", !p.stored.empty());
      o.Set("rows", double(p.stored.rows));
      o.Set("cols", double(p.stored.cols));
    }
    o.Set("size", double(p.size));
    if (p.index.empty()) {
      o.Set("index", env.Null());
    } else {
      Napi::Int32Array ix = Napi::Int32Array::New(env, p.index.size());
      std::memcpy(ix.Data(), p.index.data(), p.index.size() * 4);
      o.Set("index", ix);
    }
    a.Set(k++, o);
  }
  return a;
}

ln::train::Arena NativeTrainer::arena(Napi::Env env, const std::string& which) {
  if (which == "master") return ln::train::Arena::Master;
  if (which == "grad") return ln::train::Arena::Grad;
  if (which == "m") return ln::train::Arena::AdamM;
  if (which == "v") return ln::train::Arena::AdamV;
  throw Napi::TypeError::New(env, "arena must be 'master', 'grad', 'm' or 'v', got '" + which + "'");
}

// read(arena: 'master'|'grad'|'m'|'v', id) -> Float32Array copy of the parameter's trainable slice
Napi::Value NativeTrainer::Read(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  require_idle(env, "read");
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsNumber()) throw Napi::TypeError::New(env, "read(arena, id)");
  ln::train::TrainingRuntime& t = *h_->trainer;
  const int64_t id = info[1].As<Napi::Number>().Int64Value();
  if (id < 0 || id >= t.n_params()) throw Napi::RangeError::New(env, "read: parameter id out of range");
  const ln::train::Arena which = arena(env, info[0].As<Napi::String>().Utf8Value());
  const ln::train::Param& p = t.param(int(id));
  Napi::Float32Array a = Napi::Float32Array::New(env, size_t(p.size));
  try {
    t.read(which, p.offset, p.size, a.Data());
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, std::string("read: ") + e.what());
  }
  return a;
}

// write(arena, id, values: Float32Array of the slice's size)
Napi::Value NativeTrainer::Write(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  require_idle(env, "write");
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsNumber() || !info[2].IsTypedArray() ||
      info[2].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw Napi::TypeError::New(env, "write(arena, id, values: Float32Array)");
  ln::train::TrainingRuntime& t = *h_->trainer;
  const int64_t id = info[1].As<Napi::Number>().Int64Value();
  if (id < 0 || id >= t.n_params()) throw Napi::RangeError::New(env, "write: parameter id out of range");
  const ln::train::Arena which = arena(env, info[0].As<Napi::String>().Utf8Value());
  const ln::train::Param& p = t.param(int(id));
  Napi::Float32Array v = info[2].As<Napi::Float32Array>();
  if (int64_t(v.ElementLength()) != p.size)
    throw Napi::RangeError::New(env, "write: " + p.role + ": expected " + std::to_string(p.size) + " values, got " +
                                         std::to_string(v.ElementLength()));
  try {
    t.write(which, p.offset, p.size, v.Data());
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, std::string("write: ") + e.what());
  }
  return env.Undefined();
}

// info() -> { trainable, stepCount, lowestLayer, activationBytes, stateBytes, denseThenMask, numLabels, adapters,
//           device: 'cpu' | 'cuda:N', describe, memory: { weights, master, grad, adam, activations, scratch,
//           deviceUsed, deviceTotal } (bytes; the CPU trainer's weights stay memory-mapped: 0, and device* are 0) }
Napi::Value NativeTrainer::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const ln::train::TrainingRuntime& t = *h_->trainer;
  // The CUDA trainer's memory report waits for the runtime's lock (held through a forward): refused while one runs
  // rather than blocking the JS thread. The CPU trainer's answers at once, as before.
  if (t.device() != "cpu") require_idle(env, "info");
  Napi::Object o = Napi::Object::New(env);
  o.Set("trainable", double(t.n_trainable()));
  o.Set("stepCount", double(t.step_count()));
  o.Set("lowestLayer", t.lowest_layer());
  o.Set("activationBytes", double(t.activation_bytes()));
  o.Set("stateBytes", double(t.n_trainable()) * 16);  // master + grad + m + v
  o.Set("denseThenMask", t.options().dense_then_mask);
  o.Set("numLabels", t.num_labels());
  o.Set("adapters", t.n_adapters());
  o.Set("device", t.device());
  o.Set("describe", t.describe());
  const ln::train::TrainingMemory m = guarded(env, "info", [&] { return t.memory(); });
  Napi::Object mem = Napi::Object::New(env);
  mem.Set("weights", double(m.weights));
  mem.Set("master", double(m.master));
  mem.Set("grad", double(m.grad));
  mem.Set("adam", double(m.adam));
  mem.Set("activations", double(m.activations));
  mem.Set("scratch", double(m.scratch));
  mem.Set("deviceUsed", double(m.device_used));
  mem.Set("deviceTotal", double(m.device_total));
  o.Set("memory", mem);
  return o;
}

// clockSteps(on): the device time of each step (zeroGrad to the end of step) clocked by kind of work (the GPU
// benchmark's breakdown; TrainingRuntime::clock_steps). stepTimes() -> [{ step, ms, marks }] of the last such span
// ([] on the CPU trainer, which has no clock).
Napi::Value NativeTrainer::ClockSteps(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  require_idle(env, "clockSteps");
  if (info.Length() < 1 || !info[0].IsBoolean()) throw Napi::TypeError::New(env, "clockSteps(on: boolean)");
  const bool on = info[0].As<Napi::Boolean>().Value();
  guarded(env, "clockSteps", [&] {
    h_->trainer->clock_steps(on);
    return 0;
  });
  return env.Undefined();
}

Napi::Value NativeTrainer::StepTimes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  require_idle(env, "stepTimes");
  const std::vector<ln::train::StepTime> rows = guarded(env, "stepTimes", [&] { return h_->trainer->step_times(); });
  Napi::Array out = Napi::Array::New(env, rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("step", rows[i].step);
    o.Set("ms", rows[i].ms);
    o.Set("marks", double(rows[i].marks));
    out.Set(uint32_t(i), o);
  }
  return out;
}

Napi::Value NativeTrainer::SetStepCount(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  require_idle(env, "setStepCount");
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "setStepCount(n)");
  const double n = info[0].As<Napi::Number>().DoubleValue();
  if (!(n >= 0) || n != double(int64_t(n))) throw Napi::RangeError::New(env, "setStepCount: n must be an integer >= 0");
  h_->trainer->set_step_count(int64_t(n));
  return env.Undefined();
}

// forwardBackwardCls(tokens, seqLens, labels: Int32Array (one per sequence, -1: none),
//                    { denominator?, backward, step?, micro? }) -> Promise<{ lossSum, count, logits: Float32Array }>
// logits: [sequences x numLabels], the head's class logits of every sequence (labelled or not).
Napi::Value NativeTrainer::ForwardBackwardCls(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[3].IsObject())
    throw Napi::TypeError::New(env, "forwardBackwardCls(tokens, seqLens, labels, options): options must be an object");
  if (h_->trainer->num_labels() <= 0)
    throw Napi::Error::New(env, "forwardBackwardCls: this trainer has no classification head (options.numLabels)");
  Napi::Object o = info[3].As<Napi::Object>();
  auto* w = new FbWorker(env, h_);
  w->is_cls = true;
  try {
    w->tokens = int32_array(env, info[0], "forwardBackwardCls: tokens");
    w->lens = int32_array(env, info[1], "forwardBackwardCls: seqLens");
    w->targets = int32_array(env, info[2], "forwardBackwardCls: labels");
    if (w->targets.size() != w->lens.size())
      throw Napi::RangeError::New(env, "forwardBackwardCls: labels must have one entry per sequence");
    if (w->tokens.empty() || w->lens.empty()) throw Napi::RangeError::New(env, "forwardBackwardCls: empty batch");
    read_pass_options(env, o, "forwardBackwardCls", *w);
  } catch (...) {
    delete w;
    throw;
  }
  Napi::Promise p = w->deferred.Promise();
  w->Queue();
  return p;
}

// resetOptimizer(): Adam moments and the step count to zero (the reference's optimizer re-creation at each save).
Napi::Value NativeTrainer::ResetOptimizer(const Napi::CallbackInfo& info) {
  require_idle(info.Env(), "resetOptimizer");
  guarded(info.Env(), "resetOptimizer", [&] { h_->trainer->reset_optimizer(); return 0; });
  return info.Env().Undefined();
}

// NativeTrainer.loraDelta(A: Float32Array [r x K], B: Float32Array [n x r], r, scale, threads) -> Float32Array [n x K]
// = scale * B A: the merged weight's change for the n rows B holds (W + scale B A is what PEFT's merge computes).
// Synchronous (an export step, not a training one).
Napi::Value NativeTrainer::LoraDelta(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto f32 = [&](int i) {
    return info.Length() > size_t(i) && info[size_t(i)].IsTypedArray() &&
           info[size_t(i)].As<Napi::TypedArray>().TypedArrayType() == napi_float32_array;
  };
  if (info.Length() < 5 || !f32(0) || !f32(1) || !info[2].IsNumber() || !info[3].IsNumber() || !info[4].IsNumber())
    throw Napi::TypeError::New(env, "loraDelta(A: Float32Array, B: Float32Array, r, scale, threads)");
  Napi::Float32Array A = info[0].As<Napi::Float32Array>(), B = info[1].As<Napi::Float32Array>();
  const double rd = info[2].As<Napi::Number>().DoubleValue(), scale = info[3].As<Napi::Number>().DoubleValue();
  const double td = info[4].As<Napi::Number>().DoubleValue();
  if (!(rd >= 1 && rd <= (1 << 20)) || rd != double(int64_t(rd))) throw Napi::RangeError::New(env, "loraDelta: r must be an integer >= 1");
  if (!std::isfinite(scale)) throw Napi::RangeError::New(env, "loraDelta: scale must be finite");
  if (!(td >= 1 && td <= 1024) || td != double(int64_t(td))) throw Napi::RangeError::New(env, "loraDelta: threads must be an integer in [1, 1024]");
  const int64_t r = int64_t(rd), na = int64_t(A.ElementLength()), nb = int64_t(B.ElementLength());
  if (na == 0 || na % r != 0 || nb % r != 0)
    throw Napi::RangeError::New(env, "loraDelta: A must hold r x K values and B n x r values (r = " + std::to_string(r) + ")");
  const int64_t K = na / r, n = nb / r;
  Napi::Float32Array out = Napi::Float32Array::New(env, size_t(n * K));
  if (n == 0) return out;
  std::vector<float> bs(B.Data(), B.Data() + nb);  // scale folded into B: one product, no pass over the output
  for (float& x : bs) x = float(double(x) * scale);
  ln::WeightRef w;
  w.data = A.Data();
  w.dtype = ln::DType::F32;
  w.rows = r;
  w.cols = K;
  ln::ThreadPool pool(static_cast<int>(td));
  std::vector<float> scratch(size_t(pool.size() * K));
  ln::train::gemm_dx(n, bs.data(), r, w, out.Data(), K, false, scratch.data(), pool);
  return out;
}

Napi::Function NativeTrainer::Init(Napi::Env env) {
  return DefineClass(env, "NativeTrainer",
                     {InstanceMethod("forwardBackward", &NativeTrainer::ForwardBackward),
                      InstanceMethod("step", &NativeTrainer::Step), InstanceMethod("zeroGrad", &NativeTrainer::ZeroGrad),
                      InstanceMethod("gradNorm", &NativeTrainer::GradNorm), InstanceMethod("params", &NativeTrainer::Params),
                      InstanceMethod("read", &NativeTrainer::Read), InstanceMethod("write", &NativeTrainer::Write),
                      InstanceMethod("info", &NativeTrainer::Info),
                      InstanceMethod("setStepCount", &NativeTrainer::SetStepCount),
                      InstanceMethod("forwardBackwardCls", &NativeTrainer::ForwardBackwardCls),
                      InstanceMethod("resetOptimizer", &NativeTrainer::ResetOptimizer),
                      InstanceMethod("clockSteps", &NativeTrainer::ClockSteps),
                      InstanceMethod("stepTimes", &NativeTrainer::StepTimes),
                      StaticMethod("loraDelta", &NativeTrainer::LoraDelta)});
}

Napi::Function InitNativeTrainer(Napi::Env env) { return NativeTrainer::Init(env); }

}  // namespace lnjs
