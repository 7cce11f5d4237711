// Language forcing with a fake generator and the real language identifiers (CLD2 through the `cld` addon, ELD)
// on UDHR article text; the mapping of identifier codes to the project's language ids.
import { describe, expect, it } from 'vitest';

import { udhrArticles } from '../src/corpus/udhr.js';
import { loadModel } from '../src/engine/model.js';
import { resolveIntervention } from '../src/intervene/index.js';
import {
  cldIdentifier, computeForcing, eldIdentifier, engineGenerator, forcingCsv, forcingMatrix, forcingSvg, normaliseLanguageCode, sameLanguage, type ForcingPrompt, type LanguageIdentifier,
} from '../src/steer/index.js';
import { fixturePath } from './helpers/fixtures.js';

/** Articles 1-4 of a UDHR translation: real sentences in that language. */
const articles = (id: string) => udhrArticles(id).filter((a) => a.number >= 1 && a.number <= 4).map((a) => a.text);

describe('language codes', () => {
  it('maps identifier codes and project ids to one key', () => {
    expect(normaliseLanguageCode('de-1996')).toBe('de');
    expect(normaliseLanguageCode('deu')).toBe('de');
    expect(normaliseLanguageCode('swh')).toBe('sw');
    expect(normaliseLanguageCode('cmn_hans')).toBe('zh');
    expect(normaliseLanguageCode('zh-Hant')).toBe('zh');
    expect(normaliseLanguageCode('ms')).toBe('ms');
    expect(normaliseLanguageCode('pt-BR')).toBe('pt');
    expect(normaliseLanguageCode('qqq')).toBe('qqq');
    expect(sameLanguage('iw', 'he')).toBe(true);
    expect(sameLanguage('nb', 'no')).toBe(true);
    expect(sameLanguage('fil', 'tl')).toBe(true);
    expect(sameLanguage('sw', 'swh')).toBe(true);
    expect(sameLanguage('sr-Latn', 'sr')).toBe(true);
    expect(sameLanguage('de', 'nl')).toBe(false);
  });
});

describe('FLORES-200 codes (ISO 639-3 + script)', () => {
  // Before: only swh_Latn met an identifier's code (eng_Latn → eng, zho_Hans → zho), so `steer forcing --target
  // eng_Latn` said "cld cannot identify eng_Latn" and scored 0% on English output.
  const FLORES: [string, string][] = [
    ['eng_Latn', 'en'], ['deu_Latn', 'de'], ['rus_Cyrl', 'ru'], ['zho_Hans', 'zh'], ['zho_Hant', 'zh'], ['fra_Latn', 'fr'],
    ['spa_Latn', 'es'], ['arb_Arab', 'ar'], ['hin_Deva', 'hi'], ['jpn_Jpan', 'ja'], ['kor_Hang', 'ko'], ['swh_Latn', 'sw'],
    ['mlt_Latn', 'mt'], ['yor_Latn', 'yo'], ['heb_Hebr', 'he'], ['pes_Arab', 'fa'], ['zsm_Latn', 'ms'], ['pbt_Arab', 'ps'],
    ['ary_Arab', 'ar'], ['ltz_Latn', 'lb'], ['tgl_Latn', 'tl'],
    // ISO 639-3 codes with an ISO 639-1 code, through the iso-639-3 tables (these fell through as bak, asm, ...: never
    // equal to CLD's answer, so their forcing rate was 0 and the target reported as not identifiable)
    ['bak_Cyrl', 'ba'], ['asm_Beng', 'as'], ['snd_Arab', 'sd'], ['kas_Arab', 'ks'], ['aka_Latn', 'ak'], ['grn_Latn', 'gn'],
    ['ayr_Latn', 'ay'], ['nno_Latn', 'nn'], ['nob_Latn', 'no'], ['khk_Cyrl', 'mn'], ['uzn_Latn', 'uz'],
  ];
  it.each(FLORES)('%s is %s, as CLD answers it', (flores, code) => {
    expect(normaliseLanguageCode(flores)).toBe(code);
    expect(sameLanguage(flores, code)).toBe(true);
    expect(cldIdentifier().languages.has(normaliseLanguageCode(flores))).toBe(true);
  });
  it('CLD on Traditional Chinese (zh-Hant) meets zho_Hant; unknown codes keep their primary subtag', () => {
    expect(sameLanguage('zh-Hant', 'zho_Hant')).toBe(true);
    for (const [three, one] of [['swa', 'sw'], ['sqi', 'sq'], ['nor', 'no'], ['aze', 'az'], ['uzb', 'uz'], ['mon', 'mn'], ['kur', 'ku'], ['pus', 'ps'], ['yid', 'yi'], ['ger', 'de'], ['fre', 'fr'], ['chi', 'zh']])
      expect(normaliseLanguageCode(three!), three).toBe(one);
    // languages the identifiers tell apart stay apart (they were merged: Bokmal output counted for a Nynorsk target)
    expect(sameLanguage('nn', 'no')).toBe(false);
    expect(sameLanguage('yue_Hant', 'zh')).toBe(false); // CLD2 has no Cantonese: not identifiable, rather than any Chinese
    expect(cldIdentifier().languages.has(normaliseLanguageCode('yue_Hant'))).toBe(false);
    expect(normaliseLanguageCode('qqq_Latn')).toBe('qqq');
    expect(sameLanguage('deu_Latn', 'eng_Latn')).toBe(false);
  });
  it('steer forcing with --target eng_Latn counts English output as a success', async () => {
    const prompts: ForcingPrompt[] = [0, 1, 2].map((i) => ({ text: `p${i}`, language: 'deu_Latn', file: 'deu_Latn.txt', line: i + 1 }));
    const en = articles('en');
    const r = await computeForcing({
      prompts, targets: ['eng_Latn'], intervention: () => null, generate: async (ps) => ps.map((_, i) => en[i]!), identifier: cldIdentifier(), baseline: false,
    });
    expect(r.targets[0]).toMatchObject({ target: 'eng_Latn', identifiable: true, forced: { successes: 3, rate: 1, detected: { en: 3 } } });
  });
});

const LANGS = ['en', 'de', 'fr', 'es', 'ru', 'sw', 'zh', 'ar', 'hi', 'yo'];

describe('CLD2 (the default identifier) on UDHR articles', () => {
  let cld: LanguageIdentifier;
  it('loads: the cld addon built offline', () => {
    cld = cldIdentifier();
    expect(cld.name).toBe('cld');
    for (const l of LANGS) expect(cld.languages.has(l)).toBe(true);
  });
  it.each(LANGS)('identifies %s', async (lang) => {
    for (const text of articles(lang)) expect((await cld.identify(text)).language).toBe(normaliseLanguageCode(lang));
  });
  it('answers null for empty or unidentifiable text', async () => {
    expect(await cld.identify('   ')).toEqual({ code: null, language: null, reliable: false });
    expect((await cld.identify('12345 67890')).language).toBe(null);
  });
});

describe('ELD (pure JS fallback)', () => {
  it('identifies the languages it has, and knows it has no Swahili', async () => {
    const eld = await eldIdentifier();
    for (const l of ['en', 'de', 'fr', 'ru', 'zh']) for (const text of articles(l)) expect((await eld.identify(text)).language).toBe(l);
    expect(eld.languages.has('sw')).toBe(false);
  });
});

describe('language forcing', () => {
  // 8 English prompts (language en) and 4 German ones. The fake generator "obeys" the intervention for prompts
  // whose index is not a multiple of 4: it answers UDHR text in the target language; otherwise English text.
  const prompts: ForcingPrompt[] = [
    ...Array.from({ length: 8 }, (_, i) => ({ text: `en prompt ${i}`, language: 'en', file: 'en.txt', line: i + 1 })),
    ...Array.from({ length: 4 }, (_, i) => ({ text: `de prompt ${i}`, language: 'de', file: 'de.txt', line: i + 1 })),
  ];
  const en = articles('en');
  const fakeGenerate = (calls: (string | null)[]) => async (ps: string[], intervention: string | null) => {
    calls.push(intervention);
    return ps.map((p) => {
      const i = prompts.findIndex((q) => q.text === p);
      const k = i % en.length;
      if (intervention === null || i % 4 === 0) return en[k]!;
      const target = /amplify:(\S+)/.exec(intervention)![1]!;
      return articles(target)[k % 4]!;
    });
  };
  const intervention = (t: string, src: string | null) => (src ? `deactivate:${src} amplify:${t}` : `amplify:${t}`);

  it('counts the generations the identifier labels with the target language', async () => {
    const calls: (string | null)[] = [];
    const r = await computeForcing({ prompts, targets: ['sw', 'de-1996'], intervention, generate: fakeGenerate(calls), identifier: cldIdentifier() });
    // baseline, then per target one call per prompt language; prompts in the target language are not deactivated
    expect(calls).toEqual([null, 'deactivate:en amplify:sw', 'deactivate:de amplify:sw', 'deactivate:en amplify:de-1996', 'amplify:de-1996']);
    const [sw, de] = r.targets;
    // indexes 0, 4, 8 stay English: 9/12 forced
    expect(sw!.forced).toMatchObject({ prompts: 12, successes: 9, rate: 0.75, detected: { sw: 9, en: 3 } });
    expect(sw!.baseline).toMatchObject({ successes: 0, rate: 0, detected: { en: 12 } });
    expect(sw!.identifiable).toBe(true);
    expect(de!.forced.rate).toBe(0.75);
    expect(r.meanRate).toBe(0.75);
    expect(sw!.forced.generations![1]).toMatchObject({ prompt: 'en prompt 1', source: 'en', detected: 'sw', code: 'sw', success: true });
  });

  it('breaks the rates down per prompt language: the matrix of their figure, as CSV and SVG', async () => {
    const r = await computeForcing({ prompts, targets: ['sw', 'de-1996'], intervention, generate: fakeGenerate([]), identifier: cldIdentifier() });
    const [sw, de] = r.targets;
    // en prompts 0-7: 0 and 4 stay English (6/8); de prompts 8-11: 8 stays English (3/4)
    expect(sw!.forced.bySource).toEqual({ en: { prompts: 8, successes: 6, rate: 0.75 }, de: { prompts: 4, successes: 3, rate: 0.75 } });
    expect(sw!.baseline!.bySource).toEqual({ en: { prompts: 8, successes: 0, rate: 0 }, de: { prompts: 4, successes: 0, rate: 0 } });
    // without intervention every output is English: for the German target, none
    expect(de!.baseline!.bySource['de']).toEqual({ prompts: 4, successes: 0, rate: 0 });
    const m = forcingMatrix(r);
    expect(m).toEqual({ rows: ['de', 'en'], columns: ['sw', 'de-1996'], rates: [[0.75, 0.75], [0.75, 0.75]], baseline: [[0, 0], [0, 0]] });
    const csv = forcingCsv(r).trim().split('\n');
    expect(csv[0]).toBe('prompt_language,target,prompts,successes,rate,baseline_rate');
    expect(csv.slice(1)).toEqual(['de,sw,4,3,0.75,0', 'de,de-1996,4,3,0.75,0', 'en,sw,8,6,0.75,0', 'en,de-1996,8,6,0.75,0']);
    const svg = forcingSvg(r);
    expect(svg.match(/<rect class="cell"/g)).toHaveLength(4);
    expect(svg).toContain('de prompts → sw: 75.0% (without intervention 0.0%)');
  });

  it('with ELD, Swahili is not identifiable and never succeeds', async () => {
    const r = await computeForcing({ prompts, targets: ['sw'], intervention, generate: fakeGenerate([]), identifier: await eldIdentifier(), baseline: false, keepGenerations: false });
    expect(r.identifier).toBe('eld');
    expect(r.targets[0]!.identifiable).toBe(false);
    expect(r.targets[0]!.forced.successes).toBe(0);
    expect(r.targets[0]!.baseline).toBeUndefined();
    expect(r.targets[0]!.forced.generations).toBeUndefined();
  });

  it('refuses no prompts, no target and a generator returning the wrong count', async () => {
    const identifier = cldIdentifier();
    await expect(computeForcing({ prompts: [], targets: ['sw'], intervention, generate: async () => [], identifier })).rejects.toThrow(/no prompts/);
    await expect(computeForcing({ prompts, targets: [], intervention, generate: async () => [], identifier })).rejects.toThrow(/no target/);
    await expect(computeForcing({ prompts, targets: ['sw'], intervention, generate: async () => ['x'], identifier })).rejects.toThrow(/returned 1 texts for 12 prompts/);
  });
});

describe('engineGenerator', () => {
  it('generates in batches what it generates all at once, with and without an intervention', async () => {
    const model = await loadModel(fixturePath('stories260k'), { threads: 2 });
    const iv = await resolveIntervention(model, 'scale:2:neurons=all:positions=generated');
    const texts = ['Once upon a time', 'The dog', 'She ran to', 'Tom said', 'A big red'];
    for (const intervention of [null, iv]) {
      const whole = await engineGenerator(model, { maxNewTokens: 10, stop: ['\n'] })(texts, intervention);
      expect(whole).toHaveLength(5);
      expect(await engineGenerator(model, { maxNewTokens: 10, stop: ['\n'] }, 2)(texts, intervention)).toEqual(whole);
    }
  });
});
