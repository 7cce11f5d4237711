// The steering measures against the engine (held-out text, the real scorer without intervention) and from the
// command line: errors name the file (mask, facts, prompts) before any model work.
import { spawnSync } from 'node:child_process';
import { existsSync, promises as fsp, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadModel, type LanguageModel } from '../src/engine/model.js';
import { scoreTokens } from '../src/engine/score.js';
import { MASK_FORMAT, writeMaskJson, type NeuronMask } from '../src/identify/masks.js';
import { openCheckpoint } from '../src/model/checkpoint.js';
import { modelIdentity } from '../src/profile/identity.js';
import { compose, deactivation, engineMatrixScorer, interventionResolver, loadEvalTexts, openEvalCorpus, requireMaskLanguages } from '../src/steer/index.js';
import { jsonl, writeFiles } from './helpers/corpus-fixtures.js';
import { fixturePath, makeTempDir, removeDir, repoRoot } from './helpers/fixtures.js';

const bin = path.join(repoRoot, 'bin', 'langneurons.js');
const cli = (...args: string[]) => {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 300_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
};

const modelDir = fixturePath('tiny-llama3');
let dir: string, maskFile: string, mask: NeuronMask, model: LanguageModel;

beforeAll(async () => {
  dir = await makeTempDir('ln-steer-cli-');
  const ck = await openCheckpoint(modelDir);
  const id = modelIdentity(ck);
  const units = (k: number) => Array.from({ length: id.layers }, (_, l) => [k, k + 10 + l]);
  mask = {
    format: MASK_FORMAT, method: 'hand', parameters: {}, site: 'act', model: id, sources: [], layers: id.layers, width: id.intermediate,
    languages: { en: units(1), de: units(2), sw: units(3) },
  };
  maskFile = path.join(dir, 'mask.json');
  await writeMaskJson(maskFile, mask);
  model = await loadModel(modelDir, { threads: 2 });
});
afterAll(async () => { await removeDir(dir); });

describe('held-out text and the real scorer', () => {
  it('opens UDHR splits and file lists, and scores documents as scoreTokens does', async () => {
    const udhr = await openEvalCorpus('udhr:heldout', ['en', 'sw']);
    expect(udhr.languages).toEqual(['en', 'sw']);
    const texts = await loadEvalTexts(model, udhr, ['en', 'sw'], 300);
    expect(texts.tokens.get('en')).toBeLessThanOrEqual(300);
    expect(texts.tokens.get('en')).toBeGreaterThan(250);
    const score = engineMatrixScorer(model, texts);
    const got = await score('en', null);
    let totalNll = 0, tokens = 0;
    for (const ids of texts.documents.get('en')!) { const r = await scoreTokens(model, ids); totalNll += r.totalNll; tokens += r.tokens; }
    expect(got.tokens).toBe(tokens);
    expect(got.totalNll).toBeCloseTo(totalNll, 2); // packed forwards: float32 sums in another order
    // windows shorter than the documents: as scoreTokens with the same window (no overlap)
    const w = await engineMatrixScorer(model, texts, { window: 16, batchTokens: 64 })('sw', null);
    let wNll = 0, wTokens = 0;
    for (const ids of texts.documents.get('sw')!) { const r = await scoreTokens(model, ids, { window: 16 }); wNll += r.totalNll; wTokens += r.tokens; }
    expect(w.tokens).toBe(wTokens);
    expect(w.totalNll).toBeCloseTo(wNll, 2);
    expect(() => engineMatrixScorer(model, texts, { window: 1 })).toThrow(/window must be an integer/);

    await writeFiles(path.join(dir, 'held'), { 'en.txt': 'Hello world.\nSecond line here.\n', 'fr.txt': 'Bonjour le monde.\n' });
    const files = await openEvalCorpus(`${path.join(dir, 'held', 'en.txt')},xx=${path.join(dir, 'held', 'fr.txt')}`, undefined);
    expect(files.languages).toEqual(['en', 'xx']);
    const folder = await openEvalCorpus(path.join(dir, 'held'), undefined);
    expect(folder.languages).toEqual(['en', 'fr']);
    await expect(openEvalCorpus(`${path.join(dir, 'held', 'missing.txt')},${path.join(dir, 'held', 'en.txt')}`, undefined)).rejects.toThrow(/missing\.txt: file not found/);
  });

  it('refuses a language the mask lacks, naming the mask file', () => {
    expect(() => requireMaskLanguages(mask, maskFile, ['en', 'fr'])).toThrow(new RegExp(`${maskFile}: unknown language "fr" \\(the mask has: en, de, sw\\)`));
  });
});

describe('langneurons steer (command line)', () => {
  it('ppl-matrix: a language missing from the mask names the mask file', () => {
    const r = cli('steer', 'ppl-matrix', modelDir, '--masks', maskFile, '--langs', 'en,fr', '--out', path.join(dir, 'ppl.json'), '--threads', '2');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${maskFile}: unknown language "fr"`);
  });

  it('forcing: an empty prompts folder names the folder', async () => {
    const empty = path.join(dir, 'no-prompts');
    await fsp.mkdir(empty, { recursive: true });
    const r = cli('steer', 'forcing', modelDir, '--masks', maskFile, '--prompts', empty, '--target', 'sw', '--amplify', 'scale:5', '--out', path.join(dir, 'f.json'));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${empty}: the prompts folder has no <lang>.txt or <lang>.jsonl files`);
  });

  it('lss: facts without the columns name the file; bad settings name the option', async () => {
    const facts = await writeFiles(path.join(dir, 'facts'), { 'P19.jsonl': jsonl([{ sub_en: 'a', obj_en: 'b' }]) });
    const r = cli('steer', 'lss', modelDir, '--masks', maskFile, '--facts', facts, '--settings', 'scale:2', '--out', path.join(dir, 'lss.json'));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${path.join(facts, 'P19.jsonl')}: no "template" column`);
    const s = cli('steer', 'lss', modelDir, '--masks', maskFile, '--facts', facts, '--settings', 'p_max,boost', '--out', path.join(dir, 'lss.json'));
    expect(s.code).toBe(1);
    expect(s.stderr).toContain('amplification setting "boost": unknown setting');
  });

  it('ppl-matrix runs end to end: JSON, CSV and SVG, the deactivations change the NLL', () => {
    const out = path.join(dir, 'pm', 'ppl.json');
    const r = cli('steer', 'ppl-matrix', modelDir, '--masks', maskFile, '--eval-text', 'udhr:heldout', '--max-tokens', '200', '--out', out, '--threads', '2', '--json');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc.diagonal.languages).toEqual(['en', 'de', 'sw']);
    for (const f of [out, out.replace(/\.json$/, '.csv'), out.replace(/\.json$/, '.svg')]) expect(existsSync(f)).toBe(true);
    const m = JSON.parse(readFileSync(out, 'utf8'));
    expect(m.rows).toEqual(['en', 'de', 'sw']);
    expect(m.evalText.spec).toBe('udhr:heldout');
    expect(m.deltaNll.flat().some((x: number) => Math.abs(x) > 1e-4)).toBe(true);
  });

  it("writes a result only over its own kind: never over an input, a user's file or one named beside it; one run per --out", async () => {
    const own = path.join(dir, 'own');
    await writeFiles(own, { 'p.txt': 'Hello\n' });
    const run = (out: string) => cli('steer', 'fallback', modelDir, '--masks', maskFile, '--prompts', path.join(own, 'p.txt'), '--deactivate', 'en',
      '--max-new-tokens', '2', '--no-baseline', '--langid', 'eld', '--out', out, '--threads', '2');
    const out = path.join(own, 'fb.json');
    for (let i = 0; i < 2; i++) expect(run(out).code, 'a first run, then one over its own result').toBe(0);
    const result = readFileSync(out, 'utf8');
    expect(existsSync(`${out}.lock`)).toBe(false);

    const mask = readFileSync(maskFile);
    let r = run(maskFile);
    expect([r.code, r.stderr]).toEqual([1, expect.stringMatching(/--out .*mask\.json is also an input/)]);
    expect(readFileSync(maskFile)).toEqual(mask);

    const user = path.join(own, 'notes.json');  // another measure's result is not this one's either
    writeFileSync(user, '{"format":"langneurons-forcing/1"}\n');
    r = run(user);
    expect([r.code, r.stderr]).toEqual([1, expect.stringMatching(/notes\.json: exists and is not a langneurons fallback result/)]);
    expect(readFileSync(user, 'utf8')).toBe('{"format":"langneurons-forcing/1"}\n');

    writeFileSync(path.join(own, 'pm.csv'), 'mine\n');
    r = cli('steer', 'ppl-matrix', modelDir, '--masks', maskFile, '--langs', 'en', '--max-tokens', '20', '--out', path.join(own, 'pm.json'));
    expect([r.code, r.stderr]).toEqual([1, expect.stringMatching(/pm\.csv would be written beside it, and exists without a langneurons ppl-matrix result/)]);
    expect(readFileSync(path.join(own, 'pm.csv'), 'utf8')).toBe('mine\n');
    expect(existsSync(path.join(own, 'pm.json'))).toBe(false);

    // A live process holds fb.json (this test's: alive, another pid than the command's).
    writeFileSync(`${out}.lock`, JSON.stringify({ pid: process.pid, hostname: os.hostname(), command: 'steer fallback', started: 'then' }) + '\n');
    r = run(out);
    expect([r.code, r.stderr]).toEqual([1, expect.stringMatching(new RegExp(`fb\\.json: in use by steer fallback \\(pid ${process.pid}`))]);
    expect(readFileSync(out, 'utf8')).toBe(result);
    await fsp.rm(`${out}.lock`);
  });

  it("ppl-matrix with a projection's mask (Kojima: units of q) intervenes at q; a resid mask is refused naming the file", async () => {
    const c = (await openCheckpoint(modelDir)).config;
    const qMask = path.join(dir, 'ap.q.json');
    await writeMaskJson(qMask, { ...mask, site: 'q', width: c.numHeads * c.headDim });
    const out = path.join(dir, 'pm-q', 'ppl.json');
    const r = cli('steer', 'ppl-matrix', modelDir, '--masks', qMask, '--eval-text', 'udhr:heldout', '--langs', 'en,de', '--max-tokens', '100', '--out', out, '--threads', '2', '--json');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(JSON.parse(readFileSync(out, 'utf8')).deltaNll.flat().some((x: number) => Math.abs(x) > 1e-4)).toBe(true);
    const residMask = path.join(dir, 'resid.json');
    await writeMaskJson(residMask, { ...mask, site: 'resid', width: c.hiddenSize });
    const bad = cli('steer', 'ppl-matrix', modelDir, '--masks', residMask, '--eval-text', 'udhr:heldout', '--langs', 'en', '--max-tokens', '50', '--out', path.join(dir, 'pm-r', 'ppl.json'), '--threads', '2');
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain(`${residMask}: the mask's units are residual-stream (resid) units, which interventions do not support`);
  });

  it('--masks a,b: each mask edited at its own site, together (Kojima\'s per-site masks); masks of other languages or one site twice refused', async () => {
    const c = (await openCheckpoint(modelDir)).config;
    const qMask = path.join(dir, 'set.q.json');
    await writeMaskJson(qMask, { ...mask, site: 'q', width: c.numHeads * c.headDim });
    const out = path.join(dir, 'pm-set', 'ppl.json');
    const r = cli('steer', 'ppl-matrix', modelDir, '--masks', `${qMask},${maskFile}`, '--eval-text', 'udhr:heldout', '--langs', 'en,de', '--text-langs', 'en',
      '--max-tokens', '100', '--out', out, '--threads', '2', '--json');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const m = JSON.parse(readFileSync(out, 'utf8'));
    expect(m.mask).toBe(`${qMask},${maskFile}`);
    // The same cells through the API with both deactivations composed: q's units at q, the act mask's at act.
    const texts = await loadEvalTexts(model, await openEvalCorpus('udhr:heldout', ['en']), ['en'], 100);
    const score = engineMatrixScorer(model, texts);
    const resolve = interventionResolver(model);
    for (const [i, lang] of ['en', 'de'].entries()) {
      const both = compose(deactivation(qMask, lang, 0, 'q'), deactivation(maskFile, lang));
      const s = await score('en', await resolve(both));
      expect(m.nll[i][0]).toBeCloseTo(s.totalNll / s.tokens, 10);
      const qOnly = await score('en', await resolve(deactivation(qMask, lang, 0, 'q')));
      expect(Math.abs(m.nll[i][0] - qOnly.totalNll / qOnly.tokens)).toBeGreaterThan(1e-6); // the act mask counts too
    }
    const other = path.join(dir, 'set.k.json');
    await writeMaskJson(other, { ...mask, site: 'k', width: c.numKvHeads * c.headDim, languages: { en: mask.languages['en']!, de: mask.languages['de']! } });
    const bad1 = cli('steer', 'ppl-matrix', modelDir, '--masks', `${qMask},${other}`, '--eval-text', 'udhr:heldout', '--out', path.join(dir, 'pm-x', 'p.json'));
    expect(bad1.code).toBe(1);
    expect(bad1.stderr).toContain(`--masks: ${other} has the languages de,en, ${qMask} has de,en,sw: the masks of a set must name the same languages`);
    const q2 = path.join(dir, 'set.q2.json');
    await writeMaskJson(q2, { ...mask, site: 'q', width: c.numHeads * c.headDim });
    const bad2 = cli('steer', 'ppl-matrix', modelDir, '--masks', `${qMask},${q2}`, '--eval-text', 'udhr:heldout', '--out', path.join(dir, 'pm-y', 'p.json'));
    expect(bad2.code).toBe(1);
    expect(bad2.stderr).toContain(`--masks: ${qMask} and ${q2} are both masks of site q (a set takes one mask per site)`);
    // In a set, FFN masks are edited at their own site: a gate mask and an up mask are two different quantities.
    const gate = path.join(dir, 'set.gate.json'), up = path.join(dir, 'set.up.json');
    await writeMaskJson(gate, { ...mask, site: 'gate' });
    await writeMaskJson(up, { ...mask, site: 'up' });
    const out3 = path.join(dir, 'pm-gu', 'ppl.json');
    const r3 = cli('steer', 'ppl-matrix', modelDir, '--masks', `${gate},${up}`, '--eval-text', 'udhr:heldout', '--langs', 'en', '--text-langs', 'en',
      '--max-tokens', '100', '--out', out3, '--threads', '2', '--json');
    expect(r3.code, r3.stderr).toBe(0);
    const gu = await score('en', await resolve(compose(deactivation(gate, 'en', 0, 'gate'), deactivation(up, 'en', 0, 'up'))));
    expect(JSON.parse(readFileSync(out3, 'utf8')).nll[0][0]).toBeCloseTo(gu.totalNll / gu.tokens, 10);
  });

  it('lss and forcing run end to end with the intervention engine', async () => {
    const facts = await writeFiles(path.join(dir, 'facts-ok'), { 'P37.jsonl': jsonl([
      { template: '[X] speaks [Y].', sub_en: 'Goethe', obj_en: 'German', sub_de: 'Goethe', obj_de: 'Deutsch' },
      { template: '[X] speaks [Y].', sub_en: 'Dante', obj_en: 'Italian', sub_de: 'Dante', obj_de: 'Italienisch' },
    ]) });
    const lssOut = path.join(dir, 'lss.json');
    const l = cli('steer', 'lss', modelDir, '--masks', maskFile, '--facts', facts, '--settings', 'scale:2,set:max,add:2*median', '--out', lssOut, '--threads', '2', '--details', '--json');
    expect(l.stderr).toBe('');
    const res = JSON.parse(readFileSync(lssOut, 'utf8'));
    expect(res.settings.map((x: { setting: string }) => x.setting)).toEqual(['scale:2', 'set:max', 'add:2*median']);
    expect(res.settings[0].pairs.map((p: { base: string; target: string }) => `${p.base}>${p.target}`)).toEqual(['de>en', 'en>de']);
    expect(res.settings.map((x: { setting: string }) => x.setting)).toContain(res.best.setting);
    // amplification moves the log-likelihoods: D1 differs from D0
    expect(res.settings[0].pairs[0].details.some((d: { d0: number; d1: number }) => Math.abs(d.d1 - d.d0) > 1e-6)).toBe(true);
    const prompts = await writeFiles(path.join(dir, 'prompts'), { 'en.txt': 'Once upon a time\nThe weather\n', 'de.txt': 'Es war einmal\n' });
    const fOut = path.join(dir, 'forcing.json');
    const f = cli('steer', 'forcing', modelDir, '--masks', maskFile, '--prompts', prompts, '--target', 'sw', '--amplify', 'scale:5', '--max-new-tokens', '8', '--out', fOut, '--threads', '2', '--json');
    expect(f.stderr).toBe('');
    const fr = JSON.parse(readFileSync(fOut, 'utf8'));
    expect(fr.identifier).toBe('cld');
    expect(fr.targets[0].forced.prompts).toBe(3);
    expect(fr.targets[0].baseline.prompts).toBe(3);
    expect(fr.targets[0].forced.generations.map((g: { source: string }) => g.source)).toEqual(['de', 'en', 'en']);
    // the rates per prompt language beside the JSON: <stem>.csv and <stem>.svg
    const csv = readFileSync(path.join(dir, 'forcing.csv'), 'utf8').trim().split('\n');
    expect(csv.slice(1).map((l) => l.split(',').slice(0, 3).join(','))).toEqual(['de,sw,1', 'en,sw,2']);
    expect(Number(csv[2]!.split(',')[4])).toBe(fr.targets[0].forced.bySource.en.rate);
    expect(readFileSync(path.join(dir, 'forcing.svg'), 'utf8')).toContain('<rect class="cell"');
  });

  it('lss: settings that change nothing shift nothing (D1 = D0 exactly; another batching of the base scores made float noise count as shifts)', async () => {
    const udhr20 = path.join(repoRoot, 'models', 'udhr20');
    const id = modelIdentity(await openCheckpoint(udhr20));
    const units = (k: number) => Array.from({ length: id.layers }, (_, l) => [k, k + 10 + l, k + 40]);
    const m: NeuronMask = { format: MASK_FORMAT, method: 'hand', parameters: {}, site: 'act', model: id, sources: [], layers: id.layers, width: id.intermediate,
      languages: { en: units(1), de: units(2), sw: units(3), mt: units(4) } };
    const mf = path.join(dir, 'mask-udhr20.json');
    await writeMaskJson(mf, m);
    const facts = await writeFiles(path.join(dir, 'facts-noop'), { 'P1.jsonl': jsonl([
      { template: 'All human beings are born [X] and [Y].', sub_en: 'free', obj_en: 'equal', sub_de: 'frei', obj_de: 'gleich', sub_sw: 'huru', obj_sw: 'sawa', sub_mt: 'ħielsa', obj_mt: 'ugwali' },
      { template: '[X] has the right to [Y].', sub_en: 'Everyone', obj_en: 'education', sub_de: 'Jeder', obj_de: 'Bildung', sub_sw: 'Kila mtu', obj_sw: 'elimu', sub_mt: 'Kulħadd', obj_mt: 'edukazzjoni' },
    ]) });
    const out = path.join(dir, 'lss-noop.json');
    const r = cli('steer', 'lss', udhr20, '--masks', mf, '--facts', facts, '--settings', 'scale:1,add:0', '--out', out, '--threads', '2', '--details', '--json');
    expect(r.code, r.stderr).toBe(0);
    const res = JSON.parse(readFileSync(out, 'utf8'));
    expect(res.settings[0].pairs).toHaveLength(12);
    for (const s of res.settings) for (const p of s.pairs) {
      expect(p.lss, `${s.setting} ${p.base}>${p.target}`).toBe(0);
      for (const d of p.details) expect(d.d1).toBe(d.d0);
    }
  });

  it('lss compares p_max / p_median from profiled statistics (Rahmanisa) and names the best setting', () => {
    const stats = path.join(dir, 'stats');
    const p = cli('profile', modelDir, '--corpus', 'udhr:train', '--langs', 'en,de', '--max-len', '32', '--tokens', '1k', '--seq-means', '--threads', '2', '--out', stats, '--json');
    expect(p.code, p.stderr).toBe(0);
    const out = path.join(dir, 'lss-stats.json');
    const l = cli('steer', 'lss', modelDir, '--masks', maskFile, '--facts', path.join(dir, 'facts-ok'), '--settings', 'p_max,p_median,scale:2,scale:5',
      '--stats', stats, '--out', out, '--threads', '2', '--json');
    expect(l.code, l.stderr).toBe(0);
    const shown = JSON.parse(l.stdout);
    expect(shown.settings.map((x: { setting: string }) => x.setting)).toEqual(['p_max', 'p_median', 'scale:2', 'scale:5']);
    const best = Math.max(...shown.settings.map((x: { meanLss: number }) => x.meanLss));
    expect(shown.best.meanLss).toBe(best);
    expect(shown.settings.find((x: { setting: string }) => x.setting === shown.best.setting).meanLss).toBe(best);
  });

  it('p_max without --stats is refused before any model work', async () => {
    const r = cli('steer', 'lss', modelDir, '--masks', maskFile, '--facts', path.join(dir, 'facts-ok'), '--settings', 'p_max', '--out', path.join(dir, 'x.json'));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('"p_max" needs the profiling statistics');
  });
});
