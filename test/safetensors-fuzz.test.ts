// Fuzz: thousands of mutated safetensors files / index files thrown at readSafetensorsHeader and
// openCheckpoint. Every outcome must be a valid parse or a LangneuronsError: never a TypeError,
// RangeError, raw fs error or hang. Files are sparse (header written, data section a hole), so each
// case costs a few KB of IO.
import { promises as fsp, closeSync, ftruncateSync, openSync, writeSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LangneuronsError } from '../src/errors.js';
import { readSafetensorsHeader, type SafetensorsHeader } from '../src/io/safetensors.js';
import { openCheckpoint } from '../src/model/checkpoint.js';
import { parseModelConfig } from '../src/model/config.js';
import { fixturePath, makeTempDir, removeDir } from './helpers/fixtures.js';

/** mulberry32: small, fast, seedable. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const rng = prng(Number(process.env['FUZZ_SEED'] ?? 0x5afe7e45));
/** FUZZ_SCALE=10 for a longer soak run; the default keeps the file well under 20 s. */
const scale = Number(process.env['FUZZ_SCALE'] ?? 1);
const int = (n: number) => Math.floor(rng() * n);
const pick = <T,>(xs: readonly T[]): T => xs[int(xs.length)]!;

interface Base {
  header: Record<string, unknown>;
  headerText: string;
  fileSize: number;
}

async function loadBase(file: string): Promise<Base> {
  const bytes = await fsp.readFile(file);
  const n = Number(bytes.readBigUInt64LE(0));
  const headerText = bytes.subarray(8, 8 + n).toString('utf8');
  return { header: JSON.parse(headerText), headerText, fileSize: bytes.length };
}

interface Mutant {
  prefix: Uint8Array; // length field + header bytes as written
  fileSize: number; // file is extended (sparse) or cut to this size
  kind: string;
}

function withLength(headerBytes: Uint8Array, length: bigint = BigInt(headerBytes.length)): Uint8Array {
  const out = new Uint8Array(8 + headerBytes.length);
  new DataView(out.buffer).setBigUint64(0, length, true);
  out.set(headerBytes, 8);
  return out;
}

const weirdValues: unknown[] = [
  null, true, 0, -1, 1.5, 2 ** 53, 2 ** 64, -0, 'F32', '', [], {}, [[1]], [-1], [0.5], [2 ** 53], [1e308], ['1'],
  [0, 0], [1, 0], [0, 2 ** 60], [-4, 0], [0, 1, 2], 'BF16', 'U16', 'F8_E4M3', 'f32', [1e21, 0],
];

function mutateJson(base: Base): Mutant {
  const header = structuredClone(base.header);
  const names = Object.keys(header).filter((k) => k !== '__metadata__');
  const name = pick(names);
  const tensor = header[name] as Record<string, unknown>;
  const dataSize = base.fileSize - 8 - Buffer.byteLength(base.headerText);
  let kind = 'json';
  switch (int(12)) {
    case 0: tensor['dtype'] = pick(['F64', 'F32', 'F16', 'BF16', 'I64', 'I32', 'I16', 'I8', 'U8', 'BOOL', 'F8_E5M2', 'X', 3, null]); kind = 'dtype'; break;
    case 1: tensor['shape'] = pick(weirdValues); kind = 'shape'; break;
    case 2: { const s = [...(tensor['shape'] as number[])]; if (s.length) s[int(s.length)] = pick([0, 1, s[0]! + 1, 2 ** 31, 2 ** 52]); else s.push(2); tensor['shape'] = s; kind = 'shape-dim'; break; }
    case 3: tensor['data_offsets'] = pick(weirdValues); kind = 'offsets'; break;
    case 4: { const [b, e] = tensor['data_offsets'] as number[]; const d = pick([-8, -2, -1, 1, 2, 8, 4096]); tensor['data_offsets'] = pick([[b! + d, e! + d], [b!, e! + d], [b! + d, e!], [e!, b!], [b!, dataSize + d]]); kind = 'offsets-shift'; break; }
    case 5: delete tensor[pick(['dtype', 'shape', 'data_offsets'])]; kind = 'missing-field'; break;
    case 6: tensor[pick(['extra', '__proto__', 'constructor', 'dtype '])] = pick(weirdValues); kind = 'extra-field'; break;
    case 7: header['__metadata__'] = pick([null, 1, 'x', [], { a: 1 }, { a: 'b' }, { __proto__: 'x' }]); kind = 'metadata'; break;
    case 8: header[name] = pick(weirdValues); kind = 'tensor-value'; break;
    case 9: { const other = pick(names); (header[other] as Record<string, unknown>)['data_offsets'] = tensor['data_offsets']; kind = 'overlap'; break; }
    case 10: header[pick(['', '__proto__', 'a'.repeat(1000), '\u0000', 'constructor'])] = structuredClone(tensor); kind = 'odd-name'; break;
    default: delete header[name]; kind = 'drop-tensor'; break;
  }
  let text = JSON.stringify(header);
  if (int(2)) text += ' '.repeat(int(9));
  const headerBytes = Buffer.from(text, 'utf8');
  // Keep the data section the same size so offsets stay meaningful relative to it.
  return { prefix: withLength(headerBytes), fileSize: 8 + headerBytes.length + Math.max(0, dataSize + pick([0, 0, 0, -1, 1, -64])), kind };
}

function mutateBytes(base: Base): Mutant {
  const headerBytes = Buffer.from(base.headerText, 'utf8');
  const prefix = withLength(headerBytes);
  const kind = pick(['flip', 'truncate', 'length', 'structural']);
  if (kind === 'flip') {
    for (let i = 0, n = 1 + int(8); i < n; i++) {
      const at = int(prefix.length);
      prefix[at] = int(2) ? prefix[at]! ^ (1 << int(8)) : int(256);
    }
    return { prefix, fileSize: base.fileSize, kind };
  }
  if (kind === 'truncate') {
    const cut = int(3) ? int(prefix.length + 1) : int(base.fileSize + 1);
    return { prefix: prefix.subarray(0, Math.min(cut, prefix.length)), fileSize: cut, kind };
  }
  if (kind === 'length') {
    const n = BigInt(headerBytes.length);
    const length = pick([0n, 1n, 2n, n - 1n, n + 1n, n - 8n, n + 8n, BigInt(base.fileSize - 8), BigInt(base.fileSize - 7), 100_000_000n, 100_000_001n, 2n ** 63n, 2n ** 64n - 1n, BigInt(int(1 << 30))]);
    return { prefix: withLength(headerBytes, length < 0n ? 0n : length), fileSize: base.fileSize, kind };
  }
  // Structural text edits: cut or duplicate a slice of the JSON, insert junk characters.
  const text = base.headerText;
  const a = int(text.length);
  const b = a + int(Math.min(40, text.length - a));
  const edited = pick([
    text.slice(0, a) + text.slice(b),
    text.slice(0, b) + text.slice(a, b) + text.slice(b),
    text.slice(0, a) + pick(['"', '{', '}', ',', ':', '[', ']', '\\', '\u00ff', '\ud800', '1e999', 'NaN']) + text.slice(a),
  ]);
  const bytes = Buffer.from(edited, 'utf8');
  return { prefix: withLength(bytes), fileSize: 8 + bytes.length + (base.fileSize - 8 - headerBytes.length), kind };
}

// Synchronous on purpose: thousands of tiny writes, where promise overhead would dominate.
async function writeMutant(file: string, m: Mutant): Promise<void> {
  const fd = openSync(file, 'w');
  try {
    writeSync(fd, m.prefix, 0, Math.min(m.prefix.length, m.fileSize), 0);
    ftruncateSync(fd, m.fileSize); // extends with a hole, or cuts
  } finally {
    closeSync(fd);
  }
}

/** A parse that succeeds must describe byte ranges inside the file (plain checks: this runs 1000s of times). */
function checkValid(h: SafetensorsHeader): void {
  for (const t of h.tensors) {
    if (t.byteOffset < h.dataOffset || t.byteOffset + t.byteLength > h.fileSize) {
      throw new Error(`accepted tensor ${t.name} outside the data section`);
    }
  }
}

/** Runs `action`; returns the outcome label, or throws if the error is not a LangneuronsError. */
async function outcome(action: () => Promise<unknown>, context: string): Promise<'ok' | 'refused'> {
  try {
    await action();
    return 'ok';
  } catch (err) {
    if (err instanceof LangneuronsError && err.message.length > 0) return 'refused';
    throw new Error(`${context}: unexpected ${(err as Error)?.constructor?.name}: ${(err as Error)?.message}`, { cause: err });
  }
}

let tmp: string;
let single: Base;
let shard: Base;
beforeAll(async () => {
  tmp = await makeTempDir('langneurons-fuzz-', { inMemory: true });
  single = await loadBase(fixturePath('tiny-qwen2', 'model.safetensors'));
  shard = await loadBase(fixturePath('tiny-llama3', 'model-00001-of-00002.safetensors'));
});
afterAll(async () => {
  await removeDir(tmp);
});

describe('safetensors fuzz', () => {
  it('readSafetensorsHeader: 3000 mutated files give a valid parse or a LangneuronsError', async () => {
    const tally: Record<string, number> = {};
    // Mutants are generated in sequence (deterministic), then read 8 at a time: fs calls run on
    // libuv's thread pool, so overlapping them keeps the file fast on a busy machine.
    const lanes = 8;
    for (let i = 0; i < 3000 * scale; i += lanes) {
      const batch = Array.from({ length: lanes }, (_, lane) => {
        const m = int(2) ? mutateJson((i + lane) % 2 ? single : shard) : mutateBytes((i + lane) % 3 ? single : shard);
        return { m, file: path.join(tmp, `fuzz-${lane}.safetensors`), index: i + lane };
      });
      for (const { m, file } of batch) await writeMutant(file, m);
      const results = await Promise.all(batch.map(({ m, file, index }) =>
        outcome(async () => checkValid(await readSafetensorsHeader(file)), `case ${index} (${m.kind})`)));
      batch.forEach(({ m }, lane) => (tally[`${m.kind}:${results[lane]}`] = (tally[`${m.kind}:${results[lane]}`] ?? 0) + 1));
    }
    const refused = Object.entries(tally).filter(([k]) => k.endsWith(':refused')).reduce((n, [, v]) => n + v, 0);
    if (process.env['FUZZ_TALLY']) console.log(tally);
    expect(refused).toBeGreaterThan(1000); // the mutations really do break files
    expect(Object.keys(tally).some((k) => k.endsWith(':ok'))).toBe(true); // and some stay valid
  });

  it('openCheckpoint: 500 mutated single-file checkpoints', async () => {
    const dir = path.join(tmp, 'single');
    await fsp.mkdir(dir);
    await fsp.copyFile(fixturePath('tiny-qwen2', 'config.json'), path.join(dir, 'config.json'));
    for (let i = 0; i < 500 * scale; i++) {
      const m = int(2) ? mutateJson(single) : mutateBytes(single);
      await writeMutant(path.join(dir, 'model.safetensors'), m);
      await outcome(() => openCheckpoint(dir), `single case ${i} (${m.kind})`);
    }
  });

  it('parseModelConfig: 3000 mutated configs, and 300 of them against the real weights', async () => {
    const configs = await Promise.all(['stories260k', 'tiny-llama3', 'tiny-qwen2', 'tiny-mistral'].map(async (n) =>
      JSON.parse(await fsp.readFile(fixturePath(n as 'stories260k', 'config.json'), 'utf8')) as Record<string, unknown>));
    const fields = [...new Set(configs.flatMap((c) => Object.keys(c)))].concat(['head_dim', 'sliding_window', 'use_sliding_window', 'attention_bias', 'mlp_bias', 'rope_parameters', 'quantization_config']);
    const dir = path.join(tmp, 'config-fuzz');
    await fsp.mkdir(dir);
    await fsp.copyFile(fixturePath('tiny-qwen2', 'model.safetensors'), path.join(dir, 'model.safetensors'));
    let accepted = 0;
    for (let i = 0; i < 3000 * scale; i++) {
      const which = i < 300 * scale ? 2 : int(configs.length);
      const config = structuredClone(configs[which]!);
      for (let k = 0, n = 1 + int(3); k < n; k++) {
        const field = pick(fields);
        if (int(4) === 0) delete config[field];
        else if (typeof config[field] === 'number' && int(2)) config[field] = pick([0, 1, 2, 3, -1, 0.5, 7, 1e308, (config[field] as number) * 2]);
        else if (field === 'rope_scaling') config[field] = pick([null, { rope_type: 'llama3' }, { type: 'yarn', factor: 2 }, { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 }]);
        else config[field] = pick(weirdValues.concat(['llama', 'mistral', 'qwen2', 'gemma', 'silu', 'gelu']));
      }
      if (i < 300 * scale) {
        await fsp.writeFile(path.join(dir, 'config.json'), JSON.stringify(config));
        if ((await outcome(() => openCheckpoint(dir), `config+weights case ${i}`)) === 'ok') accepted++;
      } else if ((await outcome(async () => parseModelConfig(config), `config case ${i}`)) === 'ok') accepted++;
    }
    expect(accepted).toBeGreaterThan(0);
  });

  it('openCheckpoint: 500 mutated sharded checkpoints (shards and index)', async () => {
    const dir = path.join(tmp, 'sharded');
    await fsp.mkdir(dir);
    for (const f of ['config.json', 'model.safetensors.index.json', 'model-00002-of-00002.safetensors']) {
      await fsp.copyFile(fixturePath('tiny-llama3', f), path.join(dir, f));
    }
    const indexText = await fsp.readFile(fixturePath('tiny-llama3', 'model.safetensors.index.json'), 'utf8');
    const shardFile = path.join(dir, 'model-00001-of-00002.safetensors');
    await writeMutant(shardFile, { prefix: withLength(Buffer.from(shard.headerText)), fileSize: shard.fileSize, kind: 'base' });
    const indexFile = path.join(dir, 'model.safetensors.index.json');
    for (let i = 0; i < 500 * scale; i++) {
      if (i % 2) {
        const m = int(2) ? mutateJson(shard) : mutateBytes(shard);
        await writeMutant(shardFile, m);
        await fsp.writeFile(indexFile, indexText);
        await outcome(() => openCheckpoint(dir), `shard case ${i} (${m.kind})`);
      } else {
        await writeMutant(shardFile, { prefix: withLength(Buffer.from(shard.headerText)), fileSize: shard.fileSize, kind: 'base' });
        const index = JSON.parse(indexText) as { weight_map: Record<string, unknown> };
        const names = Object.keys(index.weight_map);
        let text: string;
        switch (int(5)) {
          case 0: index.weight_map[pick(names)] = pick(weirdValues.concat(['../x', '/etc/passwd', 'model-00002-of-00002.safetensors', '.', ''])); text = JSON.stringify(index); break;
          case 1: delete index.weight_map[pick(names)]; text = JSON.stringify(index); break;
          case 2: index.weight_map[`model.extra.${i}`] = 'model-00001-of-00002.safetensors'; text = JSON.stringify(index); break;
          case 3: text = JSON.stringify(pick([null, [], 1, { weight_map: pick(weirdValues) }])); break;
          default: { const a = int(indexText.length); text = indexText.slice(0, a) + indexText.slice(a + int(30)); }
        }
        await fsp.writeFile(indexFile, text);
        await outcome(() => openCheckpoint(dir), `index case ${i}`);
      }
    }
  });
});
