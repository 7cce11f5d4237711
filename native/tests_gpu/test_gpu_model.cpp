// The CUDA runtime against the CPU engine (model/model.h) on the tiny random models of native/tests/tiny_model.h:
// logits (f32 within 1e-4 of the CPU's f32, bf16 within the CPU's bf16 bound), alone = packed = KV cache,
// scoring, capture, the next-token pick (Greedy), interventions (edits and test-time rules) and the statistics of
// every site (resid too), whose counts must equal the CPU's except for values within rounding of zero / a
// threshold / a bin edge (counted and printed).
#include <algorithm>
#include <cstdio>
#include <functional>
#include <memory>
#include <numeric>

#include "cuda/cuda_model.h"
#include "gpu_test_util.h"
#include "kernels/math.h"
#include "model/intervention.h"
#include "model/stats.h"
#include "runtime/cuda_runtime.h"
#include "tiny_model.h"

using namespace ln;
using namespace lntiny;
using namespace lngpu;

namespace {

constexpr double kBf16Bound = 5e-2;  // the CPU tests' bound for bf16 against float32 / float64 references

struct Batch {
  std::vector<int32_t> tokens, lens;
};
Batch make_batch(const std::vector<int>& lens, int vocab, uint32_t seed) {
  Batch b;
  for (size_t i = 0; i < lens.size(); ++i) {
    const auto t = random_tokens(lens[i], vocab, seed + uint32_t(i));
    b.tokens.insert(b.tokens.end(), t.begin(), t.end());
    b.lens.push_back(lens[i]);
  }
  return b;
}

template <class Engine>
ForwardResult run(Engine& e, const Batch& b, LogitsMode mode, const ForwardRequest* extra = nullptr) {
  ForwardRequest r = extra ? *extra : ForwardRequest{};
  r.tokens = b.tokens.data();
  r.n_tokens = int64_t(b.tokens.size());
  r.seq_lens = b.lens.data();
  r.n_seqs = int32_t(b.lens.size());
  r.logits = mode;
  ForwardResult out;
  e.forward(r, out);
  return out;
}

std::vector<TinyOpts> shapes() {
  std::vector<TinyOpts> v;
  TinyOpts a;  // llama, head_dim 8 (exact attention path in bf16), GQA 3
  v.push_back(a);
  TinyOpts b;  // qwen2: biases; bf16 storage
  b.bias = true;
  b.dtype = DType::BF16;
  b.seed = 2;
  v.push_back(b);
  TinyOpts c;  // llama3 rope, tied embeddings, f16 storage
  c.llama3 = true;
  c.tied = true;
  c.dtype = DType::F16;
  c.seed = 3;
  v.push_back(c);
  TinyOpts d;  // head_dim 32 (tensor-core attention), GQA 2
  d.hidden = 64;
  d.heads = 4;
  d.kv = 2;
  d.head_dim = 32;
  d.inter = 136;
  d.seed = 4;
  v.push_back(d);
  TinyOpts e;  // head_dim 64, GQA 4
  e.hidden = 128;
  e.heads = 4;
  e.kv = 1;
  e.head_dim = 64;
  e.inter = 200;
  e.layers = 2;
  e.vocab = 96;
  e.max_pos = 512;
  e.seed = 5;
  v.push_back(e);
  TinyOpts f;  // head_dim 128, GQA 1
  f.hidden = 256;
  f.heads = 2;
  f.kv = 2;
  f.head_dim = 128;
  f.inter = 344;
  f.layers = 2;
  f.vocab = 80;
  f.max_pos = 512;
  f.dtype = DType::BF16;
  f.seed = 6;
  v.push_back(f);
  // The families (tiny_model.h): every family feature through the same checks.
  TinyOpts g;  // qwen3: q/k norms; head_dim 32 (tensor-core attention)
  g.family = TinyOpts::Family::Qwen3;
  g.hidden = 64;
  g.heads = 4;
  g.kv = 2;
  g.head_dim = 32;
  g.inter = 136;
  g.seed = 7;
  v.push_back(g);
  TinyOpts h = g;  // gemma2: (1 + w) norms, post-norms, GELU, scaled embeddings, soft-capping, a window of 16 on
  h.family = TinyOpts::Family::Gemma2;  // the even layers (the sequences here are up to 120 long)
  h.window = 16;
  h.dtype = DType::BF16;
  h.seed = 8;
  v.push_back(h);
  TinyOpts i;  // gemma2 at head_dim 8 (the exact attention kernel in bf16)
  i.family = TinyOpts::Family::Gemma2;
  i.window = 24;
  i.seed = 9;
  v.push_back(i);
  TinyOpts j;  // cohere: LayerNorm, parallel block, interleaved RoPE, logit_scale; tied
  j.family = TinyOpts::Family::Cohere;
  j.tied = true;
  j.seed = 10;
  v.push_back(j);
  TinyOpts k = e;  // mistral-style window on every layer, head_dim 64: windows cut through the 64-row tiles
  k.window = 40;
  k.seed = 11;
  v.push_back(k);
  TinyOpts y;  // yarn: scaled frequencies and attention factor
  y.yarn = true;
  y.seed = 12;
  v.push_back(y);
  TinyOpts z;  // head_dim 256 (Gemma 2's; tensor-core attention with Q in shared memory), GQA 2
  z.hidden = 256;
  z.heads = 2;
  z.kv = 1;
  z.head_dim = 256;
  z.inter = 200;
  z.layers = 2;
  z.vocab = 80;
  z.max_pos = 512;
  z.seed = 13;
  v.push_back(z);
  return v;
}

std::string shape_name(const TinyOpts& o) {
  const char* family[] = {"", "qwen3 ", "gemma2 ", "cohere "};
  return family[int(o.family)] + std::string(o.window ? "window " + std::to_string(o.window) + " " : "") +
         (o.yarn ? "yarn " : "") + "hd" + std::to_string(o.head_dim) + " heads " + std::to_string(o.heads) + "/" + std::to_string(o.kv) +
         (o.bias ? " bias" : "") + (o.llama3 ? " llama3" : "") + (o.tied ? " tied" : "") + " " + dtype_name(o.dtype);
}

// Row i of a [rows x V] logits array.
std::vector<float> row_of(const std::vector<float>& logits, int64_t i, int64_t V) {
  return std::vector<float>(logits.begin() + i * V, logits.begin() + (i + 1) * V);
}

// The last row of sequence s of an All result: what Last and Greedy read.
std::vector<float> last_row(const ForwardResult& all, const Batch& b, size_t s, int64_t V) {
  int64_t row = -1;
  for (size_t k = 0; k <= s; ++k) row += b.lens[k];
  return row_of(all.logits, row, V);
}

// Two ways through one runtime (alone, packed, through the KV cache) sum in other orders: float32 rounding in f32
// mode; in bf16 mode, activations rounded to bf16 at other points.
double same_runtime_tol(Compute mode) { return mode == Compute::F32 ? 1e-5 : 2e-2; }

}  // namespace

LN_TEST(gpu_model_logits_match_cpu_f32_and_bf16) {
  for (const TinyOpts& o : shapes()) {
    Tiny t(o);
    const Batch b = make_batch({1, 17, 70, 5, 120}, o.vocab, 11);
    Model cpu32(t.cfg, t.w, 2, Compute::F32), cpu16(t.cfg, t.w, 2, Compute::BF16);
    auto g32 = make_cuda_runtime(t.cfg, t.w, 0, Compute::F32);
    auto g16 = make_cuda_runtime(t.cfg, t.w, 0, Compute::BF16);
    const ForwardResult c32 = run(cpu32, b, LogitsMode::All), c16 = run(cpu16, b, LogitsMode::All);
    const ForwardResult r32 = run(*g32, b, LogitsMode::All), r16 = run(*g16, b, LogitsMode::All);
    const double e32 = rel_err(r32.logits, c32.logits), e16 = rel_err(r16.logits, c16.logits),
                 e16_32 = rel_err(r16.logits, c32.logits), cpu_bound = rel_err(c16.logits, c32.logits);
    std::printf("  %s: f32 vs cpu f32 %.2e; bf16 vs cpu bf16 %.2e; bf16 vs cpu f32 %.2e (cpu bf16 vs f32 %.2e)\n",
                shape_name(o).c_str(), e32, e16, e16_32, cpu_bound);
    LN_CHECK_MSG(e32 < 1e-4, "%s f32 %.3e", shape_name(o).c_str(), e32);
    LN_CHECK_MSG(e16_32 < kBf16Bound, "%s bf16 %.3e", shape_name(o).c_str(), e16_32);
    LN_CHECK_MSG(e16 < kBf16Bound, "%s bf16 vs cpu bf16 %.3e", shape_name(o).c_str(), e16);
    LN_CHECK(e16 > 0 || e16_32 > 0);  // the bf16 rounding happened
    const int64_t V = t.cfg.vocab, T = int64_t(b.tokens.size());
    int64_t flips = 0;
    for (int64_t i = 0; i < T; ++i)
      flips += argmax_row(&r32.logits[size_t(i * V)], V) != argmax_row(&c32.logits[size_t(i * V)], V);
    LN_CHECK_MSG(flips == 0, "%s: %lld f32 argmax rows differ", shape_name(o).c_str(), (long long)flips);
    // Last = the last row of each sequence of All.
    const ForwardResult last = run(*g32, b, LogitsMode::Last);
    for (size_t s = 0; s < b.lens.size(); ++s) LN_CHECK(rel_err(row_of(last.logits, int64_t(s), V), last_row(r32, b, s, V)) < 1e-5);
  }
}

// The logit lens (last_layer with logits and targets: the final norm and LM head on that layer's stream), as the
// CPU computes it (which test_model.cpp checks against a float64 reference): every shape, the first and a middle
// layer, All / Last / Greedy, target log-probabilities; f32 within 1e-4, bf16 within the bf16 bound.
LN_TEST(gpu_model_logit_lens_matches_cpu) {
  for (const TinyOpts& o : shapes()) {
    Tiny t(o);
    const Batch b = make_batch({1, 17, 40, 5}, o.vocab, 13);
    Model cpu32(t.cfg, t.w, 2, Compute::F32), cpu16(t.cfg, t.w, 2, Compute::BF16);
    auto g32 = make_cuda_runtime(t.cfg, t.w, 0, Compute::F32);
    auto g16 = make_cuda_runtime(t.cfg, t.w, 0, Compute::BF16);
    std::vector<int32_t> targets(b.tokens.size());
    for (size_t i = 0; i < targets.size(); ++i) targets[i] = int32_t((i * 5 + 1) % size_t(o.vocab));
    const int V = t.cfg.vocab;
    for (int l : {0, t.cfg.n_layers / 2}) {
      ForwardRequest r;
      r.last_layer = l;
      r.targets = targets.data();
      const ForwardResult c32 = run(cpu32, b, LogitsMode::All, &r), c16 = run(cpu16, b, LogitsMode::All, &r);
      const ForwardResult r32 = run(*g32, b, LogitsMode::All, &r), r16 = run(*g16, b, LogitsMode::All, &r);
      const double e32 = rel_err(r32.logits, c32.logits), e16 = rel_err(r16.logits, c16.logits);
      LN_CHECK_MSG(e32 < 1e-4, "%s layer %d: lens f32 %.3e", shape_name(o).c_str(), l, e32);
      LN_CHECK_MSG(e16 < kBf16Bound, "%s layer %d: lens bf16 %.3e", shape_name(o).c_str(), l, e16);
      double worst = 0;
      for (size_t i = 0; i < targets.size(); ++i)
        worst = std::max(worst, std::fabs(double(r32.target_logprobs[i]) - c32.target_logprobs[i]) / std::max(1.0, std::fabs(double(c32.target_logprobs[i]))));
      LN_CHECK_MSG(worst < 1e-4, "%s layer %d: lens target log-probs %.3e", shape_name(o).c_str(), l, worst);
      // Last and Greedy read the same lens rows
      r.targets = nullptr;
      const ForwardResult last = run(*g32, b, LogitsMode::Last, &r), greedy = run(*g32, b, LogitsMode::Greedy, &r);
      for (size_t s = 0; s < b.lens.size(); ++s) {
        const std::vector<float> w = last_row(r32, b, s, V);
        LN_CHECK(rel_err(row_of(last.logits, int64_t(s), V), w) < 1e-5);
        LN_CHECK_MSG(greedy.next[s].token == argmax_row(w.data(), V), "%s layer %d: greedy pick of sequence %zu", shape_name(o).c_str(), l, s);
      }
    }
  }
}

LN_TEST(gpu_model_alone_packed_cache_agree) {
  for (const TinyOpts& o : shapes()) {
    Tiny t(o);
    for (Compute mode : {Compute::F32, Compute::BF16}) {
      const double tol = same_runtime_tol(mode);
      auto g = make_cuda_runtime(t.cfg, t.w, 0, mode);
      const Batch a = make_batch({90}, o.vocab, 21), packed = make_batch({3, 90, 1}, o.vocab, 20);
      // packed's second sequence has seed 21 = a's tokens.
      const ForwardResult alone = run(*g, a, LogitsMode::All), pk = run(*g, packed, LogitsMode::All);
      const int64_t V = t.cfg.vocab;
      std::vector<float> mid(pk.logits.begin() + 3 * V, pk.logits.begin() + 93 * V);
      const double e_pack = rel_err(mid, alone.logits);
      // KV cache: 40 tokens as a prompt, then one token at a time (Last logits each step), in slot 1 of 2.
      auto cache = g->make_cache(2, 128);
      std::vector<float> stepwise(alone.logits.begin(), alone.logits.begin() + 40 * V);
      {
        Batch p;
        p.tokens.assign(a.tokens.begin(), a.tokens.begin() + 40);
        p.lens = {40};
        int32_t slot = 1;
        ForwardRequest r;
        r.cache = cache.get();
        r.cache_slots = &slot;
        const ForwardResult first = run(*g, p, LogitsMode::All, &r);
        std::copy(first.logits.begin(), first.logits.end(), stepwise.begin());
        for (int i = 40; i < 90; ++i) {
          Batch s;
          s.tokens = {a.tokens[size_t(i)]};
          s.lens = {1};
          const ForwardResult step = run(*g, s, LogitsMode::Last, &r);
          stepwise.insert(stepwise.end(), step.logits.begin(), step.logits.end());
        }
        LN_CHECK(cache->length(1) == 90 && cache->length(0) == 0);
        // copy_prefix: slot 0 continues the first 60 positions of slot 1 and must give the same next logits.
        cache->copy_prefix(1, 0, 60);
        Batch s;
        s.tokens = {a.tokens[60]};
        s.lens = {1};
        int32_t slot0 = 0;
        ForwardRequest r0;
        r0.cache = cache.get();
        r0.cache_slots = &slot0;
        const ForwardResult cont = run(*g, s, LogitsMode::Last, &r0);
        std::vector<float> want(alone.logits.begin() + 60 * V, alone.logits.begin() + 61 * V);
        LN_CHECK_MSG(rel_err(cont.logits, want) < tol, "copy_prefix %.3e", rel_err(cont.logits, want));
      }
      const double e_cache = rel_err(stepwise, alone.logits);
      std::printf("  %s %s: packed vs alone %.2e, KV cache vs alone %.2e\n", shape_name(o).c_str(),
                  mode == Compute::F32 ? "f32" : "bf16", e_pack, e_cache);
      LN_CHECK_MSG(e_pack < tol, "packed %.3e", e_pack);
      LN_CHECK_MSG(e_cache < tol, "cache %.3e", e_cache);
    }
  }
}

// Continuous batching (src/generate/generate.ts): one forward packs a sequence decoding one token at cache position
// 40 of slot 2 with another prefilling 37 tokens into slot 0 (its earlier, longer occupant reset to length 0);
// both must give the logits they give alone.
LN_TEST(gpu_model_cache_mixed_decode_and_prefill_agree) {
  for (const TinyOpts& o : shapes()) {
    Tiny t(o);
    for (Compute mode : {Compute::F32, Compute::BF16}) {
      const double tol = same_runtime_tol(mode);
      auto g = make_cuda_runtime(t.cfg, t.w, 0, mode);
      const Batch a = make_batch({41}, o.vocab, 21), b = make_batch({37}, o.vocab, 22), old = make_batch({60}, o.vocab, 23);
      const ForwardResult a_alone = run(*g, a, LogitsMode::All), b_alone = run(*g, b, LogitsMode::All);
      const int64_t V = t.cfg.vocab;
      auto cache = g->make_cache(3, 128);
      ForwardRequest r;
      r.cache = cache.get();
      int32_t slot_a = 2, slot_old = 0;
      Batch a40;
      a40.tokens.assign(a.tokens.begin(), a.tokens.begin() + 40);
      a40.lens = {40};
      r.cache_slots = &slot_a;
      run(*g, a40, LogitsMode::None, &r);
      r.cache_slots = &slot_old;
      run(*g, old, LogitsMode::None, &r);  // slot 0's earlier sequence, ended
      cache->set_length(0, 0);
      Batch mixed;
      mixed.tokens = {a.tokens[40]};
      mixed.tokens.insert(mixed.tokens.end(), b.tokens.begin(), b.tokens.end());
      mixed.lens = {1, 37};
      const int32_t slots[2] = {2, 0};
      r.cache_slots = slots;
      const ForwardResult m = run(*g, mixed, LogitsMode::All, &r);
      const std::vector<float> a_row(m.logits.begin(), m.logits.begin() + V), b_rows(m.logits.begin() + V, m.logits.end());
      const std::vector<float> a_want(a_alone.logits.begin() + 40 * V, a_alone.logits.end());
      const double e_a = rel_err(a_row, a_want), e_b = rel_err(b_rows, b_alone.logits);
      std::printf("  %s %s: decoding vs alone %.2e, prefilling vs alone %.2e\n", shape_name(o).c_str(),
                  mode == Compute::F32 ? "f32" : "bf16", e_a, e_b);
      LN_CHECK_MSG(e_a < tol, "decoding %.3e", e_a);
      LN_CHECK_MSG(e_b < tol, "prefilling %.3e", e_b);
      LN_CHECK(cache->length(2) == 41 && cache->length(0) == 37 && cache->length(1) == 0);
    }
  }
}

LN_TEST(gpu_model_scoring_and_capture_match_cpu) {
  TinyOpts o;
  o.bias = true;
  Tiny t(o);
  Model cpu(t.cfg, t.w, 2, Compute::F32);
  auto g = make_cuda_runtime(t.cfg, t.w, 0, Compute::F32);
  const Batch b = make_batch({12, 60, 1}, o.vocab, 31);
  std::vector<int32_t> targets(b.tokens.size(), -1);
  for (size_t i = 0; i + 1 < targets.size(); i += 2) targets[i] = b.tokens[i + 1];
  for (LogitsMode mode : {LogitsMode::None, LogitsMode::All, LogitsMode::Last}) {
    ForwardRequest r;
    r.targets = targets.data();
    r.capture_site = Site::H;
    r.capture_layer = 1;
    const ForwardResult c = run(cpu, b, mode, &r), gg = run(*g, b, mode, &r);
    LN_CHECK(gg.target_logprobs.size() == c.target_logprobs.size());
    double worst = 0;
    for (size_t i = 0; i < c.target_logprobs.size() && i < gg.target_logprobs.size(); ++i)
      worst = std::max(worst, std::fabs(double(gg.target_logprobs[i]) - c.target_logprobs[i]) /
                                  std::max(1.0, std::fabs(double(c.target_logprobs[i]))));
    LN_CHECK_MSG(worst < 1e-4, "target log-probs %.3e", worst);
    LN_CHECK_MSG(rel_err(gg.capture, c.capture) < 1e-5, "capture %.3e", rel_err(gg.capture, c.capture));
    LN_CHECK(gg.logits.size() == c.logits.size());
  }
}

namespace {

void check_interventions(TinyOpts::Family family) {
  TinyOpts o;
  o.hidden = 64;
  o.heads = 4;
  o.kv = 2;
  o.head_dim = 16;
  o.inter = 120;
  o.family = family;
  Tiny t(o);
  std::vector<RowRule> rules;
  for (int s = 0; s < kRowStatCount; ++s) {
    RowRule r;
    r.layer = 1;
    r.site = s % 3 == 0 ? Site::Act : (s % 3 == 1 ? Site::Gate : Site::H);
    r.stat = RowStat(s);
    r.factor = 0.5f + 0.25f * float(s);
    r.percentile = 90.f;
    rules.push_back(r);
  }
  std::vector<EditSpec> edits;
  for (int i = 0; i < 40; ++i) {
    EditSpec e;
    e.layer = i % 3;
    e.site = Site(i % 3);
    e.neuron = (i * 37) % o.inter;
    e.op = InterveneOp(i % 3);
    e.value = 0.3f * float(i % 5) - 0.4f;
    e.when = i % 4 == 0 ? uint8_t(2) : uint8_t(0xff);
    edits.push_back(e);
  }
  const Site projections[6] = {Site::Up, Site::Q, Site::K, Site::V, Site::O, Site::Down};
  for (int i = 0; i < 36; ++i) {  // the projection sites (and up): 2 layers, every op, position classes
    EditSpec e;
    e.layer = i % 2;
    e.site = projections[i % 6];
    e.neuron = int32_t((i * 13) % site_width(t.cfg, e.site));
    e.op = InterveneOp(i % 3);
    e.value = e.op == InterveneOp::Scale ? -1.5f : 0.4f * float(i % 5) - 0.8f;
    e.when = i % 4 == 1 ? uint8_t(1) : uint8_t(0xff);
    edits.push_back(e);
  }
  for (int s = 0; s < kRowStatCount; ++s) {  // a rule-valued edit per rule, at the rule's layer and site
    EditSpec e;
    e.layer = 1;
    e.site = rules[size_t(s)].site;
    e.neuron = 3 + s;
    e.op = InterveneOp::Set;
    e.rule = s;
    edits.push_back(e);
  }
  const Intervention iv(t.cfg, edits, rules);
  const Batch b = make_batch({30, 9}, o.vocab, 41);
  std::vector<uint8_t> cls(b.tokens.size());
  for (size_t i = 0; i < cls.size(); ++i) cls[i] = i % 3 == 0 ? 2 : 1;
  for (Compute mode : {Compute::F32, Compute::BF16}) {
    Model cpu(t.cfg, t.w, 2, mode);
    auto g = make_cuda_runtime(t.cfg, t.w, 0, mode);
    ForwardRequest r;
    r.intervention = &iv;
    r.intervene_mask = cls.data();
    r.capture_site = Site::H;
    r.capture_layer = 1;
    const ForwardResult c = run(cpu, b, LogitsMode::All, &r), gg = run(*g, b, LogitsMode::All, &r);
    const ForwardResult plain = run(*g, b, LogitsMode::All);
    const double e = rel_err(gg.logits, c.logits), ec = rel_err(gg.capture, c.capture);
    std::printf("  %s %s: intervened logits vs cpu %.2e, captured h %.2e (unedited differs by %.2e)\n",
                shape_name(o).c_str(), mode == Compute::F32 ? "f32" : "bf16", e, ec, rel_err(plain.logits, c.logits));
    LN_CHECK_MSG(e < (mode == Compute::F32 ? 1e-4 : kBf16Bound), "logits %.3e", e);
    LN_CHECK_MSG(ec < (mode == Compute::F32 ? 1e-4 : kBf16Bound), "capture %.3e", ec);
    LN_CHECK(rel_err(plain.logits, c.logits) > 1e-3);  // the edits matter
    // The projection sites record their values after the edits (layer 1's, with layer 0's edits upstream).
    for (Site site : projections) {
      r.capture_site = site;
      r.capture_layer = 1;
      const double es = rel_err(run(*g, b, LogitsMode::None, &r).capture, run(cpu, b, LogitsMode::None, &r).capture);
      LN_CHECK_MSG(es < (mode == Compute::F32 ? 1e-4 : kBf16Bound), "captured %s %.3e", site_name(site), es);
    }
  }
}

}  // namespace

// The edits (every site) and rules on a llama, on Qwen3 (q/k norms after the q/k edits), on Gemma 2 (GELU: the
// rules at act and h read GELU values; post-norms after the o/down edits) and on Cohere (parallel block, LayerNorm).
LN_TEST(gpu_model_interventions_match_cpu) {
  for (TinyOpts::Family family :
       {TinyOpts::Family::Llama, TinyOpts::Family::Qwen3, TinyOpts::Family::Gemma2, TinyOpts::Family::Cohere})
    check_interventions(family);
}

namespace {

StatsOptions all_sites(const ModelConfig& c, int layers) {
  StatsOptions o;
  o.sites = {Site::Act, Site::Gate, Site::H, Site::Up, Site::Q, Site::K, Site::V, Site::O, Site::Down, Site::Resid};
  o.n_layers = layers;
  o.hist_edges = {-2, -1, -0.5, -0.1, 0, 0.1, 0.5, 1, 2};
  o.seq_means = true;
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> U(-0.5f, 0.5f);
  for (Site s : {Site::Act, Site::H, Site::Q}) {
    std::vector<float>& th = o.thresholds[int(s)];
    th.resize(size_t(int64_t(layers) * site_width(c, s)));
    for (float& x : th) x = U(rng);
  }
  return o;
}

}  // namespace

// Counts must be equal except where a value lies within rounding of 0, a threshold or a histogram edge; those
// are counted from the CPU's own captured values (|x - boundary| <= 1e-5 (|x| + 1): float32 GEMMs summed in
// another order move O(1) values by ~1e-6) and bound the differences.
namespace {

void check_statistics(const TinyOpts& o) {
  Tiny t(o);
  const int L = 2;
  const StatsOptions opts = all_sites(t.cfg, L);
  Batch b = make_batch({1, 40, 127, 7}, o.vocab, 51);
  std::vector<uint8_t> mask(b.tokens.size(), 1);
  mask[1] = 0;   // the second sequence's first token (BOS-like) not counted
  mask[0] = 0;   // the 1-token sequence counts nothing: no seq-means row
  Model cpu(t.cfg, t.w, 2, Compute::F32);
  auto g = make_cuda_runtime(t.cfg, t.w, 0, Compute::F32);
  ActivationStats sc(t.cfg, opts), sg(t.cfg, opts);
  ForwardRequest r;
  r.count_mask = mask.data();
  r.last_layer = L - 1;
  for (int rep = 0; rep < 2; ++rep) {  // twice: totals add up, seq-means rows append
    r.stats = &sc;
    run(cpu, b, LogitsMode::None, &r);
    r.stats = &sg;
    run(*g, b, LogitsMode::None, &r);
  }
  LN_CHECK(sg.tokens() == sc.tokens() && sg.sequences() == sc.sequences());
  int64_t total_diff = 0, total_near = 0;
  for (const SiteStats& c : sc.sites()) {
    const SiteStats& gg = *sg.find(c.site);
    // Values near a boundary, from the CPU capture of each profiled layer (the same tokens, counted ones only).
    int64_t near = 0;
    for (int l = 0; l < L; ++l) {
      ForwardRequest cr;
      cr.capture_site = c.site;
      cr.capture_layer = l;
      cr.last_layer = L - 1;
      const ForwardResult cap = run(cpu, b, LogitsMode::None, &cr);
      const int64_t W = c.width;
      for (size_t tk = 0; tk < b.tokens.size(); ++tk) {
        if (!mask[tk]) continue;
        for (int64_t j = 0; j < W; ++j) {
          const double x = cap.capture[tk * size_t(W) + size_t(j)], eps = 1e-5 * (std::fabs(x) + 1.0);
          bool n = std::fabs(x) <= eps;
          for (double e : opts.hist_edges) n = n || std::fabs(x - e) <= eps;
          if (!c.thresholds.empty()) n = n || std::fabs(x - c.thresholds[size_t(l * W + j)]) <= eps;
          near += 2 * n;  // two forwards
        }
      }
    }
    int64_t diff = 0;
    for (size_t i = 0; i < c.over_zero.size(); ++i) diff += std::llabs(c.over_zero[i] - gg.over_zero[i]);
    for (size_t i = 0; i < c.above.size(); ++i) diff += std::llabs(c.above[i] - gg.above[i]);
    for (size_t i = 0; i < c.hist.size(); ++i) diff += std::llabs(c.hist[i] - gg.hist[i]);
    std::vector<float> a(c.sum.begin(), c.sum.end()), bb(gg.sum.begin(), gg.sum.end());
    std::vector<float> a2(c.sum_sq.begin(), c.sum_sq.end()), b2(gg.sum_sq.begin(), gg.sum_sq.end());
    std::vector<float> a3(c.abs_sum.begin(), c.abs_sum.end()), b3(gg.abs_sum.begin(), gg.abs_sum.end());
    const double es = std::max({rel_err(bb, a), rel_err(b2, a2), rel_err(b3, a3), rel_err(gg.seq_means, c.seq_means)});
    std::printf("  site %-4s: count differences %lld (values within rounding of a boundary: %lld), sums %.2e\n",
                site_name(c.site), (long long)diff, (long long)near, es);
    LN_CHECK_MSG(diff <= near, "site %s: %lld count differences, only %lld values near a boundary", site_name(c.site),
                 (long long)diff, (long long)near);
    LN_CHECK_MSG(es < 1e-4, "site %s sums %.3e", site_name(c.site), es);
    LN_CHECK(gg.seq_means.size() == c.seq_means.size());
    total_diff += diff;
    total_near += near;
  }
  std::printf("  %s, all sites: %lld count differences, %lld values within rounding of a boundary\n",
              shape_name(o).c_str(), (long long)total_diff, (long long)total_near);
}

}  // namespace

// Every site on a qwen2-style llama, on Gemma 2 (GELU; the sites o and down record the projections before the
// post-norms) and on Cohere (parallel block).
LN_TEST(gpu_model_statistics_match_cpu) {
  TinyOpts llama;
  llama.bias = true;
  TinyOpts gemma2;
  gemma2.family = TinyOpts::Family::Gemma2;
  gemma2.window = 32;
  TinyOpts cohere;
  cohere.family = TinyOpts::Family::Cohere;
  for (const TinyOpts& o : {llama, gemma2, cohere}) check_statistics(o);
}

LN_TEST(gpu_model_bf16_statistics_close_to_cpu) {
  TinyOpts o;
  o.dtype = DType::BF16;
  Tiny t(o);
  StatsOptions opts;
  opts.sites = {Site::Act, Site::H};
  opts.n_layers = t.cfg.n_layers;
  Batch b = make_batch({64, 64, 64, 64}, o.vocab, 61);
  Model cpu(t.cfg, t.w, 2, Compute::BF16);
  auto g = make_cuda_runtime(t.cfg, t.w, 0, Compute::BF16);
  ActivationStats sc(t.cfg, opts), sg(t.cfg, opts);
  ForwardRequest r;
  r.stats = &sc;
  run(cpu, b, LogitsMode::None, &r);
  r.stats = &sg;
  run(*g, b, LogitsMode::None, &r);
  int64_t diff = 0, total = 0;
  for (const SiteStats& c : sc.sites()) {
    const SiteStats& gg = *sg.find(c.site);
    for (size_t i = 0; i < c.over_zero.size(); ++i) {
      diff += std::llabs(c.over_zero[i] - gg.over_zero[i]);
      total += c.over_zero[i];
    }
  }
  // Not exact: bf16 GEMM inputs that round differently after float32 sums in another order change later values.
  std::printf("  bf16: count(x > 0) differs in %lld of %lld counted positives (%.3f%%)\n", (long long)diff,
              (long long)total, 100.0 * double(diff) / double(std::max<int64_t>(1, total)));
  LN_CHECK(double(diff) <= 0.01 * double(total));
}

// LogitsMode::Greedy on the device: each pick equals pick_next_token over the runtime's own Last logits of the same
// batch (the same products, so the same logits), with a repetition penalty over lists that hold the unpenalised
// picks; 260 sequences of 1-3 tokens (two LM-head chunks of 256 rows); then the f32 picks against the CPU engine's where the top two logits
// are apart by more than rounding, and a prefill + decode step through the device KV cache.
LN_TEST(gpu_model_greedy_picks_match_last_logits_and_cpu) {
  TinyOpts o;
  o.bias = true;
  Tiny t(o);
  const int64_t V = t.cfg.vocab;
  Model cpu(t.cfg, t.w, 2, Compute::F32);
  std::vector<int> lens;
  for (int s = 0; s < 260; ++s) lens.push_back(1 + s % 3);
  const Batch b = make_batch(lens, o.vocab, 71);
  for (Compute mode : {Compute::F32, Compute::BF16}) {
    auto g = make_cuda_runtime(t.cfg, t.w, 0, mode);
    const ForwardResult last = run(*g, b, LogitsMode::Last);
    std::vector<int32_t> ids;
    std::vector<int64_t> offsets = {0};
    for (size_t s = 0; s < lens.size(); ++s) {
      std::vector<float> row(last.logits.begin() + int64_t(s) * V, last.logits.begin() + int64_t(s + 1) * V);
      if (s % 3 != 2) {
        ids.push_back(pick_next_token(row.data(), V, 1.0, nullptr, 0).token);
        ids.push_back(int32_t((s * 7) % size_t(V)));
        ids.push_back(ids[ids.size() - 2]);  // a repeat: counts once
      }
      offsets.push_back(int64_t(ids.size()));
    }
    ForwardRequest pr;
    pr.repetition_penalty = 2.5;
    pr.penalty_ids = ids.data();
    pr.penalty_offsets = offsets.data();
    const ForwardResult got = run(*g, b, LogitsMode::Greedy, &pr);
    LN_CHECK(got.logits.empty() && got.next.size() == lens.size());
    const ForwardResult cpu_got = run(cpu, b, LogitsMode::Greedy, &pr);
    int wrong = 0, compared = 0, moved = 0;
    for (size_t s = 0; s < lens.size() && got.next.size() == lens.size(); ++s) {
      std::vector<float> row(last.logits.begin() + int64_t(s) * V, last.logits.begin() + int64_t(s + 1) * V);
      const int32_t plain = pick_next_token(row.data(), V, 1.0, nullptr, 0).token;
      std::vector<int32_t> mine(ids.begin() + offsets[s], ids.begin() + offsets[s + 1]);
      std::sort(mine.begin(), mine.end());
      mine.erase(std::unique(mine.begin(), mine.end()), mine.end());
      const NextToken want = pick_next_token(row.data(), V, 2.5, mine.data(), int64_t(mine.size()));
      wrong += got.next[s].token != want.token || got.next[s].logit != want.logit;
      moved += want.token != plain;
      if (mode == Compute::F32) {  // against the CPU where the winner is clear of rounding
        std::vector<float> sorted = row;
        for (int32_t id : mine) sorted[size_t(id)] = math::repetition_penalty(sorted[size_t(id)], 2.5);
        std::sort(sorted.begin(), sorted.end(), std::greater<float>());
        if (sorted[0] - sorted[1] > 1e-3f) {
          ++compared;
          wrong += got.next[s].token != cpu_got.next[s].token;
        }
      }
    }
    LN_CHECK_MSG(wrong == 0, "%s: %d picks differ", mode == Compute::F32 ? "f32" : "bf16", wrong);
    LN_CHECK_MSG(moved >= 90, "the penalty moved only %d picks", moved);
    if (mode == Compute::F32) LN_CHECK_MSG(compared >= 200, "only %d picks compared with the CPU", compared);

    // Prefill + one decode step through the device cache: Greedy = the argmax of Last.
    auto cache = g->make_cache(2, 64);
    const Batch pre = make_batch({11, 3}, o.vocab, 5);
    const std::vector<int32_t> slots = {1, 0};
    ForwardRequest cr;
    cr.cache = cache.get();
    cr.cache_slots = slots.data();
    const ForwardResult first = run(*g, pre, LogitsMode::Greedy, &cr);
    LN_CHECK(first.next.size() == 2);
    if (first.next.size() != 2) continue;
    Batch step;
    step.tokens = {first.next[0].token, first.next[1].token};
    step.lens = {1, 1};
    const ForwardResult step_last = run(*g, step, LogitsMode::Last, &cr);
    for (int s = 0; s < 2; ++s) cache->set_length(slots[size_t(s)], cache->length(slots[size_t(s)]) - 1);
    const ForwardResult step_pick = run(*g, step, LogitsMode::Greedy, &cr);
    for (int s = 0; s < 2 && step_pick.next.size() == 2; ++s) {
      std::vector<float> row(step_last.logits.begin() + s * V, step_last.logits.begin() + (s + 1) * V);
      LN_CHECK(step_pick.next[size_t(s)].token == pick_next_token(row.data(), V, 1.0, nullptr, 0).token);
    }
  }
}

// bench_gpu's step clock (cuda/phase_clock.h) on a qwen2-style llama and on Gemma 2 (post-norms: the o / down
// steps close twice when their sites are recorded): with the clock the forward computes the same logits and
// statistics bit for bit; every step of every layer is marked (two norms, one of each projection, attention, the
// fused FFN step) and the steps' times add up to the forward's.
LN_TEST(gpu_model_phase_clock_marks_every_step) {
  using cuda::PhaseClock;
  TinyOpts llama;
  llama.bias = true;
  TinyOpts gemma2;
  gemma2.family = TinyOpts::Family::Gemma2;
  gemma2.window = 32;
  for (const TinyOpts& o : {llama, gemma2}) {
    Tiny t(o);
    const int64_t L = t.cfg.n_layers;
    StatsOptions opts = all_sites(t.cfg, int(L));
    const Batch b = make_batch({33, 70, 5}, o.vocab, 81);
    auto g = make_cuda_runtime(t.cfg, t.w, 0, Compute::BF16);
    auto* cr = dynamic_cast<cuda_model::CudaRuntime*>(g.get());
    LN_CHECK(cr != nullptr);
    if (!cr) return;
    ActivationStats plain_stats(t.cfg, opts), clocked_stats(t.cfg, opts);
    ForwardRequest r;
    r.stats = &plain_stats;
    const ForwardResult plain = run(*g, b, LogitsMode::All, &r);
    PhaseClock clock;
    cr->set_phase_clock(&clock);
    r.stats = &clocked_stats;
    const ForwardResult clocked = run(*g, b, LogitsMode::All, &r);
    const PhaseClock::Totals tot = clock.totals();
    cr->set_phase_clock(nullptr);

    LN_CHECK(clocked.logits == plain.logits);
    for (const SiteStats& s : plain_stats.sites()) {
      const SiteStats& c = *clocked_stats.find(s.site);
      LN_CHECK_MSG(c.over_zero == s.over_zero && c.sum == s.sum && c.sum_sq == s.sum_sq && c.hist == s.hist &&
                       c.above == s.above && c.seq_means == s.seq_means,
                   "site %s: statistics differ with the clock", site_name(s.site));
    }
    // Site o and down are recorded: the o / down steps close before their statistics and again after the
    // residual add (every family: the projection goes to x first when its site is recorded).
    const int64_t want[PhaseClock::kPhases] = {1, 2 * L, L, 2 * L /* bias pre-pass and RoPE: q/k/v recorded */,
                                               L, 2 * L, L, L, 2 * L, -1, 1};
    double sum = 0;
    for (int p = 0; p < PhaseClock::kPhases; ++p) {
      const char* name = PhaseClock::name(PhaseClock::Phase(p));
      if (want[p] >= 0)
        LN_CHECK_MSG(tot.marks[size_t(p)] == want[p], "%s: step %s marked %lld times, expected %lld",
                     shape_name(o).c_str(), name, (long long)tot.marks[size_t(p)], (long long)want[p]);
      LN_CHECK_MSG(tot.ms[size_t(p)] >= 0, "%s: step %s took %.3f ms", shape_name(o).c_str(), name, tot.ms[size_t(p)]);
      sum += tot.ms[size_t(p)];
    }
    // Statistics: q/k/v, o, the FFN sites' reductions, down, resid and the copy to the host, per layer.
    LN_CHECK_MSG(tot.marks[PhaseClock::Stats] == 5 * L, "%s: statistics steps marked %lld times",
                 shape_name(o).c_str(), (long long)tot.marks[PhaseClock::Stats]);
    LN_CHECK_MSG(std::fabs(sum - tot.total_ms) <= 1e-3 * tot.total_ms + 1e-3, "%s: steps sum to %.4f ms of %.4f",
                 shape_name(o).c_str(), sum, tot.total_ms);
    std::printf("  %s: %lld steps in %.2f ms\n", shape_name(o).c_str(),
                (long long)std::accumulate(tot.marks.begin(), tot.marks.end(), int64_t(0)), tot.total_ms);
  }
}

// check_cuda_supported (cuda_runtime.cpp): an index the machine does not have is the caller's input
// (std::invalid_argument, naming the count, the same line as cuda_device_problem); the device the tests run on has
// no problem, so a runtime is made on it.
LN_TEST(gpu_model_refuses_a_device_the_machine_does_not_have) {
  Tiny t(shapes().front());
  LN_CHECK(cuda_device_problem(0).empty());
  const int n = cuda_device_count();
  for (int index : {n, -1}) {
    bool refused = false;
    try {
      make_cuda_runtime(t.cfg, t.w, index, Compute::F32);
    } catch (const std::invalid_argument& e) {
      refused = true;
      LN_CHECK_MSG(std::string(e.what()) == cuda_device_problem(index), "%s\n", e.what());
      LN_CHECK_MSG(std::string(e.what()).find("does not exist") != std::string::npos, "%s\n", e.what());
    }
    LN_CHECK_MSG(refused, "cuda:%d was not refused\n", index);
  }
  LN_CHECK(make_cuda_runtime(t.cfg, t.w, 0, Compute::F32) != nullptr);
}
