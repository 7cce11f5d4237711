// Tests of the simulator's cuBLASLt (fake_cublaslt.cpp), loaded with dlopen as the runtime's loader does: products
// against a float64 reference on odd shapes, every op(A) / op(B), f32 / f16 / bf16, alpha / beta variants (beta = 0
// with NaN-filled C), padded leading dimensions (padding NaN-filled, D's padding must stay untouched), in place
// and out of place, and the error statuses. Prints "ok <name>" per check; exits 1 on any failure.
// Build and run from the repo root:
//   g++ -std=c++17 -O2 -Wall -Wextra -shared -fPIC -fvisibility=hidden -I native/src -o /tmp/libcublasLt_sim.so native/cuda_sim/fake_cublaslt.cpp
//   g++ -std=c++17 -O2 -Wall -Wextra -I native/src -o /tmp/test_fake_cublaslt native/cuda_sim/test_fake_cublaslt.cpp -ldl
//   /tmp/test_fake_cublaslt /tmp/libcublasLt_sim.so
#include <dlfcn.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cuda/cublaslt_api.h"

using namespace ln::cublaslt;

namespace {
struct Lib {
  CreateFn create; DestroyFn destroy; GetVersionFn version; MatmulDescCreateFn desc_create;
  MatmulDescDestroyFn desc_destroy; MatmulDescSetAttributeFn desc_set; MatrixLayoutCreateFn layout_create;
  MatrixLayoutDestroyFn layout_destroy; PreferenceCreateFn pref_create; PreferenceDestroyFn pref_destroy;
  PreferenceSetAttributeFn pref_set; AlgoGetHeuristicFn heuristic; MatmulFn matmul;
} L;
int g_failures = 0;

void check(bool ok, const std::string& name, const std::string& detail = "") {
  if (ok) std::printf("ok %s\n", name.c_str());
  else std::printf("FAIL %s %s\n", name.c_str(), detail.c_str()), ++g_failures;
}
void expect_status(const std::string& name, int got, int want) {
  check(got == want, name, "status " + std::to_string(got) + ", expected " + std::to_string(want));
}

size_t esize(int32_t t) { return t == CUDA_R_32F ? 4 : 2; }
const double kU = std::ldexp(1.0, -24);

// A column-major matrix in a 256-byte-aligned buffer (like cudaMalloc), decoded independently of the library.
struct Mat {
  int32_t type; int64_t rows, cols, ld;
  unsigned char* buf = nullptr;
  Mat(int32_t t, int64_t r, int64_t c, int64_t l) : type(t), rows(r), cols(c), ld(l) {
    buf = static_cast<unsigned char*>(std::aligned_alloc(256, (bytes() / 256 + 2) * 256));  // room to offset
    std::memset(buf, 0xff, bytes());  // NaN in f32, f16 and bf16: padding and unset elements are NaN
  }
  ~Mat() { std::free(buf); }
  Mat(const Mat&) = delete;
  size_t bytes() const { return size_t(std::max<int64_t>(1, (cols - 1) * ld + rows)) * esize(type); }
  double at(int64_t i, int64_t j) const {
    const unsigned char* p = buf + size_t(i + j * ld) * esize(type);
    if (type == CUDA_R_32F) { float f; std::memcpy(&f, p, 4); return f; }
    uint16_t h; std::memcpy(&h, p, 2);
    if (type == CUDA_R_16BF) { uint32_t x = uint32_t(h) << 16; float f; std::memcpy(&f, &x, 4); return f; }
    const int e = (h >> 10) & 31, m = h & 1023;  // IEEE binary16: bias 15, 10 fraction bits
    const double s = (h & 0x8000) ? -1 : 1;
    if (e == 31) return m ? NAN : s * INFINITY;
    return s * (e ? std::ldexp(1024 + m, e - 25) : std::ldexp(m, -24));
  }
  void fill(std::mt19937& rng) {  // random values exactly representable in the type
    std::uniform_real_distribution<float> u(-2.f, 2.f);
    for (int64_t j = 0; j < cols; ++j)
      for (int64_t i = 0; i < rows; ++i) {
        unsigned char* p = buf + size_t(i + j * ld) * esize(type);
        const float f = u(rng);
        uint32_t x; std::memcpy(&x, &f, 4);
        uint16_t h = uint16_t(x >> 16);  // bf16: a float's upper half
        if (type == CUDA_R_16F) h = uint16_t((rng() & 0x8000) | ((12 + rng() % 5) << 10) | (rng() & 1023));
        if (type == CUDA_R_32F) std::memcpy(p, &f, 4); else std::memcpy(p, &h, 2);
      }
  }
};

struct Layout {  // RAII MatrixLayout
  MatrixLayout l = nullptr;
  int status;
  explicit Layout(const Mat& m) { status = L.layout_create(&l, m.type, uint64_t(m.rows), uint64_t(m.cols), m.ld); }
  ~Layout() { if (l) L.layout_destroy(l); }
};
MatmulDesc make_desc(int32_t ta, int32_t tb) {
  MatmulDesc d = nullptr;
  if (L.desc_create(&d, CUBLAS_COMPUTE_32F, CUDA_R_32F) || L.desc_set(d, CUBLASLT_MATMUL_DESC_TRANSA, &ta, 4) ||
      L.desc_set(d, CUBLASLT_MATMUL_DESC_TRANSB, &tb, 4)) std::printf("FAIL desc setup\n"), std::exit(1);
  return d;
}
int heuristic(Handle h, MatmulDesc d, MatrixLayout a, MatrixLayout b, MatrixLayout c, MatrixLayout dd,
              uint32_t align, HeuristicResult* res, int* n) {
  Preference p = nullptr;
  L.pref_create(&p);
  const uint64_t ws = 1 << 20;
  L.pref_set(p, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, 8);
  for (int32_t at = CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES; at <= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES; ++at)
    L.pref_set(p, at, &align, 4);
  const int st = L.heuristic(h, d, a, b, c, dd, p, 4, res, n);
  L.pref_destroy(p);
  return st;
}
int64_t round_up(int64_t x, int64_t to) { return (x + to - 1) / to * to; }

struct Case { int64_t m, n, k; int32_t ta, tb, in, out; float alpha, beta; int64_t pad; bool in_place, null_algo; };

// Runs one product and compares D with the float64 reference (op(A) flipped when flip_ref: must then fail).
bool run_case(Handle h, const Case& c, std::mt19937& rng, bool flip_ref, std::string& why) {
  const int64_t al = c.in == CUDA_R_32F ? 1 : 8, ao = c.out == CUDA_R_32F ? 1 : 8;  // 16-byte ld for 16-bit
  const int64_t a_rows = c.ta ? c.k : c.m, b_rows = c.tb ? c.n : c.k;  // stored shapes
  Mat A(c.in, a_rows, c.ta ? c.m : c.k, round_up(a_rows + c.pad, al));
  Mat B(c.in, b_rows, c.tb ? c.k : c.n, round_up(b_rows + c.pad + 1, al));
  Mat C(c.out, c.m, c.n, round_up(c.m + c.pad, ao)), Dm(c.out, c.m, c.n, round_up(c.m + 2 * c.pad, ao));
  A.fill(rng), B.fill(rng);
  std::vector<double> c_before(size_t(c.m * c.n), 0.0);  // C as it was (D may be C)
  if (c.beta != 0.f) C.fill(rng);  // else C stays NaN: it must not be read
  for (int64_t j = 0; j < c.n && c.beta != 0.f; ++j)
    for (int64_t i = 0; i < c.m; ++i) c_before[size_t(i + j * c.m)] = C.at(i, j);
  Mat& D = c.in_place ? C : Dm;
  std::vector<unsigned char> before(D.buf, D.buf + D.bytes());
  MatmulDesc desc = make_desc(c.ta, c.tb);
  Layout la(A), lb(B), lc(C), ld(D);
  HeuristicResult res[4];
  int n = 0, st = CUBLAS_STATUS_SUCCESS;
  if (!c.null_algo) st = heuristic(h, desc, la.l, lb.l, lc.l, ld.l, 256, res, &n);
  if (st == CUBLAS_STATUS_SUCCESS && !c.null_algo && (n != 1 || res[0].state != 0 || res[0].workspaceSize != 0))
    st = -1;
  if (st == CUBLAS_STATUS_SUCCESS)
    st = L.matmul(h, desc, &c.alpha, A.buf, la.l, B.buf, lb.l, &c.beta, C.buf, lc.l, D.buf, ld.l,
                  c.null_algo ? nullptr : &res[0].algo, nullptr, 0, nullptr);
  L.desc_destroy(desc);
  if (st != CUBLAS_STATUS_SUCCESS) return why = "status " + std::to_string(st), false;
  const double out_u = c.out == CUDA_R_16BF ? std::ldexp(1.0, -8) : c.out == CUDA_R_16F ? std::ldexp(1.0, -11) : 0;
  for (int64_t j = 0; j < c.n; ++j)
    for (int64_t i = 0; i < c.m; ++i) {
      double sum = 0, mag = 0;
      for (int64_t kk = 0; kk < c.k; ++kk) {
        const bool ta = flip_ref ? !c.ta : c.ta;
        const double p = (ta ? A.at(kk, i) : A.at(i, kk)) * (c.tb ? B.at(j, kk) : B.at(kk, j));
        sum += p, mag += std::fabs(p);
      }
      const double cterm = double(c.beta) * c_before[size_t(i + j * c.m)];
      const double ref = double(c.alpha) * sum + cterm;
      const double fbound = (c.k + 3) * kU * (std::fabs(c.alpha) * mag + std::fabs(cterm)) + 1e-300;
      const double subnormal = c.out == CUDA_R_16F ? std::ldexp(1.0, -25) : 0;  // half the f16 subnormal step
      const double bound = fbound + out_u * (std::fabs(ref) + fbound) + subnormal;
      const double got = D.at(i, j);
      if (!(std::fabs(got - ref) <= bound))
        return why = "D(" + std::to_string(i) + "," + std::to_string(j) + ") = " + std::to_string(got) +
                     ", reference " + std::to_string(ref), false;
    }
  for (int64_t j = 0; j < c.n; ++j)  // bytes between rows and ld (and after) untouched
    for (size_t b = size_t(c.m + j * D.ld) * esize(D.type); b < size_t((j + 1) * D.ld) * esize(D.type); ++b)
      if (b < before.size() && D.buf[b] != before[b])
        return why = "D padding written at byte " + std::to_string(b), false;
  return true;
}

// One call on given matrices, for the status checks (pointer overrides misalign or alias them on purpose).
struct Call {
  Handle h; const Mat *A, *B, *C, *D;
  int32_t ta = CUBLAS_OP_N, tb = CUBLAS_OP_N;
  float alpha = 1.f, beta = 0.f;
  const void *a = nullptr, *c = nullptr;
  void* d = nullptr;
  const MatmulAlgo* algo = nullptr;
  void* ws = nullptr;
  size_t ws_bytes = 0;
};
int do_call(const Call& k, bool heuristic_only, uint32_t align = 256, int* n = nullptr, MatmulAlgo* algo = nullptr) {
  MatmulDesc desc = make_desc(k.ta, k.tb);
  Layout la(*k.A), lb(*k.B), ld(*k.D);
  MatrixLayout lc = nullptr;
  if (k.C) L.layout_create(&lc, k.C->type, uint64_t(k.C->rows), uint64_t(k.C->cols), k.C->ld);
  int st;
  if (heuristic_only) {
    HeuristicResult res[4];
    int got = -1;
    st = heuristic(k.h, desc, la.l, lb.l, lc ? lc : ld.l, ld.l, align, res, &got);
    if (n) *n = got;
    if (algo && got > 0) *algo = res[0].algo;
  } else {
    st = L.matmul(k.h, desc, &k.alpha, k.a ? k.a : k.A->buf, la.l, k.B->buf, lb.l, &k.beta,
                  k.c ? k.c : (k.C ? k.C->buf : nullptr), lc, k.d ? k.d : k.D->buf, ld.l, k.algo, k.ws, k.ws_bytes,
                  nullptr);
  }
  if (lc) L.layout_destroy(lc);
  L.desc_destroy(desc);
  return st;
}

// D (1 x 1, type t) = alpha * 1 * 1: how alpha * 1 rounds into t.
double rounded(Handle h, int32_t t, float alpha) {
  Mat A(t, 1, 1, 8), B(t, 1, 1, 8), D(t, 1, 1, 8);
  const uint16_t one = t == CUDA_R_16BF ? 0x3f80 : 0x3c00;
  std::memcpy(A.buf, &one, 2), std::memcpy(B.buf, &one, 2);
  Call k{h, &A, &B, nullptr, &D};
  k.alpha = alpha;
  return do_call(k, false) == CUBLAS_STATUS_SUCCESS ? D.at(0, 0) : -1;
}
}  // namespace

int main(int argc, char** argv) {
  const char* path = argc > 1 ? argv[1] : "./libcublasLt_sim.so";
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // lines survive a crash of the library under test
  setenv("LANGNEURONS_SIM_CUBLASLT_QUIET", "1", 1);  // the refusals below are on purpose
  void* so = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!so) return std::fprintf(stderr, "cannot load %s: %s\n", path, dlerror()), 1;
  auto sym = [&](const char* name) {
    void* p = dlsym(so, name);
    if (!p) std::fprintf(stderr, "%s has no symbol %s\n", path, name), std::exit(1);
    return p;
  };
#define LOAD(field, name) L.field = reinterpret_cast<decltype(L.field)>(sym(name))
  LOAD(create, "cublasLtCreate"); LOAD(destroy, "cublasLtDestroy"); LOAD(version, "cublasLtGetVersion");
  LOAD(desc_create, "cublasLtMatmulDescCreate"); LOAD(desc_destroy, "cublasLtMatmulDescDestroy");
  LOAD(desc_set, "cublasLtMatmulDescSetAttribute"); LOAD(layout_create, "cublasLtMatrixLayoutCreate");
  LOAD(layout_destroy, "cublasLtMatrixLayoutDestroy"); LOAD(pref_create, "cublasLtMatmulPreferenceCreate");
  LOAD(pref_destroy, "cublasLtMatmulPreferenceDestroy"); LOAD(pref_set, "cublasLtMatmulPreferenceSetAttribute");
  LOAD(heuristic, "cublasLtMatmulAlgoGetHeuristic"); LOAD(matmul, "cublasLtMatmul");
  check(L.version() >= 130000, "version " + std::to_string(L.version()) + " looks like cuBLASLt 13");
  Handle h = nullptr;
  expect_status("cublasLtCreate", L.create(&h), CUBLAS_STATUS_SUCCESS);
  std::mt19937 rng(12345);

  // Products against the float64 reference. The variants rotate with the case index so that every one meets
  // every shape class without multiplying the count.
  const int64_t sizes[] = {1, 7, 33, 64, 130};
  const float alpha_beta[5][2] = {{1.f, 0.f}, {0.5f, -2.f}, {-1.25f, 1.f}, {0.f, 0.75f}, {2.f, 0.f}};
  struct { int32_t in, out; const char* name; } types[] = {{CUDA_R_32F, CUDA_R_32F, "f32"},
      {CUDA_R_16BF, CUDA_R_32F, "bf16 in, f32 out"}, {CUDA_R_16BF, CUDA_R_16BF, "bf16"},
      {CUDA_R_16F, CUDA_R_32F, "f16 in, f32 out"}, {CUDA_R_16F, CUDA_R_16F, "f16"}};
  for (const auto& t : types) {
    int count = 0, bad = 0;
    std::string first;
    for (int64_t m : sizes) for (int64_t n : sizes) for (int64_t k : sizes) for (int op = 0; op < 4; ++op, ++count) {
      const auto& ab = alpha_beta[count % 5];
      const Case c{m, n, k, op & 1, op >> 1, t.in, t.out, ab[0], ab[1],
                   3 * ((count / 5) % 3), count % 3 == 1, count % 4 == 3};
      std::string why;
      if (!run_case(h, c, rng, false, why) && bad++ == 0)
        first = "m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k) + " transA=" +
                std::to_string(c.ta) + " transB=" + std::to_string(c.tb) + " alpha=" + std::to_string(c.alpha) +
                " beta=" + std::to_string(c.beta) + (c.in_place ? " in place" : "") + ": " + why;
    }
    check(bad == 0, std::string("matmul ") + t.name + ": " + std::to_string(count) + " products match float64",
          std::to_string(bad) + " wrong, first: " + first);
  }
  {  // the comparison can fail: a reference that applies op(A) the other way round is rejected
    std::string why;
    const Case c{7, 5, 7, CUBLAS_OP_T, CUBLAS_OP_N, CUDA_R_32F, CUDA_R_32F, 1.f, 0.f, 0, false, false};
    check(!run_case(h, c, rng, true, why) && why.find("reference") != std::string::npos,
          "a reference with the wrong transpose is rejected");
  }
  // Rounding to nearest even into 16-bit D, overflow, subnormals.
  check(rounded(h, CUDA_R_16BF, 1.f + std::ldexp(1.f, -8)) == 1.0, "bf16 D: a tie rounds to even (down)");
  check(rounded(h, CUDA_R_16BF, 1.f + 3 * std::ldexp(1.f, -8)) == 1.0 + std::ldexp(1.0, -6),
        "bf16 D: a tie rounds to even (up)");
  check(rounded(h, CUDA_R_16F, 1.f + std::ldexp(1.f, -11)) == 1.0, "f16 D: a tie rounds to even (down)");
  check(rounded(h, CUDA_R_16F, 1.f + 3 * std::ldexp(1.f, -11)) == 1.0 + std::ldexp(1.0, -9),
        "f16 D: a tie rounds to even (up)");
  check(std::isinf(rounded(h, CUDA_R_16F, 70000.f)), "f16 D: 70000 overflows to inf");
  check(rounded(h, CUDA_R_16F, 3 * std::ldexp(1.f, -26)) == std::ldexp(1.0, -24), "f16 D: subnormal rounding");

  // Error statuses. A (4 x 3) * B (3 x 5) = D (4 x 5), f32, unless said otherwise.
  const int INV = CUBLAS_STATUS_INVALID_VALUE, NS = CUBLAS_STATUS_NOT_SUPPORTED, OK = CUBLAS_STATUS_SUCCESS;
  Mat A(CUDA_R_32F, 4, 3, 4), B(CUDA_R_32F, 3, 5, 3), D(CUDA_R_32F, 4, 5, 4), C(CUDA_R_32F, 4, 5, 6);
  A.fill(rng), B.fill(rng), C.fill(rng);
  const Call base{h, &A, &B, nullptr, &D};
  expect_status("valid f32 call", do_call(base, false), OK);
  expect_status("cublasLtCreate(NULL)", L.create(nullptr), INV);
  { Call k = base; k.h = nullptr;
    expect_status("NULL handle -> NOT_INITIALIZED", do_call(k, false), CUBLAS_STATUS_NOT_INITIALIZED); }
  {
    Handle gone = nullptr;
    L.create(&gone), L.destroy(gone);
    Call k = base; k.h = gone;
    expect_status("destroyed handle -> NOT_INITIALIZED", do_call(k, true), CUBLAS_STATUS_NOT_INITIALIZED);
    expect_status("handle destroyed twice", L.destroy(gone), CUBLAS_STATUS_NOT_INITIALIZED);
  }
  MatrixLayout l = nullptr;
  expect_status("layout type CUDA_R_8I", L.layout_create(&l, 3, 4, 4, 4), NS);
  expect_status("layout type 99", L.layout_create(&l, 99, 4, 4, 4), NS);
  expect_status("layout negative ld", L.layout_create(&l, CUDA_R_32F, 4, 4, -4), INV);
  expect_status("layout destroy(NULL)", L.layout_destroy(nullptr), OK);
  L.layout_create(&l, CUDA_R_32F, 4, 4, 4), L.layout_destroy(l);
  expect_status("layout destroyed twice", L.layout_destroy(l), INV);
  MatmulDesc desc = nullptr;
  expect_status("compute 32F_FAST_TF32", L.desc_create(&desc, 77, CUDA_R_32F), NS);
  expect_status("scale type 16BF with compute 32F", L.desc_create(&desc, CUBLAS_COMPUTE_32F, CUDA_R_16BF), NS);
  L.desc_create(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F);
  const int32_t i32_two = 2, i32_seven = 7, i32_one = 1;
  const int64_t i64_one = 1;
  expect_status("TRANSA given 8 bytes", L.desc_set(desc, CUBLASLT_MATMUL_DESC_TRANSA, &i64_one, 8), INV);
  expect_status("TRANSA = 7", L.desc_set(desc, CUBLASLT_MATMUL_DESC_TRANSA, &i32_seven, 4), INV);
  expect_status("TRANSB buf NULL", L.desc_set(desc, CUBLASLT_MATMUL_DESC_TRANSB, nullptr, 4), INV);
  expect_status("POINTER_MODE_DEVICE", L.desc_set(desc, CUBLASLT_MATMUL_DESC_POINTER_MODE, &i32_one, 4), NS);
  expect_status("EPILOGUE_RELU", L.desc_set(desc, 7, &i32_two, 4), NS);
  expect_status("BIAS_POINTER attribute", L.desc_set(desc, 8, &i64_one, 8), NS);
  expect_status("unknown desc attribute 12345", L.desc_set(desc, 12345, &i32_one, 4), NS);
  L.desc_destroy(desc);
  expect_status("desc used after destroy", L.desc_set(desc, CUBLASLT_MATMUL_DESC_TRANSA, &i32_one, 4), INV);
  Preference pref = nullptr;
  L.pref_create(&pref);
  const uint32_t u32_three = 3, u32_one = 1;
  const uint64_t u64_16 = 16;
  expect_status("MAX_WORKSPACE_BYTES given 4 bytes",
                L.pref_set(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &u32_one, 4), INV);
  expect_status("MIN_ALIGNMENT given 8 bytes", L.pref_set(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &u64_16, 8),
                INV);
  expect_status("MIN_ALIGNMENT 3", L.pref_set(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &u32_three, 4), INV);
  expect_status("SEARCH_MODE LIMITED_BY_ALGO_ID", L.pref_set(pref, CUBLASLT_MATMUL_PREF_SEARCH_MODE, &u32_one, 4), NS);
  expect_status("MAX_WAVES_COUNT attribute", L.pref_set(pref, 9, &u32_one, 4), NS);
  L.pref_destroy(pref);

  { Mat bad(CUDA_R_32F, 4, 3, 3); Call k = base; k.A = &bad;
    expect_status("ld < rows (heuristic)", do_call(k, true), INV);
    expect_status("ld < rows (matmul)", do_call(k, false), INV); }
  { Mat b2(CUDA_R_32F, 2, 5, 2); Call k = base; k.B = &b2;
    expect_status("k of op(B) != k of op(A)", do_call(k, false), INV); }
  { Mat d2(CUDA_R_32F, 5, 4, 5); Call k = base; k.D = &d2; expect_status("D not m x n", do_call(k, false), INV); }
  { Call k = base; k.ta = CUBLAS_OP_T;
    expect_status("TRANSA = T makes op(A) 3 x 4: mismatch", do_call(k, false), INV); }
  { Call k = base; k.ta = CUBLAS_OP_T; k.tb = CUBLAS_OP_T; Mat a(CUDA_R_32F, 3, 4, 3), b(CUDA_R_32F, 5, 3, 5);
    a.fill(rng), b.fill(rng); k.A = &a, k.B = &b;
    expect_status("TRANSA = TRANSB = T with matching shapes", do_call(k, false), OK); }
  { Mat b16(CUDA_R_16BF, 3, 5, 8); Call k = base; k.B = &b16;
    expect_status("A f32 with B bf16", do_call(k, false), NS); }
  { Mat d16(CUDA_R_16BF, 4, 5, 8); Call k = base; k.D = &d16;
    expect_status("f32 inputs, bf16 D", do_call(k, false), NS); }
  Mat A16(CUDA_R_16BF, 4, 3, 8), B16(CUDA_R_16BF, 3, 5, 8), D16(CUDA_R_16BF, 4, 5, 8);
  A16.fill(rng), B16.fill(rng);
  { Call k = base; k.A = &A16, k.B = &B16, k.C = &C, k.D = &D16, k.beta = 1.f;
    expect_status("C f32 with D bf16", do_call(k, false), NS); }
  int n = -1;
  MatmulAlgo algo16{}, algo32{};
  const Call b16{h, &A16, &B16, nullptr, &D16};
  expect_status("bf16 heuristic, 16-byte ld and alignment", do_call(b16, true, 16, &n, &algo16), OK);
  check(n == 1, "the heuristic returns one algorithm");
  expect_status("bf16 heuristic allowed 8-byte alignment", do_call(b16, true, 8, &n), NS);
  check(n == 0, "no algorithm -> returnAlgoCount 0");
  expect_status("f32 heuristic allowed 4-byte alignment", do_call(base, true, 4, &n, &algo32), OK);
  { Mat a7(CUDA_R_16BF, 7, 3, 7), d7(CUDA_R_16BF, 7, 5, 8); a7.fill(rng); Call k = b16; k.A = &a7, k.D = &d7;
    expect_status("bf16 ld 7 (14 bytes): heuristic", do_call(k, true, 256, &n), NS);
    expect_status("bf16 ld 7 (14 bytes): matmul with algo NULL", do_call(k, false), NS); }
  { Call k = b16; k.algo = &algo16; expect_status("matmul with the heuristic's algo", do_call(k, false), OK);
    k.a = A16.buf + 2; expect_status("A 2-byte aligned with a 16-byte algo", do_call(k, false), NS); }
  { Call k = b16; MatmulAlgo zero{}; k.algo = &zero; expect_status("zeroed algo", do_call(k, false), INV);
    k.algo = &algo32; expect_status("f32 algo on bf16 matrices", do_call(k, false), INV); }
  { const float zero_f = 0.f; int dummy = 0; HeuristicResult r[1]; Preference p;
    MatmulDesc dd = make_desc(0, 0); Layout la(A), lb(B), ld(D);
    L.pref_create(&p);
    expect_status("heuristic requestedAlgoCount 0", L.heuristic(h, dd, la.l, lb.l, ld.l, ld.l, p, 0, r, &dummy), INV);
    expect_status("heuristic NULL desc", L.heuristic(h, nullptr, la.l, lb.l, ld.l, ld.l, p, 1, r, &dummy), INV);
    expect_status("matmul NULL alpha", L.matmul(h, dd, nullptr, A.buf, la.l, B.buf, lb.l, &zero_f, nullptr, nullptr,
                                                D.buf, ld.l, nullptr, nullptr, 0, nullptr), INV);
    L.pref_destroy(p), L.desc_destroy(dd); }
  { Call k = base; k.C = &C; k.c = nullptr; k.beta = 1.f; expect_status("beta 1, C given", do_call(k, false), OK);
    k.C = nullptr; expect_status("beta 1, C NULL", do_call(k, false), INV);
    k.beta = 0.f; expect_status("beta 0, C and Cdesc NULL", do_call(k, false), OK); }
  { Mat sq(CUDA_R_32F, 4, 4, 4), b4(CUDA_R_32F, 4, 4, 4); sq.fill(rng), b4.fill(rng); Call k{h, &sq, &b4, nullptr, &sq};
    expect_status("D aliases A", do_call(k, false), INV); }
  { Mat wide(CUDA_R_32F, 8, 3, 8); wide.fill(rng); Mat top(CUDA_R_32F, 4, 3, 8), bottom(CUDA_R_32F, 4, 5, 8);
    Call k = base; k.A = &top, k.D = &bottom, k.a = wide.buf, k.d = wide.buf + 16;
    Mat b(CUDA_R_32F, 3, 3, 3); b.fill(rng); k.B = &b; bottom.cols = 3;  // D = rows 4..7 of the buffer holding A
    expect_status("D interleaved with A (disjoint rows of one buffer)", do_call(k, false), OK);
    k.d = wide.buf + 8; expect_status("D overlapping A by two rows", do_call(k, false), INV); }
  { Mat cd(CUDA_R_32F, 4, 5, 6); cd.fill(rng);
    Call k = base; k.C = &C, k.D = &D, k.c = cd.buf, k.d = cd.buf, k.beta = 1.f;
    expect_status("C == D with ldc 6 != ldd 4", do_call(k, false), INV);
    k.D = &C, k.d = cd.buf + 4; expect_status("D one element past C (overlapping)", do_call(k, false), INV);
    k.beta = 0.f; expect_status("the same with beta 0 (C not read)", do_call(k, false), OK); }
  {  // documented: out of place, ldc = 0 broadcasts C's first column to every column
    Mat col(CUDA_R_32F, 4, 5, 0), D0(CUDA_R_32F, 4, 5, 4);
    col.fill(rng);
    Call k = base; k.C = &col, k.beta = 1.f;
    expect_status("ldc 0 (broadcast C) out of place", do_call(k, false), OK);
    Call k0 = base; k0.D = &D0;
    do_call(k0, false);
    double worst = 0;
    for (int64_t j = 0; j < 5; ++j)
      for (int64_t i = 0; i < 4; ++i) worst = std::max(worst, std::fabs(D.at(i, j) - D0.at(i, j) - col.at(i, 0)));
    check(worst < 1e-5, "ldc 0: D = A B + C[:, 0] in every column", "error " + std::to_string(worst));
    k.D = &col, k.d = col.buf; expect_status("ldc 0 in place (C == D)", do_call(k, false), INV); }
  { Call k = base; alignas(256) static unsigned char ws[512]; k.ws = ws + 8, k.ws_bytes = 64;
    expect_status("workspace not 256-byte aligned", do_call(k, false), INV);
    k.ws = ws; expect_status("workspace 256-byte aligned", do_call(k, false), OK); }
  expect_status("cublasLtDestroy", L.destroy(h), OK);
  std::printf("%s\n", g_failures ? "FAILED" : "all passed");
  return g_failures ? 1 : 0;
}
