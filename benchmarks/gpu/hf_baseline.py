#!/usr/bin/env python3
"""The baseline of benchmarks/gpu: Hugging Face transformers (PyTorch, bf16, sdpa attention) doing the profiling
job the way the seed papers' code does it — a plain forward with hooks that collect per-neuron statistics — on
the same model shape and the same batch shape as the engine's benchmark (bench_gpu).

Statistics collected, as the engine's `profile --sites act,h`: for act = act_fn(gate_proj(x)) (a forward hook on
mlp.act_fn) and h = act * up_proj(x) (a forward pre-hook on mlp.down_proj), per neuron: the count of values > 0
(int64), the sum and the sum of squares (float32 accumulation per batch, as a torch reduction does). The base
model runs without its LM head (LlamaModel, not LlamaForCausalLM; AutoModel for the other families), as the
engine's profiling does, so the comparison is of the same work.

Shapes: Llama-3.1-8B (the issue's), Llama-3.2-1B, and the other families' seed-paper models (bench_gpu --shape names
them alike; scripts/gpu-bench-families.sh runs both). transformers' sdpa attention has no soft cap: for Gemma 2 it
leaves out the cap of the attention scores that the engine computes (a slightly lighter job for the baseline).

Prints a table and one JSON line (prefix "JSON ") for scripts/gpu-check.sh. Weights are random (seeded), made
directly on the GPU in bf16; nothing is downloaded. Needs transformers 4.43 or later (Llama 3.1's RoPE); checked on
the CPU with 4.57 and 5.18.

`--device cpu --shape tiny` is a smoke test of the script itself (a CPU without a GPU): its figures mean nothing.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "common"))
from hf_llama import model_config, require_torch  # noqa: E402  (benchmarks/common, beside this folder)

torch = require_torch("hf_baseline")

SHAPES = {
    # Llama-3.1-8B: the reference shape.
    "llama-3.1-8b": dict(model_type="llama", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                         num_key_value_heads=8, vocab_size=128256, rope_theta=500000.0,
                         rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                       "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}),
    "llama-3.2-1b": dict(model_type="llama", hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                         num_key_value_heads=8, vocab_size=128256, rope_theta=500000.0,
                         rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                       "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}),
    # The other families' seed-paper models (their config.json on the hub, the fields that shape the work).
    "qwen2.5-7b": dict(model_type="qwen2", hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                       num_attention_heads=28, num_key_value_heads=4, vocab_size=152064, rope_theta=1000000.0,
                       rms_norm_eps=1e-6),
    "qwen3-8b": dict(model_type="qwen3", hidden_size=4096, intermediate_size=12288, num_hidden_layers=36,
                     num_attention_heads=32, num_key_value_heads=8, head_dim=128, vocab_size=151936,
                     rope_theta=1000000.0, rms_norm_eps=1e-6),
    "gemma-2-9b": dict(model_type="gemma2", hidden_size=3584, intermediate_size=14336, num_hidden_layers=42,
                       num_attention_heads=16, num_key_value_heads=8, head_dim=256, vocab_size=256000,
                       rope_theta=10000.0, rms_norm_eps=1e-6, query_pre_attn_scalar=256, sliding_window=4096,
                       attn_logit_softcapping=50.0, final_logit_softcapping=30.0),
    "aya-expanse-8b": dict(model_type="cohere", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                           num_attention_heads=32, num_key_value_heads=8, vocab_size=256000, rope_theta=10000.0,
                           layer_norm_eps=1e-5, logit_scale=0.125, use_qk_norm=False),
    # A smoke test of the script (--device cpu), not a benchmark.
    "tiny": dict(model_type="llama", hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=512, rope_theta=500000.0),
}


def fail(msg: str) -> None:
    print(f"hf_baseline: {msg}", file=sys.stderr)
    sys.exit(1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shape", choices=sorted(SHAPES), default="llama-3.1-8b")
    p.add_argument("--batch", type=int, default=8, help="sequences per batch")
    p.add_argument("--seq-len", type=int, default=1024, help="tokens per sequence")
    p.add_argument("--layers", type=int, default=None, help="decoder layers (default: the shape's)")
    p.add_argument("--rounds", type=int, default=5, help="timed batches per variant")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu (a smoke test of the script only)")
    args = p.parse_args()

    try:
        from transformers import AutoModel
    except ImportError as e:
        fail(f"transformers is not importable in {sys.executable} ({e}): the baseline needs PyTorch + transformers")
    dev = torch.device(args.device)
    on_cuda = dev.type == "cuda"
    if on_cuda and torch.cuda.device_count() <= (dev.index or 0):
        fail(f"--device {args.device}: torch {torch.__version__} sees {torch.cuda.device_count()} CUDA devices")
    if on_cuda and dev.index is not None:
        torch.cuda.set_device(dev.index)  # max_memory_allocated, synchronize: this device

    def sync() -> None:
        if on_cuda:
            torch.cuda.synchronize()

    torch.manual_seed(0)
    shape = dict(SHAPES[args.shape])
    model_type = shape.pop("model_type")
    if args.layers is not None:
        if args.layers < 1:
            fail(f"--layers {args.layers}: expected a positive number")
        shape["num_hidden_layers"] = args.layers
    cfg = model_config(model_type, shape, max_position_embeddings=131072, attn_implementation="sdpa")
    torch.set_default_dtype(torch.bfloat16)  # made in bf16 on the device: no float32 copy first
    try:
        with dev:
            model = AutoModel.from_config(cfg)
    finally:
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
        sync()
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            model(input_ids=ids, use_cache=False)
            sync()
            times.append(time.perf_counter() - t0)
        times.sort()
        return times[len(times) // 2]

    plain = timed(args.rounds)
    add_hooks()
    hooked = timed(args.rounds)
    remove_hooks()

    # The bf16 GEMM rate PyTorch (cuBLAS) reaches at 8192^3, for reference next to the engine's cuBLASLt figure
    # (on the CPU smoke test a small size, so that it ends in a moment).
    n = 8192 if on_cuda else 256
    a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    sync()
    t0 = time.perf_counter()
    for _ in range(10):
        a @ b
    sync()
    gemm_tflops = 10 * 2 * n ** 3 / (time.perf_counter() - t0) / 1e12

    peak_mem = torch.cuda.max_memory_allocated() if on_cuda else None
    active = stats["act"]["over_zero"].sum().item()
    import transformers
    res = {
        "baseline": "transformers", "torch": torch.__version__, "transformers": transformers.__version__,
        "device": str(dev), "shape": args.shape, "model_type": model_type, "layers": cfg.num_hidden_layers,
        "params": params,
        "batch": args.batch, "seq_len": args.seq_len, "tokens_per_batch": tokens,
        "seconds_plain": plain, "seconds_hooked": hooked,
        "tokens_per_s_plain": tokens / plain, "tokens_per_s_hooked": tokens / hooked,
        "hook_overhead": hooked / plain, "torch_bf16_gemm_tflops": gemm_tflops, "torch_bf16_gemm_size": n,
        "peak_memory_bytes": peak_mem, "act_over_zero_total": active,
    }
    print(f"transformers {transformers.__version__}, torch {torch.__version__} on {dev}, {args.shape}, {cfg.num_hidden_layers} layers ({params / 1e9:.2f} B parameters), "
          f"batches of {args.batch} x {args.seq_len} tokens, bf16, sdpa, no LM head")
    print(f"  forward                  {tokens / plain:10.0f} tokens/s")
    print(f"  forward + hooks (act, h) {tokens / hooked:10.0f} tokens/s  (hooks cost x{hooked / plain:.3f})")
    print(f"  {f'torch bf16 GEMM {n}^3':<25}{gemm_tflops:10.1f} TFLOP/s")
    print("JSON " + json.dumps(res))


if __name__ == "__main__":
    main()
