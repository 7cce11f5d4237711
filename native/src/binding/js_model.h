#pragma once
#include <napi.h>

#include <memory>
#include <mutex>
#include <vector>

#include "core/mapped_file.h"
#include "model/model.h"
#include "model/stats.h"

namespace lnjs {

// What a JS NativeModel owns: the mapped checkpoint files (kept alive as long as the model), the model, and a
// mutex that serialises forwards (the model's scratch buffers and caches are single-user).
struct ModelHolder {
  std::vector<std::shared_ptr<ln::MappedFile>> files;
  std::unique_ptr<ln::Model> model;
  std::mutex mu;
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
  std::shared_ptr<ModelHolder> holder_;
  std::shared_ptr<ln::KvCache> cache_;
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
  void require_idle(Napi::Env env, const char* what) const;
  std::shared_ptr<ModelHolder> holder_;
  std::shared_ptr<ln::ActivationStats> stats_;
  std::shared_ptr<int> busy_ = std::make_shared<int>(0);
};

}  // namespace lnjs
