// Reliability against bad models, options and output folders (issue 19, items 4, 9, 12, 13, 14): NaN weights and
// overflowing interventions fail loudly, a config that the tensors cannot hold fails before allocating,
// `train --out` never replaces a folder it did not make, `--out /proc/x` fails at once, eval refuses a locked
// results folder.
import { cpSync, existsSync, mkdtempSync, promises as fsp, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';

import { main } from '../src/cli/main.js';
import { loadModel } from '../src/engine/model.js';
import { resolveIntervention } from '../src/intervene/index.js';
import { parseInterventionSpec } from '../src/intervene/spec.js';
import { LOCK_FILE } from '../src/io/lock.js';
import { readSafetensorsHeader } from '../src/io/safetensors.js';
import { openCheckpoint } from '../src/model/checkpoint.js';
import { fixturePath } from './helpers/fixtures.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'ln-rel-inputs-'));
afterAll(async () => { await fsp.rm(tmp, { recursive: true, force: true }); });

async function cli(...args: string[]): Promise<{ code: number; err: string }> {
  let err = '';
  const spy = vi.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => { err += String(s); return true; });
  const out = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
  try {
    const code = await main(['node', 'langneurons', ...args]);
    process.exitCode = undefined;
    return { code, err };
  } finally { spy.mockRestore(); out.mockRestore(); }
}

describe('non-finite results', () => {
  it('NaN weights fail the forward naming the weights; scale:1e30 fails naming the intervention; 1e39 is refused at parse', async () => {
    const dir = path.join(tmp, 'nan-model');
    cpSync(fixturePath('stories260k'), dir, { recursive: true });
    const file = path.join(dir, 'model.safetensors');
    const h = await readSafetensorsHeader(file);
    const norm = h.tensors.find((t) => t.name === 'model.norm.weight')!;
    expect(norm.dtype).toBe('F32');
    const bytes = readFileSync(file);
    bytes.writeFloatLE(NaN, norm.byteOffset);
    writeFileSync(file, bytes);
    const bad = await loadModel(dir, { threads: 1 });
    await expect(bad.forward([[1, 2, 3]])).rejects.toThrow(/non-finite result .*the weights of nan-model hold NaN or Inf/);
    const gen = await cli('generate', dir, '--prompt-ids', '1', '--max-new-tokens', '4');
    expect(gen.code).toBe(1);
    expect(gen.err.trim().split('\n')).toHaveLength(1);

    const good = await loadModel(fixturePath('stories260k'), { threads: 1 });
    expect((await good.forward([[1, 2, 3]])).logits.every(Number.isFinite)).toBe(true);
    const iv = await resolveIntervention(good, 'scale:1e30:neurons=all');
    await expect(good.forward([[1, 2, 3]], { intervene: iv })).rejects.toThrow(/likely cause: the intervention's values are too large/);
    expect(() => parseInterventionSpec('scale:1e39:neurons=all')).toThrow(/the factor 1e39 overflows float32/);
    expect(() => parseInterventionSpec('add:-4e38:neurons=all')).toThrow(/overflows float32/);
  });
});

describe('configs the weights cannot hold', () => {
  it('num_hidden_layers 1e9 fails in well under a second, naming the field', async () => {
    const dir = path.join(tmp, 'big-config');
    cpSync(fixturePath('stories260k'), dir, { recursive: true });
    const cfg = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8'));
    cfg.num_hidden_layers = 1e9;
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
    const t0 = performance.now();
    await expect(openCheckpoint(dir)).rejects.toThrow(/num_hidden_layers is 1000000000 but the checkpoint's tensors hold 5 layer\(s\)/);
    expect(performance.now() - t0).toBeLessThan(1000);
  });

  it.each([['vocab_size', /embed_tokens\.weight" has shape \[512, 64\], expected \[1000000000, 64\]/], ['intermediate_size', /gate_proj\.weight" has shape \[172, 64\]/],
    ['hidden_size', /expected \[512, 1000000000\]/]] as const)('%s 1e9 is checked against the tensors before anything is allocated', async (field, message) => {
    const dir = path.join(tmp, `big-${field}`);
    cpSync(fixturePath('stories260k'), dir, { recursive: true });
    const cfg = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8'));
    cfg[field] = 1e9;
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
    const t0 = performance.now();
    await expect(loadModel(dir, { threads: 1 })).rejects.toThrow(message);
    expect(performance.now() - t0).toBeLessThan(2000);
  });
});

describe('output folders', () => {
  it('train --out never replaces a folder it did not make; its own only with --force', async () => {
    const foreign = path.join(tmp, 'thesis');
    await fsp.mkdir(foreign);
    writeFileSync(path.join(foreign, 'chapter1.tex'), 'years of work');
    const args = ['train', '--langs', 'en', '--layers', '1', '--hidden', '16', '--heads', '2', '--kv-heads', '1', '--ffn', '32', '--vocab', '300', '--steps', '1'];
    const r = await cli(...args, '--out', foreign, '--force');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/thesis: --out is not empty and was not made by `langneurons train` \(holds chapter1\.tex\)/);
    expect(readFileSync(path.join(foreign, 'chapter1.tex'), 'utf8')).toBe('years of work');
    expect(existsSync(`${foreign}.work`)).toBe(false);
    const ours = path.join(tmp, 'made-by-train');
    await fsp.mkdir(ours);
    writeFileSync(path.join(ours, 'recipe.json'), JSON.stringify({ format: 'langneurons-pretrain/1' }));
    expect((await cli(...args, '--out', ours)).err).toMatch(/holds a model made by `langneurons train` with other options; give --force to replace it/);
  });

  it('--out under /proc fails at once; eval refuses a results folder another eval holds', async () => {
    const t0 = performance.now();
    const r = await cli('finetune', fixturePath('stories260k'), '--method', 'mlp', '--train', path.join(tmp, 'none.txt'), '--out', '/proc/x');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^langneurons: error: \/proc\/x: cannot create the output folder/);
    expect(performance.now() - t0).toBeLessThan(10_000);

    const results = path.join(tmp, 'results');
    await fsp.mkdir(results);
    writeFileSync(path.join(results, LOCK_FILE), JSON.stringify({ pid: process.ppid, hostname: os.hostname(), command: 'eval', started: 'now' }));
    const e = await cli('eval', fixturePath('stories260k'), '--task', 'ppl', '--langs', 'en', '--text', tmp, '--out', results);
    expect(e.code).toBe(1);
    expect(e.err).toMatch(/results: in use by eval \(pid \d+/);
  });
});

describe('one-line errors', () => {
  it.skipIf(process.getuid?.() === 0)('an --out the user may not write: one line naming it (not as root: root writes anywhere)', async () => {
    const ro = path.join(tmp, 'read-only');
    await fsp.mkdir(ro, { mode: 0o500 });
    const r = await cli('finetune', fixturePath('stories260k'), '--method', 'mlp', '--train', path.join(tmp, 'none.txt'), '--out', path.join(ro, 'sub'));
    expect(r.code).toBe(1);
    expect(r.err).toBe(`langneurons: error: ${path.join(ro, 'sub')}: cannot create the output folder: permission denied (EACCES)\n`);
  });

  it('file-system errors, out-of-memory and a model too large for free memory are said in one line', async () => {
    const { describeFailure } = await import('../src/cli/failure.js');
    const fsErr = Object.assign(new Error("EACCES: permission denied, open '/data/out/x'"), { code: 'EACCES', syscall: 'open', path: '/data/out/x', errno: -13 });
    expect(describeFailure(fsErr)).toEqual({ line: '/data/out/x: permission denied (EACCES, open)', known: true });
    const exists = Object.assign(new Error('EEXIST: file already exists, mkdir'), { code: 'EEXIST', syscall: 'mkdir', path: '/data/out' });
    expect(describeFailure(exists).line).toBe('/data/out: already exists (EEXIST, mkdir)');
    expect(describeFailure(new Error('std::bad_alloc'))).toMatchObject({ known: true, line: expect.stringMatching(/^out of memory \(std::bad_alloc\); check the model's needs with `langneurons info/) });
    expect(describeFailure(new Error('something else')).known).toBe(false);

    const { warnIfTooLarge } = await import('../src/cli/common.js');
    const { setWarningSink } = await import('../src/io/text.js');
    const said: string[] = [];
    setWarningSink((m) => said.push(m));
    await warnIfTooLarge(fixturePath('stories260k'), 1000); // pretend 1000 bytes are free
    await warnIfTooLarge(fixturePath('stories260k'), 2 ** 40);
    expect(said).toEqual([expect.stringMatching(/stories260k: running the model needs about 0\.0 GiB .* more than the 0\.0 GiB of free memory/)]);
  });
});
