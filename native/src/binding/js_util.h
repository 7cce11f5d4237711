// Reading typed values out of JS objects at the native boundary: every missing or mistyped field becomes a
// TypeError naming the field, never a crash.
#pragma once
#include <napi.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace lnjs {

// A JS number as JS prints it for the common cases (4, 2.5, NaN, Infinity), not std::to_string's 4.000000.
inline std::string number_text(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.15g", d);
  return buf;
}

inline Napi::Value field(const Napi::Object& o, const char* name, const std::string& where) {
  if (!o.Has(name)) throw Napi::TypeError::New(o.Env(), where + ": missing field '" + name + "'");
  return o.Get(name);
}

inline double number_field(const Napi::Object& o, const char* name, const std::string& where) {
  Napi::Value v = field(o, name, where);
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), where + ": field '" + name + "' must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

inline int64_t int_field(const Napi::Object& o, const char* name, const std::string& where, int64_t lo, int64_t hi) {
  double d = number_field(o, name, where);
  if (!(d >= double(lo) && d <= double(hi)) || d != double(int64_t(d)))
    throw Napi::RangeError::New(o.Env(), where + ": field '" + name + "' must be an integer in [" +
                                             std::to_string(lo) + ", " + std::to_string(hi) + "], got " +
                                             number_text(d));
  return int64_t(d);
}

inline bool bool_field(const Napi::Object& o, const char* name, const std::string& where) {
  Napi::Value v = field(o, name, where);
  if (!v.IsBoolean()) throw Napi::TypeError::New(o.Env(), where + ": field '" + name + "' must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

inline std::string string_field(const Napi::Object& o, const char* name, const std::string& where) {
  Napi::Value v = field(o, name, where);
  if (!v.IsString()) throw Napi::TypeError::New(o.Env(), where + ": field '" + name + "' must be a string");
  return v.As<Napi::String>().Utf8Value();
}

// Copies an Int32Array argument (so the worker thread never reads memory the JS side may free or change).
inline std::vector<int32_t> int32_array(Napi::Env env, const Napi::Value& v, const std::string& what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    throw Napi::TypeError::New(env, what + " must be an Int32Array");
  Napi::Int32Array a = v.As<Napi::Int32Array>();
  return std::vector<int32_t>(a.Data(), a.Data() + a.ElementLength());
}

}  // namespace lnjs
