// The runner: executes a TaskPlan in batches on a Scorer, checkpoints finished items (JSONL, one line per item,
// appended after each batch) so an interrupted evaluation resumes where it stopped, aggregates the metrics and
// writes one result JSON per (task, language, variant) atomically.
import { createHash } from 'node:crypto';
import { existsSync, promises as fsp } from 'node:fs';
import path from 'node:path';

import { LangneuronsError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { readRunLog, startRunLog } from '../io/run-log.js';
import { appendToFile } from '../io/files.js';
import { ensureOutputDir } from '../io/outdir.js';
import { deviceKind } from '../engine/device.js';
import { fingerprint, type DataFile } from './data.js';
import { corpusBleu, sentenceBleu, type BleuOptions } from './metrics/bleu.js';
import { chrfSignature, corpusChrf, sentenceChrf } from './metrics/chrf.js';
import { squadScores, tokenIdScores } from './metrics/squad.js';
import { languageOfCode } from './prompts.js';
import { pyStrip } from './pystr.js';
import { RequestTooLong, type GenOutput, type Scorer } from './scorer.js';
import type { PlanItem, TaskPlan } from './tasks.js';

export { TOOL_VERSION } from '../version.js';
import { TOOL_VERSION } from '../version.js';
export const RESULT_SCHEMA = 'langneurons.eval/2';
/** Earlier result files (named by task, language and variant only) that `results table` still reads. */
export const READABLE_SCHEMAS = ['langneurons.eval/1', RESULT_SCHEMA];

export type ItemResult = Record<string, unknown> & { id: string };

export interface Variant {
  /** 'base', 'intervene', 'delta', or a user-chosen name. */
  name: string;
  intervene?: string;
  delta?: string;
  /** The merged delta's tensors in float32 (eval --delta-dtype f32); absent: the base model's dtype. */
  deltaDtype?: string;
  /** A trained classification head (eval --head). */
  head?: string;
  /** sha256 of the files the variant reads (masks, statistics, intervention file, head), by path (inputs.ts). */
  inputs?: Record<string, string>;
  /** The language filled into the intervention's {lang} (eval --intervene-langs: self- and cross-language runs). */
  interveneLang?: string;
  /** Generative prompts rendered with the model's chat template (eval --chat-template): its source, and the system turn. */
  chatTemplate?: string;
  system?: string;
}

export interface RunOptions {
  scorer: Scorer;
  outDir: string;
  /** The model as the user named it (recorded, not part of the result's identity). */
  model: string;
  /** modelFingerprint() of the model folder (src/model/fingerprint.ts): what identifies the model in result
   *  names and resume keys, so replaced weights under the same path never resume or reuse an old result. */
  modelFingerprint: string;
  variant: Variant;
  /** Items per batch (all choices of an item's batch go to one logLikelihood call). */
  batchItems?: number;
  onProgress?: (done: number, total: number) => void;
  /** Told of an item checkpoint of this evaluation that was started on another engine kind and is started again. */
  onNotice?: (message: string) => void;
}

/** Everything a result depends on; its sha256 names the result and keys the item checkpoint. */
export interface ResultKey {
  schema: string;
  task: string;
  lang: string;
  prompt: string;
  split: string;
  limit: number | null;
  variant: Variant;
  modelFingerprint: string;
  data: string[];
  /** sha256 of every request the plan sends (contexts, continuations, prompts, gold answers). */
  requests: string;
  gen: TaskPlan['gen'] | null;
  /** flores: the BLEU tokenizer's name (an spm tokenizer's includes its file's sha256). */
  bleuTokenize: string | null;
  compute: string | null;
  device: string | null;
  contextLength: number | null;
}

export interface EvalResult {
  schema: string;
  task: string;
  lang: string;
  variant: Variant;
  model: string;
  modelFingerprint: string;
  prompt: string;
  /** The prompt format's template (lm-eval's doc_to_text / doc_to_choice, or the paper's string). */
  template: string;
  split: string;
  limit: number | null;
  generation: TaskPlan['gen'] | null;
  /** `engine`: the engine kind that scored the items (results written before it was recorded have none). */
  compute: { mode: string; device: string; threads: number; contextLength: number; engine?: string } | null;
  data: DataFile[];
  toolVersion: string;
  items: number;
  /** Items whose context was cut from the left to fit the model's context (lm-eval's truncation). */
  truncatedItems: number;
  metrics: Record<string, number | string>;
  /** sha256 of the ResultKey: the result file is `<task>__<lang>__<variant>__<prompt>__<key[0:12]>.json`. */
  key: string;
  created: string;
}

export const safeName = (s: string): string => s.replace(/[^A-Za-z0-9._=-]+/g, '_');

/** The result's path without extension: every setting that changes the numbers is in the name (via the key). */
export function resultBase(outDir: string, task: string, lang: string, variant: string, prompt: string, key: string): string {
  return path.join(outDir, `${safeName(task)}__${safeName(lang)}__${safeName(variant)}__${safeName(prompt)}__${key.slice(0, 12)}`);
}

const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');

/** The sha256 of a plan's requests: what the model is asked, item by item, in order. */
export function requestsHash(plan: TaskPlan): string {
  const h = createHash('sha256');
  for (const it of plan.items) h.update(JSON.stringify(it)).update('\n');
  return h.digest('hex');
}

const argmax = (xs: number[]): number => xs.reduce((b, x, i) => (x > xs[b]! ? i : b), 0);

/** Batches of items per generation call (see runPlan); what a crash loses at most, in batches. */
const GEN_CHUNK = 4;

async function scoreBatch(plan: TaskPlan, items: PlanItem[], scorer: Scorer, concurrency: number): Promise<ItemResult[]> {
  const kind = items[0]!.kind;
  if (kind === 'mc') {
    const mcs = items as Extract<PlanItem, { kind: 'mc' }>[];
    const owner = mcs.flatMap((it) => it.pairs.map(() => it.id));
    const scores = await named(plan, owner, () => scorer.logLikelihood(mcs.flatMap((it) => it.pairs))); // one batched call for the batch
    let k = 0;
    return mcs.map((it) => {
      const sc = it.pairs.map(() => scores[k++]!);
      const lls = sc.map((x) => x.logprob);
      const pred = argmax(lls);
      // lm-eval acc_norm: log-likelihood / len(choice) in characters (Python len), acc_bytes by UTF-8 bytes, where
      // the choices are doc_to_choice's strings (for XWinograd's multiple-input mode: the two contexts).
      const predNorm = argmax(lls.map((l, i) => l / Array.from(it.choices[i]!).length));
      const predBytes = argmax(lls.map((l, i) => l / Buffer.byteLength(it.choices[i]!, 'utf8')));
      const truncated = Math.max(0, ...sc.map((x) => x.truncated ?? 0));
      return { id: it.id, logprobs: lls, gold: it.gold, pred, predNorm, acc: +(pred === it.gold), acc_norm: +(predNorm === it.gold), acc_norm_bytes: +(predBytes === it.gold), ...(truncated ? { truncated } : {}) };
    });
  }
  if (kind === 'gen') {
    const gens = items as Extract<PlanItem, { kind: 'gen' }>[];
    const outs = (await named(plan, gens.map((g) => g.id), () => scorer.generate(gens.map((g) => g.prompt), plan.gen!, { concurrency })))
      .map((o): GenOutput => (typeof o === 'string' ? { text: o } : o));
    return gens.map((g, i) => withTruncation(outs[i]!.truncated, genResult(plan, scorer, g, pyStrip(outs[i]!.text))));
  }
  if (kind === 'cls') {
    if (!scorer.classify) throw new LangneuronsError('E_OPTIONS', `${plan.task}: prompt '${plan.prompt}' needs a classification head (--head)`, { field: 'head' });
    const cls = items as Extract<PlanItem, { kind: 'cls' }>[];
    const logits = await scorer.classify(cls.map((it) => it.texts));
    return cls.map((it, i) => {
      const z = Array.from(logits[i]!);
      const pred = argmax(z);
      return { id: it.id, logits: z, gold: it.gold, pred, acc: +(pred === it.gold) };
    });
  }
  const texts = items as Extract<PlanItem, { kind: 'text' }>[];
  const res = await scorer.nll(texts.map((t) => t.text));
  return texts.map((t, i) => ({ id: t.id, nll: res[i]!.totalNll, tokens: res[i]!.tokens }));
}

function genResult(plan: TaskPlan, scorer: Scorer, g: Extract<PlanItem, { kind: 'gen' }>, output: string): ItemResult {
  if (plan.parseChoice) {
    const pred = plan.parseChoice(output);
    return { id: g.id, output, gold: g.gold, pred, acc: +(pred === g.gold), invalid: +(pred === null) };
  }
  if (plan.task === 'flores') {
    return { id: g.id, output, ref: g.refs[0], bleu: sentenceBleu(output, g.refs, bleuOpts(plan)).score, chrf: sentenceChrf(output, g.refs), chrfpp: sentenceChrf(output, g.refs, { wordOrder: 2 }) };
  }
  const s = squadScores(output, g.refs, plan.squad ?? {});
  const r: ItemResult = { id: g.id, output, refs: g.refs, em: s.em, f1: s.f1 };
  if (scorer.encode) {
    const t = tokenIdScores(scorer.encode(output), g.refs.map((x) => scorer.encode!(pyStrip(x))));
    r.token_em = t.em; r.token_f1 = t.f1;
  }
  return r;
}

const bleuOpts = (plan: TaskPlan): BleuOptions => (plan.bleuTokenize ? { tokenize: plan.bleuTokenize } : {});
const bleuName = (t: TaskPlan['bleuTokenize']): string | null => (t === undefined ? null : typeof t === 'object' ? t.name : t);

const withTruncation = (t: number | undefined, r: ItemResult): ItemResult => (t ? { ...r, truncated: t } : r);

/** Runs one scorer call; a request that cannot fit the model is reported by the item it belongs to. */
async function named<T>(plan: TaskPlan, owner: string[], call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (e) {
    if (!(e instanceof RequestTooLong)) throw e;
    const file = plan.files[0] ?? '';
    throw new LangneuronsError('E_INPUT', `${plan.files.join(', ')}: ${plan.task} ${plan.lang} item '${owner[e.index] ?? '?'}': ${e.message}`, { file, field: owner[e.index] ?? '' });
  }
}

const mean = (xs: number[]): number => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);
const col = (rs: ItemResult[], k: string): number[] => rs.map((r) => r[k]).filter((x): x is number => typeof x === 'number');

/** XNLI's accuracy on the items of each gold class (Language Arithmetics' compute_detailed_metrics; 0 for a class
 *  with no items there, NaN here). */
function xnliClassAccuracy(plan: TaskPlan, results: ItemResult[]): Record<string, number> {
  if (plan.task !== 'xnli') return {};
  const of = (k: number) => mean(col(results.filter((r) => r.gold === k), 'acc'));
  return { acc_entailment: of(0), acc_neutral: of(1), acc_contradiction: of(2) };
}

export function aggregate(plan: TaskPlan, results: ItemResult[]): Record<string, number | string> {
  const kind = plan.items[0]?.kind;
  if (kind === 'mc') return { acc: mean(col(results, 'acc')), acc_norm: mean(col(results, 'acc_norm')), acc_norm_bytes: mean(col(results, 'acc_norm_bytes')), ...xnliClassAccuracy(plan, results) };
  if (kind === 'cls') return { acc: mean(col(results, 'acc')), ...xnliClassAccuracy(plan, results) };
  if (kind === 'text') {
    const nll = col(results, 'nll').reduce((a, b) => a + b, 0), tokens = col(results, 'tokens').reduce((a, b) => a + b, 0);
    return { mean_nll: nll / tokens, perplexity: Math.exp(nll / tokens), tokens, documents: results.length };
  }
  if (plan.parseChoice) return { acc: mean(col(results, 'acc')), invalid: mean(col(results, 'invalid')), ...xnliClassAccuracy(plan, results) };
  if (plan.task === 'flores') {
    const hyps = results.map((r) => String(r.output)), refs = [results.map((r) => String(r.ref))];
    const bleu = corpusBleu(hyps, refs, bleuOpts(plan));
    return {
      bleu: bleu.score, sentence_bleu: mean(col(results, 'bleu')),
      chrf: corpusChrf(hyps, refs), sentence_chrf: mean(col(results, 'chrf')),
      chrfpp: corpusChrf(hyps, refs, { wordOrder: 2 }), sentence_chrfpp: mean(col(results, 'chrfpp')),
      bleu_signature: bleu.signature, chrf_signature: chrfSignature(), chrfpp_signature: chrfSignature({ wordOrder: 2 }),
    };
  }
  const m: Record<string, number | string> = { exact_match: 100 * mean(col(results, 'em')), f1: 100 * mean(col(results, 'f1')) };
  if (results.some((r) => 'token_em' in r)) { m.token_exact_match = 100 * mean(col(results, 'token_em')); m.token_f1 = 100 * mean(col(results, 'token_f1')); }
  return m;
}

/** `engine`: the engine kind the items were scored on (null: a scorer that does not say). */
interface CheckpointHeader { checkpoint: string; key: string; engine: string | null }

/**
 * The items an earlier run of this key finished (a line cut short by a kill is cut off: run-log.ts); the checkpoint
 * is started (its header written) when there is none. A checkpoint of this key scored on another engine kind (or
 * written before the kind was recorded) is started again: a result holds one engine's scores, as an uninterrupted
 * run's does.
 */
async function openCheckpoint(file: string, header: CheckpointHeader, notice?: (message: string) => void): Promise<Map<string, ItemResult>> {
  const done = new Map<string, ItemResult>();
  const head = JSON.stringify(header);
  const dropped = (n: number, earlier: string | null) => notice?.(`${file}: ${n} item(s) scored on ${earlier ?? 'an engine not recorded'} are scored again on ${header.engine ?? 'this engine'} (a result holds one engine's scores)`);
  // The key is in the file name, so another header means a file this run did not write: leave it alone.
  const lines = await readRunLog(file, head, () =>
    new LangneuronsError('E_DATA', `${file}: not this evaluation's item checkpoint (its first line is not ${head}); move it away to rerun`, { file }),
  { otherEngine: { dropped } });
  if (lines === null) await startRunLog(file, head);
  for (const line of lines ?? []) {
    // A damaged complete line (an earlier version appended after a torn line) is skipped: its item is scored again.
    try { const r = JSON.parse(line) as ItemResult; if (typeof r.id === 'string') done.set(r.id, r); } catch { /* scored again */ }
  }
  return done;
}

/** An earlier finished result of the same key, or null. */
async function finished(file: string, key: string): Promise<EvalResult | null> {
  if (!existsSync(file)) return null;
  try {
    const r = JSON.parse(await fsp.readFile(file, 'utf8')) as EvalResult;
    return r.schema === RESULT_SCHEMA && r.key === key ? r : null;
  } catch { return null; }
}

/** The identity of a plan's result on a scorer (see ResultKey). */
export async function resultKey(plan: TaskPlan, o: Pick<RunOptions, 'scorer' | 'modelFingerprint' | 'variant'>, data: DataFile[]): Promise<{ key: string; fields: ResultKey }> {
  const info = o.scorer.describe?.();
  const fields: ResultKey = {
    schema: RESULT_SCHEMA, task: plan.task, lang: languageOfCode(plan.lang), prompt: plan.prompt, split: plan.split ?? '', limit: plan.limit ?? null,
    variant: o.variant, modelFingerprint: o.modelFingerprint, data: data.map((d) => d.sha256), requests: requestsHash(plan),
    gen: plan.gen ?? null, bleuTokenize: bleuName(plan.bleuTokenize), compute: info?.compute ?? null, device: info ? deviceKind(info.device) : null, contextLength: info?.contextLength ?? null,
  };
  return { key: sha256(JSON.stringify(fields)), fields };
}

/**
 * Runs a plan (resuming from its item checkpoint) and writes `<task>__<lang>__<variant>__<prompt>__<key>.json`.
 * Results of different models, data files, splits, limits, prompts, generation or compute settings have
 * different keys, so they never overwrite each other or each other's checkpoints; a finished result of the
 * same key is returned as it is, not recomputed or rewritten.
 */
export async function runPlan(plan: TaskPlan, o: RunOptions): Promise<EvalResult> {
  if (!plan.items.length) throw new LangneuronsError('E_DATA', `${plan.files.join(', ')}: no items`, { file: plan.files[0] ?? '' });
  // Items are checkpointed and collected by id: a repeated id would merge two items into one (tasks.ts refuses the
  // datasets' own repeated ids with their rows; this guards every other plan).
  const ids = new Set<string>();
  for (const it of plan.items) {
    if (ids.has(it.id)) throw new LangneuronsError('E_DATA', `${plan.files.join(', ')}: ${plan.task} ${plan.lang}: two items have the id ${JSON.stringify(it.id)}; item ids must be unique`, { file: plan.files[0] ?? '' });
    ids.add(it.id);
  }
  const info = o.scorer.describe?.();
  // lm-eval keeps the last (context - max_gen_toks) prompt tokens: a limit of the whole context leaves none. Refused
  // before anything is written, as eval refuses it (the scorer would fail on the first item, an item checkpoint
  // of a result that can never be made left behind).
  if (plan.gen && info && plan.gen.maxNewTokens >= info.contextLength)
    throw new LangneuronsError('E_OPTIONS', `${plan.task} ${plan.lang} --prompt ${plan.prompt}: ${plan.gen.maxNewTokens} new tokens leave no room for a prompt in the model's context of ${info.contextLength}: ` +
      `prepare the task with maxGenToks ${info.contextLength - 1} or less (eval --max-gen-toks)`, { field: 'max-gen-toks' });
  await ensureOutputDir(o.outDir);
  const data = await Promise.all(plan.files.map(fingerprint));
  const { key } = await resultKey(plan, o, data);
  const base = resultBase(o.outDir, plan.task, languageOfCode(plan.lang), o.variant.name, plan.prompt, key);
  const earlier = await finished(`${base}.json`, key);
  if (earlier) { o.onProgress?.(plan.items.length, plan.items.length); return earlier; }
  const ckFile = `${base}.items.jsonl`;
  const header: CheckpointHeader = { checkpoint: RESULT_SCHEMA, key, engine: info?.engine ?? null };
  const done = await openCheckpoint(ckFile, header, o.onNotice);
  const todo = plan.items.filter((it) => !done.has(it.id));
  const batch = Math.max(1, o.batchItems ?? 16);
  // Generation tasks run GEN_CHUNK batches per call, decoding `batch` sequences at a time: a sequence that ends hands
  // its place to the next item (continuous batching) instead of the batch waiting for its longest output.
  const chunk = todo[0]?.kind === 'gen' ? batch * GEN_CHUNK : batch;
  o.onProgress?.(plan.items.length - todo.length, plan.items.length);
  for (let s = 0; s < todo.length; s += chunk) {
    const results = await scoreBatch(plan, todo.slice(s, s + chunk), o.scorer, batch);
    await appendToFile(ckFile, results.map((r) => JSON.stringify(r) + '\n').join(''));
    for (const r of results) done.set(r.id, r);
    o.onProgress?.(plan.items.length - todo.length + Math.min(todo.length, s + chunk), plan.items.length);
  }
  const ordered = plan.items.map((it) => done.get(it.id)!);
  const result: EvalResult = {
    schema: RESULT_SCHEMA, task: plan.task, lang: plan.lang, variant: o.variant, model: o.model, modelFingerprint: o.modelFingerprint,
    prompt: plan.prompt, template: plan.template ?? '', split: plan.split ?? '', limit: plan.limit ?? null, generation: plan.gen ?? null,
    compute: info ? { mode: info.compute, device: info.device, threads: info.threads, contextLength: info.contextLength, ...(info.engine ? { engine: info.engine } : {}) } : null,
    data, toolVersion: TOOL_VERSION, items: ordered.length, truncatedItems: ordered.filter((r) => typeof r.truncated === 'number' && r.truncated > 0).length,
    metrics: aggregate(plan, ordered), key, created: new Date().toISOString(),
  };
  await writeFileAtomic(`${base}.json`, JSON.stringify(result, null, 2) + '\n');
  return result;
}
