// NativeIntervention: builds an ln::Intervention from typed arrays the TypeScript resolver prepares
// (src/intervene/resolve.ts). Array types and lengths are checked here (TypeError / RangeError); ranges, op
// codes, sites, rule links and non-finite values by the ln::Intervention constructor (RangeError).
#include "binding/js_intervention.h"

#include <string>
#include <vector>

#include "binding/js_util.h"

namespace lnjs {

Napi::FunctionReference* NativeIntervention::constructor = nullptr;

namespace {

// A copy of options[name], which must be a typed array of type `type` (JS class name `cls`) of length n
// (n < 0: any length).
template <class T>
std::vector<T> typed(const Napi::Object& o, const char* name, napi_typedarray_type type, const char* cls,
                     int64_t n, const std::string& where) {
  Napi::Value v = field(o, name, where);
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type)
    throw Napi::TypeError::New(o.Env(), where + ": '" + name + "' must be a " + cls);
  Napi::TypedArray a = v.As<Napi::TypedArray>();
  if (n >= 0 && int64_t(a.ElementLength()) != n)
    throw Napi::RangeError::New(o.Env(), where + ": '" + name + "' has " + std::to_string(a.ElementLength()) +
                                             " entries, expected " + std::to_string(n));
  const T* p = reinterpret_cast<const T*>(static_cast<const uint8_t*>(a.ArrayBuffer().Data()) + a.ByteOffset());
  return std::vector<T>(p, p + a.ElementLength());
}

}  // namespace

// new NativeIntervention(model, {
//   layers: Int32Array, sites: Int32Array (model/sites.h: 0 act, 1 gate, 2 h, 3 up, 4 q, 5 k, 6 v, 7 o, 8 down),
//   neurons: Int32Array (units of the site), ops: Uint8Array (0 set, 1 add, 2 scale), when: Uint8Array
//   (position-class bits), values: Float32Array, rules: Int32Array (-1 or a rule index),
//                                                                      -- one entry per edit, application order
//   ruleLayers: Int32Array, ruleSites: Int32Array (0 act, 1 gate, 2 h), ruleStats: Int32Array (0 mean, 1 std,
//   2 median, 3 max, 4 iqr, 5 mad, 6 percentile), ruleFactors: Float32Array, rulePercentiles: Float32Array })
//                                                                      -- one per rule
NativeIntervention::NativeIntervention(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeIntervention>(info) {
  Napi::Env env = info.Env();
  const std::string w = "NativeIntervention(model, arrays)";
  if (info.Length() < 2 || !info[0].IsObject() || !info[0].As<Napi::Object>().InstanceOf(NativeModel::constructor->Value()))
    throw Napi::TypeError::New(env, w + ": model must be a NativeModel");
  if (!info[1].IsObject()) throw Napi::TypeError::New(env, w + ": arrays must be an object");
  holder_ = NativeModel::Unwrap(info[0].As<Napi::Object>())->holder();
  Napi::Object o = info[1].As<Napi::Object>();

  const auto layers = typed<int32_t>(o, "layers", napi_int32_array, "Int32Array", -1, w);
  const int64_t n = int64_t(layers.size());
  const auto sites = typed<int32_t>(o, "sites", napi_int32_array, "Int32Array", n, w);
  const auto neurons = typed<int32_t>(o, "neurons", napi_int32_array, "Int32Array", n, w);
  const auto ops = typed<uint8_t>(o, "ops", napi_uint8_array, "Uint8Array", n, w);
  const auto when = typed<uint8_t>(o, "when", napi_uint8_array, "Uint8Array", n, w);
  const auto values = typed<float>(o, "values", napi_float32_array, "Float32Array", n, w);
  const auto rules = typed<int32_t>(o, "rules", napi_int32_array, "Int32Array", n, w);
  const auto r_layers = typed<int32_t>(o, "ruleLayers", napi_int32_array, "Int32Array", -1, w);
  const int64_t nr = int64_t(r_layers.size());
  const auto r_sites = typed<int32_t>(o, "ruleSites", napi_int32_array, "Int32Array", nr, w);
  const auto r_stats = typed<int32_t>(o, "ruleStats", napi_int32_array, "Int32Array", nr, w);
  const auto r_factors = typed<float>(o, "ruleFactors", napi_float32_array, "Float32Array", nr, w);
  const auto r_pct = typed<float>(o, "rulePercentiles", napi_float32_array, "Float32Array", nr, w);

  std::vector<ln::EditSpec> edits(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    ln::EditSpec& e = edits[size_t(i)];
    e.layer = layers[size_t(i)];
    e.site = ln::Site(sites[size_t(i)]);
    e.neuron = neurons[size_t(i)];
    e.op = ln::InterveneOp(ops[size_t(i)]);
    e.when = when[size_t(i)];
    e.value = values[size_t(i)];
    e.rule = rules[size_t(i)];
  }
  std::vector<ln::RowRule> rr(static_cast<size_t>(nr));
  for (int64_t k = 0; k < nr; ++k) {
    ln::RowRule& r = rr[size_t(k)];
    r.layer = r_layers[size_t(k)];
    r.site = ln::Site(r_sites[size_t(k)]);
    r.stat = ln::RowStat(r_stats[size_t(k)]);
    r.factor = r_factors[size_t(k)];
    r.percentile = r_pct[size_t(k)];
  }
  try {
    iv_ = std::make_shared<const ln::Intervention>(holder_->config, edits, rr);
  } catch (const std::exception& e) {
    throw Napi::RangeError::New(env, e.what());
  }
}

// info() -> { edits, layers }
Napi::Value NativeIntervention::Info(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("edits", double(iv_->n_edits()));
  o.Set("layers", double(iv_->n_layers()));
  return o;
}

Napi::Function NativeIntervention::Init(Napi::Env env) {
  Napi::Function f = DefineClass(env, "NativeIntervention", {InstanceMethod("info", &NativeIntervention::Info)});
  constructor = new Napi::FunctionReference(Napi::Persistent(f));
  return f;
}

}  // namespace lnjs
