// Mask files (JSON and safetensors round trips, refusal of corrupt files), model checks, summaries and comparisons.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LangneuronsError } from '../src/errors.js';
import { writeSafetensors } from '../src/io/safetensors.js';
import type { ModelIdentity } from '../src/profile/stats.js';
import {
  MASK_FORMAT, checkMaskForModel, maskLanguage, readMask, readMaskJson, readMaskSafetensors, writeMask, writeMaskJson,
  writeMaskSafetensors, type NeuronMask,
} from '../src/identify/masks.js';
import { compareMasks, randomMaskLike, summarizeMask, unionMask } from '../src/identify/mask-ops.js';
import { identifyLape } from '../src/identify/lape.js';
import { readStats, writeStats, type ActivationStats } from '../src/profile/stats.js';
import { makeTempDir, removeDir } from './helpers/fixtures.js';

let tmp: string;
beforeAll(async () => { tmp = await makeTempDir(); });
afterAll(async () => { await removeDir(tmp); });

const model: ModelIdentity = { name: 'toy', modelType: 'llama', layers: 2, hidden: 4, intermediate: 8, fingerprint: 'f'.repeat(64) };

function mask(languages: Record<string, number[][]>, m: ModelIdentity = model): NeuronMask {
  return {
    format: MASK_FORMAT, method: 'lape', parameters: { topRate: 0.01 }, derived: { threshold: 0.5 }, site: 'act', model: m,
    sources: [{ file: '/stats/en.safetensors', language: 'en', fingerprint: m.fingerprint, corpus: 'c', tokens: 10, sequences: 1 }],
    layers: m.layers, width: m.intermediate, languages,
  };
}

// en {0:0, 0:1}, fr {0:1, 1:2}, zh {0:1}
const a = mask({ en: [[0, 1], []], fr: [[1], [2]], zh: [[1], []] });

async function refusal(p: Promise<unknown>): Promise<LangneuronsError> {
  const err = await p.then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(LangneuronsError);
  return err as LangneuronsError;
}

describe('mask files', () => {
  it('round-trips through JSON and safetensors (and readMask tells them apart)', async () => {
    const json = path.join(tmp, 'a.json'), st = path.join(tmp, 'a.safetensors');
    await writeMask(json, a);
    await writeMask(st, a);
    expect(await readMaskJson(json)).toEqual(a);
    expect(await readMaskSafetensors(st)).toEqual(a);
    expect(await readMask(json)).toEqual(a);
    expect(await readMask(st)).toEqual(a);
    const text = await fsp.readFile(json, 'utf8');
    expect(text).toContain('"method": "lape"');
    expect(JSON.parse(text)).toEqual(a);
    // an empty language survives both formats
    const empty = mask({ en: [[], []] });
    await writeMaskSafetensors(st, empty);
    expect(await readMask(st)).toEqual(empty);
  });

  it('refuses corrupt or foreign files with the file and the problem', async () => {
    const write = async (name: string, content: string | object) => {
      const f = path.join(tmp, name);
      await fsp.writeFile(f, typeof content === 'string' ? content : JSON.stringify(content));
      return f;
    };
    const notJson = await write('bad.json', '{"format": ');
    expect((await refusal(readMask(notJson))).message).toMatch(/bad\.json: not a langneurons mask \(invalid JSON/);
    const foreign = await write('foreign.json', { hello: 1 });
    expect((await refusal(readMask(foreign))).message).toMatch(/foreign\.json: not a langneurons mask \(format undefined/);
    const outOfRange = await write('range.json', { ...a, languages: { en: [[0, 8], []] } });
    const e1 = await refusal(readMask(outOfRange));
    expect(e1.message).toMatch(/range\.json: language "en", layer 0: unit 8 is out of range \[0, 8\)/);
    expect(e1.field).toBe('languages.en');
    const unsorted = await write('unsorted.json', { ...a, languages: { en: [[3, 1], []] } });
    expect((await refusal(readMask(unsorted))).message).toMatch(/ascending without repeats/);
    const wrongLayers = await write('layers.json', { ...a, languages: { en: [[0]] } });
    expect((await refusal(readMask(wrongLayers))).message).toMatch(/one array per layer \(2\)/);
    const garbage = await write('garbage.safetensors', '\u0000\u0001\u0002 not a tensor file at all');
    expect((await refusal(readMask(garbage))).message).toMatch(/garbage\.safetensors/);
    // a safetensors file without mask metadata, then one with a membership value of 2
    const plain = path.join(tmp, 'plain.safetensors');
    await writeSafetensors(plain, { x: { dtype: 'U8', shape: [1], data: Uint8Array.of(1) } });
    expect((await refusal(readMask(plain))).message).toMatch(/plain\.safetensors: not a langneurons mask \(no "langneurons_mask" metadata\)/);
    const st = path.join(tmp, 'two.safetensors');
    await writeMaskSafetensors(st, a);
    const { languages: _l, ...head } = a;
    const member = new Uint8Array(16); member[3] = 2;
    await writeSafetensors(st, { 'lang.en': { dtype: 'U8', shape: [2, 8], data: member } }, { langneurons_mask: JSON.stringify({ ...head, languageOrder: ['en'] }) });
    expect((await refusal(readMask(st))).message).toMatch(/holds 2 at \[0, 3\]/);
    await writeSafetensors(st, { 'lang.en': { dtype: 'U8', shape: [2, 4], data: new Uint8Array(8) } }, { langneurons_mask: JSON.stringify({ ...head, languageOrder: ['en'] }) });
    expect((await refusal(readMask(st))).message).toMatch(/expected U8 \[2, 8\]/);
    expect((await refusal(readMask(path.join(tmp, 'missing.json')))).message).toMatch(/missing\.json: cannot read the mask/);
    await expect(writeMaskJson(path.join(tmp, 'w.json'), { ...a, width: 1 })).rejects.toThrow(/out of range/);
  });

  it('checks the model and the language', () => {
    expect(() => checkMaskForModel(a, model)).not.toThrow();
    expect(() => checkMaskForModel(a, { ...model, fingerprint: 'b'.repeat(64), name: 'other' }, 'm.json')).toThrow(/m\.json: mask was made for toy \(ffffffffffff\), not for other/);
    expect(() => checkMaskForModel(a, { ...model, intermediate: 16 })).toThrow(/intermediate size is 16/);
    expect(maskLanguage(a, 'fr')).toEqual([[1], [2]]);
    expect(() => maskLanguage(a, 'de', 'm.json')).toThrow(/m\.json: unknown language "de" \(the mask has: en, fr, zh\)/);
  });
});

describe('summaries and set operations', () => {
  it('summarizes counts, overlaps and sharing', () => {
    // en ∩ fr = {0:1}, en ∩ zh = {0:1}, fr ∩ zh = {0:1}; 0:0 in 1 language, 0:1 in 3, 1:2 in 1 → sharedBy [0, 2, 0, 1]
    const s = summarizeMask(a);
    expect(s.total).toEqual({ en: 2, fr: 2, zh: 1 });
    expect(s.perLayer).toEqual({ en: [2, 0], fr: [1, 1], zh: [1, 0] });
    expect(s.overlap).toEqual({ en: { en: 2, fr: 1, zh: 1 }, fr: { en: 1, fr: 2, zh: 1 }, zh: { en: 1, fr: 1, zh: 1 } });
    expect(s.sharedBy).toEqual([0, 2, 0, 1]);
    expect(s.union).toBe(3);
  });

  it('compares two masks per language', () => {
    // en: A {0:0, 0:1}, B {0:0, 1:5} → |A∩B| = 1, |A∪B| = 3 → 1/3; fr identical → 1; de empty in B only.
    const b = mask({ en: [[0], [5]], fr: [[1], [2]], de: [[], []] });
    const c = compareMasks(a, b);
    expect(c.languages['en']).toEqual({ a: 2, b: 2, both: 1, jaccard: 1 / 3 });
    expect(c.languages['fr']).toEqual({ a: 2, b: 2, both: 2, jaccard: 1 });
    expect(c.onlyInA).toEqual(['zh']);
    expect(c.onlyInB).toEqual(['de']);
    expect(c.sameModel).toBe(true);
    expect(() => compareMasks(a, mask({ en: [[], [], []] }, { ...model, layers: 3 }))).toThrow(/different shapes/);
  });

  it('unions languages and draws seeded random masks of the same size', () => {
    expect(unionMask(a, ['en', 'fr']).languages).toEqual({ union: [[0, 1], [2]] });
    expect(() => unionMask(a, ['de'])).toThrow(/unknown language "de"/);
    const big = mask({ en: [[0, 1, 2], [7]], fr: [[], [1, 2, 3, 4, 5]] });
    const r1 = randomMaskLike(big, { seed: 42 });
    expect(randomMaskLike(big, { seed: 42 })).toEqual(r1);
    for (const [lang, perLayer] of Object.entries(r1.languages)) {
      expect(perLayer.map((u) => u.length)).toEqual(big.languages[lang]!.map((u) => u.length));
      for (const u of perLayer) { expect([...u].sort((x, y) => x - y)).toEqual(u); expect(new Set(u).size).toBe(u.length); expect(u.every((x) => x >= 0 && x < 8)).toBe(true); }
    }
    const anywhere = randomMaskLike(big, { seed: 7, matchLayers: false });
    expect(Object.values(anywhere.languages).map((p) => p.flat().length)).toEqual([4, 5]);
    expect(r1.parameters).toMatchObject({ like: 'lape', seed: 42, matchLayers: true });
  });
});

describe('from statistics files to a mask file', () => {
  it('identifies on stats read back from disk and records the sources', async () => {
    const files: string[] = [];
    for (const [language, counts] of [['en', [9, 0, 0, 1, 0, 5, 0, 0]], ['fr', [0, 8, 0, 1, 0, 5, 0, 0]]] as const) {
      const s: ActivationStats = {
        meta: { format: 'langneurons-stats/1', model: { ...model, layers: 1 }, language, layers: [0],
          scope: { mode: 'windows', maxLen: 16, bos: false, countPadding: false, tokenBudget: 0 },
          corpus: { files: [], fingerprint: `c-${language}` }, toolVersion: 'test', shards: 1 },
        tokens: 10, sequences: 1,
        sites: new Map([['act', { site: 'act', width: 8, overZero: Float64Array.from(counts), sum: new Float64Array(8), sumSq: new Float64Array(8) }]]),
      };
      const f = path.join(tmp, `${language}.stats.safetensors`);
      await writeStats(f, s);
      files.push(f);
    }
    const inputs = await Promise.all(files.map(async (file) => ({ file, stats: await readStats(file) })));
    // pooled p (16 values): ten 0, .1 .1 .5 .5 .8 .9; filterRate .75 → k = 12 → τ = .1; quota round(.25·8) = 2:
    // unit 0 (en only, LAPE 0) and unit 1 (fr only, LAPE 0); unit 3 (.1, .1) is not above τ; unit 5 has LAPE ln 2.
    const m = identifyLape(inputs, { filterRate: 0.75, topRate: 0.25 });
    expect(m.languages).toEqual({ en: [[0]], fr: [[1]] });
    expect(m.sources.map((x) => [x.file, x.language, x.corpus])).toEqual([[files[0], 'en', 'c-en'], [files[1], 'fr', 'c-fr']]);
    const out = path.join(tmp, 'lape.safetensors');
    await writeMask(out, m);
    const back = await readMask(out);
    expect(back).toEqual(m);
    expect(() => checkMaskForModel(back, { ...model, layers: 1 })).not.toThrow();
  });
});
