// Profile never overwrites what it did not write, never mixes runs of other options in one folder, keys its resumes
// and merges by the compute mode, and `stats merge` refuses an imported file (or any file) counted twice.
// Every test here fails on the code before these checks: files were overwritten, languages re-profiled, bf16
// checkpoints continued under f32, and the same imported Tang file merged twice.
import { createHash } from 'node:crypto';
import { existsSync, promises as fsp, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { openCorpus, type Corpus } from '../src/corpus/sources.js';
import { udhrCorpus } from '../src/corpus/udhr.js';
import { loadModel, type LanguageModel } from '../src/engine/model.js';
import { writeSafetensors } from '../src/io/safetensors.js';
import { profileCorpus, statsFileFor } from '../src/profile/profile.js';
import { mergeConflict, mergeStats, readStats, writeStats, type ActivationStats, type TokenScope } from '../src/profile/stats.js';
import { runCli } from './helpers/cli.js';
import { copyFixture, fixturePath, makeTempDir, removeDir, repoRoot } from './helpers/fixtures.js';

const scope: TokenScope = { mode: 'windows', maxLen: 48, bos: false, countPadding: false, tokenBudget: 600 };
let model: LanguageModel;
let tmp: string;
const dirs: string[] = [];
beforeAll(async () => { model = await loadModel(fixturePath('tiny-qwen2'), { threads: 2 }); tmp = await makeTempDir('ln-rel-outputs-'); dirs.push(tmp); });
afterAll(async () => { for (const d of dirs) await removeDir(d); });

const sha = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');
/** Every file of a folder with its content's hash: "the folder is exactly as it was". */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const e of (await fsp.readdir(dir)).sort()) out[e] = sha(path.join(dir, e));
  return out;
}
/** profileCorpus stopped by an error thrown from its progress callback after `batches` batches of `language`. */
async function killedDuring(m: LanguageModel, corpus: Corpus, languages: string[], language: string, batches: number, outDir: string, s = scope) {
  let n = 0;
  await expect(profileCorpus(m, corpus, { languages, outDir, scope: s, batchTokens: 96, checkpointTokens: 96,
    onProgress: (p) => { if (p.language === language && ++n === batches) throw new Error('killed'); } })).rejects.toThrow('killed');
}

describe('profile never overwrites a file it did not write', () => {
  it('a model\'s weights at <out>/<lang>.safetensors, the model folder as --out, any foreign <lang>.safetensors: refused, left alone', async () => {
    // A copy of the model, and a corpus whose language is named "model": <out>/model.safetensors is the weights.
    const victim = await copyFixture('tiny-qwen2'); dirs.push(victim);
    const corpusDir = path.join(tmp, 'vc');
    await fsp.mkdir(corpusDir);
    await fsp.writeFile(path.join(corpusDir, 'model.txt'), 'All human beings are born free and equal in dignity and rights.\n'.repeat(20));
    const corpus = await openCorpus(corpusDir);
    const before = await snapshot(victim);
    await expect(profileCorpus(model, corpus, { languages: ['model'], outDir: victim, scope }))
      .rejects.toThrow(/model\.safetensors: exists and is not a langneurons statistics file; profile does not overwrite it/);
    expect(await snapshot(victim)).toEqual(before);

    // --out is the folder of the model being profiled (loaded from the copy): refused before the lock is taken.
    const fromVictim = await loadModel(victim, { threads: 1 });
    await expect(profileCorpus(fromVictim, corpus, { languages: ['model'], outDir: victim, scope }))
      .rejects.toThrow(/--out\) .* is also an input/);
    expect(await snapshot(victim)).toEqual(before);

    // Any other file at <out>/<lang>.safetensors, safetensors or not, also with --no-resume (it replaces only profile's files).
    const foreign = path.join(tmp, 'foreign');
    await fsp.mkdir(foreign);
    await fsp.writeFile(path.join(foreign, 'en.safetensors'), 'precious\n');
    await writeSafetensors(path.join(foreign, 'sw.safetensors'), { w: { dtype: 'F32', shape: [2], data: Float32Array.of(1, 2) } });
    const foreignBefore = await snapshot(foreign);
    for (const [language, resume] of [['en', true], ['en', false], ['sw', true], ['sw', false]] as const)
      await expect(profileCorpus(model, udhrCorpus([language], { split: 'train' }), { languages: [language], outDir: foreign, scope, resume }))
        .rejects.toThrow(new RegExp(`${language}\\.safetensors: exists and is not a langneurons statistics file`));
    expect(await snapshot(foreign)).toEqual(foreignBefore);
  });

  it('the CLI says so in one line and exits 1', async () => {
    const foreign = path.join(tmp, 'foreign-cli');
    await fsp.mkdir(foreign);
    await fsp.writeFile(path.join(foreign, 'en.safetensors'), 'precious\n');
    const r = await runCli('profile', fixturePath('tiny-qwen2'), '--corpus', 'udhr:train', '--langs', 'en', '--max-len', '48', '--tokens', '200', '--threads', '1', '--out', foreign);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^langneurons: error: .*en\.safetensors: exists and is not a langneurons statistics file/)]);
    expect(readFileSync(path.join(foreign, 'en.safetensors'), 'utf8')).toBe('precious\n');
  });
});

describe('a rerun with other options changes nothing', () => {
  it('a finished language of other options is refused like a checkpoint, and every language is checked before anything is written', async () => {
    const out = path.join(tmp, 'mixed');
    const corpus = udhrCorpus(['en', 'sw'], { split: 'train' });
    // en finished at max-len 48, killed during sw: en.safetensors + .sw.checkpoint.safetensors
    await killedDuring(model, corpus, ['en', 'sw'], 'sw', 2, out);
    expect(existsSync(statsFileFor(out, 'en'))).toBe(true);
    expect(existsSync(path.join(out, '.sw.checkpoint.safetensors'))).toBe(true);
    const before = await snapshot(out);
    const other = { ...scope, maxLen: 32 };
    await expect(profileCorpus(model, corpus, { languages: ['en', 'sw'], outDir: out, scope: other, batchTokens: 96 }))
      .rejects.toThrow(/en\.safetensors: finished statistics made with other options, model or corpus \(scope\)/);
    expect(await snapshot(out)).toEqual(before);
    // A language with nothing yet, before one whose checkpoint is refused: not profiled either.
    await expect(profileCorpus(model, udhrCorpus(['de', 'sw'], { split: 'train' }), { languages: ['de', 'sw'], outDir: out, scope: other, batchTokens: 96 }))
      .rejects.toThrow(/\.sw\.checkpoint\.safetensors: this checkpoint was made with other options, model or corpus \(scope\)/);
    expect(await snapshot(out)).toEqual(before);
    // The same options continue: en is kept as it is, sw resumes.
    const res = await profileCorpus(model, corpus, { languages: ['en', 'sw'], outDir: out, scope, batchTokens: 96, checkpointTokens: 96 });
    expect(res.map((r) => [r.language, r.skipped, r.resumed])).toEqual([['en', true, false], ['sw', false, true]]);
    expect(sha(statsFileFor(out, 'en'))).toBe(before['en.safetensors']);
    // --no-resume replaces profile's own files.
    const [again] = await profileCorpus(model, corpus, { languages: ['en'], outDir: out, scope: other, batchTokens: 96, resume: false });
    expect(again!.skipped).toBe(false);
    expect((await readStats(statsFileFor(out, 'en'))).meta.scope.maxLen).toBe(32);
  });
});

describe('the compute mode is part of the resume key and of the merge check', () => {
  it('a bf16 checkpoint or finished file is not continued or kept under f32; the file records its compute mode', async () => {
    const bf16 = await loadModel(fixturePath('tiny-qwen2'), { threads: 2, compute: 'bf16' });
    const corpus = udhrCorpus(['sw'], { split: 'train' });
    const out = path.join(tmp, 'compute');
    await killedDuring(bf16, corpus, ['sw'], 'sw', 2, out);
    const ck = path.join(out, '.sw.checkpoint.safetensors');
    expect(existsSync(ck)).toBe(true);
    await expect(profileCorpus(model, corpus, { languages: ['sw'], outDir: out, scope, batchTokens: 96 }))
      .rejects.toThrow(/checkpoint was made with other options, model or corpus \(compute: "bf16", now "f32"\)/);
    const [done] = await profileCorpus(bf16, corpus, { languages: ['sw'], outDir: out, scope, batchTokens: 96, checkpointTokens: 96 });
    expect(done!.resumed).toBe(true);
    expect((await readStats(statsFileFor(out, 'sw'))).meta.compute).toBe('bf16');
    await expect(profileCorpus(model, corpus, { languages: ['sw'], outDir: out, scope, batchTokens: 96 }))
      .rejects.toThrow(/sw\.safetensors: finished statistics made with other options, model or corpus \(compute: "bf16", now "f32"\)/);
  });

  it('a checkpoint continues only on the engine kind that wrote it (a CPU of another kernel family refuses it); a finished file is kept on any', async () => {
    const corpus = udhrCorpus(['sw'], { split: 'train' });
    const out = path.join(tmp, 'engine');
    await killedDuring(model, corpus, ['sw'], 'sw', 2, out);
    // The same model on another kind of engine (in one process the kernel family is fixed: its name stands in).
    const other = await loadModel(fixturePath('tiny-qwen2'), { threads: 2 });
    other.engineKind = () => 'other-family';
    const o = { languages: ['sw'], outDir: out, scope, batchTokens: 96, checkpointTokens: 96 };
    await expect(profileCorpus(other, corpus, o))
      .rejects.toThrow(new RegExp(`checkpoint was made with other options, model or corpus \\(engine: "${model.engineKind()}", now "other-family"\\)`));
    const [done] = await profileCorpus(model, corpus, o);
    expect(done!.resumed).toBe(true);
    const [kept] = await profileCorpus(other, corpus, o);
    expect(kept!.skipped).toBe(true);
  });

  it('stats merge refuses a bf16 shard with an f32 one; files that do not record it merge only with each other', async () => {
    const corpus = udhrCorpus(['sw'], { split: 'train' });
    const [s1, s2] = [path.join(tmp, 'c-s1'), path.join(tmp, 'c-s2')];
    const bf16 = await loadModel(fixturePath('tiny-qwen2'), { threads: 2, compute: 'bf16' });
    await profileCorpus(bf16, corpus, { languages: ['sw'], outDir: s1, scope, shard: { index: 0, count: 2 } });
    await profileCorpus(model, corpus, { languages: ['sw'], outDir: s2, scope, shard: { index: 1, count: 2 } });
    const r = await runCli('stats', 'merge', statsFileFor(s1, 'sw'), statsFileFor(s2, 'sw'), '--out', path.join(tmp, 'c-merged.safetensors'));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/different compute modes \(bf16 vs f32\)/);
    expect(existsSync(path.join(tmp, 'c-merged.safetensors'))).toBe(false);
    // A file written before the mode was recorded may come from either: it merges only with another such file.
    const a = await readStats(statsFileFor(s1, 'sw')), b = await readStats(statsFileFor(s2, 'sw'));
    const unrecorded = (x: ActivationStats): ActivationStats => { const meta = { ...x.meta }; delete meta.compute; return { ...x, meta }; };
    expect(mergeConflict(unrecorded(a), b)).toMatch(/different compute modes \(not recorded .* vs f32\)/);
    expect(mergeConflict(unrecorded(a), unrecorded(b))).toBeNull();
  });
});

describe('stats merge counts no file twice', () => {
  it('an imported Tang file given twice (or imported twice) is refused', async () => {
    const model260k = fixturePath('stories260k');
    const tangFile = path.join(repoRoot, 'test', 'fixtures-tang', 'counts.pt');
    const [a, b] = [path.join(tmp, 'tang-a.safetensors'), path.join(tmp, 'tang-b.safetensors')];
    for (const f of [a, b])
      expect((await runCli('stats', 'import', tangFile, '--lang', 'en', '--model', model260k, '--max-len', '100', '--out', f)).code).toBe(0);
    for (const [x, y] of [[a, a], [a, b]]) {
      const r = await runCli('stats', 'merge', x!, y!, '--out', path.join(tmp, 'twice.safetensors'));
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/both hold the same profiling run \(tang-import:[0-9a-f]{64}\)/);
    }
    expect(existsSync(path.join(tmp, 'twice.safetensors'))).toBe(false);
  });

  it('a file without parts (written before they were recorded) given twice is refused by its content', async () => {
    const dir = path.join(tmp, 'noparts');
    await profileCorpus(model, udhrCorpus(['sw'], { split: 'train' }), { languages: ['sw'], outDir: dir, scope });
    const s = await readStats(statsFileFor(dir, 'sw'));
    delete s.meta.parts;
    const old = path.join(tmp, 'old-sw.safetensors'), copy = path.join(tmp, 'old-sw-copy.safetensors');
    await writeStats(old, s);
    await fsp.copyFile(old, copy);
    const r = await runCli('stats', 'merge', old, copy, '--out', path.join(tmp, 'old-twice.safetensors'));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/identical statistics \(the same file given twice\?\)/);
    // Two different parts without parts recorded still merge.
    const other = await readStats(statsFileFor(dir, 'sw'));
    delete other.meta.parts;
    other.sites.get('act')!.overZero[0]! += 1;
    expect(mergeStats(s, other).tokens).toBe(2 * s.tokens);
  });
});
