// Measurement hooks for benchmarks/ (not part of the public API): the engine's GEMM at a given shape and a large
// memory copy, timed natively so that the forward benchmark can state its throughput as a ratio to them.
#include <napi.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "binding/js_util.h"
#include "kernels/gemm.h"

namespace lnjs {

static double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// benchGemm({ m, n, k, dtype: 'F32'|'BF16'|'F16', compute: 'f32'|'bf16', threads, reps }) -> best seconds per GEMM
Napi::Value BenchGemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "benchGemm(options)");
  Napi::Object o = info[0].As<Napi::Object>();
  const std::string w = "benchGemm";
  int64_t m = int_field(o, "m", w, 1, 1 << 16), n = int_field(o, "n", w, 1, 1 << 20), k = int_field(o, "k", w, 1, 1 << 20);
  int64_t threads = int_field(o, "threads", w, 1, 1024), reps = int_field(o, "reps", w, 1, 1000);
  std::string dt = string_field(o, "dtype", w), compute = string_field(o, "compute", w);
  ln::DType dtype = dt == "F32" ? ln::DType::F32 : dt == "F16" ? ln::DType::F16 : ln::DType::BF16;
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> x(size_t(m * k)), y(size_t(m * n));
  for (auto& v : x) v = u(rng);
  std::vector<uint8_t> wbytes(size_t(n * k * ln::dtype_size(dtype)));
  for (int64_t i = 0; i < n * k; ++i) {
    float f = u(rng) * 0.05f;
    if (dtype == ln::DType::F32) std::memcpy(&wbytes[size_t(4 * i)], &f, 4);
    else {
      uint16_t h = ln::f32_to_bf16(f);  // F16 benchmark data: bit patterns are valid halves too (small values)
      std::memcpy(&wbytes[size_t(2 * i)], &h, 2);
    }
  }
  ln::WeightRef W{wbytes.data(), dtype, n, k};
  ln::ThreadPool pool{int(threads)};
  ln::Compute c = compute == "bf16" ? ln::Compute::BF16 : ln::Compute::F32;
  ln::gemm_xwt(m, x.data(), k, W, y.data(), n, c, false, pool);  // warm-up (packing buffers, page faults)
  double best = 1e30;
  for (int64_t r = 0; r < reps; ++r) {
    double t0 = now_s();
    ln::gemm_xwt(m, x.data(), k, W, y.data(), n, c, false, pool);
    best = std::min(best, now_s() - t0);
  }
  if (o.Has("check") && o.Get("check").ToBoolean().Value()) {
    // Verify what was timed: max |ours - reference| / max |reference|.
    std::vector<float> yr(size_t(m * n));
    ln::gemm_xwt_ref(m, x.data(), k, W, yr.data(), n, c, false);
    double md = 0, mr = 0;
    for (size_t i = 0; i < yr.size(); ++i) {
      md = std::max(md, double(std::abs(y[i] - yr[i])));
      mr = std::max(mr, double(std::abs(yr[i])));
    }
    Napi::Object r = Napi::Object::New(env);
    r.Set("seconds", best);
    r.Set("maxRelError", mr > 0 ? md / mr : md);
    return r;
  }
  return Napi::Number::New(env, best);
}

// benchCopy({ bytes, reps }) -> best bytes/second of a memcpy (read + write counted once: bytes copied / time)
Napi::Value BenchCopy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "benchCopy(options)");
  Napi::Object o = info[0].As<Napi::Object>();
  int64_t bytes = int_field(o, "bytes", "benchCopy", 1 << 20, int64_t(1) << 34);
  int64_t reps = int_field(o, "reps", "benchCopy", 1, 1000);
  std::vector<uint8_t> a(size_t(bytes), 1), b(size_t(bytes), 2);
  double best = 1e30;
  for (int64_t r = 0; r < reps; ++r) {
    double t0 = now_s();
    std::memcpy(b.data(), a.data(), size_t(bytes));
    best = std::min(best, now_s() - t0);
  }
  if (b[size_t(bytes / 2)] != 1) throw Napi::Error::New(env, "benchCopy: copy failed");
  return Napi::Number::New(env, double(bytes) / best);
}

}  // namespace lnjs
