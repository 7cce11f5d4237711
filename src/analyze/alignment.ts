// Cross-lingual alignment across layers (Gurgurov et al.; docs/ANALYSES.md): each parallel sentence's hidden
// states mean-pooled per layer inside the forward (the `resid` site with sequence means: the residual stream after
// each layer, over the sentence's tokens, BOS excluded), then per layer and language
//   - similarity: the mean cosine between a sentence's vector and its translation's in the anchor language;
//   - retrieval: the share of sentences whose translation is the nearest anchor sentence (cosine) among all of them.
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';

import { resolveUdhrLanguage, udhrArticles, DEFAULT_HELDOUT_ARTICLES } from '../corpus/udhr.js';
import type { LanguageModel } from '../engine/model.js';
import { LangneuronsError } from '../errors.js';
import { computeEveryUnit, type UnitOf } from '../io/unit-log.js';
import { locate, readRows, str } from '../eval/data.js';
import { LANG_ALIASES } from '../eval/prompts.js';

export interface ParallelSet {
  /** What the sentences are, e.g. 'udhr:heldout (articles 25-30)' or 'flores:/data/flores (devtest)'. */
  source: string;
  languages: string[];
  /** One id per sentence (article number, line number). */
  ids: string[];
  sentences: Record<string, string[]>;
}

/**
 * Parallel sentences of `languages` from a spec: `udhr[:train|heldout|all]` (the UDHR articles, preamble = 0),
 * or `flores:<dir>[:split]` / a folder (FLORES layout: <dir>/<split>/<code>.<split>, one sentence a line, or the
 * parquet layouts the eval tasks read; codes like eng_Latn, or short ids with a known FLORES code).
 */
export async function readParallel(spec: string, languages: string[], maxSentences = Infinity): Promise<ParallelSet> {
  const [kind, ...rest] = spec.split(':');
  let set: ParallelSet;
  if (kind === 'udhr') {
    const split = rest[0] ?? 'all';
    if (!['train', 'heldout', 'all'].includes(split) || rest.length > 1)
      throw new LangneuronsError('E_OPTIONS', `--parallel: udhr[:train|heldout|all], got '${spec}'`, { field: '--parallel' });
    const held = new Set(DEFAULT_HELDOUT_ARTICLES);
    const keep = (n: number) => split === 'all' || (split === 'heldout') === held.has(n);
    const per = languages.map((l) => new Map(udhrArticles(resolveUdhrLanguage(l).id).filter((a) => keep(a.number)).map((a) => [a.number, a.text])));
    // Articles every language has (a few translations lack one).
    const numbers = [...per[0]!.keys()].filter((n) => per.every((m) => m.has(n))).sort((a, b) => a - b);
    set = { source: `udhr:${split}`, languages, ids: numbers.map(String), sentences: Object.fromEntries(languages.map((l, i) => [l, numbers.map((n) => per[i]!.get(n)!)])) };
  } else {
    const dir = kind === 'flores' ? rest[0] : spec;
    const split = (kind === 'flores' ? rest[1] : undefined) ?? 'devtest';
    if (!dir || !existsSync(dir) || !statSync(dir).isDirectory())
      throw new LangneuronsError('E_OPTIONS', `--parallel: expected udhr[:split], flores:<dir>[:split] or a FLORES folder, got '${spec}' (no such folder)`, { field: '--parallel' });
    const sentences: Record<string, string[]> = {};
    for (const l of languages) {
      const code = LANG_ALIASES[l]?.flores;
      const found = locate(dir, [l, ...(code ? [code] : [])], split, { textExt: true });
      if (!found.files.length) throw new LangneuronsError('E_DATA', `${dir}: no ${split} file for language '${l}'${code ? ` (${code})` : ''} (tried ${found.tried.slice(0, 3).join(', ')}, …)`, { file: dir });
      const lines: string[] = [];
      for (const f of found.files) {
        const rows = await readRows(f);
        const col = rows[0] && ['text', 'sentence'].find((c) => c in rows[0]!);
        if (!col) throw new LangneuronsError('E_DATA', `${f}: no "text" or "sentence" column (FLORES text files have one sentence a line)`, { file: f });
        rows.forEach((r, i) => lines.push(str(f, r, i, col)));
      }
      sentences[l] = lines;
    }
    const n = sentences[languages[0]!]!.length;
    for (const l of languages)
      if (sentences[l]!.length !== n) throw new LangneuronsError('E_DATA', `${dir}: '${languages[0]}' has ${n} sentences but '${l}' has ${sentences[l]!.length}: parallel files must align line by line`, { file: dir });
    set = { source: `flores:${path.resolve(dir)} (${split})`, languages, ids: Array.from({ length: n }, (_, i) => String(i)), sentences };
  }
  if (set.ids.length > maxSentences) {
    set.ids = set.ids.slice(0, maxSentences);
    for (const l of languages) set.sentences[l] = set.sentences[l]!.slice(0, maxSentences);
  }
  for (const l of languages) {
    const empty = set.sentences[l]!.findIndex((s) => !s.trim());
    if (empty >= 0) throw new LangneuronsError('E_DATA', `${set.source}: sentence ${set.ids[empty]} of '${l}' is empty`);
  }
  if (set.ids.length < 2) throw new LangneuronsError('E_DATA', `${set.source}: ${set.ids.length} parallel sentence(s); retrieval needs at least 2`);
  return set;
}

/** Per layer, the [sentences × hidden] mean-pooled residual stream of each sentence (BOS not pooled). */
export async function sentenceVectors(model: LanguageModel, sentences: string[], o: { maxTokens: number; batch: number; onProgress?: (done: number) => void }): Promise<Float32Array[]> {
  if (!Number.isInteger(o.maxTokens) || o.maxTokens < 2)
    throw new LangneuronsError('E_OPTIONS', `maxTokens must be an integer >= 2 (BOS and at least one token), got ${String(o.maxTokens)}`, { field: 'maxTokens' });
  const tok = model.requireTokenizer();
  const L = model.config.numLayers, H = model.config.hiddenSize, N = sentences.length;
  const out = Array.from({ length: L }, () => new Float32Array(N * H));
  const stats = model.createStats({ sites: ['resid'], seqMeans: true });
  const maxLen = Math.min(o.maxTokens, model.contextLength);
  for (let s0 = 0; s0 < N; s0 += o.batch) {
    const batch = sentences.slice(s0, s0 + o.batch).map((t) => tok.encode(t).slice(0, maxLen));
    const countMask = batch.map((ids) => ids.map((id, t) => (t === 0 && tok.addsBos && id === tok.bosTokenId ? 0 : 1)));
    batch.forEach((ids, i) => {
      if (!countMask[i]!.some(Boolean)) throw new LangneuronsError('E_DATA', `sentence ${s0 + i}: no tokens besides BOS`);
    });
    await model.forward(batch, { logits: 'none', stats, countMask });
    const means = stats.takeSeqMeans().get('resid')!;  // [batch][L][H]
    for (let i = 0; i < batch.length; i++)
      for (let l = 0; l < L; l++) out[l]!.set(means.subarray((i * L + l) * H, (i * L + l + 1) * H), (s0 + i) * H);
    o.onProgress?.(Math.min(N, s0 + o.batch));
  }
  return out;
}

/** Rows scaled to unit length; with `center`, the mean row is subtracted first (a language's own offset removed). */
function normalizeRows(x: Float32Array, n: number, h: number, center = false): Float64Array {
  const y = new Float64Array(n * h), mean = new Float64Array(h);
  if (center) for (let i = 0; i < n; i++) for (let j = 0; j < h; j++) mean[j]! += x[i * h + j]! / n;
  for (let i = 0; i < n; i++) {
    let ss = 0;
    for (let j = 0; j < h; j++) ss += (x[i * h + j]! - mean[j]!) ** 2;
    const r = ss > 0 ? 1 / Math.sqrt(ss) : 0;
    for (let j = 0; j < h; j++) y[i * h + j] = (x[i * h + j]! - mean[j]!) * r;
  }
  return y;
}

/**
 * Per layer: the mean cosine of sentence i in `other` with sentence i of `anchor`, and the share of sentences i whose
 * most similar anchor sentence is i (ties count as misses unless i comes first: a strict nearest neighbour). With
 * `center`, each language's mean vector (over its sentences, per layer) is subtracted first.
 */
export function alignmentScores(anchor: Float32Array[], other: Float32Array[], n: number, h: number, center = false): { similarity: number[]; retrieval: number[] } {
  const similarity: number[] = [], retrieval: number[] = [];
  anchor.forEach((al, l) => {
    const A = normalizeRows(al, n, h, center), B = normalizeRows(other[l]!, n, h, center);
    let simSum = 0, hits = 0;
    for (let i = 0; i < n; i++) {
      let best = -Infinity, bestJ = -1, own = 0;
      for (let j = 0; j < n; j++) {
        let d = 0;
        for (let k = 0; k < h; k++) d += B[i * h + k]! * A[j * h + k]!;
        if (j === i) own = d;
        if (d > best) { best = d; bestJ = j; }
      }
      simSum += own;
      if (bestJ === i) hits++;
    }
    similarity.push(simSum / n);
    retrieval.push(hits / n);
  });
  return { similarity, retrieval };
}

export interface AlignmentRun {
  /** 'base', or the fine-tuned variant's name. */
  variant: string;
  model: string;
  /** Per language: [layer] mean cosine to the anchor and retrieval accuracy. */
  similarity: Record<string, number[]>;
  retrieval: Record<string, number[]>;
}

export interface AlignmentAnalysis {
  source: string;
  /** Whether each language's mean vector was subtracted before the cosines. */
  centered: boolean;
  anchor: string;
  languages: string[];
  sentences: number;
  layers: number;
  maxTokens: number;
  runs: AlignmentRun[];
}

/**
 * One model's alignment of every language to the anchor, per layer. Each language's scores are one `unit` (addressed
 * by the language, the anchor and both sides' sentences): a resumed run takes the languages finished before, and
 * runs the anchor's forwards only when a language is left to compute.
 */
export async function alignModel(model: LanguageModel, set: ParallelSet, anchor: string, variant: string, o: { maxTokens: number; batch: number; center?: boolean; unit?: UnitOf; onProgress?: (done: number, total: number) => void }): Promise<AlignmentRun> {
  const n = set.ids.length, h = model.config.hiddenSize, total = n * set.languages.length;
  const unit = o.unit ?? computeEveryUnit;
  let base = 0;
  const vectors = async (l: string) => {
    const v = await sentenceVectors(model, set.sentences[l]!, { ...o, onProgress: (d) => o.onProgress?.(base + d, total) });
    base += n;
    return v;
  };
  let anchorVectors: Promise<Float32Array[]> | null = null;
  const run: AlignmentRun = { variant, model: model.dir, similarity: {}, retrieval: {} };
  for (const l of set.languages) {
    if (l === anchor) continue;
    const args = { anchor, language: l, anchorSentences: set.sentences[anchor], sentences: set.sentences[l] };
    let computed = false;
    const s = await unit(args, async () => {
      computed = true;
      return alignmentScores(await (anchorVectors ??= vectors(anchor)), await vectors(l), n, h, o.center ?? false);
    });
    if (!computed) o.onProgress?.(base += n, total);  // taken from an earlier run
    run.similarity[l] = s.similarity;
    run.retrieval[l] = s.retrieval;
  }
  o.onProgress?.(total, total);
  return run;
}
