// Fine-tuning defects found by QA: a delta holds the trained rows' new values, so `delta apply`, `eval --delta` and
// `analyze delta --base` on other weights of the same layout (another run's model, an instruct version) spliced the
// rows into that model without a word; the delta now records its base's content and they refuse other weights.
// One epoch (the default --steps) trains each chunk once, its last step holding those left, as transformers' Trainer;
// an adapter config whose use_rslora is not a boolean, or whose target_modules misses a module it holds, is refused.
import { copyFileSync, mkdirSync, mkdtempSync, promises as fsp, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { udhrArticles } from '../src/corpus/udhr.js';
import { modelFingerprint } from '../src/model/fingerprint.js';
import { applyDelta } from '../src/train/delta.js';
import { finetune, resume } from '../src/train/finetune.js';
import { runCli } from './helpers/cli.js';
import { olderDelta } from './helpers/delta.js';

const STORIES = path.resolve(__dirname, '../../shared/fixtures/models/stories260k');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'ln-finetune-qa-'));
afterAll(async () => { await fsp.rm(tmp, { recursive: true, force: true }); });

const trainFile = path.join(tmp, 'mt.txt');
writeFileSync(trainFile, udhrArticles('mt').filter((a) => a.number <= 2).map((a) => a.text).join('\n') + '\n');

/** A copy of the model with one weight changed: the same layout (config, tensor table), other weights. */
async function otherWeights(dir: string): Promise<string> {
  const other = path.join(tmp, 'other-weights');
  mkdirSync(other, { recursive: true });
  for (const n of readdirSync(dir)) copyFileSync(path.join(dir, n), path.join(other, n));
  const f = path.join(other, readdirSync(other).find((n) => n.endsWith('.safetensors'))!);
  const buf = readFileSync(f);
  const at = buf.length - 8; // a value of the last tensor, past the header
  buf.writeFloatLE(buf.readFloatLE(at) + 0.5, at);
  writeFileSync(f, buf);
  return other;
}

describe('a delta is put onto the weights it was trained from only', () => {
  it('delta apply, analyze delta --base and eval --delta refuse other weights of the same layout; the base works', async () => {
    const run = path.join(tmp, 'run');
    await finetune(STORIES, { method: 'mlp', train: trainFile, steps: 1, chunk: 32, batch: 1, evalEvery: 0, threads: 1, device: 'cpu', writeModel: false }, run);
    const desc = JSON.parse(readFileSync(path.join(run, 'delta.json'), 'utf8'));
    expect(desc.model.weights).toBe(await modelFingerprint(STORIES));
    const other = await otherWeights(STORIES);
    const delta = path.join(run, 'delta.safetensors');

    const applied = await runCli('delta', 'apply', other, delta, '--out', path.join(tmp, 'merged-other'));
    expect(applied.code).toBe(1);
    expect(applied.stderr).toMatch(/delta\.safetensors: delta was trained from other weights than those at .*other-weights \(same layout, .*\); give the run's base model/);
    const analyzed = await runCli('analyze', 'delta', run, '--base', other, '--out', path.join(tmp, 'ad-other'));
    expect(analyzed.code).toBe(1);
    expect(analyzed.stderr).toMatch(/delta was trained from other weights .*give its base with --base/);
    const evaluated = await runCli('eval', other, '--task', 'ppl', '--text', path.dirname(trainFile), '--langs', 'mt', '--delta', run, '--out', path.join(tmp, 'ev'));
    expect(evaluated.code).toBe(1);
    expect(evaluated.stderr).toMatch(/delta was trained from other weights/);

    await applyDelta(STORIES, delta, path.join(tmp, 'merged')); // the base itself
    expect((await runCli('analyze', 'delta', run, '--base', STORIES, '--out', path.join(tmp, 'ad'))).code).toBe(0);

    // A delta written before the content was recorded: checked by layout only, as before.
    await applyDelta(other, await olderDelta(run, path.join(tmp, 'old-delta')), path.join(tmp, 'merged-old'));

    // The delta file alone (no delta.json beside it) carries its description: delta apply and analyze delta take it.
    const lone = path.join(tmp, 'lone');
    mkdirSync(lone);
    copyFileSync(delta, path.join(lone, 'delta.safetensors'));
    const loneApplied = await runCli('delta', 'apply', STORIES, path.join(lone, 'delta.safetensors'), '--out', path.join(tmp, 'merged-lone'));
    expect(loneApplied.code, loneApplied.stderr).toBe(0);
    expect(readFileSync(path.join(tmp, 'merged-lone', 'model.safetensors')).equals(readFileSync(path.join(tmp, 'merged', 'model.safetensors')))).toBe(true);
    const loneAnalyzed = await runCli('analyze', 'delta', path.join(lone, 'delta.safetensors'), '--base', STORIES, '--out', path.join(tmp, 'ad-lone'));
    expect(loneAnalyzed.code, loneAnalyzed.stderr).toBe(0);
    // A file that is not a delta is named as such, before the base is asked for.
    const notDelta = path.join(tmp, 'notes.json');
    writeFileSync(notDelta, '{"format":"langneurons-mask/1"}');
    const wrong = await runCli('analyze', 'delta', notDelta, '--out', path.join(tmp, 'ad-wrong-kind'));
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/notes\.json: not a delta \(a delta\.safetensors from finetune\)/);
  });

  it('analyze delta: the share on a mask of no change at all is none, not 0%', async () => {
    const mask = path.join(tmp, 'mask.json');
    const { modelIdentity } = await import('../src/profile/identity.js');
    const { openCheckpoint } = await import('../src/model/checkpoint.js');
    const { MASK_FORMAT, writeMask } = await import('../src/identify/masks.js');
    const ck = await openCheckpoint(STORIES);
    await writeMask(mask, { format: MASK_FORMAT, method: 'hand', parameters: {}, site: 'act', model: modelIdentity(ck), sources: [],
      layers: ck.config.numLayers, width: ck.config.intermediateSize, languages: { mt: Array.from({ length: ck.config.numLayers }, () => [1, 2]) } });
    const r = await runCli('analyze', 'delta', STORIES, '--base', STORIES, '--mask', `${mask}:mt`, '--out', path.join(tmp, 'ad-none'), '--json');
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).figures['delta-mask'].data.fraction).toBeNull();
  });
});

describe('one epoch and adapter configs', () => {
  const logOf = (run: string) => readFileSync(path.join(run, 'train.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((e) => typeof e.loss === 'number');

  it('the default --steps trains every chunk once: the last step holds the chunks left', async () => {
    const base = { method: 'mlp' as const, train: trainFile, chunk: 24, evalEvery: 0, threads: 1, device: 'cpu', writeModel: false };
    const one = path.join(tmp, 'epoch-1x1'), six = path.join(tmp, 'epoch-2x3');
    await finetune(STORIES, { ...base, batch: 1, accum: 1 }, one);
    await finetune(STORIES, { ...base, batch: 2, accum: 3 }, six);
    const chunks = logOf(one).length; // one chunk a step
    expect(chunks % 6).not.toBe(0); // (else this test would show nothing)
    expect(logOf(six)).toHaveLength(Math.ceil(chunks / 6));
    const tokens = (run: string) => logOf(run).reduce((a, e) => a + e.tokens, 0);
    expect(tokens(six)).toBe(tokens(one));
    expect(JSON.parse(readFileSync(path.join(six, 'run.json'), 'utf8')).options.epochTail).toBe(true);
    // stopped after its first step and resumed: the same partial last step, the same weights
    const split = path.join(tmp, 'epoch-2x3-resumed');
    await finetune(STORIES, { ...base, batch: 2, accum: 3, saveEvery: 1 }, split, { stopAfterStep: 1 });
    await resume(split);
    expect(readFileSync(path.join(split, 'delta.safetensors')).equals(readFileSync(path.join(six, 'delta.safetensors')))).toBe(true);
    expect(logOf(split).map((e) => e.tokens)).toEqual(logOf(six).map((e) => e.tokens));
  });

  it('an adapter config with a non-boolean use_rslora or target_modules missing its modules is refused', async () => {
    const run = path.join(tmp, 'lora');
    await finetune(STORIES, { method: 'lora', train: trainFile, steps: 1, chunk: 32, batch: 1, evalEvery: 0, threads: 1, device: 'cpu', writeModel: false }, run);
    const cfgFile = path.join(run, 'adapter', 'adapter_config.json');
    const cfg = JSON.parse(readFileSync(cfgFile, 'utf8'));
    const tryWith = async (change: Record<string, unknown>, name: string) => {
      writeFileSync(cfgFile, JSON.stringify({ ...cfg, ...change }));
      return runCli('delta', 'apply', STORIES, path.join(run, 'adapter'), '--out', path.join(tmp, name));
    };
    const r1 = await tryWith({ use_rslora: 'yes' }, 'm1');
    expect(r1.code).toBe(1);
    expect(r1.stderr).toMatch(/adapter_config\.json: use_rslora must be true or false, got "yes"/);
    const r2 = await tryWith({ target_modules: ['nonexistent_proj'] }, 'm2');
    expect(r2.code).toBe(1);
    expect(r2.stderr).toMatch(/adapter_config\.json: target_modules \["nonexistent_proj"\] does not name module model\.layers\.\d+\.\w+\.\w+_proj/);
    // PEFT's own forms: short names, a regular expression of full names, all-linear
    for (const [i, t] of [[cfg.target_modules], ['model\\.layers\\.\\d+\\..*'], ['all-linear']].entries()) {
      const r = await tryWith({ target_modules: t[0] }, `ok${i}`);
      expect(r.code, r.stderr).toBe(0);
    }
  });
});
