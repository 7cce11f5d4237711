#!/usr/bin/env python3
"""Checks a GGUF written by safetensors_to_gguf.py against the checkpoint it came from, reading it back with
gguf-py's GGUFReader: every safetensors tensor present under its llama.cpp name with the right shape and type,
values equal (bit for bit in BF16, exactly widened in F32; q/k rows of `llama` models in llama.cpp's interleaved
rotary order, checked element by element), the architecture metadata from config.json, a vocab of vocab_size.

    PYTHONPATH=$LLAMA_CPP_DIR/gguf-py python3 check_gguf.py <checkpoint dir> <file.gguf> --type f32|bf16

Prints one JSON line {"ok": true, "tensors": N} or the first mismatch on stderr with exit code 1.
"""
from __future__ import annotations

import argparse
import json
import os
import struct
import sys

import numpy as np

# The names llama.cpp uses (llama-arch.cpp), written out here rather than taken from gguf-py's map, so that a
# wrong mapping in the converter cannot agree with itself.
LAYER_NAMES = {
    'input_layernorm.weight': 'attn_norm.weight', 'post_attention_layernorm.weight': 'ffn_norm.weight',
    'self_attn.q_proj.weight': 'attn_q.weight', 'self_attn.k_proj.weight': 'attn_k.weight',
    'self_attn.v_proj.weight': 'attn_v.weight', 'self_attn.o_proj.weight': 'attn_output.weight',
    'self_attn.q_proj.bias': 'attn_q.bias', 'self_attn.k_proj.bias': 'attn_k.bias', 'self_attn.v_proj.bias': 'attn_v.bias',
    'mlp.gate_proj.weight': 'ffn_gate.weight', 'mlp.up_proj.weight': 'ffn_up.weight', 'mlp.down_proj.weight': 'ffn_down.weight',
}
TOP_NAMES = {'model.embed_tokens.weight': 'token_embd.weight', 'model.norm.weight': 'output_norm.weight', 'lm_head.weight': 'output.weight'}


def gguf_name(hf: str) -> str:
    if hf in TOP_NAMES:
        return TOP_NAMES[hf]
    parts = hf.split('.', 3)  # model, layers, i, rest
    return f'blk.{parts[2]}.{LAYER_NAMES[parts[3]]}'


def field_value(field):
    """The Python value of a GGUFReader field (this gguf-py has no ReaderField.contents())."""
    from gguf import GGUFValueType
    text = lambda i: bytes(field.parts[i]).decode('utf-8')
    if field.types[0] == GGUFValueType.STRING:
        return text(field.data[0])
    if field.types[0] == GGUFValueType.ARRAY:
        if field.types[-1] == GGUFValueType.STRING:
            return [text(i) for i in field.data]
        return [field.parts[i][0].item() for i in field.data]
    return field.parts[field.data[0]][0].item()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument('checkpoint')
    p.add_argument('gguf')
    p.add_argument('--type', choices=['f32', 'bf16'], required=True)
    a = p.parse_args()
    from gguf import GGMLQuantizationType, GGUFReader

    def bad(msg: str) -> int:
        print(f'check_gguf: {a.gguf}: {msg}', file=sys.stderr)
        return 1

    cfg = json.load(open(os.path.join(a.checkpoint, 'config.json')))
    st_path = os.path.join(a.checkpoint, 'model.safetensors')
    with open(st_path, 'rb') as f:
        (n,) = struct.unpack('<Q', f.read(8))
        header = json.loads(f.read(n))
    header.pop('__metadata__', None)
    data = np.memmap(st_path, dtype=np.uint8, mode='r', offset=8 + n)

    reader = GGUFReader(a.gguf)
    arch = cfg['model_type']
    fields = {name: field_value(fld) for name, fld in reader.fields.items()}
    want = {
        'general.architecture': arch, f'{arch}.embedding_length': cfg['hidden_size'], f'{arch}.block_count': cfg['num_hidden_layers'],
        f'{arch}.feed_forward_length': cfg['intermediate_size'], f'{arch}.attention.head_count': cfg['num_attention_heads'],
        f'{arch}.attention.head_count_kv': cfg['num_key_value_heads'],
    }
    for key, value in want.items():
        if fields.get(key) != value:
            return bad(f'metadata {key} is {fields.get(key)!r}, expected {value!r}')
    if abs(fields.get(f'{arch}.rope.freq_base', 0) - cfg['rope_theta']) > 1e-3 * cfg['rope_theta']:
        return bad(f'metadata {arch}.rope.freq_base is {fields.get(f"{arch}.rope.freq_base")}, expected {cfg["rope_theta"]}')
    if len(fields.get('tokenizer.ggml.tokens', [])) != cfg['vocab_size']:
        return bad(f'vocab has {len(fields.get("tokenizer.ggml.tokens", []))} tokens, expected vocab_size {cfg["vocab_size"]}')

    tensors = {t.name: t for t in reader.tensors}
    n_head, n_kv = cfg['num_attention_heads'], cfg['num_key_value_heads']
    head_dim = cfg.get('head_dim', cfg['hidden_size'] // n_head)
    for hf, info in header.items():
        name = gguf_name(hf)
        t = tensors.get(name)
        if t is None:
            return bad(f'tensor {name} (from {hf}) is missing')
        shape = list(info['shape'])
        if [int(x) for x in reversed(t.shape.tolist())] != shape:
            return bad(f'tensor {name} has shape {list(reversed(t.shape.tolist()))}, expected {shape}')
        a0, a1 = info['data_offsets']
        bits = data[a0:a1].view(np.uint16).reshape(shape)
        bf16_out = a.type == 'bf16' and len(shape) > 1
        want_type = GGMLQuantizationType.BF16 if bf16_out else GGMLQuantizationType.F32
        if t.tensor_type != want_type:
            return bad(f'tensor {name} is {t.tensor_type.name}, expected {want_type.name}')
        got = np.asarray(t.data)
        got_bits = got.view(np.uint16).reshape(shape) if bf16_out else got.reshape(shape).view(np.uint32)
        if not bf16_out and np.any(got_bits & 0xFFFF):
            return bad(f'tensor {name}: F32 values are not exact widenings of bf16 values')
        got16 = got_bits if bf16_out else (got_bits >> 16).astype(np.uint16)
        rotary = arch == 'llama' and (hf.endswith('q_proj.weight') or hf.endswith('k_proj.weight'))
        if rotary:
            # GGUF row h*d + 2j + s holds HF row h*d + s*(d/2) + j (HF rotates halves, llama.cpp adjacent pairs).
            heads = n_head if 'q_proj' in hf else n_kv
            for h in range(heads):
                for j in range(head_dim // 2):
                    for s in range(2):
                        if not np.array_equal(got16[h * head_dim + 2 * j + s], bits[h * head_dim + s * (head_dim // 2) + j]):
                            return bad(f'tensor {name}: row {h * head_dim + 2 * j + s} is not HF row {h * head_dim + s * (head_dim // 2) + j}')
        elif not np.array_equal(got16, bits):
            return bad(f'tensor {name}: values differ from {hf}')
    extra = set(tensors) - {gguf_name(h) for h in header} - {'rope_freqs.weight'}
    if extra:
        return bad(f'unexpected tensors {sorted(extra)}')
    print(json.dumps({'ok': True, 'tensors': len(header)}))
    return 0


if __name__ == '__main__':
    sys.exit(main())
