// The CUDA trainer's kernels (cuda/train_kernels.h) and the backward GEMMs (cuda::Gemm::run_dx / run_dw), each
// against its CPU twin on odd shapes: train/layers.h (RMSNorm, RoPE, attention, SwiGLU, cross-entropy, embedding
// backward), train/gemm_backward.h's float64 references, kernels/math.h's AdamW update and LoRA dropout mask (the
// functions the CPU trainer calls), and float64 sums for the column reductions.
// Tolerances: relative to the block's largest value (rel_err); float32 kernels 2e-5 (sums in another order; the
// attention backward 1e-4: its ds = p (dp - D) subtracts nearly equal sums); exact (bit for bit) where the kernel
// performs the CPU's float operations in the CPU's order: RoPE's transpose rotation, the embedding sums, the LoRA
// dropout, AdamW, gathers / scatters / master writes; the GEMMs 2e-6 sqrt(depth), as the forward GEMM's test.
#include <cstdio>
#include <cstring>
#include <random>

#include "cuda/cublaslt.h"
#include "cuda/runtime_kernels.h"
#include "cuda/train_kernels.h"
#include "gpu_test_util.h"
#include "kernels/math.h"
#include "train/gemm_backward.h"
#include "train/layers.h"
#include "train/lora.h"
#include "train/token_groups.h"

using namespace ln;
using namespace lngpu;

namespace {

std::vector<float> bf16_values(const std::vector<float>& v) { return from_bf16(to_bf16(v)); }
template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}
// Rows of n values at row stride ld (ld >= n; the padding is garbage the kernels must not read or write).
std::vector<float> strided(const std::vector<float>& dense, int64_t rows, int64_t n, int64_t ld) {
  std::vector<float> s(size_t(rows * ld), 12345.f);
  for (int64_t i = 0; i < rows; ++i) std::memcpy(&s[size_t(i * ld)], &dense[size_t(i * n)], size_t(n) * sizeof(float));
  return s;
}
std::vector<float> unstrided(const std::vector<float>& s, int64_t rows, int64_t n, int64_t ld) {
  std::vector<float> d(size_t(rows * n));
  for (int64_t i = 0; i < rows; ++i) std::memcpy(&d[size_t(i * n)], &s[size_t(i * ld)], size_t(n) * sizeof(float));
  return d;
}
bool padding_kept(const std::vector<float>& s, int64_t rows, int64_t n, int64_t ld) {
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = n; j < ld; ++j)
      if (s[size_t(i * ld + j)] != 12345.f) return false;
  return true;
}

// Packed sequences of the given lengths: per row, its sequence's first row, length and position.
struct Packed {
  std::vector<train::SeqSpan> seqs;
  std::vector<int64_t> row0;
  std::vector<int32_t> len, pos;
  int64_t T = 0;
  explicit Packed(const std::vector<int32_t>& lens) {
    for (int32_t l : lens) {
      seqs.push_back({T, l});
      for (int32_t i = 0; i < l; ++i) {
        row0.push_back(T);
        len.push_back(l);
        pos.push_back(i);
      }
      T += l;
    }
  }
};

}  // namespace

LN_TEST(gpu_train_rmsnorm_backward) {
  ThreadPool pool(2);
  const int64_t M = 137, n = 129, ld = 131;  // 137 rows: three dw partials (64 rows each)
  const float eps = 1e-5f;
  const std::vector<float> x = randn(size_t(M * n), 1), w = randn(size_t(n), 2), dy = randn(size_t(M * n), 3),
                           dx0 = randn(size_t(M * n), 4), dw0 = randn(size_t(n), 5);
  std::vector<float> y(size_t(M * n)), rstd(static_cast<size_t>(M));
  train::rmsnorm_forward(pool, M, n, x.data(), w.data(), eps, y.data(), rstd.data());
  for (bool acc : {false, true}) {
    std::vector<float> want_dx = dx0, want_dw = dw0;
    train::rmsnorm_backward(pool, M, n, x.data(), w.data(), rstd.data(), dy.data(), want_dx.data(), acc,
                            want_dw.data());
    Dev<float> xd(strided(x, M, n, ld)), wd(w), dyd(strided(dy, M, n, ld)), dxd(strided(dx0, M, n, ld)), dwd(dw0);
    Dev<float> part(size_t(cuda::rmsnorm_dw_partials(M, n)));
    cuda::rmsnorm_backward(M, n, xd.get(), ld, wd.get(), eps, dyd.get(), ld, dxd.get(), ld, acc, dwd.get(), part.get(),
                           nullptr);
    const std::vector<float> got_dx = dxd.download(), got_dw = dwd.download();
    LN_CHECK(padding_kept(got_dx, M, n, ld));
    const double edx = rel_err(unstrided(got_dx, M, n, ld), want_dx), edw = rel_err(got_dw, want_dw);
    LN_CHECK_MSG(edx < 2e-5, "dx (accumulate %d): %.3e", int(acc), edx);
    LN_CHECK_MSG(edw < 2e-5, "dw (accumulate %d): %.3e", int(acc), edw);
    // Deterministic: the same call again adds the same bits.
    Dev<float> dx2(strided(dx0, M, n, ld)), dw2(dw0);
    cuda::rmsnorm_backward(M, n, xd.get(), ld, wd.get(), eps, dyd.get(), ld, dx2.get(), ld, acc, dw2.get(), part.get(),
                           nullptr);
    LN_CHECK(same_bits(dx2.download(), got_dx) && same_bits(dw2.download(), got_dw));
  }
  // A frozen norm (dw null) needs no scratch.
  Dev<float> xd(x), wd(w), dyd(dy), dxd(size_t(M * n));
  cuda::rmsnorm_backward(M, n, xd.get(), n, wd.get(), eps, dyd.get(), n, dxd.get(), n, false, nullptr, nullptr, nullptr);
  std::vector<float> want_dx(size_t(M * n));
  train::rmsnorm_backward(pool, M, n, x.data(), w.data(), rstd.data(), dy.data(), want_dx.data(), false, nullptr);
  LN_CHECK(rel_err(dxd.download(), want_dx) < 2e-5);
}

LN_TEST(gpu_train_rope_backward_bit_exact) {
  ThreadPool pool(2);
  const int64_t T = 37;
  const int n_heads = 3, head_dim = 64, half = head_dim / 2, max_pos = 50;
  std::vector<float> inv_freq(static_cast<size_t>(half)), cos_t(size_t(max_pos * half)), sin_t(size_t(max_pos * half));
  for (int i = 0; i < half; ++i) inv_freq[size_t(i)] = float(math::rope_base_inv_freq(i, head_dim, 10000.0));
  for (int p = 0; p < max_pos; ++p)
    for (int i = 0; i < half; ++i) math::rope_cos_sin(p, inv_freq[size_t(i)], &cos_t[size_t(p * half + i)], &sin_t[size_t(p * half + i)]);
  std::vector<int32_t> pos(static_cast<size_t>(T));
  std::mt19937 rng(3);
  for (int32_t& p : pos) p = int32_t(rng() % max_pos);
  const int64_t n = int64_t(n_heads) * head_dim, ld = n + 5;
  const std::vector<float> d = randn(size_t(T * n), 7);
  std::vector<float> want = d;
  train::rope_backward(pool, T, want.data(), n_heads, head_dim, pos.data(), cos_t.data(), sin_t.data());
  Dev<float> dd(strided(d, T, n, ld)), cd(cos_t), sd(sin_t);
  Dev<int32_t> pd(pos);
  cuda::rope_backward(T, dd.get(), ld, n_heads, head_dim, pd.get(), cd.get(), sd.get(), nullptr);
  const std::vector<float> got = dd.download();
  LN_CHECK(padding_kept(got, T, n, ld));
  LN_CHECK_MSG(same_bits(unstrided(got, T, n, ld), want), "rel err %.3e", rel_err(unstrided(got, T, n, ld), want));
}

// Sequences of 1, 17 and 64 tokens packed; GQA 3 heads on 1 kv head, 4 on 2, and 2 on 2 (head_dim 64, 8, 128);
// the simple kernels, and the tiled ones where the head size allows.
LN_TEST(gpu_train_attention_forward_lse_and_backward) {
  ThreadPool pool(2);
  const Packed pk({1, 17, 64});
  const int64_t T = pk.T;
  const int shapes[][3] = {{3, 1, 64}, {4, 2, 8}, {2, 2, 128}};
  for (const auto& s : shapes) {
    train::AttnShape a{s[0], s[1], s[2]};
    const int64_t qd = int64_t(a.n_heads) * a.head_dim, kvd = int64_t(a.n_kv_heads) * a.head_dim;
    const float scale = float(1.0 / std::sqrt(double(a.head_dim)));
    const std::vector<float> q = randn(size_t(T * qd), 11, 1.5f), k = randn(size_t(T * kvd), 12, 1.5f),
                             v = randn(size_t(T * kvd), 13), dout = randn(size_t(T * qd), 14);
    std::vector<float> out(size_t(T * qd)), lse(size_t(T * a.n_heads)), scratch(size_t(pool.size() * 3 * 64));
    train::attention_forward(pool, pk.seqs, a, q.data(), k.data(), v.data(), out.data(), lse.data(), scratch.data());
    std::vector<float> dq(size_t(T * qd)), dk(size_t(T * kvd)), dv(size_t(T * kvd));
    train::attention_backward(pool, pk.seqs, a, q.data(), k.data(), v.data(), lse.data(), dout.data(), dq.data(),
                              dk.data(), dv.data(), scratch.data());

    Dev<float> qd_(q), kd(k), vd(v), outd(size_t(T * qd)), lsed(size_t(T * a.n_heads)), doutd(dout);
    std::vector<int32_t> n_keys(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) n_keys[size_t(t)] = pk.pos[size_t(t)] + 1;
    Dev<int64_t> row0(pk.row0);
    Dev<int32_t> nk(n_keys), len(pk.len), pos(pk.pos);
    cuda::attention_forward_lse(T, a.n_heads, a.n_kv_heads, a.head_dim, qd_.get(), qd, kd.get(), vd.get(), kvd,
                                row0.get(), nk.get(), scale, outd.get(), qd, lsed.get(), nullptr);
    const double eo = rel_err(outd.download(), out);
    double el = 0;
    const std::vector<float> got_lse = lsed.download();
    for (size_t i = 0; i < lse.size(); ++i) el = std::max(el, std::fabs(double(got_lse[i]) - lse[i]));
    LN_CHECK_MSG(eo < 2e-5, "heads %d/%d hd %d: out %.3e", a.n_heads, a.n_kv_heads, a.head_dim, eo);
    LN_CHECK_MSG(el < 2e-5, "heads %d/%d hd %d: lse max abs err %.3e", a.n_heads, a.n_kv_heads, a.head_dim, el);

    // The backward from the CPU's saved out and lse (the same inputs as the CPU's backward).
    Dev<float> out_cpu(out), lse_cpu(lse), dqd(size_t(T * qd)), dkd(size_t(T * kvd)), dvd(size_t(T * kvd)),
        drows(size_t(T * a.n_heads));
    cuda::attention_backward(T, a.n_heads, a.n_kv_heads, a.head_dim, qd_.get(), qd, kd.get(), vd.get(), kvd,
                             out_cpu.get(), qd, doutd.get(), qd, lse_cpu.get(), row0.get(), len.get(), pos.get(), scale,
                             dqd.get(), qd, dkd.get(), dvd.get(), kvd, drows.get(), nullptr);
    const double eq = rel_err(dqd.download(), dq), ek = rel_err(dkd.download(), dk), ev = rel_err(dvd.download(), dv);
    LN_CHECK_MSG(eq < 1e-4 && ek < 1e-4 && ev < 1e-4, "heads %d/%d hd %d: dq %.3e dk %.3e dv %.3e", a.n_heads,
                 a.n_kv_heads, a.head_dim, eq, ek, ev);
    // The tiled kernels (head_dim 64 and 128; tiles of 32 rows straddle the packed sequences here).
    if (cuda::attention_backward_tiled_supported(a.head_dim)) {
      Dev<float> tq(size_t(T * qd)), tk(size_t(T * kvd)), tv(size_t(T * kvd)), trows(size_t(T * a.n_heads));
      cuda::attention_backward_tiled(T, a.n_heads, a.n_kv_heads, a.head_dim, qd_.get(), qd, kd.get(), vd.get(), kvd,
                                     out_cpu.get(), qd, doutd.get(), qd, lse_cpu.get(), row0.get(), len.get(), scale,
                                     tq.get(), qd, tk.get(), tv.get(), kvd, trows.get(), nullptr);
      const double tq_e = rel_err(tq.download(), dq), tk_e = rel_err(tk.download(), dk), tv_e = rel_err(tv.download(), dv);
      LN_CHECK_MSG(tq_e < 1e-4 && tk_e < 1e-4 && tv_e < 1e-4, "tiled, heads %d/%d hd %d: dq %.3e dk %.3e dv %.3e",
                   a.n_heads, a.n_kv_heads, a.head_dim, tq_e, tk_e, tv_e);
      LN_CHECK(rel_err(trows.download(), drows.download()) < 1e-6);  // D: the same sums
    }
  }
}

// The tensor-core backward of the bf16 mode: q / k / v and out bf16 (as that mode keeps them), packed sequences whose
// tiles of 64 and 32 rows straddle them, several key and query tiles per block; against the CPU's float32 backward
// on the same q / k / v. dout, p and ds are rounded to bf16 for the products, out is the bf16-rounded output:
// within 2e-2 relative L2.
LN_TEST(gpu_train_attention_backward_tensor_cores) {
  ThreadPool pool(2);
  const Packed pk({1, 17, 64, 70, 5});
  const int64_t T = pk.T;
  // heads, kv heads, head_dim, soft cap, window. Gemma 2's head_dim 256, also with a cap and a window that bite here
  // (scores of about +-2.3 to 7; Gemma's cap 50 would hardly change them, and the longest sequence has 70 rows).
  struct Case {
    int n_heads, n_kv_heads, head_dim;
    float cap;
    int window;
  };
  const Case shapes[] = {{4, 2, 32, 0.f, 0}, {3, 1, 64, 0.f, 0}, {2, 2, 128, 0.f, 0}, {2, 1, 256, 0.f, 0},
                         {2, 1, 256, 5.f, 40}};
  for (const Case& s : shapes) {
    train::AttnShape a{s.n_heads, s.n_kv_heads, s.head_dim};
    a.softcap = s.cap;
    a.window = s.window;
    const int64_t qd = int64_t(a.n_heads) * a.head_dim, kvd = int64_t(a.n_kv_heads) * a.head_dim;
    const float scale = float(1.0 / std::sqrt(double(a.head_dim)));
    const std::vector<float> q = from_bf16(to_bf16(randn(size_t(T * qd), 31, 1.5f))),
                             k = from_bf16(to_bf16(randn(size_t(T * kvd), 32, 1.5f))),
                             v = from_bf16(to_bf16(randn(size_t(T * kvd), 33))), dout = randn(size_t(T * qd), 34);
    std::vector<float> out(size_t(T * qd)), lse(size_t(T * a.n_heads)), scratch(size_t(pool.size() * 3 * 128));
    train::attention_forward(pool, pk.seqs, a, q.data(), k.data(), v.data(), out.data(), lse.data(), scratch.data());
    std::vector<float> dq(size_t(T * qd)), dk(size_t(T * kvd)), dv(size_t(T * kvd));
    train::attention_backward(pool, pk.seqs, a, q.data(), k.data(), v.data(), lse.data(), dout.data(), dq.data(),
                              dk.data(), dv.data(), scratch.data());
    const std::vector<uint16_t> out16 = to_bf16(out);
    Dev<float> qd_(q), kd(k), vd(v), outd(from_bf16(out16)), lsed(lse), doutd(dout), gq(size_t(T * qd)),
        gk(size_t(T * kvd)), gv(size_t(T * kvd)), rows(size_t(T * a.n_heads)), rows_ref(size_t(T * a.n_heads)),
        sq(size_t(T * qd)), sk(size_t(T * kvd)), sv(size_t(T * kvd));
    Dev<uint16_t> q16(to_bf16(q)), k16(to_bf16(k)), v16(to_bf16(v)), o16(out16);
    Dev<int64_t> row0(pk.row0);
    Dev<int32_t> len(pk.len), pos(pk.pos);
    LN_CHECK(cuda::attention_backward_tc_supported(a.head_dim));
    cuda::attention_backward_tc(T, a.n_heads, a.n_kv_heads, a.head_dim, q16.get(), qd, k16.get(), v16.get(), kvd,
                                o16.get(), qd, doutd.get(), qd, lsed.get(), row0.get(), len.get(), scale, gq.get(), qd,
                                gk.get(), gv.get(), kvd, rows.get(), nullptr, s.window, s.cap);
    const double eq = rel_err(gq.download(), dq), ek = rel_err(gk.download(), dk), ev = rel_err(gv.download(), dv);
    LN_CHECK_MSG(eq < 2e-2 && ek < 2e-2 && ev < 2e-2,
                 "tensor cores, heads %d/%d hd %d cap %g window %d: dq %.3e dk %.3e dv %.3e", a.n_heads, a.n_kv_heads,
                 a.head_dim, double(s.cap), s.window, eq, ek, ev);
    // D: the simple kernels' sums of the same (widened) out, in the same order.
    cuda::attention_backward(T, a.n_heads, a.n_kv_heads, a.head_dim, qd_.get(), qd, kd.get(), vd.get(), kvd,
                             outd.get(), qd, doutd.get(), qd, lsed.get(), row0.get(), len.get(), pos.get(), scale,
                             sq.get(), qd, sk.get(), sv.get(), kvd, rows_ref.get(), nullptr, s.window, s.cap);
    LN_CHECK(rel_err(rows.download(), rows_ref.download()) < 1e-6);
    std::printf("  tensor cores, heads %d/%d hd %3d cap %2g window %3d: dq %.2e dk %.2e dv %.2e (bf16 dout, p, ds)\n",
                a.n_heads, a.n_kv_heads, a.head_dim, double(s.cap), s.window, eq, ek, ev);
  }
}

LN_TEST(gpu_train_swiglu_backward) {
  ThreadPool pool(2);
  const int64_t M = 37, I = 129;
  const std::vector<float> gu = randn(size_t(M * 2 * I), 21, 2.f), da = randn(size_t(M * I), 22);
  std::vector<float> g(size_t(M * I)), u(size_t(M * I)), dg(size_t(M * I)), du(size_t(M * I));
  for (int64_t t = 0; t < M; ++t)
    for (int64_t j = 0; j < I; ++j) {
      g[size_t(t * I + j)] = gu[size_t(t * 2 * I + j)];
      u[size_t(t * I + j)] = gu[size_t(t * 2 * I + I + j)];
    }
  train::swiglu_backward(pool, M * I, g.data(), u.data(), da.data(), dg.data(), du.data());
  Dev<float> gud(gu), dad(da), dgud(size_t(M * 2 * I));
  cuda::swiglu_backward(M, I, gud.get(), DType::F32, 2 * I, dad.get(), I, dgud.get(), nullptr, 2 * I, nullptr);
  const std::vector<float> got = dgud.download();
  std::vector<float> got_g(size_t(M * I)), got_u(size_t(M * I));
  for (int64_t t = 0; t < M; ++t)
    for (int64_t j = 0; j < I; ++j) {
      got_g[size_t(t * I + j)] = got[size_t(t * 2 * I + j)];
      got_u[size_t(t * I + j)] = got[size_t(t * 2 * I + I + j)];
    }
  // expf on the device and in glibc may differ in the last bit; nothing else does.
  LN_CHECK_MSG(rel_err(got_g, dg) < 2e-6 && rel_err(got_u, du) < 2e-6, "dg %.3e du %.3e", rel_err(got_g, dg),
               rel_err(got_u, du));
  // gate and up kept as bf16 (the bf16 mode): the CPU's backward at the rounded values.
  const std::vector<uint16_t> gu16 = to_bf16(gu);
  const std::vector<float> gr = from_bf16(gu16);
  for (int64_t t = 0; t < M; ++t)
    for (int64_t j = 0; j < I; ++j) {
      g[size_t(t * I + j)] = gr[size_t(t * 2 * I + j)];
      u[size_t(t * I + j)] = gr[size_t(t * 2 * I + I + j)];
    }
  train::swiglu_backward(pool, M * I, g.data(), u.data(), da.data(), dg.data(), du.data());
  // Both outputs: the float32 gradient, and the same rounded to bf16 (the bf16 mode's GEMM operand).
  Dev<uint16_t> gu16d(gu16), dgu16(size_t(M * 2 * I));
  cuda::swiglu_backward(M, I, gu16d.get(), DType::BF16, 2 * I, dad.get(), I, dgud.get(), dgu16.get(), 2 * I, nullptr);
  const std::vector<float> got16 = dgud.download();
  LN_CHECK(dgu16.download() == to_bf16(got16));
  Dev<uint16_t> only16(size_t(M * 2 * I));  // the bf16 one alone (the bf16 mode without adapters on gate / up)
  cuda::swiglu_backward(M, I, gu16d.get(), DType::BF16, 2 * I, dad.get(), I, nullptr, only16.get(), 2 * I, nullptr);
  LN_CHECK(only16.download() == dgu16.download());
  for (int64_t t = 0; t < M; ++t)
    for (int64_t j = 0; j < I; ++j) {
      got_g[size_t(t * I + j)] = got16[size_t(t * 2 * I + j)];
      got_u[size_t(t * I + j)] = got16[size_t(t * 2 * I + I + j)];
    }
  LN_CHECK_MSG(rel_err(got_g, dg) < 2e-6 && rel_err(got_u, du) < 2e-6, "bf16 gate/up: dg %.3e du %.3e",
               rel_err(got_g, dg), rel_err(got_u, du));
}

LN_TEST(gpu_train_crossentropy_backward) {
  ThreadPool pool(2);
  const int64_t rows = 37, V = 1031, ld = 1040;
  const float scale = 1.f / 36.f;
  const std::vector<float> logits = randn(size_t(rows * V), 31, 3.f);
  std::vector<int32_t> targets(static_cast<size_t>(rows));
  std::mt19937 rng(2);
  for (int32_t& t : targets) t = int32_t(rng() % V);
  targets[5] = -1;  // an unlabelled row
  // CPU: the labelled rows only (its targets are all >= 0).
  std::vector<float> want;
  std::vector<int32_t> tg;
  for (int64_t r = 0; r < rows; ++r)
    if (targets[size_t(r)] >= 0) {
      want.insert(want.end(), logits.begin() + r * V, logits.begin() + (r + 1) * V);
      tg.push_back(targets[size_t(r)]);
    }
  std::vector<double> want_loss(tg.size());
  train::crossentropy_forward_backward(pool, int64_t(tg.size()), V, want.data(), tg.data(), scale, want_loss.data());
  Dev<float> ld_(strided(logits, rows, V, ld));
  Dev<int32_t> td(targets);
  Dev<double> lossd(static_cast<size_t>(rows));
  cuda::crossentropy_backward(rows, V, ld_.get(), ld, td.get(), scale, lossd.get(), nullptr);
  const std::vector<float> got = ld_.download();
  const std::vector<double> loss = lossd.download();
  LN_CHECK(padding_kept(got, rows, V, ld));
  std::vector<float> got_labelled;
  double eloss = 0;
  size_t c = 0;
  for (int64_t r = 0; r < rows; ++r) {
    if (targets[size_t(r)] < 0) {
      bool zero = loss[size_t(r)] == 0;
      for (int64_t i = 0; i < V; ++i) zero = zero && got[size_t(r * ld + i)] == 0.f;
      LN_CHECK_MSG(zero, "row %lld (target -1) is not zero", (long long)r);
      continue;
    }
    got_labelled.insert(got_labelled.end(), got.begin() + r * ld, got.begin() + r * ld + V);
    eloss = std::max(eloss, std::fabs(loss[size_t(r)] - want_loss[c]) / want_loss[c]);
    ++c;
  }
  const double eg = rel_err(got_labelled, want);
  LN_CHECK_MSG(eg < 2e-5, "gradient %.3e", eg);
  LN_CHECK_MSG(eloss < 1e-6, "row loss %.3e", eloss);
}

LN_TEST(gpu_train_embedding_backward_bit_exact) {
  const int64_t T = 129, H = 67, V = 50, lde = 70;
  const float scale = 1.5f;
  std::vector<int32_t> tokens(static_cast<size_t>(T));
  std::mt19937 rng(4);
  for (int32_t& t : tokens) t = int32_t(rng() % 17) * 2;  // repeats; odd tokens never seen
  const std::vector<float> dh = randn(size_t(T * H), 41), e0 = randn(size_t(V * H), 42);
  std::vector<float> want = e0;
  train::embedding_backward(T, H, tokens.data(), dh.data(), want.data(), scale);
  train::TokenGroups g;
  train::plan_token_groups(tokens.data(), T, &g);
  Dev<int32_t> gt(g.group_token);
  Dev<int64_t> gs(g.group_start), order(g.order);
  Dev<float> dhd(dh), ed(strided(e0, V, H, lde));
  cuda::embedding_backward(g.n_groups(), gt.get(), gs.get(), order.get(), dhd.get(), H, H, ed.get(), lde, scale,
                           nullptr);
  const std::vector<float> got = ed.download();
  LN_CHECK(padding_kept(got, V, H, lde));
  LN_CHECK_MSG(same_bits(unstrided(got, V, H, lde), want), "rel err %.3e", rel_err(unstrided(got, V, H, lde), want));
}

LN_TEST(gpu_train_gather_scatter_colsum) {
  const int64_t M = 200, N = 129, n = 7;
  const std::vector<int32_t> index = {0, 3, 4, 50, 99, 127, 128};
  const std::vector<float> x = randn(size_t(M * N), 51), sel = randn(size_t(M * n), 52), y0 = randn(size_t(M * N), 53);
  Dev<float> xd(x), seld(sel), gd(size_t(M * n));
  Dev<int32_t> id(index);
  cuda::gather_cols(M, n, xd.get(), N, id.get(), gd.get(), n, nullptr);
  std::vector<float> want_g(size_t(M * n));
  for (int64_t i = 0; i < M; ++i)
    for (int64_t c = 0; c < n; ++c) want_g[size_t(i * n + c)] = x[size_t(i * N + index[size_t(c)])];
  LN_CHECK(same_bits(gd.download(), want_g));
  {  // bf16 values (the GEMM operands of the bf16 mode), into a padded row stride: the padding left as it was
    const int64_t ldy = 8;
    const std::vector<uint16_t> xb = to_bf16(x), y0b(size_t(M * ldy), 0x7fc1);
    Dev<uint16_t> xbd(xb), ybd(y0b);
    cuda::gather_cols(M, n, xbd.get(), N, id.get(), ybd.get(), ldy, DType::BF16, nullptr);
    std::vector<uint16_t> want_b = y0b;
    for (int64_t i = 0; i < M; ++i)
      for (int64_t c = 0; c < n; ++c) want_b[size_t(i * ldy + c)] = xb[size_t(i * N + index[size_t(c)])];
    LN_CHECK(ybd.download() == want_b);
  }
  for (bool acc : {false, true}) {
    Dev<float> yd(y0);
    cuda::scatter_cols(M, n, seld.get(), n, id.get(), yd.get(), N, acc, nullptr);
    std::vector<float> want = y0;
    for (int64_t i = 0; i < M; ++i)
      for (int64_t c = 0; c < n; ++c) {
        float& w = want[size_t(i * N + index[size_t(c)])];
        w = acc ? w + sel[size_t(i * n + c)] : sel[size_t(i * n + c)];
      }
    LN_CHECK_MSG(same_bits(yd.download(), want), "scatter (accumulate %d)", int(acc));
  }
  // Column sums (bias gradients) against float64, and deterministic.
  const std::vector<float> db0 = randn(size_t(N), 54);
  Dev<float> dbd(db0), part(size_t(cuda::colsum_partials(M, N)));
  cuda::colsum_accumulate(M, N, xd.get(), N, dbd.get(), part.get(), nullptr);
  std::vector<float> want(static_cast<size_t>(N));
  for (int64_t j = 0; j < N; ++j) {
    double s = 0;
    for (int64_t i = 0; i < M; ++i) s += x[size_t(i * N + j)];
    want[size_t(j)] = float(double(db0[size_t(j)]) + s);
  }
  const std::vector<float> got = dbd.download();
  LN_CHECK_MSG(rel_err(got, want) < 1e-6, "colsum %.3e", rel_err(got, want));
  Dev<float> db2(db0);
  cuda::colsum_accumulate(M, N, xd.get(), N, db2.get(), part.get(), nullptr);
  LN_CHECK(same_bits(db2.download(), got));
}

LN_TEST(gpu_train_write_master) {
  const int64_t rows = 37, cols = 29;
  const std::vector<int32_t> index = {1, 2, 10, 28};
  const int64_t n = int64_t(index.size());
  const std::vector<float> w0 = randn(size_t(rows * cols), 61);
  for (int layout = 0; layout < 3; ++layout) {
    const int64_t mrows = layout == 1 ? n : rows, mcols = layout == 2 ? n : cols;
    const std::vector<float> master = randn(size_t(mrows * mcols), 62 + layout);
    std::vector<float> want = w0;
    for (int64_t r = 0; r < mrows; ++r)
      for (int64_t c = 0; c < mcols; ++c) {
        const int64_t wr = layout == 1 ? index[size_t(r)] : r, wc = layout == 2 ? index[size_t(c)] : c;
        want[size_t(wr * cols + wc)] = master[size_t(r * mcols + c)];
      }
    Dev<float> md(master);
    Dev<int32_t> id(index);
    const int32_t* idx = layout == 0 ? nullptr : id.get();
    Dev<float> wf(w0);
    cuda::write_master(cuda::MasterLayout(layout), md.get(), rows, cols, idx, n, wf.get(), DType::F32, nullptr);
    LN_CHECK_MSG(same_bits(wf.download(), want), "f32 layout %d", layout);
    Dev<uint16_t> wb(to_bf16(w0));
    cuda::write_master(cuda::MasterLayout(layout), md.get(), rows, cols, idx, n, wb.get(), DType::BF16, nullptr);
    LN_CHECK_MSG(same_bits(wb.download(), to_bf16(want)), "bf16 layout %d", layout);
  }
}

LN_TEST(gpu_train_sum_of_squares_deterministic) {
  for (int64_t n : {int64_t(1), int64_t(1000), int64_t(100003), int64_t(20000000)}) {
    const std::vector<float> x = randn(size_t(n), 71);
    double want = 0;
    for (float v : x) want += double(v) * v;
    Dev<float> xd(x);
    Dev<double> part(size_t(cuda::sumsq_partials(n))), out(1);
    cuda::sum_of_squares(xd.get(), n, part.get(), out.get(), nullptr);
    const double got = out.download()[0];
    LN_CHECK_MSG(std::fabs(got - want) <= 1e-12 * want, "n=%lld: %.17g vs %.17g", (long long)n, got, want);
    Dev<double> out2(1);
    cuda::sum_of_squares(xd.get(), n, part.get(), out2.get(), nullptr);
    LN_CHECK(same_bits(out2.download(), out.download()));
  }
}

// Five steps of AdamW on the device against the CPU trainer's update (math::adamw_update, called by
// Trainer::step), with clipping and weight decay: bit for bit.
LN_TEST(gpu_train_adamw_bit_exact) {
  const int64_t n = 100003;
  const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, lr = 3e-3f, wd = 0.1f;
  std::vector<float> p = randn(size_t(n), 81), m(size_t(n), 0.f), v(size_t(n), 0.f);
  Dev<float> pd(p), md(m), vd(v), gd(static_cast<size_t>(n));
  for (int t = 1; t <= 5; ++t) {
    const std::vector<float> g = randn(size_t(n), 90 + t, 0.01f);
    gd.upload(g);
    const double bc1 = 1 - std::pow(double(b1), double(t)), bc2 = 1 - std::pow(double(b2), double(t));
    const float step_size = float(lr / bc1), bc2_sqrt = float(std::sqrt(bc2)), decay = 1.f - lr * wd;
    const float clip_scale = t == 3 ? 0.37f : 1.f;
    for (int64_t i = 0; i < n; ++i)
      math::adamw_update(g[size_t(i)] * clip_scale, b1, b2, eps, step_size, bc2_sqrt, decay, &p[size_t(i)],
                         &m[size_t(i)], &v[size_t(i)]);
    cuda::adamw_step(n, pd.get(), gd.get(), md.get(), vd.get(), b1, b2, eps, step_size, bc2_sqrt, decay, clip_scale,
                     nullptr);
  }
  LN_CHECK(same_bits(pd.download(), p));
  LN_CHECK(same_bits(md.download(), m));
  LN_CHECK(same_bits(vd.download(), v));
}

// The device mask is the CPU trainer's (math::lora_keep under train::lora_dropout_key), applied as the CPU does.
LN_TEST(gpu_train_lora_dropout_bit_exact) {
  const int64_t M = 37, K = 129, ld = 131;
  const float p = 0.3f, keep_scale = 1.f / (1.f - p);
  const uint64_t key = train::lora_dropout_key(11, 4, 1, 2, 5);
  const std::vector<float> x = randn(size_t(M * K), 101), y0 = randn(size_t(M * K), 102);
  for (bool acc : {false, true}) {
    std::vector<float> want = y0;
    int64_t kept = 0;
    for (int64_t i = 0; i < M; ++i)
      for (int64_t k = 0; k < K; ++k) {
        const bool keep = math::lora_keep(key, i, k, K, p);
        kept += keep;
        const float val = keep ? x[size_t(i * K + k)] * keep_scale : 0.f;
        float& w = want[size_t(i * K + k)];
        w = acc ? w + val : val;
      }
    LN_CHECK(kept > M * K / 2 && kept < M * K);
    Dev<float> xd(strided(x, M, K, ld)), yd(y0);
    cuda::lora_dropout(M, K, xd.get(), ld, yd.get(), K, key, p, acc, nullptr);
    LN_CHECK_MSG(same_bits(yd.download(), want), "accumulate %d", int(acc));
  }
}

// dX = dY W and dW += dY^T X on cuBLASLt (bf16 and f32) and on the simple kernels, against gemm_backward.h's
// float64 references on the same (bf16-rounded in bf16 mode) values.
LN_TEST(gpu_gemm_backward_matches_reference) {
  cuda::Gemm gemm;
  const int64_t shapes[][3] = {{1, 1, 8}, {37, 75, 69}, {5, 300, 64}, {130, 96, 200}, {64, 128, 256}};
  for (const auto& s : shapes) {
    const int64_t M = s[0], N = s[1], K = s[2];
    for (bool bf16 : {false, true}) {
      std::vector<float> dY = randn(size_t(M * N), 111), W = randn(size_t(N * K), 112), X = randn(size_t(M * K), 113);
      if (bf16) {
        dY = bf16_values(dY);
        W = bf16_values(W);
        X = bf16_values(X);
      }
      const std::vector<float> dX0 = randn(size_t(M * K), 114), dW0 = randn(size_t(N * K), 115);
      WeightRef wr;
      wr.data = W.data();
      wr.dtype = DType::F32;
      wr.rows = N;
      wr.cols = K;
      const DType dt = bf16 ? DType::BF16 : DType::F32;
      Dev<float> dyf(dY), wf(W), xf(X);
      Dev<uint16_t> dyb(to_bf16(dY)), wb(to_bf16(W)), xb(to_bf16(X));
      const void* dyp = bf16 ? static_cast<const void*>(dyb.get()) : dyf.get();
      const void* wp = bf16 ? static_cast<const void*>(wb.get()) : wf.get();
      const void* xp = bf16 ? static_cast<const void*>(xb.get()) : xf.get();
      for (int simple = 0; simple < 2; ++simple) {
        for (bool acc : {false, true}) {
          std::vector<float> want = dX0;
          train::gemm_dx_ref(M, dY.data(), N, wr, want.data(), K, acc);
          Dev<float> dxd(dX0);
          if (simple)
            cuda::gemm_simple_dx(M, N, K, dyp, N, wp, K, bf16, dxd.get(), K, acc, nullptr);
          else
            gemm.run_dx(M, N, K, dyp, N, wp, K, dt, dxd.get(), K, acc, nullptr);
          const double e = rel_err(dxd.download(), want);
          LN_CHECK_MSG(e < 2e-6 * std::sqrt(double(N)), "dX M=%lld N=%lld K=%lld bf16=%d simple=%d acc=%d: %.3e",
                       (long long)M, (long long)N, (long long)K, int(bf16), simple, int(acc), e);
        }
        std::vector<float> want = dW0;
        train::gemm_dw_ref(M, N, K, dY.data(), N, X.data(), K, want.data(), K);
        Dev<float> dwd(dW0);
        if (simple)
          cuda::gemm_simple_dw(M, N, K, dyp, N, xp, K, bf16, dwd.get(), K, nullptr);
        else
          gemm.run_dw(M, N, K, dyp, N, xp, K, dt, dwd.get(), K, nullptr);
        const double e = rel_err(dwd.download(), want);
        LN_CHECK_MSG(e < 2e-6 * std::sqrt(double(M)) + 1e-6, "dW M=%lld N=%lld K=%lld bf16=%d simple=%d: %.3e",
                     (long long)M, (long long)N, (long long)K, int(bf16), simple, e);
      }
    }
  }
  std::printf("  shapes cuBLASLt had no algorithm for (run on the simple kernels): %lld\n",
              (long long)gemm.fallback_shapes());
}
