// The bookkeeping every runtime's KV cache shares (model/model.h KvCache): slot lengths and their validation.
#include <stdexcept>
#include <string>

#include "model/model.h"

namespace ln {

KvCache::KvCache(const ModelConfig& c, int32_t n_slots, int32_t capacity)
    : n_layers_(c.n_layers), n_slots_(n_slots), capacity_(capacity), kv_width_(int64_t(c.n_kv_heads) * c.head_dim) {
  std::string e = validate_config(c);
  if (!e.empty()) throw std::invalid_argument("KvCache: " + e);
  if (n_slots < 1) throw std::invalid_argument("KvCache: n_slots must be >= 1, got " + std::to_string(n_slots));
  if (capacity < 1) throw std::invalid_argument("KvCache: capacity must be >= 1, got " + std::to_string(capacity));
  lengths_.assign(size_t(n_slots), 0);
}

bool KvCache::fits(const ModelConfig& c) const {
  return c.n_layers == n_layers_ && int64_t(c.n_kv_heads) * c.head_dim == kv_width_;
}

void KvCache::copy_prefix(int32_t src, int32_t dst, int32_t len) {
  if (src < 0 || src >= n_slots_ || dst < 0 || dst >= n_slots_)
    throw std::invalid_argument("KvCache::copy_prefix: slots must be in [0, " + std::to_string(n_slots_) + ")");
  if (len < 0 || len > lengths_[size_t(src)])
    throw std::invalid_argument("KvCache::copy_prefix: len " + std::to_string(len) + " exceeds the source slot's length " +
                                std::to_string(lengths_[size_t(src)]));
  if (src != dst) copy_positions(src, dst, len);
  lengths_[size_t(dst)] = len;
}

void KvCache::set_length(int32_t slot, int32_t len) {
  if (slot < 0 || slot >= n_slots_)
    throw std::invalid_argument("KvCache: slot " + std::to_string(slot) + " out of range [0, " +
                                std::to_string(n_slots_) + ")");
  if (len < 0 || len > lengths_[size_t(slot)])
    throw std::invalid_argument("KvCache: can only truncate slot " + std::to_string(slot) + " (length " +
                                std::to_string(lengths_[size_t(slot)]) + "), got " + std::to_string(len));
  lengths_[size_t(slot)] = len;
}

}  // namespace ln
