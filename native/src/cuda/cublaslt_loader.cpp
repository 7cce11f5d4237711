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

// Row-major Y[M, N] = X[M, K] W[N, K]^T is, in cuBLAS's column-major terms, Y^T (N x M, ld ldy) =
// op_T(A) op_N(B) with A = W seen as a K x N column-major matrix (ld ldw) and B = X^T seen as K x M (ld ldx).
const Gemm::Plan& Gemm::plan(const Key& key) {
  auto it = plans_.find(key);
  if (it != plans_.end()) return it->second;
  const auto [M, N, K, ldx, ldw, ldy, dt, align] = key;
  const int32_t in_type = dt == int(DType::BF16) ? cublaslt::CUDA_R_16BF : cublaslt::CUDA_R_32F;
  const std::string shape = "M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K) +
                            (dt == int(DType::BF16) ? " bf16" : " f32");
  Plan p;
  try {
    check_blas(lib_.desc_create(&p.desc, cublaslt::CUBLAS_COMPUTE_32F, cublaslt::CUDA_R_32F), "MatmulDescCreate");
    const int32_t op_t = cublaslt::CUBLAS_OP_T, op_n = cublaslt::CUBLAS_OP_N;
    check_blas(lib_.desc_set(p.desc, cublaslt::CUBLASLT_MATMUL_DESC_TRANSA, &op_t, sizeof op_t), "set TRANSA");
    check_blas(lib_.desc_set(p.desc, cublaslt::CUBLASLT_MATMUL_DESC_TRANSB, &op_n, sizeof op_n), "set TRANSB");
    check_blas(lib_.layout_create(&p.a, in_type, uint64_t(K), uint64_t(N), ldw), "MatrixLayoutCreate(W)");
    check_blas(lib_.layout_create(&p.b, in_type, uint64_t(K), uint64_t(M), ldx), "MatrixLayoutCreate(X)");
    check_blas(lib_.layout_create(&p.c, cublaslt::CUDA_R_32F, uint64_t(N), uint64_t(M), ldy), "MatrixLayoutCreate(Y)");
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

void Gemm::run(int64_t M, int64_t N, int64_t K, const void* X, int64_t ldx, const void* W, int64_t ldw, DType dtype,
               float* Y, int64_t ldy, bool accumulate, void* stream) {
  if (M <= 0 || N <= 0) return;
  if (dtype != DType::BF16 && dtype != DType::F32)
    throw std::invalid_argument("langneurons cuda: Gemm::run: dtype must be BF16 or F32");
  if (K <= 0 || ldx < K || ldw < K || ldy < N)
    throw std::invalid_argument("langneurons cuda: Gemm::run: bad shape M=" + std::to_string(M) + " N=" +
                                std::to_string(N) + " K=" + std::to_string(K));
  uint32_t align = alignment_of(X);
  align = std::min(align, alignment_of(W));
  align = std::min(align, alignment_of(Y));
  const Plan& p = plan(Key{M, N, K, ldx, ldw, ldy, int(dtype), align});
  if (p.fallback) {
    gemm_simple(M, N, K, X, ldx, W, ldw, dtype == DType::BF16, Y, ldy, accumulate, stream);
    return;
  }
  const float alpha = 1.f, beta = accumulate ? 1.f : 0.f;
  const int st = lib_.matmul(handle_, p.desc, &alpha, W, p.a, X, p.b, &beta, Y, p.c, Y, p.c, &p.algo, workspace_,
                             kWorkspaceBytes, stream);
  if (st == cublaslt::CUBLAS_STATUS_NOT_SUPPORTED) {  // the chosen algorithm refuses this call: same shape, simple kernel
    const_cast<Plan&>(p).fallback = true;
    gemm_simple(M, N, K, X, ldx, W, ldw, dtype == DType::BF16, Y, ldy, accumulate, stream);
    return;
  }
  check_blas(st, "matmul M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K));
}

int64_t Gemm::fallback_shapes() const {
  int64_t n = 0;
  for (const auto& kv : plans_) n += kv.second.fallback;
  return n;
}

}  // namespace cuda
}  // namespace ln
