// NativeStats: per-unit activation statistics (ln::ActivationStats) accumulated by the forwards of one
// NativeModel. Every option is checked here, with a TypeError for a wrong type and a RangeError for a wrong
// value; read() copies the totals out (counts as float64, exact below 2^53).
#include <cstring>
#include <string>

#include "binding/js_model.h"
#include "binding/js_util.h"
#include "core/oom.h"

namespace lnjs {

Napi::FunctionReference* NativeStats::constructor = nullptr;

static const char* kSiteList = "act, gate, h, up, q, k, v, o, down, resid";

ln::Site parse_site_value(Napi::Env env, const Napi::Value& v, const std::string& what) {
  if (!v.IsString()) throw Napi::TypeError::New(env, what + " must be a string (one of " + kSiteList + ")");
  const std::string name = v.As<Napi::String>().Utf8Value();
  ln::Site s;
  if (!ln::parse_site(name, &s))
    throw Napi::RangeError::New(env, what + ": unknown site '" + name + "' (sites: " + kSiteList + ")");
  return s;
}

// new NativeStats(model, { sites: string[], layers, histEdges?: Float64Array,
//                          thresholds?: { [site]: Float32Array }, seqMeans?: boolean })
NativeStats::NativeStats(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeStats>(info) {
  Napi::Env env = info.Env();
  const std::string w = "NativeStats(model, options)";
  if (info.Length() < 2 || !info[0].IsObject() || !info[0].As<Napi::Object>().InstanceOf(NativeModel::constructor->Value()))
    throw Napi::TypeError::New(env, w + ": model must be a NativeModel");
  if (!info[1].IsObject()) throw Napi::TypeError::New(env, w + ": options must be an object");
  holder_ = NativeModel::Unwrap(info[0].As<Napi::Object>())->holder();
  const ln::ModelConfig& c = holder_->config;
  Napi::Object o = info[1].As<Napi::Object>();

  ln::StatsOptions opts;
  Napi::Value sv = field(o, "sites", w);
  if (!sv.IsArray()) throw Napi::TypeError::New(env, w + ": 'sites' must be an array of site names");
  Napi::Array sites = sv.As<Napi::Array>();
  if (sites.Length() == 0) throw Napi::RangeError::New(env, w + ": 'sites' is empty");
  for (uint32_t i = 0; i < sites.Length(); ++i) {
    const ln::Site s = parse_site_value(env, sites.Get(i), w + ": sites[" + std::to_string(i) + "]");
    for (ln::Site prev : opts.sites)
      if (prev == s) throw Napi::RangeError::New(env, w + ": site '" + ln::site_name(s) + "' is listed twice");
    opts.sites.push_back(s);
  }
  opts.n_layers = int32_t(int_field(o, "layers", w, 1, c.n_layers));

  if (o.Has("histEdges") && !o.Get("histEdges").IsUndefined()) {
    Napi::Value e = o.Get("histEdges");
    if (!e.IsTypedArray() || e.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
      throw Napi::TypeError::New(env, w + ": 'histEdges' must be a Float64Array");
    Napi::Float64Array a = e.As<Napi::Float64Array>();
    opts.hist_edges.assign(a.Data(), a.Data() + a.ElementLength());
    if (opts.hist_edges.size() < 2)
      throw Napi::RangeError::New(env, w + ": 'histEdges' needs at least 2 edges (one bin), got " +
                                           std::to_string(opts.hist_edges.size()));
    for (size_t i = 1; i < opts.hist_edges.size(); ++i)
      if (!(opts.hist_edges[i] > opts.hist_edges[i - 1]))
        throw Napi::RangeError::New(env, w + ": 'histEdges' must be strictly ascending (edge " + std::to_string(i) +
                                             " is not above edge " + std::to_string(i - 1) + ")");
  }
  if (o.Has("thresholds") && !o.Get("thresholds").IsUndefined()) {
    Napi::Value tv = o.Get("thresholds");
    if (!tv.IsObject() || tv.IsArray() || tv.IsTypedArray())
      throw Napi::TypeError::New(env, w + ": 'thresholds' must be an object { [site]: Float32Array }");
    Napi::Object th = tv.As<Napi::Object>();
    Napi::Array keys = th.GetPropertyNames();
    for (uint32_t i = 0; i < keys.Length(); ++i) {
      const ln::Site s = parse_site_value(env, keys.Get(i), w + ": thresholds key");
      bool profiled = false;
      for (ln::Site p : opts.sites) profiled = profiled || p == s;
      if (!profiled)
        throw Napi::RangeError::New(env, w + ": thresholds given for site '" + ln::site_name(s) + "', which is not in 'sites'");
      Napi::Value a = th.Get(keys.Get(i));
      if (!a.IsTypedArray() || a.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
        throw Napi::TypeError::New(env, w + ": thresholds." + ln::site_name(s) + " must be a Float32Array");
      Napi::Float32Array f = a.As<Napi::Float32Array>();
      const int64_t want = int64_t(opts.n_layers) * ln::site_width(c, s);
      if (int64_t(f.ElementLength()) != want)
        throw Napi::RangeError::New(env, w + ": thresholds." + ln::site_name(s) + " must hold layers x width = " +
                                             std::to_string(opts.n_layers) + " x " + std::to_string(ln::site_width(c, s)) +
                                             " = " + std::to_string(want) + " values, got " + std::to_string(f.ElementLength()));
      opts.thresholds[int(s)].assign(f.Data(), f.Data() + f.ElementLength());
    }
  }
  if (o.Has("seqMeans") && !o.Get("seqMeans").IsUndefined()) opts.seq_means = bool_field(o, "seqMeans", w);
  try {
    stats_ = std::make_shared<ln::ActivationStats>(c, opts);
  } catch (const std::invalid_argument& e) {
    throw Napi::RangeError::New(env, w + ": " + e.what());
  } catch (const ln::OutOfMemory& e) {
    throw Napi::Error::New(env, e.what());  // names the arrays and their size
  } catch (const std::bad_alloc&) {
    throw Napi::Error::New(env, w + ": out of memory for the statistics arrays");
  }
}

void NativeStats::require_idle(Napi::Env env, const char* what) const {
  if (*busy_ > 0)
    throw Napi::Error::New(env, std::string("NativeStats.") + what + ": " + std::to_string(*busy_) +
                                    " forward(s) using these statistics are still running; await them first");
}

template <class T>
static Napi::Float64Array to_f64(Napi::Env env, const std::vector<T>& v) {
  Napi::Float64Array a = Napi::Float64Array::New(env, v.size());
  for (size_t i = 0; i < v.size(); ++i) a[i] = double(v[i]);
  return a;
}

static Napi::Float32Array to_f32(Napi::Env env, const std::vector<float>& v) {
  Napi::Float32Array a = Napi::Float32Array::New(env, v.size());
  if (!v.empty()) std::memcpy(a.Data(), v.data(), v.size() * sizeof(float));
  return a;
}

// read() -> { tokens, sequences, layers, histEdges: Float64Array | null,
//             sites: { [site]: { width, overZero, sum, sumSq, absSum, histCounts?, aboveCounts?, seqMeans? } } }
Napi::Value NativeStats::Read(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  require_idle(env, "read");
  const ln::ActivationStats& s = *stats_;
  Napi::Object out = Napi::Object::New(env);
  out.Set("tokens", double(s.tokens()));
  out.Set("sequences", double(s.sequences()));
  out.Set("layers", double(s.n_layers()));
  out.Set("histEdges", s.hist_bins() > 0 ? Napi::Value(to_f64(env, s.hist_edges())) : env.Null());
  Napi::Object sites = Napi::Object::New(env);
  for (const ln::SiteStats& st : s.sites()) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("width", double(st.width));
    o.Set("overZero", to_f64(env, st.over_zero));
    o.Set("sum", to_f64(env, st.sum));
    o.Set("sumSq", to_f64(env, st.sum_sq));
    o.Set("absSum", to_f64(env, st.abs_sum));
    if (!st.hist.empty()) o.Set("histCounts", to_f64(env, st.hist));
    if (!st.above.empty()) o.Set("aboveCounts", to_f64(env, st.above));
    if (s.has_seq_means()) o.Set("seqMeans", to_f32(env, st.seq_means));
    sites.Set(ln::site_name(st.site), o);
  }
  out.Set("sites", sites);
  return out;
}

// readSeqMeans() -> { [site]: Float32Array } and clears them (a long run drains them as it goes).
Napi::Value NativeStats::ReadSeqMeans(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  require_idle(env, "readSeqMeans");
  if (!stats_->has_seq_means()) throw Napi::Error::New(env, "NativeStats.readSeqMeans: made without seqMeans: true");
  Napi::Object out = Napi::Object::New(env);
  for (const ln::SiteStats& st : stats_->sites()) out.Set(ln::site_name(st.site), to_f32(env, st.seq_means));
  stats_->clear_seq_means();
  return out;
}

// restore({ tokens, sequences, sites: { [site]: { overZero, sum, sumSq, absSum, histCounts?, aboveCounts? } } }):
// the totals of an earlier run (read()'s shape, Float64Arrays) become these statistics' counts and sums, so that
// later forwards add to them in the order an uninterrupted run would (a resumed profile's sums are the same bits).
// Sequence means are not restored (the caller keeps those read so far). Everything is checked before anything
// is set: every profiled site, each array of its length, counts whole numbers in [0, 2^53).
Napi::Value NativeStats::Restore(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  require_idle(env, "restore");
  const std::string w = "NativeStats.restore(totals)";
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, w + ": totals must be an object");
  Napi::Object o = info[0].As<Napi::Object>();
  const double limit = 9007199254740992.0;  // 2^53
  const int64_t tokens = int_field(o, "tokens", w, 0, int64_t(limit) - 1);
  const int64_t sequences = int_field(o, "sequences", w, 0, tokens);
  Napi::Value sv = field(o, "sites", w);
  if (!sv.IsObject()) throw Napi::TypeError::New(env, w + ": 'sites' must be an object { [site]: arrays }");
  Napi::Object sites = sv.As<Napi::Object>();
  struct Source {
    ln::SiteStats* st;
    Napi::Float64Array over_zero, sum, sum_sq, abs_sum, hist, above;
  };
  std::vector<Source> sources;
  for (const ln::SiteStats& profiled : stats_->sites()) {
    ln::SiteStats& st = *stats_->find(profiled.site);
    const std::string name = ln::site_name(st.site);
    if (!sites.Has(name)) throw Napi::RangeError::New(env, w + ": sites." + name + " is missing (a profiled site)");
    Napi::Value sub = sites.Get(name);
    if (!sub.IsObject()) throw Napi::TypeError::New(env, w + ": sites." + name + " must be an object");
    Napi::Object so = sub.As<Napi::Object>();
    auto array = [&](const char* key, size_t want, bool counts) -> Napi::Float64Array {
      const std::string where = w + ": sites." + name + "." + key;
      Napi::Value v = so.Get(key);
      if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
        throw Napi::TypeError::New(env, where + " must be a Float64Array");
      Napi::Float64Array a = v.As<Napi::Float64Array>();
      if (a.ElementLength() != want)
        throw Napi::RangeError::New(env, where + " must hold " + std::to_string(want) + " values, got " +
                                             std::to_string(a.ElementLength()));
      if (counts)
        for (size_t i = 0; i < want; ++i)
          if (!(a[i] >= 0 && a[i] < limit && a[i] == double(int64_t(a[i]))))
            throw Napi::RangeError::New(env, where + "[" + std::to_string(i) + "] is " + number_text(a[i]) +
                                                 "; counts must be whole numbers in [0, 2^53)");
      return a;
    };
    Source src{&st, array("overZero", st.over_zero.size(), true), array("sum", st.sum.size(), false),
               array("sumSq", st.sum_sq.size(), false), array("absSum", st.abs_sum.size(), false), {}, {}};
    if (!st.hist.empty()) src.hist = array("histCounts", st.hist.size(), true);
    if (!st.above.empty()) src.above = array("aboveCounts", st.above.size(), true);
    sources.push_back(src);
  }
  for (Source& s : sources) {
    ln::SiteStats& st = *s.st;
    for (size_t i = 0; i < st.over_zero.size(); ++i) st.over_zero[i] = int64_t(s.over_zero[i]);
    std::memcpy(st.sum.data(), s.sum.Data(), st.sum.size() * sizeof(double));
    std::memcpy(st.sum_sq.data(), s.sum_sq.Data(), st.sum_sq.size() * sizeof(double));
    std::memcpy(st.abs_sum.data(), s.abs_sum.Data(), st.abs_sum.size() * sizeof(double));
    for (size_t i = 0; i < st.hist.size(); ++i) st.hist[i] = int64_t(s.hist[i]);
    for (size_t i = 0; i < st.above.size(); ++i) st.above[i] = int64_t(s.above[i]);
  }
  stats_->set_counted(tokens, sequences);
  return env.Undefined();
}

Napi::Value NativeStats::Reset(const Napi::CallbackInfo& info) {
  require_idle(info.Env(), "reset");
  stats_->reset();
  return info.Env().Undefined();
}

Napi::Function NativeStats::Init(Napi::Env env) {
  Napi::Function f = DefineClass(env, "NativeStats",
                                 {InstanceMethod("read", &NativeStats::Read),
                                  InstanceMethod("readSeqMeans", &NativeStats::ReadSeqMeans),
                                  InstanceMethod("restore", &NativeStats::Restore),
                                  InstanceMethod("reset", &NativeStats::Reset)});
  constructor = new Napi::FunctionReference(Napi::Persistent(f));
  return f;
}

}  // namespace lnjs
