#!/usr/bin/env python3
"""Baselines of benchmarks/gpu-finetune: what a fine-tuning step costs in PyTorch + transformers (bf16) done the
way the seed papers' public code does it, on the engine benchmark's shapes and batches (8 x 512 tokens, a random
1% neuron mask), so that the engine's `neurons` step can be compared with it in the same run.

Methods:
  masked-dense  the seed papers' way: every FFN weight (gate/up/down of every layer) requires grad, the backward
                computes their dense gradients, a hook multiplies each by the language mask (rows of gate/up,
                columns of down), and AdamW (torch.optim.AdamW, decoupled weight decay) keeps state for the full
                tensors; attention, norms and embeddings frozen.
  full          every parameter trained with AdamW (the 1B shape; the 8B shape is tried and reported as
                "out of memory" when it does not fit).
  lora          PEFT LoRA with the engine's `lora` settings (src/train/methods.ts LORA_DEFAULTS.lora): r 32,
                alpha 64, dropout 0.1 on gate_proj / up_proj / down_proj (peft's LoraConfig), AdamW on the adapters.

Each method: median step time (forward + backward + gradient clipping + optimizer step) over timed steps after
warm-up, tokens/s, the peak device memory of the steps (torch.cuda.max_memory_allocated; also the allocator's
peak reservation and the device's used bytes as the driver sees them), and the gradient + optimizer memory (the
trainable tensors' gradients and AdamW's state). Each method starts from a fresh model; one that runs out of
memory is reported as such and freed before the next. Prints a table and one JSON line per method (prefix "JSON ").

The shape: --shape (a name below) or --config (a config.json, as benchmarks/gpu-finetune/run.mjs writes for its
checkpoints, so that both sides train the same shape). Needs transformers 4.43 or later (Llama 3.1's RoPE); checked
on the CPU with 4.57 and 5.18, with peft 0.21 and without peft.

`--device cpu --shape tiny` is a smoke test of the script itself (a CPU without a GPU): its figures mean nothing,
and the memory figures are null.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "common"))
from hf_llama import llama_config, require_torch  # noqa: E402  (benchmarks/common, beside this folder)

torch = require_torch("torch_baseline")

SHAPES = {
    "llama-3.2-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                         num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=True),
    "llama-3.1-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                         num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=False),
    # A smoke test of the script (--device cpu), not a benchmark.
    "tiny": dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=512, tie_word_embeddings=False),
}


CONFIG_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
               "head_dim", "vocab_size", "tie_word_embeddings", "rms_norm_eps", "rope_theta", "rope_scaling",
               "max_position_embeddings")


def shape_from_config(path: str) -> dict:
    with open(path) as f:
        c = json.load(f)
    return {k: c[k] for k in CONFIG_KEYS if c.get(k) is not None}


class Device:
    """The device the steps run on, and its memory figures: torch.cuda's on a GPU, None on the CPU smoke test."""

    def __init__(self, spec: str):
        self.cuda = spec != "cpu"
        self.torch = torch.device("cuda", int(spec)) if self.cuda else torch.device("cpu")

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def free_cache(self) -> None:
        if self.cuda:
            torch.cuda.empty_cache()

    def reset_peak(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()

    def memory(self) -> dict:
        if not self.cuda:
            return {"peak_memory_bytes": None, "peak_reserved_bytes": None, "device_used_bytes": None}
        free, total = torch.cuda.mem_get_info()
        return {"peak_memory_bytes": torch.cuda.max_memory_allocated(),
                "peak_reserved_bytes": torch.cuda.max_memory_reserved(), "device_used_bytes": total - free}

    def allocated(self) -> int | None:
        return torch.cuda.memory_allocated() if self.cuda else None


def make_model(shape: dict, dev: Device):
    from transformers import LlamaForCausalLM
    shape = {"max_position_embeddings": 131072, **shape}  # Llama 3.x's; rope "llama3" reads only the original's
    cfg = llama_config(shape, attn_implementation="sdpa")
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)  # made in bf16 on the device: no float32 copy first
    try:
        with dev.torch:
            model = LlamaForCausalLM(cfg)
    finally:
        torch.set_default_dtype(torch.float32)
    return model.to(dtype=torch.bfloat16), cfg


def random_mask(cfg, fraction: float, device: torch.device, seed: int = 1) -> list:
    g = torch.Generator(device="cpu").manual_seed(seed)
    n = max(1, round(cfg.intermediate_size * fraction))
    return [torch.randperm(cfg.intermediate_size, generator=g)[:n].to(device) for _ in range(cfg.num_hidden_layers)]


def setup(method: str, model, cfg, mask):
    for p in model.parameters():
        p.requires_grad_(False)
    if method == "full":
        params = [p for p in model.parameters()]
        for p in params:
            p.requires_grad_(True)
        return model, params
    if method == "masked-dense":
        params = []
        for l, layer in enumerate(model.model.layers):
            keep = torch.zeros(cfg.intermediate_size, device=mask[l].device, dtype=torch.bfloat16)
            keep[mask[l]] = 1
            for name in ("gate_proj", "up_proj"):
                w = getattr(layer.mlp, name).weight
                w.requires_grad_(True)
                w.register_hook(lambda g, k=keep: g * k[:, None])  # rows of gate/up
                params.append(w)
            w = layer.mlp.down_proj.weight
            w.requires_grad_(True)
            w.register_hook(lambda g, k=keep: g * k[None, :])  # columns of down
            params.append(w)
        return model, params
    if method == "lora":
        try:
            from peft import LoraConfig, get_peft_model
        except Exception as e:  # absent (no network on the reference machine), or not importable with this
            # transformers: the same computation in a module of our own, said in the results (lora_impl)
            global peft_import_error
            peft_import_error = str(e).split("\n")[0]
            return model, add_lora_modules(model, r=32, alpha=64, dropout=0.1)
        lcfg = LoraConfig(r=32, lora_alpha=64, lora_dropout=0.1, bias="none", task_type="CAUSAL_LM",
                          target_modules=["gate_proj", "up_proj", "down_proj"])
        peft_model = get_peft_model(model, lcfg)
        return peft_model, [p for p in peft_model.parameters() if p.requires_grad]
    raise ValueError(method)


class LoraLinear(torch.nn.Module):
    """PEFT's LoRA Linear forward (peft/tuners/lora/layer.py): base(x) + B(A(dropout(x))) * alpha / r, with A
    initialised as PEFT's kaiming-uniform and B as zeros, the adapter in float32 as PEFT's autocast_adapter_dtype."""

    def __init__(self, base: torch.nn.Linear, r: int, alpha: float, dropout: float):
        super().__init__()
        self.base = base
        self.drop = torch.nn.Dropout(dropout)
        self.A = torch.nn.Linear(base.in_features, r, bias=False, device=base.weight.device, dtype=torch.float32)
        self.B = torch.nn.Linear(r, base.out_features, bias=False, device=base.weight.device, dtype=torch.float32)
        torch.nn.init.kaiming_uniform_(self.A.weight, a=5 ** 0.5)
        torch.nn.init.zeros_(self.B.weight)
        self.scale = alpha / r

    def forward(self, x):
        y = self.base(x)
        return y + (self.B(self.A(self.drop(x).to(torch.float32))) * self.scale).to(y.dtype)


def add_lora_modules(model, r: int, alpha: float, dropout: float) -> list:
    params = []
    for layer in model.model.layers:
        for name in ("gate_proj", "up_proj", "down_proj"):
            m = LoraLinear(getattr(layer.mlp, name), r, alpha, dropout)
            setattr(layer.mlp, name, m)
            params += [m.A.weight, m.B.weight]
    return params


peft_import_error = None  # why peft could not be imported, once setup("lora") tried


def lora_impl(method: str, model) -> str | None:
    if method != "lora":
        return None
    if any(isinstance(m, LoraLinear) for m in model.modules()):
        return f"own module (peft not importable: {peft_import_error})"
    import peft
    return f"peft {peft.__version__}"


def run(method: str, shape_name: str, shape: dict, batch: int, seq_len: int, steps: int, warmup: int,
        fraction: float, dev: Device) -> dict:
    dev.free_cache()
    dev.reset_peak()
    model, cfg = make_model(shape, dev)
    mask = random_mask(cfg, fraction, dev.torch)
    model, params = setup(method, model, cfg, mask)
    model.train()
    opt = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.01)
    ids = torch.randint(0, cfg.vocab_size, (batch, seq_len), device=dev.torch)
    trainable = sum(p.numel() for p in params)
    dev.sync()
    base_mem = dev.allocated()
    times = []
    dev.reset_peak()
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        # use_cache=False: a training step keeps no KV cache (transformers otherwise takes use_cache from the
        # config, True, and fills a DynamicCache it never reads: device memory that is no part of the step).
        out = model(input_ids=ids, labels=ids, use_cache=False)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        dev.sync()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    times.sort()
    n = len(times)
    step = times[n // 2] if n % 2 else (times[n // 2 - 1] + times[n // 2]) / 2
    # Gradients (freed by zero_grad(set_to_none) after each step, held during it) + AdamW's state tensors.
    grad_bytes = sum(p.numel() * p.element_size() for p in params)
    state_bytes = sum(t.numel() * t.element_size() for st in opt.state.values() for t in st.values()
                      if torch.is_tensor(t))
    import transformers
    res = {"baseline": "torch", "method": method, "shape": shape_name, "batch": batch, "seq_len": seq_len,
           "trainable_params": trainable, "step_seconds": step, "tokens_per_s": batch * seq_len / step,
           **dev.memory(), "weights_memory_bytes": base_mem,
           "grad_opt_bytes": grad_bytes + state_bytes, "loss": out.loss.item(),
           "torch": torch.__version__, "transformers": transformers.__version__, "device": str(dev.torch),
           "lora_impl": lora_impl(method, model)}
    return res


def fail(msg: str) -> None:
    print(f"torch_baseline: {msg}", file=sys.stderr)
    sys.exit(1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shape", choices=sorted(SHAPES), default="llama-3.2-1b")
    p.add_argument("--config", help="config.json of the shape (instead of --shape)")
    p.add_argument("--shape-name", help="the name reported for --config (default: its folder's name)")
    p.add_argument("--device", default="0", help="CUDA device index, or cpu (a smoke test of the script only)")
    p.add_argument("--methods", default="masked-dense,full,lora")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--mask-fraction", type=float, default=0.01)
    a = p.parse_args()
    methods = a.methods.split(",")
    for m in methods:
        if m not in ("masked-dense", "full", "lora"):
            fail(f"--methods: unknown method '{m}' (methods: masked-dense, full, lora)")
    if a.device != "cpu" and not a.device.isdigit():
        fail(f"--device must be a CUDA device index or cpu, got '{a.device}'")
    try:
        shape = shape_from_config(a.config) if a.config else SHAPES[a.shape]
    except (OSError, ValueError) as e:
        fail(f"--config {a.config}: {e}")
    name = a.shape_name or (os.path.basename(os.path.dirname(os.path.abspath(a.config))) if a.config else a.shape)
    try:
        import transformers
    except ImportError as e:
        fail(f"transformers is not importable in {sys.executable} ({e}): the baselines need PyTorch + transformers")
    if a.device != "cpu" and torch.cuda.device_count() <= int(a.device):
        fail(f"--device {a.device}: torch {torch.__version__} sees {torch.cuda.device_count()} CUDA devices")
    dev = Device(a.device)
    if dev.cuda:
        torch.cuda.set_device(dev.torch)  # the memory figures and synchronize: this device
    print(f"torch {torch.__version__}, transformers {transformers.__version__} on {dev.torch}, {name}, batches of "
          f"{a.batch} x {a.seq_len} tokens, bf16, {a.mask_fraction:.0%} mask per layer")
    for method in methods:
        try:
            r = run(method, name, shape, a.batch, a.seq_len, a.steps, a.warmup, a.mask_fraction, dev)
        except torch.cuda.OutOfMemoryError:
            r = {"baseline": "torch", "method": method, "shape": name, "error": "out of memory"}
        except Exception as e:  # reported in the table, and the next method still runs
            r = {"baseline": "torch", "method": method, "shape": name, "error": f"{type(e).__name__}: {e}".split("\n")[0]}
        # Freed here, outside the handler: inside it the traceback still holds run()'s frame (the model, the
        # optimizer), and the next method would start on a device that is still full.
        gc.collect()
        dev.free_cache()
        if "error" in r:
            print(f"  {method:<13} {r['error']}")
        else:
            peak = "-" if r["peak_memory_bytes"] is None else f"{r['peak_memory_bytes'] / 2**30:.1f} GiB"
            print(f"  {method:<13} step {r['step_seconds'] * 1e3:8.1f} ms  {r['tokens_per_s']:9.0f} tok/s  "
                  f"peak {peak:>10}  trainable {r['trainable_params'] / 1e6:9.2f} M")
        print("JSON " + json.dumps(r))


if __name__ == "__main__":
    main()
