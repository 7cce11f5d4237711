// Language identification of generated text, for language forcing (METHODS.md §4):
//  - `cld`: Compact Language Detector 2 (the `cld` npm package, a C++ addon built by node-gyp at install time;
//    an optional dependency). ~160 languages, including Swahili, Yoruba, Amharic... The default.
//  - `eld`: Efficient Language Detector (pure JavaScript, 60 languages, NO Swahili), the fallback;
//  - `fasttext[:<model>]`: fastText (WebAssembly) with lid.176 or any fastText model (langid-fasttext.ts).
// Both answer ISO 639-1 codes (cld also a few legacy / script-tagged ones); `normaliseLanguageCode` maps their
// codes and the project's language ids (ISO 639-1, the UDHR ids and aliases of src/corpus/udhr.ts, FLORES-200 codes
// such as eng_Latn, any ISO 639-3 or 639-2/B code with an ISO 639-1 one, through the iso-639-3 package) to one key, so that `sameLanguage('de-1996', 'de')`, `sameLanguage('swh', 'sw')`,
// `sameLanguage('iw', 'he')`, `sameLanguage('eng_Latn', 'en')` hold.
import { createRequire } from 'node:module';

import { iso6393To1 } from 'iso-639-3/iso6393-to-1.js';
import { iso6393To2B } from 'iso-639-3/iso6393-to-2b.js';

import { LangneuronsError, describeError } from '../errors.js';
import { resolveUdhrLanguage } from '../corpus/udhr.js';

export type IdentifierName = 'cld' | 'eld' | 'fasttext';
export const IDENTIFIERS: readonly IdentifierName[] = ['cld', 'eld', 'fasttext'];

export interface Identification {
  /** The identifier's own top label (e.g. 'sw', 'zh-Hant', 'iw'), or null when it found none. */
  code: string | null;
  /** normaliseLanguageCode(code): comparable with the project's language ids. */
  language: string | null;
  reliable: boolean;
  /** The top label's probability, where the identifier gives one (fastText). */
  probability?: number;
}

export interface LanguageIdentifier {
  readonly name: IdentifierName;
  /** The model file it loaded, where it loads one (fastText). */
  readonly model?: string;
  /** Codes it can answer (normalised). */
  readonly languages: ReadonlySet<string>;
  identify(text: string): Promise<Identification>;
}

/**
 * Legacy and variant codes → one key. Only codes that name the same language the identifiers answer for: Nynorsk
 * (nn) stays apart from Bokmål (no; CLD2 tells them apart), Cantonese (yue) from Chinese. (Twi, twi, resolves through
 * the UDHR table first, to its translation's tag ak.)
 */
const CODE_ALIASES: Record<string, string> = {
  iw: 'he', in: 'id', ji: 'yi', jw: 'jv', mo: 'ro', fil: 'tl', nb: 'no',
  // ISO 639-3 individual languages of a macrolanguage → the macrolanguage's ISO 639-1 code
  cmn: 'zh', zlm: 'ms', zsm: 'ms', pes: 'fa', prs: 'fa', swh: 'sw', arb: 'ar', ydd: 'yi', kmr: 'ku', khk: 'mn', azj: 'az',
  uzn: 'uz', ekk: 'et', lvs: 'lv', npi: 'ne', ory: 'or', plt: 'mg', als: 'sq', gaz: 'om', quz: 'qu', hbs: 'sh',
  // more of FLORES-200's: Southern Pashto, Ayacucho Quechua, Central Kurdish, South Azerbaijani, Central Aymara,
  // Nigerian Fulfulde, Central Kanuri, Koongo, Arabic varieties
  pbt: 'ps', quy: 'qu', ckb: 'ku', azb: 'az', ayr: 'ay', fuv: 'ff', knc: 'kr', kng: 'kg',
  acm: 'ar', acq: 'ar', aeb: 'ar', ajp: 'ar', apc: 'ar', ars: 'ar', ary: 'ar', arz: 'ar',
};

/** ISO 639-2/B codes that differ from ISO 639-3 (ger, fre, chi, ...) → ISO 639-1, from the iso-639-3 tables. */
const ISO6392B_TO_1: Record<string, string> = Object.fromEntries(Object.entries(iso6393To2B)
  .filter(([three, b]) => b !== three && iso6393To1[three]).map(([three, b]) => [b, iso6393To1[three]!]));

/** A 3-letter code's ISO 639-1 code (bak → ba, swa → sw, nno → nn, ger → de), or the code itself where it has none. */
const toIso6391 = (code: string): string => (code.length === 3 ? iso6393To1[code] ?? ISO6392B_TO_1[code] ?? code : code);

const primary = (tag: string): string => tag.toLowerCase().replaceAll('_', '-').split('-')[0]!;

/** The primary subtag of a UDHR id or alias (de-1996 → de, deu → de, cmn_hans → zh), or undefined for an unknown one. */
function udhrKey(id: string): string | undefined {
  try {
    const l = resolveUdhrLanguage(id);
    // the id when it is a tag (de-1996 → de), the translation's BCP-47 tag when the id is a UDHR code (cmn_hans_beijing)
    return l.id !== l.udhrCode && /^[a-z]{2,3}(-|$)/i.test(l.id) ? primary(l.id) : primary(l.bcp47);
  } catch {
    return undefined;
  }
}

/**
 * A comparable key for a language code or id: the primary language subtag, with legacy codes and ISO 639-3
 * languages mapped to the ISO 639-1 code of their (macro)language. UDHR ids and aliases (de-1996, deu, swh,
 * cmn_hans...) resolve through the UDHR table first; then the primary subtag alone, so that FLORES-style codes
 * (ISO 639-3 + script: eng_Latn → en, rus_Cyrl → ru, zho_Hans and zho_Hant → zh) meet the identifiers' codes.
 * Scripts are not told apart (CLD's zh-Hant is zh too).
 */
export function normaliseLanguageCode(code: string): string {
  const raw = code.trim();
  if (raw === '') return raw;
  const key = udhrKey(raw) ?? (primary(raw) !== raw.toLowerCase() ? udhrKey(primary(raw)) : undefined) ?? primary(raw);
  const one = CODE_ALIASES[key] ?? toIso6391(key);
  return CODE_ALIASES[one] ?? one; // nob → nb → no
}

export function sameLanguage(a: string, b: string): boolean {
  return normaliseLanguageCode(a) === normaliseLanguageCode(b);
}

interface CldModule {
  detect(text: string, options?: { bestEffort?: boolean }): Promise<{ reliable: boolean; languages: { code: string; percent: number; score: number }[] }>;
  LANGUAGES: Record<string, string>;
}

/** CLD2 through the `cld` addon; throws E_LANGID when the addon is missing or was not built. */
export function cldIdentifier(): LanguageIdentifier {
  let cld: CldModule;
  try {
    cld = createRequire(import.meta.url)('cld') as CldModule;
  } catch (e) {
    throw new LangneuronsError('E_LANGID', `the CLD2 identifier (npm package "cld", a node-gyp addon) is not available: ${describeError(e).split('\n')[0]}; ` +
      'install it (npm install cld, needs a C++ compiler) or use --langid eld');
  }
  return {
    name: 'cld',
    languages: new Set(Object.values(cld.LANGUAGES).map(normaliseLanguageCode)),
    async identify(text) {
      if (!text.trim()) return { code: null, language: null, reliable: false };
      try {
        const r = await cld.detect(text, { bestEffort: true });
        const top = r.languages[0];
        if (!top || top.code === 'un') return { code: null, language: null, reliable: false };
        return { code: top.code, language: normaliseLanguageCode(top.code), reliable: r.reliable };
      } catch {
        // cld rejects text it cannot identify ("Failed to identify language")
        return { code: null, language: null, reliable: false };
      }
    },
  };
}

interface EldDetector {
  load(size: string): Promise<unknown>;
  detect(text: string): { language: string; isReliable(): boolean };
  info(): { Languages: Record<number, string> };
}

/** ELD (pure JavaScript, the 'large' database: 60 languages). */
export async function eldIdentifier(): Promise<LanguageIdentifier> {
  let detector: EldDetector;
  try {
    const mod = (await import('eld')) as unknown as { eld: { newInstance(): EldDetector } };
    detector = mod.eld.newInstance();
    await detector.load('large');
  } catch (e) {
    throw new LangneuronsError('E_LANGID', `the ELD identifier (npm package "eld") could not be loaded: ${describeError(e)}`);
  }
  return {
    name: 'eld',
    languages: new Set(Object.values(detector.info().Languages).map(normaliseLanguageCode)),
    async identify(text) {
      if (!text.trim()) return { code: null, language: null, reliable: false };
      const r = detector.detect(text);
      if (!r.language) return { code: null, language: null, reliable: false };
      return { code: r.language, language: normaliseLanguageCode(r.language), reliable: r.isReliable() };
    },
  };
}

/** Each text's identification, and the number of texts of each language found ("none": no language) in the order
 *  of first appearance (the measures' distributions). */
export async function identifyAll(identifier: LanguageIdentifier, texts: readonly string[]): Promise<{ ids: Identification[]; counts: Record<string, number> }> {
  const ids: Identification[] = [];
  const counts: Record<string, number> = {};
  for (const text of texts) {
    const id = await identifier.identify(text);
    ids.push(id);
    const key = id.language ?? 'none';
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return { ids, counts };
}

/** `cld`, `eld`, `fasttext` or `fasttext:<model file>` (--langid). */
export interface IdentifierChoice { name: IdentifierName; model?: string }

export function parseIdentifier(text: string): IdentifierChoice {
  const [name, ...rest] = text.split(':');
  const model = rest.join(':');
  if (name === 'fasttext') return model ? { name, model } : { name };
  if ((name === 'cld' || name === 'eld') && rest.length === 0) return { name };
  throw new LangneuronsError('E_OPTIONS', `--langid "${text}": expected cld, eld, fasttext or fasttext:<model.bin|.ftz>`, { field: '--langid' });
}

export async function loadIdentifier(choice: IdentifierName | IdentifierChoice): Promise<LanguageIdentifier> {
  const { name, model } = typeof choice === 'string' ? { name: choice, model: undefined } : choice;
  if (name === 'cld') return cldIdentifier();
  if (name === 'eld') return eldIdentifier();
  if (name === 'fasttext') return (await import('./langid-fasttext.js')).fastTextIdentifier(model);
  throw new LangneuronsError('E_OPTIONS', `unknown language identifier "${String(name)}" (${IDENTIFIERS.join(', ')})`, { field: '--langid' });
}
