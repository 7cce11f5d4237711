// The CUDA runtime on the fixture checkpoints against their recorded references (as test/engine-fixtures.test.ts
// does for the CPU): f32 logits within 1e-4 (relative L2) with the same argmax on every row, bf16 within 5e-2
// (the CPU's bound), and the reference's active counts (act > 0 per layer and neuron) from the GPU statistics,
// differing in at most 0.1% of the counts (values within rounding of zero; their number, |x| <= 1e-5 in the CPU
// engine's captured activations, is printed).
#include <algorithm>
#include <cstdio>

#include "fixture.h"
#include "gpu_test_util.h"
#include "model/stats.h"
#include "runtime/cuda_runtime.h"

using namespace ln;
using namespace lngpu;

namespace {

const char* const kFixtures[] = {"stories260k", "tiny-llama3", "tiny-mistral", "tiny-qwen2", "tiny-qwen2-yarn",
                                 "tiny-qwen3", "tiny-gemma2", "tiny-cohere"};

template <class Engine>
ForwardResult forward_all(Engine& e, const std::vector<int32_t>& ids, ActivationStats* st = nullptr,
                          int capture_layer = -1) {
  const int32_t len = int32_t(ids.size());
  ForwardRequest r;
  r.tokens = ids.data();
  r.n_tokens = len;
  r.seq_lens = &len;
  r.n_seqs = 1;
  r.logits = LogitsMode::All;
  r.stats = st;
  r.capture_site = Site::Act;
  r.capture_layer = capture_layer;
  ForwardResult out;
  e.forward(r, out);
  return out;
}

}  // namespace

LN_TEST(gpu_fixtures_match_references) {
  int loaded = 0;
  for (const char* name : kFixtures) {
    std::string why;
    std::unique_ptr<Fixture> f;
    try {
      f = load_fixture(g_fixtures, name, &why);
    } catch (const std::exception& e) {
      std::printf("  %s: not loaded (%s)\n", name, e.what());
      continue;
    }
    if (!f) {
      std::printf("  %s: not run (%s)\n", name, why.c_str());
      continue;
    }
    ++loaded;
    const ModelConfig& c = f->cfg;
    const int64_t V = c.vocab, T = int64_t(f->input_ids.size());
    auto g32 = make_cuda_runtime(c, f->w, 0, Compute::F32);
    auto g16 = make_cuda_runtime(c, f->w, 0, Compute::BF16);
    StatsOptions so;
    so.sites = {Site::Act};
    so.n_layers = c.n_layers;
    ActivationStats st(c, so);
    const ForwardResult r32 = forward_all(*g32, f->input_ids, &st), r16 = forward_all(*g16, f->input_ids);
    const double e32 = l2_rel(r32.logits, f->ref_logits), e16 = l2_rel(r16.logits, f->ref_logits);
    int64_t flips = 0;
    for (int64_t t = 0; t < T; ++t)
      flips += argmax_row(&r32.logits[size_t(t * V)], V) != argmax_row(&f->ref_logits[size_t(t * V)], V);
    // Active counts: GPU f32 statistics vs the reference; near-zero values from the CPU engine's capture.
    Model cpu(c, f->w, 2, Compute::F32);
    int64_t diff = 0, near = 0;
    const SiteStats& act = *st.find(Site::Act);
    for (int l = 0; l < c.n_layers; ++l) {
      const ForwardResult cap = forward_all(cpu, f->input_ids, nullptr, l);
      for (float x : cap.capture) near += std::fabs(x) <= 1e-5f;
      for (int64_t j = 0; j < c.intermediate; ++j)
        diff += std::llabs(act.over_zero[size_t(l * c.intermediate + j)] -
                           f->ref_active_counts[size_t(l * c.intermediate + j)]);
    }
    std::printf("  %s: f32 %.2e (argmax rows differing: %lld), bf16 %.2e, active counts differing %lld "
                "(values within rounding of 0: %lld)\n",
                name, e32, (long long)flips, e16, (long long)diff, (long long)near);
    LN_CHECK_MSG(e32 < 1e-4, "%s f32 %.3e", name, e32);
    LN_CHECK_MSG(flips == 0, "%s argmax", name);
    LN_CHECK_MSG(e16 < 5e-2 && e16 > 0, "%s bf16 %.3e", name, e16);
    // The reference is float64: a value within ~1e-6 of zero may have either sign in float32 (as the CPU's test:
    // at most 0.1% of the counts).
    int64_t total = 0;
    for (int64_t x : act.over_zero) total += x;
    LN_CHECK_MSG(double(diff) <= std::max(1.0, 1e-3 * double(total)), "%s active counts differ in %lld of %lld", name,
                 (long long)diff, (long long)total);
  }
  if (loaded == 0) throw Skip("no fixture checkpoints under " + g_fixtures + " (--fixtures <dir>)");
}
