// Where a unit's value is read during the forward (docs METHODS.md): the FFN neurons at three points of the
// SwiGLU block plus `up`, and the output units of every linear projection (Kojima's method). Shared by the
// statistics accumulator (stats.h) and the forward's capture option (model.h).
#pragma once
#include <cstdint>
#include <string>

namespace ln {

enum class Site : int32_t {
  Act = 0,   // silu(gate(x)), intermediate wide
  Gate = 1,  // gate(x), before the activation function
  H = 2,     // act * up, the input of down_proj
  Up = 3,    // up(x)
  Q = 4,     // q_proj output after the bias (and bf16 rounding in bf16 mode), before RoPE: heads * head_dim
  K = 5,     // k_proj output, same point: kv_heads * head_dim
  V = 6,     // v_proj output: kv_heads * head_dim
  O = 7,     // o_proj output (before it is added to the residual stream): hidden
  Down = 8,  // down_proj output (before the residual add): hidden
  Resid = 9, // the residual stream after layer l (both residual adds done, before the next layer's norm and
             // before the final norm): hidden. Recorded with sequence means for alignment across layers.
};
constexpr int kSiteCount = 10;

inline const char* site_name(Site s) {
  static const char* const names[kSiteCount] = {"act", "gate", "h", "up", "q", "k", "v", "o", "down", "resid"};
  const int i = int(s);
  return i >= 0 && i < kSiteCount ? names[i] : "?";
}

// True and *out set when `name` is one of site_name's strings.
inline bool parse_site(const std::string& name, Site* out) {
  for (int i = 0; i < kSiteCount; ++i)
    if (name == site_name(Site(i))) {
      *out = Site(i);
      return true;
    }
  return false;
}

}  // namespace ln
