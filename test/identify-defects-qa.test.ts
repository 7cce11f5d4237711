// Defects a QA pass found in identification and its files (one describe per item): Tang exports of masks that are not
// FFN neurons and of counts beyond int32, identify on statistics counted otherwise, LAPE of one language, token counts
// and histograms that were rounded or reached the engine, options a method ignored, languages given twice or none,
// stats import beyond the model's context, and messages that named the wrong thing. Every input is a small hand-made
// statistics or mask file (or a fixture's Tang file); no model runs.
import { existsSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';

import { parseHistogram, parseTokenCount } from '../src/cli/commands/profile.js';
import { LangneuronsError } from '../src/errors.js';
import { identifyActProb } from '../src/identify/act-prob.js';
import { identifyAveragePrecision } from '../src/identify/average-precision.js';
import type { LanguageStats } from '../src/identify/common.js';
import { identifyLape } from '../src/identify/lape.js';
import { MASK_FORMAT, writeMask, type NeuronMask } from '../src/identify/masks.js';
import { maskToTang, statsToTang } from '../src/identify/tang.js';
import { mergeStats, writeStats, type ActivationStats, type ModelIdentity, type Site, type StatsMeta, type TokenScope } from '../src/profile/stats.js';
import { loadSweep } from '../src/sweep/load.js';
import { identifySettings } from '../src/sweep/plan.js';
import { refusedCli as refused, runCli } from './helpers/cli.js';
import { fixturePath, makeTempDir, removeDir, repoRoot } from './helpers/fixtures.js';

const L = 2, W = 4;
const model: ModelIdentity = { name: 'toy', modelType: 'llama', layers: L, hidden: 4, intermediate: W, fingerprint: 'f'.repeat(64) };
const windows: TokenScope = { mode: 'windows', maxLen: 64, bos: false, countPadding: false, tokenBudget: 0 };

/**
 * One language's statistics at act: 10 tokens in 2 windows, over_zero differing per language so LAPE has something to
 * rank, two sequence means and a 2-bin histogram per unit (enough for every method).
 */
function stats(language: string, meta: Partial<StatsMeta> = {}, o: { tokens?: number; overZero?: number[] } = {}): ActivationStats {
  const n = L * W, seed = language.charCodeAt(0) + language.charCodeAt(1);
  const tokens = o.tokens ?? 10;
  const overZero = Float64Array.from(o.overZero ?? Array.from({ length: n }, (_, i) => (seed * (i + 3)) % 11 % (tokens + 1)));
  return {
    meta: { format: 'langneurons-stats/1', model: { ...model }, language, layers: [0, 1], scope: { ...windows },
      corpus: { files: [`${language}.txt`], fingerprint: `c-${language}` }, toolVersion: 'test', shards: 1, compute: 'f32', ...meta },
    tokens, sequences: 2,
    sites: new Map([['act', {
      site: 'act', width: W, overZero, sum: new Float64Array(n), sumSq: new Float64Array(n), absSum: new Float64Array(n),
      histogram: { edges: Float64Array.of(-1, 0, 1), counts: Float64Array.from({ length: n * 2 }, (_, i) => (i % 2 ? overZero[i >> 1]! : tokens - overZero[i >> 1]!)) },
      seqMeans: Float32Array.from({ length: 2 * n }, (_, i) => Math.sin(seed * (i + 1))),
    }]]),
  };
}

function mask(site: Site, width: number, languages: Record<string, number[][]>): NeuronMask {
  return { format: MASK_FORMAT, method: 'average-precision', parameters: {}, site, model: { ...model }, sources: [], layers: L, width, languages };
}

let tmp: string;
let k = 0;
beforeAll(async () => { tmp = await makeTempDir('ln-identify-qa-'); });
afterAll(async () => { await removeDir(tmp); });

/** A fresh folder holding the given statistics as <lang>.safetensors. */
async function statsDir(...all: ActivationStats[]): Promise<string> {
  const dir = path.join(tmp, `stats-${k++}`);
  await fsp.mkdir(dir);
  for (const s of all) await writeStats(path.join(dir, `${s.meta.language}.safetensors`), s);
  return dir;
}
const fresh = (name: string) => path.join(tmp, `${k++}-${name}`);

function refusal(fn: () => unknown): LangneuronsError {
  try { fn(); } catch (e) { expect(e).toBeInstanceOf(LangneuronsError); return e as LangneuronsError; }
  throw new Error('expected a LangneuronsError');
}

describe('1. masks export --format tang: FFN-neuron masks only', () => {
  it('refuses a mask at a projection or the residual stream, naming the file and the site; an FFN site exports', async () => {
    for (const [site, width] of [['q', 8], ['down', 4], ['resid', 4]] as const) {
      const file = fresh(`${site}.json`), out = fresh(`${site}.pt`);
      await writeMask(file, mask(site, width, { en: [[0, 1], [2]] }));
      const line = await refused('masks', 'export', file, '--format', 'tang', '--out', out);
      expect(line).toContain(file);
      expect(line).toContain(`site ${site}`);
      expect(line).toMatch(/only masks at act, gate, h, up/);
      expect(existsSync(out)).toBe(false);
    }
    // `up` has the intermediate width and names the same neurons as act: written as before.
    const up = fresh('up.json'), out = fresh('up.pt');
    await writeMask(up, mask('up', W, { en: [[0, 1], [2]] }));
    const ok = await runCli('masks', 'export', up, '--format', 'tang', '--out', out);
    expect(ok.code, ok.stderr).toBe(0);
    expect(existsSync(out)).toBe(true);
    // The library refuses it too.
    expect(refusal(() => maskToTang(mask('k', 8, { en: [[0], []] }), ['en'], 'k.json')).message).toMatch(/^k\.json: a mask at site k/);
  });
});

describe('2. stats export --format tang: over_zero within int32', () => {
  it('refuses a count above 2^31 − 1 with the file, the layer and neuron and the count; nothing is written', async () => {
    const big = 3_000_000_000;
    const oz = [0, 1, 2, 3, 4, 2 ** 31, 6, 7]; // layer 1, neuron 1
    const file = fresh('big.safetensors'), out = fresh('big.pt');
    await writeStats(file, stats('en', {}, { tokens: big, overZero: oz }));
    const line = await refused('stats', 'export', file, '--format', 'tang', '--out', out);
    expect(line).toContain(file);
    expect(line).toMatch(/over_zero of layer 1, neuron 1 is 2147483648, more than Tang's int32 counts hold \(at most 2147483647\)/);
    expect(existsSync(out)).toBe(false);
    // 2^31 − 1 itself fits, and is written as that count (not wrapped).
    const value = statsToTang(stats('en', {}, { tokens: big, overZero: oz.map((x) => Math.min(x, 2 ** 31 - 1)) })) as { over_zero: { data: Int32Array } };
    expect(value.over_zero.data[5]).toBe(2 ** 31 - 1);
  });
});

describe('3. identify refuses statistics that stats merge would not compare', () => {
  it('different compute modes or token scopes: refused naming both files and what differs; an unrecorded mode or another budget is not', async () => {
    const dir = await statsDir(stats('en'), stats('de', { compute: 'bf16' }));
    let line = await refused('identify', dir, '--out', fresh('m.json'));
    // The folder is read in name order: en is compared with de, the first; the values are in the files' order.
    expect(line).toContain(`${path.join(dir, 'en.safetensors')} vs ${path.join(dir, 'de.safetensors')}: different compute modes (f32 vs bf16)`);

    const sentences = await statsDir(stats('en'), stats('sw', { scope: { ...windows, mode: 'sentences', bos: true } }));
    line = await refused('identify', sentences, '--method', 'raw-activated', '--out', fresh('m.json'));
    expect(line).toMatch(/sw\.safetensors vs .*en\.safetensors: different token scopes \(mode sentences vs windows, bos true vs false\)/);

    // Tang's whole windows (profile --drop-partial) and windows with the last partial one are counted otherwise
    const whole = await statsDir(stats('en'), stats('it', { scope: { ...windows, partialWindow: 'drop' } }));
    expect(await refused('identify', whole, '--out', fresh('m.json'))).toMatch(/different token scopes \(partialWindow (drop vs keep|keep vs drop)\)/);

    const kojima = await statsDir(stats('en'), stats('fr', { scope: { ...windows, maxLen: 32 } }));
    expect(await refused('identify', kojima, '--method', 'act-prob-zero', '--out', fresh('m.json'))).toMatch(/different token scopes \(maxLen 32 vs 64\)/);

    // A file that does not record its compute mode (a Tang import, an older file), and a language profiled with
    // another --tokens budget: compared as before.
    const { compute: _none, ...unrecorded } = stats('ru').meta;
    const ok = await statsDir(stats('en'), { ...stats('ru'), meta: unrecorded }, stats('mt', { scope: { ...windows, tokenBudget: 5000 } }));
    const r = await runCli('identify', ok, '--top-rate', '0.5', '--filter-rate', '0.3', '--out', fresh('m.json'));
    expect(r.code, r.stderr).toBe(0);
  });

  it('stats merge compares scopes field by field: the same scope spelled with a default written out merges; another budget does not', () => {
    const a = stats('en'), b = stats('en', { corpus: { files: ['en2.txt'], fingerprint: 'c-en2' }, scope: { tokenBudget: 0, countPadding: false, bos: false, maxLen: 64, mode: 'windows', countBos: false } },
      { overZero: [1, 1, 1, 1, 1, 1, 1, 1] });
    expect(mergeStats(a, b).tokens).toBe(20);
    const c = stats('en', { corpus: { files: ['en3.txt'], fingerprint: 'c-en3' }, scope: { ...windows, tokenBudget: 100 } });
    expect(() => mergeStats(a, c)).toThrow(/different token scopes \(tokenBudget 0 vs 100\)/);
  });
});

describe('4. methods that compare languages need two', () => {
  const one: LanguageStats[] = [{ file: '/s/en.safetensors', stats: stats('en') }];
  it('LAPE and the pooled-histogram percentile of one language are refused like ap; the per-language methods are not', async () => {
    expect(refusal(() => identifyLape(one)).message).toMatch(/^LAPE needs at least two languages/);
    expect(refusal(() => identifyAveragePrecision(one)).message).toMatch(/needs at least two languages/);
    expect(refusal(() => identifyActProb(one, 'act-prob-90p', { percentileOf: 'pooled-histogram' })).message).toMatch(/needs at least two languages/);
    expect(identifyActProb(one, 'act-prob-90p', { percentileOf: 'layer-histogram', topRate: 0.25 }).languages.en!.flat()).toHaveLength(2);
    expect(identifyActProb(one, 'act-prob-zero', { topRate: 0.25 }).languages.en!.flat()).toHaveLength(2);

    const dir = await statsDir(stats('en'), stats('de'));
    const out = fresh('one.json');
    expect(await refused('identify', dir, '--langs', 'en', '--out', out)).toMatch(/^langneurons: error: LAPE needs at least two languages/);
    expect(await refused('identify', dir, '--langs', 'de', '--method', 'act-prob-95p', '--percentile-of', 'pooled-histogram', '--out', out))
      .toMatch(/act-prob-95p with --percentile-of pooled-histogram needs at least two languages/);
    expect(existsSync(out)).toBe(false);
  });
});

describe('5. --tokens is a whole number of tokens', () => {
  it('refuses a fraction without a suffix (0.4 was rounded to 0, the whole corpus) and keeps 1.5M', () => {
    const parse = parseTokenCount('--tokens');
    expect([parse('0'), parse('500000'), parse('100k'), parse('1.5M'), parse('2M'), parse('1.1k'), parse('0.5G')]).toEqual([0, 500000, 100000, 1500000, 2000000, 1100, 500000000]);
    for (const bad of ['0.4', '2.5', '1.0001k', '-3', '1e6', 'lots'])
      expect(() => parse(bad)).toThrow(new RegExp(`^--tokens must be a token count, a whole number such as .*, got '${bad.replace('.', '\\.')}'$`));
  });
});

describe('6. identify refuses options its method does not use', () => {
  it('names the option and the methods that use it; --n below 2 is refused; nothing is written', async () => {
    const dir = await statsDir(stats('en'), stats('de'));
    const out = fresh('m.json');
    const cases: [string[], RegExp][] = [
      [['--method', 'act-prob-zero', '--keep-ties', '--filter-rate', '0.5', '--quantile', 'interpolated'], /--filter-rate is not used by --method act-prob-zero: it applies to lape$/],
      [['--method', 'act-prob-zero', '--no-keep-ties'], /--no-keep-ties is not used by --method act-prob-zero: it applies to lape$/],
      [['--method', 'raw-activated', '--top-rate', '0.5'], /--top-rate is not used by --method raw-activated: it applies to lape, act-prob-75p, act-prob-90p, act-prob-95p, act-prob-zero, act-prob-mean-abs$/],
      [['--method', 'lape', '--n', '5', '--percentile-of', 'layer-histogram'], /--percentile-of is not used by --method lape: it applies to act-prob-75p, act-prob-90p, act-prob-95p$/],
      [['--method', 'lape', '--n', '5'], /--n is not used by --method lape: it applies to ap$/],
      [['--method', 'act-prob-mean-abs', '--part', 'top'], /--part is not used by --method act-prob-mean-abs: it applies to ap$/],
      [['--method', 'ap', '--preset', 'tang'], /--preset is not used by --method ap: it applies to lape$/],
      [['--method', 'ap', '--n', '1'], /--n must be an integer in \[2, ∞\], got '1'/],
      [['--method', 'ap', '--sites', 'act', '--site', 'act'], /--site and --sites: give one site/],
    ];
    for (const [args, message] of cases) expect(await refused('identify', dir, ...args, '--out', out)).toMatch(message);
    expect(existsSync(out)).toBe(false);
    expect(refusal(() => identifyAveragePrecision([{ file: 'en', stats: stats('en') }, { file: 'de', stats: stats('de') }], { n: 1 })).message).toMatch(/option n must be an integer of at least 2/);
    // What each method reads is still taken (defaults of the others do not count as given).
    for (const args of [['--method', 'ap', '--n', '2', '--part', 'top'], ['--method', 'act-prob-zero', '--top-rate', '0.25'], ['--method', 'raw-activated'],
      ['--method', 'act-prob-90p', '--percentile-of', 'layer-histogram'], ['--preset', 'mondal', '--filter-rate', '0.3', '--top-rate', '0.5']]) {
      const r = await runCli('identify', dir, ...args, '--out', fresh('ok.json'));
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
    }
  });

  it('a sweep gives --percentile-of only to the percentile variants, and refuses a topRate or n its identify step would refuse', async () => {
    const args = (method: string) => identifySettings([{ method }])[0]!.args;
    expect(args('act-prob-zero')).not.toContain('--percentile-of');
    expect(args('act-prob-mean-abs')).not.toContain('--percentile-of');
    expect(args('act-prob-90p')).toEqual(expect.arrayContaining(['--percentile-of', 'pooled-histogram']));
    const sweep = async (identify: object[]) => {
      const doc = parseYaml(await fsp.readFile(path.join(repoRoot, 'examples', 'sweep-demo.yaml'), 'utf8')) as Record<string, Record<string, unknown>>;
      doc['models'] = path.join(repoRoot, 'models', 'udhr20') as unknown as Record<string, unknown>; // absolute: the file lies elsewhere
      doc['profile']!['seqMeans'] = true;
      doc['identify'] = identify as unknown as Record<string, unknown>;
      const file = fresh('sweep.yaml');
      await fsp.writeFile(file, stringifyYaml(doc));
      try { loadSweep(file); return null; } catch (e) { return (e as Error).message; }
    };
    expect(await sweep([{ method: 'raw-activated', topRate: 0.1 }])).toMatch(/identify\[0\]\.topRate: topRate applies to methods lape and act-prob-\*; method is 'raw-activated'/);
    expect(await sweep([{ method: 'ap', n: 1 }])).toMatch(/identify\[0\]\.n/);
    expect(await sweep([{ method: 'ap', n: 2 }])).toBeNull();
  });
});

describe('7. --histogram with bounds that are not finite', () => {
  it('is the usual --histogram line, not the engine\'s', async () => {
    for (const bad of ['-0.5:1e999:4', '-1e308:1e308:4', '1:1.0000000000000002:4'])
      expect(() => parseHistogram(bad)).toThrow(new RegExp(`^--histogram must be lo:hi:bins with finite lo < hi, 1\\.\\.65536 bins and distinct edges .*, got '${bad.replace(/[.]/g, '\\.')}'$`));
    expect(parseHistogram('-0.5:2:4')).toEqual([-0.5, 0.125, 0.75, 1.375, 2]);
    const out = fresh('hist');
    expect(await refused('profile', fixturePath('stories260k'), '--corpus', 'udhr:train', '--langs', 'en', '--histogram', '-0.5:1e999:4', '--out', out))
      .toMatch(/^langneurons: error: --histogram must be lo:hi:bins/);
    expect(existsSync(out)).toBe(false);
  });
});

describe('8. profile --langs with a language twice', () => {
  it('is refused before anything is written', async () => {
    const out = fresh('twice');
    expect(await refused('profile', fixturePath('stories260k'), '--corpus', 'udhr:train', '--langs', 'en,de,en', '--max-len', '64', '--out', out))
      .toBe("langneurons: error: --langs: 'en' is listed twice");
    expect(existsSync(out)).toBe(false);
  });
});

describe('10. masks export --langs', () => {
  it('refuses a language twice, an empty list and a language the mask lacks; nothing is written', async () => {
    const file = fresh('act.json'), out = fresh('act.pt');
    await writeMask(file, mask('act', W, { en: [[0, 1], [2]], sw: [[3], []] }));
    expect(await refused('masks', 'export', file, '--format', 'tang', '--langs', 'sw,sw', '--out', out)).toMatch(/--langs: sw is given twice$/);
    expect(await refused('masks', 'export', file, '--format', 'tang', '--langs', '', '--out', out)).toMatch(/--langs names no language/);
    expect(await refused('masks', 'export', file, '--format', 'tang', '--langs', 'sw,de', '--out', out)).toMatch(new RegExp(`--langs: ${file.replace(/[.]/g, '\\.')} has no language "de" \\(it has en, sw\\)`));
    expect(existsSync(out)).toBe(false);
    const ok = await runCli('masks', 'export', file, '--format', 'tang', '--langs', 'sw', '--out', out, '--json');
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout).languages).toEqual(['sw']);
  });
});

describe("11. stats import --max-len beyond the model's context", () => {
  it('is refused as profile refuses it', async () => {
    const out = fresh('imported.safetensors');
    expect(await refused('stats', 'import', path.join(repoRoot, 'test/fixtures-tang/counts.pt'), '--lang', 'en', '--model', fixturePath('stories260k'), '--max-len', '100000', '--out', out))
      .toMatch(/--max-len 100000: windows of 100000 tokens exceed the model's context of \d+: give a --max-len of at most \d+$/);
    expect(existsSync(out)).toBe(false);
  });
});

describe('12. messages that named the wrong thing', () => {
  it('identify --langs with a name twice says so (not "merge the shards"); the same file twice is said to be one file', async () => {
    const dir = await statsDir(stats('en'), stats('de'));
    expect(await refused('identify', dir, '--langs', 'en,en,de', '--out', fresh('m.json'))).toBe('langneurons: error: --langs: en is given twice');
    expect(await refused('identify', dir, '--langs', '', '--out', fresh('m.json'))).toMatch(/--langs names no language/);
    const en = path.join(dir, 'en.safetensors');
    expect(await refused('identify', en, en, '--out', fresh('m.json'))).toBe(`langneurons: error: ${en}: language "en" is given twice: this file, twice`);
  });

  it('stats show on a .safetensors mask points at masks show', async () => {
    const file = fresh('mask.safetensors');
    await writeMask(file, mask('act', W, { en: [[0], [1]] }));
    expect(await refused('stats', 'show', file)).toBe(`langneurons: error: ${file}: a langneurons mask, not a statistics file: show it with \`langneurons masks show ${file}\``);
  });
});
