// ActivationStats: per-language, per-(layer, unit) activation statistics, the output of `profile` and the input of
// `identify`. Everything is additive, so shards profiled on different machines merge into exactly the single-run
// result (counts bit for bit; float64 sums up to summation order).
//
// File layout (one safetensors file per language): tensors `<site>.<field>` for each profiled site, plus
// `tokens` and `sequences` (I64 [1]); `__metadata__.langneurons` holds StatsMeta as JSON.
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';

import { isLanguageId } from '../corpus/language-id.js';
import { LangneuronsError } from '../errors.js';
import type { ModelConfig } from '../model/config.js';
import {
  readSafetensorsHeader, readTensor, writeSafetensors, type SafetensorsHeader, type TensorData, type TensorInfo, type TensorToWrite,
} from '../io/safetensors.js';

/** Where a unit's value is read (METHODS.md): FFN sites, the outputs of every linear projection (Kojima), and
 * `resid`, the residual stream after each layer (hidden wide; alignment across layers, docs/ANALYSES.md). */
export type Site = 'act' | 'gate' | 'h' | 'up' | 'q' | 'k' | 'v' | 'o' | 'down' | 'resid';
export const SITES: readonly Site[] = ['act', 'gate', 'h', 'up', 'q', 'k', 'v', 'o', 'down', 'resid'];
/** Sites whose units are the FFN neurons (width = intermediate size). */
export const NEURON_SITES: readonly Site[] = ['act', 'gate', 'h', 'up'];

/** Units per layer at every site of a model of this shape. */
export function siteWidths(c: Pick<ModelConfig, 'intermediateSize' | 'hiddenSize' | 'numHeads' | 'numKvHeads' | 'headDim'>): Record<Site, number> {
  const ffn = c.intermediateSize, kv = c.numKvHeads * c.headDim;
  return { act: ffn, gate: ffn, h: ffn, up: ffn, q: c.numHeads * c.headDim, k: kv, v: kv, o: c.hiddenSize, down: c.hiddenSize, resid: c.hiddenSize };
}

export const STATS_FORMAT = 'langneurons-stats/1';

export interface ModelIdentity {
  /** Folder name of the checkpoint (informational). */
  name: string;
  modelType: string;
  layers: number;
  hidden: number;
  intermediate: number;
  /** sha256 over config.json's architecture fields and the checkpoint's tensor table (names, shapes, dtypes). */
  fingerprint: string;
}

export interface TokenScope {
  /** 'windows': one token stream cut into windows of maxLen (Tang/Gurgurov); 'sentences': each line alone (Rahmanisa). */
  mode: 'windows' | 'sentences';
  maxLen: number;
  /** Whether a BOS token is fed before each window / sentence (not counted unless countBos). */
  bos: boolean;
  /**
   * Sentences scope with bos only: the BOS is counted too, as one of the sentence's tokens (in the counts, sums,
   * histograms and the sequence mean). Kojima et al.'s code (selfcond) takes each sentence's mean over every token
   * the tokenizer gives, BOS included. Absent = false (written only when true).
   */
  countBos?: boolean;
  /**
   * Sentences scope: a sentence with more than maxLen tokens is skipped ('drop', Kojima's selfcond drops sentences over
   * its seq_len) instead of cut to maxLen ('truncate', the default). Absent = 'truncate' (written only when 'drop').
   */
  longSentences?: 'truncate' | 'drop';
  /**
   * Windows scope: the last window, shorter than maxLen where the stream (or the token budget) ends, is kept
   * ('keep', the default) or left out ('drop': Tang's activation.py reshapes the stream into whole windows only,
   * `l // max_length * max_length`). Absent = 'keep' (written only when 'drop').
   */
  partialWindow?: 'keep' | 'drop';
  /** Padding counted (Mondal's XNLI variant only). */
  countPadding: boolean;
  /** Token budget per language (0 = the whole corpus). */
  tokenBudget: number;
}

export interface StatsMeta {
  format: typeof STATS_FORMAT;
  model: ModelIdentity;
  language: string;
  scope: TokenScope;
  /** Layers profiled, ascending (all by default; profiling stops after the last). */
  layers: number[];
  corpus: { files: string[]; fingerprint: string };
  toolVersion: string;
  /** Shards merged into this file (1 for a single run). */
  shards: number;
  /** What each merged shard counted (absent in files written before parts were recorded): merges refuse overlaps. */
  parts?: StatsPart[];
  /**
   * The engine's compute mode (f32, or bf16 products): bf16 moves values near 0 across it, so most neurons' counts
   * differ from an f32 run's and the two are never merged. Absent in files written before it was recorded and in
   * imported files: "not recorded" is its own mode, mergeable only with other files that do not record it (such a
   * file may come from either mode).
   */
  compute?: ComputeMode;
}

export type ComputeMode = 'f32' | 'bf16';
const COMPUTE_MODES: readonly ComputeMode[] = ['f32', 'bf16'];

/** The identity of one profiled part: which corpus, which shard of it (null: all of it), which budget, which run. */
export interface StatsPart { corpus: string; shard: [number, number] | null; budget: number; id: string }

/** Why parts p and q count some tokens twice, or null (distinct shards of one split, or other corpora). */
export function partsOverlap(p: StatsPart, q: StatsPart): string | null {
  const where = (x: StatsPart) => (x.shard ? `shard ${x.shard[0]}/${x.shard[1]}` : 'the whole corpus');
  if (p.id === q.id) return `both hold the same profiling run (${p.id}): the same file given twice?`;
  if (p.corpus !== q.corpus) return null;
  if (p.shard && q.shard && p.shard[1] === q.shard[1] && p.shard[0] !== q.shard[0]) return null;
  return `both count ${where(p)}${where(p) === where(q) ? '' : ` and ${where(q)}`} of corpus ${p.corpus.slice(0, 12)}: tokens would be counted twice`;
}

export interface Histogram {
  /** B + 1 ascending bin edges shared by every unit; values below edges[0] go to bin 0, at or above edges[B] to bin B-1. */
  edges: Float64Array;
  /** [layers][width][B] counts. */
  counts: Float64Array;
}

export interface SiteStats {
  site: Site;
  /** Units per layer at this site. */
  width: number;
  /** [layers][width]: tokens with value > 0. */
  overZero: Float64Array;
  /** [layers][width]: sum and sum of squares of the value. */
  sum: Float64Array;
  sumSq: Float64Array;
  /** [layers][width]: sum of |value| (Mondal's mean |act|). Absent in files written before it was recorded. */
  absSum?: Float64Array;
  histogram?: Histogram;
  /** Counts of value > a per-unit threshold from an earlier pass (e.g. Mondal's p90). */
  above?: { source: string; thresholds: Float32Array; counts: Float64Array };
  /** [sequences][layers][width]: mean over each sequence's counted tokens (Kojima's AP, Rahmanisa's p_max/p_median). */
  seqMeans?: Float32Array;
  /**
   * Where the per-sequence means lie in the statistics file when they were left out of memory (readStats with
   * `seqMeans: false`): ap and raw-activated then read them from there a block of units at a time
   * (src/profile/seq-means-reader.ts), gigabytes a language at 8B never being held at once.
   */
  seqMeansInFile?: SeqMeansLocation;
  /**
   * The source recorded no sums (a Tang counts file with only 'n' and 'over_zero'): `sum` and `sumSq` then throw when
   * read (siteWithoutSums), so a mean is refused instead of being computed from zeros, and the file has no sum tensors.
   */
  sumsAbsent?: true;
}

/** A `<site>.seq_means` tensor of a statistics file: F32 [sequences, layers, width] from byte `byteOffset` of `file`. */
export interface SeqMeansLocation {
  /** The statistics file as it was named to readStats (what messages name). */
  file: string;
  /** The same file's absolute path, resolved when the statistics were read: what is opened, whatever the current
   *  folder is by the time the means are ranked. */
  path: string;
  /** The tensor's name, `<site>.seq_means`. */
  tensor: string;
  /** Absolute position of its first byte in the file. */
  byteOffset: number;
  shape: [sequences: number, layers: number, width: number];
  /** The file's safetensors metadata as read (JSON.stringify of the header's `__metadata__`): a file written again
   *  since (another profile, merge or model: another part id or fingerprint) is refused when the means are read, even
   *  where its tensors lie where they lay. Absent: only the tensor's dtype, shape and place are compared. */
  metadata?: string;
}

/**
 * A site whose source recorded no sums. Reading its `sum` or `sumSq` throws an error naming `source`: what needs
 * means (an intervention setting neurons to their mean, the activations analysis) fails in one line, and what needs
 * only counts (LAPE, act-prob) works.
 */
export function siteWithoutSums(st: Omit<SiteStats, 'sum' | 'sumSq' | 'sumsAbsent'>, source: string): SiteStats {
  const refuse = (): never => {
    throw new LangneuronsError('E_STATS', `${source}: site ${st.site} holds no sums of the values (its source recorded only counts), ` +
      'so no mean or variance can be read from it; use statistics profiled with langneurons, or a method that needs only counts', { file: source });
  };
  const out = { ...st, sumsAbsent: true } as SiteStats;
  Object.defineProperty(out, 'sum', { get: refuse, enumerable: true });
  Object.defineProperty(out, 'sumSq', { get: refuse, enumerable: true });
  return out;
}

export interface ActivationStats {
  meta: StatsMeta;
  /** Tokens counted (n_k). */
  tokens: number;
  /** Sequences (windows or sentences) seen. */
  sequences: number;
  sites: Map<Site, SiteStats>;
}

/** Index of (layer slot, unit) in the [layers][width] arrays; `layerSlot` indexes meta.layers. */
export const unitIndex = (width: number, layerSlot: number, unit: number): number => layerSlot * width + unit;

/** The statistics file of `language` in `where`: a folder of <language>.safetensors, or one statistics file. */
export function languageStatsFile(where: string, language: string): string {
  // A comma-separated list of files and folders (no path of that name): the language's <lang>.safetensors among them,
  // e.g. the statistics of each language in the output folder of its own profiling step (a sweep's).
  if (where.includes(',') && !existsSync(where)) {
    const entries = where.split(',').map((e) => e.trim()).filter(Boolean);
    const name = `${language}.safetensors`;
    for (const e of entries) {
      if (path.basename(e) === name) return e;
      if (existsSync(path.join(e, name)) && statSync(e).isDirectory()) return path.join(e, name);
    }
    throw new LangneuronsError('E_STATS', `statistics: no ${name} among ${entries.join(', ')} (a list names files <lang>.safetensors or folders holding them)`, { field: '--stats' });
  }
  if (where.endsWith('.safetensors') || (existsSync(where) && statSync(where).isFile())) return where;
  return path.join(where, `${language}.safetensors`);
}

function fail(file: string, msg: string): never {
  throw new LangneuronsError('E_STATS', `${file}: ${msg}`, { file });
}

/** Writes statistics atomically; `extraMetadata` entries (e.g. a resume position) go beside "langneurons". */
export async function writeStats(file: string, s: ActivationStats, extraMetadata: Record<string, string> = {}): Promise<void> {
  const t: Record<string, TensorToWrite> = {
    tokens: { dtype: 'I64', shape: [1], data: BigInt64Array.of(BigInt(s.tokens)) },
    sequences: { dtype: 'I64', shape: [1], data: BigInt64Array.of(BigInt(s.sequences)) },
  };
  const L = s.meta.layers.length;
  const counts = countsToI64;
  for (const [site, st] of s.sites) {
    const shape = [L, st.width];
    t[`${site}.over_zero`] = { dtype: 'I64', shape, data: counts(st.overZero) };
    if (!st.sumsAbsent) { // no sums recorded: no sum tensors (readStats reads both missing as "absent", never as zeros)
      t[`${site}.sum`] = { dtype: 'F64', shape, data: st.sum };
      t[`${site}.sum_sq`] = { dtype: 'F64', shape, data: st.sumSq };
    }
    if (st.absSum) t[`${site}.abs_sum`] = { dtype: 'F64', shape, data: st.absSum };
    if (st.histogram) {
      const B = st.histogram.edges.length - 1;
      t[`${site}.hist_edges`] = { dtype: 'F64', shape: [B + 1], data: st.histogram.edges };
      t[`${site}.hist_counts`] = { dtype: 'I64', shape: [L, st.width, B], data: counts(st.histogram.counts) };
    }
    if (st.above) {
      t[`${site}.above_thresholds`] = { dtype: 'F32', shape, data: st.above.thresholds };
      t[`${site}.above_counts`] = { dtype: 'I64', shape, data: counts(st.above.counts) };
    }
    if (st.seqMeans) t[`${site}.seq_means`] = { dtype: 'F32', shape: [st.seqMeans.length / (L * st.width), L, st.width], data: st.seqMeans };
  }
  const aboveSources = Object.fromEntries([...s.sites].filter(([, st]) => st.above).map(([k, st]) => [k, st.above!.source]));
  await writeSafetensors(file, t, { ...extraMetadata, langneurons: JSON.stringify({ ...s.meta, aboveSources }) });
}

/** The metadata key of a profile's checkpoint (its resume position): a checkpoint holds the statistics of part of
 *  the corpus so far, not a finished language. */
export const CHECKPOINT_KEY = 'langneurons_checkpoint';

/** A finished statistics file. A profile's checkpoint (`.<lang>.checkpoint.safetensors`) is refused: merged or ranked
 *  as if finished, it silently leaves out the corpus the stopped run had not reached. */
export async function readStats(file: string, parts: StatsParts = {}): Promise<ActivationStats> {
  const { stats, metadata } = await readStatsFile(file, parts);
  if (metadata[CHECKPOINT_KEY] !== undefined)
    fail(file, `the checkpoint of a profile run that was stopped (${stats.tokens} tokens so far), not finished statistics: run the same profile command again to finish it (it resumes from here)`);
  return stats;
}

/**
 * The large optional parts of a statistics file, read unless false. A reader that does not use them leaves them out:
 * the per-sequence means take 1.8 MB a sequence at an 8B model's `act` (gigabytes a language, most of the file) and a
 * histogram 8 bytes a bin per unit, while the counts LAPE ranks take 3.7 MB. Left out, only their shapes are checked,
 * and the per-sequence means' place in the file is kept (SiteStats.seqMeansInFile): ap and raw-activated read them
 * from there a block of units at a time, checking their values as they go.
 */
export interface StatsParts { seqMeans?: boolean; histogram?: boolean }

/** The statistics and every metadata entry of the file (for checkpoints that carry a resume position). */
export async function readStatsFile(file: string, parts: StatsParts = {}): Promise<{ stats: ActivationStats; metadata: Record<string, string> }> {
  let header: SafetensorsHeader;
  const tensors = new Map<string, { info: TensorInfo; data: TensorData }>();
  try {
    header = await readSafetensorsHeader(file);
  } catch (e) {
    // The safetensors reader names the file by its base name; a statistics input is named by its path, as given.
    const said = (e instanceof Error ? e.message : String(e)).replace(`${path.basename(file)}: `, '');
    fail(file, /^(cannot open|is not a regular file)/.test(said) ? said : `not a langneurons statistics file (not a safetensors file: ${said})`);
  }
  // identify writes .safetensors masks, often beside the statistics: such a file is named as what it is.
  if (header.metadata?.['langneurons'] === undefined && header.metadata?.['langneurons_mask'] !== undefined)
    fail(file, 'a langneurons mask, not a statistics file');
  try {
    const leftOut = (name: string) => (parts.seqMeans === false && name.endsWith('.seq_means')) || (parts.histogram === false && name.endsWith('.hist_counts'));
    // A part left out keeps its header entry (its dtype and shape are checked), not its data.
    for (const info of header.tensors) tensors.set(info.name, { info, data: leftOut(info.name) ? new Float64Array(0) : await readTensor(file, info) });
  } catch (e) {
    if (e instanceof LangneuronsError) throw e;
    fail(file, `cannot read the statistics file: ${(e as Error).message}`);
  }
  const meta = parseStatsMeta(file, header.metadata?.['langneurons']);
  const L = meta.layers.length;
  const get = (name: string, dtype: string) => {
    const x = tensors.get(name);
    if (!x) return undefined;
    if (x.info.dtype !== dtype) fail(file, `tensor "${name}" has dtype ${x.info.dtype}, expected ${dtype}`);
    return x;
  };
  const need = (name: string, dtype: string) => get(name, dtype) ?? fail(file, `missing tensor "${name}"`);
  const count = (name: string) => {
    const v = Number((need(name, 'I64').data as BigInt64Array)[0]);
    if (!(Number.isSafeInteger(v) && v >= 0)) fail(file, `tensor "${name}" holds ${v}, not a count`);
    return v;
  };
  const tokens = count('tokens');
  const sequences = count('sequences');
  // Impossible values would silently move every mask computed from the file: one pass over each array refuses them.
  const toF64 = (d: unknown) => countsToF64(d as BigInt64Array);
  const sites = new Map<Site, SiteStats>();
  for (const site of SITES) {
    const oz = get(`${site}.over_zero`, 'I64');
    if (!oz) continue;
    const [l, width] = oz.info.shape;
    if (oz.info.shape.length !== 2 || l !== L || !width) fail(file, `tensor "${site}.over_zero" has shape [${oz.info.shape.join(', ')}], expected [${L}, width]`);
    const W = width!;
    const shapeOk = (name: string, want: number[]) => {
      const x = tensors.get(name)!;
      if (x.info.shape.join(',') !== want.join(',')) fail(file, `tensor "${name}" has shape [${x.info.shape.join(', ')}], expected [${want.join(', ')}]`);
    };
    const overZero = inRange(file, `${site}.over_zero`, [L, W], toF64(oz.data), 0, tokens, `a count of tokens (0 to tokens = ${tokens})`);
    const sumT = get(`${site}.sum`, 'F64'), sumSqT = get(`${site}.sum_sq`, 'F64');
    let st: SiteStats;
    if (!sumT && !sumSqT) {
      st = siteWithoutSums({ site, width: W, overZero }, file);
    } else {
      const sum = need(`${site}.sum`, 'F64').data as Float64Array, sumSq = need(`${site}.sum_sq`, 'F64').data as Float64Array;
      shapeOk(`${site}.sum`, [L, W]);
      shapeOk(`${site}.sum_sq`, [L, W]);
      st = { site, width: W, overZero,
        sum: inRange(file, `${site}.sum`, [L, W], sum, -Infinity, Infinity, 'a finite sum'),
        sumSq: inRange(file, `${site}.sum_sq`, [L, W], sumSq, 0, Infinity, 'a finite sum of squares (≥ 0)') };
    }
    const abs = get(`${site}.abs_sum`, 'F64');
    if (abs) {
      shapeOk(`${site}.abs_sum`, [L, W]);
      st.absSum = inRange(file, `${site}.abs_sum`, [L, W], abs.data as Float64Array, 0, Infinity, 'a finite sum of |value| (≥ 0)');
    }
    const edges = get(`${site}.hist_edges`, 'F64');
    if (edges) {
      const e = edges.data as Float64Array, B = e.length - 1;
      if (edges.info.shape.length !== 1 || B < 1) fail(file, `tensor "${site}.hist_edges" has shape [${edges.info.shape.join(', ')}], expected [bins + 1] with at least one bin`);
      // Ascending, not strictly: --histogram lo:hi:bins over a range narrow for its magnitude may round two edges equal.
      for (let i = 0; i <= B; i++)
        if (!Number.isFinite(e[i]!) || (i > 0 && !(e[i]! >= e[i - 1]!))) fail(file, `tensor "${site}.hist_edges" is not finite and ascending (at edge ${i}: ${e[i]})`);
      need(`${site}.hist_counts`, 'I64');
      shapeOk(`${site}.hist_counts`, [L, W, B]);
      if (parts.histogram !== false) st.histogram = { edges: e, counts: inRange(file, `${site}.hist_counts`, [L, W, B], toF64(tensors.get(`${site}.hist_counts`)!.data), 0, Infinity, 'a count (≥ 0)') };
    }
    const th = get(`${site}.above_thresholds`, 'F32');
    if (th) {
      shapeOk(`${site}.above_thresholds`, [L, W]);
      need(`${site}.above_counts`, 'I64');
      shapeOk(`${site}.above_counts`, [L, W]);
      const counts = inRange(file, `${site}.above_counts`, [L, W], toF64(tensors.get(`${site}.above_counts`)!.data), 0, tokens, `a count of tokens (0 to tokens = ${tokens})`);
      st.above = { source: meta.aboveSources?.[site] ?? '', thresholds: th.data as Float32Array, counts };
    }
    const sm = get(`${site}.seq_means`, 'F32');
    if (sm) {
      // One row per sequence that counted a token (the engine writes no row for the others), so rows = sequences.
      shapeOk(`${site}.seq_means`, [sequences, L, W]);
      if (parts.seqMeans !== false) st.seqMeans = inRange(file, `${site}.seq_means`, [sequences, L, W], sm.data as Float32Array, -Infinity, Infinity, SEQ_MEAN_IS);
      else st.seqMeansInFile = { file, path: path.resolve(file), tensor: `${site}.seq_means`, byteOffset: sm.info.byteOffset, shape: [sequences, L, W],
        metadata: JSON.stringify(header.metadata) };
    }
    sites.set(site, st);
  }
  if (!sites.size) fail(file, 'holds no site statistics');
  delete meta.aboveSources;
  return { stats: { meta, tokens, sequences, sites }, metadata: { ...header.metadata } };
}

// Counts convert element by element in a loop. TypedArray.from(counts, mapFn) first copies the values into a JS array:
// ten times slower, and past ~112M values (an 8B model's histogram of 256 bins per neuron) V8 aborts the process
// ("invalid array length ... heap out of memory"), which no catch sees.
function countsToI64(a: Float64Array): BigInt64Array {
  const out = new BigInt64Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = BigInt(a[i]!);
  return out;
}

function countsToF64(a: BigInt64Array): Float64Array {
  const out = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = Number(a[i]!);
  return out;
}

/** What a per-sequence mean must be (the refusal's last words; the streaming reader says the same). */
const SEQ_MEAN_IS = 'a finite mean';

/** The refusal of value v, flat element i of a tensor of `shape`: one line naming the file, the tensor and the element. */
function outOfRange(file: string, name: string, shape: number[], i: number, v: number, what: string): never {
  fail(file, `tensor "${name}" holds ${v} at [${indexIn(shape, i).join(', ')}], which is not ${what}`);
}

/** The refusal of per-sequence mean v (flat element i of `tensor`, of `shape`), as readStats words it. */
export function refuseSequenceMean(file: string, tensor: string, shape: number[], i: number, v: number): never {
  outOfRange(file, tensor, shape, i, v, SEQ_MEAN_IS);
}

/** xs (of the given shape) when every value is finite and in [lo, hi]; else one line naming the file, tensor and element. */
function inRange<T extends Float64Array | Float32Array>(file: string, name: string, shape: number[], xs: T, lo: number, hi: number, what: string): T {
  for (let i = 0; i < xs.length; i++) {
    const v = xs[i]!;
    if (!(Number.isFinite(v) && v >= lo && v <= hi)) outOfRange(file, name, shape, i, v, what);
  }
  return xs;
}

/** The multi-dimensional index of flat element i of an array of `shape` (row-major). */
function indexIn(shape: number[], i: number): number[] {
  const out: number[] = [];
  for (let d = shape.length - 1; d >= 0; d--) { out.unshift(i % shape[d]!); i = Math.floor(i / shape[d]!); }
  return out;
}

type ParsedMeta = StatsMeta & { aboveSources?: Record<string, string> };

/**
 * The "langneurons" metadata of `file`, every field checked: a field missing or of the wrong type is one line naming
 * the file and the field, not a TypeError later in whatever reads it. The language must be a plain id (it becomes a
 * file name and a key of masks).
 */
function parseStatsMeta(file: string, raw: string | undefined): ParsedMeta {
  if (!raw) fail(file, 'not a langneurons statistics file (no "langneurons" metadata)');
  let m: unknown;
  try { m = JSON.parse(raw); } catch { fail(file, 'the "langneurons" metadata is not valid JSON'); }
  const field = (name: string, want: string): never => fail(file, `metadata field "${name}" must be ${want}`);
  const obj = (x: unknown, name: string): Record<string, unknown> =>
    (x !== null && typeof x === 'object' && !Array.isArray(x) ? x as Record<string, unknown> : field(name, 'an object'));
  const str = (x: unknown, name: string, nonEmpty = false): string => (typeof x === 'string' && (!nonEmpty || x) ? x : field(name, nonEmpty ? 'a non-empty string' : 'a string'));
  const int = (x: unknown, name: string, min: number): number => (Number.isSafeInteger(x) && (x as number) >= min ? x as number : field(name, `an integer ≥ ${min}`));
  const bool = (x: unknown, name: string): boolean => (typeof x === 'boolean' ? x : field(name, 'true or false'));
  const top = obj(m, 'langneurons');
  if (top.format !== STATS_FORMAT) fail(file, `format "${String(top.format)}" is not ${STATS_FORMAT}`);
  const model = obj(top.model, 'model');
  const modelLayers = int(model.layers, 'model.layers', 1);
  for (const k of ['name', 'modelType'] as const) str(model[k], `model.${k}`);
  str(model.fingerprint, 'model.fingerprint', true);
  int(model.hidden, 'model.hidden', 1);
  int(model.intermediate, 'model.intermediate', 1);
  const language = str(top.language, 'language');
  if (!isLanguageId(language))
    fail(file, `metadata field "language": ${JSON.stringify(language)} is not a plain language id (letters, digits, '_', '-', '.'; no path separators or '..')`);
  const scope = obj(top.scope, 'scope');
  if (scope.mode !== 'windows' && scope.mode !== 'sentences') field('scope.mode', '"windows" or "sentences"');
  int(scope.maxLen, 'scope.maxLen', 1);
  bool(scope.bos, 'scope.bos');
  if (scope.countBos !== undefined) bool(scope.countBos, 'scope.countBos');
  if (scope.longSentences !== undefined && scope.longSentences !== 'truncate' && scope.longSentences !== 'drop') field('scope.longSentences', '"truncate" or "drop"');
  if (scope.partialWindow !== undefined && scope.partialWindow !== 'keep' && scope.partialWindow !== 'drop') field('scope.partialWindow', '"keep" or "drop"');
  bool(scope.countPadding, 'scope.countPadding');
  int(scope.tokenBudget, 'scope.tokenBudget', 0);
  const layers = Array.isArray(top.layers) ? top.layers : field('layers', 'a list of the profiled layers');
  if (!layers.length) fail(file, 'metadata has no profiled layers');
  layers.forEach((l, i) => {
    if (!Number.isSafeInteger(l) || l < 0 || l >= modelLayers || (i > 0 && !(l > layers[i - 1])))
      field('layers', `ascending distinct layer numbers in [0, ${modelLayers}) (model.layers), got [${layers.map(String).join(', ')}]`);
  });
  const corpus = obj(top.corpus, 'corpus');
  if (!Array.isArray(corpus.files)) field('corpus.files', 'a list of file names');
  (corpus.files as unknown[]).forEach((f, i) => str(f, `corpus.files[${i}]`));
  str(corpus.fingerprint, 'corpus.fingerprint');
  str(top.toolVersion, 'toolVersion');
  int(top.shards, 'shards', 1);
  if (top.parts !== undefined) {
    if (!Array.isArray(top.parts)) field('parts', 'a list of profiled parts');
    (top.parts as unknown[]).forEach((x, i) => {
      const p = obj(x, `parts[${i}]`);
      str(p.corpus, `parts[${i}].corpus`);
      str(p.id, `parts[${i}].id`, true);
      int(p.budget, `parts[${i}].budget`, 0);
      const sh = p.shard;
      if (sh !== null && !(Array.isArray(sh) && sh.length === 2 && Number.isSafeInteger(sh[0]) && Number.isSafeInteger(sh[1]) && sh[0] >= 1 && sh[0] <= sh[1]))
        field(`parts[${i}].shard`, 'null (the whole corpus) or [k, n] with 1 ≤ k ≤ n');
    });
  }
  if (top.compute !== undefined && !COMPUTE_MODES.includes(top.compute as ComputeMode)) field('compute', `one of ${COMPUTE_MODES.join(', ')}`);
  if (top.aboveSources !== undefined) {
    const sources = obj(top.aboveSources, 'aboveSources');
    for (const [k, v] of Object.entries(sources)) str(v, `aboveSources.${k}`);
  }
  return top as unknown as ParsedMeta;
}

/**
 * Why statistics a and b were counted in ways that make their counts incomparable (token scope, compute mode), or
 * null. Shards of one language (`stats merge`, the default) must agree on everything, the token budget included, and
 * a file that does not record its compute mode is a mode of its own there. Across languages (`identify`:
 * `acrossLanguages`) the budget may differ (probabilities are per token counted), and a compute mode is compared only
 * when both files record one (an imported or older file may come from either mode: it is not refused for it).
 */
export function countingConflict(a: StatsMeta, b: StatsMeta, o: { acrossLanguages?: boolean } = {}): string | null {
  // Field by field, the optional fields read as their defaults: the same scope is never refused for how it was
  // spelled (key order, a default written out).
  const fields: [string, (s: TokenScope) => unknown][] = [
    ['mode', (s) => s.mode], ['maxLen', (s) => s.maxLen], ['bos', (s) => s.bos], ['countBos', (s) => s.countBos ?? false],
    ['longSentences', (s) => s.longSentences ?? 'truncate'], ['partialWindow', (s) => s.partialWindow ?? 'keep'], ['countPadding', (s) => s.countPadding],
    ...(o.acrossLanguages ? [] : [['tokenBudget', (s: TokenScope) => s.tokenBudget] as [string, (s: TokenScope) => unknown]]),
  ];
  const differ = fields.filter(([, f]) => f(a.scope) !== f(b.scope)).map(([k, f]) => `${k} ${String(f(a.scope))} vs ${String(f(b.scope))}`);
  if (differ.length) return `different token scopes (${differ.join(', ')})`;
  // Not the device: a GPU's and a CPU's statistics of one compute mode are the same counts (sums to rounding).
  if (a.compute !== b.compute && !(o.acrossLanguages && (a.compute === undefined || b.compute === undefined))) {
    const mode = (m: StatsMeta) => m.compute ?? 'not recorded (an imported file, or one written before it was recorded)';
    return `different compute modes (${mode(a)} vs ${mode(b)}): bf16 products move values near 0, so counts differ`;
  }
  return null;
}

/** Why two stats cannot be merged, or null. */
export function mergeConflict(a: ActivationStats, b: ActivationStats): string | null {
  if (a.meta.model.fingerprint !== b.meta.model.fingerprint)
    return `different models (${a.meta.model.name} ${a.meta.model.fingerprint.slice(0, 12)} vs ${b.meta.model.name} ${b.meta.model.fingerprint.slice(0, 12)})`;
  if (a.meta.language !== b.meta.language) return `different languages (${a.meta.language} vs ${b.meta.language})`;
  if (a.meta.layers.join(',') !== b.meta.layers.join(',')) return `different layers profiled ([${a.meta.layers}] vs [${b.meta.layers}])`;
  const counting = countingConflict(a.meta, b.meta);
  if (counting) return counting;
  const ka = [...a.sites.keys()].sort().join(','), kb = [...b.sites.keys()].sort().join(',');
  if (ka !== kb) return `different sites (${ka} vs ${kb})`;
  for (const [site, x] of a.sites) {
    const y = b.sites.get(site)!;
    if (x.width !== y.width) return `site ${site}: width ${x.width} vs ${y.width}`;
    if (!!x.histogram !== !!y.histogram) return `site ${site}: histogram in one file only`;
    if (x.histogram && x.histogram.edges.join(',') !== y.histogram!.edges.join(',')) return `site ${site}: different histogram edges`;
    if (!!x.above !== !!y.above) return `site ${site}: threshold counts in one file only`;
    if (x.above && (x.above.source !== y.above!.source || x.above.thresholds.join(',') !== y.above!.thresholds.join(',')))
      return `site ${site}: counts above different thresholds`;
    if (!!x.seqMeans !== !!y.seqMeans) return `site ${site}: sequence means in one file only`;
  }
  return null;
}

/** Whether a and b counted the same (non-zero) tokens, neuron for neuron: what one file given twice looks like. */
function sameCounts(a: ActivationStats, b: ActivationStats): boolean {
  if (a.tokens === 0 || a.tokens !== b.tokens || a.sequences !== b.sequences) return false;
  for (const [site, x] of a.sites) {
    const y = b.sites.get(site)!.overZero;
    for (let i = 0; i < x.overZero.length; i++) if (x.overZero[i] !== y[i]) return false;
  }
  return true;
}

const add = (a: Float64Array, b: Float64Array) => { const o = new Float64Array(a.length); for (let i = 0; i < a.length; i++) o[i] = a[i]! + b[i]!; return o; };

/**
 * a + b (shards of one language); throws naming the two sources when they are incompatible or count the same part
 * twice. `continuation`: b continues a's own part (a profile resumed from its checkpoint), so parts are not compared.
 */
export function mergeStats(a: ActivationStats, b: ActivationStats, labels: [string, string] = ['a', 'b'], o: { continuation?: boolean } = {}): ActivationStats {
  const why = mergeConflict(a, b);
  if (why) throw new LangneuronsError('E_STATS', `cannot merge ${labels[0]} and ${labels[1]}: ${why}`);
  if (!o.continuation) {
    for (const p of a.meta.parts ?? []) for (const q of b.meta.parts ?? []) {
      const overlap = partsOverlap(p, q);
      if (overlap) throw new LangneuronsError('E_STATS', `cannot merge ${labels[0]} and ${labels[1]}: ${overlap}`);
    }
    // Without parts on both sides, an overlap cannot be seen, but the same file twice still can: by its content.
    if ((!a.meta.parts || !b.meta.parts) && sameCounts(a, b))
      throw new LangneuronsError('E_STATS', `cannot merge ${labels[0]} and ${labels[1]}: they hold identical statistics (the same file given twice?): tokens would be counted twice`);
  }
  const sites = new Map<Site, SiteStats>();
  for (const [site, x] of a.sites) {
    const y = b.sites.get(site)!;
    const counts = { site, width: x.width, overZero: add(x.overZero, y.overZero) };
    // Sums only when both shards have them: a part's sums missing make the total's unknown, not smaller.
    const st: SiteStats = x.sumsAbsent || y.sumsAbsent ? siteWithoutSums(counts, `${labels[x.sumsAbsent ? 0 : 1]} (merged)`)
      : { ...counts, sum: add(x.sum, y.sum), sumSq: add(x.sumSq, y.sumSq) };
    // Σ|value| only when both shards have it (a file written before it was recorded has none).
    if (x.absSum && y.absSum) st.absSum = add(x.absSum, y.absSum);
    if (x.histogram) st.histogram = { edges: x.histogram.edges, counts: add(x.histogram.counts, y.histogram!.counts) };
    if (x.above) st.above = { source: x.above.source, thresholds: x.above.thresholds, counts: add(x.above.counts, y.above!.counts) };
    if (x.seqMeans) st.seqMeans = concatSeqMeans(x.seqMeans, y.seqMeans!);
    sites.set(site, st);
  }
  return { meta: mergedMeta(a.meta, b.meta, o), tokens: a.tokens + b.tokens, sequences: a.sequences + b.sequences, sites };
}

/** The record of two merged statistics (mergeStats): corpus files united, shards and parts added (a continuation,
 *  a resumed run of `a`'s, keeps `a`'s). */
export function mergedMeta(a: StatsMeta, b: StatsMeta, o: { continuation?: boolean } = {}): StatsMeta {
  const files = [...new Set([...a.corpus.files, ...b.corpus.files])];
  return { ...a, corpus: { files, fingerprint: a.corpus.fingerprint === b.corpus.fingerprint ? a.corpus.fingerprint : `merged:${[a.corpus.fingerprint, b.corpus.fingerprint].sort().join('+')}` },
    shards: o.continuation ? a.shards : a.shards + b.shards,
    ...(a.parts && b.parts ? { parts: o.continuation ? a.parts : [...a.parts, ...b.parts] } : {}) };
}

/** The per-sequence means of `a`'s sequences, then `b`'s ([sequences][layers][width] each). */
export function concatSeqMeans(a: Float32Array, b: Float32Array): Float32Array {
  const all = new Float32Array(a.length + b.length);
  all.set(a);
  all.set(b, a.length);
  return all;
}

/**
 * Merges statistics files (stats merge). When together they hold every shard of one corpus and budget once (shard k
 * of n holds the run's sequences i with i % n = k - 1; an input may itself be a merge of some of them), their
 * per-sequence means are put back in the single run's sequence order, so the merged file lists them as the unsharded
 * run does; otherwise they are concatenated in the order given. Counts are exact either way; float64 sums may differ
 * from one run's in the last bit (another order of additions).
 */
export function mergeStatsInOrder(inputs: readonly ActivationStats[], labels: readonly string[]): ActivationStats {
  const plan = shardPlan(inputs);
  const order = inputs.map((_, i) => i);
  if (plan) order.sort((i, j) => plan.firstShard[i]! - plan.firstShard[j]!);
  let acc = inputs[order[0]!]!;
  for (const i of order.slice(1)) acc = mergeStats(acc, inputs[i]!, [labels[order[0]!]!, labels[i]!]);
  if (!plan) return acc;
  // Sequence g of the run is row floor(g / n) of shard g % n + 1, which sits in its input after that input's earlier
  // parts; the fold put the inputs one after another in `order`.
  const n = plan.n;
  const inputStart = new Map<number, number>();
  order.reduce((at, i) => { inputStart.set(i, at); return at + inputs[i]!.sequences; }, 0);
  const rowOf = (g: number) => { const where = plan.where.get((g % n) + 1)!; return inputStart.get(where.input)! + where.offset + Math.floor(g / n); };
  for (const st of acc.sites.values()) {
    if (!st.seqMeans) continue;
    const unit = st.overZero.length; // layers × width values per sequence
    const out = new Float32Array(st.seqMeans.length);
    for (let g = 0; g < acc.sequences; g++) out.set(st.seqMeans.subarray(rowOf(g) * unit, (rowOf(g) + 1) * unit), g * unit);
    st.seqMeans = out;
  }
  return acc;
}

/** n when `parts` are every shard 1..n of one run (one corpus and budget), each once; else null. */
/**
 * Why `counted` tokens fall short of the scope's token budget, for the warning (null when they do not): whole windows
 * only (partialWindow 'drop') count at most ⌊budget / maxLen⌋ windows, and a counted BOS cannot start a sentence in
 * the budget's last token (`rule`, said in the returned words); otherwise the corpus holds no more (`corpus`).
 */
export function budgetShortfall(scope: TokenScope, counted: number): { kind: 'rule'; text: string } | { kind: 'corpus' } | null {
  const budget = scope.tokenBudget;
  if (budget <= 0 || counted >= budget) return null;
  const whole = Math.floor(budget / scope.maxLen) * scope.maxLen;
  if (scope.partialWindow === 'drop' && counted === whole)
    return { kind: 'rule', text: `counted ${counted} tokens of the budget of ${budget}: with whole windows only (--drop-partial) the budget holds ${whole / scope.maxLen} windows of ${scope.maxLen}` };
  if (scope.countBos && counted === budget - 1)
    return { kind: 'rule', text: `counted ${counted} tokens of the budget of ${budget}: the budget's last token cannot hold a sentence with its counted BOS (--count-bos), or the corpus ended there` };
  return { kind: 'corpus' };
}

export function shardsOfOneRun(parts: readonly StatsPart[]): number | null {
  const first = parts[0];
  const n = first?.shard?.[1];
  if (n === undefined || parts.length !== n) return null;
  if (parts.some((q) => q.shard?.[1] !== n || q.corpus !== first!.corpus || q.budget !== first!.budget)) return null;
  return new Set(parts.map((q) => q.shard![0])).size === n ? n : null;
}

/** Where each shard of a complete set lies (its input, the rows of that input's earlier parts), or null. */
function shardPlan(inputs: readonly ActivationStats[]): { n: number; where: Map<number, { input: number; offset: number }>; firstShard: number[] } | null {
  const parts = inputs.map((s) => s.meta.parts);
  if (parts.some((p) => !p || p.length === 0)) return null;
  const n = shardsOfOneRun(parts.flatMap((p) => p!));
  if (n === null) return null;
  // shard k (1-based) of a run of N sequences holds those i < N with i % n = k - 1
  const N = inputs.reduce((a, s) => a + s.sequences, 0);
  const count = (k: number) => (k - 1 < N ? Math.floor((N - k) / n) + 1 : 0);
  const where = new Map<number, { input: number; offset: number }>();
  for (const [i, ps] of parts.entries()) {
    let offset = 0;
    for (const q of ps!) { where.set(q.shard![0], { input: i, offset }); offset += count(q.shard![0]); }
    if (offset !== inputs[i]!.sequences) return null; // not laid out as its parts' sequences, one after another
  }
  return { n, where, firstShard: parts.map((ps) => Math.min(...ps!.map((q) => q.shard![0]))) };
}

/** p[l, j] = over_zero / tokens for one site (LAPE's activation probability). */
export function activationProbability(s: ActivationStats, site: Site = 'act'): Float64Array {
  const st = s.sites.get(site);
  if (!st) throw new LangneuronsError('E_STATS', `statistics of ${s.meta.language} have no site "${site}" (have: ${[...s.sites.keys()].join(', ')})`);
  const p = new Float64Array(st.overZero.length);
  if (s.tokens > 0) for (let i = 0; i < p.length; i++) p[i] = st.overZero[i]! / s.tokens;
  return p;
}

/**
 * The statistics files that paths name: a file as it is; a folder's *.safetensors, leaving out hidden files (profile's
 * checkpoints) and masks (an `identify --out` written into the statistics folder must not stop the next run).
 */
export async function statsFilesIn(paths: readonly string[]): Promise<string[]> {
  const files: string[] = [];
  for (const p of paths) {
    let isDir: boolean;
    try {
      isDir = statSync(p).isDirectory();
    } catch {
      throw new LangneuronsError('E_IO', `${p}: no such statistics file or folder`, { file: p });
    }
    if (!isDir) { files.push(p); continue; }
    // A profile still running here, or stopped part-way: its languages would be missing or partial, without a word.
    const names = readdirSync(p);
    const unfinished = names.map((n) => /^\.(.+)\.checkpoint\.safetensors$/.exec(n)?.[1]).filter((l): l is string => l !== undefined);
    if (unfinished.length)
      throw new LangneuronsError('E_STATS', `${p}: the profile of ${unfinished.join(', ')} is unfinished (${unfinished.map((l) => `.${l}.checkpoint.safetensors`).join(', ')}): run the same profile again to finish it, or name the finished files`, { file: p });
    for (const n of names.filter((x) => x.endsWith('.safetensors') && !x.startsWith('.')).sort()) {
      const file = path.join(p, n);
      const meta = await readSafetensorsHeader(file).then((h) => h.metadata ?? {}, () => ({} as Record<string, string>));
      if (meta['langneurons_mask'] === undefined) files.push(file);
    }
  }
  return files;
}

/** Whether `file` is a langneurons statistics file (its safetensors header says so; the tensors are not read). */
export async function isStatsFile(file: string): Promise<boolean> {
  return (await readSafetensorsHeader(file)).metadata?.['langneurons'] !== undefined;
}
