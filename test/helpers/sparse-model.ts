// A Llama checkpoint of any size that costs no disk: config.json and a model.safetensors whose header is real and
// whose data section is a hole (every weight 0). Tensors are laid out in name order, as writeSafetensors does.
import { closeSync, ftruncateSync, openSync, promises as fsp, writeSync } from 'node:fs';
import path from 'node:path';

import { llamaConfigJson, type LlamaShape } from '../../src/pretrain/init.js';

/** Writes the model into dir; returns the size of model.safetensors in bytes. */
export async function writeSparseModel(dir: string, shape: LlamaShape): Promise<number> {
  await fsp.mkdir(dir, { recursive: true });
  await fsp.writeFile(path.join(dir, 'config.json'), JSON.stringify(llamaConfigJson({ ...shape, seed: 0, bosTokenId: 1, eosTokenId: 2 })));
  const d = shape.hidden, f = shape.ffn, kv = shape.kvHeads * (d / shape.heads);
  const shapes: [string, number[]][] = [['model.embed_tokens.weight', [shape.vocab, d]], ['model.norm.weight', [d]]];
  for (let l = 0; l < shape.layers; l++) {
    const p = `model.layers.${l}.`;
    shapes.push([`${p}input_layernorm.weight`, [d]], [`${p}post_attention_layernorm.weight`, [d]],
      [`${p}self_attn.q_proj.weight`, [d, d]], [`${p}self_attn.k_proj.weight`, [kv, d]], [`${p}self_attn.v_proj.weight`, [kv, d]],
      [`${p}self_attn.o_proj.weight`, [d, d]], [`${p}mlp.gate_proj.weight`, [f, d]], [`${p}mlp.up_proj.weight`, [f, d]], [`${p}mlp.down_proj.weight`, [d, f]]);
  }
  shapes.sort(([a], [b]) => (a < b ? -1 : 1));
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const [name, s] of shapes) {
    const bytes = s.reduce((a, b) => a * b, 4);
    header[name] = { dtype: 'F32', shape: s, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const fd = openSync(path.join(dir, 'model.safetensors'), 'w');
  try {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    writeSync(fd, len, 0, 8, 0);
    writeSync(fd, Buffer.from(json), 0, json.length, 8);
    ftruncateSync(fd, 8 + json.length + offset);
  } finally {
    closeSync(fd);
  }
  return 8 + json.length + offset;
}
