// The langneurons Node addon: the native engine's classes and a few introspection functions.
#include <napi.h>

#include <thread>

#include "binding/js_intervention.h"
#include "binding/js_model.h"
#include "kernels/gemm.h"
#include "runtime/cuda_runtime.h"

namespace lnjs {

Napi::Value BenchGemm(const Napi::CallbackInfo& info);
Napi::Value BenchCopy(const Napi::CallbackInfo& info);
Napi::Function InitNativeTrainer(Napi::Env env);  // js_trainer.cpp

// kernelInfo() -> { kernel: 'avx2' | 'plain', hardwareThreads }
static Napi::Value KernelInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("kernel", ln::kernel_name(ln::active_kernel()));
  o.Set("hardwareThreads", double(std::thread::hardware_concurrency()));
  return o;
}

// cudaInfo() -> { built: whether this addon contains the CUDA runtime, devices: the CUDA devices present, reason:
// why there are none ('' when there are), problems: per device, why this build cannot run on it ('' when it can:
// a GPU whose compute capability it has no code for), simulated: built on the CUDA simulator (native/cuda_sim: the
// kernels run on the CPU; tests scale their time limits) }. Never throws: 'auto' device selection asks this first.
static Napi::Value CudaInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  const int devices = ln::cuda_device_count();
  o.Set("built", ln::cuda_built());
  o.Set("devices", double(devices));
  o.Set("reason", ln::cuda_unavailable_reason());
  Napi::Array problems = Napi::Array::New(env, size_t(devices));
  for (int i = 0; i < devices; ++i) problems.Set(uint32_t(i), ln::cuda_device_problem(i));
  o.Set("problems", problems);
#if defined(LN_CUDA_SIM)
  o.Set("simulated", true);
#else
  o.Set("simulated", false);
#endif
  return o;
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("NativeModel", NativeModel::Init(env));
  exports.Set("NativeKvCache", NativeKvCache::Init(env));
  exports.Set("NativeStats", NativeStats::Init(env));
  exports.Set("NativeTrainer", InitNativeTrainer(env));
  exports.Set("NativeIntervention", NativeIntervention::Init(env));
  exports.Set("kernelInfo", Napi::Function::New(env, KernelInfo));
  exports.Set("cudaInfo", Napi::Function::New(env, CudaInfo));
  Napi::Object bench = Napi::Object::New(env);
  bench.Set("gemm", Napi::Function::New(env, BenchGemm));
  bench.Set("copy", Napi::Function::New(env, BenchCopy));
  exports.Set("bench", bench);
  return exports;
}

}  // namespace lnjs

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return lnjs::Init(env, exports); }

NODE_API_MODULE(langneurons, InitAddon)
