import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LangneuronsError } from '../src/errors.js';
import {
  openCorpus,
  openCorpusSpec,
  resolveUdhrLanguage,
  scopeBatches,
  udhrArticles,
  udhrCorpus,
  udhrLanguages,
  writeUdhrFolder,
} from '../src/corpus/index.js';
import { byteTokenizer, collect } from './helpers/corpus-fixtures.js';
import { makeTempDir, removeDir } from './helpers/fixtures.js';

// One language per script, with the script its article 1 must be written in.
const SCRIPTS: Record<string, RegExp> = {
  en: /\p{Script=Latin}/u, de: /\p{Script=Latin}/u, sw: /\p{Script=Latin}/u, mt: /ħ|ż|ċ/u, vi: /\p{Script=Latin}/u,
  ru: /\p{Script=Cyrillic}/u, uk: /\p{Script=Cyrillic}/u, el: /\p{Script=Greek}/u, ar: /\p{Script=Arabic}/u,
  fa: /\p{Script=Arabic}/u, he: /\p{Script=Hebrew}/u, hi: /\p{Script=Devanagari}/u, bn: /\p{Script=Bengali}/u,
  ta: /\p{Script=Tamil}/u, te: /\p{Script=Telugu}/u, zh: /\p{Script=Han}/u, 'zh-Hant': /\p{Script=Han}/u,
  ja: /\p{Script=Hiragana}/u, ko: /\p{Script=Hangul}/u, th: /\p{Script=Thai}/u, ka: /\p{Script=Georgian}/u,
  hy: /\p{Script=Armenian}/u, am: /\p{Script=Ethiopic}/u, my: /\p{Script=Myanmar}/u, km: /\p{Script=Khmer}/u,
};

describe('UDHR languages', () => {
  it('exposes hundreds of translations with unique ids, including ≥ 20 languages across scripts', () => {
    const langs = udhrLanguages();
    expect(langs.length).toBeGreaterThan(400);
    expect(new Set(langs.map((l) => l.id)).size).toBe(langs.length);
    for (const l of langs) {
      expect(resolveUdhrLanguage(l.id).udhrCode).toBe(l.udhrCode);
      expect(resolveUdhrLanguage(l.udhrCode).udhrCode).toBe(l.udhrCode); // no code shadowed by another's id
    }
    for (const [id, script] of Object.entries(SCRIPTS)) {
      const article1 = udhrArticles(id).find((a) => a.number === 1);
      expect(article1?.text, id).toMatch(script);
    }
    expect(Object.keys(SCRIPTS).length).toBeGreaterThanOrEqual(20);
  });

  it('maps the codes users expect, and aliases (case- and separator-insensitive)', () => {
    const code = (id: string) => resolveUdhrLanguage(id).udhrCode;
    expect(code('en')).toBe('eng');
    expect(code('de')).toBe('deu_1996');
    expect(code('sw')).toBe('swh');
    expect(code('mt')).toBe('mlt');
    expect(code('ar')).toBe('arb');
    expect(code('zh')).toBe('cmn_hans');
    expect(code('zh-Hant')).toBe('cmn_hant');
    expect(code('el')).toBe('ell_monotonic');
    for (const [alias, id] of [['eng', 'en'], ['deu', 'de'], ['de-1996', 'de'], ['zh_hans', 'zh'], ['ZH-HANT', 'zh-Hant'], ['swh', 'sw'], ['rus', 'ru'], ['zho', 'zh'], ['cat', 'ca'], ['hau', 'ha']]) {
      expect(resolveUdhrLanguage(alias!).id).toBe(id);
    }
    expect(() => resolveUdhrLanguage('xx-nope')).toThrow(LangneuronsError);
    expect(() => resolveUdhrLanguage('enx')).toThrow(/unknown UDHR language "enx"; similar: .*\ben\b/);
  });

  it('articles: the preamble as article 0, 1-30 without their headings', () => {
    const en = udhrArticles('en');
    expect(en.map((a) => a.number)).toEqual(Array.from({ length: 31 }, (_, i) => i));
    expect(en[1]!.text).toBe(
      'All human beings are born free and equal in dignity and rights. They are endowed with reason and conscience and should act towards one another in a spirit of brotherhood.',
    );
    expect(en.every((a) => !a.text.includes('\n') && !a.text.includes('<') && !a.text.startsWith('Article'))).toBe(true);
  });
});

describe('UDHR corpus', () => {
  const langs = ['en', 'de', 'sw', 'mt', 'ru', 'el', 'ar', 'hi', 'zh'];

  it('train and held-out splits are disjoint and cover every article', async () => {
    for (const heldoutArticles of [undefined, [0, 3, 30]]) {
      const opts = heldoutArticles ? { heldoutArticles } : {};
      const [train, heldout, all] = (['train', 'heldout', 'all'] as const).map((split) => udhrCorpus(langs, { split, ...opts }));
      for (const lang of langs) {
        const t = await collect(train!.source(lang).documents());
        const h = await collect(heldout!.source(lang).documents());
        const a = await collect(all!.source(lang).documents());
        expect(t.filter((d) => h.includes(d)), lang).toEqual([]);
        expect([...t, ...h].sort(), lang).toEqual([...a].sort());
        if (!heldoutArticles) expect(h, lang).toHaveLength(6);
      }
    }
    expect(() => udhrCorpus(['en'], { heldoutArticles: [31] })).toThrow(/heldoutArticles/);
  });

  it('is a corpus like any other: languages as asked, unknown ones listed, token scopes, fingerprints', async () => {
    const corpus = udhrCorpus(['en', 'deu'], { split: 'train' });
    expect(corpus.languages).toEqual(['en', 'deu']);
    expect(() => corpus.source('fr')).toThrow(/no language "fr" .*languages: en, deu/);
    const tok = await byteTokenizer();
    const batches = await collect(scopeBatches(corpus.source('en'), tok, { scope: { mode: 'sentences', maxLen: 64, bos: true, tokenBudget: 1000 }, batchTokens: 650 }));
    expect(batches.reduce((n, b) => n + b.tokens, 0)).toBe(1000);
    const fp = await corpus.fingerprint();
    expect(await udhrCorpus(['en', 'deu'], { split: 'train' }).fingerprint()).toBe(fp);
    expect(await udhrCorpus(['en', 'deu'], { split: 'heldout' }).fingerprint()).not.toBe(fp);
    expect(await udhrCorpus(['en', 'deu'], { split: 'train', heldoutArticles: [1] }).fingerprint()).not.toBe(fp);
    expect((await openCorpusSpec('udhr:heldout', { languages: ['mt'] })).languages).toEqual(['mt']);
  });

  describe('as a folder', () => {
    let dir: string;
    beforeAll(async () => {
      dir = await makeTempDir('langneurons-udhr-');
    });
    afterAll(async () => {
      await removeDir(dir);
    });

    it('writes <lang>.txt files that read back as the same documents', async () => {
      const files = await writeUdhrFolder(dir, ['en', 'sw', 'zh'], { split: 'train' });
      expect(files.map((f) => f.slice(dir.length + 1))).toEqual(['en.txt', 'sw.txt', 'zh.txt']);
      const folder = await openCorpus(dir);
      const builtIn = udhrCorpus(['en', 'sw', 'zh'], { split: 'train' });
      expect(folder.languages).toEqual(['en', 'sw', 'zh']);
      for (const lang of folder.languages) {
        expect(await collect(folder.source(lang).documents())).toEqual(await collect(builtIn.source(lang).documents()));
      }
    });
  });
});
