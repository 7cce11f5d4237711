// A stand-in cuBLASLt for the CPU simulator of CUDA (device memory = host memory): the 13 entry points that
// native/src/cuda/cublaslt_loader.cpp dlsym's, with the signatures of native/src/cuda/cublaslt_api.h, computing on
// the CPU. A matmul is checked when it is called and computed in the order of its stream, as on a GPU: queued on
// the simulator's stream (sim_stream_abi.h) with cudaLaunchHostFunc, at once on the NULL stream (then the caller
// must have waited for the work it reads; tests of this library alone have no simulator). It follows the
// documented cuBLASLt semantics, not the way our loader happens to call it, so that the simulator catches misuse:
//   * layouts are column-major (CUBLASLT_ORDER_COL, the default): element (i, j) at i + j * ld, ld >= rows;
//   * D = alpha * op(A) * op(B) + beta * C, op from CUBLASLT_MATMUL_DESC_TRANSA / TRANSB (default CUBLAS_OP_N);
//     op(A) is m x k, op(B) k x n, C and D m x n, else CUBLAS_STATUS_INVALID_VALUE;
//   * compute CUBLAS_COMPUTE_32F (or 32F_PEDANTIC), scale CUDA_R_32F, alpha / beta host floats (POINTER_MODE_HOST);
//     A and B of one type: 32F (C/D 32F), 16F (C/D 16F or 32F), 16BF (C/D 16BF or 32F); C and D of one type;
//   * beta == 0: C is not read (it may hold NaNs or be NULL), as in cuBLAS;
//   * C == D (in place) needs C's and D's layouts equal; otherwise C and D must not overlap. The leading dimension
//     of C may be 0 out of place (documented row / column broadcast). D overlapping A or B is refused (a race on
//     a GPU): CUBLAS_STATUS_INVALID_VALUE. Cdesc NULL in cublasLtMatmul means Cdesc = Ddesc (documented).
// Numerics: 16-bit inputs are widened to float exactly; each D element is a float sum over k in increasing k
// (products rounded to float, which is exact for 16-bit inputs; the compiler may fuse the multiply-add), then
// alpha * sum + beta * C in float, rounded to nearest-even into D's type. This matches a GPU's float
// accumulation within the usual k * 2^-24 bound, not bit for bit (tensor cores sum in another order).
// Algorithms (simulation choice, documented here): there is one "tensor-core-like" algorithm. It needs, for
// every 16-bit matrix, 16-byte alignment of the pointer and of ld * 2 bytes, and for float matrices 4 bytes.
// cublasLtMatmulAlgoGetHeuristic returns it (1 result, state SUCCESS, workspaceSize 0) when the layouts meet
// that and the preference's CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_*_BYTES (default 256) are at least that; else it
// returns CUBLAS_STATUS_NOT_SUPPORTED with *returnAlgoCount = 0, as the real library does when no algorithm fits
// (cuBLASLt documents NOT_SUPPORTED for "no heuristic function available for current configuration"; a real
// GPU may still find a slower non-tensor-core kernel, so on hardware fewer shapes fall back). cublasLtMatmul with
// that algorithm re-checks the pointers' actual alignment (NOT_SUPPORTED if lower than required: on a GPU a
// misaligned-address fault or an error); with algo == NULL it runs the same heuristic on the actual pointers.
// Objects are tracked: a destroyed, doubly destroyed or foreign handle is NOT_INITIALIZED, such a descriptor,
// layout or preference INVALID_VALUE; a workspace of > 0 bytes must be 256-byte aligned (documented), else
// INVALID_VALUE. cublasLtGetVersion says 13.99.00, a version no real cuBLASLt has, so logs show the sim was loaded.
// Every rejection also prints one line to stderr ("fake_cublaslt: ...") unless LANGNEURONS_SIM_CUBLASLT_QUIET=1.
// Anything not implemented (other types, compute types, pointer modes, epilogues, attributes) is refused with
// CUBLAS_STATUS_NOT_SUPPORTED, malformed arguments (wrong attribute size, NULL pointers) with INVALID_VALUE.
// Build (one line): g++ -std=c++17 -O2 -Wall -Wextra -shared -fPIC -fvisibility=hidden -I native/src
//   -o libcublasLt_sim.so native/cuda_sim/fake_cublaslt.cpp
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <type_traits>
#include <unordered_set>
#include <vector>

#include "cuda/cublaslt_api.h"
#include "sim_stream_abi.h"

namespace {
using namespace ln::cublaslt;

constexpr uint64_t kAlgoMagic = 0x4c5341424d495346ull;  // "FSIMBASL": marks algorithms this library made
constexpr int kTransposeC = 5, kEpilogue = 7;           // cublasLtMatmulDescAttributes_t, not in our header
constexpr uint32_t kEpilogueDefault = 1;                // CUBLASLT_EPILOGUE_DEFAULT
constexpr int kSearchBestFit = 0, kSearchByAlgoId = 1;  // cublasLtMatmulSearch_t
constexpr int kInvalid = CUBLAS_STATUS_INVALID_VALUE, kNotSupported = CUBLAS_STATUS_NOT_SUPPORTED;

struct SimContext { int unused = 0; };
struct SimDesc { int32_t compute, scale, trans_a = CUBLAS_OP_N, trans_b = CUBLAS_OP_N; };
struct SimLayout { int32_t type; uint64_t rows, cols; int64_t ld; };
struct SimPref { uint64_t max_workspace = 0; uint32_t align[4] = {256, 256, 256, 256}; };  // A, B, C, D

// Live objects of each kind, so that use after destroy, double destroy and foreign pointers are caught
// (the real library would crash or read garbage).
enum Kind { kHandle, kDesc, kLayout, kPref };
std::mutex g_mu;
std::unordered_set<const void*> g_live[4];
bool live(Kind k, const void* p) { std::lock_guard<std::mutex> l(g_mu); return p && g_live[k].count(p); }
void add_live(Kind k, const void* p) { std::lock_guard<std::mutex> l(g_mu); g_live[k].insert(p); }
bool remove_live(Kind k, const void* p) { std::lock_guard<std::mutex> l(g_mu); return g_live[k].erase(p) == 1; }

int fail(int status, const char* fn, const char* fmt, ...) {
  const char* quiet = std::getenv("LANGNEURONS_SIM_CUBLASLT_QUIET");
  if (quiet && std::strcmp(quiet, "1") == 0) return status;
  std::fprintf(stderr, "fake_cublaslt: %s: ", fn);
  va_list ap;
  va_start(ap, fmt);
  std::vfprintf(stderr, fmt, ap);
  va_end(ap);
  std::fprintf(stderr, " (status %d)\n", status);
  return status;
}

size_t elem_size(int32_t t) { return t == CUDA_R_32F ? 4 : 2; }
bool known_type(int32_t t) { return t == CUDA_R_32F || t == CUDA_R_16F || t == CUDA_R_16BF; }
uint32_t required_align(int32_t t) { return t == CUDA_R_32F ? 4 : 16; }
uint32_t pointer_align(const void* p) {  // largest power of two <= 256 dividing the address
  uint32_t a = 256;
  while (a > 1 && reinterpret_cast<uintptr_t>(p) % a) a >>= 1;
  return a;
}

float bf16_to_float(uint16_t h) { uint32_t x = uint32_t(h) << 16; float f; std::memcpy(&f, &x, 4); return f; }
uint16_t float_to_bf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return uint16_t((x >> 16) | 0x40);  // NaN stays a (quiet) NaN
  x += 0x7fffu + ((x >> 16) & 1);                                          // round to nearest even
  return uint16_t(x >> 16);
}
float f16_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e == 0) return std::copysign(std::ldexp(float(m), -24), sign ? -1.f : 1.f);  // zero or subnormal
  const uint32_t x = e == 31 ? (sign | 0x7f800000u | (m << 13)) : (sign | ((e + 112) << 23) | (m << 13));
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}
uint16_t float_to_f16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint16_t sign = uint16_t((x >> 16) & 0x8000);
  const uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return sign | 0x7e00;    // NaN
  if (ax >= 0x477ff000u) return sign | 0x7c00;   // >= 65520 (and inf) rounds to inf
  if (ax < 0x38800000u)                          // below 2^-14: multiples of 2^-24, nearest even (x 2^24 exact)
    return sign | uint16_t(std::nearbyint(std::fabs(f) * 16777216.f));
  uint32_t h = (((ax >> 23) - 112) << 10) | ((ax >> 13) & 0x3ff);
  const uint32_t rest = ax & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) ++h;  // a carry into the exponent is correct rounding
  return sign | uint16_t(h);
}

float load(const void* p, int32_t t, int64_t i) {
  if (t == CUDA_R_32F) return static_cast<const float*>(p)[i];
  const uint16_t h = static_cast<const uint16_t*>(p)[i];
  return t == CUDA_R_16BF ? bf16_to_float(h) : f16_to_float(h);
}
void store(void* p, int32_t t, int64_t i, float v) {
  if (t == CUDA_R_32F) static_cast<float*>(p)[i] = v;
  else static_cast<uint16_t*>(p)[i] = t == CUDA_R_16BF ? float_to_bf16(v) : float_to_f16(v);
}

struct Problem { int64_t m, n, k; const SimLayout *a, *b, *c, *d; };

// The checks shared by the heuristic and the matmul: types, shapes, leading dimensions.
int check_problem(const char* fn, const SimDesc& desc, const SimLayout* a, const SimLayout* b, const SimLayout* c,
                  const SimLayout* d, bool in_place, Problem& p) {
  if (a->type != b->type) return fail(kNotSupported, fn, "A type %d != B type %d", a->type, b->type);
  if (c->type != d->type) return fail(kNotSupported, fn, "C type %d != D type %d", c->type, d->type);
  if (d->type != CUDA_R_32F && d->type != a->type)
    return fail(kNotSupported, fn, "A/B type %d with C/D type %d (compute 32F)", a->type, d->type);
  for (const SimLayout* l : {a, b, c, d})
    if (l->rows > 0x7fffffffu || l->cols > 0x7fffffffu)
      return fail(kNotSupported, fn, "rows / cols beyond int32");
  p = {desc.trans_a ? int64_t(a->cols) : int64_t(a->rows), desc.trans_b ? int64_t(b->rows) : int64_t(b->cols),
       desc.trans_a ? int64_t(a->rows) : int64_t(a->cols), a, b, c, d};
  const int64_t kb = desc.trans_b ? int64_t(b->cols) : int64_t(b->rows);
  if (kb != p.k) return fail(kInvalid, fn, "op(A) is %lld x %lld but op(B) is %lld x %lld",
                             (long long)p.m, (long long)p.k, (long long)kb, (long long)p.n);
  for (const SimLayout* l : {c, d})
    if (int64_t(l->rows) != p.m || int64_t(l->cols) != p.n)
      return fail(kInvalid, fn, "%s is %llu x %llu, op(A) op(B) is %lld x %lld", l == d ? "D" : "C",
                  (unsigned long long)l->rows, (unsigned long long)l->cols, (long long)p.m, (long long)p.n);
  const char* names = "ABCD";
  const SimLayout* ls[4] = {a, b, c, d};
  for (int i = 0; i < 4; ++i) {
    const bool broadcast_c = i == 2 && !in_place && ls[i]->ld == 0;
    if (ls[i]->ld < int64_t(ls[i]->rows) && !broadcast_c)
      return fail(kInvalid, fn, "ld of %c is %lld < rows %llu", names[i], (long long)ls[i]->ld,
                  (unsigned long long)ls[i]->rows);
  }
  if (in_place && c->ld != d->ld)
    return fail(kInvalid, fn, "C == D (in place) with ldc %lld != ldd %lld", (long long)c->ld,
                (long long)d->ld);
  return CUBLAS_STATUS_SUCCESS;
}

// The one algorithm: which alignment it needs per matrix; NOT_SUPPORTED (no algorithm) when a 16-bit matrix's
// ld is not a multiple of 16 bytes or the caller allows less alignment than it needs.
int fit_algorithm(const char* fn, const Problem& p, const uint32_t allowed[4], MatmulAlgo* algo) {
  const SimLayout* ls[4] = {p.a, p.b, p.c, p.d};
  uint64_t needs = 0;
  for (int i = 0; i < 4; ++i) {
    const uint32_t req = required_align(ls[i]->type);
    if ((uint64_t(ls[i]->ld) * elem_size(ls[i]->type)) % req != 0 || allowed[i] < req)
      return fail(kNotSupported, fn, "no algorithm: %c needs %u-byte alignment (ld %lld, allowed %u)",
                  "ABCD"[i], req, (long long)ls[i]->ld, allowed[i]);
    needs |= uint64_t(req) << (16 * i);
  }
  std::memset(algo, 0, sizeof *algo);
  algo->data[0] = kAlgoMagic;
  algo->data[1] = needs;
  algo->data[2] = uint64_t(uint32_t(p.a->type)) | uint64_t(uint32_t(p.d->type)) << 32;
  return CUBLAS_STATUS_SUCCESS;
}

const SimDesc* as_desc(MatmulDesc d) { return live(kDesc, d) ? reinterpret_cast<const SimDesc*>(d) : nullptr; }
const SimLayout* as_layout(MatrixLayout l) {
  return live(kLayout, l) ? reinterpret_cast<const SimLayout*>(l) : nullptr;
}

int64_t extent(const SimLayout& l) {  // elements from the first to one past the last
  return l.rows == 0 || l.cols == 0 ? 0 : int64_t(l.cols - 1) * l.ld + int64_t(l.rows);
}
// Whether two column-major matrices share a byte (not just their bounding ranges: a matrix may be a column
// block of a wider buffer that another one interleaves with).
bool overlaps(const void* x, const SimLayout& lx, const void* y, const SimLayout& ly) {
  const intptr_t x0 = intptr_t(x), y0 = intptr_t(y);
  const int64_t xs = lx.ld * int64_t(elem_size(lx.type)), ys = ly.ld * int64_t(elem_size(ly.type));
  const int64_t xlen = int64_t(lx.rows * elem_size(lx.type)), ylen = int64_t(ly.rows * elem_size(ly.type));
  if (extent(lx) == 0 || extent(ly) == 0) return false;
  if (x0 + extent(lx) * int64_t(elem_size(lx.type)) <= y0 || y0 + extent(ly) * int64_t(elem_size(ly.type)) <= x0)
    return false;
  for (uint64_t j = 0; j < lx.cols; ++j) {  // column j of X is [s, s + xlen); Y's columns are sorted intervals
    const int64_t s = x0 + int64_t(j) * xs - y0;
    int64_t first = 0;  // first column of Y that ends after s
    if (ys > 0) first = s - ylen < 0 ? 0 : (s - ylen) / ys + 1;
    if (first < int64_t(ly.cols) && first * ys < s + xlen && first * ys + ylen > s) return true;
  }
  return false;
}

// Create: a new Sim object, registered as live, returned as the API's opaque pointer type.
template <class Sim, class Out>
int create(Kind kind, Out* out, const char* fn, Sim init) {
  if (!out) return fail(kInvalid, fn, "output pointer is NULL");
  Sim* o = new (std::nothrow) Sim(init);
  if (!o) return CUBLAS_STATUS_ALLOC_FAILED;
  add_live(kind, o);
  *out = reinterpret_cast<Out>(o);
  return CUBLAS_STATUS_SUCCESS;
}
// Destroy: NULL is fine (as free); a pointer that is not live (destroyed twice, foreign) is refused.
template <class Sim>
int destroy(Kind kind, void* p, const char* fn) {
  if (!p && kind != kHandle) return CUBLAS_STATUS_SUCCESS;
  if (!remove_live(kind, p))
    return fail(kind == kHandle ? CUBLAS_STATUS_NOT_INITIALIZED : kInvalid, fn, "not a live object");
  delete static_cast<Sim*>(p);
  return CUBLAS_STATUS_SUCCESS;
}
}  // namespace

#define SIM_EXPORT extern "C" __attribute__((visibility("default")))

SIM_EXPORT int cublasLtCreate(Handle* handle) { return create(kHandle, handle, "cublasLtCreate", SimContext{}); }
SIM_EXPORT int cublasLtDestroy(Handle handle) { return destroy<SimContext>(kHandle, handle, "cublasLtDestroy"); }
// 13.99.00: a version no real cuBLASLt has, so logs show that the simulator's library was loaded.
SIM_EXPORT size_t cublasLtGetVersion() { return 139900; }

SIM_EXPORT int cublasLtMatmulDescCreate(MatmulDesc* desc, int32_t compute_type, int32_t scale_type) {
  const char* fn = "cublasLtMatmulDescCreate";
  if (compute_type != CUBLAS_COMPUTE_32F && compute_type != CUBLAS_COMPUTE_32F_PEDANTIC)
    return fail(kNotSupported, fn, "compute type %d (the sim has 32F and 32F_PEDANTIC)", compute_type);
  if (scale_type != CUDA_R_32F) return fail(kNotSupported, fn, "scale type %d with compute 32F", scale_type);
  return create(kDesc, desc, fn, SimDesc{compute_type, scale_type});
}
SIM_EXPORT int cublasLtMatmulDescDestroy(MatmulDesc desc) {
  return destroy<SimDesc>(kDesc, desc, "cublasLtMatmulDescDestroy");
}
SIM_EXPORT int cublasLtMatmulDescSetAttribute(MatmulDesc desc, int32_t attr, const void* buf, size_t size) {
  const char* fn = "cublasLtMatmulDescSetAttribute";
  if (!live(kDesc, desc)) return fail(kInvalid, fn, "not a live desc");
  if (!buf) return fail(kInvalid, fn, "buf is NULL");
  SimDesc& d = *reinterpret_cast<SimDesc*>(desc);
  const bool known = attr == CUBLASLT_MATMUL_DESC_COMPUTE_TYPE || attr == CUBLASLT_MATMUL_DESC_SCALE_TYPE ||
                     attr == CUBLASLT_MATMUL_DESC_POINTER_MODE || attr == CUBLASLT_MATMUL_DESC_TRANSA ||
                     attr == CUBLASLT_MATMUL_DESC_TRANSB || attr == kTransposeC || attr == kEpilogue;
  if (!known) return fail(kNotSupported, fn, "attribute %d not implemented by the sim", attr);
  if (size != 4) return fail(kInvalid, fn, "attribute %d is 4 bytes, got %zu", attr, size);
  int32_t v;
  std::memcpy(&v, buf, 4);
  switch (attr) {
    case CUBLASLT_MATMUL_DESC_COMPUTE_TYPE:
      if (v != CUBLAS_COMPUTE_32F && v != CUBLAS_COMPUTE_32F_PEDANTIC)
        return fail(kNotSupported, fn, "compute type %d", v);
      d.compute = v;
      return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_SCALE_TYPE:
      if (v != CUDA_R_32F) return fail(kNotSupported, fn, "scale type %d", v);
      return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_POINTER_MODE:
      if (v != 0) return fail(kNotSupported, fn, "pointer mode %d (the sim has HOST only)", v);
      return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_TRANSA:
    case CUBLASLT_MATMUL_DESC_TRANSB:
      if (v == 2) return fail(kNotSupported, fn, "CUBLAS_OP_C not implemented by the sim");
      if (v != CUBLAS_OP_N && v != CUBLAS_OP_T) return fail(kInvalid, fn, "operation %d", v);
      (attr == CUBLASLT_MATMUL_DESC_TRANSA ? d.trans_a : d.trans_b) = v;
      return CUBLAS_STATUS_SUCCESS;
    case kTransposeC:  // documented: only CUBLAS_OP_N
      return v == CUBLAS_OP_N ? CUBLAS_STATUS_SUCCESS : fail(kNotSupported, fn, "TRANSC %d", v);
    default:  // kEpilogue
      return uint32_t(v) == kEpilogueDefault ? CUBLAS_STATUS_SUCCESS
                                             : fail(kNotSupported, fn, "epilogue %d", v);
  }
}

SIM_EXPORT int cublasLtMatrixLayoutCreate(MatrixLayout* layout, int32_t type, uint64_t rows, uint64_t cols,
                                          int64_t ld) {
  const char* fn = "cublasLtMatrixLayoutCreate";
  if (!known_type(type)) return fail(kNotSupported, fn, "data type %d (the sim has 32F, 16F, 16BF)", type);
  if (ld < 0) return fail(kInvalid, fn, "negative ld %lld", (long long)ld);
  return create(kLayout, layout, fn, SimLayout{type, rows, cols, ld});
}
SIM_EXPORT int cublasLtMatrixLayoutDestroy(MatrixLayout layout) {
  return destroy<SimLayout>(kLayout, layout, "cublasLtMatrixLayoutDestroy");
}

SIM_EXPORT int cublasLtMatmulPreferenceCreate(Preference* pref) {
  return create(kPref, pref, "cublasLtMatmulPreferenceCreate", SimPref{});
}
SIM_EXPORT int cublasLtMatmulPreferenceDestroy(Preference pref) {
  return destroy<SimPref>(kPref, pref, "cublasLtMatmulPreferenceDestroy");
}
SIM_EXPORT int cublasLtMatmulPreferenceSetAttribute(Preference pref, int32_t attr, const void* buf, size_t size) {
  const char* fn = "cublasLtMatmulPreferenceSetAttribute";
  if (!live(kPref, pref)) return fail(kInvalid, fn, "not a live preference");
  if (!buf) return fail(kInvalid, fn, "buf is NULL");
  SimPref& p = *reinterpret_cast<SimPref*>(pref);
  if (attr == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES) {  // uint64_t
    if (size != 8) return fail(kInvalid, fn, "MAX_WORKSPACE_BYTES is 8 bytes, got %zu", size);
    std::memcpy(&p.max_workspace, buf, 8);
    return CUBLAS_STATUS_SUCCESS;
  }
  const bool align =
      attr >= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES && attr <= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES;
  if (!align && attr != CUBLASLT_MATMUL_PREF_SEARCH_MODE)
    return fail(kNotSupported, fn, "attribute %d not implemented by the sim", attr);
  if (size != 4) return fail(kInvalid, fn, "attribute %d is 4 bytes (uint32_t), got %zu", attr, size);
  uint32_t v;
  std::memcpy(&v, buf, 4);
  if (!align) {
    if (v == kSearchBestFit) return CUBLAS_STATUS_SUCCESS;
    return fail(v == kSearchByAlgoId ? kNotSupported : kInvalid, fn, "search mode %u", v);
  }
  if (v == 0 || (v & (v - 1))) return fail(kInvalid, fn, "alignment %u is not a power of two", v);
  p.align[attr - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES] = v;
  return CUBLAS_STATUS_SUCCESS;
}

SIM_EXPORT int cublasLtMatmulAlgoGetHeuristic(Handle handle, MatmulDesc desc, MatrixLayout a, MatrixLayout b,
                                              MatrixLayout c, MatrixLayout d, Preference pref, int requested,
                                              HeuristicResult* results, int* returned) {
  const char* fn = "cublasLtMatmulAlgoGetHeuristic";
  if (returned) *returned = 0;
  if (!live(kHandle, handle)) return fail(CUBLAS_STATUS_NOT_INITIALIZED, fn, "not a live handle");
  const SimDesc* sd = as_desc(desc);
  const SimLayout *la = as_layout(a), *lb = as_layout(b), *lc = as_layout(c), *ld = as_layout(d);
  if (!sd || !la || !lb || !lc || !ld || !live(kPref, pref))
    return fail(kInvalid, fn, "desc, a layout or the preference is NULL or not live");
  if (requested <= 0 || !results || !returned)
    return fail(kInvalid, fn, "requestedAlgoCount %d, results / returnAlgoCount NULL?", requested);
  Problem p;
  if (int st = check_problem(fn, *sd, la, lb, lc, ld, c == d, p)) return st;
  std::memset(&results[0], 0, sizeof results[0]);
  if (int st = fit_algorithm(fn, p, reinterpret_cast<const SimPref*>(pref)->align, &results[0].algo)) return st;
  results[0].workspaceSize = 0;
  results[0].state = CUBLAS_STATUS_SUCCESS;
  results[0].wavesCount = 1.f;
  *returned = 1;
  return CUBLAS_STATUS_SUCCESS;
}

// One matmul as queued: copies of what the call described (the caller may destroy its descriptors at once).
struct Matmul {
  SimDesc desc;
  SimLayout a, b, c, d;
  int64_t m, n, k;
  float alpha, beta;
  const void *A, *B, *C;
  void* D;
};
// Runs and frees a queued matmul (a cudaHostFn_t: no CUDA call, no exception out).
void run_matmul(void* data) {
  std::unique_ptr<Matmul> job(static_cast<Matmul*>(data));
  const Matmul& mm = *job;
  const SimDesc* sd = &mm.desc;
  const SimLayout *la = &mm.a, *lb = &mm.b, *lc = &mm.c, *ld = &mm.d;
  const float al = mm.alpha, be = mm.beta;
  const void *A = mm.A, *B = mm.B, *C = mm.C;
  void* D = mm.D;
  try {
    const int64_t m = mm.m, n = mm.n, k = mm.k;
    // op(A) row-major (m x k) and op(B) column by column (n x k), as floats: each D element is then one dot product.
    static thread_local std::vector<float> opa, opb;
    opa.resize(size_t(m * k));
    opb.resize(size_t(n * k));
    for (int64_t i = 0; i < m; ++i)
      for (int64_t kk = 0; kk < k; ++kk)
        opa[size_t(i * k + kk)] = load(A, la->type, sd->trans_a ? kk + i * la->ld : i + kk * la->ld);
    for (int64_t j = 0; j < n; ++j)
      for (int64_t kk = 0; kk < k; ++kk)
        opb[size_t(j * k + kk)] = load(B, lb->type, sd->trans_b ? j + kk * lb->ld : kk + j * lb->ld);
    for (int64_t j = 0; j < n; ++j)
      for (int64_t i = 0; i < m; ++i) {
        const float* x = opa.data() + i * k;
        const float* y = opb.data() + j * k;
        float acc = 0.f;
        for (int64_t kk = 0; kk < k; ++kk) acc += x[kk] * y[kk];
        float r = al * acc;
        if (be != 0.f) r += be * load(C, lc->type, i + j * lc->ld);  // beta == 0: C is not read
        store(D, ld->type, i + j * ld->ld, r);
      }
  } catch (const std::exception& e) {  // no exception may cross the C interface; D is left as it was
    fail(CUBLAS_STATUS_ALLOC_FAILED, "cublasLtMatmul", "out of host memory (%s)", e.what());
  }
}

SIM_EXPORT int cublasLtMatmul(Handle handle, MatmulDesc desc, const void* alpha, const void* A, MatrixLayout a,
                              const void* B, MatrixLayout b, const void* beta, const void* C, MatrixLayout c, void* D,
                              MatrixLayout d, const MatmulAlgo* algo, void* workspace, size_t workspace_bytes,
                              void* stream) {
  const char* fn = "cublasLtMatmul";
  if (!live(kHandle, handle)) return fail(CUBLAS_STATUS_NOT_INITIALIZED, fn, "not a live handle");
  if (!c) c = d;  // documented: Cdesc NULL means Cdesc = Ddesc
  const SimDesc* sd = as_desc(desc);
  const SimLayout *la = as_layout(a), *lb = as_layout(b), *lc = as_layout(c), *ld = as_layout(d);
  if (!sd || !la || !lb || !lc || !ld) return fail(kInvalid, fn, "desc or a layout is NULL or not live");
  if (!alpha || !beta) return fail(kInvalid, fn, "alpha or beta is NULL");
  const float al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
  if (!A || !B || !D || (be != 0.f && !C)) return fail(kInvalid, fn, "A, B, D or C (beta != 0) is NULL");
  if (workspace_bytes > 0 && (!workspace || pointer_align(workspace) < 256))
    return fail(kInvalid, fn, "workspace of %zu bytes is NULL or not 256-byte aligned", workspace_bytes);
  const bool in_place = C == D && be != 0.f;
  Problem p;
  if (int st = check_problem(fn, *sd, la, lb, lc, ld, C == D, p)) return st;
  if (overlaps(D, *ld, A, *la) || overlaps(D, *ld, B, *lb))
    return fail(kInvalid, fn, "D overlaps A or B");
  if (be != 0.f && !in_place && overlaps(D, *ld, C, *lc))
    return fail(kInvalid, fn, "C and D overlap without being the same matrix");
  const void* ptrs[4] = {A, B, be != 0.f ? C : D, D};
  MatmulAlgo implicit;
  if (!algo) {  // documented: an implicit heuristic query; here on the pointers' actual alignment
    const uint32_t actual[4] = {pointer_align(A), pointer_align(B), pointer_align(ptrs[2]), pointer_align(D)};
    if (int st = fit_algorithm(fn, p, actual, &implicit)) return st;
    algo = &implicit;
  }
  if (algo->data[0] != kAlgoMagic)
    return fail(kInvalid, fn, "algo was not returned by cublasLtMatmulAlgoGetHeuristic");
  if (algo->data[2] != (uint64_t(uint32_t(la->type)) | uint64_t(uint32_t(ld->type)) << 32))
    return fail(kInvalid, fn, "algo was chosen for other data types");
  const SimLayout* ls[4] = {la, lb, lc, ld};
  for (int i = 0; i < 4; ++i) {
    const uint32_t req = uint32_t(algo->data[1] >> (16 * i)) & 0xffff;
    if (pointer_align(ptrs[i]) < req || (uint64_t(ls[i]->ld) * elem_size(ls[i]->type)) % req != 0)
      return fail(kNotSupported, fn, "%c (pointer %p, ld %lld) is not %u-byte aligned as the algo needs",
                  "ABCD"[i], ptrs[i], (long long)ls[i]->ld, req);
  }
  Matmul* job = new (std::nothrow) Matmul{*sd, *la, *lb, *lc, *ld, p.m, p.n, p.k, al, be, A, B, C, D};
  if (!job) return fail(CUBLAS_STATUS_ALLOC_FAILED, fn, "out of host memory");
  if (!stream) {
    run_matmul(job);
    return CUBLAS_STATUS_SUCCESS;
  }
  const LnSimStreamAbi* abi = static_cast<const LnSimStreamAbi*>(stream);
  if (abi->magic != kLnSimStreamMagic) {
    delete job;
    return fail(kInvalid, fn, "the stream is not a cudaStream_t of the CUDA simulator");
  }
  if (abi->launch_host_func(stream, run_matmul, job) != 0) {
    delete job;
    return fail(CUBLAS_STATUS_EXECUTION_FAILED, fn, "queueing on the stream failed");
  }
  return CUBLAS_STATUS_SUCCESS;
}

// The exports must have exactly the loader's pointer types.
#define SAME_TYPE(fn, type) static_assert(std::is_same<decltype(&fn), type>::value, #fn)
SAME_TYPE(cublasLtCreate, CreateFn);
SAME_TYPE(cublasLtDestroy, DestroyFn);
SAME_TYPE(cublasLtGetVersion, GetVersionFn);
SAME_TYPE(cublasLtMatmulDescCreate, MatmulDescCreateFn);
SAME_TYPE(cublasLtMatmulDescDestroy, MatmulDescDestroyFn);
SAME_TYPE(cublasLtMatmulDescSetAttribute, MatmulDescSetAttributeFn);
SAME_TYPE(cublasLtMatrixLayoutCreate, MatrixLayoutCreateFn);
SAME_TYPE(cublasLtMatrixLayoutDestroy, MatrixLayoutDestroyFn);
SAME_TYPE(cublasLtMatmulPreferenceCreate, PreferenceCreateFn);
SAME_TYPE(cublasLtMatmulPreferenceDestroy, PreferenceDestroyFn);
SAME_TYPE(cublasLtMatmulPreferenceSetAttribute, PreferenceSetAttributeFn);
SAME_TYPE(cublasLtMatmulAlgoGetHeuristic, AlgoGetHeuristicFn);
SAME_TYPE(cublasLtMatmul, MatmulFn);
