#include "runtime/cpu_runtime.h"

#include <algorithm>
#include <string>
#include <vector>

#include "kernels/gemm.h"

namespace ln {
namespace {

class CpuRuntime final : public Runtime {
 public:
  CpuRuntime(const ModelConfig& config, const ModelWeights& weights, int n_threads, Compute compute)
      : model_(config, weights, n_threads, compute) {}

  DeviceKind device() const override { return DeviceKind::Cpu; }
  const ModelConfig& config() const override { return model_.config(); }
  Compute compute() const override { return model_.compute(); }
  std::string describe() const override {
    return std::string("cpu: ") + kernel_name(active_kernel()) + " kernels, " + std::to_string(model_.n_threads()) +
           " threads, " + (model_.compute() == Compute::BF16 ? "bf16" : "f32");
  }
  void forward(const ForwardRequest& req, ForwardResult& out) override { model_.forward(req, out); }
  std::shared_ptr<KvCache> make_cache(int32_t n_slots, int32_t capacity) override {
    auto cache = std::make_shared<CpuKvCache>(model_.config(), n_slots, capacity);
    // Remember it (weakly) for memory(); forget caches that are gone so the list does not grow.
    caches_.erase(std::remove_if(caches_.begin(), caches_.end(), [](const auto& w) { return w.expired(); }),
                  caches_.end());
    caches_.push_back(cache);
    return cache;
  }
  MemoryReport memory() const override {
    MemoryReport m;
    m.weights = weight_bytes_;
    for (const auto& w : caches_)
      if (auto cache = w.lock()) m.kv_cache += cache->bytes();
    m.activations = model_.scratch_bytes();
    m.scratch = model_.kernel_scratch_bytes();
    return m;
  }
  Model& model() { return model_; }
  void set_weight_bytes(int64_t b) { weight_bytes_ = b; }

 private:
  Model model_;
  int64_t weight_bytes_ = 0;
  std::vector<std::weak_ptr<KvCache>> caches_;
};

int64_t bytes_of(const WeightRef& w) { return w.empty() ? 0 : w.rows * w.cols * int64_t(dtype_size(w.dtype)); }

}  // namespace

std::unique_ptr<Runtime> make_cpu_runtime(const ModelConfig& config, const ModelWeights& weights, int n_threads,
                                          Compute compute) {
  auto rt = std::make_unique<CpuRuntime>(config, weights, n_threads, compute);
  int64_t b = bytes_of(weights.embed) + bytes_of(weights.final_norm);
  if (!config.tie_embeddings) b += bytes_of(weights.lm_head);
  for (const LayerWeights& L : weights.layers)
    for (const WeightRef* w : {&L.attn_norm, &L.wq, &L.wk, &L.wv, &L.wo, &L.bq, &L.bk, &L.bv, &L.ffn_norm, &L.w_gate,
                               &L.w_up, &L.w_down})
      b += bytes_of(*w);
  rt->set_weight_bytes(b);
  return rt;
}

Model* cpu_model(Runtime& runtime) {
  auto* cpu = dynamic_cast<CpuRuntime*>(&runtime);
  return cpu ? &cpu->model() : nullptr;
}

}  // namespace ln
