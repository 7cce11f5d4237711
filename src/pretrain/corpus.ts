// The pre-training text of a bundled model, built from the UDHR (src/corpus/udhr.ts): every language's train
// articles (every article but the held-out ones), one article per line, all lines shuffled with a seed. A
// low-resource language contributes only its first N train articles (in article order); its other train articles
// are never seen, so that fine-tuning on them later has something to show.
import { createHash } from 'node:crypto';

import { LangneuronsError } from '../errors.js';
import { seededRandom as rng } from '../identify/mask-ops.js';
import { DEFAULT_HELDOUT_ARTICLES, resolveUdhrLanguage, udhrArticles } from '../corpus/udhr.js';

export interface LowResource {
  lang: string;
  /** Train articles this language keeps. */
  articles: number;
}

export interface PretrainCorpusOptions {
  langs: readonly string[];
  lowResource?: LowResource | null;
  heldoutArticles?: readonly number[];
  seed: number;
}

export interface LanguagePlan {
  id: string;
  udhrCode: string;
  name: string;
  /** Article numbers in the training text. */
  trainArticles: number[];
  /** Train-split articles left out of the training text (low-resource language only). */
  unseenArticles: number[];
  heldoutArticles: number[];
  trainBytes: number;
}

export interface PretrainCorpus {
  /** Shuffled training lines (one article each). */
  lines: string[];
  /** Held-out articles per language id, in article order. */
  heldout: Map<string, string[]>;
  /** Train articles per language id, as in the training text (for per-language train loss). */
  train: Map<string, string[]>;
  languages: LanguagePlan[];
  trainSha256: string;
  heldoutSha256: string;
}

const sha = (s: string) => createHash('sha256').update(s).digest('hex');

/** Parses `mt:3` (language:train articles). */
export function parseLowResource(spec: string): LowResource {
  const m = /^([^:\s]+):(\d+)$/.exec(spec.trim());
  if (!m || Number(m[2]) < 1)
    throw new LangneuronsError('E_OPTIONS', `--low-resource must be <lang>:<train articles> with at least 1 article (e.g. mt:3), got '${spec}'`, { field: 'low-resource' });
  return { lang: m[1]!, articles: Number(m[2]) };
}

/** Checks the language list (known UDHR ids, no duplicates, the low-resource language among them). */
export function checkLanguages(langs: readonly string[], low?: LowResource | null): void {
  if (langs.length === 0) throw new LangneuronsError('E_OPTIONS', '--langs must name at least one UDHR language', { field: 'langs' });
  const codes = new Map<string, string>();
  for (const id of langs) {
    let l: ReturnType<typeof resolveUdhrLanguage>;
    try {
      l = resolveUdhrLanguage(id); // throws E_CORPUS naming the id
    } catch (e) {
      // The same message, with the option it came from (a --config file names its key by it).
      if (e instanceof LangneuronsError && e.field === undefined) throw new LangneuronsError(e.code, e.message, { field: 'langs', ...(e.file ? { file: e.file } : {}) });
      throw e;
    }
    const before = codes.get(l.udhrCode);
    if (before !== undefined) throw new LangneuronsError('E_OPTIONS', `--langs names the same translation twice: '${before}' and '${id}' (${l.udhrCode})`, { field: 'langs' });
    codes.set(l.udhrCode, id);
  }
  if (low && !langs.includes(low.lang))
    throw new LangneuronsError('E_OPTIONS', `--low-resource language '${low.lang}' is not in --langs (${langs.join(',')})`, { field: 'low-resource' });
}

export function buildPretrainCorpus(o: PretrainCorpusOptions): PretrainCorpus {
  checkLanguages(o.langs, o.lowResource);
  const held = new Set(o.heldoutArticles ?? DEFAULT_HELDOUT_ARTICLES);
  const lines: string[] = [];
  const heldout = new Map<string, string[]>(), train = new Map<string, string[]>();
  const languages: LanguagePlan[] = [];
  for (const id of o.langs) {
    const info = resolveUdhrLanguage(id);
    const articles = udhrArticles(id);
    let trainArts = articles.filter((a) => !held.has(a.number));
    const heldArts = articles.filter((a) => held.has(a.number));
    // Errors of the held-out choice name --heldout (default or given): the option to change.
    const span = () => { const n = articles.map((a) => a.number); return `its articles are ${Math.min(...n)}..${Math.max(...n)}`; };
    if (heldArts.length === 0)
      throw new LangneuronsError('E_OPTIONS', `--heldout ${[...held].join(',')}: UDHR ${id} has none of these articles (${span()}); give others`, { field: 'heldout' });
    if (trainArts.length === 0)
      throw new LangneuronsError('E_OPTIONS', `--heldout ${[...held].join(',')}: holds every article of UDHR ${id}, which leaves it no training text; give fewer`, { field: 'heldout' });
    let unseen: number[] = [];
    if (o.lowResource?.lang === id) {
      if (o.lowResource.articles >= trainArts.length)
        throw new LangneuronsError('E_OPTIONS', `--low-resource ${id}:${o.lowResource.articles} keeps every train article (${id} has ${trainArts.length}); give fewer`, { field: 'low-resource' });
      unseen = trainArts.slice(o.lowResource.articles).map((a) => a.number);
      trainArts = trainArts.slice(0, o.lowResource.articles);
    }
    lines.push(...trainArts.map((a) => a.text));
    train.set(id, trainArts.map((a) => a.text));
    heldout.set(id, heldArts.map((a) => a.text));
    languages.push({
      id, udhrCode: info.udhrCode, name: info.name, trainArticles: trainArts.map((a) => a.number), unseenArticles: unseen,
      heldoutArticles: heldArts.map((a) => a.number), trainBytes: trainArts.reduce((s, a) => s + Buffer.byteLength(a.text), 0),
    });
  }
  const r = rng(o.seed);
  for (let i = lines.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [lines[i], lines[j]] = [lines[j]!, lines[i]!];
  }
  const heldText = [...heldout].map(([id, a]) => `${id}\n${a.join('\n')}`).join('\n');
  return { lines, heldout, train, languages, trainSha256: sha(lines.join('\n') + '\n'), heldoutSha256: sha(heldText) };
}
