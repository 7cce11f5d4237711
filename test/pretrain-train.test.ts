import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { main } from '../src/cli/main.js';
import { LangneuronsError } from '../src/errors.js';
import { loadModel } from '../src/engine/model.js';
import { buildPretrainCorpus, parseLowResource } from '../src/pretrain/corpus.js';
import { pretrain, type PretrainOptions, type PretrainResult } from '../src/pretrain/train.js';
import { makeTempDir, removeDir, repoRoot } from './helpers/fixtures.js';

const sha = async (f: string) => createHash('sha256').update(await fsp.readFile(f)).digest('hex');

describe('langneurons train (tiny config)', () => {
  let tmp: string;
  let opts: PretrainOptions;
  let result: PretrainResult;
  beforeAll(async () => {
    tmp = await makeTempDir('langneurons-pretrain-');
    opts = {
      out: path.join(tmp, 'model'), langs: ['en', 'ru', 'mt'], lowResource: { lang: 'mt', articles: 2 }, tokenizerVocab: 400,
      layers: 2, hidden: 32, heads: 2, kvHeads: 1, ffn: 64, chunk: 64, batch: 4, steps: 16, lr: 5e-3, warmup: 2,
      seed: 3, threads: 1, dtype: 'f32', saveEvery: 5, command: 'langneurons train (test)',
    };
    result = await pretrain(opts);
  });
  afterAll(async () => removeDir(tmp));

  it('trains: the loss falls', () => {
    expect(result.steps).toBe(16);
    expect(result.lastLoss!).toBeLessThan(result.firstLoss! - 0.3);
    expect(result.firstLoss!).toBeGreaterThan(Math.log(400) - 0.5); // starts near uniform
  });

  it('writes a complete Hugging Face folder with recipe.json and README.md', async () => {
    const files = (await fsp.readdir(opts.out)).sort();
    expect(files).toEqual(['README.md', 'config.json', 'generation_config.json', 'model.safetensors', 'recipe.json', 'tokenizer.json', 'tokenizer_config.json']);
    const recipe = JSON.parse(await fsp.readFile(path.join(opts.out, 'recipe.json'), 'utf8'));
    expect(recipe.seed).toBe(3);
    expect(recipe.command).toBe('langneurons train (test)');
    expect(recipe.languages.map((l: { id: string }) => l.id)).toEqual(['en', 'ru', 'mt']);
    const mt = recipe.languages[2];
    expect(mt.trainArticles).toEqual([0, 1]);
    expect(mt.unseenArticles[0]).toBe(2);
    expect(mt.heldoutArticles).toEqual([25, 26, 27, 28, 29, 30]);
    expect(recipe.data.trainSha256).toMatch(/^[0-9a-f]{64}$/);
    expect(recipe.training.cpuSeconds).toBeGreaterThanOrEqual(0);
    expect(recipe.training.steps).toBe(16);
    expect(recipe.files.modelSafetensorsSha256).toBe(await sha(path.join(opts.out, 'model.safetensors')));
    expect(Object.keys(recipe.loss.heldout)).toEqual(['en', 'ru', 'mt']);
    for (const l of result.heldout) expect(l.meanNll).toBeLessThan(Math.log(400));
    const readme = await fsp.readFile(path.join(opts.out, 'README.md'), 'utf8');
    expect(readme).toContain('| ru |');
    expect(readme).toContain('langneurons train (test)');
    const model = await loadModel(opts.out, { threads: 1 });
    expect(model.requireTokenizer().encode('Everyone')[0]).toBe(0);
    expect(existsSync(`${opts.out}.work/run/state/state.json`)).toBe(true);
  });

  it('skips finished steps when run again, and refuses a work folder made with other options', async () => {
    const before = await sha(path.join(opts.out, 'model.safetensors'));
    const stale = `${opts.out}.tmp-999999`; // left by a run killed while finishing
    await fsp.mkdir(stale);
    const again = await pretrain(opts);
    expect(existsSync(stale)).toBe(false);
    expect(again.steps).toBe(16);
    expect(await sha(path.join(opts.out, 'model.safetensors'))).toBe(before);
    await expect(pretrain({ ...opts, steps: 17 })).rejects.toThrow(/other options/);
  });

  it('resumes after a kill: the same weights as the uninterrupted run', async () => {
    const out = path.join(tmp, 'killed');
    const args = ['train', '--langs', 'en,ru,mt', '--low-resource', 'mt:2', '--tokenizer-vocab', '400', '--layers', '2', '--hidden', '32',
      '--heads', '2', '--kv-heads', '1', '--ffn', '64', '--chunk', '64', '--batch', '4', '--steps', '16', '--lr', '5e-3', '--warmup', '2',
      '--seed', '3', '--threads', '1', '--dtype', 'f32', '--save-every', '5', '--quiet', '--out', out];
    const child = spawn(process.execPath, [path.join(repoRoot, 'bin', 'langneurons.js'), ...args], { stdio: 'ignore' });
    const state = path.join(`${out}.work`, 'run', 'state', 'state.json');
    let killedMidRun = false;
    await new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        if (existsSync(state)) {
          killedMidRun = !existsSync(path.join(`${out}.work`, 'run.done.json'));
          child.kill('SIGKILL');
          clearInterval(timer);
        }
      }, 10);
      child.on('exit', () => { clearInterval(timer); resolve(); });
    });
    expect(killedMidRun).toBe(true);
    expect(existsSync(out)).toBe(false);
    const r = await pretrain({ ...opts, out });
    expect(r.steps).toBe(16);
    expect(await sha(path.join(out, 'model.safetensors'))).toBe(await sha(path.join(opts.out, 'model.safetensors')));
  });

  it('builds balanced, shuffled, seeded training text', () => {
    const a = buildPretrainCorpus({ langs: ['en', 'de'], seed: 1 });
    const b = buildPretrainCorpus({ langs: ['en', 'de'], seed: 1 });
    const c = buildPretrainCorpus({ langs: ['en', 'de'], seed: 2 });
    expect(a.lines).toEqual(b.lines);
    expect(a.lines).not.toEqual(c.lines);
    expect(a.languages.map((l) => l.trainArticles.length)).toEqual([25, 25]);
    expect(a.heldout.get('de')!.length).toBe(6);
  });

  it('refuses bad input with clear errors', async () => {
    const base = { ...opts, out: path.join(tmp, 'bad') };
    await expect(pretrain({ ...base, langs: ['en', 'xx-nope'] })).rejects.toThrow(/unknown UDHR language "xx-nope"/);
    await expect(pretrain({ ...base, tokenizerVocab: 200 })).rejects.toThrow(/--tokenizer-vocab must be at least 258/);
    await expect(pretrain({ ...base, lowResource: { lang: 'sw', articles: 3 } })).rejects.toThrow(/'sw' is not in --langs/);
    await expect(pretrain({ ...base, lowResource: { lang: 'mt', articles: 40 } })).rejects.toThrow(/keeps every train article/);
    await expect(pretrain({ ...base, langs: ['en', 'eng'], lowResource: null })).rejects.toThrow(/same translation twice/);
    await expect(pretrain({ ...base, hidden: 30 })).rejects.toThrow(LangneuronsError);
    expect(() => parseLowResource('mt')).toThrow(/--low-resource must be <lang>:<train articles>/);
    expect(existsSync(path.join(tmp, 'bad'))).toBe(false);
  });

  it('the CLI reports bad input in one line with exit code 1', async () => {
    const write = process.stderr.write.bind(process.stderr);
    let err = '';
    process.stderr.write = ((s: string) => { err += s; return true; }) as typeof process.stderr.write;
    try {
      const code = await main(['node', 'langneurons', 'train', '--langs', 'en,zz-none', '--tokenizer-vocab', '300', '--layers', '1',
        '--hidden', '8', '--heads', '2', '--kv-heads', '2', '--ffn', '8', '--steps', '1', '--out', path.join(tmp, 'cli')]);
      expect(code).toBe(1);
    } finally {
      process.stderr.write = write;
    }
    expect(err).toMatch(/^langneurons: error: unknown UDHR language "zz-none"/);
  });
});
