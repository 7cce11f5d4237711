// Running out of memory (issue 19, item 14): a failed allocation in the engine is one line naming what was being
// allocated and how much (native/src/core/oom.h), exit code 1, no stack trace. Provoked for real: each run is a
// child process under `ulimit -v` (an address-space limit, so the allocation fails the same way whatever the
// machine's memory and overcommit policy) asking for far more than the limit. The sizes in the expected lines
// are worked out here from the model's config.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, promises as fsp, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { fixturePath, repoRoot } from './helpers/fixtures.js';
import { writeSparseModel } from './helpers/sparse-model.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'ln-rel-memory-'));
afterAll(async () => { await fsp.rm(tmp, { recursive: true, force: true }); });

/** 3 GB of address space: ample for Node and a fixture model, far below what each case asks for. */
const LIMIT_KB = 3_000_000;

function underLimit(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync('bash', ['-c', `ulimit -v ${LIMIT_KB}; exec "$0" "$@"`, process.execPath, ...args],
    { cwd: repoRoot, encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** As native/src/core/oom.h formats sizes: decimal units, one decimal. */
const gb = (bytes: number) => `${(bytes / 1e9).toFixed(1)} GB`;

const config = (name: 'stories260k' | 'tiny-llama3') => {
  const c = JSON.parse(readFileSync(fixturePath(name, 'config.json'), 'utf8')) as Record<string, number>;
  const heads = c['num_attention_heads']!, hidden = c['hidden_size']!;
  return { layers: c['num_hidden_layers']!, hidden, heads, kvHeads: c['num_key_value_heads'] ?? heads, headDim: c['head_dim'] ?? hidden / heads,
    ffn: c['intermediate_size']!, context: c['max_position_embeddings']! };
};

/** Runs one engine call through the library (dist/) in a child under the limit; prints the CLI's one-line failure. */
function libraryCase(body: string): { code: number | null; line: string; stderr: string } {
  const script = path.join(tmp, `case-${Math.random().toString(36).slice(2)}.mjs`);
  writeFileSync(script, `
import { loadModel, openCheckpoint, createNativeTrainer, denseTrainable } from ${JSON.stringify(path.join(repoRoot, 'dist/src/index.js'))};
import { describeFailure } from ${JSON.stringify(path.join(repoRoot, 'dist/src/cli/failure.js'))};
try {
  ${body}
  console.log('no failure');
} catch (e) {
  console.log(describeFailure(e).line);
  process.exitCode = 1;
}
`);
  const r = underLimit([script]);
  return { code: r.code, line: r.stdout.trim(), stderr: r.stderr };
}

describe('out of memory: one line naming what and how much', () => {
  it('the KV cache of a generate run: the CLI says which cache, its size and what to change; exit code 1', () => {
    const c = config('tiny-llama3');
    const prompts = 64;
    const bytes = 2 * c.layers * prompts * c.context * c.kvHeads * c.headDim * 4;
    expect(bytes).toBeGreaterThan(LIMIT_KB * 1024);
    const r = underLimit(['bin/langneurons.js', 'generate', fixturePath('tiny-llama3'), ...Array.from({ length: prompts }, () => ['--prompt', 'Once upon a time']).flat(),
      '--max-new-tokens', String(c.context), '--threads', '1', '--batch', String(prompts)]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([
      `langneurons: error: out of memory allocating the KV cache for ${prompts} sequence(s) x ${c.context} tokens (${gb(bytes)}); fewer sequences at once, or fewer tokens per sequence (a smaller --max-new-tokens)`,
    ]);
  });

  it('the weights of a model larger than the memory left: the memory map of its file (a sparse 3.3 GB model)', async () => {
    const dir = path.join(tmp, 'big-model');
    const size = await writeSparseModel(dir, { layers: 48, hidden: 1024, heads: 8, kvHeads: 8, ffn: 4096, vocab: 256 });
    expect(size).toBeGreaterThan(LIMIT_KB * 1024);
    const r = underLimit(['bin/langneurons.js', 'generate', dir, '--prompt-ids', '1,5', '--max-new-tokens', '1', '--threads', '1']);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([
      `langneurons: error: ${dir}: out of memory allocating a memory map of ${path.join(dir, 'model.safetensors')} (${gb(size)})`,
    ]);
  });

  it("the trainer's optimizer state of a full fine-tune (a sparse 1.1 GB model: mapped, but four float32 copies do not fit)", async () => {
    // Node takes about 1 GB of address space, the map 1.1 GB: the first 1.1 GB copy passes the 3 GB limit.
    const dir = path.join(tmp, 'model-1g');
    await writeSparseModel(dir, { layers: 16, hidden: 1024, heads: 8, kvHeads: 8, ffn: 4096, vocab: 256 });
    const r = libraryCase(`
  const ck = await openCheckpoint(${JSON.stringify(dir)});
  let n = 0;
  for (const t of ck.tensors.values()) n += t.shape.reduce((a, b) => a * b, 1);
  console.log(n);
  createNativeTrainer(ck, 1, denseTrainable(ck));`);
    expect(r.code, r.stderr).toBe(1);
    const [count, line] = r.line.split('\n');
    const n = Number(count);
    expect(line).toBe(`trainer: out of memory allocating the optimizer state of ${n} trainable parameters (master weights, gradients, Adam moments) (${gb(16 * n)}); train fewer parameters (--method neurons or lora) or use a machine with more memory`);
  });

  it('the activation buffers of a forward', () => {
    const c = config('stories260k');
    const T = 1 << 24, len = 512;
    const floats = T * (2 * c.hidden + 2 * c.heads * c.headDim + 2 * c.kvHeads * c.headDim + 2 * c.ffn) + 1 * len;
    const r = libraryCase(`
  const m = await loadModel(${JSON.stringify(fixturePath('stories260k'))}, { threads: 1 });
  const seq = new Int32Array(${len}).fill(5);
  await m.forward(Array.from({ length: ${T / len} }, () => seq), { logits: 'none', lastLayer: 0 });`);
    expect(r.code, r.stderr).toBe(1);
    expect(r.line).toBe(`out of memory allocating the activation buffers for ${T} tokens (${gb(floats * 4)}); use fewer tokens per forward (a smaller --batch-tokens / --batch)`);
  });

  it('the statistics arrays', () => {
    const c = config('stories260k');
    const bins = 1 << 22;
    const edges = `Array.from({ length: ${bins + 1} }, (_, i) => i / ${bins})`;
    const bytes = c.layers * c.ffn * (4 * 8 + bins * 8);
    const r = libraryCase(`
  const m = await loadModel(${JSON.stringify(fixturePath('stories260k'))}, { threads: 1 });
  m.createStats({ sites: ['act'], histEdges: ${edges} });`);
    expect(r.code, r.stderr).toBe(1);
    expect(r.line).toBe(`createStats: out of memory allocating the statistics arrays (1 site(s) x ${c.layers} layers x ${bins} histogram bins) (${gb(bytes)}); fewer --sites, fewer --layers or fewer histogram bins`);
  });

  it("the trainer's activations", () => {
    const c = config('stories260k');
    const T = 1 << 24, len = 512;
    const r = libraryCase(`
  const ck = await openCheckpoint(${JSON.stringify(fixturePath('stories260k'))});
  const tr = createNativeTrainer(ck, 1, denseTrainable(ck));
  const tokens = new Int32Array(${T}).fill(5), targets = new Int32Array(${T}).fill(6);
  await tr.forwardBackward(tokens, targets, new Int32Array(${T / len}).fill(${len}), { backward: true });`);
    expect(r.code, r.stderr).toBe(1);
    // The size: every layer's saved tensors for T tokens (Trainer::ensure), at least layers x T x (hidden + 3 ffn).
    const m = /^out of memory allocating the trainer's activations for (\d+) tokens \(([\d.]+) GB\); use fewer tokens per micro-batch \(a smaller --batch or --chunk\)$/.exec(r.line);
    expect(m, r.line).not.toBeNull();
    expect(Number(m![1])).toBe(T);
    expect(Number(m![2]) * 1e9).toBeGreaterThan(c.layers * T * (c.hidden + 3 * c.ffn) * 4);
  });
});
