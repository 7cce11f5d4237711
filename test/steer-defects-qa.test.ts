// Defects a QA pass found in the steering measures, interventions, `generate` and `score` (one describe per item):
// interventions and statistics resolved only after the baseline (a <out>.partial.jsonl left behind), languages given
// twice, --deactivate-value beyond float32, empty --ids / --prompt-ids, an --out naming a folder, spec numbers in
// other notations, an empty --stop, and over-long prompts not naming their file and line. Masks and statistics are
// small hand-made files for the tiny fixtures; the CLI runs in-process and fails before any engine work where it should.
import { existsSync, promises as fsp, readdirSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { MASK_FORMAT, writeMaskJson, type NeuronMask } from '../src/identify/masks.js';
import { parseInterventionSpec, validateSpec } from '../src/intervene/index.js';
import { openCheckpoint } from '../src/model/checkpoint.js';
import { modelIdentity } from '../src/profile/identity.js';
import { STATS_FORMAT, writeStats, type ActivationStats, type ModelIdentity } from '../src/profile/stats.js';
import {
  computeFallback, computeForcing, computeLss, computePplMatrix, deactivation, parseSetting, readFacts, type LanguageIdentifier,
} from '../src/steer/index.js';
import { runCli } from './helpers/cli.js';
import { jsonl, writeFiles } from './helpers/corpus-fixtures.js';
import { fixturePath, makeTempDir, removeDir } from './helpers/fixtures.js';

const modelDir = fixturePath('tiny-llama3');
/** A fixture with a context of 128 tokens, for the over-long prompts. */
const shortDir = fixturePath('tiny-qwen2-yarn');
let dir: string, maskFile: string, shortMask: string, facts: string, prompts: string, identity: ModelIdentity;
let k = 0;
/** A fresh, not yet existing output folder: a run that fails before any work leaves it absent. */
const outDir = () => path.join(dir, `out-${k++}`);

/** The mask languages en, de, sw: two units per layer each. */
function handMask(id: ModelIdentity): NeuronMask {
  const units = (u: number) => Array.from({ length: id.layers }, (_, l) => [u, u + 10 + l]);
  return { format: MASK_FORMAT, method: 'hand', parameters: {}, site: 'act', model: id, sources: [], layers: id.layers, width: id.intermediate,
    languages: { en: units(1), de: units(2), sw: units(3) } };
}

/** A language's statistics at act for `model`: sums, and sequence means unless `seqMeans` is false. */
function toyStats(model: ModelIdentity, language: string, seqMeans = true): ActivationStats {
  const n = model.layers * model.intermediate, S = 2;
  return {
    meta: { format: STATS_FORMAT, model, language, scope: { mode: 'sentences', maxLen: 64, bos: true, countPadding: false, tokenBudget: 0 },
      layers: Array.from({ length: model.layers }, (_, l) => l), corpus: { files: [], fingerprint: 'x' }, toolVersion: 'test', shards: 1 },
    tokens: 10, sequences: S,
    sites: new Map([['act', { site: 'act', width: model.intermediate, overZero: new Float64Array(n), sum: Float64Array.from({ length: n }, (_, u) => u % 7),
      sumSq: new Float64Array(n), ...(seqMeans ? { seqMeans: Float32Array.from({ length: S * n }, (_, u) => (u % 5) / 10) } : {}) }]]),
  };
}

async function statsFolder(name: string, make: (lang: string) => ActivationStats): Promise<string> {
  const d = path.join(dir, name);
  await fsp.mkdir(d, { recursive: true });
  for (const lang of ['en', 'de', 'sw']) await writeStats(path.join(d, `${lang}.safetensors`), make(lang));
  return d;
}

/** `out`'s folder holds nothing of the run: no result, no <out>.partial.jsonl, no lock. */
function nothingWritten(out: string): void {
  const d = path.dirname(out);
  expect(existsSync(d) ? readdirSync(d) : []).toEqual([]);
}

beforeAll(async () => {
  dir = await makeTempDir('ln-steer-qa-');
  identity = modelIdentity(await openCheckpoint(modelDir));
  maskFile = path.join(dir, 'mask.json');
  await writeMaskJson(maskFile, handMask(identity));
  shortMask = path.join(dir, 'short-mask.json');
  await writeMaskJson(shortMask, handMask(modelIdentity(await openCheckpoint(shortDir))));
  facts = (await writeFiles(path.join(dir, 'facts'), { 'P37.jsonl': jsonl([
    { template: '[X] speaks [Y].', sub_en: 'Goethe', obj_en: 'German', sub_de: 'Goethe', obj_de: 'Deutsch', sub_sw: 'Goethe', obj_sw: 'Kijerumani' },
  ]) }));
  prompts = await writeFiles(path.join(dir, 'prompts'), { 'en.txt': 'Once upon a time\n', 'de.txt': 'Es war einmal\n' });
});
afterAll(async () => { await removeDir(dir); });

const T = ['--threads', '1'];

describe('1. every intervention resolved before any engine work: nothing written on failure', () => {
  it('lss: --stats that does not exist, with a setting that reads it after one that does not (scale:2,mean)', async () => {
    const out = path.join(outDir(), 'lss.json');
    const r = await runCli('steer', 'lss', modelDir, '--masks', maskFile, '--facts', facts, '--settings', 'scale:2,mean',
      '--stats', path.join(dir, 'nonexistent'), '--out', out, ...T);
    expect([r.code, r.stderr.trim()]).toEqual([1,
      `langneurons: error: intervention "amplify en with mean": no statistics of "en": ${path.join(dir, 'nonexistent', 'en.safetensors')} does not exist (statistics: ${path.join(dir, 'nonexistent')})`]);
    nothingWritten(out);
  });

  it('lss: statistics profiled on another model', async () => {
    const other = await statsFolder('stats-other-model', (l) => toyStats({ ...identity, name: 'other-model', fingerprint: 'e'.repeat(64) }, l));
    const out = path.join(outDir(), 'lss.json');
    const r = await runCli('steer', 'lss', modelDir, '--masks', maskFile, '--facts', facts, '--settings', 'scale:2,p_max', '--stats', other, '--out', out, ...T);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe(`langneurons: error: intervention "amplify en with p_max": ${path.join(other, 'en.safetensors')} was profiled on other-model, not on tiny-llama3`);
    nothingWritten(out);
  });

  it('forcing: --amplify p_max with statistics lacking sequence means (after the baseline generations before)', async () => {
    const noSeq = await statsFolder('stats-no-seq', (l) => toyStats(identity, l, false));
    const out = path.join(outDir(), 'f.json');
    const r = await runCli('steer', 'forcing', modelDir, '--masks', maskFile, '--prompts', prompts, '--target', 'sw', '--amplify', 'p_max',
      '--stats', noSeq, '--max-new-tokens', '2', '--langid', 'eld', '--out', out, ...T);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`statistic p_max needs sequence means in ${path.join(noSeq, 'sw.safetensors')}`);
    nothingWritten(out);
  });

  it('ppl-matrix and fallback: a mask the interventions refuse (resid) fails before the baseline', async () => {
    const resid = path.join(dir, 'resid.json');
    await writeMaskJson(resid, { ...handMask(identity), site: 'resid', width: identity.hidden });
    const pm = path.join(outDir(), 'p.json');
    const r = await runCli('steer', 'ppl-matrix', modelDir, '--masks', resid, '--langs', 'en', '--max-tokens', '40', '--out', pm, ...T);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${resid}: the mask's units are residual-stream (resid) units`);
    nothingWritten(pm);
    const fb = path.join(outDir(), 'fb.json');
    const f = await runCli('steer', 'fallback', modelDir, '--masks', resid, '--prompts', path.join(prompts, 'en.txt'), '--deactivate', 'en',
      '--max-new-tokens', '2', '--langid', 'eld', '--out', fb, ...T);
    expect(f.code).toBe(1);
    expect(f.stderr).toContain(`${resid}: the mask's units are residual-stream (resid) units`);
    nothingWritten(fb);
  });

  it('each measure hands every intervention to prepare before its first unit of work', async () => {
    const calls: string[] = [];
    const prepare = async (xs: unknown[]) => { calls.push(`prepare ${xs.join(' ')}`); };
    await computePplMatrix<string>({ rows: ['en', 'de'], columns: ['en'], intervention: (l) => `-${l}`, prepare,
      score: async (c, i) => { calls.push(`score ${c} ${i}`); return { totalNll: 1, tokens: 1 }; } });
    expect(calls).toEqual(['prepare -en -de', 'score en null', 'score en -en', 'score en -de']);

    calls.length = 0;
    const set = await readFacts(facts);
    await computeLss<string, { name: string }>({ facts: set, pairs: [{ base: 'en', target: 'de' }, { base: 'en', target: 'sw' }], settings: [{ name: 's1' }, { name: 's2' }],
      amplify: (t, s) => `${t}:${s.name}`, prepare, logLikelihood: async (p, i) => { calls.push(`ll ${i}`); return p.map(() => 0); } });
    expect(calls).toEqual(['prepare de:s1 sw:s1 de:s2 sw:s2', 'll null', 'll null', 'll de:s1', 'll sw:s1', 'll de:s2', 'll sw:s2']);

    calls.length = 0;
    const identifier: LanguageIdentifier = { name: 'fake', languages: new Set(['en', 'de', 'sw']), identify: async () => ({ language: 'en', code: 'en', reliable: true }) } as never;
    const ps = [{ text: 'a', language: 'en', file: 'en.txt', line: 1 }, { text: 'b', language: 'de', file: 'de.txt', line: 1 }];
    await computeForcing<string>({ prompts: ps, targets: ['sw', 'en'], identifier, intervention: (t, s) => `${t}<${s}`, prepare,
      generate: async (p, i) => { calls.push(`gen ${i}`); return p; } });
    expect(calls).toEqual(['prepare sw<en sw<de en<null en<de', 'gen null', 'gen sw<en', 'gen sw<de', 'gen en<null', 'gen en<de']);

    calls.length = 0;
    await computeFallback<string>({ prompts: ps, languages: ['en', 'de'], identifier, intervention: (ls) => ls.join('+'), prepare,
      generate: async (p, i) => { calls.push(`gen ${i}`); return p; } });
    expect(calls).toEqual(['prepare en en+de', 'gen null', 'gen en', 'gen en+de']);
  });
});

describe('2. a language given twice is refused (it would count twice in the means)', () => {
  it('lss --base / --targets, forcing --target (also two names of one mask language)', async () => {
    for (const [opt, value] of [['--base', 'en,de,en'], ['--targets', 'de,de']] as const) {
      const out = path.join(outDir(), 'lss.json');
      const r = await runCli('steer', 'lss', modelDir, '--masks', maskFile, '--facts', facts, '--settings', 'scale:2', opt, value, '--out', out, ...T);
      expect([r.code, r.stderr.trim()]).toEqual([1, `langneurons: error: lss: ${opt} names ${value.split(',').at(-1)} twice`]);
      nothingWritten(out);
    }
    const out = path.join(outDir(), 'f.json');
    const f = await runCli('steer', 'forcing', modelDir, '--masks', maskFile, '--prompts', prompts, '--target', 'sw,de,sw', '--amplify', 'scale:2', '--out', out, ...T);
    expect([f.code, f.stderr.trim()]).toEqual([1, 'langneurons: error: forcing: --target names sw twice']);
    const g = await runCli('steer', 'forcing', modelDir, '--masks', maskFile, '--prompts', prompts, '--target', 'sw,swh_Latn', '--amplify', 'scale:2', '--out', out, ...T);
    expect([g.code, g.stderr.trim()]).toEqual([1, `langneurons: error: forcing: --target names sw and swh_Latn, both the language sw of ${maskFile}`]);
    nothingWritten(out);
  });

  it('computeLss refuses a pair given twice, computeForcing a target given twice', async () => {
    const set = await readFacts(facts);
    await expect(computeLss({ facts: set, pairs: [{ base: 'en', target: 'de' }, { base: 'en', target: 'de' }], settings: [{ name: 'x' }],
      amplify: () => 0, logLikelihood: async (p) => p.map(() => 0) })).rejects.toThrow('lss: the pair en→de is given twice');
    await expect(computeForcing({ prompts: [{ text: 'a', language: 'en', file: 'en.txt', line: 1 }], targets: ['de', 'de'], identifier: {} as never,
      intervention: () => 0, generate: async (p) => p })).rejects.toThrow('forcing: the target de is given twice');
  });
});

describe('3. --deactivate-value beyond float32 is refused at option parsing', () => {
  it('ppl-matrix, fallback and forcing', async () => {
    const want = "langneurons: error: --deactivate-value must be a finite number within float32's range (at most 3.4028e+38 in magnitude), got '1e40'";
    const runs = [
      ['ppl-matrix', '--langs', 'en', '--max-tokens', '40'],
      ['fallback', '--prompts', path.join(prompts, 'en.txt'), '--deactivate', 'en', '--langid', 'eld'],
      ['forcing', '--prompts', prompts, '--target', 'sw', '--amplify', 'scale:2', '--langid', 'eld'],
    ];
    for (const [cmd, ...args] of runs) {
      const out = path.join(outDir(), 'r.json');
      const r = await runCli('steer', cmd!, modelDir, '--masks', maskFile, ...args, '--deactivate-value', '1e40', '--out', out, ...T);
      expect([cmd, r.code, r.stderr.trim()]).toEqual([cmd, 1, want]);
      nothingWritten(out);
    }
  });

  it('deactivation() and validateSpec name the overflow, not a value of the wrong kind', () => {
    expect(() => deactivation('m.json', 'en', 1e40)).toThrow(/value 1e\+40 overflows float32/);
    expect(() => validateSpec({ neurons: 'all', operation: { op: 'scale', factor: -1e39 } })).toThrow(/factor -1e\+39 overflows float32/);
    expect(deactivation('m.json', 'en', -1.5).specs[0]!.operation).toEqual({ op: 'set', value: -1.5 });
  });
});

describe('4. an empty --ids / --prompt-ids is refused with one line', () => {
  it('score --ids "" and generate --prompt-ids ""', async () => {
    const s = await runCli('score', modelDir, '--ids', '', ...T);
    expect([s.code, s.stderr.trim()]).toEqual([1, 'langneurons: error: --ids is empty: give token ids, e.g. "1,461,401"']);
    const g = await runCli('generate', modelDir, '--prompt-ids', ' , ', '--max-new-tokens', '1', ...T);
    expect([g.code, g.stderr.trim(), g.stdout]).toEqual([1, 'langneurons: error: --prompt-ids is empty: give token ids, e.g. "1,461,401"', '']);
    const hex = await runCli('score', modelDir, '--ids', '1,0x10', ...T);
    expect([hex.code, hex.stderr.trim()]).toEqual([1, "langneurons: error: --ids must be a comma-separated list of token ids, got '1,0x10'"]);
  });
});

describe('5. an --out naming a folder is refused: the measures write a file', () => {
  it('a path ending in "/" (ppl-matrix), and an existing folder (lss, forcing, fallback)', async () => {
    const missing = path.join(outDir(), 'r4') + '/';
    const r = await runCli('steer', 'ppl-matrix', modelDir, '--masks', maskFile, '--langs', 'en', '--out', missing, ...T);
    expect([r.code, r.stderr.trim()]).toEqual([1, `langneurons: error: --out ${missing}: must be a file path (such as result.json), not a folder`]);
    expect(existsSync(path.dirname(missing.slice(0, -1)))).toBe(false);
    const folder = outDir();
    await fsp.mkdir(folder);
    const runs = [
      ['lss', '--facts', facts, '--settings', 'scale:2'],
      ['forcing', '--prompts', prompts, '--target', 'sw', '--amplify', 'scale:2'],
      ['fallback', '--prompts', path.join(prompts, 'en.txt'), '--deactivate', 'en'],
    ];
    for (const [cmd, ...args] of runs) {
      const f = await runCli('steer', cmd!, modelDir, '--masks', maskFile, ...args, '--out', folder, ...T);
      expect([cmd, f.code, f.stderr.trim()]).toEqual([cmd, 1, `langneurons: error: --out ${folder}: must be a file path (such as result.json), not a folder`]);
    }
    expect(readdirSync(dir).filter((n) => n.startsWith(path.basename(folder)))).toEqual([path.basename(folder)]); // no <folder>.lock beside it
  });
});

describe('6. spec numbers in decimal only, an empty --stop, over-long prompts named by file and line', () => {
  it('intervention specs and amplification settings refuse 0x10, 0b1 and " 1"; decimal forms pass', () => {
    for (const [spec, bad] of [['add:0x10:neurons=all', '0x10'], ['scale:0b1:neurons=all', '0b1'], ['scale: 1:neurons=all', ' 1'], ['set:1e40:neurons=all', null]] as const) {
      expect(() => parseInterventionSpec(spec)).toThrow(bad === null ? /the value 1e40 overflows float32/ : `must be a finite number, got "${bad}" (written in decimal`);
    }
    expect(() => parseInterventionSpec('random:m.json:en:seed=0x10')).toThrow(/seed must be a finite number, got "0x10"/);
    for (const [text, x] of [['scale:.5', 0.5], ['scale:-1.5e-3', -1.5e-3], ['scale:+2', 2], ['scale:3.', 3]] as const)
      expect(parseInterventionSpec(`${text}:neurons=all`).operation).toEqual({ op: 'scale', factor: x });
    for (const s of ['scale:0x10', 'scale: 2', 'set:0b1', 'add:0x1', 'add-mean:0x2', 'diffmean: 1'])
      expect(() => parseSetting(s), s).toThrow('a finite number written in decimal');
    expect(() => parseSetting('add:1e40')).toThrow('1e40 overflows float32');
    expect(parseSetting('set:-1.5')).toMatchObject({ kind: 'set', value: -1.5 });
    expect(parseSetting('add:2*median')).toMatchObject({ kind: 'add', rowStat: 'median', factor: 2 });
    expect(parseSetting('add-mean:.5')).toMatchObject({ kind: 'add-mean', alpha: 0.5 });
  });

  it('generate --stop "" is refused; so are option numbers in other notations', async () => {
    const r = await runCli('generate', modelDir, '--prompt', 'Hello', '--stop', '', '--max-new-tokens', '1', ...T);
    expect([r.code, r.stderr.trim(), r.stdout]).toEqual([1, 'langneurons: error: --stop: a stop string must not be empty', '']);
    const t = await runCli('generate', modelDir, '--prompt', 'Hello', '--repetition-penalty', '0x2', '--max-new-tokens', '1', ...T);
    expect([t.code, t.stderr.trim()]).toEqual([1, "langneurons: error: --repetition-penalty must be a number > 0, got '0x2'"]);
  });

  it('steer forcing --prompts <folder> and generate --prompt-file name the file and line of a prompt longer than the context', async () => {
    const long = Array.from({ length: 200 }, (_, i) => `word${i}`).join(' ');
    const folder = await writeFiles(path.join(dir, 'long-prompts'), { 'en.txt': 'Once upon a time\n', 'de.txt': `Es war einmal\n\n${long}\n` });
    const out = path.join(outDir(), 'f.json');
    const f = await runCli('steer', 'forcing', shortDir, '--masks', shortMask, '--prompts', folder, '--target', 'sw', '--amplify', 'scale:2', '--out', out, ...T);
    expect(f.code).toBe(1);
    expect(f.stderr.trim()).toMatch(new RegExp(`^langneurons: error: ${path.join(folder, 'de.txt')}:3: the prompt has \\d+ tokens, longer than the model's context of 128$`));
    nothingWritten(out);
    const fb = await runCli('steer', 'fallback', shortDir, '--masks', shortMask, '--prompts', path.join(folder, 'de.txt'), '--deactivate', 'en', '--out', out, ...T);
    expect(fb.stderr.trim()).toMatch(new RegExp(`^langneurons: error: ${path.join(folder, 'de.txt')}:3: the prompt has \\d+ tokens`));
    const g = await runCli('generate', shortDir, '--prompt', 'Hi', '--prompt-file', path.join(folder, 'de.txt'), '--max-new-tokens', '1', ...T);
    expect([g.code, g.stdout]).toEqual([1, '']);
    expect(g.stderr.trim()).toMatch(new RegExp(`^langneurons: error: ${path.join(folder, 'de.txt')}:3: the prompt has \\d+ tokens, longer than the model's context of 128$`));
    const p = await runCli('generate', shortDir, '--prompt', 'Hi', '--prompt', long, '--max-new-tokens', '1', ...T);
    expect(p.stderr.trim()).toMatch(/^langneurons: error: --prompt 2: the prompt has \d+ tokens, longer than the model's context of 128$/);
  });
});
