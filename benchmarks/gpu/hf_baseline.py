#!/usr/bin/env python3
"""The baseline of benchmarks/gpu: Hugging Face transformers (PyTorch, bf16, sdpa attention) doing the profiling
job the way the seed papers' code does it — a plain forward with hooks that collect per-neuron statistics — on
the same model shape and the same batch shape as the engine's benchmark (bench_gpu).

Statistics collected, as the engine's `profile --sites act,h`: for act = act_fn(gate_proj(x)) (a forward hook on
mlp.act_fn) and h = act * up_proj(x) (a forward pre-hook on mlp.down_proj), per neuron: the count of values > 0
(int64), the sum and the sum of squares (float32 accumulation per batch, as a torch reduction does). The base
model runs without its LM head (LlamaModel, not LlamaForCausalLM), as the engine's profiling does, so the
comparison is of the same work.

Prints a table and one JSON line (prefix "JSON ") for scripts/gpu-check.sh. Weights are random (seeded), made
directly on the GPU in bf16; nothing is downloaded.
"""
import argparse
import json
import time

import torch

SHAPES = {
    # Llama-3.1-8B: the reference shape.
    "llama-3.1-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                         num_key_value_heads=8, vocab_size=128256, rope_theta=500000.0,
                         rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                       "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}),
    "llama-3.2-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                         num_key_value_heads=8, vocab_size=128256, rope_theta=500000.0,
                         rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                       "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shape", choices=sorted(SHAPES), default="llama-3.1-8b")
    p.add_argument("--batch", type=int, default=8, help="sequences per batch")
    p.add_argument("--seq-len", type=int, default=1024, help="tokens per sequence")
    p.add_argument("--rounds", type=int, default=5, help="timed batches per variant")
    p.add_argument("--warmup", type=int, default=2)
    args = p.parse_args()

    from transformers import LlamaConfig, LlamaModel

    torch.manual_seed(0)
    dev = torch.device("cuda")
    cfg = LlamaConfig(**SHAPES[args.shape], max_position_embeddings=131072, attn_implementation="sdpa",
                      torch_dtype=torch.bfloat16)
    torch.set_default_dtype(torch.bfloat16)
    with dev:
        model = LlamaModel(cfg)
    torch.set_default_dtype(torch.float32)
    model = model.to(dtype=torch.bfloat16).eval()
    params = sum(p.numel() for p in model.parameters())

    L, I = cfg.num_hidden_layers, cfg.intermediate_size
    stats = {site: {"over_zero": torch.zeros(L, I, dtype=torch.int64, device=dev),
                    "sum": torch.zeros(L, I, dtype=torch.float32, device=dev),
                    "sum_sq": torch.zeros(L, I, dtype=torch.float32, device=dev)} for site in ("act", "h")}

    def record(site: str, layer: int, x: torch.Tensor) -> None:
        v = x.reshape(-1, x.shape[-1])
        s = stats[site]
        s["over_zero"][layer] += (v > 0).sum(dim=0)
        vf = v.float()
        s["sum"][layer] += vf.sum(dim=0)
        s["sum_sq"][layer] += (vf * vf).sum(dim=0)

    handles = []

    def add_hooks() -> None:
        for l, layer in enumerate(model.layers):
            handles.append(layer.mlp.act_fn.register_forward_hook(
                lambda _m, _i, out, l=l: record("act", l, out)))
            handles.append(layer.mlp.down_proj.register_forward_pre_hook(
                lambda _m, inp, l=l: record("h", l, inp[0])))

    def remove_hooks() -> None:
        while handles:
            handles.pop().remove()

    ids = torch.randint(0, cfg.vocab_size, (args.batch, args.seq_len), device=dev)
    tokens = args.batch * args.seq_len

    @torch.inference_mode()
    def timed(rounds: int) -> float:
        for _ in range(args.warmup):
            model(input_ids=ids, use_cache=False)
        torch.cuda.synchronize()
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            model(input_ids=ids, use_cache=False)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        times.sort()
        return times[len(times) // 2]

    plain = timed(args.rounds)
    add_hooks()
    hooked = timed(args.rounds)
    remove_hooks()

    # The bf16 GEMM rate PyTorch (cuBLAS) reaches at 8192^3, for reference next to the engine's cuBLASLt figure.
    a = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(10):
        a @ b
    torch.cuda.synchronize()
    gemm_tflops = 10 * 2 * 8192 ** 3 / (time.perf_counter() - t0) / 1e12

    peak_mem = torch.cuda.max_memory_allocated()
    active = stats["act"]["over_zero"].sum().item()
    res = {
        "baseline": "transformers", "torch": torch.__version__, "shape": args.shape, "params": params,
        "batch": args.batch, "seq_len": args.seq_len, "tokens_per_batch": tokens,
        "seconds_plain": plain, "seconds_hooked": hooked,
        "tokens_per_s_plain": tokens / plain, "tokens_per_s_hooked": tokens / hooked,
        "hook_overhead": hooked / plain, "torch_bf16_gemm_tflops": gemm_tflops,
        "peak_memory_bytes": peak_mem, "act_over_zero_total": active,
    }
    print(f"transformers {torch.__version__}, {args.shape} ({params / 1e9:.2f} B parameters), "
          f"batches of {args.batch} x {args.seq_len} tokens, bf16, sdpa, no LM head")
    print(f"  forward                  {tokens / plain:10.0f} tokens/s")
    print(f"  forward + hooks (act, h) {tokens / hooked:10.0f} tokens/s  (hooks cost x{hooked / plain:.3f})")
    print(f"  torch bf16 GEMM 8192^3   {gemm_tflops:10.1f} TFLOP/s")
    print("JSON " + json.dumps(res))


if __name__ == "__main__":
    main()
