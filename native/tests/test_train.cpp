// The training path (native/src/train): backward GEMMs against their float64 references, every parameter's
// gradient against float64 central finite differences of the independent reference forward (ref_model.h),
// sparse (rows / cols) gradients against the dense ones, AdamW, and spec / batch validation.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <random>
#include <stdexcept>
#include <string>

#include "kernels/cpu_features.h"
#include "ref_model.h"
#include "kernel_families.h"
#include "test_util.h"
#include "tiny_model.h"
#include "train/gemm_backward.h"
#include "train/trainer.h"

using namespace ln;
using namespace ln::train;
using namespace lntiny;

namespace {

struct Batch {
  std::vector<std::vector<int32_t>> seqs;
  std::vector<int32_t> tokens, targets, lens;
  int64_t count = 0;
};

Batch make_batch(const std::vector<int>& lens, int vocab, uint32_t seed) {
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
  }
  b.targets[1] = -1;  // an ignored position inside a sequence
  --b.count;
  return b;
}

// Mean next-token cross-entropy of the batch under the float64 reference model.
double ref_loss(const lnref::RefModel& m, const Batch& b) {
  double sum = 0;
  size_t off = 0;
  const int64_t V = m.c.vocab;
  for (const auto& q : b.seqs) {
    const std::vector<double> lg = m.forward(q);
    for (size_t i = 0; i < q.size(); ++i) {
      const int32_t tg = b.targets[off + i];
      if (tg < 0) continue;
      const double* l = lg.data() + int64_t(i) * V;
      double mx = l[0];
      for (int64_t v = 1; v < V; ++v) mx = std::max(mx, l[v]);
      double z = 0;
      for (int64_t v = 0; v < V; ++v) z += std::exp(l[v] - mx);
      sum += mx + std::log(z) - l[tg];
    }
    off += q.size();
  }
  return sum / double(b.count);
}

// The reference's double tensor for a trainer parameter (and, for the tied embedding, the head copy).
std::vector<std::vector<double>*> ref_tensors(lnref::RefModel& m, const Param& p) {
  if (p.layer < 0) {
    if (p.role == "embed") {
      if (m.c.tie_embeddings) return {&m.embed, &m.lm_head};
      return {&m.embed};
    }
    if (p.role == "final_norm") return {&m.final_norm};
    return {&m.lm_head};
  }
  lnref::RefLayer& L = m.layers[size_t(p.layer)];
  const std::string& r = p.role;
  std::vector<double>* t = r == "attn_norm" ? &L.attn_norm : r == "wq" ? &L.wq : r == "wk" ? &L.wk : r == "wv" ? &L.wv
                         : r == "wo" ? &L.wo : r == "bq" ? &L.bq : r == "bk" ? &L.bk : r == "bv" ? &L.bv
                         : r == "ffn_norm" ? &L.ffn_norm : r == "w_gate" ? &L.wg : r == "w_up" ? &L.wu
                         : r == "q_norm" ? &L.q_norm : r == "k_norm" ? &L.k_norm
                         : r == "attn_post_norm" ? &L.attn_post_norm : r == "ffn_post_norm" ? &L.ffn_post_norm : &L.wd;
  return {t};
}

std::vector<TrainableSpec> dense_spec(const ModelConfig& c) {
  std::vector<TrainableSpec> s = {{"embed", -1, ParamMode::Dense, {}}, {"final_norm", -1, ParamMode::Dense, {}}};
  if (!c.tie_embeddings) s.push_back({"lm_head", -1, ParamMode::Dense, {}});
  for (int l = 0; l < c.n_layers; ++l)
    for (int r = 0; r < kLayerRoles; ++r) {
      if (!c.qkv_bias && r >= kBq && r <= kBv) continue;
      if (!c.qk_norm && (r == kQNorm || r == kKNorm)) continue;
      if (!c.post_norms && (r == kAttnPostNorm || r == kFfnPostNorm)) continue;
      if (c.parallel_block && r == kFfnNorm) continue;
      s.push_back({layer_role_name(r), l, ParamMode::Dense, {}});
    }
  return s;
}

// Every parameter tensor: a sample of entries (all of them for small tensors) against central differences.
void check_fd(const TinyOpts& o, const char* label) {
  Tiny tiny(o);
  Trainer tr(tiny.cfg, tiny.w, 2, dense_spec(tiny.cfg));
  Batch b = make_batch({9, 6}, o.vocab, 7);
  BatchLoss bl = tr.forward_backward(b.tokens.data(), b.targets.data(), b.lens.data(), int32_t(b.lens.size()),
                                     int64_t(b.tokens.size()), 0, true);
  lnref::RefModel ref(tiny.cfg, tiny.w);
  const double l0 = ref_loss(ref, b);
  const double loss = bl.sum / double(bl.count);
  LN_CHECK_MSG(std::fabs(loss - l0) <= 1e-5 * std::fabs(l0), "%s: loss %.9g vs reference %.9g", label, loss, l0);
  std::mt19937 rng(3);
  double worst = 0;
  std::string worst_name;
  for (int i = 0; i < tr.n_params(); ++i) {
    const Param& p = tr.param(i);
    if (!p.trainable()) continue;
    std::vector<std::vector<double>*> rt = ref_tensors(ref, p);
    const int64_t n = p.size;
    std::vector<int64_t> idx;
    if (n <= 24) for (int64_t k = 0; k < n; ++k) idx.push_back(k);
    else for (int k = 0; k < 24; ++k) idx.push_back(int64_t(rng() % uint64_t(n)));
    double num = 0, den = 0;
    for (int64_t k : idx) {
      const double h = 1e-5;
      const double x0 = (*rt[0])[size_t(k)];
      for (auto* t : rt) (*t)[size_t(k)] = x0 + h;
      const double lp = ref_loss(ref, b);
      for (auto* t : rt) (*t)[size_t(k)] = x0 - h;
      const double lm = ref_loss(ref, b);
      for (auto* t : rt) (*t)[size_t(k)] = x0;
      const double fd = (lp - lm) / (2 * h);
      const double g = tr.grad()[p.offset + k];
      num += (g - fd) * (g - fd);
      den += fd * fd;
    }
    const double rel = std::sqrt(num / std::max(den, 1e-30));
    const std::string nm = p.role + "[" + std::to_string(p.layer) + "]";
    if (rel > worst) { worst = rel; worst_name = nm; }
    LN_CHECK_MSG(rel < 1e-4 || std::sqrt(den) < 1e-7, "%s: %s gradient rel error %.3g (|fd| %.3g)", label, nm.c_str(), rel,
                 std::sqrt(den));
  }
  std::printf("  %s: loss %.8f (ref %.8f), worst gradient rel error vs finite differences %.2e (%s)\n", label, loss, l0,
              worst, worst_name.c_str());
}

}  // namespace

LN_TEST(train_gemm_backward_matches_reference) {
  ThreadPool pool(2);
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> U(-1.f, 1.f);
  for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
    TinyOpts o;
    o.dtype = dt;
    Tiny t(o);
    const WeightRef W = t.tensor(dt, 37, 29, 1.f, 0.f, dt == DType::F32 ? 0 : 2);
    const int64_t M = 21, N = W.rows, K = W.cols;
    std::vector<float> dY(size_t(M * N)), X(size_t(M * K));
    for (auto& v : dY) v = U(rng);
    for (auto& v : X) v = U(rng);
    for (int64_t i = 0; i < N; ++i) dY[size_t(3 * N + i)] = 0.f;  // a zero row (skipped path)
    std::vector<float> dx(size_t(M * K), 0.5f), dx_ref(dx), scratch(size_t(2 * K));
    gemm_dx(M, dY.data(), N, W, dx.data(), K, true, scratch.data(), pool);
    gemm_dx_ref(M, dY.data(), N, W, dx_ref.data(), K, true);
    double e = 0;
    for (size_t i = 0; i < dx.size(); ++i) e = std::max(e, double(std::fabs(dx[i] - dx_ref[i])));
    LN_CHECK_MSG(e < 1e-5, "gemm_dx %s max error %g", dtype_name(dt), e);
    std::vector<float> dw(size_t(N * K), 0.25f), dw_ref(dw);
    gemm_dw(M, N, K, dY.data(), N, X.data(), K, dw.data(), K, pool);
    gemm_dw_ref(M, N, K, dY.data(), N, X.data(), K, dw_ref.data(), K);
    e = 0;
    for (size_t i = 0; i < dw.size(); ++i) e = std::max(e, double(std::fabs(dw[i] - dw_ref[i])));
    LN_CHECK_MSG(e < 1e-5, "gemm_dw max error %g", e);
  }
}

LN_TEST(train_fd_gradients_plain) {
  TinyOpts o;
  o.hidden = 16; o.inter = 24; o.layers = 2; o.heads = 4; o.kv = 2; o.head_dim = 4; o.vocab = 32;
  check_fd(o, "plain (GQA 4/2, untied)");
}

LN_TEST(train_fd_gradients_llama3_bias_tied) {
  TinyOpts o;
  o.hidden = 16; o.inter = 24; o.layers = 2; o.heads = 4; o.kv = 1; o.head_dim = 8; o.vocab = 32;
  o.llama3 = true; o.bias = true; o.tied = true; o.theta = 500000.f;
  check_fd(o, "llama3 rope + qkv bias + tied");
}

LN_TEST(train_fd_gradients_bf16_weights) {
  TinyOpts o;
  o.hidden = 16; o.inter = 24; o.layers = 2; o.heads = 2; o.kv = 2; o.head_dim = 8; o.vocab = 32;
  o.dtype = DType::BF16;
  check_fd(o, "bf16 stored weights");
}

// Each family's backward, every parameter against finite differences of the float64 reference. Sequences of 9 and 6
// with windows of 4 (Gemma 2's even layers, Mistral's every layer) cross the windows; YaRN's original context is 32
// here, so 9 positions sit in its scaled band only through the frequencies (the ramp is position-independent).
LN_TEST(train_fd_gradients_qwen3) {
  TinyOpts o;
  o.hidden = 16; o.inter = 24; o.layers = 2; o.heads = 4; o.kv = 2; o.head_dim = 6; o.vocab = 32;
  o.family = TinyOpts::Family::Qwen3; o.tied = true;
  check_fd(o, "qwen3 q/k norms, tied");
}

LN_TEST(train_fd_gradients_gemma2) {
  TinyOpts o;
  o.hidden = 16; o.inter = 24; o.layers = 2; o.heads = 4; o.kv = 2; o.head_dim = 6; o.vocab = 32;
  o.family = TinyOpts::Family::Gemma2; o.tied = true; o.window = 4;
  check_fd(o, "gemma2 (1+w) norms, post-norms, softcaps, query scale, window 4 on layer 0, gelu-tanh, tied");
}

LN_TEST(train_fd_gradients_cohere) {
  TinyOpts o;
  o.hidden = 16; o.inter = 24; o.layers = 2; o.heads = 4; o.kv = 2; o.head_dim = 4; o.vocab = 32;
  o.family = TinyOpts::Family::Cohere; o.tied = true;
  check_fd(o, "cohere LayerNorm, parallel block, interleaved rope, logit scale, tied");
}

LN_TEST(train_fd_gradients_yarn_window) {
  TinyOpts o;
  o.hidden = 16; o.inter = 24; o.layers = 2; o.heads = 4; o.kv = 1; o.head_dim = 8; o.vocab = 32;
  o.yarn = true; o.bias = true; o.window = 4;
  check_fd(o, "yarn rope + qkv bias + sliding window 4 on every layer");
}

// Rows / Cols gradients equal the matching entries of the dense gradient; frozen layers below are not visited.
LN_TEST(train_sparse_matches_dense) {
  TinyOpts o;
  o.hidden = 16; o.inter = 24; o.layers = 3; o.heads = 4; o.kv = 2; o.head_dim = 4; o.vocab = 32; o.bias = true;
  Tiny tiny(o);
  Batch b = make_batch({10, 7}, o.vocab, 21);
  auto run = [&](Trainer& tr) {
    tr.forward_backward(b.tokens.data(), b.targets.data(), b.lens.data(), int32_t(b.lens.size()),
                        int64_t(b.tokens.size()), 0, true);
  };
  Trainer dense(tiny.cfg, tiny.w, 2, dense_spec(tiny.cfg));
  run(dense);
  const std::vector<int32_t> sel1 = {0, 3, 4, 17, 23}, sel2 = {5, 6};
  std::vector<TrainableSpec> spec = {
      {"w_gate", 1, ParamMode::Rows, sel1}, {"w_up", 1, ParamMode::Rows, sel1}, {"w_down", 1, ParamMode::Cols, sel1},
      {"w_gate", 2, ParamMode::Rows, sel2}, {"w_up", 2, ParamMode::Rows, sel2}, {"w_down", 2, ParamMode::Cols, sel2},
      {"wq", 2, ParamMode::Rows, {1, 9}},   {"wo", 2, ParamMode::Cols, {0, 15}}};
  Trainer sparse(tiny.cfg, tiny.w, 2, spec);
  LN_CHECK(sparse.lowest_layer() == 1);
  LN_CHECK(sparse.n_trainable() == 3 * 16 * 5 + 3 * 16 * 2 + 2 * 16 + 16 * 2);
  run(sparse);
  double worst = 0;
  for (const TrainableSpec& s : spec) {
    const Param& sp = sparse.param(sparse.find(s.role, s.layer));
    const Param& dp = dense.param(dense.find(s.role, s.layer));
    const int64_t K = dp.stored.cols;
    double num = 0, den = 0;
    for (int64_t r = 0; r < sp.mrows; ++r)
      for (int64_t c = 0; c < sp.mcols; ++c) {
        const int64_t dr = s.mode == ParamMode::Rows ? s.index[size_t(r)] : r;
        const int64_t dc = s.mode == ParamMode::Cols ? s.index[size_t(c)] : c;
        const double g = sparse.grad()[sp.offset + r * sp.mcols + c], d = dense.grad()[dp.offset + dr * K + dc];
        num += (g - d) * (g - d);
        den += d * d;
      }
    const double rel = std::sqrt(num / den);
    worst = std::max(worst, rel);
    LN_CHECK_MSG(rel < 1e-5, "%s of layer %d: sparse vs dense rel error %g", s.role.c_str(), s.layer, rel);
  }
  std::printf("  sparse vs dense gradient: worst rel error %.2e\n", worst);
}

// The dense-then-mask baseline (full dW, then the selected rows / columns) makes the same updates as the sparse path.
LN_TEST(train_dense_then_mask_matches_sparse) {
  TinyOpts o;
  o.hidden = 16; o.inter = 24; o.layers = 3; o.heads = 4; o.kv = 2; o.head_dim = 4; o.vocab = 32; o.bias = true;
  Tiny tiny(o);
  Batch b = make_batch({10, 7}, o.vocab, 23);
  const std::vector<int32_t> sel1 = {0, 3, 4, 17, 23}, sel2 = {5, 6};
  std::vector<TrainableSpec> spec = {
      {"w_gate", 1, ParamMode::Rows, sel1}, {"w_up", 1, ParamMode::Rows, sel1}, {"w_down", 1, ParamMode::Cols, sel1},
      {"w_gate", 2, ParamMode::Rows, sel2}, {"w_up", 2, ParamMode::Rows, sel2}, {"w_down", 2, ParamMode::Cols, sel2},
      {"wq", 2, ParamMode::Rows, {1, 9}},   {"wo", 2, ParamMode::Cols, {0, 15}}};
  TrainerOptions dtm;
  dtm.dense_then_mask = true;
  Trainer sparse(tiny.cfg, tiny.w, 2, spec), masked(tiny.cfg, tiny.w, 2, spec, dtm);
  LN_CHECK(sparse.n_trainable() == masked.n_trainable());
  AdamWConfig ac;
  ac.lr = 1e-2f;
  ac.weight_decay = 0.01f;
  for (int it = 0; it < 3; ++it)
    for (Trainer* tr : {&sparse, &masked}) {
      tr->zero_grad();
      tr->forward_backward(b.tokens.data(), b.targets.data(), b.lens.data(), 2, int64_t(b.tokens.size()), 0, true);
      tr->step(ac);
    }
  double gw = 0, mw = 0;
  for (int64_t i = 0; i < sparse.n_trainable(); ++i) {
    gw = std::max(gw, double(std::fabs(sparse.grad()[i] - masked.grad()[i])) / (1e-6 + std::fabs(sparse.grad()[i])));
    mw = std::max(mw, double(std::fabs(sparse.master()[i] - masked.master()[i])));
  }
  LN_CHECK_MSG(gw < 1e-4, "dense-then-mask vs sparse gradient: worst rel error %g", gw);
  LN_CHECK_MSG(mw < 1e-6, "dense-then-mask vs sparse weights after 3 AdamW steps: worst abs difference %g", mw);
  std::printf("  dense-then-mask vs sparse: grad rel %.2e, weights abs %.2e\n", gw, mw);
}

// The training seam (train/training_runtime.h) on the CPU trainer: arena copies, the weight the forward reads
// (checkpoint values outside the trained rows / columns, bit for bit; the master values inside) and the memory report.
LN_TEST(train_seam_arenas_and_weights) {
  TinyOpts o;
  o.hidden = 16; o.inter = 24; o.layers = 2; o.heads = 4; o.kv = 2; o.head_dim = 4; o.vocab = 32;
  Tiny tiny(o);
  Batch b = make_batch({9, 8}, o.vocab, 31);
  const std::vector<int32_t> sel = {2, 7, 11};
  std::vector<TrainableSpec> spec = {{"w_gate", 1, ParamMode::Rows, sel}, {"w_down", 1, ParamMode::Cols, sel},
                                     {"final_norm", -1, ParamMode::Dense, {}}};
  Trainer tr(tiny.cfg, tiny.w, 2, spec);
  TrainingRuntime& rt = tr;
  LN_CHECK(rt.device() == "cpu");
  AdamWConfig ac;
  ac.lr = 1e-2f;
  for (int it = 0; it < 2; ++it) {
    rt.zero_grad();
    rt.forward_backward(b.tokens.data(), b.targets.data(), b.lens.data(), 2, int64_t(b.tokens.size()), 0, true);
    rt.step(ac);
  }
  const int64_t n = rt.n_trainable();
  std::vector<float> got(static_cast<size_t>(n));
  const Arena arenas[] = {Arena::Master, Arena::Grad, Arena::AdamM, Arena::AdamV};
  float* raw[] = {tr.master(), tr.grad(), tr.adam_m(), tr.adam_v()};
  for (int a = 0; a < 4; ++a) {
    rt.read(arenas[a], 0, n, got.data());
    LN_CHECK(std::equal(got.begin(), got.end(), raw[a]));
  }
  std::vector<float> vals(5);
  for (size_t i = 0; i < vals.size(); ++i) vals[i] = 0.25f * float(i) - 1.f;
  rt.write(Arena::AdamV, n - 5, 5, vals.data());
  LN_CHECK(std::equal(vals.begin(), vals.end(), tr.adam_v() + n - 5));
  bool threw = false;
  try {
    rt.read(Arena::Master, n - 2, 3, got.data());
  } catch (const std::out_of_range&) {
    threw = true;
  }
  LN_CHECK(threw);

  for (const char* role : {"w_gate", "w_down", "w_up"}) {
    const Param& p = rt.param(rt.find(role, 1));
    const int64_t R = p.stored.rows, C = p.stored.cols;
    std::vector<float> w(size_t(R * C)), stored(size_t(R * C));
    rt.read_weight(rt.find(role, 1), w.data());
    convert_to_f32(p.stored.data, p.stored.dtype, 0, R * C, stored.data());
    int64_t inside_diff = 0;
    for (int64_t r = 0; r < R; ++r)
      for (int64_t c = 0; c < C; ++c) {
        const bool rows = p.mode == ParamMode::Rows, cols = p.mode == ParamMode::Cols;
        const auto it = std::find(sel.begin(), sel.end(), int32_t(rows ? r : c));
        const bool trained = (rows || cols) && it != sel.end();
        const float v = w[size_t(r * C + c)];
        if (!trained) {
          LN_CHECK_MSG(std::memcmp(&v, &stored[size_t(r * C + c)], 4) == 0, "%s [%lld, %lld] changed outside the mask",
                       role, (long long)r, (long long)c);
          continue;
        }
        const int64_t k = it - sel.begin();
        const float m = tr.master()[p.offset + (rows ? k * C + c : r * int64_t(sel.size()) + k)];
        LN_CHECK(v == m);
        inside_diff += v != stored[size_t(r * C + c)];
      }
    if (p.mode != ParamMode::Frozen) LN_CHECK_MSG(inside_diff > 0, "%s: the trained values did not move", role);
  }
  const TrainingMemory m = rt.memory();
  LN_CHECK(m.master == n * 4 && m.grad == n * 4 && m.adam == 2 * n * 4 && m.activations > 0);
  LN_CHECK(m.device_total == 0);
}

LN_TEST(train_adamw_lowers_loss) {
  TinyOpts o;
  o.hidden = 16; o.inter = 24; o.layers = 2; o.heads = 4; o.kv = 2; o.head_dim = 4; o.vocab = 32;
  Tiny tiny(o);
  Batch b = make_batch({12, 12}, o.vocab, 5);
  for (int method = 0; method < 2; ++method) {
    std::vector<TrainableSpec> spec = method == 0 ? dense_spec(tiny.cfg)
        : std::vector<TrainableSpec>{{"w_gate", 0, ParamMode::Rows, {1, 2, 3}}, {"w_up", 0, ParamMode::Rows, {1, 2, 3}},
                                     {"w_down", 0, ParamMode::Cols, {1, 2, 3}}};
    Trainer tr(tiny.cfg, tiny.w, 2, spec);
    AdamWConfig ac;
    ac.lr = 1e-2f;
    ac.clip = 1.f;
    ac.weight_decay = 0.01f;
    double first = 0, last = 0;
    for (int it = 0; it < 20; ++it) {
      tr.zero_grad();
      BatchLoss bl = tr.forward_backward(b.tokens.data(), b.targets.data(), b.lens.data(), 2, int64_t(b.tokens.size()), 0, true);
      if (it == 0) first = bl.sum / double(bl.count);
      last = bl.sum / double(bl.count);
      tr.step(ac);
    }
    LN_CHECK_MSG(last < first - 0.05, "method %d: loss %g -> %g", method, first, last);
  }
}

LN_TEST(train_rejects_bad_spec_and_batch) {
  TinyOpts o;
  o.hidden = 16; o.inter = 24; o.layers = 2; o.heads = 4; o.kv = 2; o.head_dim = 4; o.vocab = 32; o.tied = true;
  Tiny tiny(o);
  auto throws = [&](std::vector<TrainableSpec> spec) {
    try {
      Trainer tr(tiny.cfg, tiny.w, 1, spec);
    } catch (const std::invalid_argument&) {
      return true;
    }
    return false;
  };
  LN_CHECK(throws({{"nope", 0, ParamMode::Dense, {}}}));
  LN_CHECK(throws({{"w_gate", 5, ParamMode::Dense, {}}}));
  LN_CHECK(throws({{"w_gate", 0, ParamMode::Rows, {3, 2}}}));
  LN_CHECK(throws({{"w_gate", 0, ParamMode::Rows, {24}}}));
  LN_CHECK(throws({{"w_down", 0, ParamMode::Rows, {1}}}));
  LN_CHECK(throws({{"ffn_norm", 0, ParamMode::Cols, {1}}}));
  LN_CHECK(throws({{"lm_head", -1, ParamMode::Dense, {}}}));  // tied
  LN_CHECK(throws({{"bq", 0, ParamMode::Dense, {}}}));        // no biases in this model
  LN_CHECK(throws({{"wq", 0, ParamMode::Dense, {}}, {"wq", 0, ParamMode::Dense, {}}}));
  Trainer tr(tiny.cfg, tiny.w, 1, {{"wq", 0, ParamMode::Dense, {}}});
  std::vector<int32_t> tok = {1, 2, 3}, tg = {2, 3, -1}, lens = {3}, bad = {1, 99, 3}, badlens = {2};
  auto fb_throws = [&](const std::vector<int32_t>& t, const std::vector<int32_t>& g, const std::vector<int32_t>& l) {
    try {
      tr.forward_backward(t.data(), g.data(), l.data(), int32_t(l.size()), int64_t(t.size()), 0, true);
    } catch (const std::invalid_argument&) {
      return true;
    }
    return false;
  };
  LN_CHECK(fb_throws(bad, tg, lens));
  LN_CHECK(fb_throws(tok, bad, lens));
  LN_CHECK(fb_throws(tok, tg, badlens));
  LN_CHECK(!fb_throws(tok, tg, lens));
}

// The trainer's gradients do not depend on the kernel family: every parameter mode (dense, rows / cols through the
// gather-GEMM-scatter paths, LoRA with a masked B) gives the same gradients with the plain backward GEMMs as with
// every x86 family's (forward GEMMs switch too), to float32 rounding. Sizes large enough (hidden 40, intermediate 72,
// 19 + 14 tokens) that the AVX2 kernels run full 6x16 tiles as well as edge tiles.
LN_TEST(train_gradients_same_with_every_kernel_family) {
  const std::vector<CpuKernel> ks = kernel_families_to_test();  // plain first
  if (ks.size() < 2) {
    std::printf("  (no x86 kernel family on this CPU: only the plain kernels exist)\n");
    return;
  }
  const CpuKernel saved = active_kernel();
  TinyOpts o;
  o.hidden = 40; o.inter = 72; o.layers = 2; o.heads = 4; o.kv = 2; o.head_dim = 10; o.vocab = 48; o.bias = true;
  o.dtype = DType::BF16;
  Tiny tiny(o);
  Batch b = make_batch({19, 14}, o.vocab, 31);
  std::vector<int32_t> sel;
  for (int32_t j = 1; j < o.inter; j += 4) sel.push_back(j);
  TrainableSpec lora{"wq", 1, ParamMode::Lora, {}};
  lora.lora_r = 4; lora.lora_alpha = 8.f;
  TrainableSpec masked_lora{"w_gate", 0, ParamMode::Lora, sel};
  masked_lora.lora_r = 3; masked_lora.lora_alpha = 6.f;
  const std::vector<std::vector<TrainableSpec>> specs = {
      dense_spec(tiny.cfg),
      {{"w_gate", 0, ParamMode::Rows, sel}, {"w_up", 0, ParamMode::Rows, sel}, {"w_down", 0, ParamMode::Cols, sel},
       {"wo", 1, ParamMode::Cols, {0, 7, 39}}},
      {lora, masked_lora, {"w_up", 1, ParamMode::Rows, sel}}};
  const char* names[] = {"dense", "rows/cols", "lora"};
  for (size_t s = 0; s < specs.size(); ++s) {
    std::vector<std::vector<float>> g(ks.size());
    std::vector<double> loss(ks.size());
    for (size_t k = 0; k < ks.size(); ++k) {
      set_kernel(ks[k]);
      Trainer tr(tiny.cfg, tiny.w, 2, specs[s]);
      BatchLoss bl = tr.forward_backward(b.tokens.data(), b.targets.data(), b.lens.data(), 2, int64_t(b.tokens.size()),
                                         0, true);
      loss[k] = bl.sum / double(bl.count);
      g[k].assign(tr.grad(), tr.grad() + tr.n_trainable());
    }
    for (size_t k = 1; k < ks.size(); ++k) {
      double num = 0, den = 0;
      for (size_t i = 0; i < g[0].size(); ++i) {
        num += double(g[k][i] - g[0][i]) * double(g[k][i] - g[0][i]);
        den += double(g[0][i]) * g[0][i];
      }
      const double rel = std::sqrt(num / std::max(den, 1e-30));
      LN_CHECK_MSG(den > 0 && rel < 1e-5, "%s: %s vs plain gradient rel error %.3g (|g| %.3g)", names[s],
                   kernel_name(ks[k]), rel, std::sqrt(den));
      LN_CHECK_MSG(std::fabs(loss[k] - loss[0]) <= 1e-6 * std::fabs(loss[0]), "%s: %s loss %.9g vs %.9g", names[s],
                   kernel_name(ks[k]), loss[k], loss[0]);
      std::printf("  %s: %zu gradient entries, %s vs plain rel error %.2e\n", names[s], g[0].size(),
                  kernel_name(ks[k]), rel);
    }
  }
  set_kernel(saved);
}
