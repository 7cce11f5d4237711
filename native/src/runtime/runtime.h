// The runtime seam (ggml's backend idea, scaled down): one small interface that every device implements, so
// that the binding, the TypeScript API and the commands talk to "a runtime" and adding a device is new files.
//
//   forward      one forward over a packed batch (model/model.h ForwardRequest): logits (none / last / all),
//                target log-probabilities, statistics, interventions and a capture, exactly as specified there;
//   make_cache   a KV cache owned by the runtime (host memory for the CPU, device memory for CUDA);
//   memory       what the runtime holds, by kind, for `info` and the benchmarks;
//   describe     one line for logs ("cpu: avx2, 8 threads, f32" / "cuda:0 NVIDIA H200, bf16, cuBLASLt 13.0").
//
// Request validation and sequence planning (runtime/request.h) are shared by every implementation, so a bad
// request gets the same message on every device and is refused before any state changes.
// Implementations: runtime/cpu_runtime.h (the CPU engine, model/model.h), runtime/cuda_runtime.h (the CUDA
// runtime in native/src/cuda, present when the addon is built with nvcc).
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "model/model.h"

namespace ln {

enum class DeviceKind : int32_t { Cpu = 0, Cuda = 1 };

// Bytes held by a runtime. On the CPU the weights are the memory-mapped checkpoint (counted, not owned).
struct MemoryReport {
  int64_t weights = 0;         // weight tensors as the runtime holds them (device copies on CUDA)
  int64_t kv_cache = 0;        // every live KV cache made by this runtime
  int64_t activations = 0;     // activation buffers sized for the largest batch so far
  int64_t scratch = 0;         // kernel scratch (GEMM workspaces, packing panels, statistics partials)
  int64_t device_used = 0;     // CUDA: bytes in use on the device as the driver reports it (0 on the CPU)
  int64_t device_total = 0;    // CUDA: the device's memory (0 on the CPU)
};

class Runtime {
 public:
  virtual ~Runtime() = default;
  virtual DeviceKind device() const = 0;
  virtual const ModelConfig& config() const = 0;
  virtual Compute compute() const = 0;
  virtual std::string describe() const = 0;

  // Validates (runtime/request.h) and runs; throws std::invalid_argument for a bad request (nothing changed)
  // and std::runtime_error for a device failure. One forward at a time per runtime (serialised internally).
  virtual void forward(const ForwardRequest& req, ForwardResult& out) = 0;

  // A cache for n_slots sequences of up to `capacity` tokens; it may only be passed to this runtime's forward.
  // Throws std::invalid_argument (bad sizes) or std::runtime_error / std::bad_alloc (no memory).
  virtual std::shared_ptr<KvCache> make_cache(int32_t n_slots, int32_t capacity) = 0;

  virtual MemoryReport memory() const = 0;
};

}  // namespace ln
