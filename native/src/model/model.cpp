// PLACEHOLDER: to be written (forward pass). Kept compiling so the build can be set up.
#include "model/model.h"
#include <stdexcept>
namespace ln {
std::string validate_config(const ModelConfig&) { return ""; }
std::string validate_weights(const ModelConfig&, const ModelWeights&) { return ""; }
KvCache::KvCache(const ModelConfig& c, int32_t n_slots, int32_t capacity)
    : n_layers_(c.n_layers), n_slots_(n_slots), capacity_(capacity),
      slot_stride_(int64_t(capacity) * c.n_kv_heads * c.head_dim), lengths_(size_t(n_slots), 0),
      data_(size_t(2 * int64_t(c.n_layers) * n_slots) * size_t(slot_stride_)) {}
float* KvCache::k(int32_t layer, int32_t slot) { return data_.data() + (int64_t(layer) * n_slots_ + slot) * 2 * slot_stride_; }
float* KvCache::v(int32_t layer, int32_t slot) { return k(layer, slot) + slot_stride_; }
struct Model::Impl {};
Model::Model(const ModelConfig& config, const ModelWeights& weights, int n_threads, Compute compute)
    : cfg_(config), w_(weights), compute_(compute), pool_(n_threads) {}
void Model::forward(const ForwardRequest&, ForwardResult&) { throw std::logic_error("forward not implemented yet"); }
int64_t Model::scratch_bytes() const { return 0; }
}  // namespace ln
