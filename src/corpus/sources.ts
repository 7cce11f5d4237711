// Per-language text corpora for profiling: a folder of `<lang>.<ext>` files (or `<lang>/` folders of
// such files, the Hugging Face layout of sharded Parquet), or a manifest JSON naming each language's
// files. Documents are streamed in a fixed order (files in the order given / sorted by name, lines or rows
// in file order), which the token scopes rely on for determinism and resumption.
//
// Manifest: { "field"?: "text", "languages": { "en": { "files": ["a.txt", "b.parquet"], "field"?: "text" } } },
// paths relative to the manifest. The field applies to JSONL / Parquet files: a language's own "field"
// wins over the manifest's, which wins over `options.field`, which defaults to "text". Other keys are refused (a
// misspelt "feild" would read the default field without a word), and so is a file given twice for one language.
import { checkLanguageId, isLanguageId } from './language-id.js';
import { createHash } from 'node:crypto';
import { createReadStream, promises as fsp, type Stats } from 'node:fs';
import path from 'node:path';
import { LangneuronsError, describeError } from '../errors.js';
import { withoutBom } from '../io/text.js';
import type { ReadCounter } from './lines.js';
import { formatOf, planParquet, readDocuments, type FileFormat } from './readers.js';

/** Anything that yields a language's documents in a fixed order: what the token scopes consume. */
export interface DocumentSource {
  documents(): AsyncIterable<string>;
}

export interface LanguageSource extends DocumentSource {
  readonly language: string;
  /** Where the documents come from, for statistics metadata: file names relative to the corpus root, or a built-in name. */
  readonly files: string[];
  /** The absolute paths of the files documents() reads (none for a built-in corpus): what a sweep hashes as inputs. */
  readonly paths: string[];
  /** sha256 (hex) over what documents() reads and how; stable across runs and machines. */
  fingerprint(): Promise<string>;
}

export interface Corpus {
  /** The folder, manifest or built-in corpus this came from (for messages). */
  readonly origin: string;
  readonly languages: string[];
  /** Throws a LangneuronsError listing the known languages for an unknown one. */
  source(language: string): LanguageSource;
  /** sha256 over the languages (all by default) and each one's fingerprint. */
  fingerprint(languages?: readonly string[]): Promise<string>;
}

export interface CorpusManifest {
  field?: string;
  languages: Record<string, { files: string[]; field?: string }>;
}

export interface OpenCorpusOptions {
  /** JSONL field / Parquet column holding the text (default "text"); a dotted path reaches into structs. */
  field?: string;
  /** Base folder of the paths of a manifest given as an object (default: the working directory). */
  baseDir?: string;
  /** Observes the reads: chunks of text and JSONL files, row groups of Parquet files (tests, progress). */
  counter?: ReadCounter;
}

export const DEFAULT_FIELD = 'text';
const FINGERPRINT_FORMAT = 'langneurons-corpus/1';

interface CorpusFile {
  /** Absolute path. */
  file: string;
  /** Path relative to the corpus root, '/'-separated: what the fingerprint and metadata name. */
  name: string;
  format: FileFormat;
  field: string;
}

function fail(message: string, file?: string): never {
  throw new LangneuronsError('E_CORPUS', message, file === undefined ? {} : { file });
}

export const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');

/** sha256 of a file's bytes, streamed. */
async function hashFile(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Builds a Corpus from per-language sources; shared by file corpora and the built-in UDHR one. */
export function corpusOf(origin: string, sources: Map<string, LanguageSource>): Corpus {
  const languages = [...sources.keys()];
  const source = (language: string): LanguageSource => {
    const s = sources.get(language);
    if (!s) fail(`no language "${language}" in corpus ${origin}; languages: ${languages.join(', ')}`);
    return s;
  };
  return {
    origin,
    languages,
    source,
    async fingerprint(selected = languages) {
      const parts = [];
      for (const lang of selected) parts.push({ language: lang, fingerprint: await source(lang).fingerprint() });
      return sha256(JSON.stringify({ format: FINGERPRINT_FORMAT, languages: parts }));
    },
  };
}

function fileSource(language: string, files: CorpusFile[], counter: ReadCounter | undefined): LanguageSource {
  let fingerprint: Promise<string> | undefined;
  return {
    language,
    files: files.map((f) => f.name),
    paths: files.map((f) => f.file),
    async *documents() {
      for (const f of files) {
        let count = 0;
        for await (const doc of readDocuments(f.file, f.format, { field: f.field, ...(counter ? { counter } : {}) })) {
          count++;
          yield doc;
        }
        if (count === 0) fail(`${f.file}: has no documents (every line / value is empty)`, f.file);
      }
    },
    fingerprint() {
      fingerprint ??= (async () => {
        const parts = [];
        for (const f of files) {
          const { size } = await fsp.stat(f.file);
          // The field only changes what is read from JSONL / Parquet files.
          parts.push({ name: f.name, size, sha256: await hashFile(f.file), format: f.format, field: f.format === 'txt' ? null : f.field });
        }
        return sha256(JSON.stringify({ format: FINGERPRINT_FORMAT, language, files: parts }));
      })();
      return fingerprint;
    },
  };
}

async function statOrNull(file: string): Promise<Stats | null> {
  try {
    return await fsp.stat(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    fail(`cannot read ${file}: ${describeError(err)}`, file);
  }
}

/** Fails early (before hours of profiling) on missing, empty or unreadable files and missing Parquet columns. */
async function checkFile(f: CorpusFile, language: string): Promise<void> {
  const stat = await statOrNull(f.file);
  if (!stat) fail(`${f.file}: file not found (corpus language "${language}")`, f.file);
  if (!stat.isFile()) fail(`${f.file}: not a regular file (corpus language "${language}")`, f.file);
  if (stat.size === 0) fail(`${f.file}: the file is empty (corpus language "${language}")`, f.file);
  if (f.format === 'parquet') await planParquet(f.file, f.field);
}

const toName = (root: string, file: string): string => path.relative(root, file).split(path.sep).join('/');

async function scanFolder(root: string, field: string): Promise<Map<string, CorpusFile[]>> {
  const byLanguage = new Map<string, CorpusFile[]>();
  const add = (language: string, files: CorpusFile[], what: string) => {
    if (byLanguage.has(language)) fail(`${root}: two sources for language "${language}" (${what} and ${byLanguage.get(language)!.map((f) => f.name).join(', ')}); keep one`, root);
    byLanguage.set(language, files);
  };
  const entries = (await fsp.readdir(root, { withFileTypes: true })).filter((e) => !e.name.startsWith('.')).sort((a, b) => (a.name < b.name ? -1 : 1));
  for (const entry of entries) {
    const full = path.join(root, entry.name);
    // A `<lang>` link to a folder (shards kept elsewhere, linked in) is a `<lang>/` folder: Dirent.isDirectory() does
    // not follow links, stat does. A link of a file name (`en.txt`) is left to checkFile, which refuses a dangling or
    // looping one; a link that may name a language folder but leads nowhere is refused here, as it is the same mistake.
    let isFolder = entry.isDirectory();
    if (entry.isSymbolicLink() && formatOf(entry.name) === null && isLanguageId(entry.name)) {
      let target: Stats;
      try {
        target = await fsp.stat(full);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        const why = code === 'ENOENT' ? 'its target does not exist' : code === 'ELOOP' ? 'it is a loop of links' : describeError(err);
        fail(`${full}: a link that cannot be followed (${why}); remove it or make it point to a <lang>/ folder of corpus files`, full);
      }
      isFolder = target.isDirectory();
    }
    if (isFolder) {
      // `<lang>/` holding shards (train-00000-of-00002.parquet ...), read in name order.
      const shards = (await fsp.readdir(full)).filter((n) => !n.startsWith('.') && formatOf(n) !== null).sort();
      if (shards.length > 0) add(entry.name, shards.map((n) => ({ file: path.join(full, n), name: toName(root, path.join(full, n)), format: formatOf(n)!, field })), `${entry.name}/`);
      continue;
    }
    const format = formatOf(entry.name);
    if (format === null) continue; // README, manifest, anything else
    const language = entry.name.slice(0, entry.name.length - path.extname(entry.name).length);
    if (language === '' || !isLanguageId(language)) continue; // not a <lang>.<ext> corpus file
    add(language, [{ file: full, name: entry.name, format, field }], entry.name);
  }
  if (byLanguage.size === 0) fail(`${root}: no corpus files found; expected <lang>.txt, <lang>.jsonl, <lang>.parquet or <lang>/ folders of them`, root);
  return new Map([...byLanguage].sort(([a], [b]) => (a < b ? -1 : 1)));
}

const MANIFEST_KEYS = ['field', 'languages'], LANGUAGE_KEYS = ['files', 'field'];

function refuseUnknownKeys(o: object, allowed: readonly string[], where: string, bad: (why: string) => never): void {
  const unknown = Object.keys(o).find((k) => !allowed.includes(k));
  if (unknown !== undefined) bad(`unknown key "${unknown}" ${where} (allowed: ${allowed.map((k) => `"${k}"`).join(', ')})`);
}

function parseManifest(raw: unknown, origin: string, baseDir: string, defaultField: string): Map<string, CorpusFile[]> {
  const bad = (why: string): never => fail(`${origin}: ${why}`, origin);
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) bad('a corpus manifest must be a JSON object');
  const manifest = raw as Partial<CorpusManifest>;
  // A misspelt key ("feild") would otherwise be ignored and the default read in its place, without a word.
  refuseUnknownKeys(manifest, MANIFEST_KEYS, 'at the top level', bad);
  if (manifest.field !== undefined && typeof manifest.field !== 'string') bad('"field" must be a string');
  const field = manifest.field ?? defaultField;
  const languages = manifest.languages;
  if (typeof languages !== 'object' || languages === null || Array.isArray(languages)) bad('expected "languages": { "<lang>": { "files": [...] } }');
  const out = new Map<string, CorpusFile[]>();
  for (const [language, entry] of Object.entries(languages as Record<string, unknown>)) {
    checkLanguageId(language, `${origin}: "languages"`);
    const e = entry as Partial<{ files: unknown; field: unknown }>;
    if (typeof e !== 'object' || e === null || !Array.isArray(e.files) || e.files.length === 0 || !e.files.every((f) => typeof f === 'string' && f !== '')) {
      bad(`languages.${language}: expected { "files": ["<path>", ...] } with at least one path`);
    }
    refuseUnknownKeys(e, LANGUAGE_KEYS, `in languages.${language}`, bad);
    if (e.field !== undefined && typeof e.field !== 'string') bad(`languages.${language}.field must be a string`);
    const files = (e.files as string[]).map((name): CorpusFile => {
      const format = formatOf(name) ?? bad(`languages.${language}: "${name}" is not a .txt, .jsonl or .parquet file`);
      const file = path.resolve(baseDir, name);
      return { file, name: toName(baseDir, file), format, field: (e.field as string | undefined) ?? field };
    });
    out.set(language, files);
  }
  if (out.size === 0) bad('the manifest lists no languages');
  return out;
}

/**
 * Opens a corpus: a folder of `<lang>.<ext>` files / `<lang>/` folders, a manifest file (`*.json`), or a
 * manifest object. Every file is checked now (exists, not empty, Parquet column present), so that a bad
 * corpus fails before profiling starts; JSONL lines are checked as they are read.
 */
export async function openCorpus(pathOrManifest: string | CorpusManifest, options: OpenCorpusOptions = {}): Promise<Corpus> {
  const field = options.field ?? DEFAULT_FIELD;
  let origin: string;
  let byLanguage: Map<string, CorpusFile[]>;
  let fromFolder = false;
  if (typeof pathOrManifest !== 'string') {
    origin = 'manifest object';
    byLanguage = parseManifest(pathOrManifest, origin, path.resolve(options.baseDir ?? '.'), field);
  } else {
    origin = path.resolve(pathOrManifest);
    const stat = await statOrNull(origin);
    if (!stat) fail(`${origin}: corpus not found (give a folder of <lang>.txt/.jsonl/.parquet files or a manifest .json)`, origin);
    fromFolder = stat.isDirectory();
    if (fromFolder) byLanguage = await scanFolder(origin, field);
    else {
      let raw: unknown;
      try {
        raw = JSON.parse(withoutBom(await fsp.readFile(origin, 'utf8')));
      } catch (err) {
        fail(`${origin}: not a corpus folder nor a valid JSON manifest (${describeError(err)})`, origin);
      }
      byLanguage = parseManifest(raw, origin, path.dirname(origin), field);
    }
  }
  const sources = new Map<string, LanguageSource>();
  for (const [language, files] of byLanguage) {
    // A file given twice for one language (listed twice, by two paths, or through a link) would have its documents
    // counted twice; the real path tells.
    const seen = new Map<string, string>();
    for (const f of files) {
      await checkFile(f, language);
      const real = await fsp.realpath(f.file);
      const first = seen.get(real);
      if (first !== undefined) {
        const what = first === f.name ? `lists "${f.name}" twice` : `${fromFolder ? 'holds' : 'lists'} "${first}" and "${f.name}", which are the same file (${real})`;
        fail(`${origin}: language "${language}" ${what}: its documents would be counted twice; ${fromFolder ? 'keep one' : 'list each file once'}`, origin);
      }
      seen.set(real, f.name);
    }
    sources.set(language, fileSource(language, files, options.counter));
  }
  return corpusOf(origin, sources);
}
