// Shared pieces of the identification methods: validating the per-language statistics handed to a method,
// Python-compatible rounding, the two quantile conventions of the reference code, and ranking helpers.
import { LangneuronsError } from '../errors.js';
import { SeqMeansReader } from '../profile/seq-means-reader.js';
import { countingConflict, type ActivationStats, type ModelIdentity, type SeqMeansLocation, type Site, type SiteStats } from '../profile/stats.js';

/** One language's statistics and the file they came from (the file is named in errors and in the mask). */
export interface LanguageStats {
  file: string;
  stats: ActivationStats;
}

/** What every method needs once the inputs are known to agree. */
export interface IdentifyContext {
  model: ModelIdentity;
  site: Site;
  /** Model layers profiled, ascending (meta.layers); slot i of the [layers][width] arrays is layer layers[i]. */
  layers: number[];
  width: number;
  languages: string[];
  inputs: LanguageStats[];
  siteStats: SiteStats[];
}

export function identifyError(message: string, file?: string): LangneuronsError {
  return new LangneuronsError('E_IDENTIFY', file ? `${file}: ${message}` : message, file === undefined ? {} : { file });
}

/**
 * Checks that the statistics can be compared: one file per language, one model (by fingerprint), the same layers,
 * the same token scope and compute mode (as `stats merge` compares them, the token budget aside; a field a file does
 * not record is not compared) and the same width at `site`. `needTokens` refuses a language with no token (its
 * probabilities would be 0/0).
 */
export function checkInputs(inputs: readonly LanguageStats[], site: Site, needTokens = true): IdentifyContext {
  const first = inputs[0];
  if (!first) throw identifyError('no language statistics given');
  const m0 = first.stats.meta;
  const seen = new Map<string, string>();
  const siteStats: SiteStats[] = [];
  let width = 0;
  for (const { file, stats } of inputs) {
    const meta = stats.meta;
    const lang = meta.language;
    const dup = seen.get(lang);
    if (dup !== undefined)
      throw identifyError(dup === file ? `language "${lang}" is given twice: this file, twice` : `language "${lang}" is given twice (also in ${dup}); merge the shards first`, file);
    seen.set(lang, file);
    if (meta.model.fingerprint !== m0.model.fingerprint)
      throw identifyError(`statistics of another model: ${meta.model.name} (${meta.model.fingerprint.slice(0, 12)}) here, ` +
        `${m0.model.name} (${m0.model.fingerprint.slice(0, 12)}) in ${first.file}`, file);
    if (meta.layers.join(',') !== m0.layers.join(','))
      throw identifyError(`layers profiled [${meta.layers.join(', ')}] differ from [${m0.layers.join(', ')}] in ${first.file}`, file);
    // A window's counts and a sentence's, or an f32 run's and a bf16 run's, differ for the same text: ranking languages
    // against each other on them would measure the difference in counting, not in language.
    const counting = countingConflict(meta, m0, { acrossLanguages: true });
    if (counting)
      throw new LangneuronsError('E_IDENTIFY', `${file} vs ${first.file}: ${counting}; languages are compared only on statistics counted alike: ` +
        'profile them with the same --scope, --max-len, BOS options and --compute', { file });
    const st = stats.sites.get(site);
    if (!st) throw identifyError(`no statistics for site "${site}" (have: ${[...stats.sites.keys()].join(', ')})`, file);
    if (width && st.width !== width) throw identifyError(`site "${site}" has width ${st.width}, ${first.file} has ${width}`, file);
    width = st.width;
    if (needTokens && !(stats.tokens > 0))
      throw identifyError(`language "${lang}" has ${stats.tokens} tokens: its activation probabilities are undefined; profile it first`, file);
    siteStats.push(st);
  }
  return { model: m0.model, site, layers: [...m0.layers], width, languages: inputs.map((x) => x.stats.meta.language), inputs: [...inputs], siteStats };
}

/** Python 3's round(): half to even. The references compute `round(len(x) * rate)` in Python. */
export function pyRound(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/**
 * - `kthvalue` (Tang): torch.kthvalue(x, k) with k = round(q·N): the k-th smallest value (1-based).
 * - `interpolated` (Mondal): torch.quantile(x, q): linear interpolation between the order statistics at q·(N−1).
 */
export type QuantileVariant = 'kthvalue' | 'interpolated';

/** The q quantile of `values` (not modified) under one of the two conventions. */
export function quantile(values: Float64Array, q: number, variant: QuantileVariant): number {
  const n = values.length;
  if (n === 0) throw identifyError('quantile of an empty set');
  if (!(q >= 0 && q <= 1)) throw identifyError(`quantile ${q} is not in [0, 1]`);
  const sorted = Float64Array.from(values).sort();
  if (variant === 'kthvalue') {
    // torch refuses k outside [1, N]; clamping keeps q = 0 usable and is the only sensible reading.
    const k = Math.min(n, Math.max(1, pyRound(n * q)));
    return sorted[k - 1]!;
  }
  const pos = q * (n - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(n - 1, lo + 1);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

/**
 * Flat indices (slot·width + unit) of the `count` largest (or smallest) scores; ties are broken by the lower flat
 * index, so the result is deterministic (torch.topk leaves the order of ties unspecified). NaN never ranks.
 */
export function topIndices(scores: Float64Array, count: number, largest: boolean): number[] {
  const ranked = scores.filter((x) => !Number.isNaN(x));
  const n = Math.min(Math.max(0, count), ranked.length);
  if (n === 0) return [];
  // Only the n best are ordered: the n-th best value comes from a sort of the values (native, no comparator), and
  // only the indices that beat or tie it are sorted by comparator. Sorting every index by comparator took ~0.25 s
  // per language at an 8B model's 458,752 units: over a minute for act-prob or ap over 100 languages.
  ranked.sort();
  const cut = largest ? ranked[ranked.length - n]! : ranked[n - 1]!;
  const better: number[] = [], tied: number[] = [];
  for (let i = 0; i < scores.length; i++) {
    const x = scores[i]!;
    if (largest ? x > cut : x < cut) better.push(i);
    else if (x === cut) tied.push(i); // ascending: ties go by the lower flat index
  }
  const sign = largest ? -1 : 1;
  better.sort((a, b) => sign * (scores[a]! - scores[b]!) || a - b);
  return better.concat(tied.slice(0, n - better.length));
}

/** Checks a rate option: a number in [0, 1]. */
export function checkRate(name: string, value: number): number {
  if (typeof value !== 'number' || !(value >= 0 && value <= 1)) throw identifyError(`option ${name} must be a number in [0, 1], got ${String(value)}`);
  return value;
}

/** Bytes of per-sequence means ap and raw-activated hold at a time by default when they read them from files. */
export const DEFAULT_SEQ_MEANS_BUDGET = 256 * 2 ** 20;

/** How ap and raw-activated read the per-sequence means. */
export interface SequenceMeansOptions {
  /**
   * Bytes of per-sequence means held at a time (default 256 MiB): statistics read without them (readStats with
   * `seqMeans: false`) are read from their files a block of units at a time, as many units as the budget holds of
   * every sequence the method needs together (at least one). Memory is then this plus the per-unit results, whatever
   * the files' sizes; the masks are the same for every budget.
   */
  seqMeansBudget?: number;
  /** Called after each block of units is read (progress; tests sample memory there). */
  onBlock?: (block: SequenceMeansBlock) => void;
}

/** A block of units [start, start + size) of the site's `units` (layers × width), read for `languages`. */
export interface SequenceMeansBlock { site: Site; start: number; size: number; units: number; languages: string[] }

/** The budget option, checked: a positive number of bytes. */
export function seqMeansBudgetOf(o: SequenceMeansOptions): number {
  const b = o.seqMeansBudget ?? DEFAULT_SEQ_MEANS_BUDGET;
  if (typeof b !== 'number' || !(b > 0) || !Number.isFinite(b)) throw identifyError(`option seqMeansBudget must be a positive number of bytes, got ${String(b)}`);
  return b;
}

/** Units read per block: as many of `sequences` rows as `budget` bytes hold (float32), at least 1, at most `units`. */
export function unitsPerBlock(budget: number, sequences: number, units: number): number {
  return Math.max(1, Math.min(units, Math.floor(budget / (4 * Math.max(1, sequences)))));
}

/** Units [start, start + size) of every sequence: sequence s, unit start + u is data[base + s·stride + u]. */
export interface UnitRange { data: Float32Array; base: number; stride: number }

/** One language's per-sequence means at the site, in memory or in its statistics file. */
export interface SequenceMeans {
  language: string;
  file: string;
  /** Sequences (rows of [layers][width]). */
  count: number;
  /** Units [start, start + size) of every sequence: the means themselves when in memory, else a buffer the next read reuses. */
  read(start: number, size: number): UnitRange;
  /** Drops the read buffer (a file's; the file stays open). */
  release(): void;
}

/**
 * Each language's per-sequence means at the site ([sequences][layers][width]), in input order, checked as far as
 * can be without reading them: present, of whole sequences, not empty. Means in memory are checked whole here;
 * means left in their files (SiteStats.seqMeansInFile) are checked block by block as they are read, a value that is
 * not finite being refused in readStats's words (the file, the tensor, the first such element in the file's order,
 * of the first such file in input order). close() closes the files.
 */
export function sequenceMeansOf(ctx: IdentifyContext, method: string): { sources: SequenceMeans[]; close(): void } {
  const units = ctx.layers.length * ctx.width;
  type Plan = { language: string; file: string; count: number; means?: Float32Array; location?: SeqMeansLocation };
  const plans: Plan[] = ctx.siteStats.map((st, k) => {
    const file = ctx.inputs[k]!.file;
    const lang = ctx.languages[k]!;
    const sm = st.seqMeans;
    if (!sm) {
      const at = st.seqMeansInFile;
      if (!at) throw identifyError(`${method} needs per-sequence means at site "${ctx.site}" for "${lang}"; profile with sequence means`, file);
      const [count, layers, width] = at.shape;
      if (layers !== ctx.layers.length || width !== ctx.width)
        throw identifyError(`sequence means of "${lang}" have shape [${at.shape.join(', ')}] in ${at.file}, not [sequences, ${ctx.layers.length}, ${ctx.width}]`, file);
      if (count === 0) throw identifyError(`language "${lang}" has no sequence means (0 sentences)`, file);
      return { language: lang, file, count, location: at };
    }
    if (sm.length % units !== 0) throw identifyError(`sequence means of "${lang}" hold ${sm.length} values, not a multiple of ${ctx.layers.length}×${ctx.width}`, file);
    if (sm.length === 0) throw identifyError(`language "${lang}" has no sequence means (0 sentences)`, file);
    for (let i = 0; i < sm.length; i++) if (!Number.isFinite(sm[i]!)) throw identifyError(`sequence means of "${lang}" hold ${sm[i]} at sequence ${Math.floor(i / units)}`, file);
    return { language: lang, file, count: sm.length / units, means: sm };
  });
  const readers: SeqMeansReader[] = [];
  const close = () => { for (const r of readers) r.close(); };
  try {
    const sources = plans.map((p): SequenceMeans => {
      const { language, file, count } = p;
      if (p.means) {
        const data = p.means;
        return { language, file, count, read: (start) => ({ data, base: start, stride: units }), release: () => {} };
      }
      const reader = new SeqMeansReader(p.location!);
      readers.push(reader);
      return {
        language, file, count,
        read: (start, size) => {
          const { values, nonFinite } = reader.read(start, size);
          if (nonFinite >= 0) {
            // Named as reading every file whole named it: the first file in input order, its first element.
            for (const r of readers) r.refuseNonFinite();
            throw new LangneuronsError('E_STATS', `${reader.file}: tensor "${reader.tensor}" held a value that is not finite when read in blocks, ` +
              'but none when read whole: is the file being written?', { file: reader.file });
          }
          return { data: values, base: 0, stride: size };
        },
        release: () => reader.release(),
      };
    });
    return { sources, close };
  } catch (e) {
    close();
    throw e;
  }
}
