// The logits llama.cpp computes for one sequence of token ids, as JSON: the reference the test compares the
// engine's logits with on the converted checkpoints (same weights, so the same model up to rounding), which shows
// that the GGUF is the model the engine runs (names, rotary layout, biases, norms, tied LM head) and the
// benchmark compares like with like. Linked by run.mjs against the llama.cpp build it benchmarks.
//
//   llama-logits <model.gguf> <token id>...   ->   {"vocab": V, "logits": [[V floats] per token]}
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "llama.h"

static void quiet(ggml_log_level level, const char* text, void*) {
  if (level == GGML_LOG_LEVEL_ERROR) std::fputs(text, stderr);
}

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: llama-logits <model.gguf> <token id>...\n");
    return 1;
  }
  llama_log_set(quiet, nullptr);
  llama_backend_init();
  llama_model* model = llama_model_load_from_file(argv[1], llama_model_default_params());
  if (!model) {
    std::fprintf(stderr, "llama-logits: cannot load %s\n", argv[1]);
    return 1;
  }
  const int n = argc - 2;
  const int vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = n < 64 ? 64 : n;
  cp.n_batch = cp.n_ubatch = cp.n_ctx;
  cp.n_threads = cp.n_threads_batch = 1;
  // An f32 KV cache (llama.cpp's default is f16, whose rounding would dominate the comparison with the engine's f32).
  cp.type_k = cp.type_v = GGML_TYPE_F32;
  llama_context* ctx = llama_init_from_model(model, cp);
  if (!ctx) {
    std::fprintf(stderr, "llama-logits: cannot create a context\n");
    return 1;
  }
  llama_batch batch = llama_batch_init(n, 0, 1);
  for (int i = 0; i < n; ++i) {
    const long id = std::strtol(argv[i + 2], nullptr, 10);
    if (id < 0 || id >= vocab) {
      std::fprintf(stderr, "llama-logits: token id %s is not in [0, %d)\n", argv[i + 2], vocab);
      return 1;
    }
    batch.token[i] = llama_token(id);
    batch.pos[i] = i;
    batch.n_seq_id[i] = 1;
    batch.seq_id[i][0] = 0;
    batch.logits[i] = 1;
  }
  batch.n_tokens = n;
  if (llama_decode(ctx, batch) != 0) {
    std::fprintf(stderr, "llama-logits: llama_decode failed\n");
    return 1;
  }
  std::printf("{\"vocab\":%d,\"logits\":[", vocab);
  for (int i = 0; i < n; ++i) {
    const float* row = llama_get_logits_ith(ctx, i);
    std::printf(i ? ",[" : "[");
    for (int v = 0; v < vocab; ++v) std::printf(v ? ",%.9g" : "%.9g", row[v]);
    std::printf("]");
  }
  std::printf("]}\n");
  llama_batch_free(batch);
  llama_free(ctx);
  llama_model_free(model);
  llama_backend_free();
  return 0;
}
