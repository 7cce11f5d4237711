// NativeKvCache: the KV cache of a NativeModel, for incremental decoding of several sequences (slots).
#include <stdexcept>

#include "binding/js_model.h"
#include "binding/js_util.h"
#include "core/oom.h"

namespace lnjs {

Napi::FunctionReference* NativeKvCache::constructor = nullptr;

// new NativeKvCache(model: NativeModel, nSlots, capacity)
NativeKvCache::NativeKvCache(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeKvCache>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsObject() || !info[0].As<Napi::Object>().InstanceOf(NativeModel::constructor->Value()))
    throw Napi::TypeError::New(env, "NativeKvCache(model, nSlots, capacity): model must be a NativeModel");
  if (!info[1].IsNumber() || !info[2].IsNumber())
    throw Napi::TypeError::New(env, "NativeKvCache(model, nSlots, capacity): nSlots and capacity must be numbers");
  holder_ = NativeModel::Unwrap(info[0].As<Napi::Object>())->holder();
  double slots = info[1].As<Napi::Number>().DoubleValue(), cap = info[2].As<Napi::Number>().DoubleValue();
  const ln::ModelConfig& c = holder_->config;
  if (!(slots >= 1 && slots <= 65536) || slots != double(int64_t(slots)))
    throw Napi::RangeError::New(env, "NativeKvCache: nSlots must be an integer in [1, 65536]");
  if (!(cap >= 1 && cap <= c.max_positions) || cap != double(int64_t(cap)))
    throw Napi::RangeError::New(env, "NativeKvCache: capacity must be an integer in [1, " + std::to_string(c.max_positions) +
                                         "] (the model's context)");
  try {
    // The runtime makes (and owns the storage of) its cache: host memory on the CPU, device memory on a GPU.
    std::lock_guard<std::mutex> lk(holder_->mu);
    cache_ = holder_->live("NativeKvCache").make_cache(int32_t(slots), int32_t(cap));
  } catch (const ln::OutOfMemory& e) {
    throw Napi::Error::New(env, e.what());  // names the cache and its size
  } catch (const std::bad_alloc&) {
    throw Napi::Error::New(env, "NativeKvCache: out of memory for " + std::to_string(int64_t(slots)) + " slots × " +
                                    std::to_string(int64_t(cap)) + " tokens");
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, std::string("NativeKvCache: ") + e.what());
  }
}

ln::KvCache& NativeKvCache::live(Napi::Env env) const {
  if (!cache_) throw Napi::Error::New(env, "NativeKvCache: disposed");
  return *cache_;
}

static int32_t slot_arg(const Napi::CallbackInfo& info, const ln::KvCache& c) {
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(info.Env(), "slot must be a number");
  double s = info[0].As<Napi::Number>().DoubleValue();
  if (!(s >= 0 && s < c.n_slots()) || s != double(int64_t(s)))
    throw Napi::RangeError::New(info.Env(), "slot must be an integer in [0, " + std::to_string(c.n_slots()) + ")");
  return int32_t(s);
}

Napi::Value NativeKvCache::Length(const Napi::CallbackInfo& info) {
  const ln::KvCache& c = live(info.Env());
  return Napi::Number::New(info.Env(), c.length(slot_arg(info, c)));
}

// setLength(slot, len): truncate a slot (0 resets it). Refused while a forward runs on the model.
Napi::Value NativeKvCache::SetLength(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ln::KvCache& c = live(env);
  int32_t slot = slot_arg(info, c);
  if (info.Length() < 2 || !info[1].IsNumber()) throw Napi::TypeError::New(env, "setLength(slot, len): len must be a number");
  double len = info[1].As<Napi::Number>().DoubleValue();
  if (!(len >= 0 && len <= c.length(slot)) || len != double(int64_t(len)))
    throw Napi::RangeError::New(env, "setLength: len must be an integer in [0, " + std::to_string(c.length(slot)) +
                                         "] (a slot can only be truncated)");
  std::unique_lock<std::mutex> lk(holder_->mu, std::try_to_lock);
  if (!lk.owns_lock()) throw Napi::Error::New(env, "setLength: the model is running a forward; await it first");
  c.set_length(slot, int32_t(len));
  return env.Undefined();
}

// copyPrefix(src, dst, len): slot dst := the first len positions of slot src. Refused while a forward runs.
Napi::Value NativeKvCache::CopyPrefix(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ln::KvCache& c = live(env);
  if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber())
    throw Napi::TypeError::New(env, "copyPrefix(src, dst, len): three numbers expected");
  const double src = info[0].As<Napi::Number>().DoubleValue(), dst = info[1].As<Napi::Number>().DoubleValue(),
               len = info[2].As<Napi::Number>().DoubleValue();
  // The range first: converting NaN or a double past int64 to an integer is undefined behaviour.
  for (double x : {src, dst, len})
    if (!(x >= 0 && x <= 2147483647.0) || x != double(int64_t(x)))
      throw Napi::RangeError::New(env, "copyPrefix: arguments must be non-negative integers");
  std::unique_lock<std::mutex> lk(holder_->mu, std::try_to_lock);
  if (!lk.owns_lock()) throw Napi::Error::New(env, "copyPrefix: the model is running a forward; await it first");
  try {
    c.copy_prefix(int32_t(src), int32_t(dst), int32_t(len));
  } catch (const std::exception& e) {
    throw Napi::RangeError::New(env, e.what());
  }
  return env.Undefined();
}

Napi::Value NativeKvCache::Bytes(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(live(info.Env()).bytes())); }

// dispose(): frees the cache's memory now (a GPU's device memory: V8 does not see it, so waiting for the garbage
// collector can run the device out of memory when caches are made one after another), or when the forward that
// uses it ends. Later calls and forwards with it are refused. Idempotent.
Napi::Value NativeKvCache::Dispose(const Napi::CallbackInfo& info) {
  cache_.reset();
  return info.Env().Undefined();
}

Napi::Function NativeKvCache::Init(Napi::Env env) {
  Napi::Function f = DefineClass(env, "NativeKvCache",
                                 {InstanceMethod("length", &NativeKvCache::Length),
                                  InstanceMethod("setLength", &NativeKvCache::SetLength),
                                  InstanceMethod("copyPrefix", &NativeKvCache::CopyPrefix),
                                  InstanceMethod("bytes", &NativeKvCache::Bytes),
                                  InstanceMethod("dispose", &NativeKvCache::Dispose)});
  constructor = new Napi::FunctionReference(Napi::Persistent(f));
  return f;
}

}  // namespace lnjs
