// benchmarks/llamacpp: the engine against llama.cpp on the same random checkpoints. The quick run needs a llama.cpp
// checkout (LLAMA_CPP_DIR; built on first use into benchmarks/.cache, several minutes) and is skipped without one.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { makeTempDir, removeDir, repoRoot } from './helpers/fixtures.js';

const script = path.join(repoRoot, 'benchmarks', 'llamacpp', 'run.mjs');
const llamaCppDir = process.env.LLAMA_CPP_DIR;

function bench(args: string[], env: Record<string, string | undefined>, timeout = 120_000) {
  const e = { ...process.env, ...env };
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete e[k];
  return spawnSync(process.execPath, [script, ...args], { encoding: 'utf8', env: e, timeout, maxBuffer: 64 << 20 });
}

describe('llamacpp benchmark: bad input', () => {
  it.each([
    [[], { LLAMA_CPP_DIR: undefined }, /^llamacpp benchmark: LLAMA_CPP_DIR is not set: point it at a llama.cpp checkout/],
    [[], { LLAMA_CPP_DIR: '/nonexistent/llama.cpp' }, /^llamacpp benchmark: LLAMA_CPP_DIR=\/nonexistent\/llama.cpp: not a llama.cpp checkout/],
    [['--rounds', '0'], { LLAMA_CPP_DIR: '/x' }, /^llamacpp benchmark: --rounds: expected an integer >= 1, got 0$/],
    [['--models', 'gpt-5'], { LLAMA_CPP_DIR: '/x' }, /^llamacpp benchmark: --models: unknown model gpt-5; known: qwen2.5-0.5b, llama-3.2-1b$/],
  ] as const)('%j with %j: one line, exit 1', (args, env, message) => {
    const r = bench([...args], env);
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr.trim()).toMatch(message);
  });
});

describe('llamacpp benchmark: one run at a time', () => {
  let fake: string;
  beforeAll(async () => {
    // Enough of a checkout to pass the input checks: the lock is taken before anything is built.
    fake = await makeTempDir('ln-fake-llamacpp-');
    fs.mkdirSync(path.join(fake, 'gguf-py', 'gguf'), { recursive: true });
    fs.writeFileSync(path.join(fake, 'CMakeLists.txt'), '');
  });
  afterAll(async () => { if (fake) await removeDir(fake); });

  it('a second run is refused naming the holder of benchmarks/.cache/llamacpp', () => {
    const workDir = path.join(repoRoot, 'benchmarks', '.cache', 'llamacpp');
    fs.mkdirSync(workDir, { recursive: true });
    const lockFile = path.join(workDir, '.langneurons.lock');
    let mine = false;
    try {
      // This test process is alive, so its lock is not stale. If a real run holds the lock, it is left alone.
      fs.writeFileSync(lockFile, JSON.stringify({ pid: process.pid, hostname: os.hostname(), command: 'the test', started: 'now' }), { flag: 'wx' });
      mine = true;
    } catch { /* a real run holds it: the refusal below is the same */ }
    try {
      const r = bench(['--quick'], { LLAMA_CPP_DIR: fake });
      expect(r.status).toBe(1);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(/^llamacpp benchmark: .*benchmarks\/\.cache\/llamacpp: in use by .*\(pid \d+ on /);
    } finally {
      if (mine) fs.rmSync(lockFile, { force: true });
    }
  });
});

/** The python3 that imports gguf-py from the checkout, as run.mjs picks it. */
function python(): { py: string; env: NodeJS.ProcessEnv } {
  const env = { ...process.env, PYTHONPATH: path.join(llamaCppDir!, 'gguf-py') };
  for (const py of [process.env.PYTHON, 'python3', '/usr/bin/python3'].filter((x): x is string => !!x))
    if (spawnSync(py, ['-c', 'import gguf, numpy'], { env }).status === 0) return { py, env };
  throw new Error('no python3 imports gguf-py');
}

describe.skipIf(!llamaCppDir)('llamacpp benchmark --quick (LLAMA_CPP_DIR set)', () => {
  let dir: string;
  let result: any;
  beforeAll(async () => {
    dir = await makeTempDir('ln-llamacpp-');
    // First use builds llama.cpp (-march=native, CPU backend): minutes on a small machine.
    const r = bench(['--quick', '--json', '--out', path.join(dir, 'r.json')], {}, 1_800_000);
    if (r.status !== 0) throw new Error(`run.mjs --quick failed (${r.status}):\n${r.stderr}`);
    result = JSON.parse(r.stdout);
  }, 1_800_000);
  afterAll(async () => { if (dir) await removeDir(dir); });

  it('writes the same result to --out as to stdout', () => {
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'r.json'), 'utf8'))).toEqual(result);
  });

  it('llama.cpp computes the same model from the F32 GGUF as the engine from the safetensors (logits to f32 rounding)', () => {
    expect(Object.keys(result.sameModel).sort()).toEqual(['tiny-llama', 'tiny-qwen2']);
    for (const c of Object.values<any>(result.sameModel)) {
      expect(c.maxAbsLogit).toBeGreaterThan(0.1); // random weights give logits of order 1: the check is not vacuous
      expect(c.relative).toBeLessThan(1e-5); // measured 3e-7; without the rotary permutation of q/k: 2e-2
    }
  });

  it('the GGUFs hold the checkpoint bit for bit under llama.cpp names (read back with gguf-py)', () => {
    const { py, env } = python();
    for (const model of ['tiny-llama', 'tiny-qwen2']) {
      for (const type of ['f32', 'bf16']) {
        const ckpt = path.join(repoRoot, 'benchmarks', '.cache', model);
        const r = spawnSync(py, [path.join(repoRoot, 'benchmarks', 'llamacpp', 'check_gguf.py'), ckpt, path.join(ckpt, `model-${type}.gguf`), '--type', type],
          { encoding: 'utf8', env });
        expect(r.stderr).toBe('');
        expect(JSON.parse(r.stdout)).toEqual({ ok: true, tensors: model === 'tiny-llama' ? 20 : 26 });
      }
    }
  });

  it('the converter refuses a checkpoint it cannot write with one line naming the file and field', async () => {
    const { py, env } = python();
    const converter = path.join(repoRoot, 'benchmarks', 'llamacpp', 'safetensors_to_gguf.py');
    const ckpt = path.join(dir, 'gemma');
    fs.mkdirSync(ckpt);
    const convert = () => spawnSync(py, [converter, ckpt, path.join(dir, 'x.gguf'), '--type', 'bf16'], { encoding: 'utf8', env });
    let r = convert();
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toMatch(/^safetensors_to_gguf: .*gemma\/config.json: not a readable JSON file/);
    fs.writeFileSync(path.join(ckpt, 'config.json'), JSON.stringify({ model_type: 'gemma2', hidden_size: 8 }));
    r = convert();
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([`safetensors_to_gguf: ${ckpt}/config.json: model_type 'gemma2' is not one of llama, qwen2`]);
    expect(fs.readdirSync(dir).filter((f) => f.startsWith('x.gguf'))).toEqual([]); // nothing half-written left
  });

  it('one row per model and compute mode, ratios of the paired round, decode bytes per token by hand', () => {
    expect(result.results.map((x: any) => `${x.model}/${x.compute}/${x.ggufType}`)).toEqual(
      ['tiny-llama/f32/F32', 'tiny-llama/bf16/BF16', 'tiny-qwen2/f32/F32', 'tiny-qwen2/bf16/BF16']);
    // Both tiny shapes: H 256, I 512, 2 layers, q 4 x 64 = 256, kv 2 x 64 = 128, vocab 2048, tied LM head.
    // Per layer 256*256 (q) + 2*256*128 (k, v) + 256*256 (o) + 3*256*512 (MLP) = 589824; + 2048*256 = 1703936 weights.
    const weights = 2 * 589824 + 2048 * 256;
    for (const x of result.results) {
      expect(x.rounds).toHaveLength(1);
      const [r] = x.rounds;
      for (const v of [r.engine.prefillTokensPerSec, r.llama.prefillTokensPerSec, r.engine.decodeTokensPerSec, r.llama.decodeTokensPerSec]) {
        expect(Number.isFinite(v) && v > 0).toBe(true);
      }
      expect(x.prefill.ratio).toBeCloseTo(r.engine.prefillTokensPerSec / r.llama.prefillTokensPerSec, 10);
      expect(x.decode.ratio).toBeCloseTo(r.engine.decodeTokensPerSec / r.llama.decodeTokensPerSec, 10);
      expect(x.decode.engineBytesPerToken).toBe(2 * weights);
      expect(x.decode.llamaBytesPerToken).toBe((x.compute === 'f32' ? 4 : 2) * weights);
      expect(x.decode.engineOfReadBandwidth).toBeCloseTo(2 * weights * r.engine.decodeTokensPerSec / result.readBandwidth.perRound[0], 10);
    }
    expect(result.readBandwidth.bytesPerSec).toBeGreaterThan(1e8);
    expect(result.llamaCpp.backends).toMatch(/CPU/);
  });
});
