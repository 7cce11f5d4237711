// NativeIntervention: a resolved ln::Intervention bound to one NativeModel (js_intervention.cpp), passed to
// forward() as options.intervention. Immutable once built, so forwards may share it.
#pragma once
#include <napi.h>

#include <memory>

#include "binding/js_model.h"
#include "model/intervention.h"

namespace lnjs {

class NativeIntervention : public Napi::ObjectWrap<NativeIntervention> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit NativeIntervention(const Napi::CallbackInfo& info);
  std::shared_ptr<ModelHolder> holder() const { return holder_; }
  std::shared_ptr<const ln::Intervention> intervention() const { return iv_; }
  static Napi::FunctionReference* constructor;

 private:
  Napi::Value Info(const Napi::CallbackInfo& info);
  std::shared_ptr<ModelHolder> holder_;
  std::shared_ptr<const ln::Intervention> iv_;
};

}  // namespace lnjs
