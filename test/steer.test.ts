// The measures of steering with injected callbacks: the perplexity matrix with a fake scorer (and its CSV / SVG
// outputs), LSS on a hand-made fact set with hand-computed values, amplification settings, fact and prompt files.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { parseInterventionSpec } from '../src/intervene/spec.js';
import {
  amplification, compose, deactivation, computeLss, maskInterventionSite, computePplMatrix, diagonalDominance, heatmapSvg, lssPrompt, parseSetting, parseSettings, pplMatrixCsv,
  pplMatrixSvg, readFacts, readPrompts, writePplMatrix, type ContinuationPair, type NllSum,
} from '../src/steer/index.js';
import { jsonl, writeFiles, writeParquet } from './helpers/corpus-fixtures.js';
import { makeTempDir, removeDir } from './helpers/fixtures.js';

let dir: string;
beforeAll(async () => { dir = await makeTempDir('ln-steer-'); });
afterAll(async () => { await removeDir(dir); });

// Fake scorer: text j has `tokens[j]` tokens and baseline mean NLL base[j]; deactivating language i adds
// effect[i][j] nats per token.
const LANGS = ['en', 'de', 'sw'];
const base: Record<string, number> = { en: 2, de: 2.5, sw: 3 };
const tokens: Record<string, number> = { en: 100, de: 80, sw: 50 };
const effect: Record<string, Record<string, number>> = {
  en: { en: 0.9, de: 0.2, sw: 0.1 },
  de: { en: 0.3, de: 1.2, sw: 0.1 },
  // sw's own deactivation raises en more than sw: a miss in the row view, and en's column is won by en
  sw: { en: 0.5, de: 0.1, sw: 0.4 },
};
const fakeScore = async (text: string, intervention: string | null): Promise<NllSum> => {
  const perToken = base[text]! + (intervention === null ? 0 : effect[intervention.replace('off:', '')]![text]!);
  return { totalNll: perToken * tokens[text]!, tokens: tokens[text]! };
};

describe('perplexity matrix', () => {
  it('assembles NLL, perplexity and the change against no intervention', async () => {
    const calls: string[] = [];
    const m = await computePplMatrix<string>({
      rows: LANGS, columns: LANGS, intervention: (l) => `off:${l}`,
      score: (t, i) => { calls.push(`${i ?? 'none'}/${t}`); return fakeScore(t, i); },
    });
    expect(calls.slice(0, 3)).toEqual(['none/en', 'none/de', 'none/sw']);
    expect(calls).toHaveLength(12);
    expect(m.baseline.nll).toEqual([2, 2.5, 3]);
    expect(m.baseline.tokens).toEqual([100, 80, 50]);
    expect(m.baseline.perplexity[0]).toBeCloseTo(Math.exp(2), 12);
    expect(m.nll[1]![1]).toBeCloseTo(3.7, 12); // de deactivated on de: 2.5 + 1.2
    expect(m.deltaNll[1]![1]).toBeCloseTo(1.2, 12);
    expect(m.deltaPerplexity[2]![0]).toBeCloseTo(Math.exp(2.5) - Math.exp(2), 9);
    expect(m.perplexity[0]![2]).toBeCloseTo(Math.exp(3.1), 9);
    // column view: en (0.9 > 0.3, 0.5), de (1.2 > 0.2, 0.1), sw (0.4 > 0.1, 0.1): all hit
    expect(m.diagonal.share).toBe(1);
    // row view: sw's deactivation hurts en (0.5) more than sw (0.4)
    expect(m.diagonal.rowHits).toEqual(['en', 'de']);
    expect(m.diagonal.rowShare).toBeCloseTo(2 / 3, 12);
  });

  it('reports the languages whose text another deactivation hurts more', () => {
    const d = diagonalDominance({ rows: ['en', 'de', 'fr'], columns: ['en', 'de', 'zh'], deltaNll: [[0.1, 0.2, 0.0], [0.5, 0.9, 0.0], [0.05, 0.1, 0.3]] });
    expect(d.languages).toEqual(['en', 'de']); // fr has no text, zh no neurons
    expect(d.hits).toEqual(['de']);
    expect(d.misses).toEqual([{ language: 'en', strongest: 'de' }]);
    expect(d.share).toBe(0.5);
    // a tie is a miss
    expect(diagonalDominance({ rows: ['a', 'b'], columns: ['a'], deltaNll: [[1], [1]] }).share).toBe(0);
  });

  it('refuses a scorer that scores different tokens under intervention, and empty inputs', async () => {
    await expect(computePplMatrix<string>({
      rows: ['en'], columns: ['en'], intervention: (l) => l,
      score: async (_t, i) => ({ totalNll: 10, tokens: i === null ? 5 : 6 }),
    })).rejects.toThrow(/scored 6 tokens with "en" deactivated but 5 without/);
    await expect(computePplMatrix({ rows: [], columns: ['en'], intervention: () => 0, score: fakeScore as never })).rejects.toThrow(/no languages/);
    await expect(computePplMatrix({ rows: ['en'], columns: ['en'], intervention: () => 0, score: async () => ({ totalNll: 0, tokens: 0 }) })).rejects.toThrow(/0 tokens/);
  });

  it('writes JSON, CSV and a well-formed SVG heatmap with one cell per matrix entry', async () => {
    const rows = ['en', 'de', 'sw', 'x<&>"y'];
    const columns = ['en', 'de', 'sw'];
    const m = await computePplMatrix<string>({ rows, columns, intervention: (l) => `off:${l}`, score: (t, i) => fakeScore(t, i && i.includes('<') ? null : i) });
    const files = await writePplMatrix(path.join(dir, 'ppl.json'), m, { model: 'fake' });
    expect(files).toEqual({ json: path.join(dir, 'ppl.json'), csv: path.join(dir, 'ppl.csv'), svg: path.join(dir, 'ppl.svg') });
    const json = JSON.parse(await fsp.readFile(files.json, 'utf8'));
    expect(json.format).toBe('langneurons-ppl-matrix/1');
    expect(json.model).toBe('fake');
    expect(json.deltaNll).toEqual(m.deltaNll);

    const csv = (await fsp.readFile(files.csv, 'utf8')).trim().split('\n');
    expect(csv[0]).toBe('deactivated,text,tokens,nll,perplexity,delta_nll,delta_perplexity');
    expect(csv).toHaveLength(1 + columns.length * (rows.length + 1));
    expect(csv[1]).toBe(`none,en,100,2,${Math.exp(2)},0,0`);
    expect(csv.some((l) => l.startsWith('"x<&>""y",en,'))).toBe(true);
    expect(pplMatrixCsv(m)).toBe(await fsp.readFile(files.csv, 'utf8'));

    const svg = await fsp.readFile(files.svg, 'utf8');
    expect(svg).toBe(pplMatrixSvg(m));
    expect(XMLValidator.validate(svg)).toBe(true);
    const doc = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@' }).parse(svg);
    const cells: { '@class': string; '@data-row': string; '@data-column': string; '@fill': string }[] = [];
    const walk = (node: unknown) => {
      if (Array.isArray(node)) return node.forEach(walk);
      if (typeof node !== 'object' || node === null) return;
      for (const [k, v] of Object.entries(node)) {
        if (k === 'rect') for (const r of [v].flat() as typeof cells) if (r['@class'] === 'cell') cells.push(r);
        walk(v);
      }
    };
    walk(doc.svg);
    expect(cells).toHaveLength(rows.length * columns.length);
    expect(new Set(cells.map((c) => `${c['@data-row']}|${c['@data-column']}`)).size).toBe(12);
    expect(cells.some((c) => c['@data-row'] === 'x<&>"y')).toBe(true);
    // the largest change (de on de, +1.2) is the darkest red; zero change is white
    const fill = (r: string, c: string) => cells.find((x) => x['@data-row'] === r && x['@data-column'] === c)!['@fill'];
    expect(fill('de', 'de')).toBe('#b2182b');
    expect(fill('x<&>"y', 'en')).toBe('#ffffff');
    expect(svg).toContain('deactivated language');
    expect(svg).toContain('baseline perplexity');
  });

  it('draws negative values blue and non-finite ones grey', () => {
    const svg = heatmapSvg({ title: 't', rowLabels: ['a'], columnLabels: ['x', 'y', 'z'], values: [[-2, 1, NaN]] });
    expect(XMLValidator.validate(svg)).toBe(true);
    expect(svg).toContain('fill="#2166ac"');
    expect(svg).toContain('fill="#cccccc"');
  });
});

describe('amplification settings', () => {
  it('parses the settings Rahmanisa compared', () => {
    expect(parseSettings('p_max,p_median,scale:2,scale:5,set:max,add:max,add:2*median,set:p90,set:-1.5')).toEqual([
      { name: 'p_max', kind: 'neuron-stat', stat: 'p_max' },
      { name: 'p_median', kind: 'neuron-stat', stat: 'p_median' },
      { name: 'scale:2', kind: 'scale', factor: 2 },
      { name: 'scale:5', kind: 'scale', factor: 5 },
      { name: 'set:max', kind: 'set', rowStat: 'max', factor: 1 },
      { name: 'add:max', kind: 'add', rowStat: 'max', factor: 1 },
      { name: 'add:2*median', kind: 'add', rowStat: 'median', factor: 2 },
      { name: 'set:p90', kind: 'set', rowStat: 'p90', factor: 1 },
      { name: 'set:-1.5', kind: 'set', value: -1.5 },
    ]);
  });
  it('maps each setting to the intervention engine\'s canonical spec', () => {
    const amp = (name: string) => amplification('m.json', 'sw', parseSetting(name), 'stats/').specs[0]!;
    expect(amp('p_max')).toMatchObject({ neurons: { mask: 'm.json', languages: ['sw'] }, operation: { op: 'set', value: { statistic: 'p_max', language: 'sw' } }, stats: 'stats/' });
    expect(amp('p_median').operation).toEqual({ op: 'set', value: { statistic: 'p_median', language: 'sw' } });
    expect(amp('scale:5').operation).toEqual({ op: 'scale', factor: 5 });
    expect(amp('set:max').operation).toEqual({ op: 'testtime', combine: '=', statistic: 'max', factor: 1 });
    expect(amp('add:max').operation).toEqual({ op: 'testtime', combine: '+', statistic: 'max', factor: 1 });
    expect(amp('mul:2*p90').operation).toEqual({ op: 'testtime', combine: '*', statistic: 'p90', factor: 2 });
    expect(amp('set:-1.5').operation).toEqual({ op: 'set', value: -1.5 });
    expect(amp('mul:3').operation).toEqual({ op: 'scale', factor: 3 });
    expect(amp('add-mean:2').operation).toEqual({ op: 'add', alpha: 2, value: { statistic: 'mean', language: 'sw' } });
    expect(amp('diffmean').operation).toEqual({ op: 'diffmean', language: 'sw', alpha: 1 });
    // deactivation is the engine's `deactivate:<mask>:<lang>`
    const d = deactivation('m.json', 'en').specs[0]!;
    const parsed = parseInterventionSpec('deactivate:m.json:en');
    expect(d.neurons).toEqual(parsed.neurons);
    expect(d.operation).toEqual(parsed.operation);
    expect(compose(deactivation('m.json', 'en'), amplification('m.json', 'sw', parseSetting('scale:2'))).specs.map((x) => x.operation.op)).toEqual(['set', 'scale']);
    expect(() => amplification('m.json', 'sw', parseSetting('p_max'))).toThrow(/needs the profiling statistics.*--stats/);
  });

  it("intervenes on a projection's mask (Kojima) at that projection, on FFN masks at the default site", () => {
    for (const site of ['act', 'gate', 'h', 'up', 'resid'] as const) expect(maskInterventionSite({ site }), site).toBeUndefined();
    for (const site of ['q', 'k', 'v', 'o', 'down'] as const) expect(maskInterventionSite({ site }), site).toBe(site);
    expect(deactivation('m.json', 'en').specs[0]!.site).toBeUndefined(); // act, as before
    const d = deactivation('m.json', 'en', 0, 'q').specs[0]!;
    const parsed = parseInterventionSpec('deactivate:m.json:en:site=q');
    expect([d.neurons, d.operation, d.site, d.source]).toEqual([parsed.neurons, parsed.operation, 'q', 'deactivate:m.json:en:site=q']);
    expect(deactivation('m.json', 'en', -1, 'o').specs[0]!.source).toBe('set:-1:mask=m.json:lang=en:site=o');
    expect(amplification('m.json', 'sw', parseSetting('p_max'), 'stats/', 'v').specs[0]).toMatchObject({ site: 'v', source: 'amplify sw with p_max at site v' });
    // Rahmanisa's test-time settings read the FFN row: refused at a projection
    expect(() => amplification('m.json', 'sw', parseSetting('set:max'), undefined, 'q')).toThrow(/testtime works on act, gate, h only, not at site q/);
  });

  it('refuses unknown, malformed and repeated settings', () => {
    expect(() => parseSetting('boost')).toThrow(/"boost": unknown setting/);
    expect(() => parseSetting('scale:max')).toThrow(/scale needs a finite number/);
    expect(() => parseSetting('set:p200')).toThrow(/neither a number nor a row statistic/);
    expect(() => parseSettings('p_max,p_max')).toThrow(/given twice/);
    expect(() => parseSettings(' , ')).toThrow(/at least one/);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// LSS on a hand-made fact set (base en, target de)
//
// template "[X] speaks [Y]." → prompt "<sub_en> speaks." ; ℓ(o) is looked up in the table below.
//   fact            ℓ0(de)  ℓ0(en)  D0 = ℓ0(de) − ℓ0(en)
//   Goethe  (F1)      −5      −1      −4
//   Dante   (F2)      −6      −2      −4
//   Cervantes (F3)    −3      −3       0
//   Kafka (F4): obj_de is null → skipped (not in the denominator)
// scale:2 (target de amplified ×2):
//   F1: ℓ1(de) −2, ℓ1(en) −1.5 → D1 = −0.5; D1 − D0 = +3.5 > 0  ✓
//   F2: ℓ1(de) −7, ℓ1(en) −2   → D1 = −5;   D1 − D0 = −1        ✗
//   F3: ℓ1(de) −3, ℓ1(en) −3   → D1 = 0;    D1 − D0 = 0 (not > 0) ✗   LSS = 1/3, mean shift (3.5 − 1 + 0)/3 = 0.8333…
// p_max:
//   F1: −1, −2 → D1 = 1;  +5 ✓     F2: −3, −2 → D1 = −1; +3 ✓     F3: −2, −3 → D1 = 1; +1 ✓   LSS = 3/3 = 1, mean shift 3
// best = p_max (1 > 1/3).
const FACT_ROWS = [
  { template: '[X] speaks [Y].', sub_en: 'Goethe', obj_en: 'German', sub_de: 'Goethe', obj_de: 'Deutsch' },
  { template: '[X] speaks [Y].', sub_en: 'Dante', obj_en: 'Italian', sub_de: 'Dante', obj_de: 'Italienisch' },
  { template: '[X] speaks [Y].', sub_en: 'Cervantes', obj_en: 'Spanish', sub_de: 'Cervantes', obj_de: 'Spanisch' },
  { template: '[X] speaks [Y].', sub_en: 'Kafka', obj_en: 'German', sub_de: 'Kafka', obj_de: null },
];
const LL: Record<string, Record<string, number>> = {
  none: {
    'Goethe speaks.| Deutsch': -5, 'Goethe speaks.| German': -1, 'Dante speaks.| Italienisch': -6, 'Dante speaks.| Italian': -2,
    'Cervantes speaks.| Spanisch': -3, 'Cervantes speaks.| Spanish': -3,
  },
  'de:scale:2': {
    'Goethe speaks.| Deutsch': -2, 'Goethe speaks.| German': -1.5, 'Dante speaks.| Italienisch': -7, 'Dante speaks.| Italian': -2,
    'Cervantes speaks.| Spanisch': -3, 'Cervantes speaks.| Spanish': -3,
  },
  'de:p_max': {
    'Goethe speaks.| Deutsch': -1, 'Goethe speaks.| German': -2, 'Dante speaks.| Italienisch': -3, 'Dante speaks.| Italian': -2,
    'Cervantes speaks.| Spanisch': -2, 'Cervantes speaks.| Spanish': -3,
  },
};

describe('Language Steering Shift', () => {
  it('builds the prompt as METHODS.md defines it', () => {
    expect(lssPrompt('[X] speaks [Y].', 'Goethe')).toBe('Goethe speaks.');
    expect(lssPrompt('The capital of [X] is [Y]', 'France')).toBe('The capital of France is');
    expect(lssPrompt('[Y] is spoken by [X]', 'Dante')).toBe('is spoken by Dante');
    expect(lssPrompt('[X] is [Y]', 'a $& b')).toBe('a $& b is'); // no replacement patterns
    expect(() => lssPrompt('no slots [Y]', 'a', 'f.jsonl, row 3')).toThrow(/f\.jsonl, row 3: the template has no \[X\]/);
  });

  it('computes LSS per setting on hand-worked facts and names the best setting', async () => {
    const folder = await writeFiles(path.join(dir, 'facts-hand'), { 'P37.jsonl': jsonl(FACT_ROWS) });
    const facts = await readFacts(folder);
    expect(facts.languages).toEqual(['de', 'en']);
    const seen: { n: number; intervention: string | null }[] = [];
    const logLikelihood = async (pairs: ContinuationPair[], intervention: string | null) => {
      seen.push({ n: pairs.length, intervention });
      return pairs.map((p) => {
        const v = LL[intervention ?? 'none']![`${p.context}|${p.continuation}`];
        if (v === undefined) throw new Error(`unexpected pair ${p.context}|${p.continuation}`);
        return v;
      });
    };
    const r = await computeLss({
      facts, pairs: [{ base: 'en', target: 'de' }], settings: parseSettings('scale:2,p_max'), details: true,
      amplify: (t, s) => `${t}:${s.name}`, logLikelihood,
    });
    expect(seen).toEqual([{ n: 6, intervention: null }, { n: 6, intervention: 'de:scale:2' }, { n: 6, intervention: 'de:p_max' }]);
    const [scale, pmax] = r.settings;
    expect(scale!.setting).toBe('scale:2');
    expect(scale!.pairs[0]).toMatchObject({ base: 'en', target: 'de', facts: 3, skipped: 1, shifted: 1, meanD0: -8 / 3 });
    expect(scale!.pairs[0]!.lss).toBeCloseTo(1 / 3, 12);
    expect(scale!.pairs[0]!.meanShift).toBeCloseTo(2.5 / 3, 12);
    expect(scale!.pairs[0]!.details!.map((d) => [d.row, d.d0, d.d1])).toEqual([[0, -4, -0.5], [1, -4, -5], [2, 0, 0]]);
    expect(pmax!.pairs[0]!.lss).toBe(1);
    expect(pmax!.pairs[0]!.meanShift).toBe(3);
    expect(r.best).toEqual({ setting: 'p_max', meanLss: 1 });
  });

  it('shares one call per target among the bases, and averages LSS over pairs', async () => {
    const rows = [{ template: '[X] [Y]', sub_en: 'a', obj_en: 'A', sub_fr: 'a', obj_fr: 'Af', sub_de: 'a', obj_de: 'Ad' }];
    const folder = await writeFiles(path.join(dir, 'facts-3'), { 'r.jsonl': jsonl(rows) });
    const facts = await readFacts(folder);
    const calls: (string | null)[] = [];
    // amplified: the target object gains 1 nat, so every pair shifts
    const r = await computeLss({
      facts, pairs: [{ base: 'en', target: 'de' }, { base: 'fr', target: 'de' }, { base: 'de', target: 'en' }],
      settings: [{ name: 'x' }], amplify: (t) => t,
      logLikelihood: async (pairs, i) => { calls.push(i); return pairs.map((p) => (i !== null && p.continuation.endsWith(i === 'de' ? 'Ad' : ' A') ? 0 : -1)); },
    });
    expect(calls).toEqual([null, null, 'de', 'en']); // each target's calls: without, then with each setting (same batches)
    expect(r.settings[0]!.pairs.map((p) => p.lss)).toEqual([1, 1, 1]);
    expect(r.best.meanLss).toBe(1);
  });

  it('reads Parquet facts and refuses files without the needed columns, naming them', async () => {
    const pq = path.join(dir, 'facts-pq');
    await fsp.mkdir(pq, { recursive: true });
    writeParquet(path.join(pq, 'P1.parquet'), { template: ['[X] speaks [Y].'], sub_en: ['Goethe'], obj_en: ['German'], obj_de: ['Deutsch'], sub_de: ['Goethe'] });
    writeParquet(path.join(pq, 'P2.parquet'), { template: ['[X] lives in [Y].'], sub_en: ['Anna'], obj_en: ['Vienna'], sub_de: ['Anna'], obj_de: ['Wien'] });
    const facts = await readFacts(pq);
    expect(facts.facts.map((f) => f.fields['obj_de'])).toEqual(['Deutsch', 'Wien']);
    expect(facts.languages).toEqual(['de', 'en']);

    const noTemplate = await writeFiles(path.join(dir, 'facts-bad1'), { 'P1.jsonl': jsonl([{ sub_en: 'a', obj_en: 'b' }]) });
    await expect(readFacts(noTemplate)).rejects.toThrow(/P1\.jsonl: no "template" column \(columns: sub_en, obj_en\)/);
    const noObj = await writeFiles(path.join(dir, 'facts-bad2'), {
      'P1.jsonl': jsonl([{ template: '[X] [Y]', sub_en: 'a', obj_en: 'b', sub_sw: 'a', obj_sw: 'c' }]),
      'P2.jsonl': jsonl([{ template: '[X] [Y]', sub_en: 'a', obj_en: 'b' }]),
    });
    const set = await readFacts(noObj);
    expect(set.languages).toEqual(['en']);
    await expect(computeLss({ facts: set, pairs: [{ base: 'en', target: 'sw' }], settings: [{ name: 'x' }], amplify: () => 0, logLikelihood: async (p) => p.map(() => 0) }))
      .rejects.toThrow(/P2\.jsonl: no column "obj_sw"/);
    await expect(readFacts(path.join(dir, 'nowhere'))).rejects.toThrow(/nowhere: cannot read the facts/);
    const empty = path.join(dir, 'facts-empty');
    await fsp.mkdir(empty, { recursive: true });
    await expect(readFacts(empty)).rejects.toThrow(/facts-empty: no fact files/);
    await fsp.writeFile(path.join(dir, 'facts.txt'), 'x');
    await expect(readFacts(path.join(dir, 'facts.txt'))).rejects.toThrow(/facts\.txt: facts must be a \.jsonl or \.parquet file/);
  });
});

describe('forcing prompts', () => {
  it('reads <lang>.txt / .jsonl prompt folders and refuses empty ones, naming the file', async () => {
    const folder = await writeFiles(path.join(dir, 'prompts'), { 'en.txt': 'Once upon a time\n\nThe weather today\n', 'de.jsonl': jsonl([{ prompt: 'Es war einmal' }, { prompt: 'Hello', language: 'en' }]), 'README.md': 'x' });
    const prompts = await readPrompts(folder);
    expect(prompts.map((p) => [p.language, p.text])).toEqual([['de', 'Es war einmal'], ['en', 'Hello'], ['en', 'Once upon a time'], ['en', 'The weather today']]);
    const empty = path.join(dir, 'prompts-empty');
    await fsp.mkdir(empty, { recursive: true });
    await expect(readPrompts(empty)).rejects.toThrow(new RegExp(`${empty}: the prompts folder has no`));
    const blank = await writeFiles(path.join(dir, 'prompts-blank'), { 'sw.txt': '\n  \n' });
    await expect(readPrompts(blank)).rejects.toThrow(/sw\.txt: the prompt file has no prompts/);
    const badJson = await writeFiles(path.join(dir, 'prompts-bad'), { 'sw.jsonl': '{"text": "x"}\n' });
    await expect(readPrompts(badJson)).rejects.toThrow(/sw\.jsonl: line 1: expected \{"prompt"/);
  });
});
