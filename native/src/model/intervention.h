// Interventions inside the forward (docs METHODS.md section 3), in the resolved form the engine runs: a list of
// edits (layer, site, unit, op, value) applied where the site's value is made, plus Rahmanisa's test-time rules,
// whose value is a statistic of the current token's row at that site and layer.
//
// Semantics:
//  - Sites (model/sites.h): the FFN neurons `gate` (before the activation function), `act` (silu(gate), before
//    the product with up), `up` (up_proj's output, before that product), `h` (act * up, the input of down_proj),
//    in the FFN activation loop (model/ffn.cpp); and the output units of the projections (Kojima's method):
//    `q`, `k`, `v` after the bias (and bf16 rounding in bf16 mode), before Qwen3's q/k norm and RoPE; `o` and
//    `down` before any post-norm and the residual add (model/edit_pass.h). Not `resid`. An edit changes the value
//    the model uses from that point on (edited keys and values also go into the KV cache); statistics and captures
//    of the same site record the value AFTER the edit (what the model used); later sites, later layers and the
//    logits see the change too. In bf16 mode an edited `v` is rounded to bf16 with the rest of v (the dtype
//    attention reads it in); q and k are rounded after RoPE as always.
//  - Ops: Set (x = v), Add (x += v), Scale (x *= v). Edits of one (layer, site, neuron) apply in the order given.
//  - A test-time edit takes v = factor * stat(row) from its rule, where row is the token's values of all the
//    layer's neurons at the rule's site BEFORE any edit of the layer (an `h` rule reads h as gate and up made it,
//    not as gate / act / up edits change it; one pass of its own on the CPU and CUDA alike) (mean, population std, median, max, IQR,
//    MAD = median |x - median|, percentile p; quantiles interpolate linearly between order statistics, as
//    numpy.quantile / torch.quantile).
//  - Positions: every edit and rule has `when` bits; the forward's per-token class byte (ForwardRequest::
//    intervene_mask; the TypeScript side uses 1 = prompt, 2 = generated) selects the edits with (class & when)
//    != 0. Without a mask, every edit applies at every token.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/model.h"

namespace ln {

enum class InterveneOp : uint8_t { Set = 0, Add = 1, Scale = 2 };
constexpr int kInterveneOpCount = 3;

enum class RowStat : int32_t { Mean = 0, Std = 1, Median = 2, Max = 3, Iqr = 4, Mad = 5, Percentile = 6 };
constexpr int kRowStatCount = 7;

// Sites an intervention may target: every site before Resid (the first nine values of Site).
constexpr int kInterveneSites = 9;
inline bool intervenable(Site s) { return int(s) >= 0 && int(s) < kInterveneSites; }
// Sites a test-time rule may read: the FFN neurons act, gate, h (Rahmanisa's rules are over the FFN row).
inline bool rule_site(Site s) { return s == Site::Act || s == Site::Gate || s == Site::H; }

// One edit as given by the caller, in application order.
struct EditSpec {
  int32_t layer = 0;
  Site site = Site::Act;
  int32_t neuron = 0;
  InterveneOp op = InterveneOp::Set;
  uint8_t when = 0xff;  // position classes it applies to
  float value = 0.f;    // ignored when rule >= 0
  int32_t rule = -1;    // index into the rules, or -1 for a constant value
};

// A test-time statistic: v = factor * stat(values of `site` at `layer` for the current token).
struct RowRule {
  int32_t layer = 0;
  Site site = Site::Act;
  RowStat stat = RowStat::Mean;
  float factor = 1.f;
  float percentile = 50.f;  // in [0, 100], for RowStat::Percentile
};

// The edit as the FFN loop reads it (12 bytes). `rule` indexes the layer's rules (Intervention::layer_rules).
struct Edit {
  int32_t neuron;
  InterveneOp op;
  uint8_t when;
  int16_t rule;  // -1: constant `value`
  float value;
};

class Intervention {
 public:
  // Throws std::invalid_argument naming the bad entry: layer outside [0, n_layers), a site that is not
  // intervenable (a rule's: not act / gate / h), unit outside [0, width of the site), unknown op, `when` of 0, a non-finite value or factor, a rule index
  // out of range or whose layer / site differ from its edit's, a percentile outside [0, 100], an unknown stat,
  // more than 32767 rules in a layer.
  Intervention(const ModelConfig& c, const std::vector<EditSpec>& edits, const std::vector<RowRule>& rules);

  int32_t n_layers() const { return n_layers_; }
  bool fits(const ModelConfig& c) const;
  int64_t n_edits() const { return int64_t(edits_.size()); }

  // Edits of (layer, site), sorted by unit (stable: application order kept for one unit). Site must be intervenable.
  const Edit* begin(int l, Site s) const { return edits_.data() + offsets_[slot(l, s)]; }
  const Edit* end(int l, Site s) const { return edits_.data() + offsets_[slot(l, s) + 1]; }
  bool any(int l, Site s) const { return offsets_[slot(l, s)] != offsets_[slot(l, s) + 1]; }
  // The rules of layer l (Edit::rule indexes this range), and the largest count over layers.
  const RowRule* layer_rules(int l) const { return rules_.data() + rule_offsets_[size_t(l)]; }
  int32_t n_rules(int l) const { return rule_offsets_[size_t(l) + 1] - rule_offsets_[size_t(l)]; }
  int32_t max_rules_per_layer() const { return max_rules_; }

 private:
  size_t slot(int l, Site s) const { return size_t(l) * kInterveneSites + size_t(s); }
  int32_t n_layers_ = 0;
  int64_t widths_[kInterveneSites] = {};  // units per layer at each site of the model it was made for (fits)
  std::vector<Edit> edits_;
  std::vector<int64_t> offsets_;  // [n_layers * kInterveneSites + 1]
  std::vector<RowRule> rules_;    // grouped by layer
  std::vector<int32_t> rule_offsets_;
  int32_t max_rules_ = 0;
};

// Applies edits [e, end) to a row segment x whose first element is neuron c0. `cls` is the token's position
// class (0xff without a mask); `rule_values` the token's values of the layer's rules (null when it has none).
inline void apply_edits(const Edit* e, const Edit* end, float* x, int64_t c0, uint8_t cls,
                        const float* rule_values) {
  for (; e != end; ++e) {
    if (!(e->when & cls)) continue;
    const float v = e->rule < 0 ? e->value : rule_values[e->rule];
    float& y = x[e->neuron - c0];
    switch (e->op) {
      case InterveneOp::Set: y = v; break;
      case InterveneOp::Add: y += v; break;
      case InterveneOp::Scale: y *= v; break;
    }
  }
}

// The statistic of n values (work: n floats of scratch, reordered). Used for the test-time rules.
float row_statistic(const float* x, int64_t n, RowStat stat, float percentile, float* work);

}  // namespace ln
