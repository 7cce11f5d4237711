// Finding and loading libcublasLt at run time, and the Gemm wrapper (cublaslt.h).
#include <dlfcn.h>
#include <glob.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/cublaslt.h"
#include "cuda/cuda_backend.h"
#include "cuda/runtime_kernels.h"
#include "cuda/train_kernels.h"

namespace ln {
namespace cuda {
namespace {

const char* const kSonames[] = {"libcublasLt.so.13", "libcublasLt.so.12"};

bool is_dir(const std::string& p) {
  struct stat s;
  return stat(p.c_str(), &s) == 0 && S_ISDIR(s.st_mode);
}
bool is_file(const std::string& p) {
  struct stat s;
  return stat(p.c_str(), &s) == 0 && !S_ISDIR(s.st_mode);
}

void add_glob(const std::string& pattern, std::vector<std::string>& out) {
  glob_t g{};
  if (glob(pattern.c_str(), GLOB_ONLYDIR, nullptr, &g) == 0)
    for (size_t i = 0; i < g.gl_pathc; ++i) out.push_back(g.gl_pathv[i]);
  globfree(&g);
}

// Folders that may hold libcublasLt.so.*: the CUDA toolkit and the nvidia-cublas Python wheels.
std::vector<std::string> search_folders() {
  std::vector<std::string> dirs;
  for (const char* env : {"CUDA_HOME", "CUDA_PATH"}) {
    const char* v = std::getenv(env);
    if (v && *v) {
      dirs.push_back(std::string(v) + "/lib64");
      dirs.push_back(std::string(v) + "/lib");
    }
  }
  dirs.push_back("/usr/local/cuda/lib64");
  add_glob("/usr/local/cuda-13*/lib64", dirs);
  add_glob("/usr/local/cuda-12*/lib64", dirs);
  dirs.push_back("/usr/lib/x86_64-linux-gnu");
  std::vector<std::string> prefixes;
  add_glob("/usr/lib/python3*/dist-packages", prefixes);
  add_glob("/usr/local/lib/python3*/dist-packages", prefixes);
  add_glob("/usr/local/lib/python3*/site-packages", prefixes);
  add_glob("/opt/*/.venv/lib/python3*/site-packages", prefixes);
  add_glob("/opt/*/lib/python3*/site-packages", prefixes);
  if (const char* home = std::getenv("HOME")) add_glob(std::string(home) + "/.local/lib/python3*/site-packages", prefixes);
  if (const char* venv = std::getenv("VIRTUAL_ENV")) add_glob(std::string(venv) + "/lib/python3*/site-packages", prefixes);
  for (const std::string& p : prefixes) {
    dirs.push_back(p + "/nvidia/cublas/lib");
    dirs.push_back(p + "/nvidia/cu13/lib");
  }
  return dirs;
}

// Last resort: ask python3 (and the GPU machines' PyTorch venv) where the nvidia-cublas wheel is.
std::vector<std::string> python_folders() {
  std::vector<std::string> dirs;
  const char* script =
      "import importlib,os\n"
      "for m in ('nvidia.cublas','nvidia.cu13'):\n"
      "  try:\n"
      "    p=importlib.import_module(m)\n"
      "    for d in list(p.__path__): print(os.path.join(d,'lib'))\n"
      "  except Exception: pass\n";
  for (const char* py : {"python3", "/opt/torch/.venv/bin/python3"}) {
    std::string cmd = std::string(py) + " -c \"" ;
    for (const char* c = script; *c; ++c) {
      if (*c == '"' || *c == '\\' || *c == '$' || *c == '`') cmd += '\\';
      cmd += *c;
    }
    cmd += "\" 2>/dev/null";
    FILE* f = popen(cmd.c_str(), "r");
    if (!f) continue;
    char line[4096];
    while (fgets(line, sizeof line, f)) {
      std::string s(line);
      while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
      if (!s.empty()) dirs.push_back(s);
    }
    pclose(f);
  }
  return dirs;
}

template <class F>
void load_symbol(void* h, const char* name, F& fn, const std::string& path) {
  void* p = dlsym(h, name);
  if (!p) throw std::runtime_error("langneurons cuda: " + path + " has no symbol " + name + " (not a cuBLASLt library?)");
  fn = reinterpret_cast<F>(p);
}

CublasLtLibrary load() {
  std::vector<std::string> looked, failures;
  void* handle = nullptr;
  std::string loaded;
  auto try_path = [&](const std::string& p) {
    if (handle) return;
    dlerror();
    void* h = dlopen(p.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (h) {
      handle = h;
      loaded = p;
    } else if (p.find('/') != std::string::npos && is_file(p)) {
      const char* e = dlerror();
      failures.push_back(p + ": " + (e ? e : "dlopen failed"));
    }
  };
  auto try_dir = [&](const std::string& d) {
    looked.push_back(d);
    if (!is_dir(d)) return;
    for (const char* so : kSonames) try_path(d + "/" + so);
  };

  if (const char* env = std::getenv("LANGNEURONS_CUBLASLT"); env && *env) {
    const std::string e(env);
    looked.push_back("LANGNEURONS_CUBLASLT=" + e);
    if (is_dir(e)) {
      for (const char* so : kSonames) try_path(e + "/" + so);
    } else {
      try_path(e);
      if (!handle && !is_file(e)) failures.push_back("LANGNEURONS_CUBLASLT=" + e + ": no such file or folder");
    }
  }
  looked.push_back("the loader path (LD_LIBRARY_PATH, ldconfig)");
  for (const char* so : kSonames) try_path(so);
  if (!handle)
    for (const std::string& d : search_folders()) try_dir(d);
  if (!handle) {
    looked.push_back("python3 -c 'import nvidia.cublas' (and /opt/torch/.venv/bin/python3)");
    for (const std::string& d : python_folders()) try_dir(d);
  }
  if (!handle) {
    std::string msg = "langneurons cuda: cuBLASLt not found (libcublasLt.so.13 or libcublasLt.so.12). Looked in: ";
    for (size_t i = 0; i < looked.size(); ++i) msg += (i ? ", " : "") + looked[i];
    for (const std::string& f : failures) msg += ". Found but could not load " + f;
    msg += ". Install the CUDA toolkit's cuBLAS or the nvidia-cublas Python wheel, or set LANGNEURONS_CUBLASLT to "
           "the library file or its folder.";
    throw std::runtime_error(msg);
  }
  CublasLtLibrary lib;
  lib.path = loaded;
  load_symbol(handle, "cublasLtCreate", lib.create, loaded);
  load_symbol(handle, "cublasLtDestroy", lib.destroy, loaded);
  load_symbol(handle, "cublasLtGetVersion", lib.get_version, loaded);
  load_symbol(handle, "cublasLtMatmulDescCreate", lib.desc_create, loaded);
  load_symbol(handle, "cublasLtMatmulDescDestroy", lib.desc_destroy, loaded);
  load_symbol(handle, "cublasLtMatmulDescSetAttribute", lib.desc_set, loaded);
  load_symbol(handle, "cublasLtMatrixLayoutCreate", lib.layout_create, loaded);
  load_symbol(handle, "cublasLtMatrixLayoutDestroy", lib.layout_destroy, loaded);
  load_symbol(handle, "cublasLtMatmulPreferenceCreate", lib.pref_create, loaded);
  load_symbol(handle, "cublasLtMatmulPreferenceDestroy", lib.pref_destroy, loaded);
  load_symbol(handle, "cublasLtMatmulPreferenceSetAttribute", lib.pref_set, loaded);
  load_symbol(handle, "cublasLtMatmulAlgoGetHeuristic", lib.heuristic, loaded);
  load_symbol(handle, "cublasLtMatmul", lib.matmul, loaded);
  lib.version = lib.get_version();
  return lib;
}

void check_blas(int status, const std::string& what) {
  if (status != cublaslt::CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error("langneurons cuda: cuBLASLt " + what + " failed with status " + std::to_string(status));
}

// Largest power of two (<= 256) dividing the address: what cuBLASLt may assume about a pointer's alignment.
uint32_t alignment_of(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  uint32_t al = 256;
  while (al > 1 && (a % al) != 0) al >>= 1;
  return al;
}

}  // namespace

std::string CublasLtLibrary::version_string() const {
  return std::to_string(version / 10000) + "." + std::to_string(version / 100 % 100);
}

std::vector<std::string> cublaslt_candidates() {
  std::vector<std::string> c;
  if (const char* env = std::getenv("LANGNEURONS_CUBLASLT"); env && *env) c.push_back(env);
  for (const char* so : kSonames) c.push_back(so);
  for (const std::string& d : search_folders()) c.push_back(d);
  return c;
}

const CublasLtLibrary& cublaslt_library() {
  static std::mutex mu;
  static CublasLtLibrary* lib = nullptr;
  std::lock_guard<std::mutex> lock(mu);
  if (!lib) lib = new CublasLtLibrary(load());  // never freed: the library stays loaded for the process
  return *lib;
}

Gemm::Gemm() : lib_(cublaslt_library()) {
  check_blas(lib_.create(&handle_), "cublasLtCreate");
  try {
    workspace_ = device_alloc(kWorkspaceBytes);
  } catch (...) {
    lib_.destroy(handle_);
    throw;
  }
}

Gemm::~Gemm() {
  for (auto& kv : plans_) {
    Plan& p = kv.second;
    if (p.a) lib_.layout_destroy(p.a);
    if (p.b) lib_.layout_destroy(p.b);
    if (p.c) lib_.layout_destroy(p.c);
    if (p.desc) lib_.desc_destroy(p.desc);
  }
  device_free(workspace_);
  if (handle_) lib_.destroy(handle_);
}

// cuBLASLt is column-major; a row-major [r, c] matrix with row stride ld is its column-major c x r view (ld ld).
// The three products in those terms (C = op(A) op(B), the float32 output C):
//   run    Y[M, N] = X W^T:   Y^T (N x M, ldy)   = op_T(A = W as K x N, ldw)  op_N(B = X as K x M, ldx)
//   run_dx dX[M, K] = dY W:   dX^T (K x M, lddx) = op_N(A = W as K x N, ldw)  op_N(B = dY as N x M, lddy)
//   run_dw dW[N, K] += dY^T X: dW^T (K x N, lddw) = op_N(A = X as K x M, ldx) op_T(B = dY as N x M, lddy)
const Gemm::Plan& Gemm::plan(const Key& key) {
  auto it = plans_.find(key);
  if (it != plans_.end()) return it->second;
  const auto [product, M, N, K, ld1, ld2, ldc, dt, align] = key;
  const int32_t in_type = dt == int(DType::BF16) ? cublaslt::CUDA_R_16BF : cublaslt::CUDA_R_32F;
  static const char* const kNames[] = {"forward", "dX", "dW"};
  const std::string shape = std::string(kNames[product]) + " M=" + std::to_string(M) + " N=" + std::to_string(N) +
                            " K=" + std::to_string(K) + (dt == int(DType::BF16) ? " bf16" : " f32");
  // op, rows, cols, ld of A and B; rows, cols, ld of C (column-major terms, as above)
  int32_t op_a = cublaslt::CUBLAS_OP_N, op_b = cublaslt::CUBLAS_OP_N;
  uint64_t a_rows = 0, a_cols = 0, b_rows = 0, b_cols = 0, c_rows = 0, c_cols = 0;
  int64_t lda = 0, ldb = 0;
  if (product == kForward) {  // ld1 = ldx, ld2 = ldw
    op_a = cublaslt::CUBLAS_OP_T;
    a_rows = uint64_t(K), a_cols = uint64_t(N), lda = ld2;
    b_rows = uint64_t(K), b_cols = uint64_t(M), ldb = ld1;
    c_rows = uint64_t(N), c_cols = uint64_t(M);
  } else if (product == kDx) {  // ld1 = lddy, ld2 = ldw
    a_rows = uint64_t(K), a_cols = uint64_t(N), lda = ld2;
    b_rows = uint64_t(N), b_cols = uint64_t(M), ldb = ld1;
    c_rows = uint64_t(K), c_cols = uint64_t(M);
  } else {  // kDw: ld1 = lddy, ld2 = ldx
    op_b = cublaslt::CUBLAS_OP_T;
    a_rows = uint64_t(K), a_cols = uint64_t(M), lda = ld2;
    b_rows = uint64_t(N), b_cols = uint64_t(M), ldb = ld1;
    c_rows = uint64_t(K), c_cols = uint64_t(N);
  }
  Plan p;
  try {
    check_blas(lib_.desc_create(&p.desc, cublaslt::CUBLAS_COMPUTE_32F, cublaslt::CUDA_R_32F), "MatmulDescCreate");
    check_blas(lib_.desc_set(p.desc, cublaslt::CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof op_a), "set TRANSA");
    check_blas(lib_.desc_set(p.desc, cublaslt::CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof op_b), "set TRANSB");
    check_blas(lib_.layout_create(&p.a, in_type, a_rows, a_cols, lda), "MatrixLayoutCreate(A)");
    check_blas(lib_.layout_create(&p.b, in_type, b_rows, b_cols, ldb), "MatrixLayoutCreate(B)");
    check_blas(lib_.layout_create(&p.c, cublaslt::CUDA_R_32F, c_rows, c_cols, ldc), "MatrixLayoutCreate(C)");
    cublaslt::Preference pref = nullptr;
    check_blas(lib_.pref_create(&pref), "MatmulPreferenceCreate");
    const uint64_t ws = kWorkspaceBytes;
    int st = lib_.pref_set(pref, cublaslt::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    for (int32_t attr : {cublaslt::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                         cublaslt::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                         cublaslt::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                         cublaslt::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES})
      if (st == 0) st = lib_.pref_set(pref, attr, &align, sizeof align);
    cublaslt::HeuristicResult res[8];
    int n = 0;
    if (st == 0) st = lib_.heuristic(handle_, p.desc, p.a, p.b, p.c, p.c, pref, 8, res, &n);
    lib_.pref_destroy(pref);
    if (st == cublaslt::CUBLAS_STATUS_NOT_SUPPORTED) n = 0;  // no algorithm for this configuration
    else check_blas(st, "heuristic for " + shape);
    int pick = -1;
    for (int i = 0; i < n && pick < 0; ++i)
      if (res[i].state == cublaslt::CUBLAS_STATUS_SUCCESS && res[i].workspaceSize <= kWorkspaceBytes) pick = i;
    if (pick < 0)
      p.fallback = true;
    else
      p.algo = res[pick].algo;
  } catch (...) {
    if (p.a) lib_.layout_destroy(p.a);
    if (p.b) lib_.layout_destroy(p.b);
    if (p.c) lib_.layout_destroy(p.c);
    if (p.desc) lib_.desc_destroy(p.desc);
    throw;
  }
  return plans_.emplace(key, p).first->second;
}

// Runs a planned product; false when the chosen algorithm refuses the call (the plan then falls back for good).
bool Gemm::matmul(const Plan& p, const void* A, const void* B, float* C, bool accumulate, void* stream,
                  const std::string& what) {
  const float alpha = 1.f, beta = accumulate ? 1.f : 0.f;
  const int st = lib_.matmul(handle_, p.desc, &alpha, A, p.a, B, p.b, &beta, C, p.c, C, p.c, &p.algo, workspace_,
                             kWorkspaceBytes, stream);
  if (st == cublaslt::CUBLAS_STATUS_NOT_SUPPORTED) {  // same shape on the simple kernel from now on
    const_cast<Plan&>(p).fallback = true;
    return false;
  }
  check_blas(st, "matmul " + what);
  return true;
}

namespace {
void check_gemm_args(const char* fn, int64_t M, int64_t N, int64_t K, DType dtype, bool bad_stride) {
  if (dtype != DType::BF16 && dtype != DType::F32)
    throw std::invalid_argument(std::string("langneurons cuda: Gemm::") + fn + ": dtype must be BF16 or F32");
  if (M <= 0 || N <= 0 || K <= 0 || bad_stride)
    throw std::invalid_argument(std::string("langneurons cuda: Gemm::") + fn + ": bad shape M=" + std::to_string(M) +
                                " N=" + std::to_string(N) + " K=" + std::to_string(K) + " (or a row stride smaller than its row)");
}
uint32_t alignment3(const void* a, const void* b, const void* c) {
  return std::min(alignment_of(a), std::min(alignment_of(b), alignment_of(c)));
}
std::string shape_text(int64_t M, int64_t N, int64_t K) {
  return "M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K);
}
}  // namespace

void Gemm::run(int64_t M, int64_t N, int64_t K, const void* X, int64_t ldx, const void* W, int64_t ldw, DType dtype,
               float* Y, int64_t ldy, bool accumulate, void* stream) {
  if (M <= 0 || N <= 0) return;
  check_gemm_args("run", M, N, K, dtype, ldx < K || ldw < K || ldy < N);
  const Plan& p = plan(Key{kForward, M, N, K, ldx, ldw, ldy, int(dtype), alignment3(X, W, Y)});
  if (!p.fallback && matmul(p, W, X, Y, accumulate, stream, shape_text(M, N, K))) return;
  gemm_simple(M, N, K, X, ldx, W, ldw, dtype == DType::BF16, Y, ldy, accumulate, stream);
}

void Gemm::run_dx(int64_t M, int64_t N, int64_t K, const void* dY, int64_t lddy, const void* W, int64_t ldw,
                  DType dtype, float* dX, int64_t lddx, bool accumulate, void* stream) {
  if (M <= 0 || K <= 0) return;
  if (N == 0) {  // an empty selection: dX gets nothing (zeros unless accumulating)
    gemm_simple_dx(M, 0, K, dY, lddy, W, ldw, dtype == DType::BF16, dX, lddx, accumulate, stream);
    return;
  }
  check_gemm_args("run_dx", M, N, K, dtype, lddy < N || ldw < K || lddx < K);
  const Plan& p = plan(Key{kDx, M, N, K, lddy, ldw, lddx, int(dtype), alignment3(dY, W, dX)});
  if (!p.fallback && matmul(p, W, dY, dX, accumulate, stream, "dX " + shape_text(M, N, K))) return;
  gemm_simple_dx(M, N, K, dY, lddy, W, ldw, dtype == DType::BF16, dX, lddx, accumulate, stream);
}

void Gemm::run_dw(int64_t M, int64_t N, int64_t K, const void* dY, int64_t lddy, const void* X, int64_t ldx,
                  DType dtype, float* dW, int64_t lddw, void* stream) {
  if (M <= 0 || N <= 0 || K <= 0) return;  // nothing to add
  check_gemm_args("run_dw", M, N, K, dtype, lddy < N || ldx < K || lddw < K);
  const Plan& p = plan(Key{kDw, M, N, K, lddy, ldx, lddw, int(dtype), alignment3(dY, X, dW)});
  if (!p.fallback && matmul(p, X, dY, dW, true, stream, "dW " + shape_text(M, N, K))) return;
  gemm_simple_dw(M, N, K, dY, lddy, X, ldx, dtype == DType::BF16, dW, lddw, stream);
}

int64_t Gemm::fallback_shapes() const {
  int64_t n = 0;
  for (const auto& kv : plans_) n += kv.second.fallback;
  return n;
}

}  // namespace cuda
}  // namespace ln
