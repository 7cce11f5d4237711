// bench_gpu: the CUDA runtime's speed on a random BF16 checkpoint with Llama-3.1-8B's shapes (built in host
// memory: one layer's random tensors shared by every layer's WeightRefs, so generating it takes seconds; the
// runtime uploads a separate device copy per layer, as for a real checkpoint). Measured side by side in one run:
//   - the cuBLASLt bf16 GEMM rate at 8192^3 (bf16 in, f32 out, f32 accumulation): the peak baseline;
//   - the device-to-device copy bandwidth (read + write bytes / time): the weight-read limit of decoding;
//   - profiling throughput (statistics on act and h, no LM head) for packed batches, tokens/s and MFU against the
//     GEMM rate (FLOPs: 2 x matmul params x tokens + 4 x d x sum of causal key counts per layer);
//   - the same forward without statistics (overhead ratio), with a 1% deactivation intervention, and with 1% of the
//     units of every linear layer's outputs (q, k, v, o, gate, up, down) set to 0 (Kojima et al.'s sites);
//   - where the first batch's time goes: each step of the forward (norms, each GEMM, RoPE, attention, the fused FFN
//     step, statistics) with and without statistics, the GEMMs' rate against the peak, the memory-bound steps'
//     against the copy bandwidth (step_breakdown.h);
//   - the attention kernels alone on the first batch's shape: the tensor-core forward (inference) and the trainer's
//     bf16-mode backward, TFLOP/s by FlashAttention's count (causal; backward = 2.5 x forward);
//   - decode steps at batch 1 and 32 (KV cache) against the weight-read limit, with the last logits copied to the
//     host and with the next tokens picked on the device (LogitsMode::Greedy);
//   - device memory used against weights + KV cache + activations; projected hours per language for 100M tokens.
// Prints a table and one JSON line; --json-out writes the same document to a file (scripts/gpu-check.sh reads
// it: "profile" is the first batch, 8 x 1024 by default, the batch of benchmarks/gpu/hf_baseline.py). Usage:
//   bench_gpu [--quick | --tiny] [--shape NAME] [--gemm-only] [--layers N] [--batches 8x1024,16x512,4x2048]
//             [--decode-steps N] [--device N] [--json-out FILE]
// --shape: the model's shapes and family, named as hf_baseline.py --shape names them: llama-3.1-8b (the default),
// llama-3.2-1b, qwen2.5-7b, qwen3-8b, gemma-2-9b, aya-expanse-8b (scripts/gpu-bench-families.sh runs the last four
// beside their transformers baselines); with --tiny, a 2-layer model of odd small sizes with that family's parts.
// --quick: Llama-3.2-1B's shapes (hf_baseline.py --shape llama-3.2-1b) unless --shape names others, GEMM at
// 4096^3, one batch.
// --gemm-only: the GEMM peak and the copy bandwidth alone (benchmarks/gpu-finetune's MFU baseline), one JSON line.
// --tiny: a 2-layer model of odd small shapes, GEMM at 256^3, two small batches, short decode: for the CUDA
// simulator (scripts/cuda-sim-check.sh), which runs every code path and the JSON in seconds; its times mean nothing.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/cublaslt.h"
#include "cuda/device_buffer.h"
#include "cuda/runtime_kernels.h"
#include "cuda/train_kernels.h"
#include "model/intervention.h"
#include "model/stats.h"
#include "runtime/cuda_runtime.h"
#include "step_breakdown.h"

using namespace ln;

namespace {

struct Options {
  bool quick = false;
  bool tiny = false;
  bool gemm_only = false;
  std::string shape;  // "" until parsed: llama-3.1-8b, or llama-3.2-1b with --quick
  int layers = -1;
  std::vector<std::pair<int, int>> batches;  // (sequences, length)
  int decode_steps = -1;  // 32; 3 with --tiny
  int device = 0;
  std::string json_out;
};

[[noreturn]] void usage(const std::string& msg) {
  std::fprintf(stderr, "bench_gpu: %s\nusage: bench_gpu [--quick | --tiny] [--shape NAME] [--gemm-only] [--layers N] "
                       "[--batches 8x1024,...] [--decode-steps N] [--device N] [--json-out FILE]\n", msg.c_str());
  std::exit(1);
}

bool set_shape(const std::string& name, bool tiny, ModelConfig& c);  // below

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) usage(a + " needs a value");
      return argv[++i];
    };
    if (a == "--quick") o.quick = true;
    else if (a == "--tiny") o.tiny = true;
    else if (a == "--gemm-only") o.gemm_only = true;
    else if (a == "--shape") o.shape = next();
    else if (a == "--layers") o.layers = std::atoi(next().c_str());
    else if (a == "--decode-steps") o.decode_steps = std::atoi(next().c_str());
    else if (a == "--device") o.device = std::atoi(next().c_str());
    else if (a == "--json-out") o.json_out = next();
    else if (a == "--batches") {
      std::string s = next();
      size_t p = 0;
      while (p < s.size()) {
        size_t e = s.find(',', p);
        if (e == std::string::npos) e = s.size();
        const std::string item = s.substr(p, e - p);
        const size_t x = item.find('x');
        if (x == std::string::npos) usage("--batches items are <sequences>x<length>, got '" + item + "'");
        const int n = std::atoi(item.substr(0, x).c_str()), len = std::atoi(item.substr(x + 1).c_str());
        if (n < 1 || len < 1) usage("--batches: bad item '" + item + "'");
        o.batches.push_back({n, len});
        p = e + 1;
      }
    } else usage("unknown option " + a);
  }
  if (o.layers == 0 || o.layers < -1) usage("--layers must be >= 1");
  if (o.quick && o.tiny) usage("--quick and --tiny exclude each other");
  if (o.shape.empty()) o.shape = o.quick ? "llama-3.2-1b" : "llama-3.1-8b";
  ModelConfig probe;
  if (!set_shape(o.shape, o.tiny, probe))
    usage("--shape " + o.shape + ": expected llama-3.1-8b, llama-3.2-1b, qwen2.5-7b, qwen3-8b, gemma-2-9b or aya-expanse-8b");
  if (o.decode_steps == -1) o.decode_steps = o.tiny ? 3 : 32;
  else if (o.decode_steps < 2) usage("--decode-steps must be >= 2 (the first step is a warm-up)");
  if (o.batches.empty()) {
    if (o.tiny) o.batches = {{2, 96}, {3, 40}};
    else if (o.quick) o.batches = {{8, 1024}};
    else o.batches = {{8, 1024}, {16, 512}, {4, 2048}};
  }
  return o;
}

// Random bf16 tensors (xorshift; uniform in +-scale) in owned host buffers.
struct HostModel {
  ModelConfig cfg;
  int shape_layers = 0;  // the shape's own layer count (cfg.n_layers is --layers when given)
  ModelWeights w;
  std::vector<std::vector<uint16_t>> blobs;
  uint64_t state = 0x9E3779B97F4A7C15ull;

  WeightRef tensor(int64_t rows, int64_t cols, float scale, float center = 0.f) {
    blobs.emplace_back(size_t(rows * cols));
    std::vector<uint16_t>& b = blobs.back();
    for (auto& x : b) {
      state ^= state << 13;
      state ^= state >> 7;
      state ^= state << 17;
      const float u = float(state >> 40) / float(1ull << 24) * 2.f - 1.f;
      x = f32_to_bf16(center + scale * u);
    }
    WeightRef r;
    r.data = b.data();
    r.dtype = DType::BF16;
    r.rows = rows;
    r.cols = cols;
    return r;
  }
};

// The published sizes and parts of each shape's model (its config.json), or with tiny a 2-layer model of odd small
// sizes (no GEMM dimension a multiple of 128) with the same family parts; false for an unknown name.
bool set_shape(const std::string& name, bool tiny, ModelConfig& c) {
  auto sizes = [&](int hidden, int inter, int layers, int heads, int kv, int head_dim, int vocab) {
    c.hidden = hidden, c.intermediate = inter, c.n_layers = layers, c.n_heads = heads, c.n_kv_heads = kv;
    c.head_dim = head_dim, c.vocab = vocab;
  };
  c.max_positions = 131072;
  c.rms_eps = 1e-6f;
  c.rope_theta = 1e6f;
  if (name == "llama-3.1-8b" || name == "llama-3.2-1b") {
    const bool big = name == "llama-3.1-8b";
    big ? sizes(4096, 14336, 32, 32, 8, 128, 128256) : sizes(2048, 8192, 16, 32, 8, 64, 128256);
    c.rms_eps = 1e-5f;
    c.rope_theta = 500000.f;
    c.rope_type = RopeType::Llama3;
    c.rope_factor = big ? 8.f : 32.f;
    c.rope_low_freq_factor = 1.f;
    c.rope_high_freq_factor = 4.f;
    c.rope_original_max_positions = 8192;
  } else if (name == "qwen2.5-7b") {
    sizes(3584, 18944, 28, 28, 4, 128, 152064);
    c.qkv_bias = true;
  } else if (name == "qwen3-8b") {
    sizes(4096, 12288, 36, 32, 8, 128, 151936);
    c.qk_norm = true;
  } else if (name == "gemma-2-9b") {
    sizes(3584, 14336, 42, 16, 8, 256, 256000);
    c.max_positions = 8192;
    c.rope_theta = 10000.f;
    c.norm = NormType::RmsOnePlus;
    c.act = Activation::GeluTanh;
    c.post_norms = true;
    c.tie_embeddings = true;
    c.query_scale = 1.f / 16.f;  // query_pre_attn_scalar 256
    c.attn_softcap = 50.f;
    c.final_softcap = 30.f;
    c.sliding_window = 4096;
    c.sliding_period = 2;
  } else if (name == "aya-expanse-8b") {
    sizes(4096, 14336, 32, 32, 8, 128, 256000);
    c.max_positions = 8192;
    c.rms_eps = 1e-5f;  // layer_norm_eps
    c.rope_theta = 10000.f;
    c.norm = NormType::Layer;
    c.parallel_block = true;
    c.rope_interleaved = true;
    c.tie_embeddings = true;
    c.logit_scale = 0.125f;
  } else {
    return false;
  }
  if (tiny) {
    if (c.head_dim == 256) {  // Gemma 2's head_dim kept: its own attention kernels; a window the batches cross
      sizes(192, 520, 2, 2, 1, 256, 1000);
      c.sliding_window = 64;
    } else {
      sizes(192, 520, 2, 3, 1, 64, 1000);
    }
  }
  if (c.norm == NormType::RmsOnePlus) c.embed_scale = std::sqrt(float(c.hidden));  // Gemma: embeddings x sqrt(hidden)
  return true;
}

std::unique_ptr<HostModel> make_model(const Options& o) {
  auto m = std::make_unique<HostModel>();
  ModelConfig& c = m->cfg;
  set_shape(o.shape, o.tiny, c);  // known: checked by parse
  m->shape_layers = c.n_layers;
  if (o.layers > 0) c.n_layers = o.layers;
  const int64_t H = c.hidden, I = c.intermediate, hd = c.head_dim, qd = int64_t(c.n_heads) * hd,
                kvd = int64_t(c.n_kv_heads) * hd;
  auto mat = [&](int64_t r, int64_t k) { return m->tensor(r, k, std::sqrt(3.f / float(k))); };
  // Norm weights near what the norm multiplies by 1: w near 1, or near 0 for Gemma's (1 + w).
  const float norm_center = c.norm == NormType::RmsOnePlus ? 0.f : 1.f;
  auto norm = [&](int64_t n) { return m->tensor(n, 1, 0.1f, norm_center); };
  LayerWeights L;  // one layer's tensors, shared by every layer's references
  L.attn_norm = norm(H);
  L.wq = mat(qd, H);
  L.wk = mat(kvd, H);
  L.wv = mat(kvd, H);
  L.wo = mat(H, qd);
  if (c.qkv_bias) {
    L.bq = m->tensor(qd, 1, 0.1f);
    L.bk = m->tensor(kvd, 1, 0.1f);
    L.bv = m->tensor(kvd, 1, 0.1f);
  }
  if (c.qk_norm) {  // plain RMSNorms over each head
    L.q_norm = m->tensor(hd, 1, 0.1f, 1.f);
    L.k_norm = m->tensor(hd, 1, 0.1f, 1.f);
  }
  if (c.post_norms) {
    L.attn_post_norm = norm(H);
    L.ffn_post_norm = norm(H);
  }
  if (!c.parallel_block) L.ffn_norm = norm(H);
  L.w_gate = mat(I, H);
  L.w_up = mat(I, H);
  L.w_down = mat(H, I);
  m->w.layers.assign(size_t(c.n_layers), L);
  m->w.embed = m->tensor(c.vocab, H, 1.f);
  m->w.final_norm = norm(H);
  m->w.lm_head = c.tie_embeddings ? m->w.embed : mat(c.vocab, H);
  return m;  // make_cuda_runtime validates the config and the weights
}

// The keys n sequences of len tokens attend to, summed over their tokens: causal, within window when > 0.
double attended_keys(int n, int len, int window) {
  const double L = len, w = window > 0 && window < len ? window : len;
  return n * (w * (w + 1) / 2 + (L - w) * w);  // the first w tokens see 1..w keys, the rest w each
}

double matmul_params_per_layer(const ModelConfig& c) {
  const double H = c.hidden, I = c.intermediate, qd = double(c.n_heads) * c.head_dim,
               kvd = double(c.n_kv_heads) * c.head_dim;
  return H * (qd + 2 * kvd) + qd * H + 3 * H * I;
}

struct Timer {
  cuda::Event a = cuda::event_create(), b = cuda::event_create();
  ~Timer() {
    cuda::event_destroy(a);
    cuda::event_destroy(b);
  }
};

// Writes the JSON line whole, then renames: never a half-written file.
void write_json(const std::string& path, const std::string& js) {
  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (!f || std::fputs((js + "\n").c_str(), f) < 0 || std::fclose(f) != 0 || std::rename(tmp.c_str(), path.c_str()) != 0)
    throw std::runtime_error("cannot write " + path);
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// The attention kernels alone on n packed sequences of len tokens (the model's heads and head_dim, its score scale,
// soft cap and the window of its first layer): the tensor-core forward of inference and the trainer's bf16-mode
// backward, each timed over `reps` calls. q / k / v and the output are bf16 (as the trainer keeps them for this
// backward), dout float32. FLOPs as FlashAttention counts them: forward
// 4 x head_dim x heads x (causal key count), backward 2.5 x that.
struct AttnTiming {
  double fwd_ms = 0, fwd_tflops = 0, bwd_ms = 0, bwd_tflops = 0;
};
AttnTiming time_attention(const ModelConfig& c, int n, int len, int reps) {
  const int64_t T = int64_t(n) * len, qd = int64_t(c.n_heads) * c.head_dim, kvd = int64_t(c.n_kv_heads) * c.head_dim;
  std::vector<float> gf(size_t(T * qd));
  std::vector<uint16_t> qb(size_t(T * qd)), kb(size_t(T * kvd)), vb(size_t(T * kvd));
  auto value = [](size_t i, int salt) {
    return f32_to_bf16(float(int((i * 2654435761u + unsigned(salt)) % 29) - 14) * 0.02f);
  };
  for (size_t i = 0; i < qb.size(); ++i) qb[i] = value(i, 1);
  for (size_t i = 0; i < kb.size(); ++i) kb[i] = value(i, 2);
  for (size_t i = 0; i < vb.size(); ++i) vb[i] = value(i, 3);
  for (size_t i = 0; i < gf.size(); ++i) gf[i] = bf16_to_f32(value(i, 4));
  std::vector<cuda::AttnTile> tiles;
  std::vector<int64_t> row0(static_cast<size_t>(T));
  std::vector<int32_t> lens(static_cast<size_t>(T), len);
  for (int s = 0; s < n; ++s) {
    for (int q0 = 0; q0 < len; q0 += cuda::kFlashRows)
      tiles.push_back({int64_t(s) * len + q0, int64_t(s) * len, std::min(cuda::kFlashRows, len - q0), q0 + 1});
    for (int i = 0; i < len; ++i) row0[size_t(int64_t(s) * len + i)] = int64_t(s) * len;
  }
  const int window = c.window_of(0);
  const float cap = c.attn_softcap;
  const double keys = attended_keys(n, len, window);
  cuda::DeviceBuffer dqb, dkb, dvb, dob, dlse, dtiles, dg, dgq, dgk, dgv, drows, drow0, dlen;
  auto up = [](cuda::DeviceBuffer& d, const void* src, size_t bytes) {
    d.ensure(bytes);
    cuda::copy_to_device(d.get(), src, bytes, nullptr);
  };
  up(dqb, qb.data(), qb.size() * 2);
  up(dkb, kb.data(), kb.size() * 2);
  up(dvb, vb.data(), vb.size() * 2);
  up(dtiles, tiles.data(), tiles.size() * sizeof(cuda::AttnTile));
  up(dg, gf.data(), gf.size() * 4);
  up(drow0, row0.data(), row0.size() * 8);
  up(dlen, lens.data(), lens.size() * 4);
  dob.ensure(size_t(T * qd) * 2);
  dlse.ensure(size_t(T) * c.n_heads * 4);
  dgq.ensure(size_t(T * qd) * 4);
  dgk.ensure(size_t(T * kvd) * 4);
  dgv.ensure(size_t(T * kvd) * 4);
  drows.ensure(size_t(T) * c.n_heads * 4);
  const float scale = c.attn_scale();
  auto fwd = [&]() {
    cuda::flash_attention_bf16(dtiles.as<cuda::AttnTile>(), int64_t(tiles.size()), c.n_heads, c.n_kv_heads, c.head_dim,
                               dqb.as<uint16_t>(), qd, dkb.as<uint16_t>(), dvb.as<uint16_t>(), kvd, scale,
                               dob.as<uint16_t>(), qd, dlse.as<float>(), nullptr, window, cap);
  };
  auto bwd = [&]() {
    cuda::attention_backward_tc(T, c.n_heads, c.n_kv_heads, c.head_dim, dqb.as<uint16_t>(), qd, dkb.as<uint16_t>(),
                                dvb.as<uint16_t>(), kvd, dob.as<uint16_t>(), qd, dg.as<float>(), qd, dlse.as<float>(),
                                drow0.as<int64_t>(), dlen.as<int32_t>(), scale, dgq.as<float>(), qd, dgk.as<float>(),
                                dgv.as<float>(), kvd, drows.as<float>(), nullptr, window, cap);
  };
  fwd();  // the output and lse the backward reads
  bwd();
  Timer tm;
  AttnTiming r;
  const double flops = 4.0 * double(c.n_heads) * c.head_dim * keys;
  cuda::event_record(tm.a, nullptr);
  for (int i = 0; i < reps; ++i) fwd();
  cuda::event_record(tm.b, nullptr);
  r.fwd_ms = cuda::event_elapsed_ms(tm.a, tm.b) / reps;
  cuda::event_record(tm.a, nullptr);
  for (int i = 0; i < reps; ++i) bwd();
  cuda::event_record(tm.b, nullptr);
  r.bwd_ms = cuda::event_elapsed_ms(tm.a, tm.b) / reps;
  r.fwd_tflops = flops / (r.fwd_ms * 1e-3) / 1e12;
  r.bwd_tflops = 2.5 * flops / (r.bwd_ms * 1e-3) / 1e12;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  if (cuda_device_count() == 0) {
    std::printf("bench_gpu: SKIPPED (no CUDA device: %s)\n", cuda_unavailable_reason());
    return 0;
  }
  if (const std::string problem = cuda_device_problem(o.device); !problem.empty()) {
    std::fprintf(stderr, "bench_gpu: %s\n", problem.c_str());
    return 1;
  }
  try {
    const double t_start = now_s();
    cuda::set_device(o.device);
    const cuda::DeviceInfo dev = cuda::device_info(o.device);

    // ---- GEMM peak (bf16 x bf16 -> f32, f32 accumulation) and copy bandwidth
    const int64_t G = o.tiny ? 256 : o.quick ? 4096 : 8192;
    double gemm_tflops = 0, copy_gbs = 0;
    {
      cuda::Gemm gemm;
      cuda::DeviceBuffer x, w, y;
      x.ensure(size_t(G * G) * 2);
      w.ensure(size_t(G * G) * 2);
      y.ensure(size_t(G * G) * 4);
      // A small repeating pattern (not zeros: some hardware is faster on zeros).
      std::vector<uint16_t> pat(size_t(G) * 64);
      for (size_t i = 0; i < pat.size(); ++i) pat[i] = f32_to_bf16(float(int(i % 13) - 6) * 0.01f);
      for (int64_t r = 0; r < G; r += 64) {
        cuda::copy_to_device(x.as<uint16_t>() + r * G, pat.data(), pat.size() * 2, nullptr);
        cuda::copy_to_device(w.as<uint16_t>() + r * G, pat.data(), pat.size() * 2, nullptr);
      }
      cuda::synchronize(nullptr);
      Timer t;
      for (int i = 0; i < 3; ++i)
        gemm.run(G, G, G, x.get(), G, w.get(), G, DType::BF16, y.as<float>(), G, false, nullptr);
      const int reps = 10;
      cuda::event_record(t.a, nullptr);
      for (int i = 0; i < reps; ++i)
        gemm.run(G, G, G, x.get(), G, w.get(), G, DType::BF16, y.as<float>(), G, false, nullptr);
      cuda::event_record(t.b, nullptr);
      const double ms = cuda::event_elapsed_ms(t.a, t.b) / reps;
      gemm_tflops = 2.0 * double(G) * double(G) * double(G) / (ms * 1e-3) / 1e12;
      // Copy: y (G*G*4 bytes) into x+w (same bytes), read + write.
      const size_t bytes = size_t(G * G) * 4;
      cuda::DeviceBuffer dst;
      dst.ensure(bytes);
      for (int i = 0; i < 2; ++i) cuda::copy_device(dst.get(), y.get(), bytes, nullptr);
      cuda::event_record(t.a, nullptr);
      for (int i = 0; i < reps; ++i) cuda::copy_device(dst.get(), y.get(), bytes, nullptr);
      cuda::event_record(t.b, nullptr);
      const double cms = cuda::event_elapsed_ms(t.a, t.b) / reps;
      copy_gbs = 2.0 * double(bytes) / (cms * 1e-3) / 1e9;
    }
    if (o.gemm_only) {
      char js[512];
      std::snprintf(js, sizeof js, "{\"bench\":\"gpu-gemm\",\"device\":\"%s\",\"gemm_size\":%lld,\"gemm_tflops\":%.2f,\"copy_gbs\":%.1f}",
                    dev.name.c_str(), (long long)G, gemm_tflops, copy_gbs);
      std::printf("%s\n", js);
      if (!o.json_out.empty()) write_json(o.json_out, js);
      return 0;
    }

    // ---- the model
    const double t_gen = now_s();
    auto hm = make_model(o);
    const ModelConfig& c = hm->cfg;
    const double gen_s = now_s() - t_gen;
    const double t_up = now_s();
    auto rt = make_cuda_runtime(c, hm->w, o.device, Compute::BF16);
    const double upload_s = now_s() - t_up;
    std::printf("bench_gpu: %s\n", rt->describe().c_str());
    std::printf("model: %s%s: hidden %d, intermediate %d, %d layers, heads %d/%d x %d, vocab %d (random bf16; generated in "
                "%.1f s, uploaded in %.1f s)\n",
                o.shape.c_str(), o.tiny ? " (--tiny sizes)" : "", c.hidden, c.intermediate, c.n_layers, c.n_heads,
                c.n_kv_heads, c.head_dim, c.vocab, gen_s, upload_s);

    AttnTiming attn;
    const bool tensor_cores = dev.major >= 8 && cuda::flash_attention_supported(c.head_dim) &&
                              cuda::attention_backward_tc_supported(c.head_dim);
    if (tensor_cores) {
      attn = time_attention(c, o.batches.front().first, o.batches.front().second, o.tiny ? 2 : 5);
      std::printf("attention alone (%dx%d tokens, heads %d/%d x %d, causal): forward %.3f ms (%.1f TFLOP/s), trainer "
                  "backward %.3f ms (%.1f TFLOP/s)\n",
                  o.batches.front().first, o.batches.front().second, c.n_heads, c.n_kv_heads, c.head_dim, attn.fwd_ms,
                  attn.fwd_tflops, attn.bwd_ms, attn.bwd_tflops);
    }

    StatsOptions so;
    so.sites = {Site::Act, Site::H};
    so.n_layers = c.n_layers;
    ActivationStats stats(c, so);
    std::vector<EditSpec> edits;  // 1% of each layer's neurons set to 0 at act (deactivation)
    const int per_layer = std::max(1, c.intermediate / 100);
    for (int l = 0; l < c.n_layers; ++l)
      for (int i = 0; i < per_layer; ++i) {
        EditSpec e;
        e.layer = l;
        e.site = Site::Act;
        e.neuron = int32_t((int64_t(i) * 7919 + l * 31) % c.intermediate);
        e.op = InterveneOp::Set;
        e.value = 0.f;
        edits.push_back(e);
      }
    const Intervention iv(c, edits, {});
    std::vector<EditSpec> kojima_edits;  // 1% of the units of each linear layer's outputs set to 0
    for (Site site : {Site::Q, Site::K, Site::V, Site::O, Site::Gate, Site::Up, Site::Down}) {
      const int64_t W = site_width(c, site);
      for (int l = 0; l < c.n_layers; ++l)
        for (int64_t i = 0; i < std::max<int64_t>(1, W / 100); ++i) {
          EditSpec e;
          e.layer = l;
          e.site = site;
          e.neuron = int32_t((i * 7919 + l * 31) % W);
          e.op = InterveneOp::Set;
          e.value = 0.f;
          kojima_edits.push_back(e);
        }
    }
    const Intervention kojima(c, kojima_edits, {});

    const double params = matmul_params_per_layer(c) * c.n_layers;
    std::printf("\n%-12s %10s %10s %8s %10s %10s %10s\n", "batch", "tokens/s", "TFLOP/s", "MFU", "stats x", "interv x",
                "kojima x");
    struct Row {
      int n, len;
      double tps, tflops, mfu, stats_ratio, iv_ratio, kojima_ratio;
    };
    std::vector<Row> rows;
    bench::StepBreakdown steps;
    double steps_timed_s = 0;
    for (const auto& [n, len] : o.batches) {
      std::vector<int32_t> tokens(size_t(n) * size_t(len)), lens(size_t(n), len);
      for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = int32_t((i * 2654435761u) % uint32_t(c.vocab));
      const int64_t T = int64_t(tokens.size());
      auto request = [&](ActivationStats* st, const Intervention* inter) {  // the profiling forward: no LM head
        ForwardRequest r;
        r.tokens = tokens.data();
        r.n_tokens = T;
        r.seq_lens = lens.data();
        r.n_seqs = n;
        r.logits = LogitsMode::None;
        r.last_layer = c.n_layers - 1;
        r.stats = st;
        r.intervention = inter;
        return r;
      };
      auto time_forward = [&](ActivationStats* st, const Intervention* inter) {
        const ForwardRequest r = request(st, inter);
        ForwardResult out;
        rt->forward(r, out);  // warm-up (buffers, heuristics)
        const int reps = 3;
        const double t0 = now_s();
        for (int i = 0; i < reps; ++i) rt->forward(r, out);  // forward() ends with a synchronize
        return (now_s() - t0) / reps;
      };
      const double t_stats = time_forward(&stats, nullptr);
      const double t_plain = time_forward(nullptr, nullptr);
      const double t_iv = time_forward(nullptr, &iv);
      const double t_kojima = time_forward(nullptr, &kojima);
      double keys = 0;  // over layers, the keys each token attends to (a window cuts them on its layers)
      for (int l = 0; l < c.n_layers; ++l) keys += attended_keys(n, len, c.window_of(l));
      const double flops = 2 * params * double(T) + 4.0 * double(c.n_heads) * c.head_dim * keys;
      Row row{n, len, double(T) / t_stats, flops / t_stats / 1e12, 0, t_stats / t_plain, t_iv / t_plain, t_kojima / t_plain};
      row.mfu = row.tflops / gemm_tflops;
      rows.push_back(row);
      std::printf("%3dx%-8d %10.0f %10.1f %8.3f %10.3f %10.3f %10.3f\n", n, len, row.tps, row.tflops, row.mfu,
                  row.stats_ratio, row.iv_ratio, row.kojima_ratio);
      if (rows.size() == 1) {  // the first batch's steps, printed after the table
        steps = bench::time_steps(*rt, request(&stats, nullptr), keys);
        steps_timed_s = t_stats;
      }
    }
    bench::print_steps(steps, o.batches.front().first, o.batches.front().second, gemm_tflops, copy_gbs, steps_timed_s);

    // ---- decode (KV cache; a 128-token prompt per sequence, then one token per sequence per step)
    const double weight_bytes = 2.0 * (params + double(c.vocab) * c.hidden);  // matmuls + LM head, bf16
    const double limit_ms = weight_bytes / (copy_gbs * 1e9) * 1e3;
    // Each batch twice: the step returning the last logits to the host (n_seqs x vocab floats), and the step that
    // picks the next tokens on the device (LogitsMode::Greedy, what greedy generation runs).
    struct Dec {
      int batch;
      double step_ms, ratio, greedy_ms, greedy_ratio;
    };
    std::vector<Dec> decs;
    MemoryReport mem;  // taken while the batch-32 KV cache is alive, so that it is in the stated bytes
    for (int B : {1, 32}) {
      const int prompt = o.tiny ? 16 : 128;
      auto cache = rt->make_cache(B, prompt + 2 * o.decode_steps + 1);
      std::vector<int32_t> slots(static_cast<size_t>(B)), lens(static_cast<size_t>(B), prompt),
          tokens(static_cast<size_t>(B * prompt));
      for (int i = 0; i < B; ++i) slots[size_t(i)] = i;
      for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = int32_t((i * 40503u) % uint32_t(c.vocab));
      ForwardRequest r;
      r.cache = cache.get();
      r.cache_slots = slots.data();
      r.logits = LogitsMode::Last;
      r.tokens = tokens.data();
      r.n_tokens = int64_t(tokens.size());
      r.seq_lens = lens.data();
      r.n_seqs = B;
      ForwardResult out;
      rt->forward(r, out);
      std::vector<int32_t> step(static_cast<size_t>(B)), ones(static_cast<size_t>(B), 1);
      r.tokens = step.data();
      r.n_tokens = B;
      r.seq_lens = ones.data();
      for (int i = 0; i < B; ++i) step[size_t(i)] = int32_t(i % c.vocab);
      rt->forward(r, out);  // warm-up of the 1-row shapes
      double t0 = now_s();
      for (int s = 1; s < o.decode_steps; ++s) rt->forward(r, out);
      const double ms = (now_s() - t0) / (o.decode_steps - 1) * 1e3;
      r.logits = LogitsMode::Greedy;
      rt->forward(r, out);  // warm-up of the pick
      t0 = now_s();
      for (int s = 1; s < o.decode_steps; ++s) rt->forward(r, out);
      const double greedy_ms = (now_s() - t0) / (o.decode_steps - 1) * 1e3;
      decs.push_back({B, ms, limit_ms / ms, greedy_ms, limit_ms / greedy_ms});
      if (B == 32) mem = rt->memory();
    }

    std::printf("\ncuBLASLt bf16 GEMM %lld^3: %.1f TFLOP/s; device copy: %.0f GB/s (read + write)\n", (long long)G,
                gemm_tflops, copy_gbs);
    for (const Dec& d : decs)
      std::printf("decode batch %2d: weight-read limit %.2f ms; logits to the host %.2f ms/step (%.0f tokens/s, ratio "
                  "%.2f); next token picked on the device %.2f ms/step (%.0f tokens/s, ratio %.2f)\n",
                  d.batch, limit_ms, d.step_ms, d.batch * 1e3 / d.step_ms, d.ratio, d.greedy_ms,
                  d.batch * 1e3 / d.greedy_ms, d.greedy_ratio);
    const double gib = 1024.0 * 1024 * 1024;
    std::printf("memory: device used %.2f GiB of %.2f; weights %.2f GiB + KV cache %.2f + activations %.2f + "
                "scratch %.2f = %.2f GiB\n",
                mem.device_used / gib, mem.device_total / gib, mem.weights / gib, mem.kv_cache / gib,
                mem.activations / gib, mem.scratch / gib,
                double(mem.weights + mem.kv_cache + mem.activations + mem.scratch) / gib);
    double best_tps = 0;
    for (const Row& r : rows) best_tps = std::max(best_tps, r.tps);
    // With --layers below the shape's count, scaled to the whole model: a token's time is nearly all per layer
    // (no LM head runs; the embedding lookup is a copy).
    const double depth = double(hm->shape_layers) / c.n_layers;
    const double hours = 1e8 / best_tps / 3600 * depth;
    std::printf("projected profiling time for 100M tokens per language: %.2f h%s (seed papers: 7-8 h per language, "
                "7B model, vLLM on an RTX 3090)\n",
                hours, depth != 1 ? " (scaled to the shape's layers from this run's)" : "");

    const Row& head = rows.front();
    const double stated = double(mem.weights + mem.kv_cache + mem.activations + mem.scratch);
    std::string js;
    char buf[1024];
    auto add = [&](const char* fmt, auto... args) {
      std::snprintf(buf, sizeof buf, fmt, args...);
      js += buf;
    };
    add("{\"bench\":\"gpu\",\"device\":\"%s\",\"runtime\":\"%s\",\"shape\":\"%s\",\"quick\":%s,\"tiny\":%s,\"layers\":%d,"
        "\"shape_layers\":%d,\"gemm_size\":%lld,\"gemm_tflops\":%.2f,\"copy_gbs\":%.1f",
        dev.name.c_str(), rt->describe().c_str(), o.shape.c_str(), o.quick ? "true" : "false", o.tiny ? "true" : "false",
        c.n_layers, hm->shape_layers, (long long)G, gemm_tflops, copy_gbs);
    add(",\"profile\":{\"seqs\":%d,\"len\":%d,\"tokens_per_s_stats\":%.1f,\"tflops\":%.2f,\"mfu_vs_gemm\":%.4f,"
        "\"stats_overhead\":%.4f,\"intervention_overhead\":%.4f,\"kojima_overhead\":%.4f,\"hours_per_100m_tokens\":%.3f}",
        head.n, head.len, head.tps, head.tflops, head.mfu, head.stats_ratio, head.iv_ratio, head.kojima_ratio, hours);
    js += ",\"profile_batches\":[";
    for (size_t i = 0; i < rows.size(); ++i)
      add("%s{\"seqs\":%d,\"len\":%d,\"tokens_per_s_stats\":%.1f,\"tflops\":%.2f,\"mfu_vs_gemm\":%.4f,"
          "\"stats_overhead\":%.4f,\"intervention_overhead\":%.4f,\"kojima_overhead\":%.4f}",
          i ? "," : "", rows[i].n, rows[i].len, rows[i].tps, rows[i].tflops, rows[i].mfu, rows[i].stats_ratio,
          rows[i].iv_ratio, rows[i].kojima_ratio);
    js += "]";
    if (tensor_cores)
      add(",\"attention\":{\"seqs\":%d,\"len\":%d,\"fwd_ms\":%.4f,\"fwd_tflops\":%.2f,\"bwd_ms\":%.4f,"
          "\"bwd_tflops\":%.2f}",
          o.batches.front().first, o.batches.front().second, attn.fwd_ms, attn.fwd_tflops, attn.bwd_ms, attn.bwd_tflops);
    js += ",\"steps\":" + bench::steps_json(steps);
    js += ",\"decode\":[";
    for (size_t i = 0; i < decs.size(); ++i)
      add("%s{\"batch\":%d,\"ms_per_step\":%.3f,\"weight_read_limit_ms\":%.3f,\"ratio_vs_bandwidth_limit\":%.4f,"
          "\"greedy_ms_per_step\":%.3f,\"greedy_ratio_vs_bandwidth_limit\":%.4f}",
          i ? "," : "", decs[i].batch, decs[i].step_ms, limit_ms, decs[i].ratio, decs[i].greedy_ms, decs[i].greedy_ratio);
    add("],\"memory\":{\"device_used\":%lld,\"device_total\":%lld,\"weights\":%lld,\"kv_cache\":%lld,"
        "\"activations\":%lld,\"scratch\":%lld,\"ratio_used_vs_stated\":%.4f},\"seconds\":%.1f}",
        (long long)mem.device_used, (long long)mem.device_total, (long long)mem.weights, (long long)mem.kv_cache,
        (long long)mem.activations, (long long)mem.scratch, double(mem.device_used) / stated, now_s() - t_start);
    std::printf("%s\n", js.c_str());
    if (!o.json_out.empty()) write_json(o.json_out, js);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_gpu: %s\n", e.what());
    return 1;
  }
  return 0;
}
