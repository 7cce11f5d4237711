#!/usr/bin/env python3
"""Writes a benchmark checkpoint (config.json + model.safetensors, BF16, Hugging Face names; made by
benchmarks/common/synthetic-checkpoint.mjs) as a GGUF file llama.cpp loads, with llama.cpp's own gguf-py.

    PYTHONPATH=$LLAMA_CPP_DIR/gguf-py python3 safetensors_to_gguf.py <checkpoint dir> <out.gguf> --type f32|bf16

Does what llama.cpp's convert_hf_to_gguf.py does for these models (it needs torch and a real tokenizer, which
a random checkpoint has not): tensor names through gguf-py's TensorNameMap, the q/k rows of `llama` models
permuted into llama.cpp's rotary layout, `rope_freqs` for llama3 rope scaling, 1-D tensors (norms, biases)
kept F32, the same KV metadata. The vocabulary is a stand-in of the right size (the weights are random, so
no text means anything): a SentencePiece-style ("llama") vocab of <unk>, <s>, </s>, the 256 byte tokens
<0x00>..<0xFF> and numbered filler pieces. llama-bench feeds random token ids, so it never tokenizes.

Written to a temporary name in the same directory and renamed: a killed run leaves no half GGUF behind.
Bad input: one line on stderr naming the file or field, exit code 1.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import struct
import sys

import numpy as np


class BadInput(Exception):
    pass


def fail(msg: str) -> None:
    raise BadInput(msg)


def read_safetensors(path: str) -> dict[str, np.ndarray]:
    """Memory-mapped uint16 views (bf16 bits) of every tensor, in file order."""
    try:
        with open(path, 'rb') as f:
            (n,) = struct.unpack('<Q', f.read(8))
            header = json.loads(f.read(n))
    except (OSError, struct.error, ValueError) as e:
        fail(f'{path}: not a readable safetensors file ({e})')
    header.pop('__metadata__', None)
    data = np.memmap(path, dtype=np.uint8, mode='r', offset=8 + n)
    out = {}
    for name, t in header.items():
        if t.get('dtype') != 'BF16':
            fail(f'{path}: tensor {name} has dtype {t.get("dtype")}, expected BF16 (a benchmark checkpoint)')
        a, b = t['data_offsets']
        out[name] = data[a:b].view(np.uint16).reshape(t['shape'])
    return out


def bf16_bits_to_f32(bits: np.ndarray) -> np.ndarray:
    """Exact widening: a bf16 value is the upper half of the f32 with the same value."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def permute_rotary_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """convert_hf_to_gguf.py's LlamaModel.permute: HF's rotate-half row order to llama.cpp's interleaved pairs."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def llama3_rope_factors(cfg: dict, head_dim: int) -> np.ndarray:
    """convert_hf_to_gguf.py's LlamaModel.generate_extra_tensors: per-frequency divisors of llama3 scaling."""
    rs = cfg['rope_scaling']
    base = cfg.get('rope_theta', 10000.0)
    freqs = 1.0 / (base ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))
    factor = rs.get('factor', 8.0)
    low, high = rs.get('low_freq_factor', 1.0), rs.get('high_freq_factor', 4.0)
    old_ctx = rs.get('original_max_position_embeddings', 8192)
    low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
    out = []
    for freq in freqs:
        wavelen = 2 * math.pi / float(freq)
        if wavelen < high_wavelen:
            out.append(1.0)
        elif wavelen > low_wavelen:
            out.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def stand_in_vocab(vocab_size: int):
    """(tokens, scores, types) of a SentencePiece-style vocab of exactly vocab_size entries."""
    import gguf
    if vocab_size < 259:
        fail(f'config.json: vocab_size {vocab_size} is too small for the stand-in vocab (3 special + 256 byte tokens)')
    tokens = ['<unk>', '<s>', '</s>'] + [f'<0x{b:02X}>' for b in range(256)]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL] + [gguf.TokenType.BYTE] * 256
    tokens += [f'<t{i}>' for i in range(len(tokens), vocab_size)]
    types += [gguf.TokenType.NORMAL] * (vocab_size - len(types))
    scores = [0.0] * 3 + [0.0] * 256 + [-float(i) for i in range(vocab_size - 259)]
    return tokens, scores, types


def convert(ckpt_dir: str, out_path: str, out_type: str) -> None:
    import gguf

    cfg_path = os.path.join(ckpt_dir, 'config.json')
    try:
        with open(cfg_path) as f:
            cfg = json.load(f)
    except (OSError, ValueError) as e:
        fail(f'{cfg_path}: not a readable JSON file ({e})')
    arches = {'llama': gguf.MODEL_ARCH.LLAMA, 'qwen2': gguf.MODEL_ARCH.QWEN2}
    model_type = cfg.get('model_type')
    if model_type not in arches:
        fail(f'{cfg_path}: model_type {model_type!r} is not one of {", ".join(arches)}')
    for key in ('hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads', 'vocab_size'):
        if not isinstance(cfg.get(key), int) or cfg[key] <= 0:
            fail(f'{cfg_path}: {key} must be a positive integer')
    arch = arches[model_type]
    H, L, n_head = cfg['hidden_size'], cfg['num_hidden_layers'], cfg['num_attention_heads']
    n_head_kv = cfg.get('num_key_value_heads', n_head)
    head_dim = cfg.get('head_dim', H // n_head)
    tensors = read_safetensors(os.path.join(ckpt_dir, 'model.safetensors'))
    if cfg['vocab_size'] != tensors.get('model.embed_tokens.weight', np.empty((0, 0))).shape[0]:
        fail(f'{ckpt_dir}: model.embed_tokens.weight does not have vocab_size ({cfg["vocab_size"]}) rows')

    name_map = gguf.get_tensor_name_map(arch, L)
    bf16 = out_type == 'bf16'
    # (gguf name, numpy array in its final dtype): built lazily, one tensor at a time, while writing.
    plan = []
    if model_type == 'llama' and (cfg.get('rope_scaling') or {}).get('rope_type', '').lower() == 'llama3':
        factors = llama3_rope_factors(cfg, head_dim)
        plan.append((gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + '.weight', factors.shape, 'f32', lambda: factors))
    for name, bits in tensors.items():
        new_name = name_map.get_name(name, try_suffixes=('.weight', '.bias'))
        if new_name is None:
            fail(f'{ckpt_dir}/model.safetensors: tensor {name} has no GGUF name for {model_type}')

        def load(bits=bits, name=name):
            w = bits
            if model_type == 'llama' and name.endswith(('q_proj.weight', 'q_proj.bias')):
                w = permute_rotary_rows(w, n_head)
            elif model_type == 'llama' and name.endswith(('k_proj.weight', 'k_proj.bias')):
                w = permute_rotary_rows(w, n_head_kv)
            # 1-D tensors (norms, biases) stay F32 in both files, as convert_hf_to_gguf.py keeps them.
            return np.ascontiguousarray(w) if bf16 and w.ndim > 1 else bf16_bits_to_f32(np.asarray(w))
        plan.append((new_name, bits.shape, 'bf16' if bf16 and bits.ndim > 1 else 'f32', load))

    tmp = f'{out_path}.tmp-{os.getpid()}'
    writer = gguf.GGUFWriter(tmp, gguf.MODEL_ARCH_NAMES[arch])
    try:
        writer.add_name(os.path.basename(os.path.normpath(ckpt_dir)))
        writer.add_context_length(cfg.get('max_position_embeddings', 4096))
        writer.add_embedding_length(H)
        writer.add_block_count(L)
        writer.add_feed_forward_length(cfg['intermediate_size'])
        writer.add_head_count(n_head)
        writer.add_head_count_kv(n_head_kv)
        writer.add_rope_freq_base(cfg.get('rope_theta', 10000.0))
        writer.add_layer_norm_rms_eps(cfg.get('rms_norm_eps', 1e-6))
        if 'head_dim' in cfg:
            writer.add_key_length(head_dim)
            writer.add_value_length(head_dim)
        if model_type == 'llama':
            writer.add_vocab_size(cfg['vocab_size'])
            writer.add_rope_dimension_count(head_dim)
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_BF16 if bf16 else gguf.LlamaFileType.ALL_F32)
        tokens, scores, types = stand_in_vocab(cfg['vocab_size'])
        writer.add_tokenizer_model('llama')
        writer.add_token_list(tokens)
        writer.add_token_scores(scores)
        writer.add_token_types(types)
        writer.add_unk_token_id(0)
        writer.add_bos_token_id(1)
        writer.add_eos_token_id(2)
        writer.add_add_bos_token(False)
        writer.add_add_eos_token(False)
        writer.add_add_space_prefix(False)

        for new_name, shape, dtype, _ in plan:
            n = math.prod(shape)
            if dtype == 'bf16':
                writer.add_tensor_info(new_name, shape, np.dtype(np.uint16), 2 * n, raw_dtype=gguf.GGMLQuantizationType.BF16)
            else:
                writer.add_tensor_info(new_name, shape, np.dtype(np.float32), 4 * n)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for _, _, _, load in plan:  # streamed: one converted tensor in memory at a time
            writer.write_tensor_data(load())
        writer.flush()
        for fout in writer.fout or []:
            os.fsync(fout.fileno())
        writer.close()
        os.replace(tmp, out_path)
    except BaseException:
        writer.close()
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('checkpoint')
    p.add_argument('out')
    p.add_argument('--type', choices=['f32', 'bf16'], required=True)
    a = p.parse_args()
    try:
        import gguf  # noqa: F401
    except ImportError as e:
        print(f'safetensors_to_gguf: cannot import llama.cpp\'s gguf-py ({e}); run with PYTHONPATH=$LLAMA_CPP_DIR/gguf-py '
              'and a python3 that has numpy and sentencepiece', file=sys.stderr)
        return 1
    try:
        convert(a.checkpoint, a.out, a.type)
    except BadInput as e:
        print(f'safetensors_to_gguf: {e}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
