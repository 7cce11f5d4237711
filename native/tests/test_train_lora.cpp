// LoRA adapters and the classification head of the trainer (native/src/train/lora.cpp, head.cpp): gradients of A,
// B and masked B (with and without dropout) and of the head against float64 central finite differences of the
// independent reference (ref_model.h), PEFT's initialisation, deterministic dropout masks, and validation.
//
// Tolerance: relative L2 error per tensor over its sampled entries < 1e-4. The analytic gradient is computed in
// float32 (measured ~1e-6 relative against the float64 differences, as for the dense parameters in test_train.cpp);
// the central difference with h = 1e-5 on a float64 loss has truncation error O(h^2) ~ 1e-10 and rounding error
// ~ 1e-16 / h ~ 1e-11, far below that. A wrong term (a missing dropout scale, alpha / r, a transposed product or a
// mis-scattered masked row) gives errors of order 1, so 1e-4 separates the two by two orders of magnitude either way.
#include <cmath>
#include <cstdio>
#include <random>
#include <stdexcept>
#include <string>

#include "ref_model.h"
#include "test_util.h"
#include "tiny_model.h"
#include "train/lora.h"
#include "train/trainer.h"

using namespace ln;
using namespace ln::train;
using namespace lntiny;

namespace {

struct Batch {
  std::vector<std::vector<int32_t>> seqs;
  std::vector<int32_t> tokens, targets, lens, labels;
  int64_t count = 0;
};

Batch make_batch(const std::vector<int>& lens, int vocab, uint32_t seed, int num_labels = 0) {
  Batch b;
  for (size_t s = 0; s < lens.size(); ++s) {
    b.seqs.push_back(random_tokens(lens[s], vocab, seed + uint32_t(s)));
    const auto& q = b.seqs.back();
    for (int i = 0; i < lens[s]; ++i) {
      b.tokens.push_back(q[size_t(i)]);
      const int32_t tg = i + 1 < lens[s] ? q[size_t(i + 1)] : -1;
      b.targets.push_back(tg);
      b.count += tg >= 0;
    }
    b.lens.push_back(lens[s]);
    if (num_labels > 0) b.labels.push_back(int32_t((seed + s) % uint32_t(num_labels)));
  }
  return b;
}

double lse(const double* l, int64_t n) {
  double mx = l[0];
  for (int64_t v = 1; v < n; ++v) mx = std::max(mx, l[v]);
  double z = 0;
  for (int64_t v = 0; v < n; ++v) z += std::exp(l[v] - mx);
  return mx + std::log(z);
}

// Mean next-token cross-entropy (or, with labels, mean classification cross-entropy) under the reference; each
// sequence is passed its packed row offset so that dropout masks line up with the trainer's.
double ref_loss(const lnref::RefModel& m, const Batch& b, bool cls) {
  double sum = 0;
  int64_t off = 0, count = 0;
  for (size_t s = 0; s < b.seqs.size(); ++s) {
    const auto& q = b.seqs[s];
    if (cls) {
      if (b.labels[s] >= 0) {
        const std::vector<double> z = m.class_logits(q, off);
        sum += lse(z.data(), int64_t(z.size())) - z[size_t(b.labels[s])];
        ++count;
      }
    } else {
      const std::vector<double> lg = m.forward(q, off);
      for (size_t i = 0; i < q.size(); ++i) {
        const int32_t tg = b.targets[size_t(off) + i];
        if (tg < 0) continue;
        const double* l = lg.data() + int64_t(i) * m.c.vocab;
        sum += lse(l, m.c.vocab) - l[tg];
        ++count;
      }
    }
    off += int64_t(q.size());
  }
  return sum / double(count);
}

int role_index(const std::string& name) {
  for (int r = 0; r < kLayerRoles; ++r)
    if (name == layer_role_name(r)) return r;
  return -1;
}

// Mirrors the trainer's adapters (and head) into the reference, with the trainer's current master values.
void mirror(Trainer& tr, lnref::RefModel& ref, const std::vector<TrainableSpec>& spec) {
  ref.loras.clear();
  for (const TrainableSpec& s : spec) {
    if (s.mode != ParamMode::Lora) continue;
    const Param& a = tr.param(tr.find(s.role + ".lora_A", s.layer));
    const Param& b = tr.param(tr.find(s.role + ".lora_B", s.layer));
    lnref::RefLora l;
    l.layer = s.layer;
    l.role = role_index(s.role);
    l.r = s.lora_r;
    l.scale = double(s.lora_alpha) / double(s.lora_r);
    l.dropout = s.lora_dropout;
    l.A.assign(tr.master() + a.offset, tr.master() + a.offset + a.size);
    l.B.assign(tr.master() + b.offset, tr.master() + b.offset + b.size);
    l.rows = s.index;
    ref.loras.push_back(std::move(l));
  }
  const int h = tr.find("score", -1);
  if (h >= 0) ref.score.assign(tr.master() + tr.param(h).offset, tr.master() + tr.param(h).offset + tr.param(h).size);
  const int hb = tr.find("score_bias", -1);
  ref.score_bias.clear();
  if (hb >= 0) ref.score_bias.assign(tr.master() + tr.param(hb).offset, tr.master() + tr.param(hb).offset + tr.param(hb).size);
}

// The reference value behind entry k of a trainer parameter's master slice (LoRA matrices, the head, or a dense /
// rows checkpoint tensor), or null.
double* ref_elem(lnref::RefModel& ref, const Param& p, int64_t k) {
  const size_t dot = p.role.find(".lora_");
  std::vector<double>* t = nullptr;
  if (dot != std::string::npos) {
    const int role = role_index(p.role.substr(0, dot));
    for (lnref::RefLora& l : ref.loras)
      if (l.layer == p.layer && l.role == role) t = p.role.back() == 'A' ? &l.A : &l.B;
  } else if (p.role == "score") {
    t = &ref.score;
  } else if (p.role == "score_bias") {
    t = &ref.score_bias;
  } else if (p.layer < 0) {
    t = p.role == "final_norm" ? &ref.final_norm : nullptr;
  } else {
    lnref::RefLayer& L = ref.layers[size_t(p.layer)];
    t = p.role == "w_gate" ? &L.wg : p.role == "w_up" ? &L.wu : p.role == "w_down" ? &L.wd : p.role == "wq" ? &L.wq : nullptr;
  }
  if (!t) return nullptr;
  if (p.mode == ParamMode::Rows) k = int64_t(p.index[size_t(k / p.mcols)]) * p.mcols + k % p.mcols;
  return k < int64_t(t->size()) ? &(*t)[size_t(k)] : nullptr;
}

void randomize(Trainer& tr, const char* suffix, float spread, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> U(-spread, spread);
  for (int i = 0; i < tr.n_params(); ++i) {
    const Param& p = tr.param(i);
    if (p.role.find(suffix) == std::string::npos) continue;
    for (int64_t k = 0; k < p.size; ++k) tr.master()[p.offset + k] = U(rng);
  }
}

// Every trainable tensor: its gradient against central differences of the reference loss (a sample of entries).
double check_fd(Trainer& tr, lnref::RefModel& ref, const Batch& b, bool cls, const char* label) {
  std::mt19937 rng(5);
  double worst = 0;
  std::string worst_name;
  for (int i = 0; i < tr.n_params(); ++i) {
    const Param& p = tr.param(i);
    if (!p.trainable()) continue;
    LN_CHECK_MSG(ref_elem(ref, p, p.size - 1), "%s: no reference tensor for %s[%d]", label, p.role.c_str(), p.layer);
    if (!ref_elem(ref, p, p.size - 1)) continue;
    std::vector<int64_t> idx;
    if (p.size <= 32) for (int64_t k = 0; k < p.size; ++k) idx.push_back(k);
    else for (int k = 0; k < 32; ++k) idx.push_back(int64_t(rng() % uint64_t(p.size)));
    double num = 0, den = 0;
    for (int64_t k : idx) {
      double& x = *ref_elem(ref, p, k);
      const double h = 1e-5, x0 = x;
      x = x0 + h;
      const double lp = ref_loss(ref, b, cls);
      x = x0 - h;
      const double lm = ref_loss(ref, b, cls);
      x = x0;
      const double fd = (lp - lm) / (2 * h), g = tr.grad()[p.offset + k];
      num += (g - fd) * (g - fd);
      den += fd * fd;
    }
    const double rel = std::sqrt(num / std::max(den, 1e-30));
    const std::string nm = p.role + "[" + std::to_string(p.layer) + "]";
    LN_CHECK_MSG(std::sqrt(den) > 1e-7, "%s: %s has no gradient to compare (|fd| %.3g)", label, nm.c_str(), std::sqrt(den));
    LN_CHECK_MSG(rel < 1e-4, "%s: %s gradient rel error %.3g (|fd| %.3g)", label, nm.c_str(), rel, std::sqrt(den));
    if (rel > worst) { worst = rel; worst_name = nm; }
  }
  std::printf("  %s: worst gradient rel error vs finite differences %.2e (%s)\n", label, worst, worst_name.c_str());
  return worst;
}

TinyOpts small(bool llama3_bias_bf16) {
  TinyOpts o;
  o.hidden = 16; o.inter = 24; o.layers = 2; o.heads = 4; o.kv = 2; o.head_dim = 4; o.vocab = 32;
  if (llama3_bias_bf16) {
    o.kv = 1; o.head_dim = 8; o.llama3 = true; o.bias = true; o.tied = true; o.theta = 500000.f; o.dtype = DType::BF16;
  }
  return o;
}

TrainableSpec lora(const char* role, int layer, int r, float alpha, float dropout, std::vector<int32_t> rows = {}) {
  TrainableSpec s;
  s.role = role;
  s.layer = layer;
  s.mode = ParamMode::Lora;
  s.index = std::move(rows);
  s.lora_r = r;
  s.lora_alpha = alpha;
  s.lora_dropout = dropout;
  return s;
}

// Adapters on all seven roles (masked B on w_gate of layer 1, dropout on some), plus a rows parameter of layer 0.
std::vector<TrainableSpec> mixed_spec() {
  return {lora("wq", 0, 2, 4.f, 0.f), lora("wk", 0, 3, 3.f, 0.25f), lora("wv", 1, 2, 2.f, 0.f),
          lora("wo", 1, 2, 8.f, 0.5f), lora("w_gate", 1, 3, 6.f, 0.1f, {2, 5, 11, 23}), lora("w_up", 0, 2, 4.f, 0.f),
          lora("w_down", 1, 4, 4.f, 0.3f), {"w_up", 1, ParamMode::Rows, {1, 7}, 0, 0.f, 0.f}};
}

void lora_fd(bool variant, const char* label) {
  Tiny tiny(small(variant));
  const std::vector<TrainableSpec> spec = mixed_spec();
  TrainerOptions opt;
  opt.seed = 17;
  Trainer tr(tiny.cfg, tiny.w, 2, spec, opt);
  LN_CHECK(tr.n_adapters() == 7);
  LN_CHECK(tr.lowest_layer() == 0);
  randomize(tr, ".lora_B", 0.5f, 9);  // B = 0 at init would leave dA = 0: give it values
  Batch b = make_batch({9, 6}, 32, 41);
  BatchLoss bl = tr.forward_backward(b.tokens.data(), b.targets.data(), b.lens.data(), 2, int64_t(b.tokens.size()), 0,
                                     true, /*step*/ 3, /*micro*/ 1);
  lnref::RefModel ref(tiny.cfg, tiny.w);
  mirror(tr, ref, spec);
  ref.train = true;
  ref.seed = 17;
  ref.drop_step = 3;
  ref.drop_micro = 1;
  const double l0 = ref_loss(ref, b, false), loss = bl.sum / double(bl.count);
  LN_CHECK_MSG(std::fabs(loss - l0) <= 1e-5 * l0, "%s: loss %.9g vs reference %.9g", label, loss, l0);
  check_fd(tr, ref, b, false, label);
  // Validation forwards have no dropout: the loss equals the reference's without masks.
  BatchLoss ev = tr.forward_backward(b.tokens.data(), b.targets.data(), b.lens.data(), 2, int64_t(b.tokens.size()), 0, false);
  ref.train = false;
  const double e0 = ref_loss(ref, b, false);
  LN_CHECK_MSG(std::fabs(ev.sum / double(ev.count) - e0) <= 1e-5 * e0, "%s: eval loss %.9g vs reference %.9g", label,
               ev.sum / double(ev.count), e0);
  LN_CHECK_MSG(std::fabs(e0 - l0) > 1e-4, "%s: dropout changed nothing (%.9g vs %.9g)", label, e0, l0);
}

}  // namespace

LN_TEST(train_lora_fd_gradients) { lora_fd(false, "lora, masked B, dropout (GQA 4/2)"); }
LN_TEST(train_lora_fd_gradients_llama3_bias_tied_bf16) { lora_fd(true, "lora, masked B, dropout (llama3, bias, tied, bf16)"); }

// PEFT's initialisation: A uniform(-1/sqrt(K), 1/sqrt(K)) (seeded, reproducible), B = 0, so the model starts as the
// base model; the arena holds exactly A and B.
LN_TEST(train_lora_init_and_identity_at_start) {
  Tiny tiny(small(false));
  const std::vector<TrainableSpec> spec = {lora("w_gate", 0, 4, 8.f, 0.1f), lora("w_down", 1, 8, 16.f, 0.f, {0, 3})};
  TrainerOptions opt;
  opt.seed = 3;
  Trainer a(tiny.cfg, tiny.w, 2, spec, opt), b(tiny.cfg, tiny.w, 1, spec, opt), base(tiny.cfg, tiny.w, 1, {});
  opt.seed = 4;
  Trainer c(tiny.cfg, tiny.w, 1, spec, opt);
  LN_CHECK(a.n_trainable() == 4 * 16 + 24 * 4 + 8 * 24 + 2 * 8);
  const Param& A = a.param(a.find("w_gate.lora_A", 0));
  LN_CHECK(A.mrows == 4 && A.mcols == 16);
  const Param& B2 = a.param(a.find("w_down.lora_B", 1));
  LN_CHECK(B2.mrows == 2 && B2.mcols == 8);
  double mx = 0, mean = 0, diff = 0;
  for (int64_t i = 0; i < A.size; ++i) {
    const float v = a.master()[A.offset + i];
    mx = std::max(mx, double(std::fabs(v)));
    mean += v / double(A.size);
    LN_CHECK(v == b.master()[A.offset + i]);
    diff += std::fabs(v - c.master()[A.offset + i]);
  }
  LN_CHECK_MSG(mx <= 0.25 && mx > 0.15, "A init max |a| %g (bound 1/sqrt(16) = 0.25)", mx);
  LN_CHECK(diff > 0);  // another seed, other values
  for (const char* bn : {"w_gate.lora_B", "w_down.lora_B"}) {
    const Param& B = a.param(a.find(bn, bn[2] == 'g' ? 0 : 1));
    for (int64_t i = 0; i < B.size; ++i) LN_CHECK(a.master()[B.offset + i] == 0.f);
  }
  Batch bt = make_batch({8, 5}, 32, 3);
  BatchLoss la = a.forward_backward(bt.tokens.data(), bt.targets.data(), bt.lens.data(), 2, int64_t(bt.tokens.size()), 0, false);
  BatchLoss lb = base.forward_backward(bt.tokens.data(), bt.targets.data(), bt.lens.data(), 2, int64_t(bt.tokens.size()), 0, false);
  LN_CHECK_MSG(std::fabs(la.sum - lb.sum) < 1e-6 * lb.sum, "B = 0: loss %.9g vs base %.9g", la.sum, lb.sum);
}

// lora_init_std > 0: A ~ normal(0, std) (Mondal et al.'s LoRALayer, N(0, 0.01)) instead of PEFT's kaiming-uniform;
// B still 0, seeded like the uniform init, and refused on a tensor that is not an adapter.
LN_TEST(train_lora_normal_init) {
  Tiny tiny(small(false));
  TrainableSpec g = lora("w_gate", 0, 8, 16.f, 0.f), u = lora("w_up", 1, 8, 16.f, 0.f);
  g.lora_init_std = u.lora_init_std = 0.01f;
  TrainerOptions opt;
  opt.seed = 5;
  Trainer a(tiny.cfg, tiny.w, 1, {g, u}, opt), b(tiny.cfg, tiny.w, 2, {g, u}, opt);
  double n = 0, sum = 0, sq = 0, mx = 0;
  for (const char* role : {"w_gate.lora_A", "w_up.lora_A"}) {
    const Param& A = a.param(a.find(role, role[2] == 'g' ? 0 : 1));
    for (int64_t i = 0; i < A.size; ++i) {
      const double v = a.master()[A.offset + i];
      LN_CHECK(float(v) == b.master()[A.offset + i]);
      n += 1;
      sum += v;
      sq += v * v;
      mx = std::max(mx, std::fabs(v));
    }
  }
  const double mean = sum / n, sd = std::sqrt(sq / n - mean * mean);
  // 256 draws: the sample std within 15% of 0.01, the mean within 4 standard errors, nothing past 5 std
  LN_CHECK_MSG(std::fabs(sd - 0.01) < 0.0015, "A init std %g, want 0.01", sd);
  LN_CHECK_MSG(std::fabs(mean) < 4 * 0.01 / std::sqrt(n), "A init mean %g", mean);
  LN_CHECK_MSG(mx < 0.05, "A init max |a| %g", mx);
  const Param& B = a.param(a.find("w_gate.lora_B", 0));
  for (int64_t i = 0; i < B.size; ++i) LN_CHECK(a.master()[B.offset + i] == 0.f);
  auto refusal = [&](const TrainableSpec& s) -> std::string {
    try {
      Trainer tr(tiny.cfg, tiny.w, 1, {s}, opt);
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "";
  };
  TrainableSpec bad = lora("w_gate", 0, 8, 16.f, 0.f);
  bad.lora_init_std = -1.f;
  LN_CHECK(refusal(bad).find("init std must be a number >= 0") != std::string::npos);
  TrainableSpec dense;
  dense.role = "w_up";
  dense.layer = 0;
  dense.lora_init_std = 0.01f;
  LN_CHECK(refusal(dense).find("only meaningful with mode 'lora'") != std::string::npos);
}

// Masks are a function of (seed, step, micro-batch, layer, role): the same key gives the same gradient, the default
// key follows the optimizer step count and the backward passes since zero_grad.
LN_TEST(train_lora_dropout_masks_are_deterministic) {
  Tiny tiny(small(false));
  const std::vector<TrainableSpec> spec = {lora("w_up", 1, 4, 8.f, 0.5f)};
  TrainerOptions opt;
  opt.seed = 11;
  Trainer tr(tiny.cfg, tiny.w, 2, spec, opt), one(tiny.cfg, tiny.w, 1, spec, opt);
  randomize(tr, ".lora_B", 0.5f, 1);
  randomize(one, ".lora_B", 0.5f, 1);
  Batch b = make_batch({10, 7}, 32, 8);
  auto grads = [&](Trainer& t, int64_t step, int64_t micro) {
    t.zero_grad();
    t.forward_backward(b.tokens.data(), b.targets.data(), b.lens.data(), 2, int64_t(b.tokens.size()), 0, true, step, micro);
    return std::vector<float>(t.grad(), t.grad() + t.n_trainable());
  };
  const std::vector<float> g1 = grads(tr, 5, 0), g2 = grads(tr, 5, 0), g3 = grads(tr, 5, 1), g4 = grads(one, 5, 0);
  LN_CHECK(g1 == g2);
  LN_CHECK(g1 != g3);
  double e = 0;  // one thread vs two: same masks (products may round differently)
  for (size_t i = 0; i < g1.size(); ++i) e = std::max(e, double(std::fabs(g1[i] - g4[i])));
  LN_CHECK_MSG(e < 1e-5, "1 vs 2 threads: max gradient difference %g", e);
  tr.zero_grad();  // default key: step count 0, micro-batches 0 then 1
  tr.forward_backward(b.tokens.data(), b.targets.data(), b.lens.data(), 2, int64_t(b.tokens.size()), 0, true);
  const std::vector<float> g_default(tr.grad(), tr.grad() + tr.n_trainable());
  LN_CHECK(g_default == grads(tr, 0, 0));
  // The mask itself keeps about 1 - p of the elements.
  const uint64_t key = lora_dropout_key(11, 0, 0, 1, kWUp);
  int kept = 0;
  for (int i = 0; i < 10000; ++i) kept += lora_keep(key, i / 100, i % 100, 100, 0.5f);
  LN_CHECK_MSG(kept > 4800 && kept < 5200, "kept %d of 10000 at p = 0.5", kept);
}

// The classification head (without and with its bias): class logits = the reference's; the gradient of the head,
// of its bias, of an adapter and of a dense tensor below it against finite differences of the classification loss;
// unlabelled sequences still get logits.
LN_TEST(train_head_fd_gradients) {
  for (bool variant : {false, true}) {
    Tiny tiny(small(variant));
    const std::vector<TrainableSpec> spec = {lora("wq", 0, 2, 4.f, 0.f), lora("w_gate", 1, 2, 4.f, 0.2f, {1, 4, 9}),
                                             {"final_norm", -1, ParamMode::Dense, {}, 0, 0.f, 0.f},
                                             {"w_down", 0, ParamMode::Dense, {}, 0, 0.f, 0.f}};
    TrainerOptions opt;
    opt.seed = 2;
    opt.num_labels = 3;
    opt.head_bias = variant;
    Trainer tr(tiny.cfg, tiny.w, 2, spec, opt);
    LN_CHECK((tr.find("score_bias", -1) >= 0) == variant);
    if (variant) {  // initialised to 0
      const Param& b = tr.param(tr.find("score_bias", -1));
      LN_CHECK(b.size == 3 && tr.master()[b.offset] == 0.f && tr.master()[b.offset + 2] == 0.f);
    }
    randomize(tr, ".lora_B", 0.5f, 4);
    randomize(tr, "score", 0.5f, 6);  // larger than the 0.02 init: gradients reach the model visibly (and the bias)
    Batch b = make_batch({9, 6, 4}, 32, 12, 3);
    b.labels[2] = -1;  // an unlabelled sequence
    std::vector<float> logits(9);
    BatchLoss bl = tr.forward_backward_cls(b.tokens.data(), b.lens.data(), 3, int64_t(b.tokens.size()), b.labels.data(), 0,
                                           true, logits.data(), 1, 0);
    LN_CHECK(bl.count == 2);
    lnref::RefModel ref(tiny.cfg, tiny.w);
    mirror(tr, ref, spec);
    ref.train = true;
    ref.seed = 2;
    ref.drop_step = 1;
    int64_t off = 0;
    double worst_logit = 0;
    for (size_t s = 0; s < 3; ++s) {
      const std::vector<double> z = ref.class_logits(b.seqs[s], off);
      for (int c = 0; c < 3; ++c) worst_logit = std::max(worst_logit, std::fabs(z[size_t(c)] - logits[s * 3 + size_t(c)]));
      off += int64_t(b.seqs[s].size());
    }
    LN_CHECK_MSG(worst_logit < 1e-5, "class logits differ from the reference by %g", worst_logit);
    const double l0 = ref_loss(ref, b, true);
    LN_CHECK_MSG(std::fabs(bl.sum / 2 - l0) <= 1e-5 * l0, "cls loss %.9g vs reference %.9g", bl.sum / 2, l0);
    check_fd(tr, ref, b, true, variant ? "head with bias (llama3, bias, tied, bf16)" : "head (GQA 4/2)");
  }
}

LN_TEST(train_lora_and_head_lower_the_loss) {
  Tiny tiny(small(false));
  const std::vector<TrainableSpec> spec = {lora("wq", 0, 4, 8.f, 0.1f), lora("wv", 1, 4, 8.f, 0.1f),
                                           lora("w_gate", 1, 4, 8.f, 0.1f, {0, 1, 2, 3, 4, 5})};
  TrainerOptions opt;
  opt.num_labels = 2;
  Trainer tr(tiny.cfg, tiny.w, 2, spec, opt);
  Batch b = make_batch({12, 12, 10, 9}, 32, 5, 2);
  AdamWConfig ac;
  ac.lr = 2e-2f;
  double first_lm = 0, last_lm = 0, first_cls = 0, last_cls = 0;
  for (int it = 0; it < 25; ++it) {
    tr.zero_grad();
    BatchLoss lm = tr.forward_backward(b.tokens.data(), b.targets.data(), b.lens.data(), 4, int64_t(b.tokens.size()), 0, true);
    BatchLoss cl = tr.forward_backward_cls(b.tokens.data(), b.lens.data(), 4, int64_t(b.tokens.size()), b.labels.data(), 0,
                                           true, nullptr);
    if (it == 0) { first_lm = lm.sum / double(lm.count); first_cls = cl.sum / double(cl.count); }
    last_lm = lm.sum / double(lm.count);
    last_cls = cl.sum / double(cl.count);
    tr.step(ac);
  }
  LN_CHECK_MSG(last_lm < first_lm - 0.05, "LM loss %g -> %g", first_lm, last_lm);
  LN_CHECK_MSG(last_cls < first_cls - 0.1, "classification loss %g -> %g", first_cls, last_cls);
  std::printf("  25 AdamW steps: LM loss %.4f -> %.4f, classification loss %.4f -> %.4f\n", first_lm, last_lm, first_cls, last_cls);
  tr.reset_optimizer();
  LN_CHECK(tr.step_count() == 0);
  for (int64_t i = 0; i < tr.n_trainable(); ++i) LN_CHECK(tr.adam_m()[i] == 0.f && tr.adam_v()[i] == 0.f);
}

LN_TEST(train_lora_rejects_bad_spec) {
  Tiny tiny(small(false));
  auto make = [&](std::vector<TrainableSpec> spec, int32_t labels = 0) {
    TrainerOptions o;
    o.num_labels = labels;
    Trainer tr(tiny.cfg, tiny.w, 1, spec, o);
  };
  expect_invalid([&] { make({lora("w_gate", 0, 0, 8.f, 0.f)}); }, "rank r must be an integer >= 1");
  expect_invalid([&] { make({lora("w_gate", 0, 17, 8.f, 0.f)}); }, "exceeds the weight's smaller side");
  expect_invalid([&] { make({lora("w_gate", 0, 4, 0.f, 0.f)}); }, "alpha must be a number > 0");
  expect_invalid([&] { make({lora("w_gate", 0, 4, 8.f, 1.f)}); }, "dropout must be in [0, 1)");
  expect_invalid([&] { make({lora("attn_norm", 0, 4, 8.f, 0.f)}); }, "mode 'lora' is supported for");
  expect_invalid([&] { make({lora("embed", -1, 4, 8.f, 0.f)}); }, "mode 'lora' is supported for");
  expect_invalid([&] { make({lora("w_gate", 0, 4, 8.f, 0.f, {3, 24})}); }, "LoRA row 24 outside [0, 24)");
  expect_invalid([&] { make({lora("w_gate", 0, 4, 8.f, 0.f, {3, 3})}); }, "strictly increasing");
  expect_invalid([&] { make({lora("w_gate", 0, 4, 8.f, 0.f), {"w_gate", 0, ParamMode::Dense, {}, 0, 0.f, 0.f}}); }, "given twice");
  expect_invalid([&] { make({{"w_gate", 0, ParamMode::Dense, {}, 4, 0.f, 0.f}}); }, "only meaningful with mode 'lora'");
  expect_invalid([&] { make({}, -1); }, "num_labels must be >= 0");
  expect_invalid([&] {
    TrainerOptions o;
    o.head_bias = true;
    Trainer tr(tiny.cfg, tiny.w, 1, {}, o);
  }, "head_bias needs a classification head");
  Trainer tr(tiny.cfg, tiny.w, 1, {lora("wq", 1, 2, 4.f, 0.f)});
  LN_CHECK(tr.find("wq.lora_A", 1) >= 0 && tr.find("wq.lora_A", 0) < 0 && tr.find("score", -1) < 0);
  std::vector<int32_t> tok = {1, 2, 3}, lens = {3}, labels = {0};
  expect_invalid([&] { tr.forward_backward_cls(tok.data(), lens.data(), 1, 3, labels.data(), 0, true, nullptr); },
                 "no classification head");
  TrainerOptions o;
  o.num_labels = 3;
  Trainer th(tiny.cfg, tiny.w, 1, {}, o);
  std::vector<int32_t> bad = {3};
  expect_invalid([&] { th.forward_backward_cls(tok.data(), lens.data(), 1, 3, bad.data(), 0, true, nullptr); },
                 "label 3 of sequence 0 is outside [0, 3)");
  std::vector<int32_t> badtok = {1, 99, 3};
  expect_invalid([&] { th.forward_backward_cls(badtok.data(), lens.data(), 1, 3, labels.data(), 0, true, nullptr); },
                 "token id 99");
}
