// Each CUDA launcher against its CPU twin on odd shapes: the cuBLASLt GEMM (bf16 and f32) against gemm_xwt_ref,
// RMSNorm, RoPE + scatter, the families' row kernels (LayerNorm, q/k norms, interleaved RoPE, logit soft-capping),
// the tensor-core attention and the exact bf16 attention against attend_row on the same
// bf16 inputs (head_dim 32 / 64 / 128 and 8, GQA 1 / 2 / 4, 1-token and tile-straddling sequences, keys read
// from a cache-like offset; sliding windows and soft-capped scores), the fused FFN step's statistics and edits against a CPU loop on the same inputs
// (integer counts equal), the rule statistics against row_statistic, log_softmax_targets, and the next-token pick.
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>

#include <algorithm>

#include "cuda/cublaslt.h"
#include "cuda/recording.h"
#include "cuda/runtime_kernels.h"
#include "cuda/site_kernels.h"
#include "gpu_test_util.h"
#include "kernels/gemm.h"
#include "kernels/math.h"
#include "kernels/ops.h"
#include "model/intervention.h"

using namespace ln;
using namespace lngpu;

LN_TEST(gpu_gemm_matches_reference_on_odd_shapes) {
  cuda::Gemm gemm;
  std::printf("  cuBLASLt %s from %s\n", gemm.library().version_string().c_str(), gemm.library().path.c_str());
  const int64_t shapes[][3] = {{1, 1, 8}, {37, 75, 69}, {5, 300, 64}, {130, 96, 200}, {64, 128, 256}};
  for (const auto& s : shapes) {
    const int64_t M = s[0], N = s[1], K = s[2];
    const std::vector<float> X = randn(size_t(M * K), 1), W = randn(size_t(N * K), 2), Y0 = randn(size_t(M * N), 3);
    for (bool bf16 : {false, true}) {
      for (bool acc : {false, true}) {
        WeightRef w;
        std::vector<uint16_t> wb = to_bf16(W);
        w.data = bf16 ? static_cast<const void*>(wb.data()) : static_cast<const void*>(W.data());
        w.dtype = bf16 ? DType::BF16 : DType::F32;
        w.rows = N;
        w.cols = K;
        std::vector<float> want = Y0;
        gemm_xwt_ref(M, X.data(), K, w, want.data(), N, bf16 ? Compute::BF16 : Compute::F32, acc);
        Dev<float> y(Y0);
        if (bf16) {
          Dev<uint16_t> xd(to_bf16(X)), wd(wb);
          gemm.run(M, N, K, xd.get(), K, wd.get(), K, DType::BF16, y.get(), N, acc, nullptr);
        } else {
          Dev<float> xd(X), wd(W);
          gemm.run(M, N, K, xd.get(), K, wd.get(), K, DType::F32, y.get(), N, acc, nullptr);
        }
        const double e = rel_err(y.download(), want);
        LN_CHECK_MSG(e < 2e-6 * std::sqrt(double(K)), "M=%lld N=%lld K=%lld bf16=%d acc=%d: %.3e", (long long)M,
                     (long long)N, (long long)K, int(bf16), int(acc), e);
      }
    }
  }
  std::printf("  shapes cuBLASLt had no algorithm for (run on the simple kernel): %lld\n",
              (long long)gemm.fallback_shapes());
}

LN_TEST(gpu_rmsnorm_and_rope_match_cpu) {
  const int64_t M = 7, n = 96;
  const std::vector<float> x = randn(size_t(M * n), 4), w = randn(size_t(n), 5);
  std::vector<float> want(static_cast<size_t>(M * n));
  for (int64_t i = 0; i < M; ++i) rmsnorm(&x[size_t(i * n)], w.data(), &want[size_t(i * n)], n, 1e-5f);
  Dev<float> xd(x), wd(w), y(static_cast<size_t>(M * n));
  Dev<uint16_t> yb(static_cast<size_t>(M * n));
  const std::vector<int64_t> rows = {6, 0, 3};
  Dev<int64_t> rd(rows);
  cuda::rmsnorm_rows_ex(M, xd.get(), n, nullptr, wd.get(), y.get(), false, n, n, 1e-5f, nullptr);
  cuda::rmsnorm_rows_ex(3, xd.get(), n, rd.get(), wd.get(), yb.get(), true, n, n, 1e-5f, nullptr);
  LN_CHECK(rel_err(y.download(), want) < 1e-6);
  const std::vector<float> gathered = from_bf16(yb.download());
  for (size_t r = 0; r < rows.size(); ++r)
    for (int64_t j = 0; j < n; ++j)
      LN_CHECK(gathered[r * size_t(n) + size_t(j)] == round_bf16(want[size_t(rows[r] * n + j)]) ||
               std::fabs(gathered[r * size_t(n) + size_t(j)] - want[size_t(rows[r] * n + j)]) <=
                   1e-2f * std::fabs(want[size_t(rows[r] * n + j)]));

  // RoPE of q and k heads and the scatter of k / v rows to kv_row (bf16 and f32 outputs).
  const int nh = 4, nkv = 2, hd = 16, half = hd / 2;
  const int64_t T = 5, qd = nh * hd, kvd = nkv * hd, ld = qd + 2 * kvd;
  const std::vector<float> qkv = randn(size_t(T * ld), 6);
  const std::vector<int32_t> pos = {0, 1, 7, 3, 30};
  const std::vector<int64_t> kv_row = {4, 3, 2, 1, 0};
  std::vector<double> invd(half);
  rope_inv_freq(hd, 10000.0, RopeScaling{}, invd.data());
  const std::vector<float> inv(invd.begin(), invd.end());
  std::vector<float> cs(size_t(32 * half)), sn(size_t(32 * half));
  rope_tables(inv.data(), half, 0, 32, cs.data(), sn.data());
  Dev<float> qkvd(qkv), csd(cs), snd(sn), qo(static_cast<size_t>(T * qd)), ko(static_cast<size_t>(T * kvd)), vo(static_cast<size_t>(T * kvd));
  Dev<int32_t> posd(pos);
  Dev<int64_t> kvr(kv_row);
  cuda::rope_qkv(T, qkvd.get(), ld, nullptr, false, nh, nkv, hd, posd.get(), csd.get(), snd.get(), qo.get(), qd, ko.get(),
                 vo.get(), kvd, kvr.get(), false, nullptr);
  std::vector<float> q(static_cast<size_t>(T * qd)), k(static_cast<size_t>(T * kvd)), v(static_cast<size_t>(T * kvd));
  for (int64_t t = 0; t < T; ++t) {
    std::vector<float> row(qkv.begin() + t * ld, qkv.begin() + (t + 1) * ld);
    rope_apply(row.data(), nh, hd, &cs[size_t(pos[size_t(t)] * half)], &sn[size_t(pos[size_t(t)] * half)]);
    rope_apply(row.data() + qd, nkv, hd, &cs[size_t(pos[size_t(t)] * half)], &sn[size_t(pos[size_t(t)] * half)]);
    std::copy(row.begin(), row.begin() + qd, q.begin() + t * qd);
    std::copy(row.begin() + qd, row.begin() + qd + kvd, k.begin() + kv_row[size_t(t)] * kvd);
    std::copy(row.begin() + qd + kvd, row.end(), v.begin() + kv_row[size_t(t)] * kvd);
  }
  LN_CHECK(rel_err(qo.download(), q) < 1e-6);
  LN_CHECK(rel_err(ko.download(), k) < 1e-6);
  LN_CHECK(rel_err(vo.download(), v) == 0);

  // The fused post-projection step (bias, bf16 rounding) and bf16 outputs: exactly the separate passes.
  const std::vector<float> bias = randn(size_t(ld), 14);
  Dev<float> bd(bias), qkv2(qkv);
  Dev<uint16_t> qb1(static_cast<size_t>(T * qd)), kb1(static_cast<size_t>(T * kvd)), vb1(static_cast<size_t>(T * kvd)),
      qb2(static_cast<size_t>(T * qd)), kb2(static_cast<size_t>(T * kvd)), vb2(static_cast<size_t>(T * kvd));
  cuda::rope_qkv(T, qkvd.get(), ld, bd.get(), true, nh, nkv, hd, posd.get(), csd.get(), snd.get(), qb1.get(), qd,
                 kb1.get(), vb1.get(), kvd, kvr.get(), true, nullptr);
  cuda::bias_round_rows(T, ld, qkv2.get(), ld, bd.get(), true, nullptr);
  cuda::rope_qkv(T, qkv2.get(), ld, nullptr, false, nh, nkv, hd, posd.get(), csd.get(), snd.get(), qb2.get(), qd,
                 kb2.get(), vb2.get(), kvd, kvr.get(), true, nullptr);
  LN_CHECK(qb1.download() == qb2.download());
  LN_CHECK(kb1.download() == kb2.download());
  LN_CHECK(vb1.download() == vb2.download());
}

// The family row kernels against their CPU twins (ops.h): Cohere's LayerNorm (float32 and bf16 outputs, gathered
// rows, in place), Qwen3's per-head q/k RMSNorm, Cohere's interleaved RoPE, the final logit scale / soft-cap, the
// embedding scale and YaRN's attention factor on the RoPE tables.
LN_TEST(gpu_family_row_kernels_match_cpu) {
  const int64_t M = 5, n = 200;
  const std::vector<float> x = randn(size_t(M * n), 21, 2.f), w = randn(size_t(n), 22);
  std::vector<float> want(static_cast<size_t>(M * n));
  for (int64_t i = 0; i < M; ++i) layernorm(&x[size_t(i * n)], w.data(), &want[size_t(i * n)], n, 1e-5f);
  Dev<float> xd(x), wd(w), y(static_cast<size_t>(M * n));
  Dev<uint16_t> yb(static_cast<size_t>(M * n));
  const std::vector<int64_t> rows = {4, 1};
  Dev<int64_t> rd(rows);
  cuda::norm_rows_ex(M, xd.get(), n, nullptr, wd.get(), y.get(), false, n, n, 1e-5f, true, nullptr);
  cuda::norm_rows_ex(2, xd.get(), n, rd.get(), wd.get(), yb.get(), true, n, n, 1e-5f, true, nullptr);
  const double e_ln = rel_err(y.download(), want);
  LN_CHECK_MSG(e_ln < 1e-6, "layernorm %.3e", e_ln);
  const std::vector<float> gathered = from_bf16(yb.download());
  for (size_t r = 0; r < rows.size(); ++r)
    for (int64_t j = 0; j < n; ++j) {
      const float wv = want[size_t(rows[r] * n + j)], got = gathered[r * size_t(n) + size_t(j)];
      LN_CHECK(got == round_bf16(wv) || std::fabs(got - wv) <= 1e-2f * std::fabs(wv));
    }
  cuda::norm_rows_ex(M, xd.get(), n, nullptr, wd.get(), xd.get(), false, n, n, 1e-5f, true, nullptr);  // in place
  LN_CHECK(rel_err(xd.download(), y.download()) == 0);

  // Qwen3's q/k norms over each head of the q and k parts of qkv rows (v untouched), then Cohere's RoPE.
  const int nh = 6, nkv = 2, hd = 16, half = hd / 2;
  const int64_t T = 7, qd = nh * hd, kvd = nkv * hd, ld = qd + 2 * kvd + 3;  // a padded row stride
  const std::vector<float> qkv = randn(size_t(T * ld), 23, 3.f), qn = randn(size_t(hd), 24), kn = randn(size_t(hd), 25);
  std::vector<float> normed = qkv;
  for (int64_t t = 0; t < T; ++t) {
    float* r = &normed[size_t(t * ld)];
    for (int h = 0; h < nh + nkv; ++h) rmsnorm(r + h * hd, h < nh ? qn.data() : kn.data(), r + h * hd, hd, 1e-6f);
  }
  Dev<float> qkvd(qkv), qnd(qn), knd(kn);
  cuda::head_rmsnorm(T, qkvd.get(), ld, nh, nkv, hd, qnd.get(), knd.get(), 1e-6f, nullptr);
  const std::vector<float> normed_gpu = qkvd.download();
  const double e_qk = rel_err(normed_gpu, normed);
  LN_CHECK_MSG(e_qk < 1e-6, "q/k norms %.3e", e_qk);
  for (int64_t t = 0; t < T; ++t)  // v and the padding exactly as they were
    for (int64_t j = qd + kvd; j < ld; ++j) LN_CHECK(normed_gpu[size_t(t * ld + j)] == qkv[size_t(t * ld + j)]);

  std::vector<double> invd(half);
  rope_inv_freq(hd, 10000.0, RopeScaling{}, invd.data());
  const std::vector<float> inv(invd.begin(), invd.end());
  const float factor = 1.1386294f;  // YaRN's 0.1 ln(4) + 1
  std::vector<float> cs(size_t(40 * half)), sn(size_t(40 * half));
  rope_tables(inv.data(), half, 0, 40, cs.data(), sn.data());
  for (size_t i = 0; i < cs.size(); ++i) {
    cs[i] *= factor;
    sn[i] *= factor;
  }
  Dev<float> invg(inv), csd(size_t(40 * half)), snd(size_t(40 * half));
  cuda::rope_tables(invg.get(), half, 0, 40, csd.get(), snd.get(), nullptr, factor);
  // The device's cos / sin (double) may differ from glibc's by an ulp before the float rounding.
  LN_CHECK(rel_err(csd.download(), cs) < 1e-6 && rel_err(snd.download(), sn) < 1e-6);
  const std::vector<int32_t> pos = {0, 3, 39, 1, 17, 2, 8};
  const std::vector<int64_t> kv_row = {6, 5, 4, 3, 2, 1, 0};
  Dev<int32_t> posd(pos);
  Dev<int64_t> kvr(kv_row);
  Dev<float> qo(static_cast<size_t>(T * qd)), ko(static_cast<size_t>(T * kvd)), vo(static_cast<size_t>(T * kvd));
  cuda::rope_qkv(T, qkvd.get(), ld, nullptr, false, nh, nkv, hd, posd.get(), csd.get(), snd.get(), qo.get(), qd, ko.get(),
                 vo.get(), kvd, kvr.get(), false, nullptr, /*interleaved=*/true);
  std::vector<float> q(static_cast<size_t>(T * qd)), k(static_cast<size_t>(T * kvd));
  for (int64_t t = 0; t < T; ++t) {
    std::vector<float> row(normed.begin() + t * ld, normed.begin() + (t + 1) * ld);
    const float* c = &cs[size_t(pos[size_t(t)] * half)];
    const float* s2 = &sn[size_t(pos[size_t(t)] * half)];
    rope_apply_interleaved(row.data(), nh, hd, c, s2);
    rope_apply_interleaved(row.data() + qd, nkv, hd, c, s2);
    std::copy(row.begin(), row.begin() + qd, q.begin() + t * qd);
    std::copy(row.begin() + qd, row.begin() + qd + kvd, k.begin() + kv_row[size_t(t)] * kvd);
  }
  LN_CHECK_MSG(rel_err(qo.download(), q) < 1e-6, "interleaved rope q %.3e", rel_err(qo.download(), q));
  LN_CHECK_MSG(rel_err(ko.download(), k) < 1e-6, "interleaved rope k %.3e", rel_err(ko.download(), k));

  // Final logits: cap * tanh(x * scale / cap) on rows with a stride; the embedding scale.
  const int64_t R = 3, V = 77, ldl = 80;
  const std::vector<float> lg = randn(size_t(R * ldl), 26, 40.f);
  std::vector<float> lw = lg;
  for (int64_t r = 0; r < R; ++r)
    for (int64_t j = 0; j < V; ++j) lw[size_t(r * ldl + j)] = math::softcap(lg[size_t(r * ldl + j)] * 0.125f, 30.f);
  Dev<float> lgd(lg);
  cuda::finish_logits(R, V, lgd.get(), ldl, 0.125f, 30.f, nullptr);
  LN_CHECK(rel_err(lgd.download(), lw) < 1e-6);  // tanh (double) within an ulp of glibc's
  const std::vector<float> table = randn(size_t(11 * 9), 27);
  const std::vector<int32_t> toks = {3, 10, 0};
  Dev<float> td(table), ed(size_t(3 * 9));
  Dev<int32_t> tokd(toks);
  cuda::embed_rows(td.get(), DType::F32, 11, 9, tokd.get(), 3, ed.get(), 9, nullptr, 8.f);
  const std::vector<float> emb = ed.download();
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 9; ++j) LN_CHECK(emb[size_t(i * 9 + j)] == table[size_t(toks[size_t(i)] * 9 + j)] * 8.f);
  std::printf("  layernorm %.2e, q/k norms %.2e (relative L2 against the CPU)\n", e_ln, e_qk);
}

namespace {

// CPU reference of causal attention (model/attention.cpp's row path) for rows whose keys are key rows [key_row0,
// key_row0 + n_keys) of k / v; with a window, only the last `window` of them; with cap > 0, capped scores.
std::vector<float> attention_ref(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
                                 int nh, int nkv, int hd, const std::vector<int64_t>& key_row0,
                                 const std::vector<int32_t>& n_keys, float scale, int window, float cap) {
  const int64_t T = int64_t(key_row0.size()), qd = int64_t(nh) * hd, kvd = int64_t(nkv) * hd;
  std::vector<float> out(static_cast<size_t>(T * qd)), p(4096);
  for (int64_t t = 0; t < T; ++t)
    for (int h = 0; h < nh; ++h) {
      const int kvh = h / (nh / nkv), nk = n_keys[size_t(t)], skip = window > 0 ? std::max(0, nk - window) : 0;
      const float* kr = &k[size_t((key_row0[size_t(t)] + skip) * kvd + kvh * hd)];
      const float* vr = &v[size_t((key_row0[size_t(t)] + skip) * kvd + kvh * hd)];
      if (cap > 0)
        attend_row_capped(&q[size_t(t * qd + h * hd)], kr, vr, kvd, nk - skip, hd, scale, cap, p.data(),
                          &out[size_t(t * qd + h * hd)]);
      else
        attend_row(&q[size_t(t * qd + h * hd)], kr, vr, kvd, nk - skip, hd, scale, p.data(),
                   &out[size_t(t * qd + h * hd)]);
    }
  return out;
}

}  // namespace

// Each attention kernel against the CPU's rows, also with a sliding window (cutting through the 64-row tiles and
// the cached positions) and soft-capped scores (Gemma 2).
LN_TEST(gpu_attention_matches_cpu) {
  struct Case {
    int hd, nh, nkv, window;
    float cap;
  };
  const Case cases[] = {{32, 4, 4, 0, 0.f},   {64, 4, 2, 0, 0.f},   {128, 8, 2, 0, 0.f},  {8, 6, 3, 0, 0.f},
                        {128, 2, 1, 0, 0.f},  {64, 4, 2, 40, 0.f},  {32, 4, 4, 0, 4.f},   {128, 8, 2, 70, 30.f},
                        {8, 6, 3, 5, 2.f},    {32, 2, 1, 1, 0.f},   {256, 8, 4, 0, 0.f},  {256, 4, 2, 100, 50.f},
                        {256, 2, 1, 0, 0.f}};
  // Packed sequences (1-token, tile-straddling), the last one continuing a "cache" of 50 positions whose keys
  // start at row 1000 of k / v.
  const std::vector<int> lens = {1, 63, 64, 65, 130, 7};
  const int cached = 50;
  for (const Case& c : cases) {
    const int64_t qd = int64_t(c.nh) * c.hd, kvd = int64_t(c.nkv) * c.hd;
    int64_t T = 0;
    for (int l : lens) T += l;
    const int64_t key_rows = 1000 + cached + lens.back();
    const std::vector<uint16_t> qb = to_bf16(randn(size_t(T * qd), 7)), kb = to_bf16(randn(size_t(key_rows * kvd), 8)),
                                vb = to_bf16(randn(size_t(key_rows * kvd), 9));
    std::vector<int64_t> key_row0;
    std::vector<int32_t> n_keys;
    std::vector<cuda::AttnTile> tiles;
    int64_t row = 0;
    for (size_t s = 0; s < lens.size(); ++s) {
      const bool last = s + 1 == lens.size();
      const int64_t kr0 = last ? 1000 : row;  // keys of the batch's own rows (no cache) or the cache rows
      const int pos0 = last ? cached : 0;
      for (int i = 0; i < lens[s]; ++i) {
        key_row0.push_back(kr0);
        n_keys.push_back(pos0 + i + 1);
      }
      for (int q0 = 0; q0 < lens[s]; q0 += cuda::kFlashRows)
        tiles.push_back({row + q0, kr0, std::min(cuda::kFlashRows, lens[s] - q0), pos0 + q0 + 1});
      row += lens[s];
    }
    // The batch's own keys are rows [0, T) of k / v (rows of the last sequence are read from 1000 + ...).
    const float scale = c.cap > 0 ? 0.3f : float(1.0 / std::sqrt(double(c.hd)));  // query_scale-like when capped
    const std::vector<float> want = attention_ref(from_bf16(qb), from_bf16(kb), from_bf16(vb), c.nh, c.nkv, c.hd,
                                                  key_row0, n_keys, scale, c.window, c.cap);
    Dev<uint16_t> qd_(qb), kd(kb), vd(vb), out(static_cast<size_t>(T * qd));
    Dev<int64_t> kr(key_row0);
    Dev<int32_t> nk(n_keys);
    Dev<cuda::AttnTile> td(tiles);
    cuda::attention_causal_bf16(T, c.nh, c.nkv, c.hd, qd_.get(), qd, kd.get(), vd.get(), kvd, kr.get(), nk.get(), scale,
                                out.get(), qd, nullptr, c.window, c.cap);
    const double e_exact = rel_err(from_bf16(out.download()), want);
    LN_CHECK_MSG(e_exact < 8e-3, "hd %d exact bf16 attention %.3e", c.hd, e_exact);  // output rounding only
    double e_flash = -1;
    if (cuda::flash_attention_supported(c.hd)) {
      Dev<uint16_t> out2(static_cast<size_t>(T * qd));
      Dev<float> lse(static_cast<size_t>(T * c.nh));
      cuda::flash_attention_bf16(td.get(), int64_t(tiles.size()), c.nh, c.nkv, c.hd, qd_.get(), qd, kd.get(), vd.get(),
                                 kvd, scale, out2.get(), qd, lse.get(), nullptr, c.window, c.cap);
      e_flash = rel_err(from_bf16(out2.download()), want);
      LN_CHECK_MSG(e_flash < 2e-2, "hd %d flash attention %.3e", c.hd, e_flash);
      // Its log-sum-exp (what the trainer's backward recomputes P from) against float64 on the same bf16 inputs.
      const std::vector<float> got = lse.download(), qf = from_bf16(qb), kf = from_bf16(kb);
      double worst = 0;
      for (int64_t t = 0; t < T; ++t)
        for (int h = 0; h < c.nh; ++h) {
          const float* qr = &qf[size_t(t * qd + h * c.hd)];
          const int nkt = n_keys[size_t(t)], skip = c.window > 0 ? std::max(0, nkt - c.window) : 0;
          const float* kb0 = &kf[size_t((key_row0[size_t(t)] + skip) * kvd + (h / (c.nh / c.nkv)) * c.hd)];
          std::vector<double> sc(static_cast<size_t>(nkt - skip));
          double m = -INFINITY, sum = 0;
          for (size_t j = 0; j < sc.size(); ++j) {
            double dot = 0;
            for (int d = 0; d < c.hd; ++d) dot += double(qr[d]) * double(kb0[int64_t(j) * kvd + d]);
            sc[j] = dot * double(scale);
            if (c.cap > 0) sc[j] = double(c.cap) * std::tanh(sc[j] / double(c.cap));
            m = std::max(m, sc[j]);
          }
          for (double x : sc) sum += std::exp(x - m);
          worst = std::max(worst, std::fabs(double(got[size_t(t * c.nh + h)]) - (m + std::log(sum))));
        }
      LN_CHECK_MSG(worst < 1e-4, "hd %d flash attention lse max abs err %.3e", c.hd, worst);
      std::printf("  hd %3d: tensor-core lse max abs err %.2e\n", c.hd, worst);
    }
    // float32 exact kernel on the same (bf16-valued) inputs.
    Dev<float> qf(from_bf16(qb)), kf(from_bf16(kb)), vf(from_bf16(vb)), of(static_cast<size_t>(T * qd));
    cuda::attention_causal(T, c.nh, c.nkv, c.hd, qf.get(), qd, kf.get(), vf.get(), kvd, kr.get(), nk.get(), scale, of.get(),
                           qd, nullptr, c.window, c.cap);
    const double e32 = rel_err(of.download(), want);
    LN_CHECK_MSG(e32 < 1e-5, "hd %d f32 attention %.3e", c.hd, e32);
    std::printf("  hd %3d heads %d/%d window %d cap %g: f32 %.2e, exact bf16 %.2e, tensor-core %.2e\n", c.hd, c.nh,
                c.nkv, c.window, double(c.cap), e32, e_exact, e_flash);
  }
}

namespace {

// The edits of one neuron at (layer 0, site), applied to its value (model/intervention.h apply_edits on a
// one-element segment).
void apply_neuron(const Intervention& iv, Site site, int64_t j, float* x, uint8_t cls) {
  const Edit* b = std::lower_bound(iv.begin(0, site), iv.end(0, site), j,
                                   [](const Edit& e, int64_t n) { return e.neuron < n; });
  const Edit* e = b;
  while (e != iv.end(0, site) && e->neuron == j) ++e;
  apply_edits(b, e, x, j, cls, nullptr);
}

// The shape an Intervention checks its edits against (one KV head; vocab and context unused).
ModelConfig edit_config(int32_t hidden, int32_t intermediate, int32_t layers, int32_t heads, int32_t head_dim) {
  ModelConfig cfg;
  cfg.hidden = hidden;
  cfg.intermediate = intermediate;
  cfg.n_layers = layers;
  cfg.n_heads = heads;
  cfg.n_kv_heads = 1;
  cfg.head_dim = head_dim;
  cfg.vocab = 4;
  cfg.max_positions = 8;
  return cfg;
}

}  // namespace

// The edits of a projection site (q here: its own width, no rules) on a block with a row stride wider than the
// site, as model/edit_pass.cpp applies them: units in order, edits of one unit in order, position classes.
LN_TEST(gpu_edit_columns_equal_cpu) {
  const ModelConfig cfg = edit_config(16, 24, 2, 5, 40);  // q: 5 heads of 40 = 200 units, more than one thread block
  const int64_t W = 200, ld = 248, T = 150;
  std::vector<EditSpec> specs;
  for (int i = 0; i < 90; ++i) {
    EditSpec e;
    e.layer = i % 2;
    e.site = Site::Q;
    e.neuron = (i * 37) % int(W);  // several edits per unit, in both layers
    e.op = InterveneOp(i % 3);
    e.value = 0.25f * float(i % 7) - 0.5f;
    e.when = i % 4 == 0 ? uint8_t(1) : uint8_t(0xff);
    specs.push_back(e);
  }
  const Intervention iv(cfg, specs, {});
  const Edit* base = iv.begin(0, Site(0));
  const std::vector<cuda::DevEdit> dev_edits(reinterpret_cast<const cuda::DevEdit*>(base),
                                             reinterpret_cast<const cuda::DevEdit*>(base) + iv.n_edits());
  const std::vector<float> x = randn(size_t(T * ld), 21, 1.f);
  std::vector<uint8_t> cls(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) cls[size_t(t)] = t % 3 ? 2 : 1;
  Dev<cuda::DevEdit> edd(dev_edits);
  Dev<uint8_t> cd(cls);
  for (int l = 0; l < 2; ++l) {
    std::vector<float> want = x;
    for (int64_t t = 0; t < T; ++t)
      apply_edits(iv.begin(l, Site::Q), iv.end(l, Site::Q), want.data() + t * ld, 0, cls[size_t(t)], nullptr);
    LN_CHECK(want != x);
    Dev<float> xd(x);
    cuda::edit_columns(T, xd.get(), ld, edd.get(), iv.begin(l, Site::Q) - base, iv.end(l, Site::Q) - base, cd.get(),
                       nullptr);
    LN_CHECK_MSG(xd.download() == want, "layer %d: the edited block differs from the CPU's", l);
  }
}

LN_TEST(gpu_ffn_fused_statistics_equal_cpu_counts) {
  const int64_t I = 300, T0 = 200;
  const std::vector<int> lens = {1, 130, 69};
  const std::vector<float> gu = randn(size_t(T0 * 2 * I), 10, 1.5f);
  std::vector<uint8_t> mask(static_cast<size_t>(T0), 1), cls(static_cast<size_t>(T0));
  for (int64_t t = 0; t < T0; t += 7) mask[size_t(t)] = 0;
  for (int64_t t = 0; t < T0; ++t) cls[size_t(t)] = t % 2 ? 1 : 2;
  const std::vector<double> edges = {-1, -0.25, 0, 0.25, 1};
  const int64_t B = 4;
  const std::vector<float> thr = randn(size_t(I), 11, 0.3f);
  // Edits as the engine holds them (sorted by neuron per site).
  std::vector<EditSpec> specs;
  for (int i = 0; i < 30; ++i) {
    EditSpec e;
    e.layer = 0;
    e.site = Site(i % 4);  // act, gate, h, up
    e.neuron = (i * 41) % int(I);
    e.op = InterveneOp(i % 3);
    e.value = 0.2f * float(i % 4) - 0.3f;
    e.when = i % 5 == 0 ? uint8_t(2) : uint8_t(0xff);
    specs.push_back(e);
  }
  const ModelConfig cfg = edit_config(8, int32_t(I), 1, 1, 8);
  const Intervention iv(cfg, specs, {});
  const Edit* base = iv.begin(0, Site(0));
  const std::vector<cuda::DevEdit> dev_edits(reinterpret_cast<const cuda::DevEdit*>(base),
                                             reinterpret_cast<const cuda::DevEdit*>(base) + iv.n_edits());

  // CPU twin: the ffn.cpp order, with math::silu.
  std::vector<int64_t> over[4], above(static_cast<size_t>(I)), hist(static_cast<size_t>(I * B));
  std::vector<double> sum[4];
  for (int s = 0; s < 4; ++s) {
    over[s].assign(size_t(I), 0);
    sum[s].assign(size_t(I), 0);
  }
  std::vector<float> h_want(size_t(T0 * I));
  const Site order[4] = {Site::Gate, Site::Act, Site::Up, Site::H};
  for (int64_t t = 0; t < T0; ++t)
    for (int64_t j = 0; j < I; ++j) {
      float x[4];
      float g = gu[size_t(t * 2 * I + j)];
      float u = gu[size_t(t * 2 * I + I + j)];
      apply_neuron(iv, order[0], j, &g, cls[size_t(t)]);
      x[0] = g;
      float a = math::silu(g);
      apply_neuron(iv, order[1], j, &a, cls[size_t(t)]);
      x[1] = a;
      apply_neuron(iv, order[2], j, &u, cls[size_t(t)]);
      x[2] = u;
      float h = a * u;
      apply_neuron(iv, order[3], j, &h, cls[size_t(t)]);
      x[3] = h;
      h_want[size_t(t * I + j)] = h;
      if (!mask[size_t(t)]) continue;
      for (int s = 0; s < 4; ++s) {
        over[s][size_t(j)] += x[s] > 0.f;
        sum[s][size_t(j)] += double(x[s]);
      }
      above[size_t(j)] += x[3] > thr[size_t(j)];
      ++hist[size_t(j * B + math::histogram_bin(double(x[3]), edges.data(), B))];
    }

  std::vector<SequencePlan> seqs;
  int64_t row = 0;
  for (size_t s = 0; s < lens.size(); ++s) {
    seqs.push_back({row, lens[s], 0, -1});
    row += lens[s];
  }
  std::vector<cuda::StatsChunk> chunks;
  cuda::plan_stats_chunks(seqs, cuda::kStatsChunkTokens, chunks);
  Dev<float> gud(gu), thd(thr), hout(static_cast<size_t>(T0 * I));
  Dev<uint8_t> md(mask), cd(cls);
  Dev<double> ed(edges);
  Dev<cuda::StatsChunk> chd(chunks);
  Dev<cuda::DevEdit> edd(dev_edits);
  Dev<double> part[4];
  Dev<unsigned long long> overd[4], aboved(static_cast<size_t>(I)), histd(static_cast<size_t>(I * B));
  Dev<double> sums[4];
  cuda::SiteTarget targets[4];
  for (int s = 0; s < 4; ++s) {
    part[s].zeros(chunks.size() * 3 * size_t(I));
    overd[s].zeros(size_t(I));
    sums[s].zeros(size_t(3 * I));
    targets[s].part = part[s].get();
    targets[s].over_zero = overd[s].get();
  }
  targets[3].thresholds = thd.get();
  targets[3].above = aboved.get();
  targets[3].hist = histd.get();
  cuda::StatsBatch batch;
  batch.chunks = chd.get();
  batch.n_chunks = int32_t(chunks.size());
  batch.mask = md.get();
  batch.edges = ed.get();
  batch.bins = int32_t(B);
  cuda::LayerEdits le;
  le.edits = edd.get();
  for (int s = 0; s < 4; ++s) {
    le.begin[s] = iv.begin(0, order[s]) - base;
    le.end[s] = iv.end(0, order[s]) - base;
  }
  le.cls = cd.get();
  Dev<float> gu_kept(gu.size());  // the training forward's copy of gate and up, written by the same pass
  cuda::ffn_fused(T0, I, gud.get(), 2 * I, hout.get(), false, I, le, batch, targets, nullptr, false, gu_kept.get());
  LN_CHECK(gu_kept.download() == gu);  // before the gate edits: what the GEMM gave
  for (int s = 0; s < 4; ++s)
    cuda::stats_reduce(I, batch, part[s].get(), sums[s].get(), sums[s].get() + I, sums[s].get() + 2 * I, nullptr, 0,
                       nullptr, nullptr, nullptr);
  const double eh = rel_err(hout.download(), h_want);
  LN_CHECK_MSG(eh < 1e-6, "h %.3e", eh);
  int64_t count_diff = 0;
  for (int s = 0; s < 4; ++s) {
    const auto o = overd[s].download();
    const auto sm = sums[s].download();
    for (int64_t j = 0; j < I; ++j) {
      count_diff += std::llabs(int64_t(o[size_t(j)]) - over[s][size_t(j)]);
      LN_CHECK(std::fabs(sm[size_t(j)] - sum[s][size_t(j)]) <= 1e-5 * (1 + std::fabs(sum[s][size_t(j)])));
    }
  }
  const auto ab = aboved.download();
  const auto hi = histd.download();
  int64_t thr_diff = 0;
  for (int64_t j = 0; j < I; ++j) thr_diff += std::llabs(int64_t(ab[size_t(j)]) - above[size_t(j)]);
  for (int64_t i = 0; i < I * B; ++i) thr_diff += std::llabs(int64_t(hi[size_t(i)]) - hist[size_t(i)]);
  std::printf("  count differences: > 0: %lld, thresholds + histogram of h: %lld (silu's exp may differ by an ulp)\n",
              (long long)count_diff, (long long)thr_diff);
  LN_CHECK(count_diff == 0);
  LN_CHECK(thr_diff <= 2);

  // The bf16 mode's pass without statistics or edits (the training forward's): h and the copy of gate and up
  // rounded to bf16, the copy exactly.
  Dev<uint16_t> h16(size_t(T0 * I)), gu16(gu.size());
  const cuda::SiteTarget none[4];
  cuda::ffn_fused(T0, I, gud.get(), 2 * I, h16.get(), true, I, cuda::LayerEdits{}, batch, none, nullptr, false,
                  gu16.get());
  LN_CHECK(gu16.download() == to_bf16(gu));
  std::vector<float> h_plain(size_t(T0 * I));
  for (int64_t t = 0; t < T0; ++t)
    for (int64_t j = 0; j < I; ++j)
      h_plain[size_t(t * I + j)] = math::silu(gu[size_t(t * 2 * I + j)]) * gu[size_t(t * 2 * I + I + j)];
  LN_CHECK_MSG(rel_err(from_bf16(h16.download()), h_plain) < 4e-3, "bf16 h %.3e",
               rel_err(from_bf16(h16.download()), h_plain));
}

LN_TEST(gpu_rule_statistics_match_row_statistic) {
  int64_t smem = 0;
  {
    const cuda::DeviceInfo d = cuda::device_info(0);
    smem = d.smem_optin_bytes;
  }
  for (int64_t I : {int64_t(37), int64_t(300), int64_t(14336)}) {
    const int64_t T = 3;
    const std::vector<float> gu = randn(size_t(T * 2 * I), 12);
    Dev<float> gud(gu), out(static_cast<size_t>(T));
    for (int site = 0; site < 3; ++site)
      for (int stat = 0; stat < kRowStatCount; ++stat) {
        cuda::rule_values(T, I, gud.get(), 2 * I, site, stat, 1.5f, 90.f, out.get(), 1, smem, nullptr);
        const auto got = out.download();
        for (int64_t t = 0; t < T; ++t) {
          std::vector<float> row(static_cast<size_t>(I)), work(static_cast<size_t>(I));
          for (int64_t j = 0; j < I; ++j) {
            const float g = gu[size_t(t * 2 * I + j)];
            row[size_t(j)] = site == 0 ? g : (site == 2 ? math::silu(g) * gu[size_t(t * 2 * I + I + j)] : math::silu(g));
          }
          const float want = 1.5f * row_statistic(row.data(), I, RowStat(stat), 90.f, work.data());
          LN_CHECK_MSG(std::fabs(got[size_t(t)] - want) <= 1e-5f * (1.f + std::fabs(want)),
                       "I=%lld site %d stat %d: %g vs %g", (long long)I, site, stat, got[size_t(t)], want);
        }
      }
  }
}

LN_TEST(gpu_log_softmax_targets_match_cpu) {
  const int64_t M = 9, V = 1000;
  const std::vector<float> x = randn(size_t(M * V), 13, 3.f);
  std::vector<int32_t> tg(static_cast<size_t>(M));
  for (int64_t i = 0; i < M; ++i) tg[size_t(i)] = int32_t((i * 131) % V);
  Dev<float> xd(x), out(static_cast<size_t>(M));
  Dev<int32_t> td(tg);
  cuda::log_softmax_targets(M, xd.get(), V, V, td.get(), out.get(), nullptr);
  const auto got = out.download();
  for (int64_t i = 0; i < M; ++i) {
    const float want = float(double(x[size_t(i * V + tg[size_t(i)])]) - logsumexp(&x[size_t(i * V)], V));
    LN_CHECK(std::fabs(got[size_t(i)] - want) <= 1e-5f * (1.f + std::fabs(want)));
  }
  // A row of all-zero logits (an overflowed final norm) gives NaN, as on the CPU (target_logprob), not -log(V).
  std::vector<float> z(size_t(2 * V), 0.f);
  z[size_t(V + 5)] = 0.5f;
  Dev<float> zd(z);
  cuda::log_softmax_targets(2, zd.get(), V, V, td.get(), out.get(), nullptr);
  const auto zgot = out.download();
  LN_CHECK(std::isnan(zgot[0]));
  LN_CHECK(std::fabs(zgot[1] - target_logprob(&z[size_t(V)], V, tg[1])) <= 1e-6f);
}

// memset_zero returns once its zeros are written, so that a copy queued right after on a non-blocking stream (the
// runtime's and the trainer's kind, which does not wait for the legacy stream cudaMemset runs on) is not overwritten
// by them. The buffer is large (256 MiB: about 100 us of memset on an H100) and the copy small and into its last
// bytes, so that with a memset_zero returning before its memset ran (cudaMemset alone) the copy would usually land
// first and be zeroed on a GPU. (The simulator holds legacy-stream memsets back until that stream is waited for,
// docs/CUDA-SIM.md: there the old memset_zero fails this test every time.)
LN_TEST(gpu_memset_zero_is_done_before_other_streams) {
  const size_t bytes = size_t(256) << 20;
  cuda::DeviceBuffer buf;
  buf.ensure(bytes);
  const std::vector<float> tail = randn(1024, 7);
  char* at = buf.as<char>() + bytes - tail.size() * sizeof(float);
  cuda::Stream s = cuda::stream_create();
  for (int rep = 0; rep < 4; ++rep) {
    cuda::memset_zero(buf.get(), bytes);
    cuda::copy_to_device(at, tail.data(), tail.size() * sizeof(float), s);
    cuda::synchronize(s);
    cuda::synchronize(nullptr);  // a memset still running on the legacy stream has finished: read what it left
    std::vector<float> back(tail.size());
    cuda::copy_to_host(back.data(), at, back.size() * sizeof(float), s);
    cuda::synchronize(s);
    LN_CHECK_MSG(back == tail, "repetition %d: the copy after memset_zero was overwritten", rep);
  }
  cuda::stream_destroy(s);
}

// A failed CUDA call stays the thread's last error until it is read: the check that throws for it reads it, so that
// a caller going on after the exception does not see the next (good) kernel launch fail with the old error.
LN_TEST(gpu_failed_call_is_not_blamed_on_the_next_launch) {
  bool threw = false;
  try {
    cuda::set_device(1 << 20);  // no such device: cudaErrorInvalidDevice
  } catch (const std::runtime_error&) {
    threw = true;
  }
  LN_CHECK_MSG(threw, "set_device of a device that does not exist did not throw");
  const std::vector<float> x = randn(3 * 5, 3);
  cuda::DeviceBuffer dx, dy;
  dx.ensure(x.size() * sizeof(float));
  dy.ensure(x.size() * sizeof(float));
  cuda::Stream s = cuda::stream_create();
  cuda::copy_to_device(dx.get(), x.data(), x.size() * sizeof(float), s);
  cuda::copy_rows_f32(3, 5, dx.as<float>(), 5, dy.as<float>(), 5, s);  // throws the old error if it was left set
  std::vector<float> back(x.size());
  cuda::copy_to_host(back.data(), dy.get(), back.size() * sizeof(float), s);
  cuda::synchronize(s);
  cuda::stream_destroy(s);
  LN_CHECK_MSG(back == x, "the copy after the failed call is wrong");
}

// The next-token kernels against pick_next_token on the host: rows of an odd width and stride with values on a
// coarse grid (ties everywhere, also between threads' strides), a row with NaNs and infinities, an all-zero row,
// a row whose maximum ties at its last index, and penalty lists holding each row's unpenalised pick.
LN_TEST(gpu_next_token_picks_match_cpu) {
  const int64_t M = 7, V = 1237, ld = V + 3;
  std::vector<float> x = randn(size_t(M * ld), 17, 2.f);
  for (float& v : x) v = std::round(v * 4.f) / 4.f;
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  x[size_t(3 * ld + 700)] = inf;
  x[size_t(3 * ld + 900)] = nan;
  x[size_t(3 * ld + 1100)] = nan;
  std::fill(x.begin() + 4 * ld, x.begin() + 4 * ld + V, 0.f);
  x[size_t(5 * ld + 5)] = -inf;
  x[size_t(6 * ld + 600)] = 40.f;
  x[size_t(6 * ld + V - 1)] = 40.f;
  std::vector<int32_t> ids;
  std::vector<int64_t> offsets = {0};
  for (int64_t r = 0; r < M; ++r) {
    if (r != 2) {
      std::vector<float> row(x.begin() + r * ld, x.begin() + r * ld + V);
      ids.push_back(pick_next_token(row.data(), V, 1.0, nullptr, 0).token);
      for (int32_t k = 1; k < 9; ++k) {
        const int32_t id = int32_t((r * 389 + k * 151) % V);
        if (std::find(ids.begin() + offsets.back(), ids.end(), id) == ids.end()) ids.push_back(id);
      }
    }
    offsets.push_back(int64_t(ids.size()));
  }
  for (double penalty : {1.0, 1.7}) {
    Dev<float> xd(x);
    Dev<int32_t> idd(ids);
    Dev<int64_t> offd(offsets);
    Dev<NextToken> out(static_cast<size_t>(M));
    cuda::penalize_logits(M, xd.get(), ld, penalty, idd.get(), offd.get(), nullptr);
    cuda::pick_next_tokens(M, xd.get(), ld, V, out.get(), nullptr);
    const auto got = out.download();
    for (int64_t r = 0; r < M; ++r) {
      std::vector<float> row(x.begin() + r * ld, x.begin() + r * ld + V);
      const NextToken w = pick_next_token(row.data(), V, penalty, ids.data() + offsets[size_t(r)],
                                          offsets[size_t(r) + 1] - offsets[size_t(r)]);
      const NextToken& g = got[size_t(r)];
      const bool same_logit = g.logit == w.logit || (std::isnan(g.logit) && std::isnan(w.logit));
      const bool same_bad = g.nonfinite_value == w.nonfinite_value || (std::isnan(g.nonfinite_value) && std::isnan(w.nonfinite_value));
      LN_CHECK_MSG(g.token == w.token && same_logit && g.first_nonfinite == w.first_nonfinite && same_bad &&
                       g.all_zero == w.all_zero,
                   "penalty %.1f row %d: token %d / %d, first non-finite %d / %d, all zero %d / %d", penalty, int(r),
                   g.token, w.token, g.first_nonfinite, w.first_nonfinite, g.all_zero, w.all_zero);
    }
  }
}
