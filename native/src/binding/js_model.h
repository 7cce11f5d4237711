#pragma once
#include <napi.h>

#include <memory>
#include <mutex>
#include <vector>

#include "core/mapped_file.h"
#include "model/model.h"
#include "model/stats.h"
#include "runtime/runtime.h"

namespace lnjs {

// What a JS NativeModel owns: the mapped checkpoint files (kept alive as long as the model), the runtime (CPU or
// CUDA: runtime/runtime.h), and a mutex that serialises forwards (a runtime's buffers and caches are
// single-user). dispose() frees the runtime (device memory) and the mappings as soon as no forward runs; the
// configuration stays readable for messages.
struct ModelHolder {
  std::vector<std::shared_ptr<ln::MappedFile>> files;
  std::unique_ptr<ln::Runtime> runtime;
  ln::ModelConfig config;
  std::mutex mu;
  // Under mu: the runtime, or an error naming the disposed model (a forward queued before dispose() that runs
  // after it is refused with this message, not a crash).
  ln::Runtime& live(const char* what);
};

class NativeModel : public Napi::ObjectWrap<NativeModel> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit NativeModel(const Napi::CallbackInfo& info);
  std::shared_ptr<ModelHolder> holder() const { return holder_; }
  static Napi::FunctionReference* constructor;

 private:
  Napi::Value Forward(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  std::shared_ptr<ModelHolder> holder_;
};

class NativeKvCache : public Napi::ObjectWrap<NativeKvCache> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit NativeKvCache(const Napi::CallbackInfo& info);
  std::shared_ptr<ModelHolder> holder() const { return holder_; }
  std::shared_ptr<ln::KvCache> cache() const { return cache_; }
  static Napi::FunctionReference* constructor;

 private:
  Napi::Value Length(const Napi::CallbackInfo& info);
  Napi::Value SetLength(const Napi::CallbackInfo& info);
  Napi::Value CopyPrefix(const Napi::CallbackInfo& info);
  Napi::Value Bytes(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  // The cache, or throws once disposed.
  ln::KvCache& live(Napi::Env env) const;
  std::shared_ptr<ModelHolder> holder_;
  std::shared_ptr<ln::KvCache> cache_;  // null once disposed; a running forward holds its own reference
};

// A site name ('act', 'gate', ..., 'down') from JS: TypeError when not a string, RangeError when unknown.
ln::Site parse_site_value(Napi::Env env, const Napi::Value& v, const std::string& what);

// NativeStats: an ln::ActivationStats bound to one NativeModel (js_stats.cpp). `busy` counts the forwards queued
// with it; read() and reset() refuse to run while a forward may be writing into it. Touched on the JS thread only.
class NativeStats : public Napi::ObjectWrap<NativeStats> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit NativeStats(const Napi::CallbackInfo& info);
  std::shared_ptr<ModelHolder> holder() const { return holder_; }
  std::shared_ptr<ln::ActivationStats> stats() const { return stats_; }
  std::shared_ptr<int> busy() const { return busy_; }
  static Napi::FunctionReference* constructor;

 private:
  Napi::Value Read(const Napi::CallbackInfo& info);
  Napi::Value ReadSeqMeans(const Napi::CallbackInfo& info);
  Napi::Value Reset(const Napi::CallbackInfo& info);
  Napi::Value Restore(const Napi::CallbackInfo& info);
  void require_idle(Napi::Env env, const char* what) const;
  std::shared_ptr<ModelHolder> holder_;
  std::shared_ptr<ln::ActivationStats> stats_;
  std::shared_ptr<int> busy_ = std::make_shared<int>(0);
};

}  // namespace lnjs
